//! Why a session ended a connection.

use mqtt_codec::{DecodeError, PacketType, QoS, ReasonCode};

/// A violation of the protocol by the peer, or a limit it crossed: the
/// connection ends with [`ProtocolError::reason_code`] (sent in DISCONNECT
/// under MQTT 5.0, or in CONNACK if the connection was not yet accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes received were not a valid packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The first packet from a client was not CONNECT.
    #[error("first packet is {packet}, not CONNECT [MQTT-3.1.0-1]")]
    FirstPacketNotConnect {
        /// What arrived instead.
        packet: PacketType,
    },
    /// A second CONNECT on one connection.
    #[error("second CONNECT on one connection [MQTT-3.1.0-2]")]
    SecondConnect,
    /// A packet this role never receives (e.g. SUBACK sent to a server).
    #[error("{packet} is not a packet this side receives (MQTT 5.0 §2.1.2)")]
    UnexpectedPacket {
        /// The packet type.
        packet: PacketType,
    },
    /// A topic alias above the maximum this side announced.
    #[error("Topic Alias {alias} exceeds the Topic Alias Maximum {max} (MQTT 5.0 §3.3.2.3.4)")]
    TopicAliasInvalid {
        /// The alias received.
        alias: u16,
        /// Our maximum.
        max: u16,
    },
    /// An empty topic with an alias that names no topic yet.
    #[error("Topic Alias {alias} used before a topic was bound to it (MQTT 5.0 §3.3.4)")]
    UnknownTopicAlias {
        /// The alias received.
        alias: u16,
    },
    /// More unacknowledged QoS 1/2 publications than our Receive Maximum.
    #[error(
        "more than Receive Maximum {max} unacknowledged QoS 1 and 2 publications (MQTT 5.0 §3.3.4)"
    )]
    ReceiveMaximumExceeded {
        /// Our Receive Maximum.
        max: usize,
    },
    /// A PUBLISH above the Maximum QoS we announced.
    #[error("PUBLISH at {qos:?} above the server's Maximum QoS [MQTT-3.2.2-11]")]
    QoSNotSupported {
        /// The QoS received.
        qos: QoS,
    },
    /// A retained PUBLISH while Retain Available is 0.
    #[error("retained PUBLISH while retain is not available [MQTT-3.2.2-14]")]
    RetainNotSupported,
    /// DISCONNECT sets a Session Expiry Interval after CONNECT set zero.
    #[error("DISCONNECT sets a Session Expiry Interval after CONNECT set 0 (MQTT 5.0 §3.14.2.2.2)")]
    SessionExpiryAfterZero,
    /// SUBSCRIBE with a subscription identifier the server does not support.
    #[error("subscription identifiers are not supported by this server (MQTT 5.0 §3.2.2.3.12)")]
    SubscriptionIdentifiersNotSupported,
    /// No Local on a shared subscription.
    #[error("No Local set on shared subscription {filter:?} [MQTT-3.8.3-4]")]
    NoLocalOnSharedSubscription {
        /// The filter.
        filter: String,
    },
    /// No packet within one and a half keep-alive periods.
    #[error("no packet within 1.5 times the keep alive of {keep_alive} s [MQTT-3.1.2-22]")]
    KeepAliveTimeout {
        /// The keep alive in force, in seconds.
        keep_alive: u16,
    },
    /// CONNECT did not arrive in time.
    #[error("no CONNECT within the connect timeout")]
    ConnectTimeout,
    /// The server did not answer a PINGREQ in time (client role).
    #[error("no PINGRESP within the keep alive period")]
    PingTimeout,
    /// AUTH where no authentication exchange is under way, or with another method.
    #[error(
        "AUTH without an authentication exchange under way, or with another method [MQTT-4.12.0-5]"
    )]
    UnexpectedAuth,
}

impl ProtocolError {
    /// The reason code to send (MQTT 5.0).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Decode(e) => e.reason_code(),
            Self::TopicAliasInvalid { .. } => ReasonCode::TopicAliasInvalid,
            Self::ReceiveMaximumExceeded { .. } => ReasonCode::ReceiveMaximumExceeded,
            Self::QoSNotSupported { .. } => ReasonCode::QoSNotSupported,
            Self::RetainNotSupported => ReasonCode::RetainNotSupported,
            Self::SubscriptionIdentifiersNotSupported => {
                ReasonCode::SubscriptionIdentifiersNotSupported
            }
            Self::KeepAliveTimeout { .. } | Self::PingTimeout => ReasonCode::KeepAliveTimeout,
            Self::ConnectTimeout => ReasonCode::MaximumConnectTime,
            _ => ReasonCode::ProtocolError,
        }
    }
}
