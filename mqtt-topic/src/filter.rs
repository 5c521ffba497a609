//! Topic filters: what a SUBSCRIBE asks for.

use bytes::Bytes;

use crate::name::{Levels, as_str};
use crate::{TopicError, TopicName, matching, validate};

/// A valid MQTT topic filter, such as `sport/+/player1` or `sport/#`: what a
/// SUBSCRIBE asks for.
///
/// The rules are those of a [`TopicName`], except that the single-level
/// wildcard `+` may stand for a whole level [MQTT-4.7.1-3] and the
/// multi-level wildcard `#` may be the whole last level [MQTT-4.7.1-2].
///
/// `$share/{group}/{filter}` is a valid plain filter here, as it is in MQTT
/// 3.1.1; [`Subscription::new`](crate::Subscription::new) reads it as an
/// MQTT 5.0 shared subscription.
///
/// Cloning is a reference-count increment.
///
/// ```
/// use mqtt_topic::{TopicFilter, TopicName};
///
/// let filter = TopicFilter::new("sport/tennis/+")?;
/// assert!(filter.matches(&TopicName::new("sport/tennis/player1")?));
/// assert!(TopicFilter::new("sport/tennis#").is_err());
/// # Ok::<(), mqtt_topic::TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Bytes);

impl TopicFilter {
    /// Checks `s` and copies it.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        validate::filter(s)?;
        Ok(Self(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// Checks `s` and wraps it without copying.
    pub fn from_static(s: &'static str) -> Result<Self, TopicError> {
        validate::filter(s)?;
        Ok(Self(Bytes::from_static(s.as_bytes())))
    }

    /// Checks `bytes` (UTF-8 included) and wraps them without copying: for a
    /// filter that is a slice of a received SUBSCRIBE.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        validate::filter(validate::utf8(&bytes)?)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes that are already known to be a valid filter: pieces of
    /// filters this crate checked, or a checked topic name.
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The filter as `&str` (see [`TopicName::as_str`] for its cost).
    pub fn as_str(&self) -> &str {
        as_str(&self.0)
    }

    /// The filter's bytes, shared with the buffer it came from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
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

    /// The levels between `/` separators, empty ones and wildcards included:
    /// `+/tennis/#` has the levels `"+"`, `"tennis"` and `"#"`.
    pub fn levels(&self) -> Levels<'_> {
        Levels(self.as_str().split('/'))
    }

    /// Whether the filter has a `+` or `#` level.
    pub fn has_wildcards(&self) -> bool {
        self.0.iter().any(|&b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter, by the rules of MQTT 4.7 (the
    /// `$` rule [MQTT-4.7.2-1] included). This compares level by level; to
    /// match one topic against many filters use a
    /// [`SubscriptionTrie`](crate::SubscriptionTrie).
    pub fn matches(&self, topic: &TopicName) -> bool {
        matching::matches_bytes(&self.0, topic.as_bytes())
    }
}

impl From<TopicName> for TopicFilter {
    /// A topic name is a filter without wildcards that matches only itself.
    fn from(name: TopicName) -> Self {
        Self(name.into_bytes())
    }
}

string_impls!(TopicFilter, validate::filter);
