//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5.0 §3.4–3.7), SUBACK (§3.9) and
//! UNSUBACK (§3.11).

use bytes::BufMut;

use super::{props_block_len, put_reason_tail, read_packet_id, reason_tail_len};
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::AckProperties;
use crate::reason::{ReasonCode, allowed};
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::Reader;

/// The body of PUBACK, PUBREC, PUBREL and PUBCOMP: which [`Packet`](crate::Packet)
/// variant holds it says which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The identifier of the PUBLISH (or PUBREC, PUBREL) acknowledged.
    pub packet_id: PacketId,
    /// The outcome (v5; always success under 3.1.1).
    pub reason_code: ReasonCode,
    /// Reason string and user properties (v5).
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self::with_reason(packet_id, ReasonCode::Success)
    }

    /// An acknowledgement with a reason code and no properties.
    pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Self {
        Self {
            packet_id,
            reason_code,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(
        kind: PacketType,
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut r, kind)?;
        let mut ack = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            // The reason code and the property length may each be left out
            // when what follows is absent (MQTT 5.0 §3.4.2.1, §3.4.2.2.1).
            let code = r.u8("reason code")?;
            let set = match kind {
                PacketType::PubAck | PacketType::PubRec => allowed::PUBACK,
                _ => allowed::PUBREL,
            };
            ack.reason_code = ReasonCode::from_u8(code)
                .filter(|c| set.contains(c))
                .ok_or(DecodeError::InvalidReasonCode { packet: kind, code })?;
            if !r.is_empty() {
                ack.properties.decode_into(&mut r, limits)?;
            }
        }
        r.finish(kind.name())?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + reason_tail_len(self.reason_code, self.properties.len())
        } else {
            2
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            let props = self.properties.len();
            put_reason_tail(buf, self.reason_code, props, |b| {
                self.properties.encode(props, b)
            });
        }
    }
}

/// SUBACK: one reason code per topic filter of the SUBSCRIBE, in order.
///
/// Under 3.1.1 the codes travel as return codes: the granted QoS, or 0x80
/// for any failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Reason string and user properties (v5).
    pub properties: AckProperties,
    /// One code per topic filter [MQTT-3.8.4-6].
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut r, PacketType::SubAck)?;
        let mut properties = AckProperties::default();
        if version.is_v5() {
            properties.decode_into(&mut r, limits)?;
        }
        let rest = r.remaining();
        if rest.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet: PacketType::SubAck,
            });
        }
        let reason_codes = rest
            .iter()
            .map(|&code| {
                if version.is_v5() {
                    ReasonCode::from_u8(code)
                        .filter(|c| allowed::SUBACK.contains(c))
                        .ok_or(DecodeError::InvalidReasonCode {
                            packet: PacketType::SubAck,
                            code,
                        })
                } else {
                    ReasonCode::from_v3_suback_return_code(code)
                        .ok_or(DecodeError::InvalidSubAckReturnCode { code })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Empty {
                packet: PacketType::SubAck,
            });
        }
        self.properties.check()
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            props_block_len(self.properties.len())
        } else {
            0
        };
        2 + props + self.reason_codes.len()
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.len(), buf);
            for c in &self.reason_codes {
                buf.put_u8(*c as u8);
            }
        } else {
            for c in &self.reason_codes {
                buf.put_u8(c.to_v3_suback_return_code());
            }
        }
    }
}

/// UNSUBACK: under 5.0 one reason code per topic filter of the UNSUBSCRIBE;
/// under 3.1.1 only the packet identifier, and `reason_codes` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Reason string and user properties (v5).
    pub properties: AckProperties,
    /// One code per topic filter (v5) [MQTT-3.11.3-1].
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut r, PacketType::UnsubAck)?;
        if !version.is_v5() {
            r.finish("UNSUBACK")?;
            return Ok(Self {
                packet_id,
                properties: AckProperties::default(),
                reason_codes: Vec::new(),
            });
        }
        let mut properties = AckProperties::default();
        properties.decode_into(&mut r, limits)?;
        let rest = r.remaining();
        if rest.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet: PacketType::UnsubAck,
            });
        }
        let reason_codes = rest
            .iter()
            .map(|&code| {
                ReasonCode::from_u8(code)
                    .filter(|c| allowed::UNSUBACK.contains(c))
                    .ok_or(DecodeError::InvalidReasonCode {
                        packet: PacketType::UnsubAck,
                        code,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if version.is_v5() && self.reason_codes.is_empty() {
            return Err(EncodeError::Empty {
                packet: PacketType::UnsubAck,
            });
        }
        self.properties.check()
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + props_block_len(self.properties.len()) + self.reason_codes.len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.len(), buf);
            for c in &self.reason_codes {
                buf.put_u8(*c as u8);
            }
        }
    }
}
