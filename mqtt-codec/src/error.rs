//! Why a packet could not be decoded or encoded.

use crate::reason::ReasonCode;
use crate::string::StringError;
use crate::types::{PacketType, ProtocolVersion};

/// Why bytes from the network are not a valid packet.
///
/// Each message names what is wrong and, where the specification has one,
/// the normative statement it breaks. [`DecodeError::reason_code`] gives the
/// reason code a receiver sends in DISCONNECT or CONNACK (MQTT 5.0), and the
/// connection is then closed: after a decode error the stream cannot be
/// resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than the receiver accepts.
    #[error(
        "packet of {size} bytes exceeds the maximum packet size of {max} bytes [MQTT-3.1.2-24] [MQTT-3.2.2-15]"
    )]
    PacketTooLarge {
        /// Size of the whole packet, fixed header included.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// A variable byte integer runs over four bytes (MQTT 5.0 §1.5.5).
    #[error("variable byte integer longer than four bytes (MQTT 5.0 §1.5.5)")]
    VarintTooLong,
    /// A variable byte integer does not use the fewest bytes possible.
    #[error("variable byte integer not encoded in the minimum number of bytes [MQTT-1.5.5-1]")]
    NonMinimalVarint,
    /// The packet type nibble is 0, or 15 outside MQTT 5.0.
    #[error("packet type {nibble} is reserved in {version} (MQTT 5.0 §2.1.2)")]
    ReservedPacketType {
        /// The high nibble of the first byte.
        nibble: u8,
        /// The version in force.
        version: ProtocolVersion,
    },
    /// The fixed header flags are not the ones the packet type requires.
    #[error(
        "{packet} with fixed header flags {flags:#06b}; they must be {expected:#06b} [MQTT-2.1.3-1]"
    )]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The flags received.
        flags: u8,
        /// The flags required.
        expected: u8,
    },
    /// A QoS field holds 3.
    #[error("{what} QoS is 3; only 0, 1 and 2 exist [MQTT-3.3.1-4] [MQTT-3.1.2-12]")]
    InvalidQoS {
        /// Which QoS field.
        what: &'static str,
    },
    /// A QoS 0 PUBLISH has the DUP flag set.
    #[error("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupWithQoS0,
    /// A field runs past the end of the packet.
    #[error("{what} runs past the end of the packet")]
    Truncated {
        /// The field that was cut off.
        what: &'static str,
    },
    /// Bytes are left after the last field of a packet or of a length-prefixed part.
    #[error("{count} unexpected bytes after the {what}")]
    TrailingBytes {
        /// What should have ended there.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A UTF-8 string field is not a valid MQTT string.
    #[error("{what}: {error}")]
    InvalidString {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        error: StringError,
    },
    /// A packet identifier is 0.
    #[error("{packet} with packet identifier 0 [MQTT-2.2.1-3]")]
    ZeroPacketId {
        /// The packet type.
        packet: PacketType,
    },
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("protocol name {name:?} is not \"MQTT\" [MQTT-3.1.2-1]")]
    InvalidProtocolName {
        /// The name received.
        name: String,
    },
    /// The CONNECT protocol level is not one this codec speaks.
    #[error("protocol level {level} is not supported (3, 4 and 5 are) [MQTT-3.1.2-2]")]
    UnsupportedProtocolVersion {
        /// The level received.
        level: u8,
    },
    /// The protocol name does not belong with the protocol level.
    #[error("protocol name {name:?} does not go with protocol level {level} [MQTT-3.1.2-1]")]
    ProtocolNameMismatch {
        /// The name received.
        name: String,
        /// The level received.
        level: u8,
    },
    /// The reserved bit of the CONNECT flags is set.
    #[error("reserved CONNECT flag bit 0 is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain is set without the Will Flag.
    #[error("Will QoS or Will Retain set while the Will Flag is 0 [MQTT-3.1.2-11] [MQTT-3.1.2-13]")]
    WillFlagsWithoutWill,
    /// MQTT 3.1.1 forbids a password without a user name.
    #[error("Password Flag set without the User Name Flag [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// A topic name holds a wildcard character.
    #[error("{what} contains a wildcard character '+' or '#' [MQTT-3.3.2-2]")]
    WildcardInTopicName {
        /// Which topic name.
        what: &'static str,
    },
    /// A topic name is empty where it must not be.
    #[error("{what} is empty: it must be at least one character long [MQTT-4.7.3-1]")]
    EmptyTopicName {
        /// Which topic name.
        what: &'static str,
    },
    /// PUBLISH with an empty topic name and no topic alias (MQTT 5.0).
    #[error("PUBLISH with an empty topic name and no Topic Alias (MQTT 5.0 §3.3.2.3.4)")]
    EmptyTopicWithoutAlias,
    /// Reserved bits of the CONNACK acknowledge flags are set.
    #[error("reserved CONNACK acknowledge flags {flags:#010b} set [MQTT-3.2.2-1]")]
    ConnAckReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// CONNACK sets Session Present while refusing the connection.
    #[error("CONNACK with Session Present and failure code {code:#04x} [MQTT-3.2.2-6]")]
    SessionPresentOnFailure {
        /// The reason or return code.
        code: u8,
    },
    /// A reason code that the packet type may not carry.
    #[error("reason code {code:#04x} is not allowed in {packet} (MQTT 5.0 §2.4)")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// An MQTT 3.1.1 CONNACK return code above 5.
    #[error("CONNACK return code {code} is reserved (MQTT 3.1.1 §3.2.2.3)")]
    InvalidConnectReturnCode {
        /// The code received.
        code: u8,
    },
    /// An MQTT 3.1.1 SUBACK return code other than 0, 1, 2 or 0x80.
    #[error("SUBACK return code {code:#04x} is reserved [MQTT-3.9.3-2]")]
    InvalidSubAckReturnCode {
        /// The code received.
        code: u8,
    },
    /// A property that the packet type may not carry.
    #[error("property {id:#04x} ({name}) is not allowed in {packet} (MQTT 5.0 §2.2.2.2)")]
    PropertyNotAllowed {
        /// The packet (or will) being decoded.
        packet: &'static str,
        /// The property identifier.
        id: u32,
        /// The property's name, or "unknown".
        name: &'static str,
    },
    /// A property that may appear once appears twice.
    #[error("property {name} appears more than once (MQTT 5.0 §2.2.2.2)")]
    DuplicateProperty {
        /// The property's name.
        name: &'static str,
    },
    /// A property value outside its range.
    #[error("property {name}: {problem}")]
    InvalidPropertyValue {
        /// The property's name.
        name: &'static str,
        /// What is wrong with the value, with its spec statement.
        problem: &'static str,
    },
    /// More user properties than the configured limit.
    #[error("more than {max} user properties in one packet (configured limit)")]
    TooManyUserProperties {
        /// The limit in force.
        max: usize,
    },
    /// More topic filters than the configured limit.
    #[error("more than {max} topic filters in one {packet} (configured limit)")]
    TooManyTopicFilters {
        /// The packet type.
        packet: PacketType,
        /// The limit in force.
        max: usize,
    },
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("{packet} without any topic filter [MQTT-3.8.3-2] [MQTT-3.10.3-2]")]
    NoTopicFilters {
        /// The packet type.
        packet: PacketType,
    },
    /// SUBACK or UNSUBACK with no return code.
    #[error("{packet} without any reason code [MQTT-3.9.3-1] [MQTT-3.11.3-1]")]
    NoReasonCodes {
        /// The packet type.
        packet: PacketType,
    },
    /// Reserved bits of a subscription options byte are set.
    #[error("reserved bits of subscription options {byte:#010b} set [MQTT-3.8.3-4] [MQTT-3.8.3-5]")]
    SubscriptionOptionsReserved {
        /// The options byte.
        byte: u8,
    },
    /// Retain Handling is 3.
    #[error("Retain Handling is 3; only 0, 1 and 2 exist (MQTT 5.0 §3.8.3.1)")]
    InvalidRetainHandling,
}

impl DecodeError {
    /// The reason code to send before closing the connection (MQTT 5.0):
    /// in DISCONNECT, or in CONNACK when the error is in CONNECT.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidProtocolName { .. }
            | UnsupportedProtocolVersion { .. }
            | ProtocolNameMismatch { .. } => ReasonCode::UnsupportedProtocolVersion,
            WildcardInTopicName { .. } | EmptyTopicName { .. } => ReasonCode::TopicNameInvalid,
            TooManyUserProperties { .. } | TooManyTopicFilters { .. } => {
                ReasonCode::ImplementationSpecificError
            }
            DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | EmptyTopicWithoutAlias
            | NoTopicFilters { .. }
            | NoReasonCodes { .. }
            | InvalidRetainHandling
            // MQTT 5.0 §3.8.3.1: a Maximum QoS of 3 in SUBSCRIBE is a Protocol
            // Error, where QoS 3 in PUBLISH or in a will is a Malformed Packet.
            | InvalidQoS { what: "subscription" }
            | SessionPresentOnFailure { .. } => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed the largest remaining length, 268,435,455 bytes.
    #[error("{packet} body of {size} bytes exceeds the 268,435,455 bytes MQTT can frame")]
    PacketTooLarge {
        /// The packet type.
        packet: PacketType,
        /// The body size it would have.
        size: usize,
    },
    /// A QoS 1 or 2 PUBLISH without a packet identifier, or QoS 0 with one.
    #[error("PUBLISH at {qos:?} must {} a packet identifier [MQTT-2.2.1-2] [MQTT-2.2.1-3]", if *has_id { "not have" } else { "have" })]
    PacketIdMismatch {
        /// The message's QoS.
        qos: crate::QoS,
        /// Whether a packet identifier was given.
        has_id: bool,
    },
    /// The packet does not exist in the version being encoded.
    #[error("{packet} does not exist in {version}")]
    NotInVersion {
        /// The packet type.
        packet: PacketType,
        /// The version being encoded.
        version: ProtocolVersion,
    },
    /// A binary field is longer than its two-byte length can say.
    #[error("{what} is {len} bytes; binary data holds at most 65,535 (MQTT 5.0 §1.5.6)")]
    BinaryTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without topic filters, or SUBACK/UNSUBACK without reason codes.
    #[error("{packet} must carry at least one entry [MQTT-3.8.3-2] [MQTT-3.10.3-2]")]
    Empty {
        /// The packet type.
        packet: PacketType,
    },
}
