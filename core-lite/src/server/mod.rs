//! The HTTP/JSON server: the Service API of DESIGN §3 ([`router`]), the agent's market API
//! ([`market_router`]) and a server with its billing timers ([`start`]). Every error is
//! `{ "error": { "code", "message" } }` with the code's HTTP status.
//!
//! | module | holds |
//! |---|---|
//! | `router` | the Service API's handlers and router |
//! | `buyer` | the handlers of the client-role operations (FetchOfferings, ListOfferings, AcceptOffering, ListChannels) |
//! | `market` | the market API's handlers, router and listener |
//! | `extract` | [`ApiJson`] (bounded JSON body, 415 unless declared JSON), [`Valid`] (the body plus its type's rules), [`Authed`] (the bearer token's caller) |
//! | `error` | [`CoreError`](crate::error::CoreError) as an HTTP answer |
//! | `run` | [`start`], [`RunningServer`] |
//! | [`tls`] | the listeners' TLS: PEM certificate and key, the agent's self-signed market certificate and its pin |
//! | `listen` | the accept loop under both: [`ServerLimits`] (connection cap, idle and header timeouts), graceful shutdown |

mod buyer;
mod error;
mod extract;
mod listen;
mod market;
mod router;
mod run;
pub mod tls;

pub use extract::{is_json_media_type, ApiJson, Authed, BodyRejection, Valid};
pub use listen::{fd_budget, BodyTimeout, ServerLimits};
pub use market::{market_router, start_market};
pub use router::{api_routes, router};
pub use run::{start, start_tls, RunningServer};
