//! MQTT 5.0 reason codes (§2.4) and the MQTT 3.1.1 return codes they map to.

use std::fmt;

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal; )*) => {
        /// A reason code of MQTT 5.0 (§2.4): the outcome of an operation.
        ///
        /// Values below 0x80 mean success; 0x80 and above mean failure. One
        /// variant exists per value; the spec's synonyms for 0x00 (Normal
        /// disconnection, Granted QoS 0) are associated constants.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ReasonCode {
            /// The reason code for a byte, or `None` if MQTT 5.0 defines no such code.
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The name the specification gives the code.
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00 Success; also Normal disconnection and Granted QoS 0.
    Success = 0x00, "Success";
    /// 0x01 Granted QoS 1.
    GrantedQoS1 = 0x01, "Granted QoS 1";
    /// 0x02 Granted QoS 2.
    GrantedQoS2 = 0x02, "Granted QoS 2";
    /// 0x04 Disconnect with Will Message.
    DisconnectWithWillMessage = 0x04, "Disconnect with Will Message";
    /// 0x10 No matching subscribers.
    NoMatchingSubscribers = 0x10, "No matching subscribers";
    /// 0x11 No subscription existed.
    NoSubscriptionExisted = 0x11, "No subscription existed";
    /// 0x18 Continue authentication.
    ContinueAuthentication = 0x18, "Continue authentication";
    /// 0x19 Re-authenticate.
    ReAuthenticate = 0x19, "Re-authenticate";
    /// 0x80 Unspecified error.
    UnspecifiedError = 0x80, "Unspecified error";
    /// 0x81 Malformed Packet.
    MalformedPacket = 0x81, "Malformed Packet";
    /// 0x82 Protocol Error.
    ProtocolError = 0x82, "Protocol Error";
    /// 0x83 Implementation specific error.
    ImplementationSpecificError = 0x83, "Implementation specific error";
    /// 0x84 Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version";
    /// 0x85 Client Identifier not valid.
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid";
    /// 0x86 Bad User Name or Password.
    BadUserNameOrPassword = 0x86, "Bad User Name or Password";
    /// 0x87 Not authorized.
    NotAuthorized = 0x87, "Not authorized";
    /// 0x88 Server unavailable.
    ServerUnavailable = 0x88, "Server unavailable";
    /// 0x89 Server busy.
    ServerBusy = 0x89, "Server busy";
    /// 0x8A Banned.
    Banned = 0x8A, "Banned";
    /// 0x8B Server shutting down.
    ServerShuttingDown = 0x8B, "Server shutting down";
    /// 0x8C Bad authentication method.
    BadAuthenticationMethod = 0x8C, "Bad authentication method";
    /// 0x8D Keep Alive timeout.
    KeepAliveTimeout = 0x8D, "Keep Alive timeout";
    /// 0x8E Session taken over.
    SessionTakenOver = 0x8E, "Session taken over";
    /// 0x8F Topic Filter invalid.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid";
    /// 0x90 Topic Name invalid.
    TopicNameInvalid = 0x90, "Topic Name invalid";
    /// 0x91 Packet Identifier in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use";
    /// 0x92 Packet Identifier not found.
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found";
    /// 0x93 Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded";
    /// 0x94 Topic Alias invalid.
    TopicAliasInvalid = 0x94, "Topic Alias invalid";
    /// 0x95 Packet too large.
    PacketTooLarge = 0x95, "Packet too large";
    /// 0x96 Message rate too high.
    MessageRateTooHigh = 0x96, "Message rate too high";
    /// 0x97 Quota exceeded.
    QuotaExceeded = 0x97, "Quota exceeded";
    /// 0x98 Administrative action.
    AdministrativeAction = 0x98, "Administrative action";
    /// 0x99 Payload format invalid.
    PayloadFormatInvalid = 0x99, "Payload format invalid";
    /// 0x9A Retain not supported.
    RetainNotSupported = 0x9A, "Retain not supported";
    /// 0x9B QoS not supported.
    QoSNotSupported = 0x9B, "QoS not supported";
    /// 0x9C Use another server.
    UseAnotherServer = 0x9C, "Use another server";
    /// 0x9D Server moved.
    ServerMoved = 0x9D, "Server moved";
    /// 0x9E Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported";
    /// 0x9F Connection rate exceeded.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded";
    /// 0xA0 Maximum connect time.
    MaximumConnectTime = 0xA0, "Maximum connect time";
    /// 0xA1 Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported";
    /// 0xA2 Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported";
}

impl ReasonCode {
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: Self = Self::Success;
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: Self = Self::Success;

    /// Whether the code reports a failure (0x80 and above).
    pub const fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code (§3.2.2.3) for this reason code.
    ///
    /// 3.1.1 has six codes; each 5.0 failure maps to the nearest one, and a
    /// failure with no nearer code maps to 3, "Server unavailable".
    pub const fn to_v3_connect_return_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::BadUserNameOrPassword => 4,
            Self::NotAuthorized | Self::Banned | Self::BadAuthenticationMethod => 5,
            _ => 3,
        }
    }

    /// The reason code for an MQTT 3.1.1 CONNACK return code, or `None`
    /// for the reserved values 6–255.
    pub const fn from_v3_connect_return_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The MQTT 3.1.1 SUBACK return code (§3.9.3): the granted QoS, or
    /// 0x80 for any failure.
    pub const fn to_v3_suback_return_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::GrantedQoS1 => 1,
            Self::GrantedQoS2 => 2,
            _ => 0x80,
        }
    }

    /// The reason code for an MQTT 3.1.1 SUBACK return code, or `None` for
    /// a value 3.1.1 does not allow [MQTT-3.9.3-2].
    pub const fn from_v3_suback_return_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::GrantedQoS1,
            2 => Self::GrantedQoS2,
            0x80 => Self::UnspecifiedError,
            _ => return None,
        })
    }
}

/// Success: what an acknowledgement, DISCONNECT or AUTH without a reason
/// code byte means.
impl Default for ReasonCode {
    fn default() -> Self {
        Self::Success
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), *self as u8)
    }
}

/// The reason codes each packet type may carry (MQTT 5.0 §2.4 and the
/// sections of each packet).
pub(crate) mod allowed {
    use super::ReasonCode::{self, *};

    pub(crate) const CONNACK: &[ReasonCode] = &[
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ];

    pub(crate) const PUBACK: &[ReasonCode] = &[
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ];

    pub(crate) const PUBREL: &[ReasonCode] = &[Success, PacketIdentifierNotFound];

    pub(crate) const SUBACK: &[ReasonCode] = &[
        Success,
        GrantedQoS1,
        GrantedQoS2,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        SharedSubscriptionsNotSupported,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];

    pub(crate) const UNSUBACK: &[ReasonCode] = &[
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ];

    pub(crate) const DISCONNECT: &[ReasonCode] = &[
        Success,
        DisconnectWithWillMessage,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        NotAuthorized,
        ServerBusy,
        ServerShuttingDown,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];

    pub(crate) const AUTH: &[ReasonCode] = &[Success, ContinueAuthentication, ReAuthenticate];
}
