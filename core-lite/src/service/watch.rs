//! WatchStatus: the status changes of the caller's channels after a cursor (the position in
//! the status history). The HTTP handler long-polls this (`crate::server`).

use service_api::{WatchStatusResponse, MAX_WATCH_CHANGES};

use super::state::{Caller, Core};
use crate::error::Result;
use crate::store::status_history::{self, WatchScope};

impl Core {
    /// One look: the changes after `cursor` in the caller's scope (a product token: its
    /// product's channels; a client token: the client side's channels; admin: all), or,
    /// without a cursor, none and the current cursor.
    pub fn watch_status_once(
        &self,
        caller: &Caller,
        cursor: Option<u64>,
    ) -> Result<WatchStatusResponse> {
        self.db.read(|tx| {
            let Some(after) = cursor else {
                return Ok(WatchStatusResponse {
                    cursor: status_history::last_id(tx)?,
                    changes: vec![],
                });
            };
            let scope = match caller {
                Caller::Product(p) => WatchScope::Product(p.as_str()),
                Caller::Client => WatchScope::Client,
                Caller::Admin => WatchScope::All,
            };
            let changes = status_history::after(tx, &scope, after, MAX_WATCH_CHANGES)?;
            // Past the caller's last change when there is one; else where it was (changes of
            // other products may come later with lower positions than the newest one only
            // if still uncommitted, so the caller's own cursor is kept).
            let cursor = changes.last().map_or(after, |c| c.cursor);
            Ok(WatchStatusResponse { cursor, changes })
        })
    }
}
