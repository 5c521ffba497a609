//! DISCONNECT (MQTT 5.0 §3.14, MQTT 3.1.1 §3.14).

use bytes::BufMut;

use super::props_block_len;
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

    /// Whether the body is left out: a normal disconnection without
    /// properties (MQTT 5.0 §3.14.2.1).
    fn is_bare(&self) -> bool {
        self.reason_code == ReasonCode::Success && self.properties.is_empty()
    }

    /// A reason code is always followed by the property length, 0 when
    /// there are no properties. The spec lets it be left out
    /// (§3.14.2.2.1), but clients in use (rumqttc 0.24) cannot read that
    /// form, and mosquitto writes the length too.
    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() || self.is_bare() {
            0
        } else {
            1 + props_block_len(self.properties.len())
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        if version.is_v5() && !self.is_bare() {
            buf.put_u8(self.reason_code as u8);
            self.properties.encode(self.properties.len(), buf);
        }
    }
}
