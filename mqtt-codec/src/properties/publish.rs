//! PUBLISH properties: those a broker reads or rewrites on every message
//! inline, the others together out of line.

use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::{BufMut, Bytes};

use super::{
    PublishExtras, Slot, SubscriptionIds, UserProperty, id, put_user_properties, read_properties,
};
use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::string::MqttString;
use crate::types::PayloadFormat;
use crate::wire::{Reader, put_varint};

/// What [`PublishProperties::extras`] reads when there are none.
static NO_EXTRAS: PublishExtras = PublishExtras {
    response_topic: None,
    correlation_data: None,
    content_type: None,
    user_properties: smallvec::SmallVec::new_const(),
};

/// PUBLISH properties (MQTT 5.0 §3.3.2.3).
///
/// The properties a broker reads or rewrites for each message and each
/// subscriber (payload format, message expiry, topic alias, subscription
/// identifiers) are fields. Response Topic, Correlation Data, Content Type
/// and User Properties, which a broker forwards unaltered [MQTT-3.3.2-17]
/// [MQTT-3.3.2-18], are kept together in one [`PublishExtras`] out of line,
/// allocated only for a message that carries one of them, and shared by
/// the copies of the message sent to each subscriber (cloning the
/// properties allocates nothing; changing a shared one copies it). A
/// `PublishProperties` is thus 48 bytes, and a [`Publish`](crate::Publish)
/// moved along a message's path about 120, where inline extras would make
/// them 208 and 280.
///
/// ```
/// use mqtt_codec::{MqttString, PublishProperties, UserProperty};
///
/// let mut props = PublishProperties::default();
/// assert!(props.extras.is_none());
/// assert_eq!(props.response_topic(), None);
/// props.extras_mut().user_properties.push(UserProperty::new(
///     MqttString::from_static("trace"),
///     MqttString::from_static("42"),
/// ));
/// assert_eq!(props.user_properties().len(), 1);
/// // Equal whether the extras are allocated or not.
/// assert_eq!(
///     PublishProperties::default(),
///     PublishProperties { extras: Some(Default::default()), ..Default::default() }
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct PublishProperties {
    /// Whether the payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic alias in place of, or bound to, the topic name.
    pub topic_alias: Option<NonZeroU16>,
    /// Identifiers of the subscriptions that matched (server to client).
    pub subscription_identifiers: SubscriptionIds,
    /// Response Topic, Correlation Data, Content Type and User Properties;
    /// `None` when the message has none of them.
    pub extras: Option<Arc<PublishExtras>>,
}

impl PublishProperties {
    /// No property set, as [`Default`] makes it, but a constant: what a
    /// `static` can lend where properties are read and there are none.
    pub const EMPTY: Self = Self {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        subscription_identifiers: smallvec::SmallVec::new_const(),
        extras: None,
    };

    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.subscription_identifiers.is_empty()
            && self.extras().is_empty()
    }

    /// The rarer properties (all absent when none were set).
    #[inline]
    pub fn extras(&self) -> &PublishExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// The rarer properties, to change them: allocated if there were none,
    /// copied if they were shared.
    pub fn extras_mut(&mut self) -> &mut PublishExtras {
        Arc::make_mut(self.extras.get_or_insert_with(Arc::default))
    }

    /// Response Topic: where a response goes.
    pub fn response_topic(&self) -> Option<&MqttString> {
        self.extras().response_topic.as_ref()
    }

    /// Correlation Data: what a response carries back.
    pub fn correlation_data(&self) -> Option<&Bytes> {
        self.extras().correlation_data.as_ref()
    }

    /// Content Type of the payload.
    pub fn content_type(&self) -> Option<&MqttString> {
        self.extras().content_type.as_ref()
    }

    /// User Properties, in the order received [MQTT-3.3.2-18].
    pub fn user_properties(&self) -> &[UserProperty] {
        &self.extras().user_properties
    }

    /// Reads the property length and the properties after it, into
    /// `self`, which is empty.
    pub(crate) fn decode_into(
        &mut self,
        r: &mut Reader<'_>,
        limits: &DecodeLimits,
    ) -> Result<(), DecodeError> {
        debug_assert!(self.is_empty());
        // Gathered here and shared once at the end: `extras_mut` would
        // check that the `Arc` is not shared for each property.
        let mut extras: Option<PublishExtras> = None;
        read_properties(r, "PUBLISH properties", |id, r| match u8::try_from(id) {
            Ok(id::PAYLOAD_FORMAT_INDICATOR) => Slot::absorb(
                &mut self.payload_format_indicator,
                r,
                id::PAYLOAD_FORMAT_INDICATOR,
            ),
            Ok(id::MESSAGE_EXPIRY_INTERVAL) => Slot::absorb(
                &mut self.message_expiry_interval,
                r,
                id::MESSAGE_EXPIRY_INTERVAL,
            ),
            Ok(id::TOPIC_ALIAS) => Slot::absorb(&mut self.topic_alias, r, id::TOPIC_ALIAS),
            Ok(id::SUBSCRIPTION_IDENTIFIER) => Slot::absorb(
                &mut self.subscription_identifiers,
                r,
                id::SUBSCRIPTION_IDENTIFIER,
            ),
            _ => extras.get_or_insert_default().absorb(id, r, limits),
        })?;
        self.extras = extras.map(Arc::new);
        Ok(())
    }

    /// Length of the properties, without the property length prefix.
    pub(crate) fn len(&self) -> usize {
        Slot::len(&self.payload_format_indicator)
            + Slot::len(&self.message_expiry_interval)
            + Slot::len(&self.topic_alias)
            + Slot::len(&self.subscription_identifiers)
            + self.extras.as_ref().map_or(0, |e| e.len())
    }

    /// Writes the property length and the properties.
    pub(crate) fn encode(&self, len: usize, buf: &mut impl BufMut) {
        put_varint(buf, len);
        // In identifier order of the specification's table, as written
        // before the extras moved out of line (so the bytes are the same).
        Slot::write(
            &self.payload_format_indicator,
            id::PAYLOAD_FORMAT_INDICATOR,
            buf,
        );
        Slot::write(
            &self.message_expiry_interval,
            id::MESSAGE_EXPIRY_INTERVAL,
            buf,
        );
        Slot::write(&self.topic_alias, id::TOPIC_ALIAS, buf);
        let extras = self.extras.as_deref();
        if let Some(e) = extras {
            Slot::write(&e.response_topic, id::RESPONSE_TOPIC, buf);
            Slot::write(&e.correlation_data, id::CORRELATION_DATA, buf);
        }
        Slot::write(
            &self.subscription_identifiers,
            id::SUBSCRIPTION_IDENTIFIER,
            buf,
        );
        if let Some(e) = extras {
            Slot::write(&e.content_type, id::CONTENT_TYPE, buf);
            put_user_properties(buf, &e.user_properties);
        }
    }

    /// Checks what the types cannot: binary lengths.
    #[inline(always)]
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        match &self.extras {
            Some(e) => e.check(),
            None => Ok(()),
        }
    }
}

/// Equal when the properties are, the extras allocated or not.
impl PartialEq for PublishProperties {
    fn eq(&self, other: &Self) -> bool {
        self.payload_format_indicator == other.payload_format_indicator
            && self.message_expiry_interval == other.message_expiry_interval
            && self.topic_alias == other.topic_alias
            && self.subscription_identifiers == other.subscription_identifiers
            && self.extras() == other.extras()
    }
}

impl Eq for PublishProperties {}

impl PublishExtras {
    /// Made shareable for [`PublishProperties::extras`]: `None` when
    /// empty, so that a message without extras allocates nothing.
    pub fn shared(self) -> Option<Arc<Self>> {
        (!self.is_empty()).then(|| Arc::new(self))
    }
}
