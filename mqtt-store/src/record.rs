//! The record format: how each value is laid out on disk.
//!
//! Every value is one self-checking record:
//!
//! ```text
//! +---------+------+----------------------+------------------+
//! | version | kind | body                 | CRC-32 (IEEE)    |
//! | u8 = 1  | u8   | kind-specific fields | u32 big-endian,  |
//! |         |      |                      | over all before  |
//! +---------+------+----------------------+------------------+
//! ```
//!
//! Integers are big-endian. A string is a `u16` length and UTF-8 bytes
//! (checked again when read, as [`MqttString`] requires); binary data is a
//! `u32` length and bytes; an optional field is announced by a flag bit or
//! a presence byte. Times are UNIX milliseconds (`u64`), see
//! [`Clock`]. A record that is short, long, fails its
//! checksum, or carries an unknown version or kind is rejected whole with a
//! [`RecordError`]: recovery skips it and logs a warning.
//!
//! A message body (kind-independent, used by queued, in-flight and retained
//! records) is:
//!
//! ```text
//! flags u8      bits 0-1 QoS, 2 retain, 3 expiry present, 4 payload format
//!               present, 5 payload format is UTF-8, 6 content type present,
//!               7 response topic present
//! flags2 u8     bit 0 correlation data present (other bits 0)
//! [expiry u64]  UNIX ms
//! topic str
//! [content type str] [response topic str] [correlation data bin]
//! user property count u32, then name str, value str each
//! payload bin
//! ```
//!
//! The layout of the other kinds is in the functions that write them.
//! [`FORMAT_VERSION`] changes whenever any layout does; the store's meta
//! record carries it, and a store with another version is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{
    MqttString, PacketId, PayloadFormat, PublishExtras, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, UserProperties, UserProperty, Will, WillProperties,
};
use mqtt_session::{
    Delivery, DropCounts, InflightStage, Message, SessionState, SubscriptionRecord,
};
use smallvec::SmallVec;

use crate::clock::Clock;

/// The version of the on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The version byte at the head of every record.
const RECORD_VERSION: u8 = 1;

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the fields need: a torn or truncated record.
    #[error("truncated: {what} needs more bytes than the record has")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// The checksum does not match the contents.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum at the end of the record.
        stored: u32,
        /// The checksum of the contents.
        computed: u32,
    },
    /// The record's version byte is not one this build reads.
    #[error("record version {0} is not supported")]
    Version(u8),
    /// The record is of another kind than expected.
    #[error("record kind {found} where kind {expected} was expected")]
    Kind {
        /// The kind found.
        found: u8,
        /// The kind expected.
        expected: u8,
    },
    /// A field holds a value it cannot hold.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
}

/// What a record holds; the second byte of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Session = 1,
    Queued = 2,
    Inflight = 3,
    Incoming = 4,
    Retained = 5,
    Will = 6,
    Meta = 7,
}

/// Builds one record.
pub(crate) struct RecordWriter {
    buf: Vec<u8>,
}

impl RecordWriter {
    pub(crate) fn new(kind: Kind) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.push(RECORD_VERSION);
        buf.push(kind as u8);
        Self { buf }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn str(&mut self, s: &MqttString) {
        // An MqttString is at most 65,535 bytes by construction.
        self.u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn bin(&mut self, b: &[u8]) {
        // Values in fjall are limited to 2^32 bytes, and so are MQTT packets.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(b);
    }

    fn opt_str(&mut self, s: Option<&MqttString>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    fn user_properties(&mut self, props: &[UserProperty]) {
        self.u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
        for p in props {
            self.str(&p.name);
            self.str(&p.value);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
        self.buf
    }
}

/// Reads one record's fields, never past its end.
pub(crate) struct RecordReader<'a> {
    buf: &'a [u8],
}

impl<'a> RecordReader<'a> {
    /// Checks the frame (length, checksum, version, kind) and returns a
    /// reader over the body.
    pub(crate) fn open(record: &'a [u8], kind: Kind) -> Result<Self, RecordError> {
        if record.len() < 6 {
            return Err(RecordError::Truncated {
                what: "record frame",
            });
        }
        let (contents, crc) = record.split_at(record.len() - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32fast::hash(contents);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        if contents[0] != RECORD_VERSION {
            return Err(RecordError::Version(contents[0]));
        }
        if contents[1] != kind as u8 {
            return Err(RecordError::Kind {
                found: contents[1],
                expected: kind as u8,
            });
        }
        Ok(Self {
            buf: &contents[2..],
        })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn str(&mut self, what: &'static str) -> Result<MqttString, RecordError> {
        let len = usize::from(self.u16(what)?);
        let b = self.take(len, what)?;
        MqttString::from_bytes(Bytes::copy_from_slice(b)).map_err(|_| RecordError::Invalid(what))
    }

    fn bin(&mut self, what: &'static str) -> Result<Bytes, RecordError> {
        let len = self.u32(what)? as usize;
        Ok(Bytes::copy_from_slice(self.take(len, what)?))
    }

    fn opt_str(&mut self, what: &'static str) -> Result<Option<MqttString>, RecordError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => self.str(what).map(Some),
            _ => Err(RecordError::Invalid(what)),
        }
    }

    fn user_properties(&mut self) -> Result<UserProperties, RecordError> {
        let n = self.u32("user property count")? as usize;
        // Each property takes at least 4 bytes: a corrupt count cannot make
        // us reserve more than the record could hold.
        if n > self.buf.len() / 4 {
            return Err(RecordError::Truncated {
                what: "user properties",
            });
        }
        let mut props = UserProperties::with_capacity(n);
        for _ in 0..n {
            let name = self.str("user property name")?;
            let value = self.str("user property value")?;
            props.push(UserProperty { name, value });
        }
        Ok(props)
    }

    fn qos(&mut self, what: &'static str) -> Result<QoS, RecordError> {
        QoS::from_u8(self.u8(what)?).ok_or(RecordError::Invalid(what))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, RecordError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Invalid(what)),
        }
    }

    pub(crate) fn finish(self) -> Result<(), RecordError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(RecordError::TrailingBytes(self.buf.len()))
        }
    }
}

fn put_message(w: &mut RecordWriter, m: &Message, clock: &Clock) {
    let p = &m.properties;
    let mut flags = m.qos as u8;
    flags |= u8::from(m.retain) << 2;
    flags |= u8::from(m.expires_at.is_some()) << 3;
    flags |= u8::from(p.payload_format_indicator.is_some()) << 4;
    flags |= u8::from(p.payload_format_indicator == Some(PayloadFormat::Utf8)) << 5;
    flags |= u8::from(p.content_type().is_some()) << 6;
    flags |= u8::from(p.response_topic().is_some()) << 7;
    w.u8(flags);
    w.u8(u8::from(p.correlation_data().is_some()));
    if let Some(t) = m.expires_at {
        w.u64(clock.to_unix_ms(t));
    }
    w.str(&m.topic);
    if let Some(s) = p.content_type() {
        w.str(s);
    }
    if let Some(s) = p.response_topic() {
        w.str(s);
    }
    if let Some(b) = p.correlation_data() {
        w.bin(b);
    }
    w.user_properties(p.user_properties());
    w.bin(&m.payload);
}

/// A message and its expiry as UNIX milliseconds (`None`: never).
fn get_message(
    r: &mut RecordReader<'_>,
    clock: &Clock,
) -> Result<(Message, Option<u64>), RecordError> {
    let flags = r.u8("message flags")?;
    let flags2 = r.u8("message flags")?;
    if flags2 & !1 != 0 {
        return Err(RecordError::Invalid("message flags"));
    }
    let qos = QoS::from_u8(flags & 0b11).ok_or(RecordError::Invalid("QoS"))?;
    let expiry = if flags & (1 << 3) != 0 {
        Some(r.u64("expiry")?)
    } else {
        None
    };
    let topic = r.str("topic")?;
    if topic.is_empty() {
        return Err(RecordError::Invalid("topic"));
    }
    let payload_format_indicator = (flags & (1 << 4) != 0).then_some(if flags & (1 << 5) != 0 {
        PayloadFormat::Utf8
    } else {
        PayloadFormat::Unspecified
    });
    let content_type = if flags & (1 << 6) != 0 {
        Some(r.str("content type")?)
    } else {
        None
    };
    let response_topic = if flags & (1 << 7) != 0 {
        Some(r.str("response topic")?)
    } else {
        None
    };
    let correlation_data = if flags2 & 1 != 0 {
        Some(r.bin("correlation data")?)
    } else {
        None
    };
    let user_properties = r.user_properties()?;
    let payload = r.bin("payload")?;
    let properties = PublishProperties {
        payload_format_indicator,
        extras: PublishExtras {
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        }
        .shared(),
        ..PublishProperties::default()
    };
    let message = Message {
        topic,
        payload,
        qos,
        retain: flags & (1 << 2) != 0,
        properties: properties.into(),
        expires_at: expiry.map(|t| clock.to_instant(t)),
    };
    Ok((message, expiry))
}

/// Encodes a message as a stand-alone record, as a retained message is
/// stored.
pub fn encode_message(message: &Message, clock: &Clock) -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Retained);
    put_message(&mut w, message, clock);
    w.finish()
}

/// Decodes a record written by [`encode_message`]; the expiry comes back
/// relative to `clock`.
pub fn decode_message(record: &[u8], clock: &Clock) -> Result<Message, RecordError> {
    decode_retained(record, clock).map(|(m, _)| m)
}

pub(crate) fn decode_retained(
    record: &[u8],
    clock: &Clock,
) -> Result<(Message, Option<u64>), RecordError> {
    let mut r = RecordReader::open(record, Kind::Retained)?;
    let m = get_message(&mut r, clock)?;
    r.finish()?;
    Ok(m)
}

fn put_delivery(w: &mut RecordWriter, d: &Delivery, clock: &Clock) {
    // delivery QoS u8, retain u8, subscription id count u16 + u32 each,
    // shared group (presence byte + str), then the message body.
    w.u8(d.qos as u8);
    w.u8(u8::from(d.retain));
    w.u16(u16::try_from(d.subscription_ids.len()).unwrap_or(u16::MAX));
    for id in d.subscription_ids.iter().take(usize::from(u16::MAX)) {
        w.u32(id.get());
    }
    w.opt_str(d.shared_group.as_ref());
    put_message(w, &d.message, clock);
}

fn get_delivery(
    r: &mut RecordReader<'_>,
    clock: &Clock,
) -> Result<(Delivery, Option<u64>), RecordError> {
    let qos = r.qos("delivery QoS")?;
    let retain = r.bool("delivery retain")?;
    let n = usize::from(r.u16("subscription identifier count")?);
    let mut subscription_ids = SmallVec::with_capacity(n.min(16));
    for _ in 0..n {
        let id = SubscriptionId::new(r.u32("subscription identifier")?)
            .ok_or(RecordError::Invalid("subscription identifier"))?;
        subscription_ids.push(id);
    }
    let shared_group = r.opt_str("shared group")?;
    let (message, expiry) = get_message(r, clock)?;
    let delivery = Delivery {
        message: Arc::new(message),
        qos,
        retain,
        subscription_ids,
        shared_group,
        tag: 0,
    };
    Ok((delivery, expiry))
}

/// A queued delivery: the delivery body.
pub(crate) fn encode_queued(d: &Delivery, clock: &Clock) -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Queued);
    put_delivery(&mut w, d, clock);
    w.finish()
}

/// A queued delivery and its message's expiry in UNIX ms.
pub(crate) fn decode_queued(
    record: &[u8],
    clock: &Clock,
) -> Result<(Delivery, Option<u64>), RecordError> {
    let mut r = RecordReader::open(record, Kind::Queued)?;
    let d = get_delivery(&mut r, clock)?;
    r.finish()?;
    Ok(d)
}

/// An in-flight message: order u64 (its place in the send order), stage u8
/// (0 published, then the delivery body; 1 released, nothing more).
pub(crate) fn encode_inflight(order: u64, stage: &InflightStage, clock: &Clock) -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Inflight);
    w.u64(order);
    match stage {
        InflightStage::Published(d) => {
            w.u8(0);
            put_delivery(&mut w, d, clock);
        }
        InflightStage::Released => w.u8(1),
    }
    w.finish()
}

pub(crate) fn decode_inflight(
    record: &[u8],
    clock: &Clock,
) -> Result<(u64, InflightStage), RecordError> {
    let mut r = RecordReader::open(record, Kind::Inflight)?;
    let order = r.u64("in-flight order")?;
    let stage = match r.u8("in-flight stage")? {
        0 => InflightStage::Published(get_delivery(&mut r, clock)?.0),
        1 => InflightStage::Released,
        _ => return Err(RecordError::Invalid("in-flight stage")),
    };
    r.finish()?;
    Ok((order, stage))
}

/// An incoming QoS 2 packet identifier awaiting PUBREL: the key says it
/// all, the record has an empty body.
pub(crate) fn encode_incoming() -> Vec<u8> {
    RecordWriter::new(Kind::Incoming).finish()
}

pub(crate) fn decode_incoming(record: &[u8]) -> Result<(), RecordError> {
    RecordReader::open(record, Kind::Incoming)?.finish()
}

/// What a session record holds besides its client identifier (the key).
#[derive(Debug)]
pub(crate) struct SessionRecord {
    pub(crate) state: SessionState,
    /// The session's expiry deadline in UNIX ms; `None`: not set (never, or
    /// connected when written).
    pub(crate) expires_at: Option<u64>,
}

/// A session: expiry interval u32, deadline (presence byte + u64 UNIX ms),
/// the four drop counters u64, subscription count u32, then each: filter
/// str, options u8 (QoS bits 0-1, no local 2, retain as published 3, retain
/// handling 4-5), identifier (0 for none) u32.
pub(crate) fn encode_session(s: &SessionState, expires_at: Option<u64>) -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Session);
    w.u32(s.expiry_interval);
    match expires_at {
        Some(t) => {
            w.u8(1);
            w.u64(t);
        }
        None => w.u8(0),
    }
    w.u64(s.drops.queue_full_qos0);
    w.u64(s.drops.queue_full);
    w.u64(s.drops.expired);
    w.u64(s.drops.too_large);
    w.u32(u32::try_from(s.subscriptions.len()).unwrap_or(u32::MAX));
    for (filter, sub) in &s.subscriptions {
        w.str(filter);
        let o = sub.options;
        w.u8(o.qos as u8
            | u8::from(o.no_local) << 2
            | u8::from(o.retain_as_published) << 3
            | (o.retain_handling as u8) << 4);
        w.u32(sub.id.map_or(0, SubscriptionId::get));
    }
    w.finish()
}

pub(crate) fn decode_session(
    client_id: MqttString,
    record: &[u8],
) -> Result<SessionRecord, RecordError> {
    let mut r = RecordReader::open(record, Kind::Session)?;
    let mut state = SessionState::new(client_id, r.u32("expiry interval")?);
    let expires_at = match r.u8("expiry deadline")? {
        0 => None,
        1 => Some(r.u64("expiry deadline")?),
        _ => return Err(RecordError::Invalid("expiry deadline")),
    };
    state.drops = DropCounts {
        queue_full_qos0: r.u64("drop counts")?,
        queue_full: r.u64("drop counts")?,
        expired: r.u64("drop counts")?,
        too_large: r.u64("drop counts")?,
    };
    let n = r.u32("subscription count")?;
    let mut subscriptions = BTreeMap::new();
    for _ in 0..n {
        let filter = r.str("topic filter")?;
        let b = r.u8("subscription options")?;
        if b & 0b1100_0000 != 0 {
            return Err(RecordError::Invalid("subscription options"));
        }
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(RecordError::Invalid("retain handling")),
        };
        let options = SubscriptionOptions {
            qos: QoS::from_u8(b & 0b11).ok_or(RecordError::Invalid("subscription QoS"))?,
            no_local: b & 0b100 != 0,
            retain_as_published: b & 0b1000 != 0,
            retain_handling,
        };
        let id = match r.u32("subscription identifier")? {
            0 => None,
            v => Some(
                SubscriptionId::new(v).ok_or(RecordError::Invalid("subscription identifier"))?,
            ),
        };
        subscriptions.insert(filter, SubscriptionRecord { options, id });
    }
    r.finish()?;
    state.subscriptions = subscriptions;
    Ok(SessionRecord { state, expires_at })
}

/// A pending will: publish deadline u64 UNIX ms, QoS u8, retain u8, topic
/// str, payload bin, then its properties: a presence byte each for will
/// delay u32, payload format u8, message expiry u32, content type str,
/// response topic str, correlation data bin; user properties.
pub(crate) fn encode_will(will: &Will, publish_at: u64) -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Will);
    w.u64(publish_at);
    w.u8(will.qos as u8);
    w.u8(u8::from(will.retain));
    w.str(&will.topic);
    w.bin(&will.payload);
    let p = &will.properties;
    let opt_u32 = |w: &mut RecordWriter, v: Option<u32>| match v {
        Some(v) => {
            w.u8(1);
            w.u32(v);
        }
        None => w.u8(0),
    };
    opt_u32(&mut w, p.will_delay_interval);
    w.u8(match p.payload_format_indicator {
        None => 0,
        Some(PayloadFormat::Unspecified) => 1,
        Some(PayloadFormat::Utf8) => 2,
    });
    opt_u32(&mut w, p.message_expiry_interval);
    w.opt_str(p.content_type.as_ref());
    w.opt_str(p.response_topic.as_ref());
    match &p.correlation_data {
        Some(b) => {
            w.u8(1);
            w.bin(b);
        }
        None => w.u8(0),
    }
    w.user_properties(&p.user_properties);
    w.finish()
}

/// A will and its publish deadline in UNIX ms.
pub(crate) fn decode_will(record: &[u8]) -> Result<(Will, u64), RecordError> {
    let mut r = RecordReader::open(record, Kind::Will)?;
    let publish_at = r.u64("will deadline")?;
    let qos = r.qos("will QoS")?;
    let retain = r.bool("will retain")?;
    let topic = r.str("will topic")?;
    let payload = r.bin("will payload")?;
    let opt_u32 = |r: &mut RecordReader<'_>, what| -> Result<Option<u32>, RecordError> {
        match r.u8(what)? {
            0 => Ok(None),
            1 => r.u32(what).map(Some),
            _ => Err(RecordError::Invalid(what)),
        }
    };
    let will_delay_interval = opt_u32(&mut r, "will delay")?;
    let payload_format_indicator = match r.u8("payload format")? {
        0 => None,
        1 => Some(PayloadFormat::Unspecified),
        2 => Some(PayloadFormat::Utf8),
        _ => return Err(RecordError::Invalid("payload format")),
    };
    let message_expiry_interval = opt_u32(&mut r, "message expiry")?;
    let content_type = r.opt_str("content type")?;
    let response_topic = r.opt_str("response topic")?;
    let correlation_data = match r.u8("correlation data")? {
        0 => None,
        1 => Some(r.bin("correlation data")?),
        _ => return Err(RecordError::Invalid("correlation data")),
    };
    let user_properties = r.user_properties()?;
    r.finish()?;
    let properties = WillProperties {
        will_delay_interval,
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
    };
    let will = Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    };
    Ok((will, publish_at))
}

/// The magic string at the head of the meta record, so a directory of
/// another program's fjall data is not taken for a store.
const META_MAGIC: &[u8; 10] = b"mqtt-store";

/// The meta record: magic (10 bytes), format version u32.
pub(crate) fn encode_meta() -> Vec<u8> {
    let mut w = RecordWriter::new(Kind::Meta);
    w.buf.extend_from_slice(META_MAGIC);
    w.u32(FORMAT_VERSION);
    w.finish()
}

/// The format version in a meta record. The frame is read leniently (any
/// record version) so that a future format is reported by its number.
pub(crate) fn decode_meta(record: &[u8]) -> Result<u32, RecordError> {
    let mut r = match RecordReader::open(record, Kind::Meta) {
        Err(RecordError::Version(_)) if record.len() >= 16 => RecordReader {
            buf: &record[2..record.len() - 4],
        },
        other => other?,
    };
    if r.take(META_MAGIC.len(), "magic")? != META_MAGIC {
        return Err(RecordError::Invalid("magic"));
    }
    r.u32("format version")
}

/// Whether a packet identifier read from a key is valid.
pub(crate) fn packet_id(v: u16) -> Result<PacketId, RecordError> {
    PacketId::new(v).ok_or(RecordError::Invalid("packet identifier"))
}
