//! CONNECT (MQTT 5.0 §3.1, MQTT 3.1.1 §3.1).

use bytes::{BufMut, Bytes};

use super::props_block_len;
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::{ConnectProperties, WillProperties, check_binary};
use crate::string::MqttString;
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{Reader, put_prefixed};

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
        }
    }

    pub(crate) fn decode(mut r: Reader, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let name = r.binary("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", 3..=5) => {
                return Err(DecodeError::ProtocolNameMismatch {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    level,
                });
            }
            (b"MQTT" | b"MQIsdp", _) => {
                return Err(DecodeError::UnsupportedProtocolVersion { level });
            }
            _ => {
                return Err(DecodeError::InvalidProtocolName {
                    name: String::from_utf8_lossy(&name).into_owned(),
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
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(&mut r, limits)?
        } else {
            ConnectProperties::default()
        };

        let client_id = r.string("client identifier")?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                WillProperties::decode(&mut r, limits)?
            } else {
                WillProperties::default()
            };
            let topic = r.string("will topic")?;
            super::publish::check_topic_name(&topic, "will topic")?;
            if topic.is_empty() {
                return Err(DecodeError::EmptyTopicName { what: "will topic" });
            }
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string("user name")).transpose()?;
        let password = has_password.then(|| r.binary("password")).transpose()?;
        r.finish("CONNECT payload")?;
        Ok(Self {
            protocol,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

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
    fn sends_password(&self) -> bool {
        self.password.is_some() && (self.protocol.is_v5() || self.username.is_some())
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            len += props_block_len(self.properties.len());
        }
        len += 2 + self.client_id.len();
        if let Some(w) = &self.will {
            if v5 {
                len += props_block_len(w.properties.len());
            }
            len += 2 + w.topic.len() + 2 + w.payload.len();
        }
        if let Some(u) = &self.username {
            len += 2 + u.len();
        }
        if let (true, Some(p)) = (self.sends_password(), &self.password) {
            len += 2 + p.len();
        }
        len
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        let v5 = self.protocol.is_v5();
        put_prefixed(buf, self.protocol.protocol_name().as_bytes());
        buf.put_u8(self.protocol.level());
        let mut flags = u8::from(self.clean_start) << 1;
        if let Some(w) = &self.will {
            flags |= 0b100 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
        }
        let send_password = self.sends_password();
        flags |= u8::from(send_password) << 6;
        flags |= u8::from(self.username.is_some()) << 7;
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(self.properties.len(), buf);
        }
        put_prefixed(buf, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(w.properties.len(), buf);
            }
            put_prefixed(buf, w.topic.as_bytes());
            put_prefixed(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            put_prefixed(buf, u.as_bytes());
        }
        if let (true, Some(p)) = (send_password, &self.password) {
            put_prefixed(buf, p);
        }
    }
}
