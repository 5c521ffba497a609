//! Limits the decoder enforces before it trusts a packet.

/// Bounds on what the decoder accepts.
///
/// Each is checked as early as possible: the packet size as soon as the fixed
/// header is read, before the body is buffered; the counts while decoding,
/// before anything is allocated for the next element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted, in bytes.
    /// Default: [`DecodeLimits::DEFAULT_MAX_PACKET_SIZE`] (1 MiB). The
    /// protocol's own ceiling is 268,435,460 bytes.
    pub max_packet_size: u32,
    /// Most User Properties in one packet (or will). Default: 64.
    pub max_user_properties: usize,
    /// Most topic filters in one SUBSCRIBE or UNSUBSCRIBE. Default: 1024.
    pub max_topic_filters: usize,
}

impl DecodeLimits {
    /// The default maximum packet size: 1 MiB.
    pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1024 * 1024;
    /// The largest packet MQTT can frame: a 4-byte remaining length of
    /// 268,435,455 plus the 5-byte fixed header.
    pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_455 + 5;

    /// The defaults, as a constant.
    pub const DEFAULT: Self = Self {
        max_packet_size: Self::DEFAULT_MAX_PACKET_SIZE,
        max_user_properties: 64,
        max_topic_filters: 1024,
    };

    /// Limits that accept everything the protocol can express; for tests and
    /// tools that read trusted captures.
    pub const UNLIMITED: Self = Self {
        max_packet_size: Self::PROTOCOL_MAX_PACKET_SIZE,
        max_user_properties: usize::MAX,
        max_topic_filters: usize::MAX,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
