//! CONNACK (MQTT 5.0 §3.2, MQTT 3.1.1 §3.2).

use bytes::BufMut;

use super::props_block_len;
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::ConnAckProperties;
use crate::reason::{ReasonCode, allowed};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// CONNACK: the server's answer to CONNECT.
///
/// Under 3.1.1 the reason code travels as a return code, mapped with
/// [`ReasonCode::to_v3_connect_return_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumes a session it holds for the client.
    pub session_present: bool,
    /// The outcome of the connection attempt.
    pub reason_code: ReasonCode,
    /// CONNACK properties (v5).
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A CONNACK with this outcome and no properties.
    pub fn new(reason_code: ReasonCode, session_present: bool) -> Self {
        Self {
            session_present,
            reason_code,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0b1111_1110 != 0 {
            return Err(DecodeError::ConnAckReservedFlags { flags });
        }
        let session_present = flags & 1 != 0;
        let code = r.u8("reason code")?;
        let reason_code = if version.is_v5() {
            ReasonCode::from_u8(code)
                .filter(|c| allowed::CONNACK.contains(c))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::ConnAck,
                    code,
                })?
        } else {
            ReasonCode::from_v3_connect_return_code(code)
                .ok_or(DecodeError::InvalidConnectReturnCode { code })?
        };
        if session_present && code != 0 {
            return Err(DecodeError::SessionPresentOnFailure { code });
        }
        let mut properties = ConnAckProperties::default();
        if version.is_v5() {
            properties.decode_into(&mut r, limits)?;
        }
        r.finish("CONNACK")?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        self.properties.check()
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + props_block_len(self.properties.len())
        } else {
            2
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            buf.put_u8(self.reason_code as u8);
            self.properties.encode(self.properties.len(), buf);
        } else {
            buf.put_u8(self.reason_code.to_v3_connect_return_code());
        }
    }
}
