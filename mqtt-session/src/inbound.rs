//! Messages this side receives: topic aliases, the Receive Maximum, QoS 2
//! duplicate suppression, and acknowledgements in order. Shared by both roles.
//!
//! ```text
//!  QoS 1:  PUBLISH ──▶ pending ──app acks──▶ PUBACK
//!  QoS 2:  PUBLISH ──▶ pending ──app acks──▶ PUBREC ─▶ awaiting PUBREL ──PUBREL──▶ PUBCOMP
//!          PUBLISH (same id, pending or awaiting PUBREL): not delivered again;
//!                  once PUBREC was sent it is sent again.
//! ```
//!
//! Acknowledgements leave in the order the PUBLISH packets arrived
//! [MQTT-4.6.0-2] [MQTT-4.6.0-3], whatever order the application completes them in.
//!
//! # The Receive Maximum, as a window
//!
//! What our Receive Maximum bounds here is what a received publication
//! holds until its acknowledgement leaves: an entry in `pending` (and, in
//! the broker, the acknowledgement waiting for its store commit). Those are
//! counted: [`Inbound::window_full`] tells the caller to stop reading until
//! acknowledgements leave, and a PUBLISH handed in past it anyway is the
//! Receive Maximum exceeded (DISCONNECT 0x93).
//!
//! QoS 2 flows between PUBREC and PUBREL are not counted, though a client
//! counts them against its send quota until PUBCOMP [MQTT-4.9.0-2]: they
//! hold one bit of a fixed-size set, so the identifier space bounds them,
//! and the PUBREL that ends one comes *behind* the client's next PUBLISH
//! packets on the wire, so no wait could free them. A client that resends
//! its whole backlog on reconnecting, beyond the window (paho-mqtt does:
//! its reconnection resets its in-flight count), is thus slowed down
//! rather than disconnected in a loop; and a resumed session's flows, for
//! which a new connection's quota starts afresh (MQTT 5.0 §4.9), never
//! count against it.

use std::collections::VecDeque;

use mqtt_codec::{Ack, MqttString, Packet, PacketId, Publish, QoS, ReasonCode};

use crate::error::ProtocolError;

/// Incoming QoS 2 packet identifiers awaiting PUBREL: a bitset over the
/// 65,535 identifiers, allocated on the first QoS 2 message so sessions that
/// never use QoS 2 pay nothing.
#[derive(Debug, Default)]
pub(crate) struct IdSet {
    bits: Option<Box<[u64; 1024]>>,
    len: usize,
}

impl IdSet {
    pub(crate) fn contains(&self, id: PacketId) -> bool {
        let i = usize::from(id.get());
        self.bits
            .as_ref()
            .is_some_and(|b| b[i / 64] & (1 << (i % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, id: PacketId) -> bool {
        let i = usize::from(id.get());
        let bits = self.bits.get_or_insert_with(|| Box::new([0; 1024]));
        let fresh = bits[i / 64] & (1 << (i % 64)) == 0;
        bits[i / 64] |= 1 << (i % 64);
        self.len += usize::from(fresh);
        fresh
    }

    pub(crate) fn remove(&mut self, id: PacketId) -> bool {
        let i = usize::from(id.get());
        let Some(bits) = self.bits.as_mut() else {
            return false;
        };
        let present = bits[i / 64] & (1 << (i % 64)) != 0;
        bits[i / 64] &= !(1 << (i % 64));
        self.len -= usize::from(present);
        present
    }

    /// The identifiers in the set, in increasing order: word by word, so an
    /// empty set (every connection that never used QoS 2 ends with one)
    /// costs nothing and a sparse one 1,024 word tests.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PacketId> + '_ {
        let words = self.bits.as_deref().filter(|_| self.len > 0);
        words
            .into_iter()
            .flat_map(|w| w.iter().enumerate())
            .filter(|(_, word)| **word != 0)
            .flat_map(|(i, &word)| {
                (0..64)
                    .filter(move |b| word & (1 << b) != 0)
                    .filter_map(move |b| u16::try_from(i * 64 + b).ok())
            })
            .filter_map(PacketId::new)
    }
}

/// An acknowledgement waiting for the application, in arrival order.
#[derive(Debug)]
struct Pending {
    id: PacketId,
    qos: QoS,
    done: Option<ReasonCode>,
}

/// The receiving half of a connection.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// Our Receive Maximum.
    receive_maximum: usize,
    /// Our Topic Alias Maximum; `aliases[a - 1]` is alias `a`'s topic.
    aliases: Vec<Option<MqttString>>,
    alias_max: u16,
    /// QoS 1/2 publications without PUBACK/PUBREC sent, in arrival order.
    pending: VecDeque<Pending>,
    /// QoS 2 identifiers delivered (pending or PUBREC sent) and not released.
    qos2: IdSet,
    /// PUBCOMP waits for [`Self::complete_release`] (the application first
    /// forgets the identifier durably).
    confirm_releases: bool,
    /// Identifiers released by PUBREL whose PUBCOMP waits for the
    /// application.
    completing: Vec<PacketId>,
}

/// What a PUBREL did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PubRelOutcome {
    /// The flow ended: PUBCOMP sent.
    Completed,
    /// The flow ended; PUBCOMP waits for the application.
    AwaitingConfirmation,
    /// Unknown identifier: PUBCOMP 0x92 sent.
    Unknown,
}

impl Inbound {
    pub(crate) fn new(receive_maximum: u16, alias_max: u16) -> Self {
        Self {
            receive_maximum: usize::from(receive_maximum.max(1)),
            aliases: Vec::new(),
            alias_max,
            pending: VecDeque::new(),
            qos2: IdSet::default(),
            confirm_releases: false,
            completing: Vec::new(),
        }
    }

    /// Holds each PUBCOMP until [`Self::complete_release`].
    pub(crate) fn set_confirm_releases(&mut self, on: bool) {
        self.confirm_releases = on;
    }

    /// Restores the QoS 2 identifiers of a resumed session: their message
    /// was delivered before, so a PUBLISH with one is a duplicate, answered
    /// with PUBREC.
    pub(crate) fn resume(&mut self, ids: &[PacketId]) {
        for &id in ids {
            self.qos2.insert(id);
        }
    }

    /// The QoS 2 identifiers whose message was handed to the application
    /// and whose PUBREL has not been received, to keep in the session when
    /// the connection ends. Those still waiting for their PUBREC (the
    /// application had not acknowledged them yet) are included: the
    /// message went on, so the client's resend after reconnecting is a
    /// duplicate, answered with PUBREC and not delivered again
    /// [MQTT-4.3.3-10] (forgetting them made every reconnection deliver
    /// them once more). Those whose PUBCOMP waits for the application are
    /// included too: the client sends PUBREL again after reconnecting.
    pub(crate) fn unreleased(&self) -> Vec<PacketId> {
        let mut ids: Vec<PacketId> = self.qos2.iter().collect();
        ids.extend(self.completing.iter().copied());
        ids
    }

    /// Whether as many publications as our Receive Maximum wait for their
    /// acknowledgement: the peer's next QoS 1/2 PUBLISH must wait until
    /// one leaves (see the module documentation).
    pub(crate) fn window_full(&self) -> bool {
        self.pending.len() >= self.receive_maximum
    }

    /// Resolves the topic alias of a received PUBLISH.
    fn resolve_alias(&mut self, p: &mut Publish) -> Result<(), ProtocolError> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        if alias.get() > self.alias_max {
            return Err(ProtocolError::TopicAliasInvalid {
                alias: alias.get(),
                max: self.alias_max,
            });
        }
        let index = usize::from(alias.get()) - 1;
        if p.topic.is_empty() {
            match self.aliases.get(index).and_then(Option::as_ref) {
                Some(topic) => p.topic = topic.clone(),
                None => return Err(ProtocolError::UnknownTopicAlias { alias: alias.get() }),
            }
        } else {
            if self.aliases.len() <= index {
                self.aliases.resize(index + 1, None);
            }
            self.aliases[index] = Some(p.topic.clone());
        }
        p.properties.topic_alias = None;
        Ok(())
    }

    /// A PUBLISH arrived. Returns whether to hand it to the application
    /// (QoS 1/2 then await its acknowledgement): not a duplicate of a QoS 2
    /// message already delivered. The topic alias is resolved in place (the
    /// packet is not moved: it is over 200 bytes).
    #[inline]
    pub(crate) fn on_publish(
        &mut self,
        p: &mut Publish,
        out: &mut Vec<Packet>,
    ) -> Result<bool, ProtocolError> {
        self.resolve_alias(p)?;
        let Some(id) = p.packet_id else {
            return Ok(true);
        };
        if p.qos == QoS::ExactlyOnce && self.qos2.contains(id) {
            // Delivered already. If PUBREC went out, it is sent again; if
            // the application has not acknowledged yet, PUBREC follows then.
            if !self.pending.iter().any(|x| x.id == id) {
                out.push(Packet::PubRec(Ack::new(id)));
            }
            return Ok(false);
        }
        if self.window_full() {
            return Err(ProtocolError::ReceiveMaximumExceeded {
                max: self.receive_maximum,
            });
        }
        if p.qos == QoS::ExactlyOnce {
            self.qos2.insert(id);
        }
        self.pending.push_back(Pending {
            id,
            qos: p.qos,
            done: None,
        });
        Ok(true)
    }

    /// The application finished with a received QoS 1/2 message: sends its
    /// acknowledgement, and those of earlier ones, in arrival order.
    /// Returns false if no such message was waiting.
    pub(crate) fn acknowledge(
        &mut self,
        id: PacketId,
        reason: ReasonCode,
        out: &mut Vec<Packet>,
    ) -> bool {
        let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.id == id && p.done.is_none())
        else {
            return false;
        };
        p.done = Some(reason);
        while let Some(Pending {
            done: Some(reason), ..
        }) = self.pending.front()
        {
            let reason = *reason;
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let ack = Ack::with_reason(p.id, reason);
            if p.qos == QoS::AtLeastOnce {
                out.push(Packet::PubAck(ack));
            } else {
                if reason.is_error() {
                    // A failed PUBREC ends the flow (MQTT 5.0 §4.3.3): the
                    // identifier is free again.
                    self.qos2.remove(p.id);
                }
                out.push(Packet::PubRec(ack));
            }
        }
        true
    }

    /// PUBREL arrived: PUBCOMP, with 0x92 if the identifier is unknown.
    pub(crate) fn on_pubrel(&mut self, id: PacketId, out: &mut Vec<Packet>) -> PubRelOutcome {
        let waiting = self.qos2.contains(id) && !self.pending.iter().any(|p| p.id == id);
        if waiting {
            self.qos2.remove(id);
            if self.confirm_releases {
                self.completing.push(id);
                return PubRelOutcome::AwaitingConfirmation;
            }
            out.push(Packet::PubComp(Ack::new(id)));
            PubRelOutcome::Completed
        } else if self.completing.contains(&id) {
            // A repeated PUBREL: its PUBCOMP is on its way.
            PubRelOutcome::AwaitingConfirmation
        } else {
            out.push(Packet::PubComp(Ack::with_reason(
                id,
                ReasonCode::PacketIdentifierNotFound,
            )));
            PubRelOutcome::Unknown
        }
    }

    /// The application has forgotten a released identifier: PUBCOMP.
    pub(crate) fn complete_release(&mut self, id: PacketId, out: &mut Vec<Packet>) -> bool {
        let Some(i) = self.completing.iter().position(|&c| c == id) else {
            return false;
        };
        self.completing.swap_remove(i);
        out.push(Packet::PubComp(Ack::new(id)));
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The set holds exactly what was inserted and not removed, and
        /// iterates it in increasing order (identifiers 1 and 65,535, at
        /// the ends of the words, included).
        #[test]
        fn id_set_agrees_with_a_btree_set(
            ops in proptest::collection::vec(
                (any::<bool>(), prop_oneof![Just(1u16), Just(63), Just(64), Just(65_535), 1u16..]),
                0..200,
            )
        ) {
            let mut set = IdSet::default();
            let mut model = BTreeSet::new();
            for (insert, id) in ops {
                let id = PacketId::new(id).unwrap();
                if insert {
                    prop_assert_eq!(set.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(set.remove(id), model.remove(&id));
                }
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_empty_id_set_iterates_nothing() {
        assert_eq!(IdSet::default().iter().count(), 0);
        let mut set = IdSet::default();
        let id = PacketId::new(9).unwrap();
        set.insert(id);
        set.remove(id);
        assert_eq!(set.iter().count(), 0);
    }
}
