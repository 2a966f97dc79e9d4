//! `adapter-client ls`: the client's channels (ListChannels of the client core: status,
//! usage, money) with their local connection (the state files of the run directory).
//! The core is reused, or started for the listing when `up` made one before (its data
//! dir exists); with neither, there is nothing to list.

use serde_json::{json, Value};
use service_api::{Client, ClientChannel};

use super::args::LsArgs;
use super::core::{self, CoreSpec};
use super::down::{locals, Local};
use super::offers::prix_number;
use super::{api_err, UpError, API_TIMEOUT};
use crate::cli::{load_file_config, resolve_core_url, resolve_token};
use crate::runtime;

/// The `connection` of a channel (`null` when it has no state file).
fn connection(l: Option<&Local>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "phase": l.status.phase,
            "running": l.running,
            "pid": l.status.pid,
            "vpnAddress": l.status.vpn_address,
            "reason": l.status.reason,
        }),
    }
}

/// The table of `ls` (amounts in PRIX).
pub fn table(channels: &[ClientChannel], local: &[Local]) -> String {
    let header = [
        "CLIENT KEY",
        "AGENT",
        "STATUS",
        "LOCAL",
        "USED",
        "SPENT",
        "PAID",
        "DEPOSIT",
    ];
    let rows: Vec<[String; 8]> = channels
        .iter()
        .map(|c| {
            let l = local.iter().find(|l| l.status.client_key == c.client_key.0);
            let conn = match l {
                Some(l) if l.running => l.status.phase.as_str().to_string(),
                Some(l) => format!("({})", l.status.phase.as_str()),
                None => "-".into(),
            };
            let (agent, used) = match &c.offering {
                Some(o) => (
                    format!(
                        "{} {}",
                        o.market_url
                            .trim_start_matches("http://")
                            .trim_start_matches("https://"),
                        o.country
                    ),
                    format!("{}/{} {}", c.units_used, o.max_units, o.unit_name),
                ),
                None => ("-".into(), format!("{} units", c.units_used)),
            };
            [
                c.client_key.0.clone(),
                agent,
                c.status.as_str().to_string(),
                conn,
                used,
                c.amount_used.map_or("-".into(), prix_number),
                prix_number(c.amount_paid),
                prix_number(c.deposit),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Runs `ls`.
pub async fn run_ls(a: LsArgs) -> Result<u8, UpError> {
    let file = load_file_config(a.config.as_deref())?;
    let state_dir = a
        .user
        .state_dir
        .clone()
        .unwrap_or_else(core::default_state_dir);
    let spec = CoreSpec {
        url: resolve_core_url(a.core_url.as_deref(), &file),
        token: resolve_token(a.token.as_ref(), a.token_file.as_deref(), &file)?,
        may_start: state_dir.join("core").is_dir(),
        state_dir,
        core_bin: a.user.core_bin.clone(),
        module_dir: a.user.module_dir.clone(),
    };
    let run_dir = a
        .user
        .run_dir
        .clone()
        .unwrap_or_else(runtime::default_base_dir);
    let local = locals(&run_dir);
    let Some(mut handle) = core::ensure(&spec).await? else {
        if a.user.json {
            println!("[]");
        } else {
            println!(
                "no channels: no client core answers at {} and `up` has not made one in {}",
                spec.url,
                spec.state_dir.display()
            );
        }
        return Ok(0);
    };
    let listed = match Client::new(&handle.url, handle.token.clone(), API_TIMEOUT) {
        Ok(api) => api
            .list_channels()
            .await
            .map_err(api_err("listing the channels (ListChannels)")),
        Err(e) => Err(api_err("the client core's URL")(e)),
    };
    if let Some(m) = handle.started.take() {
        m.stop().await;
    }
    let channels = listed?.channels;
    if a.user.json {
        let docs: Vec<Value> = channels
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                let l = local.iter().find(|l| l.status.client_key == c.client_key.0);
                if let Value::Object(m) = &mut v {
                    m.insert("connection".into(), connection(l));
                }
                v
            })
            .collect();
        println!("{}", Value::Array(docs));
    } else if channels.is_empty() {
        println!("no channels yet: buy one with `adapter-client up AGENT_URL`");
    } else {
        print!("{}", table(&channels, &local));
        println!("(amounts in PRIX; SPENT: the units used, PAID: what the agent acknowledged)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_api::{ClientKey, ServiceStatus};

    #[test]
    fn the_table_shows_usage_money_and_the_connection() {
        let ch = ClientChannel {
            channel_id: "cc-1".into(),
            client_key: ClientKey("c-79474bcb15a112c0b2c1".into()),
            status: ServiceStatus::Active,
            status_since_ms: 0,
            created_at_ms: 0,
            deposit: 3_000_000,
            bytes_total: 7_500_000,
            units_used: 7,
            open_session: None,
            amount_paid: 800_000,
            offering: Some(crate::up::offers::tests::offer('a', 100_000, 0, "DE")),
            amount_used: Some(700_000),
            payments_paused: false,
        };
        let mut imported = ch.clone();
        imported.client_key = ClientKey("c-imported".into());
        imported.offering = None;
        imported.amount_used = None;
        let t = table(&[ch, imported], &[]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines.iter().all(|l| l.len() < 100),
            "fits a 100-column terminal: {t}"
        );
        assert!(lines[0].starts_with("CLIENT KEY "), "{t}");
        assert!(lines[1].contains("10.77.0.1:7710 DE"), "{t}");
        assert!(lines[1].contains("7/100 MB"), "{t}");
        assert!(
            lines[1].contains("0.007  ") && lines[1].ends_with("0.03"),
            "{t}"
        );
        assert!(
            lines[2].contains("c-imported") && lines[2].contains("7 units"),
            "{t}"
        );
    }
}
