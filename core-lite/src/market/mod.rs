//! The market protocol between an agent's core and a client's core (issue 6):
//! offerings fetched over the network, accepted with a deposit and the client's ed25519 key,
//! access messages signed by the agent, and cumulative payment cheques signed by the client.
//! The wire types are in [`service_api::market`].
//!
//! Agent side (`serve --role agent --market-listen ADDR`, served by
//! [`crate::server::market_router`]):
//! - `GET  /market/v1/offerings` → [`OfferingList`] (offerings with supply left)
//! - `POST /market/v1/accept` [`AcceptRequest`] → [`SignedAccess`]
//! - `POST /market/v1/cheque` [`Cheque`] → [`ChequeReceipt`]
//! - `GET  /market/v1/channels/{channelId}` → [`ChannelStatus`]
//!
//! Client side (`serve --role client`): [`run_payer`] signs a cheque every `billingInterval`
//! units of the client's own measured usage, sends it, and mirrors the agent's status into
//! the client's channel, so the client adapter learns of a suspension from its own core.
//!
//! | module | holds |
//! |---|---|
//! | `agent` | the agent's operations (offerings, accept, cheque, channel status) |
//! | `client` | fetch, accept, the payer ([`client_payment`], [`pay_round`], [`run_payer`]) |
//! | [`buyer`] | the client-role Service API operations (FetchOfferings, ListOfferings, AcceptOffering, ListChannels) |
//! | [`http`] | [`MarketClient`], the HTTP client of one agent's market |
//! | `sign` | signing accepts and cheques (the rules of signatures: [`crate::signing`]) |

mod agent;
pub mod buyer;
mod client;
pub mod guard;
pub mod http;
pub mod sealed;
mod sign;

pub use crate::signing::{check_signed_access, verify_access, SigningError};
pub use crate::store::market::ClientMarketChannel;
pub use client::{
    accept_offering, client_payment, fetch_offerings, pay_round, run_payer, FetchReport,
    FetchedOffering, PayDecision, DEFAULT_TOLERANCE_PCT,
};
pub use http::MarketClient;
pub use service_api::market::{
    paths, AcceptRequest, AccessEnvelope, ChannelStatus, Cheque, ChequeReceipt, OfferingList,
    SealedAccess, SignedAccess,
};
pub use sign::{signed_accept, signed_cheque};
