//! The channel `up` connects: one bought before (`--client-key`, or a usable channel of
//! the chosen offering), or a new one — offerings fetched and verified by the client core,
//! one chosen, a deposit confirmed, the offering accepted.

use serde_json::json;
use service_api::{
    AcceptOfferingRequest, Client, ClientChannel, ClientKey, FetchOfferingsRequest, OfferingSummary,
};

use super::offers::{self, matching, parse_deposit, prix, short, speeds, table, Filters};
use super::ui::Ui;
use super::{api_err, AgentUrl, UpArgs, UpError};

/// A channel bought before that can serve the offering `o` again: not ending, units left.
fn usable<'a>(channels: &'a [ClientChannel], o: &OfferingSummary) -> Option<&'a ClientChannel> {
    channels.iter().rev().find(|c| {
        c.offering
            .as_ref()
            .is_some_and(|x| x.offering_hash == o.offering_hash)
            && !c.status.is_final()
            && c.units_used < o.max_units
    })
}

/// The client key of the channel to connect.
pub(super) async fn channel(
    a: &UpArgs,
    ui: &mut Ui,
    api: &Client,
    agent: Option<&AgentUrl>,
    known_key: Option<String>,
) -> Result<ClientKey, UpError> {
    let channels = api
        .list_channels()
        .await
        .map_err(api_err("listing the client's channels (ListChannels)"))?
        .channels;
    if let Some(k) = known_key {
        let Some(ch) = channels.iter().find(|c| c.client_key.0 == k) else {
            return Err(UpError::Nothing(format!(
                "the client core has no channel with client key {k}"
            )));
        };
        ui.done(&format!(
            "channel {} ({}, {} units used)",
            ch.client_key, ch.status, ch.units_used
        ));
        ui.event(json!({"event": "channel", "reused": true, "channel": ch}));
        return Ok(ch.client_key.clone());
    }
    let Some(agent) = agent else {
        return Err(UpError::Usage("no agent URL".into()));
    };
    ui.begin(&format!("fetching offerings from {agent}"));
    let fetched = api
        .fetch_offerings(&FetchOfferingsRequest {
            url: agent.to_string(),
        })
        .await
        .map_err(api_err(format!("fetching the offerings of {agent}")))?;
    for r in &fetched.rejected {
        ui.note(&format!("rejected offering {}: {}", r.offering, r.reason));
    }
    ui.done(&format!(
        "{} offering(s) from {agent} verified{}",
        fetched.accepted.len(),
        if fetched.rejected.is_empty() {
            String::new()
        } else {
            format!(", {} rejected", fetched.rejected.len())
        }
    ));
    ui.event(json!({
        "event": "offerings",
        "url": agent.as_str(),
        "accepted": fetched.accepted,
        "rejected": fetched.rejected,
    }));
    if fetched.accepted.is_empty() {
        return Err(UpError::Nothing(format!(
            "{agent} offers nothing this client core could verify"
        )));
    }
    let filters = Filters {
        offering: a.offering.clone(),
        max_price: a.max_price,
        country: a.country.clone(),
    };
    let m = matching(&fetched.accepted, &filters)?;
    if m.is_empty() {
        return Err(UpError::Nothing(format!(
            "none of the {} offering(s) matches --offering / --max-price / --country",
            fetched.accepted.len()
        )));
    }
    ui.note(&table(&m));
    let pick_here = m.len() > 1 && a.offering.is_none() && !a.yes && ui.mode().can_ask();
    let chosen: &OfferingSummary = if pick_here { pick(ui, &m).await? } else { m[0] };
    ui.done(&format!(
        "offering {} ({}, {}/{}, setup {}, {} Mbit/s)",
        short(&chosen.offering_hash),
        chosen.country,
        prix(chosen.unit_price),
        chosen.unit_name,
        prix(chosen.setup_price),
        speeds(chosen)
    ));
    ui.event(json!({"event": "selected", "offering": chosen}));
    if !a.new_channel {
        if let Some(ch) = usable(&channels, chosen) {
            ui.done(&format!(
                "using channel {} bought before: {}/{} {} used, deposit {}",
                ch.client_key,
                ch.units_used,
                chosen.max_units,
                chosen.unit_name,
                prix(ch.deposit)
            ));
            ui.event(json!({"event": "channel", "reused": true, "channel": ch}));
            return Ok(ch.client_key.clone());
        }
    }
    let deposit = deposit(a, ui, chosen).await?;
    if !a.yes {
        if !ui.mode().can_ask() {
            return Err(UpError::Usage(format!(
                "buying needs a confirmed deposit ({}): give --yes, or run on a terminal",
                prix(deposit)
            )));
        }
        let q = format!(
            "Buy {} from {} for a deposit of {}? [y/N] ",
            short(&chosen.offering_hash),
            agent
                .as_str()
                .trim_start_matches("http://")
                .trim_start_matches("https://"),
            prix(deposit)
        );
        let answer = ui.ask(&q).await.unwrap_or_default();
        if !matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(UpError::Declined);
        }
    }
    ui.begin("accepting the offering");
    let acc = api
        .accept_offering(&AcceptOfferingRequest {
            offering_hash: chosen.offering_hash.clone(),
            deposit,
        })
        .await
        .map_err(api_err(format!(
            "accepting offering {}",
            short(&chosen.offering_hash)
        )))?;
    ui.done(&format!(
        "bought: client key {}, deposit {}",
        acc.client_key,
        prix(acc.deposit)
    ));
    ui.event(json!({"event": "accepted", "channel": acc}));
    Ok(acc.client_key)
}

/// The numbered choice on a terminal (Enter: the first, the cheapest).
async fn pick<'a>(ui: &mut Ui, m: &[&'a OfferingSummary]) -> Result<&'a OfferingSummary, UpError> {
    loop {
        let q = format!("Offering [1-{}, Enter: 1, q: quit]: ", m.len());
        let Some(a) = ui.ask(&q).await else {
            return Err(UpError::Declined);
        };
        if a.eq_ignore_ascii_case("q") {
            return Err(UpError::Declined);
        }
        if a.is_empty() {
            return Ok(m[0]);
        }
        match a.parse::<usize>() {
            Ok(i) if (1..=m.len()).contains(&i) => return Ok(m[i - 1]),
            _ => ui.note(&format!("{a:?} is not one of 1-{}", m.len())),
        }
    }
}

/// `--deposit`, else asked on a terminal, else the full deposit.
async fn deposit(a: &UpArgs, ui: &mut Ui, o: &OfferingSummary) -> Result<u64, UpError> {
    if let Some(d) = &a.deposit {
        return Ok(parse_deposit(d, o)?);
    }
    if a.yes || !ui.mode().can_ask() {
        return Ok(o.full_deposit);
    }
    loop {
        let q = format!(
            "Deposit in base units (Enter: full = {} = {}; min = {}): ",
            o.full_deposit,
            prix(o.full_deposit),
            o.min_deposit,
        );
        let Some(answer) = ui.ask(&q).await else {
            return Err(UpError::Declined);
        };
        match parse_deposit(&answer, o) {
            Ok(d) => return Ok(d),
            Err(
                e @ (offers::PickError::BadDeposit(_) | offers::PickError::BelowMinimum { .. }),
            ) => ui.note(&e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
}
