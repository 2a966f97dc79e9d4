//! What the storage reports about itself for the core's metrics ([`crate::metrics`]): the
//! time each commit took, the commits, and the writes that failed. [`Db`](super::Db) feeds
//! it at the commit, the one place every write passes; the metrics registry reads the same
//! (shared) metric objects.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Why a write failed, as counted in `core_lite_storage_errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// The storage refused a write (full disk, I/O error, read-only filesystem).
    StorageFault,
    /// A transaction (a group commit) was not committed: every writer in it got an error.
    CommitFailed,
}

impl WriteFailure {
    fn label(self) -> &'static str {
        match self {
            WriteFailure::StorageFault => "storage_fault",
            WriteFailure::CommitFailed => "commit_failed",
        }
    }
}

/// The storage's metrics: cheap to clone (the metric objects are shared).
#[derive(Clone, Debug)]
pub struct StoreStats {
    commit_seconds: Histogram,
    errors: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            // 100 µs .. ~3.3 s: an fsync takes from tens of µs (tmpfs) to seconds (a busy disk).
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            errors: Family::default(),
        }
    }
}

impl StoreStats {
    /// A commit of a write transaction (one fsync, possibly for a group of writers).
    pub fn committed(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// A failed write.
    pub fn failed(&self, why: WriteFailure) {
        self.errors
            .get_or_create(&vec![("kind", why.label())])
            .inc();
    }

    /// Registers the metrics (names without the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "storage_commit_duration",
            "Time a database commit took (one fsync; writers arriving together share one commit)",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        registry.register(
            "storage_errors",
            "Writes that failed: kind=storage_fault (full disk, I/O error, read-only: answered \
             503), kind=commit_failed (a transaction not committed)",
            self.errors.clone(),
        );
        // Both kinds appear from the start, at 0.
        for why in [WriteFailure::StorageFault, WriteFailure::CommitFailed] {
            let _ = self.errors.get_or_create(&vec![("kind", why.label())]);
        }
    }
}
