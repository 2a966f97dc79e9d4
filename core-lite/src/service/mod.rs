//! The Service API of DESIGN §3 on top of the [store](crate::store): authentication and
//! AuthClient (with its throttle), sessions and usage, product configuration,
//! GetAccess, and the billing rules applied after every change and by the timers.
//!
//! Nothing here knows HTTP ([`crate::server`] does) or SQL ([`crate::store`] does).
//!
//! | module | holds |
//! |---|---|
//! | `state` | [`Core`], [`Caller`], [`now_ms`] |
//! | `auth` | bearer tokens to callers, AuthClient |
//! | [`limiter`] | the AuthClient throttle: per source address, global, a delay per client key |
//! | `sessions` | StartSession, FindSession, UpdateSession, StopSession |
//! | `access` | GetAccess (served only when the stored signed access message checks out) |
//! | `config` | SetProductConfig |
//! | `status` | status changes, billing applied, the timers ([`Core::tick`]) |
//!
//! The rules of the request fields are `service_api::rules`, enforced once, where the HTTP
//! layer reads a request ([`crate::server::Valid`]); the admin commands use the same rule
//! functions for what they read.

mod access;
mod auth;
pub mod claim;
mod config;
pub mod limiter;
mod sessions;
mod state;
pub(crate) mod status;

pub use crate::error::{CoreError, Result};
pub(crate) use state::new_id;
pub use state::{now_ms, Caller, Core, SEAL_KEY_FILE};
