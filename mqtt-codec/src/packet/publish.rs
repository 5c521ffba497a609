//! PUBLISH (MQTT 5.0 §3.3, MQTT 3.1.1 §3.3).

use bytes::{Buf, BufMut, Bytes};

use super::{Packet, props_block_len, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::PublishProperties;
use crate::string::MqttString;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, VARINT_MAX, put_fixed_header, varint_len};

/// PUBLISH: an application message, in either direction.
///
/// `topic` and `payload` are slices of the buffer the packet was decoded
/// from. Cloning a `Publish` copies no payload byte, so one decoded message
/// can be handed to any number of subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery. Always false at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// The topic name; empty in MQTT 5.0 when a topic alias stands for it.
    pub topic: MqttString,
    /// Present exactly when `qos` is 1 or 2 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (v5).
    pub properties: PublishProperties,
    /// The application message.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message without properties.
    pub fn new(topic: MqttString, payload: Bytes) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PublishProperties::default(),
            payload,
        }
    }

    #[inline(always)]
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    /// Decodes a PUBLISH from its `frame`, whose first `header_len` bytes
    /// are the fixed header.
    ///
    /// It returns what [`Packet::decode`] does, so that the packet is built
    /// right in the caller's slot: through more layers of `Result` the
    /// compiler copies it (over 200 bytes) at each one.
    #[inline(always)]
    pub(crate) fn decode(
        flags: u8,
        frame: Bytes,
        header_len: usize,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<Packet>, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let qos =
            QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS { what: "PUBLISH" })?;
        let retain = flags & 0b1 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let mut r = Reader::new(&frame, header_len);
        let topic = r.topic_name("topic name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(read_packet_id(&mut r, PacketType::Publish)?)
        };
        let mut properties = PublishProperties::default();
        if version.is_v5() {
            properties.decode_into(&mut r, limits)?;
            check_response_topic(properties.response_topic())?;
        }
        if topic.is_empty() {
            if !version.is_v5() {
                return Err(DecodeError::EmptyTopicName { what: "topic name" });
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
        }
        // The payload is the rest of the frame: advancing the frame's own
        // handle costs no reference count update, unlike a new slice.
        let start = r.position();
        let mut payload = frame;
        payload.advance(start);
        Ok(Some(Packet::Publish(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })))
    }

    /// The same packet, borrowed: what the encoding functions work on.
    #[inline(always)]
    pub fn as_borrowed(&self) -> OutgoingPublish<'_> {
        OutgoingPublish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }

    #[inline(always)]
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        self.as_borrowed().check(version)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        self.as_borrowed().body_len(version)
    }

    /// Writes everything but the payload: fixed header, topic, packet
    /// identifier and properties. Returns the payload's length.
    ///
    /// This is how one message goes to many subscribers without its payload
    /// being copied: write each subscriber's header (its own packet id, QoS,
    /// topic alias) and send it with the shared `payload` in one vectored
    /// write, e.g. `header.chain(publish.payload.clone())`.
    ///
    /// ```
    /// use bytes::{Buf, Bytes, BytesMut};
    /// use mqtt_codec::{MqttString, ProtocolVersion, Publish};
    ///
    /// let msg = Publish::new(MqttString::from_static("a/b"), Bytes::from_static(b"hello"));
    /// let mut header = BytesMut::new();
    /// msg.encode_header(ProtocolVersion::V3_1_1, &mut header).unwrap();
    /// let frame = header.freeze().chain(msg.payload.clone());
    /// assert_eq!(frame.remaining(), msg.encoded_len(ProtocolVersion::V3_1_1));
    /// ```
    #[inline]
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<usize, EncodeError> {
        self.as_borrowed().encode_header(version, buf)
    }

    /// The number of bytes the whole packet takes when encoded.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.as_borrowed().encoded_len(version)
    }

    /// Encodes the whole packet (what [`Packet::encode`] writes for it),
    /// without wrapping it in a [`Packet`]. Nothing is written if an error
    /// is returned.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use mqtt_codec::{MqttString, Packet, ProtocolVersion, Publish};
    ///
    /// let msg = Publish::new(MqttString::from_static("a/b"), Bytes::from_static(b"hi"));
    /// let (mut direct, mut wrapped) = (BytesMut::new(), BytesMut::new());
    /// msg.encode(ProtocolVersion::V5, &mut direct).unwrap();
    /// Packet::Publish(msg).encode(ProtocolVersion::V5, &mut wrapped).unwrap();
    /// assert_eq!(direct, wrapped);
    /// ```
    #[inline]
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.as_borrowed().encode(version, buf)
    }
}

/// A PUBLISH to send, made of borrowed parts: encoding only (a decoded
/// PUBLISH is a [`Publish`], whose fields already share the read buffer).
/// It encodes to exactly the bytes of the [`Publish`] with the same fields.
///
/// A sender that keeps messages of its own (a broker's queue, a client's
/// session) can encode each one from where it lies, without building a
/// [`Publish`]: no reference count of the shared topic and payload is
/// touched, and nothing is moved.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use mqtt_codec::{MqttString, Packet, ProtocolVersion, Publish, PublishProperties, OutgoingPublish, QoS};
///
/// let topic = MqttString::from_static("a/b");
/// let payload = Bytes::from_static(b"hello");
/// let properties = PublishProperties::default();
/// let borrowed = OutgoingPublish {
///     dup: false,
///     qos: QoS::AtMostOnce,
///     retain: false,
///     topic: &topic,
///     packet_id: None,
///     properties: &properties,
///     payload: &payload,
/// };
/// let mut a = BytesMut::new();
/// borrowed.encode(ProtocolVersion::V5, &mut a).unwrap();
/// let mut b = BytesMut::new();
/// Packet::Publish(Publish::new(topic, payload)).encode(ProtocolVersion::V5, &mut b).unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OutgoingPublish<'a> {
    /// DUP: this may be a re-delivery. Always false at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// The topic name; empty in MQTT 5.0 when a topic alias stands for it.
    pub topic: &'a MqttString,
    /// Present exactly when `qos` is 1 or 2 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (v5; not written in 3.1.1).
    pub properties: &'a PublishProperties,
    /// The application message.
    pub payload: &'a Bytes,
}

impl OutgoingPublish<'_> {
    /// An owned [`Publish`] with the same fields (the topic, properties
    /// and payload are cloned: reference counts, no byte copied).
    pub fn to_owned(&self) -> Publish {
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: self.packet_id,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        }
    }

    #[inline(always)]
    fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    /// What encoding checks: the packet identifier against the QoS, and
    /// the properties, which only MQTT 5.0 writes.
    #[inline(always)]
    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) == self.packet_id.is_some() {
            return Err(EncodeError::PacketIdMismatch {
                qos: self.qos,
                has_id: self.packet_id.is_some(),
            });
        }
        if version.is_v5() {
            self.properties.check()?;
        }
        Ok(())
    }

    fn header_body_len(&self, version: ProtocolVersion, props: usize) -> usize {
        let mut len = 2 + self.topic.len();
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += props_block_len(props);
        }
        len
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.len()
        } else {
            0
        };
        self.header_body_len(version, props) + self.payload.len()
    }

    /// Writes everything but the payload, as [`Publish::encode_header`].
    #[inline]
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<usize, EncodeError> {
        self.check(version)?;
        let props = if version.is_v5() {
            self.properties.len()
        } else {
            0
        };
        let body = self.header_body_len(version, props) + self.payload.len();
        if body > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge {
                packet: PacketType::Publish,
                size: body,
            });
        }
        // A topic is at most 65,535 bytes: `MqttString` guarantees it.
        let topic = self.topic.as_bytes();
        put_fixed_header(
            buf,
            ((PacketType::Publish as u8) << 4) | self.flags(),
            body,
            (topic.len() as u16).to_be_bytes(),
        );
        buf.put_slice(topic);
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.encode(props, buf);
        }
        Ok(self.payload.len())
    }

    /// Encodes the whole packet, as [`Packet::encode`] does the owned one.
    /// Nothing is written if an error is returned.
    #[inline]
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.encode_header(version, buf)?;
        buf.put_slice(self.payload);
        Ok(())
    }

    /// The number of bytes the whole packet takes when encoded.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint_len(body) + body
    }
}

/// A Response Topic is a topic name: not empty, no wildcards
/// [MQTT-3.3.2-14]; the same holds for a Will's.
pub(crate) fn check_response_topic(topic: Option<&MqttString>) -> Result<(), DecodeError> {
    let what = "Response Topic";
    match topic {
        Some(t) if t.is_empty() => Err(DecodeError::EmptyTopicName { what }),
        Some(t) if t.as_bytes().iter().any(|&b| b == b'+' || b == b'#') => {
            Err(DecodeError::WildcardInTopicName { what })
        }
        _ => Ok(()),
    }
}
