//! MQTT 5.0 properties (§2.2.2): one typed struct per packet, so a packet
//! can only carry the properties the specification allows it.
//!
//! Under MQTT 3.1 and 3.1.1 every property struct is empty: nothing is read,
//! and whatever is set is not written.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes};
use smallvec::SmallVec;

use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::string::MqttString;
use crate::types::{PayloadFormat, QoS, SubscriptionId};
use crate::wire::{Reader, put_prefixed, put_varint, varint_len};

mod publish;

pub use publish::PublishProperties;

/// Property identifiers (MQTT 5.0 §2.2.2.2).
pub mod id {
    /// Payload Format Indicator.
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Message Expiry Interval.
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// Content Type.
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic.
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data.
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier.
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Session Expiry Interval.
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// Assigned Client Identifier.
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Server Keep Alive.
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication Method.
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Authentication Data.
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Request Problem Information.
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Will Delay Interval.
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Request Response Information.
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// Response Information.
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Server Reference.
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason String.
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum.
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum.
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias.
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS.
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain Available.
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User Property.
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size.
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard Subscription Available.
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Subscription Identifier Available.
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Shared Subscription Available.
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

    /// The specification's name of a property identifier.
    pub const fn name(id: u32) -> &'static str {
        match id {
            0x01 => "Payload Format Indicator",
            0x02 => "Message Expiry Interval",
            0x03 => "Content Type",
            0x08 => "Response Topic",
            0x09 => "Correlation Data",
            0x0B => "Subscription Identifier",
            0x11 => "Session Expiry Interval",
            0x12 => "Assigned Client Identifier",
            0x13 => "Server Keep Alive",
            0x15 => "Authentication Method",
            0x16 => "Authentication Data",
            0x17 => "Request Problem Information",
            0x18 => "Will Delay Interval",
            0x19 => "Request Response Information",
            0x1A => "Response Information",
            0x1C => "Server Reference",
            0x1F => "Reason String",
            0x21 => "Receive Maximum",
            0x22 => "Topic Alias Maximum",
            0x23 => "Topic Alias",
            0x24 => "Maximum QoS",
            0x25 => "Retain Available",
            0x26 => "User Property",
            0x27 => "Maximum Packet Size",
            0x28 => "Wildcard Subscription Available",
            0x29 => "Subscription Identifier Available",
            0x2A => "Shared Subscription Available",
            _ => "unknown",
        }
    }
}

/// A User Property: a name and value pair, which may repeat, even with the
/// same name, and whose order is kept [MQTT-3.3.2-18].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name.
    pub name: MqttString,
    /// The value.
    pub value: MqttString,
}

impl UserProperty {
    /// A user property from a name and a value.
    pub fn new(name: MqttString, value: MqttString) -> Self {
        Self { name, value }
    }
}

/// A property value with its wire type.
trait Value: Sized {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError>;
    fn len(&self) -> usize;
    /// Writes the identifier and the value, in one write where the size
    /// is constant.
    fn write(&self, id: u8, buf: &mut impl BufMut);
    fn check(&self, _id: u8) -> Result<(), EncodeError> {
        Ok(())
    }
}

fn invalid(id: u8, problem: &'static str) -> DecodeError {
    DecodeError::InvalidPropertyValue {
        name: id::name(u32::from(id)),
        problem,
    }
}

impl Value for bool {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        match r.u8(id::name(u32::from(id)))? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid(id, "must be 0 or 1 (MQTT 5.0 §3)")),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        buf.put_slice(&[id, u8::from(*self)]);
    }
}

impl Value for PayloadFormat {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        match r.u8(id::name(u32::from(id)))? {
            0 => Ok(Self::Unspecified),
            1 => Ok(Self::Utf8),
            _ => Err(invalid(id, "must be 0 or 1 (MQTT 5.0 §3.3.2.3.2)")),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        let v = match self {
            Self::Unspecified => 0,
            Self::Utf8 => 1,
        };
        buf.put_slice(&[id, v]);
    }
}

impl Value for QoS {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        match r.u8(id::name(u32::from(id)))? {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            _ => Err(invalid(id, "must be 0 or 1 (MQTT 5.0 §3.2.2.3.4)")),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        buf.put_slice(&[id, *self as u8]);
    }
}

impl Value for u16 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        r.u16(id::name(u32::from(id)))
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        let [a, b] = self.to_be_bytes();
        buf.put_slice(&[id, a, b]);
    }
}

impl Value for NonZeroU16 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        NonZeroU16::new(r.u16(id::name(u32::from(id)))?).ok_or_else(|| {
            invalid(
                id,
                "must not be 0 (MQTT 5.0 §3.1.2.11.3, §3.3.2.3.4 [MQTT-3.3.2-8])",
            )
        })
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        self.get().write(id, buf);
    }
}

impl Value for u32 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        r.u32(id::name(u32::from(id)))
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        let [a, b, c, d] = self.to_be_bytes();
        buf.put_slice(&[id, a, b, c, d]);
    }
}

impl Value for NonZeroU32 {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        NonZeroU32::new(r.u32(id::name(u32::from(id)))?)
            .ok_or_else(|| invalid(id, "must not be 0 (MQTT 5.0 §3.1.2.11.4)"))
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        self.get().write(id, buf);
    }
}

impl Value for SubscriptionId {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        SubscriptionId::new(r.varint(id::name(u32::from(id)))?)
            .ok_or_else(|| invalid(id, "must not be 0 (MQTT 5.0 §3.8.2.1.2)"))
    }
    fn len(&self) -> usize {
        varint_len(self.get() as usize)
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        let v = self.get();
        if v < 0x80 {
            buf.put_slice(&[id, v as u8]);
        } else {
            buf.put_u8(id);
            put_varint(buf, v as usize);
        }
    }
}

impl Value for MqttString {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        r.string(id::name(u32::from(id)))
    }
    fn len(&self) -> usize {
        2 + self.as_bytes().len()
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        put_prefixed_with_id(buf, id, self.as_bytes());
    }
}

impl Value for Bytes {
    fn read(r: &mut Reader<'_>, id: u8) -> Result<Self, DecodeError> {
        r.binary(id::name(u32::from(id)))
    }
    fn len(&self) -> usize {
        2 + self.len()
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        put_prefixed_with_id(buf, id, self);
    }
    fn check(&self, id: u8) -> Result<(), EncodeError> {
        check_binary(self, id::name(u32::from(id)))
    }
}

/// Writes a property identifier and a string or binary value.
#[inline(always)]
fn put_prefixed_with_id(buf: &mut impl BufMut, id: u8, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    let [hi, lo] = (b.len() as u16).to_be_bytes();
    buf.put_slice(&[id, hi, lo]);
    buf.put_slice(b);
}

pub(crate) fn check_binary(b: &[u8], what: &'static str) -> Result<(), EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        Err(EncodeError::BinaryTooLong { what, len: b.len() })
    } else {
        Ok(())
    }
}

/// Where a property lands in its struct: once (`Option`) or repeated (`SmallVec`).
trait Slot {
    fn absorb(&mut self, r: &mut Reader<'_>, id: u8) -> Result<(), DecodeError>;
    fn len(&self) -> usize;
    fn write(&self, id: u8, buf: &mut impl BufMut);
    fn is_unset(&self) -> bool;
    fn check(&self, id: u8) -> Result<(), EncodeError>;
}

impl<T: Value> Slot for Option<T> {
    fn absorb(&mut self, r: &mut Reader<'_>, id: u8) -> Result<(), DecodeError> {
        if self.is_some() {
            return Err(DecodeError::DuplicateProperty {
                name: id::name(u32::from(id)),
            });
        }
        *self = Some(T::read(r, id)?);
        Ok(())
    }
    fn len(&self) -> usize {
        self.as_ref().map_or(0, |v| 1 + v.len())
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        if let Some(v) = self {
            v.write(id, buf);
        }
    }
    fn is_unset(&self) -> bool {
        self.is_none()
    }
    fn check(&self, id: u8) -> Result<(), EncodeError> {
        self.as_ref().map_or(Ok(()), |v| v.check(id))
    }
}

/// Subscription Identifiers of a PUBLISH: one per matching subscription
/// [MQTT-3.3.4-4]; one is by far the most common case, so it is inline.
pub type SubscriptionIds = SmallVec<[SubscriptionId; 1]>;

impl Slot for SubscriptionIds {
    fn absorb(&mut self, r: &mut Reader<'_>, id: u8) -> Result<(), DecodeError> {
        self.push(SubscriptionId::read(r, id)?);
        Ok(())
    }
    fn len(&self) -> usize {
        self.iter().map(|v| 1 + v.len()).sum()
    }
    fn write(&self, id: u8, buf: &mut impl BufMut) {
        for v in self {
            v.write(id, buf);
        }
    }
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
    fn check(&self, _id: u8) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// The User Properties of a packet: one is kept inline, so that a packet
/// with one (an acknowledgement, or a PUBLISH's [`PublishExtras`]) needs no
/// list of its own; more go to the heap.
pub type UserProperties = SmallVec<[UserProperty; 1]>;

fn user_properties_len(user: &[UserProperty]) -> usize {
    user.iter()
        .map(|p| 1 + 4 + p.name.as_bytes().len() + p.value.as_bytes().len())
        .sum()
}

/// Reads the property length, then hands each property's identifier to
/// `each`, which reads its value from the properties' own reader.
#[inline(always)]
fn read_properties(
    r: &mut Reader<'_>,
    what: &'static str,
    mut each: impl FnMut(u32, &mut Reader<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint("property length")? as usize;
    let mut r = r.sub(len, what)?;
    while !r.is_empty() {
        let id = r.varint("property identifier")?;
        each(id, &mut r)?;
    }
    Ok(())
}

/// Writes each User Property, in order.
fn put_user_properties(buf: &mut impl BufMut, list: &[UserProperty]) {
    for p in list {
        put_prefixed_with_id(buf, id::USER_PROPERTY, p.name.as_bytes());
        put_prefixed(buf, p.value.as_bytes());
    }
}

/// Reads a User Property's name and value into `list`, within the limit.
fn push_user_property(
    list: &mut UserProperties,
    r: &mut Reader<'_>,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    if list.len() >= limits.max_user_properties {
        return Err(DecodeError::TooManyUserProperties {
            max: limits.max_user_properties,
        });
    }
    let name = r.string("User Property name")?;
    let value = r.string("User Property value")?;
    if list.len() == list.inline_size() {
        // Out of line: room for a few at once, so that a handful costs
        // one allocation.
        list.reserve(4usize.saturating_sub(list.len()).max(1));
    }
    list.push(UserProperty { name, value });
    Ok(())
}

macro_rules! properties {
    ($(
        $(#[$meta:meta])*
        $name:ident in $packet:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $id:ident, )*
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// User Properties, in the order received [MQTT-3.3.2-18].
            pub user_properties: UserProperties,
        }

        impl $name {
            /// Whether no property is set.
            pub fn is_empty(&self) -> bool {
                $( Slot::is_unset(&self.$field) && )* self.user_properties.is_empty()
            }

            /// Reads the property length and the properties after it, into
            /// `self`, which is empty: a packet is built in place rather
            /// than copied.
            #[allow(dead_code, reason = "PublishExtras is read and written by PublishProperties")]
            pub(crate) fn decode_into(
                &mut self,
                r: &mut Reader<'_>,
                limits: &DecodeLimits,
            ) -> Result<(), DecodeError> {
                debug_assert!(self.is_empty());
                read_properties(r, concat!($packet, " properties"), |id, r| {
                    self.absorb(id, r, limits)
                })
            }

            /// Reads the value of property `id`, whose identifier was just
            /// read, into its field; an error if this packet cannot carry it.
            #[inline]
            pub(crate) fn absorb(
                &mut self,
                id: u32,
                r: &mut Reader<'_>,
                limits: &DecodeLimits,
            ) -> Result<(), DecodeError> {
                match u8::try_from(id) {
                    $( Ok(id::$id) => Slot::absorb(&mut self.$field, r, id::$id), )*
                    Ok(id::USER_PROPERTY) => push_user_property(&mut self.user_properties, r, limits),
                    _ => Err(DecodeError::PropertyNotAllowed {
                        packet: $packet,
                        id,
                        name: id::name(id),
                    }),
                }
            }

            /// Length of the properties, without the property length prefix.
            pub(crate) fn len(&self) -> usize {
                0 $( + Slot::len(&self.$field) )* + user_properties_len(&self.user_properties)
            }

            /// Writes the property length and the properties.
            #[allow(dead_code, reason = "PublishExtras is read and written by PublishProperties")]
            pub(crate) fn encode(&self, len: usize, buf: &mut impl BufMut) {
                put_varint(buf, len);
                self.encode_fields(buf);
            }

            /// Writes the properties, without the property length.
            #[allow(dead_code, reason = "PublishExtras is read and written by PublishProperties")]
            pub(crate) fn encode_fields(&self, buf: &mut impl BufMut) {
                $( Slot::write(&self.$field, id::$id, buf); )*
                put_user_properties(buf, &self.user_properties);
            }

            /// Checks what the types cannot: binary lengths.
            #[inline(always)]
            pub(crate) fn check(&self) -> Result<(), EncodeError> {
                $( Slot::check(&self.$field, id::$id)?; )*
                Ok(())
            }
        }
    )*};
}

properties! {
    /// CONNECT properties (MQTT 5.0 §3.1.2.11).
    ConnectProperties in "CONNECT" {
        /// Seconds the session lives after the connection closes; absent means 0.
        session_expiry_interval: Option<u32> = SESSION_EXPIRY_INTERVAL,
        /// How many QoS 1 and 2 publications the client will process at once.
        receive_maximum: Option<NonZeroU16> = RECEIVE_MAXIMUM,
        /// The largest packet the client accepts.
        maximum_packet_size: Option<NonZeroU32> = MAXIMUM_PACKET_SIZE,
        /// The highest topic alias the client accepts from the server.
        topic_alias_maximum: Option<u16> = TOPIC_ALIAS_MAXIMUM,
        /// Whether the server may send Response Information.
        request_response_information: Option<bool> = REQUEST_RESPONSE_INFORMATION,
        /// Whether the server may send reason strings and user properties on failures.
        request_problem_information: Option<bool> = REQUEST_PROBLEM_INFORMATION,
        /// Extended authentication method.
        authentication_method: Option<MqttString> = AUTHENTICATION_METHOD,
        /// Extended authentication data.
        authentication_data: Option<Bytes> = AUTHENTICATION_DATA,
    }

    /// Will properties, in the CONNECT payload (MQTT 5.0 §3.1.3.2).
    WillProperties in "Will Properties" {
        /// Seconds the server waits before publishing the will.
        will_delay_interval: Option<u32> = WILL_DELAY_INTERVAL,
        /// Whether the will payload is UTF-8.
        payload_format_indicator: Option<PayloadFormat> = PAYLOAD_FORMAT_INDICATOR,
        /// Lifetime of the will message in seconds.
        message_expiry_interval: Option<u32> = MESSAGE_EXPIRY_INTERVAL,
        /// Content type of the will payload.
        content_type: Option<MqttString> = CONTENT_TYPE,
        /// Topic for a response to the will.
        response_topic: Option<MqttString> = RESPONSE_TOPIC,
        /// Correlation data for a response.
        correlation_data: Option<Bytes> = CORRELATION_DATA,
    }

    /// CONNACK properties (MQTT 5.0 §3.2.2.3).
    ConnAckProperties in "CONNACK" {
        /// Session expiry the server uses, when it differs from the client's.
        session_expiry_interval: Option<u32> = SESSION_EXPIRY_INTERVAL,
        /// How many QoS 1 and 2 publications the server will process at once.
        receive_maximum: Option<NonZeroU16> = RECEIVE_MAXIMUM,
        /// The highest QoS the server supports (0 or 1; absent means 2).
        maximum_qos: Option<QoS> = MAXIMUM_QOS,
        /// Whether the server supports retained messages; absent means yes.
        retain_available: Option<bool> = RETAIN_AVAILABLE,
        /// The largest packet the server accepts.
        maximum_packet_size: Option<NonZeroU32> = MAXIMUM_PACKET_SIZE,
        /// The client identifier the server assigned to an empty one.
        assigned_client_identifier: Option<MqttString> = ASSIGNED_CLIENT_IDENTIFIER,
        /// The highest topic alias the server accepts from the client.
        topic_alias_maximum: Option<u16> = TOPIC_ALIAS_MAXIMUM,
        /// Human-readable diagnostic.
        reason_string: Option<MqttString> = REASON_STRING,
        /// Whether wildcard subscriptions are supported; absent means yes.
        wildcard_subscription_available: Option<bool> = WILDCARD_SUBSCRIPTION_AVAILABLE,
        /// Whether subscription identifiers are supported; absent means yes.
        subscription_identifier_available: Option<bool> = SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        /// Whether shared subscriptions are supported; absent means yes.
        shared_subscription_available: Option<bool> = SHARED_SUBSCRIPTION_AVAILABLE,
        /// Keep alive the client must use instead of its own.
        server_keep_alive: Option<u16> = SERVER_KEEP_ALIVE,
        /// Basis for creating a response topic.
        response_information: Option<MqttString> = RESPONSE_INFORMATION,
        /// Another server to use.
        server_reference: Option<MqttString> = SERVER_REFERENCE,
        /// Extended authentication method.
        authentication_method: Option<MqttString> = AUTHENTICATION_METHOD,
        /// Extended authentication data.
        authentication_data: Option<Bytes> = AUTHENTICATION_DATA,
    }

    /// The rarer PUBLISH properties (MQTT 5.0 §3.3.2.3), which a
    /// [`PublishProperties`] keeps out of line: a message with none of them
    /// costs no allocation and moves few bytes.
    PublishExtras in "PUBLISH" {
        /// Topic for a response.
        response_topic: Option<MqttString> = RESPONSE_TOPIC,
        /// Correlation data for a response.
        correlation_data: Option<Bytes> = CORRELATION_DATA,
        /// Content type of the payload.
        content_type: Option<MqttString> = CONTENT_TYPE,
    }

    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK
    /// (MQTT 5.0 §3.4.2.2 and siblings).
    AckProperties in "acknowledgement" {
        /// Human-readable diagnostic.
        reason_string: Option<MqttString> = REASON_STRING,
    }

    /// SUBSCRIBE properties (MQTT 5.0 §3.8.2.1).
    SubscribeProperties in "SUBSCRIBE" {
        /// Identifier returned with every message this subscription matches.
        subscription_identifier: Option<SubscriptionId> = SUBSCRIPTION_IDENTIFIER,
    }

    /// UNSUBSCRIBE properties (MQTT 5.0 §3.10.2.1).
    UnsubscribeProperties in "UNSUBSCRIBE" {
    }

    /// DISCONNECT properties (MQTT 5.0 §3.14.2.2).
    DisconnectProperties in "DISCONNECT" {
        /// New session expiry, sent by the client only.
        session_expiry_interval: Option<u32> = SESSION_EXPIRY_INTERVAL,
        /// Human-readable diagnostic.
        reason_string: Option<MqttString> = REASON_STRING,
        /// Another server to use.
        server_reference: Option<MqttString> = SERVER_REFERENCE,
    }

    /// AUTH properties (MQTT 5.0 §3.15.2.2).
    AuthProperties in "AUTH" {
        /// Extended authentication method.
        authentication_method: Option<MqttString> = AUTHENTICATION_METHOD,
        /// Extended authentication data.
        authentication_data: Option<Bytes> = AUTHENTICATION_DATA,
        /// Human-readable diagnostic.
        reason_string: Option<MqttString> = REASON_STRING,
    }
}
