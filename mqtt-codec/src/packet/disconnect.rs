//! DISCONNECT (MQTT 5.0 §3.14, MQTT 3.1.1 §3.14).

use bytes::BufMut;

use super::{put_reason_tail, reason_tail_len};
use crate::error::DecodeError;
use crate::limits::DecodeLimits;
use crate::properties::DisconnectProperties;
use crate::reason::{ReasonCode, allowed};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// DISCONNECT: the last packet of a connection. Under 3.1.1 it has no
/// body; a client sends it and it means normal disconnection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why the connection ends (v5).
    pub reason_code: ReasonCode,
    /// DISCONNECT properties (v5).
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with this reason code and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let mut d = Self::default();
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            d.reason_code = ReasonCode::from_u8(code)
                .filter(|c| allowed::DISCONNECT.contains(c))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                })?;
            if !r.is_empty() {
                d.properties.decode_into(&mut r, limits)?;
            }
        }
        r.finish("DISCONNECT")?;
        Ok(d)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            reason_tail_len(self.reason_code, self.properties.len())
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        if version.is_v5() {
            let props = self.properties.len();
            put_reason_tail(buf, self.reason_code, props, |b| {
                self.properties.encode(props, b)
            });
        }
    }
}
