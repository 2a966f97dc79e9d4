//! The market protocol over real HTTP between two in-process cores: fetch, verify, accept,
//! cheques, suspension for payment lag, resumption, termination, and every tampering case.

use std::time::Duration;

use core_lite::market::{self, signed_cheque, MarketClient};
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{
    Client, ClientKey, GetAccessRequest, Secret, ServiceStatus, StartSessionRequest,
    StopSessionRequest, UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(5);

struct Pair {
    agent: TestCore,
    client: TestCore,
    market_url: String,
    product_token: Secret,
    offering: String,
    mc: MarketClient,
}

async fn pair(edit: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<Pair> {
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (pid, product_token) = agent.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(1000, Some(("8", "4")));
    edit(&mut input);
    let offering = agent.publish_offering(&pid, &input)?;
    let market_url = agent.start_market().await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    Ok(Pair {
        agent,
        client,
        market_url,
        product_token,
        offering,
        mc: MarketClient::new(T)?,
    })
}

fn lag_terms(v: &mut serde_json::Value) {
    // 0.001 PRIX/MB, pay every 5 MB, suspend beyond 5 unpaid MB, postpaid (a postpaid lag
    // bound is at least one billing interval).
    v["billingType"] = "postpaid".into();
    v["billingInterval"] = 5.into();
    v["maxBillingUnitLag"] = 5.into();
    v["freeUnits"] = 0.into();
}

#[tokio::test]
async fn fetch_verify_accept_then_get_access() -> anyhow::Result<()> {
    let p = pair(|_| {}).await?;
    let report = market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    assert_eq!(report.accepted.len(), 1, "{report:?}");
    assert!(report.rejected.is_empty());
    let shown = &report.accepted[0];
    assert_eq!(shown.offering_hash, p.offering);
    assert_eq!(shown.unit_price, 100_000);
    assert_eq!(shown.max_download_mbps.as_deref(), Some("8"));

    let (_, key) =
        market::accept_offering(p.client.core(), &p.mc, &p.offering, Some(50_000_000)).await?;
    // The agent has the channel, bound to the client's key, with the deposit.
    let info = p.agent.channel(&key.0)?;
    assert_eq!(info.deposit, 50_000_000);
    assert_eq!(info.status, ServiceStatus::Activating);
    // GetAccess on the client's core serves it with no manual step.
    let ct = p.client.create_client_token()?;
    let got = Client::new(&p.client.url, ct, T)?
        .get_access(&GetAccessRequest {
            client_key: key.clone(),
        })
        .await?;
    assert_eq!(got, p.agent.export_access(&key.0)?);
    Ok(())
}

#[tokio::test]
async fn accept_respects_minimum_deposit_and_supply() -> anyhow::Result<()> {
    let p = pair(|v| v["supply"] = 1.into()).await?;
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    // minUnits 1 · 100_000 base units
    let e = market::accept_offering(p.client.core(), &p.mc, &p.offering, Some(99_999))
        .await
        .expect_err("below minimum");
    assert!(e.to_string().contains("minimum"), "{e}");
    assert!(
        p.agent.core().list_channels()?.is_empty(),
        "no state change"
    );
    market::accept_offering(p.client.core(), &p.mc, &p.offering, None).await?;
    // Sold out: no longer listed, and a second accept is refused.
    let report = market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    assert!(report.accepted.is_empty());
    // A second accept (a new channel) is refused: supply 1 is taken.
    let e = market::accept_offering(p.client.core(), &p.mc, &p.offering, None)
        .await
        .expect_err("sold out");
    assert!(e.to_string().contains("sold out"), "{e}");
    assert_eq!(p.agent.core().list_channels()?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn tampered_offering_and_unknown_template_are_rejected() -> anyhow::Result<()> {
    let p = pair(|_| {}).await?;
    // The agent's stored offering is altered after signing (unitPrice lowered).
    p.agent.core().db.write(|tx| {
        let signed = tx.test_query_text("SELECT signed FROM offerings", &[])?;
        let mut v: serde_json::Value = serde_json::from_str(&signed).expect("json");
        v["offering"]["unitPrice"] = serde_json::json!(0.00001);
        tx.test_exec("UPDATE offerings SET signed = ?1", &[&v.to_string()])?;
        Ok::<_, core_lite::store::StoreError>(())
    })?;
    let report = market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    assert!(report.accepted.is_empty());
    assert_eq!(report.rejected.len(), 1);
    assert!(
        report.rejected[0].1.contains("signature"),
        "{:?}",
        report.rejected
    );
    assert!(
        p.client.core().list_market_offerings()?.is_empty(),
        "nothing stored"
    );

    // A client that has not registered the template keeps nothing either.
    let p = pair(|_| {}).await?;
    let bare = TestCore::start().await?;
    let report = market::fetch_offerings(bare.core(), &p.mc, &p.market_url).await?;
    assert!(report.accepted.is_empty());
    assert!(
        report.rejected[0].1.contains("template"),
        "{:?}",
        report.rejected
    );
    Ok(())
}

#[tokio::test]
async fn access_signed_by_another_key_is_refused() -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let p = pair(|_| {}).await?;
    // A man in the middle: passes the offerings through, re-signs the access message.
    let upstream = p.market_url.clone();
    let mitm_keys = std::sync::Arc::new(core_lite::keys::AgentKeys::generate());
    let up2 = upstream.clone();
    let app = axum::Router::new()
        .route(
            market::paths::OFFERINGS,
            get(move || {
                let up = upstream.clone();
                async move {
                    let l = MarketClient::new(T)
                        .expect("mc")
                        .offerings(&up)
                        .await
                        .expect("upstream");
                    axum::Json(l)
                }
            }),
        )
        .route(
            market::paths::ACCEPT,
            post(move |axum::Json(req): axum::Json<market::AcceptRequest>| {
                let up = up2.clone();
                let k = mitm_keys.clone();
                async move {
                    let answer = MarketClient::new(T)
                        .expect("mc")
                        .accept(&up, None, &req)
                        .await
                        .expect("upstream");
                    match answer {
                        market::AccessEnvelope::Signed(mut s) => {
                            s.access.password = Secret("attacker-chosen-password".into());
                            s.signature = k.sign(b"anything");
                            axum::Json(market::AccessEnvelope::Signed(s))
                        }
                        // Sealed: the attacker swaps the ciphertext for its own.
                        market::AccessEnvelope::Sealed(mut s) => {
                            s.ciphertext = s.ciphertext.chars().rev().collect();
                            s.signature = k.sign(b"anything");
                            axum::Json(market::AccessEnvelope::Sealed(s))
                        }
                    }
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mitm = format!("http://{}", l.local_addr()?);
    tokio::spawn(async move { axum::serve(l, app).await });
    market::fetch_offerings(p.client.core(), &p.mc, &mitm).await?;
    let e = market::accept_offering(p.client.core(), &p.mc, &p.offering, None)
        .await
        .expect_err("forged access");
    assert!(
        e.to_string().contains("not signed by the offering's agent"),
        "{e}"
    );
    assert!(
        p.client.core().list_channels()?.is_empty(),
        "no access message stored"
    );
    Ok(())
}

/// Client-side usage through the client core's Service API.
async fn client_usage(p: &Pair, key: &ClientKey, bytes: u64) -> anyhow::Result<ServiceStatus> {
    let ct = p.client.create_client_token()?;
    let c = Client::new(&p.client.url, ct, T)?;
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), Some("c1")))
        .await?;
    Ok(c.update_session(&UpdateSessionRequest {
        session_id: s.session_id,
        bytes_in: bytes / 2,
        bytes_out: bytes - bytes / 2,
    })
    .await?
    .status)
}

#[tokio::test]
async fn cheques_forged_replayed_or_above_deposit_are_refused() -> anyhow::Result<()> {
    let p = pair(lag_terms).await?;
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    let (_, key) =
        market::accept_offering(p.client.core(), &p.mc, &p.offering, Some(5_000_000)).await?;
    let remote = p.agent.channel(&key.0)?.channel_id;
    let ck = &p.client.core().keys;
    let r =
        p.mc.cheque(&p.market_url, None, &signed_cheque(ck, &remote, 1_000_000)?)
            .await?;
    assert_eq!(r.amount_paid, 1_000_000);
    let paid = || -> anyhow::Result<u64> {
        Ok(p.agent.core().market_channel_status(&remote)?.amount_paid)
    };
    // Replayed.
    let e =
        p.mc.cheque(&p.market_url, None, &signed_cheque(ck, &remote, 1_000_000)?)
            .await
            .expect_err("replay");
    assert!(e.to_string().contains("replayed or older"), "{e}");
    // Older.
    let e =
        p.mc.cheque(&p.market_url, None, &signed_cheque(ck, &remote, 500_000)?)
            .await
            .expect_err("older");
    assert!(e.to_string().contains("replayed or older"), "{e}");
    // Forged: signed by another key.
    let other = core_lite::keys::AgentKeys::generate();
    let e =
        p.mc.cheque(
            &p.market_url,
            None,
            &signed_cheque(&other, &remote, 2_000_000)?,
        )
        .await
        .expect_err("forged");
    assert!(e.to_string().contains("signature"), "{e}");
    // Tampered amount.
    let mut c = signed_cheque(ck, &remote, 2_000_000)?;
    c.amount = 3_000_000;
    let e =
        p.mc.cheque(&p.market_url, None, &c)
            .await
            .expect_err("tampered");
    assert!(e.to_string().contains("signature"), "{e}");
    // Above the deposit.
    let e =
        p.mc.cheque(&p.market_url, None, &signed_cheque(ck, &remote, 5_000_001)?)
            .await
            .expect_err("above");
    assert!(e.to_string().contains("above the deposit"), "{e}");
    assert_eq!(
        paid()?,
        1_000_000,
        "no state change from any refused cheque"
    );
    // A manual channel takes no cheques.
    let (manual, _) = p.agent.create_channel(&p.offering, None)?;
    let e =
        p.mc.cheque(&p.market_url, None, &signed_cheque(ck, &manual, 1)?)
            .await
            .expect_err("manual");
    assert!(
        e.to_string().contains("not accepted over the market"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn lag_suspends_payment_resumes_deposit_terminates() -> anyhow::Result<()> {
    let p = pair(lag_terms).await?;
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    // Deposit for 30 MB.
    let (_, key) =
        market::accept_offering(p.client.core(), &p.mc, &p.offering, Some(3_000_000)).await?;
    p.client.core().set_payments_paused(&key.0, true)?;
    let a = Client::new(&p.agent.url, p.product_token.clone(), T)?;
    let s = a
        .start_session(&StartSessionRequest::new(key.clone(), Some("a1")))
        .await?;
    let report = |b: u64| UpdateSessionRequest {
        session_id: s.session_id.clone(),
        bytes_in: b / 2,
        bytes_out: b - b / 2,
    };
    // 5 MB unpaid: within the lag. 6 MB: suspending.
    assert_eq!(
        a.update_session(&report(5_000_000)).await?.status,
        ServiceStatus::Active
    );
    client_usage(&p, &key, 5_900_000).await?;
    let r = a.update_session(&report(6_000_000)).await?;
    assert_eq!(r.status, ServiceStatus::Suspending);
    // The adapter cuts the client and stops the session: suspended.
    let r = a
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 3_000_000,
            bytes_out: 3_000_000,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Suspended);
    // The client's payer, paused, pays nothing but mirrors the status.
    market::pay_round(&p.client.core_arc(), &p.mc, 10).await?;
    assert_eq!(p.client.channel(&key.0)?.status, ServiceStatus::Suspended);
    // Payments resume: the agent's count (6 MB) is within tolerance of ours (5.9 MB).
    p.client.core().set_payments_paused(&key.0, false)?;
    market::pay_round(&p.client.core_arc(), &p.mc, 10).await?;
    assert_eq!(p.agent.channel(&key.0)?.status, ServiceStatus::Activating);
    assert_eq!(p.client.channel(&key.0)?.status, ServiceStatus::Activating);
    assert_eq!(
        p.agent
            .core()
            .market_channel_status(&p.agent.channel(&key.0)?.channel_id)?
            .amount_paid,
        600_000
    );

    // Service again, until the deposit (30 MB) is used up: terminating.
    let s2 = a
        .start_session(&StartSessionRequest::new(key.clone(), Some("a2")))
        .await?;
    assert_eq!(s2.status, ServiceStatus::Active);
    let r = a
        .update_session(&UpdateSessionRequest {
            session_id: s2.session_id.clone(),
            bytes_in: 12_000_000,
            bytes_out: 12_000_000,
        })
        .await?;
    // 30 MB used, 6 paid: lag 24 > 5, and the deposit buys only 30 MB: termination wins.
    assert_eq!(r.status, ServiceStatus::Terminating);
    Ok(())
}

#[tokio::test]
async fn client_refuses_to_pay_beyond_its_own_measure() -> anyhow::Result<()> {
    let p = pair(lag_terms).await?;
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    let (_, key) =
        market::accept_offering(p.client.core(), &p.mc, &p.offering, Some(10_000_000)).await?;
    p.client.core().set_payments_paused(&key.0, true)?;
    let a = Client::new(&p.agent.url, p.product_token.clone(), T)?;
    let s = a
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await?;
    // The agent claims 40 MB; the client measured 10 MB.
    a.update_session(&UpdateSessionRequest {
        session_id: s.session_id,
        bytes_in: 20_000_000,
        bytes_out: 20_000_000,
    })
    .await?;
    client_usage(&p, &key, 10_000_000).await?;
    p.client.core().set_payments_paused(&key.0, false)?;
    market::pay_round(&p.client.core_arc(), &p.mc, 10).await?;
    let remote = p.agent.channel(&key.0)?.channel_id;
    let paid = p.agent.core().market_channel_status(&remote)?.amount_paid;
    // 10 MB + 10 % + 1 = 12 units at most: 1_200_000 base units, not 4_000_000.
    assert_eq!(paid, 1_200_000);
    assert_eq!(p.agent.channel(&key.0)?.status, ServiceStatus::Suspending);
    Ok(())
}

/// Anti-hoarding: a prepaid channel that pays nothing within the claim window is closed
/// and its supply returns; one that pays its first interval keeps going.
#[tokio::test]
async fn unclaimed_channels_are_released_and_their_supply_returns() -> anyhow::Result<()> {
    let p = pair(|v| v["supply"] = 1.into()).await?;
    p.agent.core().set_claim_window(Duration::from_millis(400));
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    // The client's core accepts but never pays (its payer does not run here).
    let (_, key) = market::accept_offering(p.client.core(), &p.mc, &p.offering, None).await?;
    assert!(
        p.agent.core().market_offerings()?.offerings.is_empty(),
        "the only unit of supply is taken"
    );
    let deadline = std::time::Instant::now() + T;
    while p.agent.channel(&key.0)?.status != ServiceStatus::Terminated {
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = p.agent.channel(&key.0)?.history;
    assert!(h.iter().any(|c| c.reason.contains("claim window")), "{h:?}");
    assert_eq!(
        p.agent.core().market_offerings()?.offerings.len(),
        1,
        "supply returned"
    );

    // A paying client keeps its channel past the window.
    let other = TestCore::start().await?;
    other.register_vpn_module()?;
    market::fetch_offerings(other.core(), &p.mc, &p.market_url).await?;
    let (_, key2) = market::accept_offering(other.core(), &p.mc, &p.offering, None).await?;
    market::pay_round(&other.core_arc(), &p.mc, 10).await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(p.agent.channel(&key2.0)?.status, ServiceStatus::Activating);
    Ok(())
}

/// A channel's status is read only with a request signed by its client key.
#[tokio::test]
async fn channel_reads_need_the_channel_key() -> anyhow::Result<()> {
    let p = pair(|_| {}).await?;
    market::fetch_offerings(p.client.core(), &p.mc, &p.market_url).await?;
    let (_, key) = market::accept_offering(p.client.core(), &p.mc, &p.offering, None).await?;
    let id = p.agent.channel(&key.0)?.channel_id;
    let url = format!("{}/market/v1/channels/{id}", p.market_url);
    let plain = reqwest::get(&url).await?;
    assert_eq!(plain.status().as_u16(), 401);
    let stranger = core_lite::keys::AgentKeys::generate();
    let signed_by = |k: &core_lite::keys::AgentKeys| {
        let path = format!("/market/v1/channels/{id}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut r = reqwest::Client::new().get(&url);
        for (n, v) in market::guard::sign_read(k, "GET", &path, ts) {
            r = r.header(n, v);
        }
        r
    };
    assert_eq!(signed_by(&stranger).send().await?.status().as_u16(), 401);
    assert_eq!(
        signed_by(&p.client.core().keys)
            .send()
            .await?
            .status()
            .as_u16(),
        200
    );
    // Through the client's market client (signed by its key).
    let view =
        p.mc.channel(&p.market_url, None, &id, &p.client.core().keys)
            .await?;
    assert_eq!(view.channel_id, id);
    Ok(())
}
