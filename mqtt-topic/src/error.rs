//! Why a string is not a valid topic name, topic filter or shared subscription.

/// Why a string is not a valid topic name, topic filter or shared subscription.
///
/// Every variant says where the problem is and cites the normative statement
/// of the MQTT specification it breaks (the numbering is the same in 3.1.1 and
/// 5.0 for every statement cited here). `offset` is a byte offset into the
/// string that was given to the constructor; `level` is the 0-based index of
/// the topic level (the text between `/` separators) in that string, so in
/// `$share/{group}/{filter}` the share name is level 1 and the filter starts at
/// level 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The string is empty [MQTT-4.7.3-1].
    #[error("a topic name or filter must be at least one character long [MQTT-4.7.3-1]")]
    Empty,
    /// The string is longer than 65,535 bytes [MQTT-4.7.3-3].
    #[error("{len} bytes is longer than the 65535 bytes a topic can have [MQTT-4.7.3-3]")]
    TooLong {
        /// The length in bytes.
        len: usize,
    },
    /// The string contains U+0000 [MQTT-4.7.3-2].
    #[error("null character U+0000 at byte {offset} (level {level}) [MQTT-4.7.3-2]")]
    NullCharacter {
        /// Byte offset of the null character.
        offset: usize,
        /// Level that contains it.
        level: usize,
    },
    /// The bytes are not well-formed UTF-8 [MQTT-1.5.4-1] (only from the
    /// constructors that take `Bytes`).
    #[error("not well-formed UTF-8 at byte {offset} [MQTT-1.5.4-1]")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A topic name contains `+` or `#` [MQTT-3.3.2-2] [MQTT-4.7.1-1].
    #[error(
        "wildcard '{wildcard}' at byte {offset} (level {level}) in a topic name: \
         wildcards are allowed only in topic filters [MQTT-3.3.2-2] [MQTT-4.7.1-1]"
    )]
    WildcardInName {
        /// `'+'` or `'#'`.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
        /// Level that contains it.
        level: usize,
    },
    /// A `+` shares its level with other characters, as in `sport+`
    /// [MQTT-4.7.1-3].
    #[error(
        "'+' at byte {offset} does not occupy the whole of level {level}: \
         the single-level wildcard must be a level on its own [MQTT-4.7.1-3]"
    )]
    SingleLevelWildcardNotAlone {
        /// Byte offset of the `+`.
        offset: usize,
        /// Level that contains it.
        level: usize,
    },
    /// A `#` shares its level with other characters, as in `sport/tennis#`
    /// [MQTT-4.7.1-2].
    #[error(
        "'#' at byte {offset} does not occupy the whole of level {level}: \
         the multi-level wildcard must be a level on its own [MQTT-4.7.1-2]"
    )]
    MultiLevelWildcardNotAlone {
        /// Byte offset of the `#`.
        offset: usize,
        /// Level that contains it.
        level: usize,
    },
    /// A `#` level is followed by more levels, as in `sport/#/ranking`
    /// [MQTT-4.7.1-2].
    #[error(
        "'#' at byte {offset} is level {level} but not the last level: \
         the multi-level wildcard must be the last character of the filter [MQTT-4.7.1-2]"
    )]
    MultiLevelWildcardNotLast {
        /// Byte offset of the `#`.
        offset: usize,
        /// Its level.
        level: usize,
    },
    /// `$share/` is followed directly by `/` or by nothing: the share name is
    /// empty [MQTT-4.8.2-1].
    #[error(
        "empty share name at byte {offset}: a share name must be at least one character long [MQTT-4.8.2-1]"
    )]
    EmptyShareName {
        /// Byte offset where the share name should start.
        offset: usize,
    },
    /// The share name contains `+` or `#` [MQTT-4.8.2-1].
    #[error(
        "'{character}' at byte {offset} in a share name: '/', '+' and '#' are not allowed there [MQTT-4.8.2-1]"
    )]
    InvalidShareName {
        /// The forbidden character.
        character: char,
        /// Its byte offset.
        offset: usize,
    },
    /// The share name is not followed by `/` and a non-empty topic filter
    /// [MQTT-4.8.2-2].
    #[error("no topic filter after the share name at byte {offset} [MQTT-4.8.2-2]")]
    MissingSharedFilter {
        /// Byte offset where the topic filter should start.
        offset: usize,
    },
}

impl TopicError {
    /// The normative statement of the specification this error breaks, as
    /// written in the specification, e.g. `"MQTT-4.7.1-2"`: handy for logs and
    /// reason strings.
    pub fn statement(&self) -> &'static str {
        match self {
            Self::Empty => "MQTT-4.7.3-1",
            Self::TooLong { .. } => "MQTT-4.7.3-3",
            Self::NullCharacter { .. } => "MQTT-4.7.3-2",
            Self::InvalidUtf8 { .. } => "MQTT-1.5.4-1",
            Self::WildcardInName { .. } => "MQTT-3.3.2-2",
            Self::SingleLevelWildcardNotAlone { .. } => "MQTT-4.7.1-3",
            Self::MultiLevelWildcardNotAlone { .. } | Self::MultiLevelWildcardNotLast { .. } => {
                "MQTT-4.7.1-2"
            }
            Self::EmptyShareName { .. } | Self::InvalidShareName { .. } => "MQTT-4.8.2-1",
            Self::MissingSharedFilter { .. } => "MQTT-4.8.2-2",
        }
    }
}
