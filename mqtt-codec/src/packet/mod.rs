//! The packet model and the framing shared by every packet.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;

pub use ack::{Ack, SubAck, UnsubAck};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::{OutgoingPublish, Publish};
pub use subscribe::{Subscribe, Subscription, Unsubscribe};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{Reader, VARINT_MAX, Varint, parse_varint, put_varint, varint_len};

/// One MQTT control packet, of any version.
///
/// The same model serves MQTT 3.1, 3.1.1 and 5.0: the version is a parameter
/// of [`Packet::decode`] and [`Packet::encode`]. Under 3.1.1 the properties
/// are empty when decoded and ignored when encoded, as are the other fields
/// 3.1.1 lacks (reason codes other than success, v5 subscription options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, client to server. Boxed: it is large and rare.
    Connect(Box<Connect>),
    /// CONNACK, server to client. Boxed: it is large (its properties are)
    /// and comes once per connection.
    ConnAck(Box<ConnAck>),
    /// PUBLISH, both ways.
    Publish(Publish),
    /// PUBACK, both ways: QoS 1 acknowledgement.
    PubAck(Ack),
    /// PUBREC, both ways: QoS 2 delivery part 1.
    PubRec(Ack),
    /// PUBREL, both ways: QoS 2 delivery part 2.
    PubRel(Ack),
    /// PUBCOMP, both ways: QoS 2 delivery part 3.
    PubComp(Ack),
    /// SUBSCRIBE, client to server.
    Subscribe(Subscribe),
    /// SUBACK, server to client.
    SubAck(SubAck),
    /// UNSUBSCRIBE, client to server.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK, server to client.
    UnsubAck(UnsubAck),
    /// PINGREQ, client to server.
    PingReq,
    /// PINGRESP, server to client.
    PingResp,
    /// DISCONNECT, client to server (and server to client in MQTT 5.0).
    /// Boxed: its properties are large, and it comes once per connection.
    Disconnect(Box<Disconnect>),
    /// AUTH, both ways, MQTT 5.0 only.
    /// Boxed: large and rare.
    Auth(Box<Auth>),
}

/// The fixed header, validated: type, flags and size are known before the
/// body is buffered.
struct FixedHeader {
    kind: PacketType,
    flags: u8,
    header_len: usize,
    remaining: usize,
}

impl FixedHeader {
    fn parse(
        buf: &[u8],
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<Self>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let nibble = first >> 4;
        let kind = match PacketType::from_nibble(nibble) {
            Some(PacketType::Auth) if !version.is_v5() => None,
            other => other,
        }
        .ok_or(DecodeError::ReservedPacketType { nibble, version })?;
        let flags = first & 0x0f;
        if let Some(expected) = kind.fixed_flags()
            && flags != expected
        {
            return Err(DecodeError::InvalidFlags {
                packet: kind,
                flags,
                expected,
            });
        }
        let (remaining, n) = match parse_varint(&buf[1..])? {
            Varint::Value(v, n) => (v as usize, n),
            Varint::Incomplete => return Ok(None),
        };
        let size = 1 + n + remaining;
        if size > limits.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: limits.max_packet_size,
            });
        }
        Ok(Some(Self {
            kind,
            flags,
            header_len: 1 + n,
            remaining,
        }))
    }
}

impl Packet {
    /// Decodes one packet from the front of `bytes` (captured traffic, a
    /// file, a test vector) as [`Packet::decode`] does from a read buffer:
    /// returns the packet and how many bytes it took, `Ok(None)` if `bytes`
    /// holds only part of one. The packet's fields point into a copy of
    /// its own bytes (one copy of the frame, none per field).
    ///
    /// ```
    /// use mqtt_codec::{DecodeLimits, Packet, ProtocolVersion};
    ///
    /// let capture = [0xc0, 0x00, 0xd0, 0x00]; // PINGREQ, PINGRESP
    /// let limits = DecodeLimits::default();
    /// let (first, used) = Packet::decode_slice(&capture, ProtocolVersion::V3_1_1, &limits)
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!((first, used), (Packet::PingReq, 2));
    /// ```
    pub fn decode_slice(
        bytes: &[u8],
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<(Packet, usize)>, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let before = buf.len();
        Ok(Self::decode(&mut buf, version, limits)?.map(|p| (p, before - buf.len())))
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// - `Ok(Some(packet))`: the packet's bytes were split off `buf`; the
    ///   packet's topic, payload and other byte fields point into them, so no
    ///   payload byte is copied.
    /// - `Ok(None)`: `buf` holds only part of a packet; nothing was consumed.
    ///   Read more bytes and call again.
    /// - `Err(e)`: the stream is corrupt and cannot be resynchronised; send
    ///   `e.reason_code()` if the protocol allows, and close the connection.
    ///
    /// The fixed header is checked first, so a packet larger than
    /// `limits.max_packet_size` or with a bad first byte is refused before its
    /// body arrives. `version` is the connection's protocol version; a CONNECT
    /// is decoded by the version it announces itself.
    pub fn decode(
        buf: &mut BytesMut,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<Packet>, DecodeError> {
        let Some(h) = FixedHeader::parse(buf, version, limits)? else {
            return Ok(None);
        };
        if buf.len() < h.header_len + h.remaining {
            return Ok(None);
        }
        // The fixed header stays in the frame: skipping it there would cost
        // more than starting the reader past it.
        let frame = buf.split_to(h.header_len + h.remaining).freeze();
        // PUBLISH, the hot path, apart: its decoder returns the packet in
        // the form this function does, so it is built in place.
        if h.kind == PacketType::Publish {
            return Publish::decode(h.flags, frame, h.header_len, version, limits);
        }
        Self::decode_body(h.kind, frame, h.header_len, version, limits)
    }

    /// How many bytes the whole packet at the front of `buf` needs, once its
    /// fixed header has arrived: lets a reader size its buffer. `Ok(None)`
    /// if the fixed header is incomplete.
    pub fn frame_len(
        buf: &[u8],
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<usize>, DecodeError> {
        Ok(FixedHeader::parse(buf, version, limits)?.map(|h| h.header_len + h.remaining))
    }

    /// Decodes any packet but PUBLISH from its `frame`, whose first
    /// `header_len` bytes are the fixed header. It returns what
    /// [`Packet::decode`] does, for the same reason as [`Publish::decode`].
    fn decode_body(
        kind: PacketType,
        frame: Bytes,
        header_len: usize,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Option<Packet>, DecodeError> {
        if kind == PacketType::Connect {
            return Ok(Some(Packet::Connect(Connect::decode(
                frame, header_len, limits,
            )?)));
        }
        let r = Reader::new(&frame, header_len);
        Ok(Some(match kind {
            PacketType::Connect => unreachable!("decoded above"),
            PacketType::ConnAck => Packet::from(ConnAck::decode(r, version, limits)?),
            PacketType::Publish => unreachable!("Packet::decode decodes PUBLISH itself"),
            PacketType::PubAck => Packet::PubAck(Ack::decode(kind, r, version, limits)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(kind, r, version, limits)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(kind, r, version, limits)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(kind, r, version, limits)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version, limits)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version, limits)?),
            PacketType::Unsubscribe => {
                Packet::Unsubscribe(Unsubscribe::decode(r, version, limits)?)
            }
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version, limits)?),
            PacketType::PingReq => {
                r.finish("PINGREQ fixed header")?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish("PINGRESP fixed header")?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::from(Disconnect::decode(r, version, limits)?),
            PacketType::Auth => Packet::from(Auth::decode(r, limits)?),
        }))
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The version the packet is encoded with: a CONNECT's own, else `version`.
    fn effective_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Packet::Connect(c) => c.protocol,
            _ => version,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.flags(),
            other => other.packet_type().fixed_flags().unwrap_or(0),
        }
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Connect(c) => c.body_len(),
            Packet::ConnAck(c) => c.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                a.body_len(version)
            }
            Packet::Subscribe(s) => s.body_len(version),
            Packet::SubAck(s) => s.body_len(version),
            Packet::Unsubscribe(u) => u.body_len(version),
            Packet::UnsubAck(u) => u.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(d) => d.body_len(version),
            Packet::Auth(a) => a.body_len(),
        }
    }

    /// The number of bytes [`Packet::encode`] writes, computed without
    /// encoding.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(self.effective_version(version));
        1 + varint_len(body) + body
    }

    /// Checks what the types cannot express before anything is written, so a
    /// failed encode writes nothing.
    fn check(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Packet::Connect(c) => c.check()?,
            Packet::ConnAck(c) => c.check()?,
            Packet::Publish(p) => p.check(version)?,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                a.properties.check()?;
            }
            Packet::Subscribe(s) => s.check()?,
            Packet::SubAck(s) => s.check()?,
            Packet::Unsubscribe(u) => u.check()?,
            Packet::UnsubAck(u) => u.check(version)?,
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(d) => d.properties.check()?,
            Packet::Auth(a) => {
                if !version.is_v5() {
                    return Err(EncodeError::NotInVersion {
                        packet: PacketType::Auth,
                        version,
                    });
                }
                a.properties.check()?;
            }
        }
        let size = self.body_len(version);
        if size > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge {
                packet: self.packet_type(),
                size,
            });
        }
        Ok(size)
    }

    /// Encodes the packet into `buf` for a connection of `version` (a
    /// CONNECT uses its own). Nothing is written if an error is returned.
    ///
    /// `buf` must have room for [`Packet::encoded_len`] bytes or grow by
    /// itself, as `BytesMut` and `Vec<u8>` do.
    #[inline]
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        // PUBLISH and CONNECT in one pass: one dispatch instead of one per
        // step below, and the properties' length computed once. Same checks,
        // same bytes.
        match self {
            Packet::Publish(p) => p.as_borrowed().encode(version, buf),
            Packet::Connect(c) => c.encode(buf),
            _ => self.encode_other(version, buf),
        }
    }

    /// [`Packet::encode`] of the packets but PUBLISH and CONNECT: apart and
    /// not inlined, so that the hot path's function stays small.
    #[inline(never)]
    fn encode_other(
        &self,
        version: ProtocolVersion,
        buf: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        let version = self.effective_version(version);
        let body = self.check(version)?;
        buf.put_u8(((self.packet_type() as u8) << 4) | self.flags());
        put_varint(buf, body);
        match self {
            Packet::Connect(_) | Packet::Publish(_) => unreachable!("encoded above"),
            Packet::ConnAck(c) => c.encode_body(version, buf),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                a.encode_body(version, buf)
            }
            Packet::Subscribe(s) => s.encode_body(version, buf),
            Packet::SubAck(s) => s.encode_body(version, buf),
            Packet::Unsubscribe(u) => u.encode_body(version, buf),
            Packet::UnsubAck(u) => u.encode_body(version, buf),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(d) => d.encode_body(version, buf),
            Packet::Auth(a) => a.encode_body(buf),
        }
        Ok(())
    }
}

/// Reads a packet identifier, refusing 0 [MQTT-2.2.1-3].
#[inline(always)]
pub(crate) fn read_packet_id(
    r: &mut Reader<'_>,
    packet: PacketType,
) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId { packet })
}

/// Length of a property block with its length prefix.
pub(crate) fn props_block_len(len: usize) -> usize {
    varint_len(len) + len
}

/// Length of the optional tail shared by acknowledgements, DISCONNECT and
/// AUTH (MQTT 5.0 §3.4.2.1, §3.14.2.1, §3.15.2.1), in its shortest form: the
/// reason code only when it is not success or properties follow, the
/// property length only when properties follow.
pub(crate) fn reason_tail_len(reason: ReasonCode, props: usize) -> usize {
    if props > 0 {
        1 + props_block_len(props)
    } else if reason != ReasonCode::Success {
        1
    } else {
        0
    }
}

/// Writes the tail whose length [`reason_tail_len`] gives; `encode_props`
/// writes the property length and properties.
pub(crate) fn put_reason_tail<B: BufMut>(
    buf: &mut B,
    reason: ReasonCode,
    props: usize,
    encode_props: impl FnOnce(&mut B),
) {
    if props > 0 || reason != ReasonCode::Success {
        buf.put_u8(reason as u8);
    }
    if props > 0 {
        encode_props(buf);
    }
}

/// Each packet converts into a [`Packet`], boxed where its variant is.
macro_rules! into_packet {
    ($($variant:ident($ty:ty) => $wrap:expr;)*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Packet::$variant($wrap(p))
            }
        }
    )*};
}

into_packet! {
    Connect(Connect) => Box::new;
    ConnAck(ConnAck) => Box::new;
    Publish(Publish) => std::convert::identity;
    Subscribe(Subscribe) => std::convert::identity;
    SubAck(SubAck) => std::convert::identity;
    Unsubscribe(Unsubscribe) => std::convert::identity;
    UnsubAck(UnsubAck) => std::convert::identity;
    Disconnect(Disconnect) => Box::new;
    Auth(Auth) => Box::new;
}
