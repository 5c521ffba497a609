//! SUBSCRIBE (MQTT 5.0 §3.8) and UNSUBSCRIBE (§3.10).

use bytes::BufMut;

use super::{props_block_len, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::properties::{SubscribeProperties, UnsubscribeProperties};
use crate::string::MqttString;
use crate::types::{PacketId, PacketType, ProtocolVersion, SubscriptionOptions};
use crate::wire::{Reader, put_prefixed};

/// One topic filter of a SUBSCRIBE with its options.
///
/// The filter is a string, not yet checked as a filter: a malformed filter
/// is answered with a failure code in SUBACK (0x8F), not by closing the
/// connection, so checking it is the receiver's business (see `mqtt-topic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter.
    pub filter: MqttString,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE: one or more topic filters to subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet identifier.
    pub packet_id: PacketId,
    /// SUBSCRIBE properties (v5).
    pub properties: SubscribeProperties,
    /// At least one filter [MQTT-3.8.3-2].
    pub subscriptions: Vec<Subscription>,
}

fn check_count(n: usize, packet: PacketType, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if n >= limits.max_topic_filters {
        return Err(DecodeError::TooManyTopicFilters {
            packet,
            max: limits.max_topic_filters,
        });
    }
    Ok(())
}

impl Subscribe {
    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut r, PacketType::Subscribe)?;
        let mut properties = SubscribeProperties::default();
        if version.is_v5() {
            properties.decode_into(&mut r, limits)?;
        }
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            check_count(subscriptions.len(), PacketType::Subscribe, limits)?;
            let filter = r.string("topic filter")?;
            let options = SubscriptionOptions::from_byte(r.u8("subscription options")?, version)?;
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet: PacketType::Subscribe,
            });
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::Empty {
                packet: PacketType::Subscribe,
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
        2 + props
            + self
                .subscriptions
                .iter()
                .map(|s| 2 + s.filter.len() + 1)
                .sum::<usize>()
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.len(), buf);
        }
        for s in &self.subscriptions {
            put_prefixed(buf, s.filter.as_bytes());
            buf.put_u8(s.options.to_byte(version));
        }
    }
}

/// UNSUBSCRIBE: one or more topic filters to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet identifier.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties (v5).
    pub properties: UnsubscribeProperties,
    /// At least one filter [MQTT-3.10.3-2].
    pub filters: Vec<MqttString>,
}

impl Unsubscribe {
    pub(crate) fn decode(
        mut r: Reader<'_>,
        version: ProtocolVersion,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut r, PacketType::Unsubscribe)?;
        let mut properties = UnsubscribeProperties::default();
        if version.is_v5() {
            properties.decode_into(&mut r, limits)?;
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            check_count(filters.len(), PacketType::Unsubscribe, limits)?;
            filters.push(r.string("topic filter")?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet: PacketType::Unsubscribe,
            });
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Empty {
                packet: PacketType::Unsubscribe,
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
        2 + props + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut impl BufMut) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.len(), buf);
        }
        for f in &self.filters {
            put_prefixed(buf, f.as_bytes());
        }
    }
}
