//! The billing rules through the real Service API (issue 11, items 1–4): free and trial
//! channels are admitted and usable up to `maxUnits`, the timers fire at their exact
//! deadline (time driven with [`Core::tick`](core_lite::service::Core::tick), not sleeps), a
//! stuck `suspending` channel times out, and contradictory offerings are refused at publish.

use std::time::Duration;

use core_lite::testkit::{vpn_offering_input, TestCore};
use serde_json::{json, Value};
use service_api::{
    AuthClientRequest, AuthClientResponse, Client, ClientKey, ErrorCode, ServiceStatus,
    StartSessionRequest, StopSessionRequest, UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(5);

struct Agent {
    core: TestCore,
    api: Client,
    offering: String,
}

/// A core with one product and one offering: the test VPN offering with `edit` applied.
async fn agent(edit: impl FnOnce(&mut Value)) -> anyhow::Result<Agent> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, token) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(10, None);
    edit(&mut input);
    let offering = core.publish_offering(&pid, &input)?;
    let api = Client::new(&core.url, token, T)?;
    Ok(Agent {
        core,
        api,
        offering,
    })
}

impl Agent {
    /// AuthClient with the channel's real password.
    async fn auth(&self, key: &ClientKey) -> Result<AuthClientResponse, service_api::ApiError> {
        let access = self.core.export_access(&key.0).expect("access message");
        self.api
            .auth_client(&AuthClientRequest {
                client_key: key.clone(),
                password: access.password,
                client_addr: Some("198.51.100.7:40000".into()),
            })
            .await
    }

    fn status(&self, key: &ClientKey) -> ServiceStatus {
        self.core.channel(&key.0).expect("channel").status
    }

    /// When the channel's last status was entered (unix ms).
    fn last_change_ms(&self, key: &ClientKey) -> i64 {
        let h = self.core.channel(&key.0).expect("channel").history;
        h.last().expect("history").at_ms
    }

    /// When the channel was created (its first history entry, unix ms).
    fn created_ms(&self, key: &ClientKey) -> i64 {
        let h = self.core.channel(&key.0).expect("channel").history;
        h.first().expect("history").at_ms
    }

    fn tick(&self, now: i64) {
        self.core.core().tick(now).expect("tick");
    }
}

fn inactive(e: service_api::ApiError) -> Option<ServiceStatus> {
    match e {
        service_api::ApiError::Api {
            code: ErrorCode::ChannelInactive,
            status,
            ..
        } => status,
        other => panic!("expected channel_inactive, got {other}"),
    }
}

fn now_ms() -> i64 {
    core_lite::service::now_ms()
}

/// Reports `bytes` (cumulative, in + out) for the session; returns the status UpdateSession
/// answers.
async fn use_mb(a: &Agent, session: &service_api::SessionId, bytes: u64) -> ServiceStatus {
    a.api
        .update_session(&UpdateSessionRequest {
            session_id: session.clone(),
            bytes_in: bytes / 2,
            bytes_out: bytes - bytes / 2,
        })
        .await
        .expect("update")
        .status
}

#[tokio::test]
async fn a_free_offering_is_admitted_and_usable_up_to_max_units() -> anyhow::Result<()> {
    // unitPrice 0, setupPrice 0: the default deposit (it buys maxUnits) is 0.
    let a = agent(|v| {
        v["unitPrice"] = json!(0);
        v["maxUnits"] = json!(10);
    })
    .await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    assert_eq!(a.core.channel(&key.0)?.deposit, 0);
    a.tick(now_ms());
    assert_eq!(a.status(&key), ServiceStatus::Activating);
    let ok = a.auth(&key).await.expect("a free channel is admitted");
    assert_eq!(ok.status, ServiceStatus::Activating);

    let s = a
        .api
        .start_session(&StartSessionRequest::new(key.clone(), Some("c1")))
        .await?;
    assert_eq!(s.status, ServiceStatus::Active);
    a.tick(now_ms());
    assert_eq!(
        use_mb(&a, &s.session_id, 9_999_999).await,
        ServiceStatus::Active
    );
    a.tick(now_ms());
    assert_eq!(a.status(&key), ServiceStatus::Active);
    // maxUnits, not money, ends it.
    assert_eq!(
        use_mb(&a, &s.session_id, 10_000_000).await,
        ServiceStatus::Terminating
    );
    let h = a.core.channel(&key.0)?.history;
    let reason = &h.last().expect("history").reason;
    assert!(reason.contains("maxUnits"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn a_trial_channel_is_usable_for_its_free_units() -> anyhow::Result<()> {
    // 5 free units, 0.001 PRIX per unit after them, a setup price of 0.01 PRIX.
    let a = agent(|v| {
        v["minUnits"] = json!(0);
        v["freeUnits"] = json!(5);
        v["setupPrice"] = json!(0.01);
    })
    .await?;
    // A deposit that exactly covers the setup price: the free units and nothing more.
    let (_, key) = a.core.create_channel(&a.offering, Some(1_000_000))?;
    a.tick(now_ms());
    assert_eq!(a.status(&key), ServiceStatus::Activating);
    a.auth(&key).await.expect("a trial channel is admitted");
    let s = a
        .api
        .start_session(&StartSessionRequest::new(key.clone(), Some("t1")))
        .await?;
    assert_eq!(s.status, ServiceStatus::Active);
    assert_eq!(
        use_mb(&a, &s.session_id, 4_999_999).await,
        ServiceStatus::Active
    );
    a.tick(now_ms());
    assert_eq!(a.status(&key), ServiceStatus::Active);
    a.auth(&key)
        .await
        .expect("still admitted within the free units");
    // The 6th unit would have to be paid: the deposit cannot, so the channel ends.
    assert_eq!(
        use_mb(&a, &s.session_id, 5_000_000).await,
        ServiceStatus::Terminating
    );
    let h = a.core.channel(&key.0)?.history;
    let reason = &h.last().expect("history").reason;
    assert!(reason.contains("deposit"), "{reason}");

    // A deposit of 0 under the same terms buys the free units too (setupPrice 0 here).
    let b = agent(|v| {
        v["minUnits"] = json!(0);
        v["freeUnits"] = json!(5);
    })
    .await?;
    let (_, key) = b.core.create_channel(&b.offering, Some(0))?;
    b.tick(now_ms());
    assert_eq!(b.status(&key), ServiceStatus::Activating);
    b.auth(&key)
        .await
        .expect("a zero-deposit trial is admitted");
    let s = b
        .api
        .start_session(&StartSessionRequest::new(key.clone(), Some("t2")))
        .await?;
    assert_eq!(
        use_mb(&b, &s.session_id, 4_999_999).await,
        ServiceStatus::Active
    );
    assert_eq!(
        use_mb(&b, &s.session_id, 5_000_000).await,
        ServiceStatus::Terminating
    );
    Ok(())
}

#[tokio::test]
async fn the_inactive_timer_fires_at_its_exact_deadline() -> anyhow::Result<()> {
    let a = agent(|v| v["maxInactiveTime"] = json!(60)).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let deadline = a.created_ms(&key) + 60_000;
    a.tick(deadline - 1);
    assert_eq!(a.status(&key), ServiceStatus::Activating);
    a.auth(&key).await.expect("admitted until the deadline");
    a.tick(deadline);
    assert_eq!(a.status(&key), ServiceStatus::Terminated);
    let e = a.auth(&key).await.expect_err("terminated at the deadline");
    assert_eq!(inactive(e), Some(ServiceStatus::Terminated));
    let h = a.core.channel(&key.0)?.history;
    assert!(
        h.iter()
            .any(|c| c.status == ServiceStatus::Terminating && c.at_ms == deadline),
        "{h:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_suspend_timer_fires_at_its_exact_deadline() -> anyhow::Result<()> {
    let a = agent(|v| v["maxSuspendTime"] = json!(30)).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    a.core
        .set_channel_status(&key.0, ServiceStatus::Suspending, "test")?;
    // No open session: suspended at once; the wait counts from the suspension.
    assert_eq!(a.status(&key), ServiceStatus::Suspended);
    let h = a.core.channel(&key.0)?.history;
    let since = h
        .iter()
        .find(|c| c.status == ServiceStatus::Suspending)
        .expect("suspending in history")
        .at_ms;
    let deadline = since + 30_000;
    a.tick(deadline - 1);
    assert_eq!(a.status(&key), ServiceStatus::Suspended);
    a.tick(deadline);
    assert_eq!(a.status(&key), ServiceStatus::Terminated);
    Ok(())
}

#[tokio::test]
async fn a_channel_stuck_in_suspending_times_out() -> anyhow::Result<()> {
    let a = agent(|v| v["maxSuspendTime"] = json!(30)).await?;
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let s = a
        .api
        .start_session(&StartSessionRequest::new(key.clone(), Some("s1")))
        .await?;
    // Suspended with the session open, and the adapter never stops it.
    a.core
        .set_channel_status(&key.0, ServiceStatus::Suspending, "test")?;
    let deadline = a.last_change_ms(&key) + 30_000;
    a.tick(deadline - 1);
    assert_eq!(a.status(&key), ServiceStatus::Suspending);
    a.tick(deadline);
    assert_eq!(a.status(&key), ServiceStatus::Terminating);
    let e = a.auth(&key).await.expect_err("terminating");
    assert_eq!(inactive(e), Some(ServiceStatus::Terminating));
    // When the adapter finally stops the session, the channel is terminated.
    let r = a
        .api
        .stop_session(&StopSessionRequest {
            session_id: s.session_id,
            bytes_in: 0,
            bytes_out: 0,
        })
        .await?;
    assert_eq!(r.status, ServiceStatus::Terminated);
    Ok(())
}

#[tokio::test]
async fn the_inactive_timer_counts_from_creation_until_the_first_session() -> anyhow::Result<()> {
    let a = agent(|v| v["maxInactiveTime"] = json!(60)).await?;
    // A channel used once, then suspended and let back in (as a payment does): activating
    // again, but maxInactiveTime no longer applies.
    let (_, key) = a.core.create_channel(&a.offering, None)?;
    let s = a
        .api
        .start_session(&StartSessionRequest::new(key.clone(), Some("u1")))
        .await?;
    a.api
        .stop_session(&StopSessionRequest {
            session_id: s.session_id,
            bytes_in: 1_000,
            bytes_out: 1_000,
        })
        .await?;
    a.core
        .set_channel_status(&key.0, ServiceStatus::Suspended, "test")?;
    a.core
        .set_channel_status(&key.0, ServiceStatus::Activating, "test: paid")?;
    let again = a.last_change_ms(&key);
    a.tick(again + 61_000);
    assert_eq!(a.status(&key), ServiceStatus::Activating);
    a.auth(&key).await.expect("a used channel is not inactive");
    Ok(())
}

#[tokio::test]
async fn contradictory_terms_are_refused_at_publish() -> anyhow::Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, _) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 4] = [
        ("/freeUnits", |v| v["freeUnits"] = json!(11)),
        ("/billingInterval", |v| {
            // Postpaid: a payment after every 9 billable units, but only 8 are sold.
            v["billingType"] = json!("postpaid");
            v["freeUnits"] = json!(2);
            v["billingInterval"] = json!(9);
            v["maxBillingUnitLag"] = json!(9);
        }),
        ("/maxBillingUnitLag", |v| {
            v["billingType"] = json!("postpaid");
            v["billingInterval"] = json!(10);
            v["maxBillingUnitLag"] = json!(9);
        }),
        ("/unitPrice", |v| {
            // setupPrice + maxUnits·unitPrice beyond u64 base units.
            v["maxUnits"] = json!(1_000_000_000_000u64);
            v["unitPrice"] = json!(1_000);
        }),
    ];
    let mut wrong = Vec::new();
    for (pointer, edit) in cases {
        let mut input = vpn_offering_input(10, None);
        edit(&mut input);
        match core.publish_offering(&pid, &input) {
            Ok(_) => wrong.push(format!("{pointer}: accepted")),
            Err(e) if !e.to_string().contains(&format!("{pointer}: ")) => {
                wrong.push(format!("{pointer}: refused for another reason: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    Ok(())
}
