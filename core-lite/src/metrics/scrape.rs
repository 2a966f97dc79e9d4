//! The database-wide numbers, read at each scrape into a registry of their own: channels by
//! side and status, open sessions, bytes counted, payments, cheques, status changes, and
//! whether the storage takes writes. Status changes and cheques are counted from the last
//! row the previous scrape saw ([`Cursor`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service_api::ServiceStatus;

use super::PREFIX;
use crate::service::Core;
use crate::store::channels::Side;
use crate::store::overview;
use crate::store::StoreError;

/// Counts carried from one scrape to the next.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    history_id: i64,
    history: BTreeMap<String, u64>,
    cheques_id: i64,
    cheques: BTreeMap<&'static str, u64>,
}

fn side_label(s: Side) -> &'static str {
    match s {
        Side::Agent => "agent",
        Side::Client => "client",
    }
}

type Labels = Vec<(&'static str, String)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

const SIDES: [&str; 2] = ["agent", "client"];

/// Reads the numbers now and returns them as a registry.
pub(super) fn read(core: &Core, cursor: &mut Cursor) -> Result<Registry, StoreError> {
    let (by_status, open, history, cheques) = core.db.read(|tx| {
        let by_status = overview::channels_by_status(tx)?;
        let open = overview::open_sessions(tx)?;
        let history = overview::status_changes_since(tx, cursor.history_id)?;
        let cheques = overview::cheques_since(tx, cursor.cheques_id)?;
        Ok::<_, StoreError>((by_status, open, history, cheques))
    })?;
    let (new_changes, history_id) = history;
    cursor.history_id = history_id;
    for (status, n) in new_changes {
        *cursor.history.entry(status).or_default() += n;
    }
    let (new_cheques, cheques_id) = cheques;
    cursor.cheques_id = cheques_id;
    for (side, n) in new_cheques {
        *cursor.cheques.entry(side_label(side)).or_default() += n;
    }

    let mut reg = Registry::with_prefix(PREFIX);
    let channels = Family::<Labels, Gauge>::default();
    let bytes = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let paid = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let sessions = Family::<Labels, Gauge>::default();
    let changes = Family::<Labels, Counter>::default();
    let cheque_count = Family::<Labels, Counter>::default();
    // Every side and status appears, at 0 when there is none.
    for side in SIDES {
        for st in ServiceStatus::ALL {
            let _ = channels.get_or_create(&labels(&[("side", side), ("status", st.as_str())]));
        }
        let _ = bytes.get_or_create(&labels(&[("side", side)]));
        let _ = paid.get_or_create(&labels(&[("side", side)]));
        let _ = sessions.get_or_create(&labels(&[("side", side)]));
        let _ = cheque_count.get_or_create(&labels(&[("side", side)]));
    }
    for st in ServiceStatus::ALL {
        let _ = changes.get_or_create(&labels(&[("status", st.as_str())]));
    }
    for c in &by_status {
        let side = side_label(c.side);
        channels
            .get_or_create(&labels(&[("side", side), ("status", &c.status)]))
            .set(i64::try_from(c.channels).unwrap_or(i64::MAX));
        bytes
            .get_or_create(&labels(&[("side", side)]))
            .inc_by(c.bytes);
        paid.get_or_create(&labels(&[("side", side)]))
            .inc_by(c.paid);
    }
    for (side, n) in open {
        sessions
            .get_or_create(&labels(&[("side", side_label(side))]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for (status, n) in &cursor.history {
        changes
            .get_or_create(&labels(&[("status", status)]))
            .inc_by(*n);
    }
    for (side, n) in &cursor.cheques {
        cheque_count
            .get_or_create(&labels(&[("side", side)]))
            .inc_by(*n);
    }
    reg.register(
        "channels",
        "Channels by side (agent: sales, client: purchases) and service status; \
         database-wide (the same on every instance: aggregate with max)",
        channels,
    );
    reg.register(
        "sessions_open",
        "Open sessions by side; database-wide",
        sessions,
    );
    reg.register(
        "usage_bytes",
        "Bytes counted (in + out, all sessions of all channels) by side; database-wide",
        bytes,
    );
    reg.register(
        "paid_base_units",
        "Payments by cheque in base units (1 PRIX = 10^8): the best cheque of every channel, \
         received (agent) or paid (client); database-wide",
        paid,
    );
    reg.register(
        "cheques",
        "Cheques recorded, by side; database-wide",
        cheque_count,
    );
    reg.register(
        "status_changes",
        "Status changes of channels, by the status entered; database-wide",
        changes,
    );
    let writable = Gauge::<i64>::default();
    writable.set(i64::from(core.db.fault().is_none()));
    reg.register(
        "storage_writable",
        "1 while this instance's storage takes writes, 0 from a write it refused until one \
         succeeds again (GET /health says why)",
        writable,
    );
    let pending = Gauge::<i64>::default();
    pending.set(i64::try_from(core.usage_series.pending()).unwrap_or(i64::MAX));
    reg.register(
        "usage_series_pending",
        "Usage buckets of this instance waiting to be written (the console's plot)",
        pending,
    );
    Ok(reg)
}
