//! CONNECT (MQTT 5.0 §3.1, MQTT 3.1.1 §3.1).

use bytes::{Buf, BufMut, Bytes};

use super::props_block_len;
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::{ConnectProperties, WillProperties, check_binary};
use crate::string::MqttString;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, VARINT_MAX, put_fixed_header, put_prefixed};

/// CONNECT: the first packet a client sends [MQTT-3.1.0-1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version the client speaks, from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Start (v5) / Clean Session (v3.1.1).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// CONNECT properties (v5).
    pub properties: ConnectProperties,
    /// The client identifier; may be empty.
    pub client_id: MqttString,
    /// The will message, published when the connection ends abnormally.
    pub will: Option<Will>,
    /// The user name.
    pub username: Option<MqttString>,
    /// The password (binary data).
    pub password: Option<Bytes>,
    /// The bridge bit: the high bit (0x80) of the protocol level, which a
    /// mosquitto bridge sets (its `try_private` option) to tell a broker
    /// that understands it that this client is a bridge — one that must
    /// not be sent back the messages it publishes, and that gets the
    /// RETAIN flag of forwarded messages as published. Not part of the
    /// MQTT specification: a broker that does not know it refuses the
    /// CONNECT (protocol version unsupported), so a bridge sets it only
    /// with brokers that accept it (mosquitto, this workspace's).
    pub bridge: bool,
}

/// Puts `value` in `slot`, which holds the empty value `Connect::decode`
/// starts from (`None`, or the static empty `Bytes`): its drop would do
/// nothing but cost an indirect call, so it is skipped.
#[inline(always)]
fn fill<T>(slot: &mut T, value: T) {
    std::mem::forget(std::mem::replace(slot, value));
}

/// The field that ends a CONNECT's payload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    ClientId,
    WillPayload,
    Username,
    Password,
}

/// The will message of a CONNECT (MQTT 5.0 §3.1.2.5, §3.1.3.2–4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The topic the will is published to.
    pub topic: MqttString,
    /// The will's payload.
    pub payload: Bytes,
    /// The QoS of the will.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: WillProperties,
}

impl Connect {
    /// A CONNECT with a client identifier, clean start, keep alive 60 s and
    /// nothing else.
    pub fn new(protocol: ProtocolVersion, client_id: MqttString) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id,
            will: None,
            username: None,
            password: None,
            bridge: false,
        }
    }

    /// Decodes a CONNECT from its `frame`, whose first `header_len` bytes
    /// are the fixed header.
    ///
    /// Every string and binary field is a handle to `frame`, and each handle
    /// costs an atomic increment when made and a decrement when dropped; the
    /// last field of the payload takes over `frame`'s own handle instead.
    pub(crate) fn decode(
        frame: Bytes,
        header_len: usize,
        limits: &DecodeLimits,
    ) -> Result<Box<Self>, DecodeError> {
        let mut r = Reader::new(&frame, header_len);
        let name = r.binary_slice("protocol name")?;
        let raw_level = r.u8("protocol level")?;
        // mosquitto's bridge bit (see `Connect::bridge`) on a level it
        // goes with; anything else with the high bit is an unknown level.
        let bridge = raw_level & 0x80 != 0 && (3..=5).contains(&(raw_level & 0x7F));
        let level = if bridge { raw_level & 0x7F } else { raw_level };
        let protocol = match (name, level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", 3..=5) => {
                return Err(DecodeError::ProtocolNameMismatch {
                    name: String::from_utf8_lossy(name).into_owned(),
                    level,
                });
            }
            (b"MQTT" | b"MQIsdp", _) => {
                return Err(DecodeError::UnsupportedProtocolVersion { level: raw_level });
            }
            _ => {
                return Err(DecodeError::InvalidProtocolName {
                    name: String::from_utf8_lossy(name).into_owned(),
                });
            }
        };
        let flags = r.u8("connect flags")?;
        if flags & 0b1 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let clean_start = flags & 0b10 != 0;
        let will_flag = flags & 0b100 != 0;
        let will_qos_bits = (flags >> 3) & 0b11;
        let will_retain = flags & 0b10_0000 != 0;
        let has_password = flags & 0b100_0000 != 0;
        let has_username = flags & 0b1000_0000 != 0;
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let will_qos =
            QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS { what: "will" })?;
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        // Built in its box: a `Connect` is over 400 bytes, and building it
        // on the stack copies it into the box.
        let mut c = Box::write(
            Box::new_uninit(),
            Self {
                protocol,
                clean_start,
                keep_alive,
                properties: ConnectProperties::default(),
                client_id: MqttString::new(),
                will: if will_flag {
                    Some(Will {
                        topic: MqttString::new(),
                        payload: Bytes::new(),
                        qos: will_qos,
                        retain: will_retain,
                        properties: WillProperties::default(),
                    })
                } else {
                    None
                },
                username: None,
                password: None,
                bridge,
            },
        );
        if protocol.is_v5() {
            c.properties.decode_into(&mut r, limits)?;
        }
        // The field that ends the payload, read as a range: it becomes
        // `frame` itself once the reader is done with it.
        let last = if has_password {
            Last::Password
        } else if has_username {
            Last::Username
        } else if will_flag {
            Last::WillPayload
        } else {
            Last::ClientId
        };
        let mut range = (0, 0);
        if last == Last::ClientId {
            range = r.string_range("client identifier")?;
        } else {
            fill(&mut c.client_id, r.string("client identifier")?);
        }
        if let Some(will) = &mut c.will {
            if protocol.is_v5() {
                will.properties.decode_into(&mut r, limits)?;
                super::publish::check_response_topic(will.properties.response_topic.as_ref())?;
            }
            fill(&mut will.topic, r.topic_name("will topic")?);
            if will.topic.is_empty() {
                return Err(DecodeError::EmptyTopicName { what: "will topic" });
            }
            if last == Last::WillPayload {
                range = r.binary_range("will payload")?;
            } else {
                fill(&mut will.payload, r.binary("will payload")?);
            }
        }
        if has_username {
            if last == Last::Username {
                range = r.string_range("user name")?;
            } else {
                fill(&mut c.username, Some(r.string("user name")?));
            }
        }
        if has_password {
            range = r.binary_range("password")?;
        }
        r.finish("CONNECT payload")?;
        let (start, end) = range;
        // An empty field is the static empty `Bytes`, as `Bytes::slice` makes it.
        let bytes = if start == end {
            Bytes::new()
        } else {
            let mut bytes = frame;
            bytes.truncate(end);
            bytes.advance(start);
            bytes
        };
        match last {
            Last::ClientId => fill(&mut c.client_id, MqttString::from_checked(bytes)),
            Last::WillPayload => {
                if let Some(w) = &mut c.will {
                    fill(&mut w.payload, bytes);
                }
            }
            Last::Username => fill(&mut c.username, Some(MqttString::from_checked(bytes))),
            Last::Password => fill(&mut c.password, Some(bytes)),
        }
        Ok(c)
    }

    #[inline]
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        self.properties.check()?;
        if let Some(w) = &self.will {
            w.properties.check()?;
            check_binary(&w.payload, "will payload")?;
        }
        if let Some(p) = &self.password {
            check_binary(p, "password")?;
        }
        Ok(())
    }

    /// 3.1.1 forbids a password without a user name [MQTT-3.1.2-22]; such a
    /// password is left out rather than sent in a packet peers must refuse.
    #[inline]
    fn sent_password(&self) -> Option<&Bytes> {
        self.password
            .as_ref()
            .filter(|_| self.protocol.is_v5() || self.username.is_some())
    }

    pub(crate) fn body_len(&self) -> usize {
        let (props, will_props) = self.properties_len();
        self.body_len_with(props, will_props, self.sent_password())
    }

    /// The lengths of the CONNECT and will properties, 0 before 5.0.
    #[inline]
    fn properties_len(&self) -> (usize, usize) {
        if !self.protocol.is_v5() {
            return (0, 0);
        }
        let will = self.will.as_ref().map_or(0, |w| w.properties.len());
        (self.properties.len(), will)
    }

    #[inline]
    fn body_len_with(&self, props: usize, will_props: usize, password: Option<&Bytes>) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            len += props_block_len(props);
        }
        len += 2 + self.client_id.len();
        if let Some(w) = &self.will {
            if v5 {
                len += props_block_len(will_props);
            }
            len += 2 + w.topic.len() + 2 + w.payload.len();
        }
        if let Some(u) = &self.username {
            len += 2 + u.len();
        }
        if let Some(p) = password {
            len += 2 + p.len();
        }
        len
    }

    /// Encodes the whole packet (what [`Packet::encode`] writes for it) by
    /// the protocol version the CONNECT announces, in one pass with the
    /// property lengths computed once. Nothing is written if an error is
    /// returned.
    ///
    /// [`Packet::encode`]: crate::Packet::encode
    #[inline]
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        self.check()?;
        let (props, will_props) = self.properties_len();
        let password = self.sent_password();
        let body = self.body_len_with(props, will_props, password);
        if body > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge {
                packet: PacketType::Connect,
                size: body,
            });
        }
        let v5 = self.protocol.is_v5();
        let mut flags = u8::from(self.clean_start) << 1;
        if let Some(w) = &self.will {
            flags |= 0b100 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
        }
        flags |= u8::from(password.is_some()) << 6;
        flags |= u8::from(self.username.is_some()) << 7;

        // Protocol name, level, flags, keep alive and what follows them (the
        // property length in 5.0, the client identifier's length before) in
        // writes of constant size, which compile to plain stores.
        let first = (PacketType::Connect as u8) << 4;
        let level = self.protocol.level() | if self.bridge { 0x80 } else { 0 };
        let [ka_hi, ka_lo] = self.keep_alive.to_be_bytes();
        let client_id = self.client_id.as_bytes();
        // A client identifier is at most 65,535 bytes: `MqttString` guarantees it.
        let [id_hi, id_lo] = (client_id.len() as u16).to_be_bytes();
        match self.protocol {
            ProtocolVersion::V3_1 => {
                put_fixed_header(buf, first, body, [0, 6]);
                buf.put_slice(&[
                    b'M', b'Q', b'I', b's', b'd', b'p', level, flags, ka_hi, ka_lo, id_hi, id_lo,
                ]);
            }
            // The common case, fixed header included, in a single write.
            ProtocolVersion::V3_1_1 if body < 0x80 => {
                buf.put_slice(&[
                    first, body as u8, 0, 4, b'M', b'Q', b'T', b'T', level, flags, ka_hi, ka_lo,
                    id_hi, id_lo,
                ]);
            }
            ProtocolVersion::V3_1_1 => {
                put_fixed_header(buf, first, body, [0, 4]);
                buf.put_slice(&[
                    b'M', b'Q', b'T', b'T', level, flags, ka_hi, ka_lo, id_hi, id_lo,
                ]);
            }
            ProtocolVersion::V5 => {
                put_fixed_header(buf, first, body, [0, 4]);
                if props < 0x80 {
                    let len = props as u8;
                    buf.put_slice(&[b'M', b'Q', b'T', b'T', level, flags, ka_hi, ka_lo, len]);
                    self.properties.encode_fields(buf);
                } else {
                    buf.put_slice(&[b'M', b'Q', b'T', b'T', level, flags, ka_hi, ka_lo]);
                    self.properties.encode(props, buf);
                }
                buf.put_slice(&[id_hi, id_lo]);
            }
        }
        buf.put_slice(client_id);
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(will_props, buf);
            }
            put_prefixed(buf, w.topic.as_bytes());
            put_prefixed(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            put_prefixed(buf, u.as_bytes());
        }
        if let Some(p) = password {
            put_prefixed(buf, p);
        }
        Ok(())
    }
}
