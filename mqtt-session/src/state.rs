//! The session state that outlives a connection, as plain data.
//!
//! A [`SessionState`] is what a server keeps for a client between
//! connections and what `mqtt-store` writes to disk: its subscriptions, the
//! messages in flight to it, the messages queued for it, and the QoS 2
//! packet identifiers it has sent but not yet released. Everything is public
//! so a store can serialise it field by field; the methods only keep the
//! queue within its limits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_codec::{
    MqttString, PacketId, Publish, PublishProperties, QoS, SubscriptionId, SubscriptionOptions,
};
use smallvec::SmallVec;

/// A message's properties, kept out of line: a message without any (the
/// usual case) holds a null pointer instead of 48 bytes of empty
/// fields, so it is smaller to build, to share between threads and to
/// drop. Reads go through [`Deref`](std::ops::Deref) to
/// [`PublishProperties`]; writes through [`MessageProperties::make_mut`].
#[derive(Clone, Default)]
pub struct MessageProperties(Option<Box<PublishProperties>>);

/// What an empty [`MessageProperties`] reads as.
static NO_PROPERTIES: PublishProperties = PublishProperties::EMPTY;

impl MessageProperties {
    /// `properties`, out of line unless empty.
    pub fn new(mut properties: PublishProperties) -> Self {
        Self::take_from(&mut properties)
    }

    /// Takes `properties` (left empty), moved only if there are any.
    pub fn take_from(properties: &mut PublishProperties) -> Self {
        if properties.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(std::mem::take(properties))))
        }
    }

    /// The properties, to change them (allocated if there were none).
    pub fn make_mut(&mut self) -> &mut PublishProperties {
        self.0.get_or_insert_with(Box::default)
    }

    /// The properties, owned.
    pub fn into_inner(self) -> PublishProperties {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl std::ops::Deref for MessageProperties {
    type Target = PublishProperties;

    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

/// Equal when the properties are, allocated or not.
impl PartialEq for MessageProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for MessageProperties {}

impl From<PublishProperties> for MessageProperties {
    fn from(properties: PublishProperties) -> Self {
        Self::new(properties)
    }
}

impl std::fmt::Debug for MessageProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// An application message as the server holds it: what a client published,
/// less what belonged to that one hop (packet identifier, DUP, topic alias,
/// subscription identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic name (never empty: aliases are resolved on receipt).
    pub topic: MqttString,
    /// The payload, shared with the buffer it arrived in.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// The properties forwarded unaltered [MQTT-3.3.2-17] [MQTT-3.3.2-18]:
    /// payload format, content type, response topic, correlation data, user
    /// properties. Message expiry is kept as `expires_at` instead; topic
    /// alias and subscription identifiers are always empty here.
    pub properties: MessageProperties,
    /// When the message expires (MQTT 5.0 §3.3.2.3.3); `None` never.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// The message carried by a received PUBLISH whose topic alias is
    /// already resolved into `publish.topic`.
    pub fn from_publish(mut publish: Publish, now: Instant) -> Self {
        Self::take_from(&mut publish, now)
    }

    /// [`Message::from_publish`] taking the parts out of `publish` (left
    /// empty) rather than moving it, which is over 200 bytes.
    #[inline]
    pub(crate) fn take_from(publish: &mut Publish, now: Instant) -> Self {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .take()
            .map(|s| now + Duration::from_secs(u64::from(s)));
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        Self {
            topic: std::mem::take(&mut publish.topic),
            payload: std::mem::take(&mut publish.payload),
            qos: publish.qos,
            retain: publish.retain,
            properties: MessageProperties::take_from(&mut publish.properties),
            expires_at,
        }
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Bytes the message accounts for in a queue's byte limit.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// One message on its way to one session: the shared message and what this
/// subscriber's subscriptions made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message, shared by every subscriber.
    pub message: Arc<Message>,
    /// The QoS to send with: the lesser of the message's and the granted QoS.
    pub qos: QoS,
    /// The RETAIN flag to send (retain-as-published and retained-on-subscribe
    /// rules already applied by the router).
    pub retain: bool,
    /// Identifiers of every subscription of this session that matched.
    pub subscription_ids: SmallVec<[SubscriptionId; 1]>,
    /// The shared subscription (`$share/{group}/{filter}`) this session was
    /// chosen for, if that is the only reason it gets the message: a server
    /// gives such a delivery to another member of the group when this
    /// session leaves without acknowledging it (MQTT 5.0 §4.8.2).
    pub shared_group: Option<MqttString>,
    /// An opaque number the server application attaches and gets back when
    /// the delivery completes ([`ServerEvent::Delivered`]); 0 means none.
    /// A broker with persistence keeps here the store's sequence number of
    /// the queued message, to delete it once acknowledged. Never sent.
    ///
    /// [`ServerEvent::Delivered`]: crate::ServerEvent::Delivered
    pub tag: u64,
}

impl Delivery {
    /// A delivery of `message` at `qos` with its own retain flag and no
    /// subscription identifier.
    pub fn new(message: Arc<Message>, qos: QoS) -> Self {
        let retain = message.retain;
        Self {
            qos: qos.min(message.qos),
            message,
            retain,
            subscription_ids: SmallVec::new(),
            shared_group: None,
            tag: 0,
        }
    }
}

/// A message delivered as published: its own QoS and RETAIN flag, tag 0.
impl From<Arc<Message>> for Delivery {
    fn from(message: Arc<Message>) -> Self {
        let qos = message.qos;
        Self::new(message, qos)
    }
}

/// A message delivered as published (see `From<Arc<Message>>`).
impl From<Message> for Delivery {
    fn from(message: Message) -> Self {
        Arc::new(message).into()
    }
}

/// Where an outgoing QoS 1 or 2 message is in its acknowledgement flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflightStage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published(Delivery),
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP (QoS 2). The
    /// message itself is no longer needed.
    Released,
}

/// An outgoing QoS 1 or 2 message that is not yet fully acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflight {
    /// Its packet identifier.
    pub packet_id: PacketId,
    /// Its stage.
    pub stage: InflightStage,
}

/// A subscription as the session records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its subscription identifier (MQTT 5.0).
    pub id: Option<SubscriptionId>,
}

/// Limits on the queue of messages waiting to be sent to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages queued. Default: 1000 (mosquitto's `max_queued_messages`).
    pub max_messages: usize,
    /// Most bytes (topic and payload) queued. Default: 16 MiB.
    pub max_bytes: usize,
    /// What gives way when the queue is full and the new message is QoS 1
    /// or 2 and no QoS 0 message is left to drop. Default: the new message.
    pub overflow: Overflow,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 16 * 1024 * 1024,
            overflow: Overflow::DropNewest,
        }
    }
}

/// Which QoS 1/2 message a full queue drops, once no QoS 0 message is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse the new message.
    #[default]
    DropNewest,
    /// Drop the oldest queued message to make room.
    DropOldest,
}

/// Why a message was not delivered; counted in [`SessionState::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue was full.
    QueueFull,
    /// The message expired before it could be sent.
    Expired,
    /// The message is larger than the client's Maximum Packet Size
    /// [MQTT-3.1.2-25].
    TooLarge,
    /// No session to queue it in: the connection is closed, or not
    /// accepted yet. (Not counted in a session's [`DropCounts`]: there is
    /// none.)
    NoSession,
}

/// Counts of messages dropped, by reason and QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    /// QoS 0 messages dropped because the queue was full.
    pub queue_full_qos0: u64,
    /// QoS 1 and 2 messages dropped because the queue was full.
    pub queue_full: u64,
    /// Messages that expired while queued.
    pub expired: u64,
    /// Messages larger than the client accepts.
    pub too_large: u64,
}

impl DropCounts {
    pub(crate) fn count(&mut self, reason: DropReason, qos: QoS) {
        match (reason, qos) {
            (DropReason::QueueFull, QoS::AtMostOnce) => self.queue_full_qos0 += 1,
            (DropReason::QueueFull, _) => self.queue_full += 1,
            (DropReason::Expired, _) => self.expired += 1,
            (DropReason::TooLarge, _) => self.too_large += 1,
            (DropReason::NoSession, _) => {}
        }
    }
}

/// What a server keeps of a session between connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The client identifier.
    pub client_id: MqttString,
    /// Session Expiry Interval in seconds; `u32::MAX` means never.
    pub expiry_interval: u32,
    /// Subscriptions by topic filter (shared ones with their `$share/` prefix).
    pub subscriptions: BTreeMap<MqttString, SubscriptionRecord>,
    /// Outgoing QoS 1/2 messages not yet acknowledged, in the order sent;
    /// resent first on reconnection [MQTT-4.4.0-1].
    pub inflight: Vec<Inflight>,
    /// Messages waiting to be sent, oldest first.
    pub queued: VecDeque<Delivery>,
    /// Bytes accounted to `queued` (see [`Message::size`]).
    pub queued_bytes: usize,
    /// Incoming QoS 2 packet identifiers answered with PUBREC and not yet
    /// released by PUBREL: a PUBLISH that reuses one is a duplicate.
    pub incoming_qos2: Vec<PacketId>,
    /// Messages dropped, by reason.
    pub drops: DropCounts,
}

impl SessionState {
    /// A new, empty session.
    pub fn new(client_id: MqttString, expiry_interval: u32) -> Self {
        Self {
            client_id,
            expiry_interval,
            subscriptions: BTreeMap::new(),
            inflight: Vec::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: Vec::new(),
            drops: DropCounts::default(),
        }
    }

    /// Queues a delivery within `limits`.
    ///
    /// When the queue is full, QoS 0 goes first: a new QoS 0 message is
    /// refused, and a new QoS 1/2 message takes the place of the oldest
    /// queued QoS 0 message. With no QoS 0 message left, `limits.overflow`
    /// decides. Every drop is counted in `drops`; the dropped delivery's
    /// reason is returned.
    pub fn enqueue(&mut self, delivery: Delivery, limits: &QueueLimits) -> Result<(), DropReason> {
        let size = delivery.message.size();
        let fits = |s: &Self| {
            s.queued.len() < limits.max_messages && s.queued_bytes + size <= limits.max_bytes
        };
        while !fits(self) {
            if delivery.qos == QoS::AtMostOnce || size > limits.max_bytes {
                self.drops.count(DropReason::QueueFull, delivery.qos);
                return Err(DropReason::QueueFull);
            }
            let victim = match self.queued.iter().position(|d| d.qos == QoS::AtMostOnce) {
                Some(i) => i,
                None if limits.overflow == Overflow::DropOldest && !self.queued.is_empty() => 0,
                None => {
                    self.drops.count(DropReason::QueueFull, delivery.qos);
                    return Err(DropReason::QueueFull);
                }
            };
            if let Some(old) = self.queued.remove(victim) {
                self.queued_bytes -= old.message.size();
                self.drops.count(DropReason::QueueFull, old.qos);
            }
        }
        self.queued_bytes += size;
        self.queued.push_back(delivery);
        Ok(())
    }

    /// Takes the next queued delivery that has not expired, counting those
    /// that have.
    pub fn dequeue(&mut self, now: Instant) -> Option<Delivery> {
        while let Some(d) = self.queued.pop_front() {
            self.queued_bytes -= d.message.size();
            if d.message.is_expired(now) {
                self.drops.count(DropReason::Expired, d.qos);
                continue;
            }
            return Some(d);
        }
        None
    }

    /// Takes out every delivery made for a shared subscription that is not
    /// yet acknowledged — queued, or in flight before PUBREC — so a server
    /// can give them to another member of the group (MQTT 5.0 §4.8.2).
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        self.inflight.retain(|i| match &i.stage {
            InflightStage::Published(d) if d.shared_group.is_some() => {
                taken.push(d.clone());
                false
            }
            _ => true,
        });
        let mut kept = VecDeque::with_capacity(self.queued.len());
        for d in self.queued.drain(..) {
            if d.shared_group.is_some() {
                self.queued_bytes -= d.message.size();
                taken.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.queued = kept;
        taken
    }

    /// Puts a delivery back at the front of the queue (it could not be sent
    /// yet), outside the limits: it was already counted in.
    pub(crate) fn requeue_front(&mut self, d: Delivery) {
        self.queued_bytes += d.message.size();
        self.queued.push_front(d);
    }
}

/// A bounded queue of deliveries, for a server's per-session mailbox: the
/// same policy as [`SessionState::enqueue`], without the rest of a session.
#[derive(Debug, Default)]
pub struct MessageQueue {
    items: VecDeque<Delivery>,
    bytes: usize,
    /// Messages dropped, by reason.
    pub drops: DropCounts,
}

impl MessageQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of deliveries queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued (see [`Message::size`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a delivery within `limits`.
    ///
    /// When the queue is full, QoS 0 goes first: a new QoS 0 message is
    /// refused, and a new QoS 1/2 message takes the place of the oldest
    /// queued QoS 0 message. With no QoS 0 message left, `limits.overflow`
    /// decides. Every drop is counted in `drops`; the reason is returned
    /// when the new delivery is the one dropped.
    pub fn push(&mut self, delivery: Delivery, limits: &QueueLimits) -> Result<(), DropReason> {
        self.push_with(delivery, limits, |_| {})
    }

    /// [`push`](Self::push), handing every dropped delivery (the new one or
    /// older ones) to `dropped`: for a caller that stored them elsewhere.
    pub fn push_with(
        &mut self,
        delivery: Delivery,
        limits: &QueueLimits,
        mut dropped: impl FnMut(Delivery),
    ) -> Result<(), DropReason> {
        push_bounded(
            &mut self.items,
            &mut self.bytes,
            &mut self.drops,
            delivery,
            limits,
            &mut dropped,
        )
    }

    /// Queues a delivery if it fits, making room for a QoS 1/2 delivery by
    /// dropping queued QoS 0 messages only (counted). A delivery that still
    /// does not fit — or a QoS 0 one that does not fit as is — is handed
    /// back, and nothing else is dropped: the caller may wait for room
    /// ([`Self::has_room`]) instead of losing it.
    pub fn try_push(&mut self, delivery: Delivery, limits: &QueueLimits) -> Result<(), Delivery> {
        if delivery.qos == QoS::AtMostOnce {
            if !self.has_room(delivery.message.size(), limits) {
                return Err(delivery);
            }
        } else {
            let size = delivery.message.size();
            if size > limits.max_bytes {
                return Err(delivery);
            }
            let mut count = self.items.len();
            let mut bytes = self.bytes;
            let mut qos0 = self
                .items
                .iter()
                .filter(|d| d.qos == QoS::AtMostOnce)
                .map(|d| d.message.size());
            while count >= limits.max_messages || bytes + size > limits.max_bytes {
                let Some(freed) = qos0.next() else {
                    return Err(delivery);
                };
                count -= 1;
                bytes -= freed;
            }
        }
        let limits = QueueLimits {
            overflow: Overflow::DropNewest,
            ..*limits
        };
        let _ = self.push(delivery, &limits);
        Ok(())
    }

    /// Whether a message of `size` bytes fits without dropping anything.
    pub fn has_room(&self, size: usize, limits: &QueueLimits) -> bool {
        self.items.len() < limits.max_messages && self.bytes + size <= limits.max_bytes
    }

    /// Takes the next delivery that has not expired, counting those that have.
    pub fn pop(&mut self, now: Instant) -> Option<Delivery> {
        self.pop_with(now, |_| {})
    }

    /// [`pop`](Self::pop), handing every expired delivery it skips to
    /// `expired`.
    pub fn pop_with(
        &mut self,
        now: Instant,
        mut expired: impl FnMut(Delivery),
    ) -> Option<Delivery> {
        pop_unexpired(
            &mut self.items,
            &mut self.bytes,
            &mut self.drops,
            now,
            &mut expired,
        )
    }

    /// Takes every delivery, expired or not.
    pub fn drain(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        self.bytes = 0;
        self.items.drain(..)
    }
}

fn push_bounded(
    queue: &mut VecDeque<Delivery>,
    bytes: &mut usize,
    drops: &mut DropCounts,
    delivery: Delivery,
    limits: &QueueLimits,
    dropped: &mut dyn FnMut(Delivery),
) -> Result<(), DropReason> {
    let size = delivery.message.size();
    while queue.len() >= limits.max_messages || *bytes + size > limits.max_bytes {
        if delivery.qos == QoS::AtMostOnce || size > limits.max_bytes {
            drops.count(DropReason::QueueFull, delivery.qos);
            dropped(delivery);
            return Err(DropReason::QueueFull);
        }
        let victim = match queue.iter().position(|d| d.qos == QoS::AtMostOnce) {
            Some(i) => i,
            None if limits.overflow == Overflow::DropOldest && !queue.is_empty() => 0,
            None => {
                drops.count(DropReason::QueueFull, delivery.qos);
                dropped(delivery);
                return Err(DropReason::QueueFull);
            }
        };
        if let Some(old) = queue.remove(victim) {
            *bytes -= old.message.size();
            drops.count(DropReason::QueueFull, old.qos);
            dropped(old);
        }
    }
    *bytes += size;
    queue.push_back(delivery);
    Ok(())
}

fn pop_unexpired(
    queue: &mut VecDeque<Delivery>,
    bytes: &mut usize,
    drops: &mut DropCounts,
    now: Instant,
    expired: &mut dyn FnMut(Delivery),
) -> Option<Delivery> {
    while let Some(d) = queue.pop_front() {
        *bytes -= d.message.size();
        if d.message.is_expired(now) {
            drops.count(DropReason::Expired, d.qos);
            expired(d);
            continue;
        }
        return Some(d);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Properties are kept out of line only when there are some, read the
    /// same either way, and compare by value, allocated or not.
    #[test]
    fn message_properties_are_boxed_only_when_present() {
        let mut publish = Publish::new(MqttString::from_static("t"), Bytes::new());
        let none = MessageProperties::take_from(&mut publish.properties);
        assert!(none.0.is_none());
        assert!(none.is_empty() && none.content_type().is_none());

        publish.properties.extras_mut().content_type = Some(MqttString::from_static("text/plain"));
        let some = MessageProperties::take_from(&mut publish.properties);
        assert!(publish.properties.is_empty(), "taken");
        assert_eq!(some.content_type().map(|t| t.as_str()), Some("text/plain"));

        let mut edited = MessageProperties::default();
        edited.make_mut().extras_mut().content_type = Some(MqttString::from_static("text/plain"));
        assert_eq!(edited, some);
        edited.make_mut().extras_mut().content_type = None;
        assert!(edited.0.is_some(), "allocated, and empty");
        assert_eq!(edited, none);
        assert_eq!(
            some.clone().into_inner().content_type(),
            some.content_type()
        );
        assert_eq!(
            format!("{none:?}"),
            format!("{:?}", PublishProperties::default())
        );
        assert!(
            std::mem::size_of::<Message>() <= 104,
            "{}",
            std::mem::size_of::<Message>()
        );
    }

    fn delivery(qos: QoS) -> Delivery {
        let message = Message {
            topic: MqttString::from_static("t"),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        };
        Delivery::new(Arc::new(message), qos)
    }

    #[test]
    fn try_push_makes_room_from_qos0_only_and_hands_qos1_back() {
        let limits = QueueLimits {
            max_messages: 2,
            ..QueueLimits::default()
        };
        let mut q = MessageQueue::new();
        q.push(delivery(QoS::AtMostOnce), &limits).ok();
        q.push(delivery(QoS::AtLeastOnce), &limits).ok();
        // Full: the QoS 0 message gives way.
        assert!(q.try_push(delivery(QoS::AtLeastOnce), &limits).is_ok());
        assert_eq!(q.drops.queue_full_qos0, 1);
        // Full of QoS 1: handed back, nothing dropped.
        let back = q.try_push(delivery(QoS::ExactlyOnce), &limits);
        assert!(back.is_err_and(|d| d.qos == QoS::ExactlyOnce));
        assert_eq!(q.len(), 2);
        assert_eq!(q.drops.queue_full, 0);
        assert!(!q.has_room(1, &limits));
        // A QoS 0 delivery that does not fit is handed back too.
        let back = q.try_push(delivery(QoS::AtMostOnce), &limits);
        assert!(back.is_err_and(|d| d.qos == QoS::AtMostOnce));
        assert_eq!(q.len(), 2);
        assert_eq!(q.drops.queue_full_qos0, 1);
    }

    #[test]
    fn push_with_reports_each_dropped_delivery() {
        let limits = QueueLimits {
            max_messages: 1,
            overflow: Overflow::DropOldest,
            ..QueueLimits::default()
        };
        let mut q = MessageQueue::new();
        let mut first = delivery(QoS::AtLeastOnce);
        first.tag = 7;
        q.push(first, &limits).ok();
        let mut dropped = Vec::new();
        q.push_with(delivery(QoS::AtLeastOnce), &limits, |d| dropped.push(d.tag))
            .ok();
        assert_eq!(dropped, vec![7]);
    }
}
