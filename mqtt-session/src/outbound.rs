//! Messages this side sends: packet identifiers, the inflight window,
//! topic aliases, expiry and size checks. Shared by both roles.
//!
//! ```text
//!  QoS 1:  queued ──send──▶ Published ──PUBACK──▶ (slot freed)
//!  QoS 2:  queued ──send──▶ Published ──PUBREC──▶ Released ──PUBCOMP──▶ (slot freed)
//!                                       └─PUBREC ≥ 0x80──▶ (slot freed)
//! ```
//!
//! A slot is held from the PUBLISH until the flow ends, and the number of
//! slots held never exceeds the peer's Receive Maximum [MQTT-3.3.4-7].

use std::collections::HashMap;
use std::time::Instant;

use mqtt_codec::{
    Ack, MqttString, OutgoingPublish, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode,
};

use crate::state::{Delivery, DropReason, Inflight, InflightStage, Message, SessionState};

/// A packet to write, as `poll_transmit` of either role lends it.
#[derive(Debug, Clone, Copy)]
pub enum Transmit<'a> {
    /// A packet the connection made: an acknowledgement, CONNACK, PINGRESP,
    /// a resent PUBLISH...
    Packet(&'a Packet),
    /// The PUBLISH of a queued message, lent from the session's own copy
    /// of it: encoded from there, nothing of it is cloned.
    Publish(OutgoingPublish<'a>),
}

impl Transmit<'_> {
    /// Encodes the packet, as [`Packet::encode`] would the owned one.
    #[inline]
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut impl bytes::BufMut,
    ) -> Result<(), mqtt_codec::EncodeError> {
        match self {
            Transmit::Packet(p) => p.encode(version, buf),
            Transmit::Publish(p) => p.encode(version, buf),
        }
    }

    /// The packet, owned (a clone: reference counts, no byte copied).
    pub fn to_packet(&self) -> Packet {
        match self {
            Transmit::Packet(p) => (*p).clone(),
            Transmit::Publish(p) => Packet::Publish(p.to_owned()),
        }
    }
}

/// What holds a packet identifier.
#[derive(Debug)]
enum Use {
    /// A QoS 1/2 message: part of the session, resent after reconnection.
    Message(InflightStage),
    /// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement: ends with
    /// the connection.
    Control,
}

/// One held packet identifier.
#[derive(Debug)]
struct Slot {
    stage: Use,
    /// Send order, to resend in the original order [MQTT-4.6.0-1].
    seq: u64,
    /// The delivery's [`Delivery::tag`], kept past PUBREC (when the
    /// delivery itself is let go) for [`AckOutcome::Completed`].
    tag: u64,
}

/// Aliases this side assigns to the topics it sends (MQTT 5.0 §3.3.2.3.4).
///
/// Aliases go to the first topics sent, up to the peer's Topic Alias
/// Maximum, and keep their topic for the whole connection: the first message
/// on a topic carries the topic and the alias, later ones the alias and an
/// empty topic. Topics beyond the maximum are sent in full.
#[derive(Debug, Default)]
struct Aliases {
    max: u16,
    by_topic: HashMap<MqttString, u16>,
}

impl Aliases {
    /// The alias for `topic` and whether the peer already knows it.
    fn get(&mut self, topic: &MqttString) -> Option<(u16, bool)> {
        if let Some(&a) = self.by_topic.get(topic) {
            return Some((a, true));
        }
        let next = u16::try_from(self.by_topic.len() + 1).ok()?;
        if next > self.max {
            return None;
        }
        self.by_topic.insert(topic.clone(), next);
        Some((next, false))
    }
}

/// The sending half of a connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// Index `id - 1`; grows to the highest identifier used, which stays at
    /// most the largest window used, because the lowest free one is taken.
    slots: Vec<Option<Slot>>,
    /// Freed identifiers below `slots.len()`, reused first.
    free: Vec<u16>,
    held: usize,
    next_seq: u64,
    /// The peer's Receive Maximum, capped by our own inflight limit.
    window: usize,
    /// The peer's Maximum Packet Size.
    max_packet_size: u32,
    aliases: Aliases,
}

/// What an acknowledgement did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The flow this identifier belonged to, of a message sent at `qos`
    /// with [`Delivery::tag`] `tag`, is complete.
    Completed {
        /// The QoS it was sent with.
        qos: QoS,
        /// Its tag.
        tag: u64,
    },
    /// The flow moved on (PUBREC → PUBREL sent).
    Progressed,
    /// No flow had this identifier in that stage; ignored.
    Unknown,
}

impl Outbound {
    pub(crate) fn new(window: u16, max_packet_size: u32, topic_alias_max: u16) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            held: 0,
            next_seq: 0,
            window: usize::from(window.max(1)),
            max_packet_size,
            aliases: Aliases {
                max: topic_alias_max,
                by_topic: HashMap::new(),
            },
        }
    }

    /// Takes over the inflight messages of a resumed session and queues
    /// their retransmission: PUBLISH with DUP set, or PUBREL
    /// [MQTT-4.4.0-1]. They count against the window even if it shrank.
    /// A resent PUBLISH carries the expiry left at `now` [MQTT-3.3.2-6].
    pub(crate) fn resume(
        &mut self,
        session: &mut SessionState,
        version: ProtocolVersion,
        now: Instant,
        out: &mut Vec<Packet>,
    ) {
        for inflight in session.inflight.drain(..) {
            let id = inflight.packet_id;
            let index = usize::from(id.get()) - 1;
            if self.slots.len() <= index {
                self.slots.resize_with(index + 1, || None);
            }
            if self.slots[index].is_some() {
                continue; // a corrupt state with a repeated id: keep the first
            }
            match &inflight.stage {
                InflightStage::Published(d) => {
                    let mut p = self.publish_packet(d, Some(id), version, now);
                    p.dup = true;
                    out.push(Packet::Publish(p));
                }
                InflightStage::Released => out.push(Packet::PubRel(Ack::new(id))),
            }
            let tag = match &inflight.stage {
                InflightStage::Published(d) => d.tag,
                InflightStage::Released => 0,
            };
            self.slots[index] = Some(Slot {
                stage: Use::Message(inflight.stage),
                seq: self.next_seq,
                tag,
            });
            self.next_seq += 1;
            self.held += 1;
        }
        self.free = (0..self.slots.len())
            .rev()
            .filter(|&i| self.slots[i].is_none())
            .filter_map(|i| u16::try_from(i + 1).ok())
            .collect();
    }

    /// Gives the inflight messages back to the session, in send order.
    pub(crate) fn suspend(&mut self, session: &mut SessionState) {
        let mut held: Vec<(u64, Inflight)> = self
            .slots
            .drain(..)
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s?;
                let Use::Message(stage) = s.stage else {
                    return None;
                };
                let packet_id = PacketId::new(u16::try_from(i + 1).ok()?)?;
                Some((s.seq, Inflight { packet_id, stage }))
            })
            .collect();
        held.sort_by_key(|(seq, _)| *seq);
        session.inflight.extend(held.into_iter().map(|(_, i)| i));
        self.free.clear();
        self.held = 0;
    }

    pub(crate) fn held(&self) -> usize {
        self.held
    }

    fn allocate(&mut self) -> Option<PacketId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = u16::try_from(self.slots.len() + 1).ok()?;
                self.slots.push(None);
                id
            }
        };
        PacketId::new(id)
    }

    /// Frees a message's identifier; returns the slot's tag.
    fn release(&mut self, id: PacketId) -> u64 {
        let index = usize::from(id.get()) - 1;
        match self.slots[index].take() {
            Some(slot) => {
                self.held -= 1;
                self.free.push(id.get());
                slot.tag
            }
            None => 0,
        }
    }

    /// The PUBLISH of a resent message, owned (resumption is rare).
    fn publish_packet(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        version: ProtocolVersion,
        now: Instant,
    ) -> Publish {
        let mut custom = PublishProperties::default();
        let s = Sending::of(d);
        let how = self.shape(&s, version, now, &mut custom);
        lend(&s, packet_id, version, &how, &custom).to_owned()
    }

    /// How `s` is sent to this peer: with its topic or its alias, with its
    /// own properties or with `custom` ones, made here (subscription
    /// identifiers, the expiry left, the alias), MQTT 5.0 only.
    #[inline]
    fn shape(
        &mut self,
        s: &Sending<'_>,
        version: ProtocolVersion,
        now: Instant,
        custom: &mut PublishProperties,
    ) -> Shape {
        let mut how = Shape::default();
        if !version.is_v5() {
            return how;
        }
        let m = s.message;
        let alias = self.aliases.get(&m.topic);
        if s.subscription_ids.is_empty() && m.expires_at.is_none() && alias.is_none() {
            return how;
        }
        *custom = PublishProperties::clone(&m.properties);
        custom.subscription_identifiers = s.subscription_ids.into();
        // The remaining lifetime, rounded up so a message is never
        // reported expired before it is [MQTT-3.3.2-6].
        if let Some(at) = m.expires_at {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            custom.message_expiry_interval = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        }
        if let Some((alias, known)) = alias {
            custom.topic_alias = std::num::NonZeroU16::new(alias);
            how.alias_known = known;
            how.alias_bound = !known;
        }
        how.custom = true;
        how
    }

    /// Moves queued messages into PUBLISH packets while the window allows,
    /// at most `max` of them, and hands each to `out`. Expired messages
    /// and messages larger than the peer accepts are dropped and counted.
    pub(crate) fn send_queued(
        &mut self,
        session: &mut SessionState,
        version: ProtocolVersion,
        now: Instant,
        max: usize,
        mut out: impl FnMut(OutgoingPublish<'_>),
    ) {
        // Made per message when a peer needs its own properties; on the
        // stack, not in the connection, which an idle client keeps.
        let mut custom = PublishProperties::default();
        let mut sent = 0;
        while let Some(front) = session.queued.front() {
            if sent >= max {
                return;
            }
            if front.qos != QoS::AtMostOnce && self.held >= self.window {
                return;
            }
            let Some(d) = session.dequeue(now) else {
                return;
            };
            match self.send(session, d, version, now, &mut custom, &mut out) {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(d) => {
                    session.requeue_front(d);
                    return;
                }
            }
        }
    }

    /// Sends one message that is due (not expired, nothing queued before
    /// it): its PUBLISH goes to `out`. Returns whether it was sent (false:
    /// dropped as too large for the peer, and counted), or gives it back if
    /// the window has no room for it.
    fn send(
        &mut self,
        session: &mut SessionState,
        d: Delivery,
        version: ProtocolVersion,
        now: Instant,
        custom: &mut PublishProperties,
        out: &mut impl FnMut(OutgoingPublish<'_>),
    ) -> Result<bool, Delivery> {
        if d.qos != QoS::AtMostOnce && self.held >= self.window {
            return Err(d);
        }
        let packet_id = if d.qos == QoS::AtMostOnce {
            None
        } else {
            match self.allocate() {
                Some(id) => Some(id),
                None => return Err(d),
            }
        };
        let s = Sending::of(&d);
        let how = self.shape(&s, version, now, custom);
        if !self.fits(session, &s, packet_id, version, &how, custom) {
            return Ok(false);
        }
        let Some(id) = packet_id else {
            out(lend(&s, None, version, &how, custom));
            return Ok(true);
        };
        let tag = d.tag;
        let slot = self.slots[usize::from(id.get()) - 1].insert(Slot {
            stage: Use::Message(InflightStage::Published(d)),
            seq: self.next_seq,
            tag,
        });
        self.next_seq += 1;
        self.held += 1;
        if let Use::Message(InflightStage::Published(d)) = &slot.stage {
            out(lend(&Sending::of(d), packet_id, version, &how, custom));
        }
        Ok(true)
    }

    /// Whether the PUBLISH fits the peer's Maximum Packet Size. If not, it
    /// is discarded as if sent [MQTT-3.1.2-25]: counted, its identifier
    /// given back (no acknowledgement is awaited), and an alias it bound
    /// unbound, as the peer never learns it (it is the newest, so the
    /// numbering holds).
    fn fits(
        &mut self,
        session: &mut SessionState,
        s: &Sending<'_>,
        packet_id: Option<PacketId>,
        version: ProtocolVersion,
        how: &Shape,
        custom: &PublishProperties,
    ) -> bool {
        let size = lend(s, packet_id, version, how, custom).encoded_len(version);
        if size <= self.max_packet_size as usize {
            return true;
        }
        session.drops.count(DropReason::TooLarge, s.qos);
        if let Some(id) = packet_id {
            self.free.push(id.get());
        }
        if how.alias_bound {
            self.aliases.by_topic.remove(&s.message.topic);
        }
        false
    }

    pub(crate) fn stage(&self, id: PacketId) -> Option<&InflightStage> {
        match &self.slots.get(usize::from(id.get()) - 1)?.as_ref()?.stage {
            Use::Message(stage) => Some(stage),
            Use::Control => None,
        }
    }

    /// Holds an identifier for a SUBSCRIBE or UNSUBSCRIBE; `None` when all
    /// 65,535 are in use. It does not count against the window.
    pub(crate) fn allocate_control(&mut self) -> Option<PacketId> {
        let id = self.allocate()?;
        self.slots[usize::from(id.get()) - 1] = Some(Slot {
            stage: Use::Control,
            seq: 0,
            tag: 0,
        });
        Some(id)
    }

    /// SUBACK or UNSUBACK received: frees the identifier. Returns false if
    /// it was not held by a SUBSCRIBE or UNSUBSCRIBE.
    pub(crate) fn on_control_ack(&mut self, id: PacketId) -> bool {
        let index = usize::from(id.get()) - 1;
        match self.slots.get(index) {
            Some(Some(Slot {
                stage: Use::Control,
                ..
            })) => {
                self.slots[index] = None;
                self.free.push(id.get());
                true
            }
            _ => false,
        }
    }

    /// PUBACK received.
    pub(crate) fn on_puback(&mut self, id: PacketId) -> AckOutcome {
        match self.stage(id) {
            Some(InflightStage::Published(d)) if d.qos == QoS::AtLeastOnce => {
                let tag = self.release(id);
                AckOutcome::Completed {
                    qos: QoS::AtLeastOnce,
                    tag,
                }
            }
            _ => AckOutcome::Unknown,
        }
    }

    /// PUBREC received: answer with PUBREL, or end the flow on a failure code.
    pub(crate) fn on_pubrec(&mut self, ack: &Ack, out: &mut Vec<Packet>) -> AckOutcome {
        let id = ack.packet_id;
        match self.stage(id) {
            Some(InflightStage::Published(d)) if d.qos == QoS::ExactlyOnce => {
                if ack.reason_code.is_error() {
                    let tag = self.release(id);
                    return AckOutcome::Completed {
                        qos: QoS::ExactlyOnce,
                        tag,
                    };
                }
                if let Some(slot) = self.slots[usize::from(id.get()) - 1].as_mut() {
                    slot.stage = Use::Message(InflightStage::Released);
                }
                out.push(Packet::PubRel(Ack::new(id)));
                AckOutcome::Progressed
            }
            Some(InflightStage::Released) => {
                // A repeated PUBREC: PUBREL again.
                out.push(Packet::PubRel(Ack::new(id)));
                AckOutcome::Progressed
            }
            _ => {
                out.push(Packet::PubRel(Ack::with_reason(
                    id,
                    ReasonCode::PacketIdentifierNotFound,
                )));
                AckOutcome::Unknown
            }
        }
    }

    /// PUBCOMP received.
    pub(crate) fn on_pubcomp(&mut self, id: PacketId) -> AckOutcome {
        match self.stage(id) {
            Some(InflightStage::Released) => {
                let tag = self.release(id);
                AckOutcome::Completed {
                    qos: QoS::ExactlyOnce,
                    tag,
                }
            }
            _ => AckOutcome::Unknown,
        }
    }
}

/// How a message is sent to one peer (see [`Outbound::shape`]).
#[derive(Debug, Default)]
struct Shape {
    /// The properties are the custom ones, not the message's.
    custom: bool,
    /// The peer knows the topic's alias: the topic is left out.
    alias_known: bool,
    /// This packet binds a new alias to the topic.
    alias_bound: bool,
}

/// No topic: the peer knows the alias.
static NO_TOPIC: MqttString = MqttString::new();

/// What is sent of one message: the message, and how this peer gets it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sending<'a> {
    pub(crate) message: &'a Message,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: &'a [mqtt_codec::SubscriptionId],
}

impl<'a> Sending<'a> {
    #[inline(always)]
    pub(crate) fn of(d: &'a Delivery) -> Self {
        Self {
            message: &d.message,
            qos: d.qos,
            retain: d.retain,
            subscription_ids: &d.subscription_ids,
        }
    }
}

/// The PUBLISH of `s`, borrowed from its message (and from `custom`, if
/// the shape says so).
#[inline(always)]
fn lend<'a>(
    s: &Sending<'a>,
    packet_id: Option<PacketId>,
    version: ProtocolVersion,
    how: &Shape,
    custom: &'a PublishProperties,
) -> OutgoingPublish<'a> {
    let m = s.message;
    OutgoingPublish {
        dup: false,
        qos: s.qos,
        retain: s.retain,
        topic: if how.alias_known { &NO_TOPIC } else { &m.topic },
        packet_id,
        // 3.1.1 writes no properties: the message's are not looked at.
        properties: if how.custom || !version.is_v5() {
            custom
        } else {
            &m.properties
        },
        payload: &m.payload,
    }
}
