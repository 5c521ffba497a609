//! The `Store` trait and what it returns.

use std::time::Instant;

use mqtt_codec::MqttString;
use mqtt_session::{Message, ScheduledWill, SessionState};

use crate::batch::Batch;
use crate::clock::Clock;
use crate::error::StoreError;

/// Where a broker keeps what must outlive a connection or a restart:
/// sessions with their subscriptions and expiry, offline queues, in-flight
/// messages, incoming QoS 2 identifiers, retained messages and wills.
///
/// # Call order
///
/// 1. Open the store, then [`recover`](Self::recover) it once, before any
///    write: recovery loads everything, removes what expired while the
///    broker was down, skips corrupt records, and builds the store's
///    indexes (queue sizes, in-flight order).
/// 2. Group changes in a [`Batch`] and [`write`](Self::write) it: the batch
///    applies atomically and is visible to loads at once, but is not yet
///    durable.
/// 3. [`sync`](Self::sync) makes every batch written before it durable,
///    with one fsync whatever their number. Only then may a broker
///    acknowledge a QoS 1/2 PUBLISH whose effects the batches carry.
///    [`commit`](Self::commit) is a write and a sync; a
///    [`GroupCommit`](crate::GroupCommit) shares one sync among many
///    concurrent commits.
///
/// Methods are synchronous and may block on disk I/O: call them from a
/// dedicated thread (a `GroupCommit` is one) or `spawn_blocking`, never on
/// an async executor thread. Implementations are `Send + Sync`; writes are
/// serialised inside.
///
/// # Limits
///
/// Which message a full queue drops is the caller's policy
/// (`SessionState::enqueue` with its `QueueLimits`): the caller writes the
/// outcome (append the new message, remove the dropped one). The store
/// enforces a backstop, [`StoreLimits`], and refuses a batch that would
/// take a queue past it with [`StoreError::QueueFull`], so that a bug
/// cannot fill the disk.
pub trait Store: Send + Sync {
    /// Loads everything at startup, as of wall-clock `now`, and makes the
    /// store ready for writes.
    ///
    /// Removes (and reclaims) sessions whose expiry deadline has passed
    /// with all they own, queued and retained messages whose expiry has
    /// passed, entries of unknown sessions, and records that fail their
    /// checksum or do not decode (each logged as a warning). In-flight
    /// messages are kept even when expired: their delivery had started.
    /// Wills are returned whether due or not: a due will is published at
    /// once. The removals are synced before it returns.
    fn recover(&self, now: Clock) -> Result<Recovered, StoreError>;

    /// Applies a batch atomically: all of it or, on error, none of it. It
    /// is visible to loads at once and durable after the next
    /// [`sync`](Self::sync).
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Makes every batch written so far durable: after it returns `Ok`,
    /// they survive `kill -9` and power loss. One fsync.
    fn sync(&self) -> Result<(), StoreError>;

    /// Writes a batch and syncs. For many small commits from concurrent
    /// requests, a [`GroupCommit`](crate::GroupCommit) does the same with
    /// one sync per group.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write(batch)?;
        self.sync()
    }

    /// Loads one session as of `now` (for a broker that loads sessions on
    /// demand): `None` if it does not exist or has expired. Like
    /// [`recover`](Self::recover), removes what it finds expired or corrupt.
    fn load_session(
        &self,
        client_id: &str,
        now: Clock,
    ) -> Result<Option<LoadedSession>, StoreError>;

    /// Loads every retained message that has not expired at `now`.
    fn load_retained(&self, now: Clock) -> Result<Vec<Message>, StoreError>;

    /// Loads every pending will, due or not.
    fn load_wills(&self, now: Clock) -> Result<Vec<PendingWill>, StoreError>;

    /// Counters since the store was opened.
    fn stats(&self) -> StoreStats;
}

/// Backstop limits a store enforces by itself, whatever its caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most messages in one session's offline queue. Default: 100,000 —
    /// well above any sensible `QueueLimits::max_messages`, which is the
    /// limit meant to apply.
    pub max_queued_messages: usize,
    /// Most bytes (topic and payload, as `Message::size`) in one session's
    /// offline queue. Default: 256 MiB.
    pub max_queued_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_queued_messages: 100_000,
            max_queued_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Counters of a store's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Batches applied.
    pub writes: u64,
    /// Syncs (fsyncs for a durable store) done.
    pub syncs: u64,
}

/// A session as loaded, with everything it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    /// The session: subscriptions, expiry interval, drop counters, in-flight
    /// messages in send order, incoming QoS 2 identifiers, and the queue in
    /// sequence order (expired messages left out and counted in
    /// `drops.expired`).
    pub state: SessionState,
    /// The sequence number of each entry of `state.queued`, in the same
    /// order: what to pass to [`Batch::remove_queued`].
    pub queue_seqs: Vec<u64>,
    /// The next sequence number to append with: one past the highest used.
    pub next_seq: u64,
    /// When the session expires; `None` never.
    pub expires_at: Option<Instant>,
}

/// A will waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWill {
    /// The session it belongs to.
    pub client_id: MqttString,
    /// The will and when to publish it (in the past: publish now).
    pub will: ScheduledWill,
}

/// What [`Store::recover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Live sessions, by client identifier.
    pub sessions: Vec<LoadedSession>,
    /// Retained messages that have not expired.
    pub retained: Vec<Message>,
    /// Pending wills.
    pub wills: Vec<PendingWill>,
    /// Counts, for the log.
    pub report: RecoveryReport,
}

/// Counts of what recovery loaded and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sessions loaded.
    pub sessions: usize,
    /// Queued messages loaded.
    pub queued: usize,
    /// In-flight messages loaded.
    pub inflight: usize,
    /// Incoming QoS 2 identifiers loaded.
    pub incoming_qos2: usize,
    /// Retained messages loaded.
    pub retained: usize,
    /// Wills loaded.
    pub wills: usize,
    /// Sessions removed because their expiry deadline had passed.
    pub expired_sessions: usize,
    /// Queued and retained messages removed because they had expired.
    pub expired_messages: usize,
    /// Records removed because they failed their checksum or did not decode.
    pub corrupt: usize,
    /// Records removed because the session they belong to is gone.
    pub orphans: usize,
}
