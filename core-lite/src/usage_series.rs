//! A channel's usage over time, kept at a fixed resolution for the console's plot.
//!
//! The usage-report path (UpdateSession, StopSession) only adds the bytes a report counted
//! to an in-memory bucket ([`UsageSeries::add`]: a mutex and a map entry, no I/O); the
//! server's ticker writes the buckets every [`UsageSeries::flush_interval`] in one
//! transaction ([`Core::flush_usage_series`]), each bucket one upsert that *adds* to the
//! stored row, so several core instances on one database add up. Rows older than
//! [`MAX_BUCKETS`] bucket widths are pruned, which bounds the series of every channel.
//!
//! This is a plot, not the bill: the bill is the channels' and sessions' counters, written
//! before every answer. A crash loses at most the buckets not yet written (one flush
//! interval), and a write that fails puts them back for the next flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::service::Core;
use crate::store::usage_series::{self, Bucket};

/// Buckets kept per channel (a day at the default resolution).
pub const MAX_BUCKETS: i64 = 1440;
/// The default bucket width.
pub const DEFAULT_WIDTH: Duration = Duration::from_secs(60);
/// Buckets waiting in memory at most; beyond, new ones are dropped (logged).
const MAX_PENDING: usize = 100_000;
/// How often old rows are pruned.
const PRUNE_EVERY_MS: i64 = 600_000;

/// Buckets not yet written: per channel, (start ms, bytes in, bytes out). Looked up by the
/// channel id without allocating: a report of a channel already waiting costs a map lookup.
#[derive(Debug, Default)]
struct Pending {
    by_channel: HashMap<String, Vec<(i64, u64, u64)>>,
    buckets: usize,
}

impl Pending {
    /// Adds to a bucket; false when it is a new one and [`MAX_PENDING`] are waiting.
    fn add(&mut self, channel_id: &str, start: i64, bytes_in: u64, bytes_out: u64) -> bool {
        let full = self.buckets >= MAX_PENDING;
        if let Some(v) = self.by_channel.get_mut(channel_id) {
            // Reports go to the newest bucket: look from the end.
            if let Some(b) = v.iter_mut().rev().find(|b| b.0 == start) {
                b.1 = b.1.saturating_add(bytes_in);
                b.2 = b.2.saturating_add(bytes_out);
                return true;
            }
            if full {
                return false;
            }
            v.push((start, bytes_in, bytes_out));
        } else {
            if full {
                return false;
            }
            self.by_channel
                .insert(channel_id.to_string(), vec![(start, bytes_in, bytes_out)]);
        }
        self.buckets += 1;
        true
    }
}

/// The buckets not yet written, and when the last flush and prune ran.
#[derive(Debug)]
pub struct UsageSeries {
    width_ms: AtomicI64,
    pending: Mutex<Pending>,
    last_flush_ms: AtomicI64,
    last_prune_ms: AtomicI64,
}

impl Default for UsageSeries {
    fn default() -> Self {
        UsageSeries {
            width_ms: AtomicI64::new(ms(DEFAULT_WIDTH)),
            pending: Mutex::new(Pending::default()),
            last_flush_ms: AtomicI64::new(0),
            last_prune_ms: AtomicI64::new(0),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A channel's series as the console reads it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesView {
    /// The core's bucket width now, ms.
    pub width_ms: i64,
    /// Oldest first.
    pub buckets: Vec<BucketView>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketView {
    pub start_ms: i64,
    pub width_ms: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl UsageSeries {
    /// Sets the bucket width (at least one second); call before serving.
    pub fn set_width(&self, width: Duration) {
        self.width_ms.store(ms(width).max(1000), Ordering::Relaxed);
    }

    pub fn width_ms(&self) -> i64 {
        self.width_ms.load(Ordering::Relaxed)
    }

    /// How often the buckets are written: the bucket width, between 1 and 10 seconds.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.width_ms().clamp(1000, 10_000)).unwrap_or(10_000))
    }

    /// Buckets waiting to be written.
    pub fn pending(&self) -> usize {
        self.lock().buckets
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `bytes_in` / `bytes_out` for the channel at `at_ms` (unix ms).
    pub fn add(&self, channel_id: &str, bytes_in: u64, bytes_out: u64, at_ms: i64) {
        let width = self.width_ms();
        let start = at_ms - at_ms.rem_euclid(width);
        if !self.lock().add(channel_id, start, bytes_in, bytes_out) {
            tracing::warn!(
                channel = channel_id,
                "usage series: too many buckets waiting to be written; dropping one (plot only)"
            );
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    /// Puts buckets that could not be written back (added to what came meanwhile).
    fn restore(&self, back: Pending) {
        let mut p = self.lock();
        for (channel, buckets) in back.by_channel {
            for (start, i, o) in buckets {
                p.add(&channel, start, i, o);
            }
        }
    }
}

impl Core {
    /// Writes the waiting buckets in one transaction when a flush interval has passed since
    /// the last one (or always, with `force`), and prunes old rows every ten minutes.
    /// Returns how many buckets were written.
    pub fn flush_usage_series(&self, now_ms: i64, force: bool) -> Result<usize> {
        let s = &self.usage_series;
        let due = ms(s.flush_interval());
        if !force && now_ms - s.last_flush_ms.load(Ordering::Relaxed) < due {
            return Ok(0);
        }
        s.last_flush_ms.store(now_ms, Ordering::Relaxed);
        let width = s.width_ms();
        let prune = now_ms - s.last_prune_ms.load(Ordering::Relaxed) >= PRUNE_EVERY_MS;
        let batch = s.take();
        if batch.buckets == 0 && !prune {
            return Ok(0);
        }
        let n = batch.buckets;
        let written = self.db.write(|tx| {
            for (channel, buckets) in &batch.by_channel {
                for (start_ms, bytes_in, bytes_out) in buckets {
                    usage_series::add(
                        tx,
                        channel,
                        &Bucket {
                            start_ms: *start_ms,
                            width_ms: width,
                            bytes_in: *bytes_in,
                            bytes_out: *bytes_out,
                        },
                    )?;
                }
            }
            if prune {
                usage_series::prune(tx, now_ms - MAX_BUCKETS.saturating_mul(width))?;
            }
            Ok::<_, crate::error::CoreError>(())
        });
        match written {
            Ok(()) => {
                if prune {
                    s.last_prune_ms.store(now_ms, Ordering::Relaxed);
                }
                Ok(n)
            }
            Err(e) => {
                s.restore(batch);
                Err(e)
            }
        }
    }

    /// The channel's stored buckets of the last [`MAX_BUCKETS`] widths, oldest first.
    pub fn usage_series(&self, channel_id: &str, now_ms: i64) -> Result<SeriesView> {
        let width = self.usage_series.width_ms();
        let since = now_ms - MAX_BUCKETS.saturating_mul(width);
        let limit = u32::try_from(MAX_BUCKETS).unwrap_or(u32::MAX);
        let rows = self
            .db
            .read(|tx| usage_series::of_channel(tx, channel_id, since, limit))?;
        Ok(SeriesView {
            width_ms: width,
            buckets: rows
                .into_iter()
                .map(|b| BucketView {
                    start_ms: b.start_ms,
                    width_ms: b.width_ms,
                    bytes_in: b.bytes_in,
                    bytes_out: b.bytes_out,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_one_bucket_add_up_and_buckets_split_at_the_width() {
        let s = UsageSeries::default();
        s.set_width(Duration::from_secs(60));
        s.add("ch-1", 10, 1, 60_000);
        s.add("ch-1", 5, 2, 119_999);
        s.add("ch-1", 1, 1, 120_000);
        s.add("ch-2", 7, 7, 61_000);
        let p = s.take();
        assert_eq!(p.buckets, 3);
        assert_eq!(p.by_channel["ch-1"], vec![(60_000, 15, 3), (120_000, 1, 1)]);
        assert_eq!(p.by_channel["ch-2"], vec![(60_000, 7, 7)]);
        assert_eq!(s.pending(), 0);
        // What could not be written comes back, added to what came meanwhile.
        s.add("ch-1", 1, 0, 60_500);
        s.restore(p);
        assert_eq!(s.pending(), 3);
        assert_eq!(
            s.lock().by_channel["ch-1"],
            vec![(60_000, 16, 3), (120_000, 1, 1)]
        );
    }

    #[test]
    fn at_most_max_pending_buckets_wait() {
        let mut p = Pending::default();
        let per_channel = 100;
        for i in 0..MAX_PENDING {
            let ch = format!("ch-{}", i / per_channel);
            let start = i64::try_from(i % per_channel).expect("fits") * 1000;
            assert!(p.add(&ch, start, 1, 1));
        }
        // A new bucket is dropped; an existing one still adds up.
        assert!(!p.add("ch-0", -1000, 1, 1));
        assert!(!p.add("other", 0, 1, 1));
        assert!(p.add("ch-0", 0, 1, 1));
        assert_eq!(p.buckets, MAX_PENDING);
        assert_eq!(p.by_channel["ch-0"][0], (0, 2, 2));
        assert!(!p.by_channel.contains_key("other"));
    }

    #[test]
    fn width_is_at_least_a_second_and_flushes_at_most_every_ten() {
        let s = UsageSeries::default();
        s.set_width(Duration::from_millis(10));
        assert_eq!(s.width_ms(), 1000);
        assert_eq!(s.flush_interval(), Duration::from_secs(1));
        s.set_width(Duration::from_secs(300));
        assert_eq!(s.flush_interval(), Duration::from_secs(10));
    }
}
