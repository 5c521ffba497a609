//! Counters of what the broker did, readable at any time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Broker-wide counters (relaxed atomics: each is exact, a snapshot of
/// several is not a single instant).
#[derive(Debug, Default)]
pub struct Stats {
    /// Clients connected now.
    pub clients_connected: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// Deliveries queued to sessions.
    pub messages_routed: AtomicU64,
    /// Deliveries dropped because a session's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
