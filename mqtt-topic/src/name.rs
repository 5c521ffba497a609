//! Topic names: the topic a PUBLISH is sent to.

use bytes::Bytes;

use crate::{TopicError, validate};

/// A valid MQTT topic name, such as `sport/tennis/player1`: what a PUBLISH
/// is sent to.
///
/// It is at least one character and at most 65,535 bytes of UTF-8, without
/// U+0000 and without the wildcards `+` and `#` ([MQTT-4.7.3-1],
/// [MQTT-4.7.3-2], [MQTT-4.7.3-3], [MQTT-3.3.2-2]). Empty levels are allowed:
/// `/finance` and `a//b` are valid names.
///
/// It wraps [`Bytes`], so cloning it is a reference-count increment, and
/// [`TopicName::from_bytes`] takes a slice of a packet buffer without copying.
///
/// ```
/// use mqtt_topic::TopicName;
///
/// let name = TopicName::new("sport/tennis/player1")?;
/// assert_eq!(name.levels().collect::<Vec<_>>(), ["sport", "tennis", "player1"]);
/// assert!(TopicName::new("sport/+").is_err());
/// # Ok::<(), mqtt_topic::TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Bytes);

impl TopicName {
    /// Checks `s` and copies it.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        validate::name(s)?;
        Ok(Self(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// Checks `s` and wraps it without copying.
    pub fn from_static(s: &'static str) -> Result<Self, TopicError> {
        validate::name(s)?;
        Ok(Self(Bytes::from_static(s.as_bytes())))
    }

    /// Checks `bytes` (UTF-8 included) and wraps them without copying: for a
    /// topic that is a slice of a received packet.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        validate::name(validate::utf8(&bytes)?)?;
        Ok(Self(bytes))
    }

    /// The name as `&str`.
    ///
    /// This crate has no `unsafe` code, so this checks UTF-8 again (a few
    /// nanoseconds for a typical topic); the matchers work on
    /// [`as_bytes`](Self::as_bytes) and never call it.
    pub fn as_str(&self) -> &str {
        as_str(&self.0)
    }

    /// The name's bytes, shared with the buffer it came from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// A copy of the name in a buffer of its own, for a name kept after
    /// the packet it came in is gone (a slice would keep that whole buffer
    /// alive). Not checked again.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use mqtt_topic::TopicName;
    ///
    /// let packet = Bytes::from_static(b"..a/b..");
    /// let name = TopicName::from_bytes(packet.slice(2..5))?;
    /// let kept = name.detached();
    /// assert_eq!(kept, name);
    /// assert_ne!(kept.as_bytes().as_ptr(), name.as_bytes().as_ptr());
    /// # Ok::<(), mqtt_topic::TopicError>(())
    /// ```
    pub fn detached(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// Gives up the wrapper and returns the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length in bytes (at least 1).
    #[allow(clippy::len_without_is_empty)] // never empty [MQTT-4.7.3-1]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The levels between `/` separators, empty ones included:
    /// `/finance` has the levels `""` and `"finance"`.
    pub fn levels(&self) -> Levels<'_> {
        Levels(self.as_str().split('/'))
    }

    /// The number of levels, `levels().count()` without making them:
    /// one more than the number of `/`.
    pub fn level_count(&self) -> usize {
        1 + self.0.iter().filter(|&&b| b == b'/').count()
    }

    /// Whether the name starts with `$` (such as `$SYS/broker/uptime`), which
    /// hides it from filters that start with a wildcard [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.0.first() == Some(&b'$')
    }
}

/// The `&str` view of bytes that a constructor has checked to be UTF-8.
pub(crate) fn as_str(bytes: &[u8]) -> &str {
    // Every constructor checked UTF-8 and `Bytes` is immutable, so the
    // fallback is never taken; it only avoids `unsafe` and a panic path.
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The levels of a topic name or filter, from [`TopicName::levels`] or
/// [`TopicFilter::levels`](crate::TopicFilter::levels).
#[derive(Debug, Clone)]
pub struct Levels<'a>(pub(crate) std::str::Split<'a, char>);

impl<'a> Iterator for Levels<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.0.next()
    }
}

impl DoubleEndedIterator for Levels<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

impl std::iter::FusedIterator for Levels<'_> {}

string_impls!(TopicName, validate::name);
