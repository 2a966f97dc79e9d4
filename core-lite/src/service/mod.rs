//! The Service API of DESIGN §3 on top of the [store](crate::store): authentication and
//! AuthClient (with the failed-login limiter), sessions and usage, product configuration,
//! GetAccess, and the billing rules applied after every change and by the timers.
//!
//! Nothing here knows HTTP ([`crate::server`] does) or SQL ([`crate::store`] does).
//!
//! | module | holds |
//! |---|---|
//! | `state` | [`Core`], [`Caller`], [`now_ms`] |
//! | `auth` | bearer tokens to callers, AuthClient |
//! | `limiter` | the failed-login limiter ([`MAX_AUTH_FAILURES`] in [`FAIL_WINDOW`]) |
//! | `sessions` | StartSession, FindSession, UpdateSession, StopSession, GetAccess |
//! | `config` | SetProductConfig |
//! | `status` | status changes, billing applied, the timers ([`Core::tick`]) |
//! | `checks` | checks of request fields shared with the admin commands |

mod auth;
pub(crate) mod checks;
mod config;
mod limiter;
mod sessions;
mod state;
pub(crate) mod status;

pub use crate::error::{CoreError, Result};
pub use limiter::{FAIL_WINDOW, MAX_AUTH_FAILURES};
pub(crate) use state::new_id;
pub use state::{now_ms, Caller, Core};
