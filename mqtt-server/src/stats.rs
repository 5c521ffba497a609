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
    /// PUBLISH packets received, by QoS (index 0, 1, 2).
    pub messages_received_by_qos: [AtomicU64; 3],
    /// Topic and payload bytes of PUBLISH packets received, by QoS.
    pub publish_bytes_received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent to clients (first sends and resends), by QoS.
    pub messages_sent_by_qos: [AtomicU64; 3],
    /// Topic and payload bytes of PUBLISH packets sent, by QoS.
    pub publish_bytes_sent_by_qos: [AtomicU64; 3],
    /// Connections closed at once because a listener's
    /// `max_connection_rate` was exceeded.
    pub connections_rate_limited: AtomicU64,
    /// CONNECTs refused for a wrong password or unknown user (0x86).
    pub auth_bad_credentials: AtomicU64,
    /// CONNECTs refused as not authorised (0x87): anonymous when not
    /// allowed, or a will topic the ACL denies.
    pub auth_not_authorized: AtomicU64,
    /// CONNECTs refused because their address failed to log in too often.
    pub auth_blocked: AtomicU64,
    /// PUBLISH packets dropped because the ACL denies the publisher the topic.
    pub dropped_acl_publish: AtomicU64,
    /// Deliveries not made because the ACL denies the subscriber the topic.
    pub dropped_acl_read: AtomicU64,
    /// Times a connection stopped reading because its client went over
    /// `max_publish_rate` or `max_publish_bytes_rate`.
    pub publish_throttled: AtomicU64,
    /// Times a connection stopped reading because its client had as many
    /// QoS 1/2 publications unacknowledged as `receive_maximum` and sent
    /// more (paho-mqtt resends its whole backlog after reconnecting).
    pub receive_window_waits: AtomicU64,
    /// Times a publisher's acknowledgement (and its reading) waited for
    /// room in a connected subscriber's full queue (backpressure).
    pub publish_waits: AtomicU64,
    /// QoS 1/2 deliveries dropped because a subscriber's queue stayed full
    /// for `max_publish_wait_ms`.
    pub dropped_publish_wait: AtomicU64,
    /// Acknowledgements refused (0x97 / 0x80, or the connection closed for
    /// MQTT 3.1.1) because the store could not commit the message.
    pub store_refused: AtomicU64,
    /// Connections closed before MQTT because a transport handshake (PROXY
    /// header, TLS, WebSocket upgrade) failed.
    pub handshake_failures: AtomicU64,
    /// Connections closed before MQTT because their transport handshakes
    /// were not done within `connect_timeout`.
    pub handshake_timeouts: AtomicU64,
    /// CONNECTs refused with 0x89 (Server busy) because the connection that
    /// owned the session did not hand it over in time.
    pub takeover_timeouts: AtomicU64,
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
