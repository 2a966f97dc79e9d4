//! The client-role operations of the Service API over real HTTP (issue 16): an agent core
//! with its market API and a client core, driven only through the client core's Service
//! API with the typed client — FetchOfferings, ListOfferings, AcceptOffering, ListChannels
//! (usage, status, money) — and every refusal with its code.

use std::time::Duration;

use core_lite::market::pay_round;
use core_lite::market::MarketClient;
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{
    AcceptOfferingRequest, ApiError, Client, ErrorCode, FetchOfferingsRequest, GetAccessRequest,
    Secret, ServiceStatus, StartSessionRequest, UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(10);

struct Pair {
    agent: TestCore,
    client: TestCore,
    market_url: String,
    offering: String,
    /// The client core's client token.
    api: Client,
}

async fn pair(edit: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<Pair> {
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (pid, _) = agent.create_product("vpn-1", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(1000, Some(("8", "4")));
    edit(&mut input);
    let offering = agent.publish_offering(&pid, &input)?;
    let market_url = agent.start_market().await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let api = Client::new(&client.url, client.create_client_token()?, T)?;
    Ok(Pair {
        agent,
        client,
        market_url,
        offering,
        api,
    })
}

fn code(e: &ApiError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test]
async fn fetch_accept_and_list_through_the_service_api() -> anyhow::Result<()> {
    let p = pair(|_| {}).await?;
    // A trailing slash is the same market.
    let fetched = p
        .api
        .fetch_offerings(&FetchOfferingsRequest {
            url: format!("{}/", p.market_url),
        })
        .await?;
    assert!(fetched.rejected.is_empty(), "{fetched:?}");
    assert_eq!(fetched.accepted.len(), 1);
    let o = &fetched.accepted[0];
    assert_eq!(o.offering_hash, p.offering);
    assert_eq!(o.market_url, p.market_url);
    assert_eq!(o.country, "DE");
    assert_eq!(o.unit_name, "MB");
    assert_eq!(o.unit_price, 100_000, "0.001 PRIX in base units");
    assert_eq!(o.billing_type, "prepaid");
    assert_eq!(o.billing_interval, 10);
    assert_eq!(o.min_deposit, 100_000, "one unit");
    assert_eq!(o.full_deposit, 100_000_000, "1000 units");
    assert_eq!(o.max_download_mbps.as_deref(), Some("8"));
    assert_eq!(o.max_upload_mbps.as_deref(), Some("4"));
    assert_eq!(o.min_download_mbps.as_deref(), Some("1"));
    assert_eq!(p.api.list_offerings().await?.offerings, fetched.accepted);
    assert!(p.api.list_channels().await?.channels.is_empty());

    let accepted = p
        .api
        .accept_offering(&AcceptOfferingRequest {
            offering_hash: p.offering.clone(),
            deposit: 50_000_000,
        })
        .await?;
    assert_eq!(accepted.offering_hash, p.offering);
    assert_eq!(accepted.deposit, 50_000_000);
    assert_eq!(accepted.status, ServiceStatus::Activating);
    // The agent has the channel with that deposit; GetAccess serves the access message.
    let agent_view = p.agent.channel(&accepted.client_key.0)?;
    assert_eq!(agent_view.deposit, 50_000_000);
    let access = p
        .api
        .get_access(&GetAccessRequest {
            client_key: accepted.client_key.clone(),
        })
        .await?;
    assert_eq!(access, p.agent.export_access(&accepted.client_key.0)?);

    // Usage through the client core: 2.5 MB → 2 units; the money follows the terms.
    let s = p
        .api
        .start_session(&StartSessionRequest::new(
            accepted.client_key.clone(),
            Some("c-1"),
        ))
        .await?;
    p.api
        .update_session(&UpdateSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: 2_000_000,
            bytes_out: 500_000,
        })
        .await?;
    let list = p.api.list_channels().await?;
    assert_eq!(list.channels.len(), 1);
    let ch = &list.channels[0];
    assert_eq!(ch.channel_id, accepted.channel_id);
    assert_eq!(ch.client_key, accepted.client_key);
    assert_eq!(ch.bytes_total, 2_500_000);
    assert_eq!(ch.units_used, 2);
    assert_eq!(ch.amount_used, Some(200_000));
    assert_eq!(ch.amount_paid, 0, "nothing paid before the payer ran");
    assert_eq!(ch.open_session.as_ref(), Some(&s.session_id));
    assert_eq!(ch.deposit, 50_000_000);
    assert!(!ch.payments_paused);
    assert_eq!(
        ch.offering.as_ref().map(|o| o.offering_hash.as_str()),
        Some(p.offering.as_str())
    );

    // The payer pays up to the end of the current interval (prepaid, 10 units);
    // ListChannels shows it, and the status the agent reports (activating: the agent has
    // seen no session of its own yet).
    pay_round(&p.client.core_arc(), &MarketClient::new(T)?, 10).await?;
    let ch = p.api.list_channels().await?.channels.remove(0);
    assert_eq!(ch.amount_paid, 1_000_000);
    assert_eq!(ch.status, ServiceStatus::Activating);
    Ok(())
}

#[tokio::test]
async fn refusals_carry_their_codes() -> anyhow::Result<()> {
    let p = pair(|v| v["supply"] = 1.into()).await?;
    let fetch = |url: String| {
        let api = p.api.clone();
        async move { api.fetch_offerings(&FetchOfferingsRequest { url }).await }
    };
    // Nobody listens: 502.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let a = l.local_addr()?;
        drop(l);
        format!("http://{a}")
    };
    let e = fetch(closed.clone()).await.expect_err("closed port");
    assert_eq!(code(&e), Some(ErrorCode::BadGateway), "{e}");
    assert!(e.to_string().contains(&closed), "{e}");
    // Something that is not a market (the agent's Service API): 502, not its 404.
    let e = fetch(p.agent.url.clone()).await.expect_err("not a market");
    assert_eq!(code(&e), Some(ErrorCode::BadGateway), "{e}");
    // A URL the client cannot use: 502.
    let e = fetch("http://[::1".into()).await.expect_err("bad url");
    assert_eq!(code(&e), Some(ErrorCode::BadGateway), "{e}");
    // Not fetched yet: 404.
    let accept = |deposit: u64| {
        let api = p.api.clone();
        let offering_hash = p.offering.clone();
        async move {
            api.accept_offering(&AcceptOfferingRequest {
                offering_hash,
                deposit,
            })
            .await
        }
    };
    let e = accept(1_000_000).await.expect_err("not fetched");
    assert_eq!(code(&e), Some(ErrorCode::NotFound), "{e}");
    fetch(p.market_url.clone()).await?;
    // Below the minimum deposit: 422, and the agent was not asked.
    let e = accept(99_999).await.expect_err("below minimum");
    assert_eq!(code(&e), Some(ErrorCode::Invalid), "{e}");
    assert!(e.to_string().contains("minimum deposit 100000"), "{e}");
    assert!(p.agent.core().list_channels()?.is_empty());
    // Above the largest amount: 422 before anything else.
    let e = accept(service_api::rules::MAX_AMOUNT + 1)
        .await
        .expect_err("too large");
    assert_eq!(code(&e), Some(ErrorCode::Invalid), "{e}");
    // Supply 1: the first accept takes it, the second is the agent's 409.
    accept(1_000_000).await?;
    let e = accept(1_000_000).await.expect_err("sold out");
    assert_eq!(code(&e), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("sold out"), "{e}");
    assert_eq!(p.api.list_channels().await?.channels.len(), 1);

    // Product token: 403 on every client operation; no token: 401; admin token: allowed.
    let (_, product_token) = p.client.create_product("p", "192.0.2.1:1194")?;
    let as_product = Client::new(&p.client.url, product_token, T)?;
    for e in [
        as_product
            .fetch_offerings(&FetchOfferingsRequest {
                url: p.market_url.clone(),
            })
            .await
            .expect_err("product"),
        as_product.list_offerings().await.expect_err("product"),
        as_product
            .accept_offering(&AcceptOfferingRequest {
                offering_hash: p.offering.clone(),
                deposit: 1_000_000,
            })
            .await
            .expect_err("product"),
        as_product.list_channels().await.expect_err("product"),
    ] {
        assert_eq!(code(&e), Some(ErrorCode::Forbidden), "{e}");
    }
    let anonymous = Client::new(&p.client.url, Secret(String::new()), T)?;
    let e = anonymous.list_channels().await.expect_err("no token");
    assert_eq!(code(&e), Some(ErrorCode::Unauthorized), "{e}");
    let admin = Client::new(&p.client.url, p.client.admin_token.clone(), T)?;
    assert_eq!(admin.list_channels().await?.channels.len(), 1);
    assert_eq!(admin.list_offerings().await?.offerings.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_offering_that_does_not_verify_is_rejected_not_stored() -> anyhow::Result<()> {
    let p = pair(|_| {}).await?;
    // The agent's stored offering is altered after signing.
    p.agent.core().db.write(|tx| {
        let signed = tx.test_query_text("SELECT signed FROM offerings", &[])?;
        let mut v: serde_json::Value = serde_json::from_str(&signed).expect("json");
        v["offering"]["unitPrice"] = serde_json::json!(0.00001);
        tx.test_exec("UPDATE offerings SET signed = ?1", &[&v.to_string()])?;
        Ok::<_, core_lite::store::StoreError>(())
    })?;
    let r = p
        .api
        .fetch_offerings(&FetchOfferingsRequest {
            url: p.market_url.clone(),
        })
        .await?;
    assert!(r.accepted.is_empty());
    assert_eq!(r.rejected.len(), 1);
    assert!(r.rejected[0].reason.contains("signature"), "{r:?}");
    assert!(p.api.list_offerings().await?.offerings.is_empty());
    Ok(())
}
