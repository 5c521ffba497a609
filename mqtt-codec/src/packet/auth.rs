//! AUTH (MQTT 5.0 §3.15): enhanced authentication, MQTT 5.0 only.

use bytes::BufMut;

use super::{put_reason_tail, reason_tail_len};
use crate::error::DecodeError;
use crate::limits::DecodeLimits;
use crate::properties::AuthProperties;
use crate::reason::{ReasonCode, allowed};
use crate::types::PacketType;
use crate::wire::Reader;

/// AUTH: one step of an enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Method, data, reason string and user properties.
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(mut r: Reader<'_>, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let mut a = Self::default();
        if !r.is_empty() {
            let code = r.u8("reason code")?;
            a.reason_code = ReasonCode::from_u8(code)
                .filter(|c| allowed::AUTH.contains(c))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Auth,
                    code,
                })?;
            if !r.is_empty() {
                a.properties.decode_into(&mut r, limits)?;
            }
        }
        r.finish("AUTH")?;
        Ok(a)
    }

    pub(crate) fn body_len(&self) -> usize {
        reason_tail_len(self.reason_code, self.properties.len())
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        let props = self.properties.len();
        put_reason_tail(buf, self.reason_code, props, |b| {
            self.properties.encode(props, b)
        });
    }
}
