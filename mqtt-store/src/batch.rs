//! A group of writes applied atomically.

use std::time::Instant;

use mqtt_codec::{MqttString, PacketId, Will};
use mqtt_session::{Delivery, Inflight, InflightStage, Message, SessionState};

use crate::clock::Clock;
use crate::record;

/// Writes to apply together, all or none, with [`Store::write`] or
/// [`Store::commit`](crate::Store::commit).
///
/// Values are encoded as they are added, on the caller's thread, so the
/// writer (a group-commit thread) only copies bytes. Deadlines given as
/// [`Instant`] are converted to UNIX time with the batch's [`Clock`].
///
/// Within a batch, later writes win over earlier ones to the same item, so
/// a clean start is `delete_session` then `save_session` in one batch.
///
/// ```
/// # use std::time::{Instant, SystemTime};
/// # use mqtt_codec::MqttString;
/// # use mqtt_session::SessionState;
/// use mqtt_store::{Batch, Clock, MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let clock = Clock::new(Instant::now(), SystemTime::now());
/// let session = SessionState::new(MqttString::from_static("sensor-1"), 3600);
/// let mut batch = Batch::new(clock);
/// batch.save_session(&session, None);
/// store.commit(&batch)?;
/// assert!(store.load_session("sensor-1", clock)?.is_some());
/// # Ok::<(), mqtt_store::StoreError>(())
/// ```
///
/// [`Store::write`]: crate::Store::write
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) clock: Clock,
    pub(crate) ops: Vec<Op>,
}

/// One write, its value already encoded where the value is known.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    SaveSession {
        client_id: MqttString,
        value: Vec<u8>,
    },
    DeleteSession {
        client_id: MqttString,
    },
    Append {
        client_id: MqttString,
        seq: u64,
        size: usize,
        value: Vec<u8>,
    },
    RemoveQueued {
        client_id: MqttString,
        seq: u64,
    },
    /// Encoded when applied: the record carries the send order, which the
    /// store assigns.
    SetInflight {
        client_id: MqttString,
        packet_id: u16,
        stage: InflightStage,
    },
    RemoveInflight {
        client_id: MqttString,
        packet_id: u16,
    },
    AddIncoming {
        client_id: MqttString,
        packet_id: u16,
    },
    RemoveIncoming {
        client_id: MqttString,
        packet_id: u16,
    },
    SetRetained {
        topic: MqttString,
        value: Vec<u8>,
    },
    ClearRetained {
        topic: MqttString,
    },
    SetWill {
        client_id: MqttString,
        value: Vec<u8>,
    },
    ClearWill {
        client_id: MqttString,
    },
}

impl Batch {
    /// An empty batch whose deadlines are converted with `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            ops: Vec::new(),
        }
    }

    /// Number of writes in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Saves a session's identity, expiry interval, subscriptions and drop
    /// counters — not its queue, in-flight messages or incoming QoS 2
    /// identifiers, which have their own writes.
    ///
    /// `expires_at` is when the session ends if the client does not come
    /// back: `Closed::session_expires_at` of `mqtt-session`. `None` while
    /// the client is connected: if the broker then stops, recovery counts
    /// the expiry interval from the restart (and writes that deadline),
    /// since the session ended with the broker. `None` with an interval of
    /// `u32::MAX` never expires.
    pub fn save_session(
        &mut self,
        session: &SessionState,
        expires_at: Option<Instant>,
    ) -> &mut Self {
        let deadline = expires_at.map(|t| self.clock.to_unix_ms(t));
        self.ops.push(Op::SaveSession {
            client_id: session.client_id.clone(),
            value: record::encode_session(session, deadline),
        });
        self
    }

    /// Deletes a session and everything stored for it: queue, in-flight
    /// messages, incoming QoS 2 identifiers. Not its will: a session's end
    /// is when its will is due, so the will is cleared by
    /// [`Self::clear_will`] once published.
    pub fn delete_session(&mut self, client_id: &MqttString) -> &mut Self {
        self.ops.push(Op::DeleteSession {
            client_id: client_id.clone(),
        });
        self
    }

    /// Appends a delivery to a session's offline queue under `seq`.
    ///
    /// Sequence numbers are the caller's: per session, increasing (loading
    /// returns the queue in `seq` order and the next free number). Appending
    /// under a `seq` already used replaces that entry. The session should be
    /// saved before, or in the same batch: recovery deletes queue entries
    /// of unknown sessions.
    pub fn append_queued(
        &mut self,
        client_id: &MqttString,
        seq: u64,
        delivery: &Delivery,
    ) -> &mut Self {
        self.ops.push(Op::Append {
            client_id: client_id.clone(),
            seq,
            size: delivery.message.size(),
            value: record::encode_queued(delivery, &self.clock),
        });
        self
    }

    /// Removes the queue entry `seq` of a session (delivered, dropped, or
    /// moved in flight). Removing an absent entry does nothing.
    pub fn remove_queued(&mut self, client_id: &MqttString, seq: u64) -> &mut Self {
        self.ops.push(Op::RemoveQueued {
            client_id: client_id.clone(),
            seq,
        });
        self
    }

    /// Records an outgoing QoS 1/2 message at its stage, under its packet
    /// identifier. The store keeps the order in which packet identifiers
    /// were first set, so loading returns in-flight messages in the order
    /// they were sent [MQTT-4.4.0-1]; moving to
    /// [`InflightStage::Released`] keeps the place.
    pub fn set_inflight(&mut self, client_id: &MqttString, inflight: &Inflight) -> &mut Self {
        self.ops.push(Op::SetInflight {
            client_id: client_id.clone(),
            packet_id: inflight.packet_id.get(),
            stage: inflight.stage.clone(),
        });
        self
    }

    /// Removes an outgoing message once fully acknowledged (PUBACK or
    /// PUBCOMP).
    pub fn remove_inflight(&mut self, client_id: &MqttString, packet_id: PacketId) -> &mut Self {
        self.ops.push(Op::RemoveInflight {
            client_id: client_id.clone(),
            packet_id: packet_id.get(),
        });
        self
    }

    /// Records an incoming QoS 2 packet identifier answered with PUBREC.
    pub fn add_incoming_qos2(&mut self, client_id: &MqttString, packet_id: PacketId) -> &mut Self {
        self.ops.push(Op::AddIncoming {
            client_id: client_id.clone(),
            packet_id: packet_id.get(),
        });
        self
    }

    /// Forgets an incoming QoS 2 packet identifier (PUBREL received).
    pub fn remove_incoming_qos2(
        &mut self,
        client_id: &MqttString,
        packet_id: PacketId,
    ) -> &mut Self {
        self.ops.push(Op::RemoveIncoming {
            client_id: client_id.clone(),
            packet_id: packet_id.get(),
        });
        self
    }

    /// Sets the retained message of its topic.
    pub fn set_retained(&mut self, message: &Message) -> &mut Self {
        self.ops.push(Op::SetRetained {
            topic: message.topic.clone(),
            value: record::encode_message(message, &self.clock),
        });
        self
    }

    /// Clears the retained message of `topic` (a retained PUBLISH with an
    /// empty payload).
    pub fn clear_retained(&mut self, topic: &MqttString) -> &mut Self {
        self.ops.push(Op::ClearRetained {
            topic: topic.clone(),
        });
        self
    }

    /// Records a session's pending will, to publish at `publish_at`
    /// (`ScheduledWill` of `mqtt-session`). Replaces any earlier one.
    pub fn set_will(
        &mut self,
        client_id: &MqttString,
        will: &Will,
        publish_at: Instant,
    ) -> &mut Self {
        self.ops.push(Op::SetWill {
            client_id: client_id.clone(),
            value: record::encode_will(will, self.clock.to_unix_ms(publish_at)),
        });
        self
    }

    /// Clears a session's pending will (published, or the client came back).
    pub fn clear_will(&mut self, client_id: &MqttString) -> &mut Self {
        self.ops.push(Op::ClearWill {
            client_id: client_id.clone(),
        });
        self
    }
}
