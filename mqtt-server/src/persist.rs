//! Durable persistence: the broker's side of `mqtt-store`.
//!
//! One [`GroupCommit`] writer thread takes every change as a [`Batch`] and
//! syncs once per group (about a millisecond's worth). What the broker
//! writes, and when:
//!
//! | event | batch | who waits for the commit |
//! | --- | --- | --- |
//! | QoS 1/2 PUBLISH routed | `append_queued` per persistent target (seq = [`Delivery::tag`]), `set_retained` / `clear_retained`, `add_incoming_qos2` for a persistent QoS 2 publisher | the PUBACK / PUBREC |
//! | CONNECT accepted (expiry > 0), SUBSCRIBE, UNSUBSCRIBE | `save_session` (clean start: `delete_session` first) | CONNACK, SUBACK, UNSUBACK |
//! | QoS 2 PUBLISH sent to a persistent session | `set_inflight(Published)` + `remove_queued` | that PUBLISH |
//! | PUBREC received (PUBREL sent) | `set_inflight(Released)` | that PUBREL |
//! | PUBACK / PUBCOMP received | `remove_queued` (QoS 1) / `remove_inflight` (QoS 2) | nobody |
//! | PUBREL received from a persistent publisher | `remove_incoming_qos2` | the PUBCOMP |
//! | connection closed | `save_session` with its expiry deadline, `set_will` for a delayed will | nobody |
//! | session ended | `delete_session` | nobody |
//! | will published or cancelled | `clear_will` | nobody |
//!
//! "Who waits": the packet is not written to the client before the batch
//! is durable, so that what the client is told survives `kill -9`.
//!
//! [`Delivery::tag`]: mqtt_session::Delivery::tag

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mqtt_store::{
    Batch, Clock, FjallStore, GroupCommit, GroupCommitConfig, Recovered, Store, StoreError,
};

/// Commit latency histogram bounds, in seconds (Prometheus `le`).
pub(crate) const LATENCY_BUCKETS: [(f64, &str); 5] = [
    (0.001, "0.001"),
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.05, "0.05"),
    (0.1, "0.1"),
];

/// Counters of the store's commits, for metrics.
#[derive(Debug, Default)]
pub(crate) struct CommitStats {
    /// Commits per latency bucket (not cumulative); the last is `+Inf`.
    pub(crate) buckets: [AtomicU64; 6],
    pub(crate) sum_micros: AtomicU64,
    pub(crate) count: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl CommitStats {
    fn record(&self, took: Duration, ok: bool) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|(le, _)| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The durable store and its group-commit writer.
pub(crate) struct Persist {
    group: GroupCommit,
    pub(crate) stats: Arc<CommitStats>,
}

impl std::fmt::Debug for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persist").finish_non_exhaustive()
    }
}

/// The clock a batch converts deadlines with: now on both clocks.
pub(crate) fn clock(now: Instant) -> Clock {
    Clock::new(now, SystemTime::now())
}

impl Persist {
    /// Opens (or creates) the fjall store in `dir` and recovers it.
    pub(crate) fn open(dir: &Path, now: Instant) -> io::Result<(Self, Recovered)> {
        let store = FjallStore::open(dir).map_err(|e| {
            io::Error::other(format!("cannot open the store in {}: {e}", dir.display()))
        })?;
        Self::with_store(Arc::new(store), now)
    }

    /// Recovers `store` and starts its writer.
    pub(crate) fn with_store(store: Arc<dyn Store>, now: Instant) -> io::Result<(Self, Recovered)> {
        let recovered = store
            .recover(clock(now))
            .map_err(|e| io::Error::other(format!("store recovery failed: {e}")))?;
        let group = GroupCommit::spawn(store.clone(), GroupCommitConfig::default())?;
        Ok((
            Self {
                group,
                stats: Arc::default(),
            },
            recovered,
        ))
    }

    /// A new, empty batch.
    pub(crate) fn batch(now: Instant) -> Batch {
        Batch::new(clock(now))
    }

    /// Commits `batch` in the next group; `done` runs on the writer thread
    /// once it is durable or has failed.
    pub(crate) fn submit(
        &self,
        batch: Batch,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let stats = self.stats.clone();
        let started = Instant::now();
        self.group.submit(batch, move |result| {
            stats.record(started.elapsed(), result.is_ok());
            done(result);
        });
    }

    /// Commits `batch`; nobody waits, a failure is logged.
    pub(crate) fn submit_logged(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        self.submit(batch, |result| {
            if let Err(e) = result {
                tracing::error!(error = %e, "store commit failed");
            }
        });
    }

    /// Blocks until everything submitted so far is durable.
    pub(crate) fn flush(&self, now: Instant) -> Result<(), StoreError> {
        self.group.commit(Self::batch(now))
    }
}
