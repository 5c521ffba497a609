//! Partitions and key layouts.
//!
//! Per-session keys start with the client identifier's length (`u16`
//! big-endian) and bytes, so that one session's keys form a prefix no other
//! session's keys share ("ab" is not a prefix of "abc" once lengths lead),
//! then a big-endian number so that keys sort in number order.

use bytes::Bytes;
use mqtt_codec::MqttString;

/// The partitions (fjall's column families) of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Part {
    /// `"format"` → the meta record.
    Meta,
    /// (client id) → session record.
    Sessions,
    /// (client id, sequence u64) → queued delivery.
    Queues,
    /// (client id, packet id u16) → in-flight record.
    Inflight,
    /// (client id, packet id u16) → incoming QoS 2 record.
    Incoming,
    /// topic bytes (never empty) → retained message.
    Retained,
    /// (client id) → pending will.
    Wills,
}

impl Part {
    pub(crate) const ALL: [Self; 7] = [
        Self::Meta,
        Self::Sessions,
        Self::Queues,
        Self::Inflight,
        Self::Incoming,
        Self::Retained,
        Self::Wills,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Sessions => "sessions",
            Self::Queues => "queues",
            Self::Inflight => "inflight",
            Self::Incoming => "incoming",
            Self::Retained => "retained",
            Self::Wills => "wills",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The key of the meta record.
pub(crate) const META_KEY: &[u8] = b"format";

/// The prefix every key of one session starts with in the per-session
/// partitions.
pub(crate) fn session_prefix(client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + client_id.len() + 8);
    // MqttString is at most 65,535 bytes.
    k.extend_from_slice(
        &u16::try_from(client_id.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    k.extend_from_slice(client_id.as_bytes());
    k
}

pub(crate) fn seq_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn packet_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&packet_id.to_be_bytes());
    k
}

/// Splits a per-session key into the client id and the number after it
/// (`N` bytes: 8 for a sequence, 2 for a packet id).
pub(crate) fn split_key<const N: usize>(key: &[u8]) -> Option<(MqttString, [u8; N])> {
    let len = usize::from(u16::from_be_bytes([*key.first()?, *key.get(1)?]));
    if key.len() != 2 + len + N {
        return None;
    }
    let id = MqttString::from_bytes(Bytes::copy_from_slice(&key[2..2 + len])).ok()?;
    let mut n = [0; N];
    n.copy_from_slice(&key[2 + len..]);
    Some((id, n))
}
