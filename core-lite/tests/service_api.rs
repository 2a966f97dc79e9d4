//! Every Service API operation over real HTTP against a real SQLite file, through the typed
//! client and through raw requests for the hostile cases.

use std::time::Duration;

use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{
    AuthClientRequest, Client, ClientKey, ErrorCode, GetAccessRequest, Secret, ServiceStatus,
    SessionId, SetProductConfigRequest, StartSessionRequest, StopSessionRequest,
    UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(5);

struct Agent {
    core: TestCore,
    product_token: Secret,
    offering: String,
}

async fn agent(max_units: u64) -> anyhow::Result<Agent> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, product_token) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let offering = core.publish_offering(&pid, &vpn_offering_input(max_units, Some(("8", "4"))))?;
    Ok(Agent {
        core,
        product_token,
        offering,
    })
}

fn client(core: &TestCore, token: &Secret) -> Client {
    Client::new(&core.url, token.clone(), T).expect("client")
}

fn code(e: &service_api::ApiError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test]
async fn auth_client_accepts_the_password_and_refuses_others() -> anyhow::Result<()> {
    let a = agent(100).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let access = a.core.export_access(&key.0)?;
    let c = client(&a.core, &a.product_token);
    let ok = c
        .auth_client(&AuthClientRequest {
            client_key: key.clone(),
            password: access.password.clone(),
            client_addr: Some("198.51.100.7:40000".into()),
        })
        .await?;
    assert_eq!(ok.status, ServiceStatus::Activating);
    assert_eq!(ok.speed.max_download_bps, Some(8_000_000));
    assert_eq!(ok.speed.max_upload_bps, Some(4_000_000));

    let bad = c
        .auth_client(&AuthClientRequest {
            client_key: key.clone(),
            password: Secret("wrong".into()),
            client_addr: None,
        })
        .await
        .expect_err("wrong password");
    assert_eq!(code(&bad), Some(ErrorCode::AuthFailed));
    let unknown = c
        .auth_client(&AuthClientRequest {
            client_key: ClientKey("c-nobody".into()),
            password: access.password.clone(),
            client_addr: None,
        })
        .await
        .expect_err("unknown key");
    assert_eq!(code(&unknown), Some(ErrorCode::AuthFailed));

    // A terminated channel is refused with its status.
    a.core
        .set_channel_status(&key.0, ServiceStatus::Terminating, "test")?;
    let e = c
        .auth_client(&AuthClientRequest {
            client_key: key.clone(),
            password: access.password,
            client_addr: None,
        })
        .await
        .expect_err("terminated");
    match e {
        service_api::ApiError::Api { code, status, .. } => {
            assert_eq!(code, ErrorCode::ChannelInactive);
            assert_eq!(status, Some(ServiceStatus::Terminated));
        }
        other => panic!("unexpected {other}"),
    }
    Ok(())
}

/// Issue 11 item 6: failures with a client key never lock its owner out. An attacker
/// hammering one key from one address gets its failures delayed, then 429 unchecked; the
/// right password from another address keeps being accepted, and at once.
#[tokio::test]
async fn guessing_is_throttled_but_the_right_password_is_never_refused() -> anyhow::Result<()> {
    use core_lite::service::limiter::{ADDRESS_FAILURES, FAILURE_DELAY_STEP};
    let a = agent(100).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let access = a.core.export_access(&key.0)?;
    let c = client(&a.core, &a.product_token);
    let login = |password: &Secret, addr: &str| AuthClientRequest {
        client_key: key.clone(),
        password: password.clone(),
        client_addr: Some(addr.into()),
    };
    let guess = Secret("guess".into());
    const ATTACKER: &str = "198.51.100.9:40000";
    const OWNER: &str = "203.0.113.5:50000";

    // The attacker: 4 connections, 12 wrong guesses each, all at once. Meanwhile the owner
    // logs in again and again from its own address.
    let attack = (0..4).map(|_| {
        let (c, req) = (c.clone(), login(&guess, ATTACKER));
        tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..12 {
                codes.push(code(
                    &c.auth_client(&req).await.expect_err("wrong password"),
                ));
            }
            codes
        })
    });
    let attack: Vec<_> = attack.collect();
    for _ in 0..20 {
        let ok = c.auth_client(&login(&access.password, OWNER)).await?;
        assert_eq!(ok.channel_id, a.core.channel(&key.0)?.channel_id);
    }
    let mut codes = Vec::new();
    for t in attack {
        codes.extend(t.await?);
    }
    let failed = codes
        .iter()
        .filter(|c| **c == Some(ErrorCode::AuthFailed))
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == Some(ErrorCode::RateLimited))
        .count();
    assert_eq!(failed + limited, codes.len(), "{codes:?}");
    // Only the address's budget of guesses was checked (one more per 6 s of the test).
    assert!(
        failed >= 1 && failed <= ADDRESS_FAILURES as usize + 1,
        "{codes:?}"
    );
    assert!(limited >= 30, "{codes:?}");

    // The attacker's address is refused without its password being looked at, even the
    // right one.
    let e = c
        .auth_client(&login(&access.password, ATTACKER))
        .await
        .expect_err("address over its budget");
    assert_eq!(code(&e), Some(ErrorCode::RateLimited));
    assert!(e.to_string().contains("not checked"), "{e}");

    // A new guess (a fresh address) is answered late; the owner's right password, sent at
    // the same moment, is answered at once: first.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let (wrong, right) = tokio::join!(
        async {
            let r = c.auth_client(&login(&guess, "192.0.2.200:1")).await;
            let _ = done_tx.send("wrong");
            r
        },
        async {
            let r = c.auth_client(&login(&access.password, OWNER)).await;
            let _ = done_tx.send("right");
            r
        }
    );
    assert_eq!(
        code(&wrong.expect_err("wrong")),
        Some(ErrorCode::AuthFailed)
    );
    right?;
    assert_eq!(
        done.recv().await,
        Some("right"),
        "the right password waited"
    );
    // Failures of this key are delayed by at least one step each (the key has failed often).
    let started = std::time::Instant::now();
    let e = c
        .auth_client(&login(&guess, "192.0.2.201:1"))
        .await
        .expect_err("wrong");
    assert_eq!(code(&e), Some(ErrorCode::AuthFailed));
    assert!(started.elapsed() >= FAILURE_DELAY_STEP);
    Ok(())
}

/// Issue 11 item 6: a failure's delay is waited out holding no blocking thread and no
/// database connection: while many failures wait, reads and writes go on.
#[tokio::test]
async fn delayed_failures_hold_no_database_connection() -> anyhow::Result<()> {
    let a = agent(1000).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), Some("d-1")))
        .await?;
    // 40 wrong guesses for one key from 40 addresses: answered late (the key's delay grows).
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let (c, key, done_tx) = (c.clone(), key.clone(), done_tx.clone());
            tokio::spawn(async move {
                let r = c
                    .auth_client(&AuthClientRequest {
                        client_key: key,
                        password: Secret("guess".into()),
                        client_addr: Some(format!("10.9.0.{i}")),
                    })
                    .await;
                let _ = done_tx.send("guess");
                r
            })
        })
        .collect();
    // Meanwhile: reads (more than the pool's reader connections) and writes.
    let admin = client(&a.core, &a.core.admin_token);
    for i in 1..=10u64 {
        c.update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: i,
            bytes_out: i,
        })
        .await?;
        admin.channel_info(&key.0).await?;
        a.core.channel(&key.0)?;
    }
    let _ = done_tx.send("work");
    // The work finished while most guesses were still waiting for their answer (had each
    // held one of the 4 reader connections while it waited, the reads would have queued
    // behind nearly all of them).
    let mut before_work = 0;
    while let Some(what) = done.recv().await {
        if what == "work" {
            break;
        }
        before_work += 1;
    }
    assert!(
        before_work < 30,
        "{before_work} guesses were answered before the work was done"
    );
    for g in guesses {
        assert_eq!(
            code(&g.await?.expect_err("wrong")),
            Some(ErrorCode::AuthFailed)
        );
    }
    Ok(())
}

#[tokio::test]
async fn sessions_count_cumulatively_and_exactly() -> anyhow::Result<()> {
    let a = agent(1000).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest {
            client_key: key.clone(),
            connection_id: Some("k|1.2.3.4:5|100".into()),
            client_addr: Some("1.2.3.4:5".into()),
            vpn_addr: Some("10.8.0.2".into()),
        })
        .await?;
    assert_eq!(s.status, ServiceStatus::Active);
    assert_eq!(s.speed.max_download_bps, Some(8_000_000));
    let up = |i, o| UpdateSessionRequest {
        session_id: s.session_id.clone(),
        bytes_in: i,
        bytes_out: o,
    };
    let r = c.update_session(&up(1_000, 2_000)).await?;
    assert_eq!(
        (r.bytes_in, r.bytes_out, r.channel_bytes),
        (1_000, 2_000, 3_000)
    );
    // Replayed: nothing changes.
    let r = c.update_session(&up(1_000, 2_000)).await?;
    assert_eq!(r.channel_bytes, 3_000);
    // Older (reordered): nothing goes backwards.
    let r = c.update_session(&up(500, 1_500)).await?;
    assert_eq!(
        (r.bytes_in, r.bytes_out, r.channel_bytes),
        (1_000, 2_000, 3_000)
    );
    let r = c.update_session(&up(1_500_000, 2_000)).await?;
    assert_eq!(r.channel_bytes, 1_502_000);
    assert_eq!(r.units_used, 1);

    // The same connection id (an adapter restarted) resumes the session, not a new one.
    let again = c
        .start_session(&StartSessionRequest::new(
            key.clone(),
            Some("k|1.2.3.4:5|100"),
        ))
        .await?;
    assert_eq!(again.session_id, s.session_id);
    assert_eq!((again.bytes_in, again.bytes_out), (1_500_000, 2_000));

    let stop = c
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 1_500_100,
            bytes_out: 2_100,
        })
        .await?;
    assert!(stop.stopped);
    assert_eq!(stop.channel_bytes, 1_502_200);
    // Stop again with lower counts, or an older usage report after the stop: nothing
    // changes, and the report is answered `closed`.
    let stop2 = c
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 1_000,
            bytes_out: 1_000,
        })
        .await?;
    assert!(!stop2.stopped);
    assert_eq!(stop2.channel_bytes, 1_502_200);
    let late = c.update_session(&up(1_000, 0)).await?;
    assert_eq!(late.channel_bytes, 1_502_200);
    assert!(late.closed);
    assert!(!stop2.stopped);
    // A later StopSession with higher final counts (OpenVPN's exact counters arriving after
    // the monitor stopped with its last bytecount) raises them.
    let exact = c
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 1_500_150,
            bytes_out: 2_100,
        })
        .await?;
    assert!(!exact.stopped);
    assert_eq!(exact.channel_bytes, 1_502_250);
    // StartSession with the stopped connection's id finds it again (no new session).
    let found = c
        .start_session(&StartSessionRequest::new(
            key.clone(),
            Some("k|1.2.3.4:5|100"),
        ))
        .await?;
    assert_eq!(found.session_id, s.session_id);
    assert_eq!(a.core.channel(&key.0)?.open_session, None);

    // A second connection opens a new session and adds to the channel.
    let s2 = c
        .start_session(&StartSessionRequest::new(
            key.clone(),
            Some("k|1.2.3.4:6|200"),
        ))
        .await?;
    assert_ne!(s2.session_id, s.session_id);
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s2.session_id.clone(),
            bytes_in: 10,
            bytes_out: 20,
        })
        .await?;
    assert_eq!(r.channel_bytes, 1_502_280);
    // A StartSession with another connection closes the stale open session.
    let s3 = c
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await?;
    let info = a.core.channel(&key.0)?;
    assert_eq!(info.open_session, Some(s3.session_id.clone()));
    assert_eq!(info.bytes_total, 1_502_280);
    // The replaced session's connection may live on (the client logged in again on another
    // server): what it still reports is counted, and its answer tells its adapter to cut it.
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s2.session_id.clone(),
            bytes_in: 1_010,
            bytes_out: 20,
        })
        .await?;
    assert!(r.closed, "the replaced session is answered closed");
    assert_eq!(r.channel_bytes, 1_503_280);
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s3.session_id,
            bytes_in: 5,
            bytes_out: 0,
        })
        .await?;
    assert!(!r.closed, "the open session is not closed");
    assert_eq!(r.channel_bytes, 1_503_285);
    Ok(())
}

#[tokio::test]
async fn max_units_terminates_and_stop_finishes() -> anyhow::Result<()> {
    let a = agent(10).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await?;
    // The budget: every byte of maxUnits (10 MB), then what is left after each report.
    assert_eq!(s.remaining_bytes, Some(10_000_000));
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 4_000_000,
            bytes_out: 5_999_999,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Active);
    assert_eq!(r.remaining_bytes, Some(1));
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 4_000_000,
            bytes_out: 6_000_000,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Terminating);
    assert_eq!(r.units_used, 10);
    assert_eq!(r.remaining_bytes, Some(0));
    let st = c
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 4_000_000,
            bytes_out: 6_000_000,
        })
        .await?;
    assert_eq!(st.status, ServiceStatus::Terminated);
    let hist: Vec<ServiceStatus> = a
        .core
        .channel(&key.0)?
        .history
        .iter()
        .map(|h| h.status)
        .collect();
    assert_eq!(
        hist,
        [
            ServiceStatus::Pending,
            ServiceStatus::Activating,
            ServiceStatus::Active,
            ServiceStatus::Terminating,
            ServiceStatus::Terminated
        ]
    );
    // No new session on a terminated channel.
    let e = c
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await
        .expect_err("terminated");
    assert_eq!(code(&e), Some(ErrorCode::ChannelInactive));
    Ok(())
}

/// Reports that stay within one unit skip the billing rules (no status can change); their
/// answer must still carry the budget the rules would give.
#[tokio::test]
async fn reports_within_one_unit_answer_the_exact_budget() -> anyhow::Result<()> {
    let a = agent(1000).await?;
    let (_, key) = a.core.create_channel(&a.offering, Some(500_000))?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await?;
    assert_eq!(s.remaining_bytes, Some(5_000_000));
    for (bytes_in, bytes_out, left) in [
        (1_000_001, 0, 3_999_999),
        (1_500_000, 0, 3_500_000),
        (1_500_000, 499_999, 3_000_001),
        (1_500_000, 499_999, 3_000_001),
        (4_000_000, 999_999, 1),
    ] {
        let r = c
            .update_session(&UpdateSessionRequest {
                session_id: s.session_id.clone(),
                bytes_in,
                bytes_out,
            })
            .await?;
        assert_eq!(r.status, ServiceStatus::Active);
        assert_eq!(
            r.remaining_bytes,
            Some(left),
            "after {bytes_in} + {bytes_out}"
        );
        assert_eq!(r.channel_bytes, bytes_in + bytes_out);
    }
    assert_eq!(a.core.channel(&key.0)?.bytes_total, 4_999_999);
    Ok(())
}

#[tokio::test]
async fn deposit_exhaustion_terminates() -> anyhow::Result<()> {
    let a = agent(1000).await?;
    // 0.001 PRIX per MB = 100_000 base units; a deposit of 5 MB.
    let (_, key) = a.core.create_channel(&a.offering, Some(500_000))?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), None))
        .await?;
    // The deposit, not maxUnits (1000 MB), bounds the budget.
    assert_eq!(s.remaining_bytes, Some(5_000_000));
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 4_999_999,
            bytes_out: 0,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Active);
    assert_eq!(r.remaining_bytes, Some(1));
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id,
            bytes_in: 5_000_000,
            bytes_out: 0,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Terminating);
    // Below the minimum deposit (setupPrice + minUnits·unitPrice = 100_000): refused.
    let e = a
        .core
        .create_channel(&a.offering, Some(99_999))
        .expect_err("too low");
    assert!(e.to_string().contains("minimum"), "{e}");
    Ok(())
}

#[tokio::test]
async fn inactive_channel_is_terminated_by_the_timer() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, _) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(100, None);
    input["maxInactiveTime"] = serde_json::json!(0);
    let offering = core.publish_offering(&pid, &input)?;
    let (_, key) = core.create_channel(&offering, None)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = core.channel(&key.0)?.status;
        if st == ServiceStatus::Terminated {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {st} after 10 s with maxInactiveTime 0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = core.channel(&key.0)?.history;
    assert!(
        h.iter().any(|c| c.reason.contains("maxInactiveTime")),
        "{h:?}"
    );
    Ok(())
}

#[tokio::test]
async fn suspended_too_long_is_terminated() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, _) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(100, None);
    input["maxSuspendTime"] = serde_json::json!(0);
    let offering = core.publish_offering(&pid, &input)?;
    let (_, key) = core.create_channel(&offering, None)?;
    core.set_channel_status(&key.0, ServiceStatus::Suspending, "test")?;
    // No open session: suspending settles to suspended at once, then the timer ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while core.channel(&key.0)?.status != ServiceStatus::Terminated {
        assert!(std::time::Instant::now() < deadline, "not terminated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<_> = core
        .channel(&key.0)?
        .history
        .iter()
        .map(|h| h.status)
        .collect();
    assert!(statuses.contains(&ServiceStatus::Suspended), "{statuses:?}");
    Ok(())
}

#[tokio::test]
async fn product_config_and_access_message() -> anyhow::Result<()> {
    let a = agent(100).await?;
    let c = client(&a.core, &a.product_token);
    let mut cfg = std::collections::BTreeMap::new();
    cfg.insert("proto".to_string(), "udp".to_string());
    cfg.insert("port".to_string(), "1194".to_string());
    let r = c
        .set_product_config(&SetProductConfigRequest {
            config: cfg.clone(),
        })
        .await?;
    assert!(r.changed);
    let r = c
        .set_product_config(&SetProductConfigRequest {
            config: cfg.clone(),
        })
        .await?;
    assert!(!r.changed, "identical config is no change");
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let msg = a.core.export_access(&key.0)?;
    assert_eq!(msg.username, key);
    assert_eq!(msg.service_endpoint_address, "192.0.2.1:1194");
    assert_eq!(
        msg.additional_params.get("proto").map(String::as_str),
        Some("udp")
    );
    assert_eq!(
        msg.additional_params
            .get("maxDownloadSpeed")
            .map(String::as_str),
        Some("8")
    );
    assert!(msg.password.expose().len() >= 22, "≥128-bit password");

    // Client side: a separate core imports it and serves it with GetAccess.
    let client_core = TestCore::start().await?;
    client_core.register_vpn_module()?;
    let ct = client_core.create_client_token()?;
    let cc = client(&client_core, &ct);
    let e = cc
        .get_access(&GetAccessRequest {
            client_key: key.clone(),
        })
        .await
        .expect_err("not imported yet");
    assert_eq!(code(&e), Some(ErrorCode::NotFound));
    client_core.import_access(&msg)?;
    let got = cc
        .get_access(&GetAccessRequest {
            client_key: key.clone(),
        })
        .await?;
    assert_eq!(got, msg);
    // Client-side sessions on the client core.
    let s = cc
        .start_session(&StartSessionRequest::new(key.clone(), Some("1")))
        .await?;
    let u = cc
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 7,
            bytes_out: 8,
        })
        .await?;
    assert_eq!(u.channel_bytes, 15);
    // Tokens are not interchangeable between roles.
    let e = cc
        .auth_client(&AuthClientRequest {
            client_key: key.clone(),
            password: msg.password.clone(),
            client_addr: None,
        })
        .await
        .expect_err("client token");
    assert_eq!(code(&e), Some(ErrorCode::Forbidden));
    let e = c
        .get_access(&GetAccessRequest { client_key: key })
        .await
        .expect_err("product token");
    assert_eq!(code(&e), Some(ErrorCode::Forbidden));
    // A product token cannot touch the client core's sessions (another token's realm).
    let e = client(&client_core, &a.product_token)
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id,
            bytes_in: 1,
            bytes_out: 1,
        })
        .await
        .expect_err("foreign token");
    assert_eq!(code(&e), Some(ErrorCode::Unauthorized));
    Ok(())
}

#[tokio::test]
async fn usage_survives_a_restart() -> anyhow::Result<()> {
    let mut a = agent(1000).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let c = client(&a.core, &a.product_token);
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), Some("x")))
        .await?;
    c.update_session(&UpdateSessionRequest {
        session_id: s.session_id.clone(),
        bytes_in: 123_456,
        bytes_out: 654_321,
    })
    .await?;
    a.core.restart().await?;
    let r = c
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 123_456,
            bytes_out: 654_321,
        })
        .await?;
    assert_eq!(r.channel_bytes, 777_777);
    assert_eq!(r.status, ServiceStatus::Active);
    Ok(())
}

/// Raw HTTP: the hostile cases answer the right 4xx with a JSON error body.
#[tokio::test]
async fn bad_requests_get_clear_4xx() -> anyhow::Result<()> {
    let a = agent(100).await?;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{}", a.core.url, p);
    let tok = a.product_token.expose().to_string();
    // (path, bearer token, body, HTTP status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "/v1/AuthClient",
            Some(&tok),
            b"{bad json".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/AuthClient",
            Some(&tok),
            b"".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/AuthClient",
            Some(&tok),
            b"[1,2]".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/AuthClient",
            Some(&tok),
            br#"{"clientKey":"a","password":"b","x":1}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/AuthClient",
            Some(&tok),
            vec![b'a'; 200_000],
            413,
            "payload_too_large",
        ),
        (
            "/v1/AuthClient",
            None,
            br#"{"clientKey":"a","password":"b"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            "/v1/AuthClient",
            None,
            b"{bad".to_vec(),
            401,
            "unauthorized",
        ),
        (
            "/v1/AuthClient",
            Some("wrong-token"),
            br#"{"clientKey":"a","password":"b"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            "/v1/UpdateSession",
            Some(&tok),
            br#"{"sessionId":"s-none","bytesIn":1,"bytesOut":1}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            "/v1/UpdateSession",
            Some(&tok),
            br#"{"sessionId":"s","bytesIn":-1,"bytesOut":1}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/UpdateSession",
            Some(&tok),
            br#"{"sessionId":"s","bytesIn":1e30,"bytesOut":1}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/UpdateSession",
            Some(&tok),
            br#"{"sessionId":"s","bytesIn":18446744073709551615,"bytesOut":1}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            "/v1/StartSession",
            Some(&tok),
            br#"{"clientKey":"c-unknown"}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            "/v1/StartSession",
            Some(&tok),
            format!(r#"{{"clientKey":"{}"}}"#, "k".repeat(300)).into_bytes(),
            400,
            "bad_request",
        ),
        (
            "/v1/StartSession",
            Some(&tok),
            br#"{"clientKey":"a\nb"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/SetProductConfig",
            Some(&tok),
            br#"{"config":{"bad key":"x"}}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            "/v1/SetProductConfig",
            Some(&tok),
            br#"{"config":{"serviceEndpointAddress":"x\ny"}}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            "/v1/GetAccess",
            Some(&tok),
            br#"{"clientKey":"x"}"#.to_vec(),
            403,
            "forbidden",
        ),
        ("/v1/Nope", Some(&tok), b"{}".to_vec(), 404, "not_found"),
        // Every request is an object: an array is refused even where every field is
        // optional.
        (
            "/v1/WatchStatus",
            Some(&tok),
            b"[null, null]".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/v1/UpdateSessions",
            Some(&tok),
            br#"{"updates":[]}"#.to_vec(),
            422,
            "invalid",
        ),
    ];
    for (path, token, body, want_status, want_code) in cases {
        let mut rq = http
            .post(url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        let resp = rq.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: non-JSON error body {text:?}: {e}"))?;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{path} {:?} -> {text}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // The server is still fine afterwards.
    let h = http.get(url("/health")).send().await?;
    assert_eq!(h.status().as_u16(), 200);
    Ok(())
}

#[tokio::test]
async fn openapi_document_is_served() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    let v: serde_json::Value = reqwest::get(format!("{}/openapi.json", core.url))
        .await?
        .json()
        .await?;
    let text = v.to_string();
    for op in [
        "AuthClient",
        "SetProductConfig",
        "StartSession",
        "UpdateSession",
        "StopSession",
        "GetAccess",
    ] {
        assert!(text.contains(&format!("\"operationId\":\"{op}\"")), "{op}");
    }
    Ok(())
}

#[tokio::test]
async fn admin_channel_endpoint_needs_the_admin_token() -> anyhow::Result<()> {
    let a = agent(100).await?;
    let (id, key) = a.core.create_channel(&a.offering, None)?;
    let admin = client(&a.core, &a.core.admin_token);
    let info = admin.channel_info(&key.0).await?;
    assert_eq!(info.channel_id, id);
    assert_eq!(info.status, ServiceStatus::Activating);
    let e = client(&a.core, &a.product_token)
        .channel_info(&key.0)
        .await
        .expect_err("product token");
    assert_eq!(code(&e), Some(ErrorCode::Forbidden));
    let _ = SessionId("unused".into());
    Ok(())
}

#[tokio::test]
async fn supply_bounds_open_channels() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, _) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(100, None);
    input["supply"] = serde_json::json!(2);
    let offering = core.publish_offering(&pid, &input)?;
    let (_, k1) = core.create_channel(&offering, None)?;
    core.create_channel(&offering, None)?;
    let e = core.create_channel(&offering, None).expect_err("sold out");
    assert!(e.to_string().contains("sold out"), "{e}");
    core.set_channel_status(&k1.0, ServiceStatus::Terminating, "test")?;
    // A terminated channel frees its place.
    core.create_channel(&offering, None)?;
    Ok(())
}

#[tokio::test]
async fn module_registration_is_idempotent_and_refuses_changes() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    let first = core
        .core()
        .register_module(&core_lite::testkit::vpn_module_dir())?;
    assert!(first.newly_registered);
    let again = core
        .core()
        .register_module(&core_lite::testkit::vpn_module_dir())?;
    assert!(!again.newly_registered);
    assert_eq!(first.offering_template_hash, again.offering_template_hash);
    // Same name, changed template: refused with a clear message.
    let dir = tempfile::tempdir()?;
    for f in ["module.toml", "access.json"] {
        std::fs::copy(
            core_lite::testkit::vpn_module_dir().join(f),
            dir.path().join(f),
        )?;
    }
    let mut tpl: serde_json::Value = serde_json::from_slice(&std::fs::read(
        core_lite::testkit::vpn_module_dir().join("offering.json"),
    )?)?;
    tpl["schema"]["title"] = serde_json::json!("changed");
    std::fs::write(dir.path().join("offering.json"), serde_json::to_vec(&tpl)?)?;
    let e = core
        .core()
        .register_module(dir.path())
        .expect_err("changed");
    assert!(e.to_string().contains("already registered"), "{e}");
    Ok(())
}

#[tokio::test]
async fn operator_can_set_the_status_of_a_client_side_channel() -> anyhow::Result<()> {
    let a = agent(100).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let msg = a.core.export_access(&key.0)?;
    let c = TestCore::start().await?;
    c.register_vpn_module()?;
    c.import_access(&msg)?;
    c.set_channel_status(&key.0, ServiceStatus::Terminating, "operator")?;
    assert_eq!(c.channel(&key.0)?.status, ServiceStatus::Terminating);
    Ok(())
}

/// FindSession: the session of a connection id, open or stopped; never opens one.
#[tokio::test]
async fn find_session_finds_and_never_opens() -> anyhow::Result<()> {
    let a = agent(1000).await?;
    let (channel_id, key) = a.core.create_channel(&a.offering, None)?;
    let c = client(&a.core, &a.product_token);
    let find = |conn: &str| service_api::FindSessionRequest {
        client_key: key.clone(),
        connection_id: conn.into(),
    };
    let before = a.core.channel(&channel_id)?;
    let e = c
        .find_session(&find("k|1.2.3.4:5|100"))
        .await
        .expect_err("no session yet");
    assert_eq!(code(&e), Some(ErrorCode::NotFound));
    let after = a.core.channel(&channel_id)?;
    assert_eq!(after.status, before.status, "status changed");
    assert_eq!(after.open_session, None, "a session was opened");

    let s = c
        .start_session(&StartSessionRequest::new(
            key.clone(),
            Some("k|1.2.3.4:5|100"),
        ))
        .await?;
    let found = c.find_session(&find("k|1.2.3.4:5|100")).await?;
    assert_eq!(found.session_id, s.session_id);
    c.stop_session(&StopSessionRequest {
        session_id: s.session_id.clone(),
        bytes_in: 10,
        bytes_out: 20,
    })
    .await?;
    let found = c.find_session(&find("k|1.2.3.4:5|100")).await?;
    assert_eq!(
        (found.session_id, found.bytes_in, found.bytes_out),
        (s.session_id, 10, 20)
    );
    let e = c
        .find_session(&service_api::FindSessionRequest {
            client_key: ClientKey("c-unknown".into()),
            connection_id: "x".into(),
        })
        .await
        .expect_err("unknown key");
    assert_eq!(code(&e), Some(ErrorCode::NotFound));
    Ok(())
}

/// Issue 11 item 7: a channel's byte total cannot overflow. A few sessions each reporting
/// the largest allowed counters reach the 64-bit bound; the report that would pass it is
/// refused with 422 `usage_overflow` (no 500), nothing is recorded, and the core goes on.
#[tokio::test]
async fn a_channel_byte_total_that_would_overflow_is_refused_with_422() -> anyhow::Result<()> {
    use service_api::{MAX_BYTE_COUNT, MAX_CHANNEL_BYTES};
    let a = agent(100).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let msg = a.core.export_access(&key.0)?;
    // The client's core: its sessions have no billing, so nothing ends the channel early.
    let client_core = TestCore::start().await?;
    client_core.register_vpn_module()?;
    client_core.import_access(&msg)?;
    let c = client(&client_core, &client_core.create_client_token()?);
    let mut total = 0u64;
    for n in 1..=3 {
        let s = c
            .start_session(&StartSessionRequest::new(
                key.clone(),
                Some(&format!("s{n}")),
            ))
            .await?;
        let stop = StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: MAX_BYTE_COUNT,
            bytes_out: MAX_BYTE_COUNT,
        };
        if total + 2 * MAX_BYTE_COUNT <= MAX_CHANNEL_BYTES {
            let r = c.stop_session(&stop).await?;
            total += 2 * MAX_BYTE_COUNT;
            assert_eq!(r.channel_bytes, total);
            continue;
        }
        // The third: refused, by UpdateSession and StopSession alike, every time.
        let update = UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: MAX_BYTE_COUNT,
            bytes_out: 0,
        };
        for _ in 0..2 {
            let e = c.update_session(&update).await.expect_err("overflow");
            assert_eq!(code(&e), Some(ErrorCode::UsageOverflow), "{e}");
            assert!(matches!(
                e,
                service_api::ApiError::Api {
                    http_status: 422,
                    ..
                }
            ));
            let e = c.stop_session(&stop).await.expect_err("overflow");
            assert_eq!(code(&e), Some(ErrorCode::UsageOverflow), "{e}");
            assert!(e.to_string().contains("nothing was recorded"), "{e}");
        }
        // What fits is still recorded.
        let r = c
            .update_session(&UpdateSessionRequest {
                session_id: s.session_id.clone(),
                bytes_in: MAX_CHANNEL_BYTES - total,
                bytes_out: 0,
            })
            .await?;
        assert_eq!(r.channel_bytes, MAX_CHANNEL_BYTES);
        let r = c
            .stop_session(&StopSessionRequest {
                session_id: s.session_id.clone(),
                bytes_in: MAX_CHANNEL_BYTES - total,
                bytes_out: 0,
            })
            .await?;
        assert!(r.stopped);
    }
    let info = client_core.channel(&key.0)?;
    assert_eq!(info.bytes_total, MAX_CHANNEL_BYTES);
    Ok(())
}

/// Issue 12 item 5: UpdateSessions applies every report exactly like UpdateSession (same
/// answers, per-field maximum, billing, usage buckets), answers each in order, and a refused
/// entry does not stop the others.
#[tokio::test]
async fn update_sessions_batch_answers_each_report_like_update_session() -> anyhow::Result<()> {
    use service_api::UpdateSessionsRequest;
    let a = agent(10).await?;
    let c = client(&a.core, &a.product_token);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (id, key) = a.core.create_channel(&a.offering, None)?;
        let s = c
            .start_session(&StartSessionRequest::new(key.clone(), None))
            .await?;
        sessions.push((id, key, s.session_id));
    }
    let up = |s: &SessionId, i: u64, o: u64| UpdateSessionRequest {
        session_id: s.clone(),
        bytes_in: i,
        bytes_out: o,
    };
    // A single report first, for the reference.
    let single = c.update_session(&up(&sessions[0].2, 1_000, 2_000)).await?;
    let unknown = SessionId("s-unknown".into());
    let r = c
        .update_sessions(&UpdateSessionsRequest {
            updates: vec![
                up(&sessions[0].2, 1_000, 2_000),
                up(&unknown, 1, 1),
                up(&sessions[1].2, 4_000_000, 6_000_000),
                up(&sessions[0].2, 500, 3_000),
                up(&sessions[2].2, 7, 8),
            ],
        })
        .await?;
    let ids: Vec<&str> = r.results.iter().map(|x| x.session_id.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            sessions[0].2 .0.as_str(),
            "s-unknown",
            sessions[1].2 .0.as_str(),
            sessions[0].2 .0.as_str(),
            sessions[2].2 .0.as_str()
        ]
    );
    // A replay answers what the single report answered.
    assert_eq!(r.results[0].update.as_ref(), Some(&single));
    let err = r.results[1]
        .error
        .as_ref()
        .expect("unknown session refused");
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(r.results[1].update.is_none());
    // maxUnits reached inside the batch: terminating, no budget left.
    let ended = r.results[2].update.as_ref().expect("second");
    assert_eq!(ended.status, ServiceStatus::Terminating);
    assert_eq!(ended.remaining_bytes, Some(0));
    // Per-field maximum across the batch.
    let s0 = r.results[3].update.as_ref().expect("fourth");
    assert_eq!((s0.bytes_in, s0.bytes_out), (1_000, 3_000));
    assert_eq!(s0.remaining_bytes, Some(10_000_000 - 4_000));
    assert_eq!(a.core.channel(&sessions[0].1 .0)?.bytes_total, 4_000);
    assert_eq!(a.core.channel(&sessions[1].1 .0)?.bytes_total, 10_000_000);
    assert_eq!(a.core.channel(&sessions[2].1 .0)?.bytes_total, 15);
    // The usage buckets got every byte, as from single reports.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    a.core.core().flush_usage_series(now + 120_000, true)?;
    for (id, _, _) in &sessions {
        let series = a.core.core().usage_series(id, now + 120_000)?;
        let total: u64 = series
            .buckets
            .iter()
            .map(|b| b.bytes_in + b.bytes_out)
            .sum();
        assert_eq!(total, a.core.channel(id)?.bytes_total, "{id}");
    }
    // The limits of the request.
    let e = c
        .update_sessions(&UpdateSessionsRequest { updates: vec![] })
        .await
        .expect_err("empty");
    assert_eq!(code(&e), Some(ErrorCode::Invalid));
    let e = c
        .update_sessions(&UpdateSessionsRequest {
            updates: vec![up(&sessions[2].2, service_api::MAX_BYTE_COUNT + 1, 0)],
        })
        .await
        .expect_err("over the maximum");
    assert_eq!(code(&e), Some(ErrorCode::Invalid));
    Ok(())
}

/// Issue 12 item 2: WatchStatus answers a status change of the product's channels as soon
/// as it happens (long-poll), resumes from the cursor without missing or repeating one, and
/// shows nothing of other products.
#[tokio::test]
async fn watch_status_pushes_changes_from_a_cursor() -> anyhow::Result<()> {
    use service_api::WatchStatusRequest;
    let a = agent(10).await?;
    let (id, key) = a.core.create_channel(&a.offering, None)?;
    let (other_pid, _) = a.core.create_product("vpn-2", "192.0.2.2:1194")?;
    let other_offering = a
        .core
        .publish_offering(&other_pid, &vpn_offering_input(10, None))?;
    let (other_id, _) = a.core.create_channel(&other_offering, None)?;
    let c = client(&a.core, &a.product_token);
    let watcher = c.with_timeout(Duration::from_secs(20))?;
    // Subscribe: the current cursor at once.
    let sub = watcher
        .watch_status(&WatchStatusRequest {
            cursor: None,
            wait_ms: Some(10_000),
        })
        .await?;
    assert!(sub.changes.is_empty());
    let waiting = tokio::spawn({
        let w = watcher.clone();
        let cursor = sub.cursor;
        async move {
            w.watch_status(&WatchStatusRequest {
                cursor: Some(cursor),
                wait_ms: Some(15_000),
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered without a change");
    a.core
        .set_channel_status(&other_id, ServiceStatus::Suspending, "other product")?;
    a.core
        .set_channel_status(&id, ServiceStatus::Suspending, "test")?;
    let got = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    // Suspending, then at once suspended (no session): only this product's channel.
    let statuses: Vec<_> = got.changes.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [ServiceStatus::Suspending, ServiceStatus::Suspended],
        "{got:?}"
    );
    assert!(got.changes.iter().all(|c| c.client_key == key), "{got:?}");
    assert_eq!(got.cursor, got.changes[1].cursor);
    // Resume: a change made while nobody waited is answered by the next call, once.
    a.core
        .set_channel_status(&id, ServiceStatus::Terminating, "test")?;
    let next = watcher
        .watch_status(&WatchStatusRequest {
            cursor: Some(got.cursor),
            wait_ms: Some(0),
        })
        .await?;
    let statuses: Vec<_> = next.changes.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [ServiceStatus::Terminating, ServiceStatus::Terminated]
    );
    let empty = watcher
        .watch_status(&WatchStatusRequest {
            cursor: Some(next.cursor),
            wait_ms: Some(0),
        })
        .await?;
    assert!(empty.changes.is_empty(), "{empty:?}");
    let e = watcher
        .watch_status(&WatchStatusRequest {
            cursor: None,
            wait_ms: Some(30_001),
        })
        .await
        .expect_err("too long");
    assert_eq!(code(&e), Some(ErrorCode::Invalid));
    Ok(())
}
