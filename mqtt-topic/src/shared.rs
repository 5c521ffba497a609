//! Shared subscriptions: `$share/{group}/{filter}` (MQTT 5.0 §4.8.2).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::name::as_str;
use crate::{TopicError, TopicFilter, validate};

/// The prefix that makes a subscription shared (MQTT 5.0 §4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// What a SUBSCRIBE's topic filter asks for, read by MQTT 5.0 rules: either a
/// plain filter or a shared subscription `$share/{group}/{filter}`.
///
/// ```
/// use mqtt_topic::Subscription;
///
/// let sub = Subscription::new("$share/workers/jobs/+")?;
/// assert_eq!(sub.group(), Some("workers"));
/// assert_eq!(sub.filter(), "jobs/+");
///
/// let sub = Subscription::new("jobs/+")?;
/// assert_eq!(sub.group(), None);
///
/// assert!(Subscription::new("$share/work+ers/jobs").is_err());
/// # Ok::<(), mqtt_topic::TopicError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// A filter that every matching subscriber receives.
    Plain(TopicFilter),
    /// A filter whose messages go to one member of a group at a time.
    Shared(SharedFilter),
}

/// A shared subscription `$share/{group}/{filter}`: the share name (group)
/// and the topic filter, both checked ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SharedFilter {
    /// Checked UTF-8: non-empty, no `/`, `+` or `#`.
    group: Bytes,
    filter: TopicFilter,
}

impl Subscription {
    /// Reads `s` by MQTT 5.0 rules (copying it).
    pub fn new(s: &str) -> Result<Self, TopicError> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Reads `bytes` by MQTT 5.0 rules without copying: the group and the
    /// filter are slices of `bytes`.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        let s = validate::utf8(&bytes)?;
        let Some(rest) = s.strip_prefix(SHARE_PREFIX) else {
            validate::filter(s)?;
            return Ok(Self::Plain(TopicFilter::from_checked(bytes)));
        };
        // The share name is checked before the whole string so that
        // `$share/g+/x` is reported as a bad share name, not as a misplaced
        // wildcard.
        let group_start = SHARE_PREFIX.len();
        let group_len = rest.find('/').unwrap_or(rest.len());
        let group = &rest[..group_len];
        if group.is_empty() {
            return Err(TopicError::EmptyShareName {
                offset: group_start,
            });
        }
        if let Some(i) = group.find(['+', '#']) {
            return Err(TopicError::InvalidShareName {
                character: char::from(group.as_bytes()[i]),
                offset: group_start + i,
            });
        }
        let filter_start = group_start + group_len + 1;
        if filter_start >= s.len() {
            return Err(TopicError::MissingSharedFilter {
                offset: filter_start.min(s.len()),
            });
        }
        // The filter part obeys the rules of any filter, and the whole string
        // those of length and U+0000; checking the whole string does both and
        // reports offsets and levels in the string the caller gave.
        validate::filter(s)?;
        Ok(Self::Shared(SharedFilter {
            group: bytes.slice(group_start..group_start + group_len),
            filter: TopicFilter::from_checked(bytes.slice(filter_start..)),
        }))
    }

    /// The topic filter, without the `$share/{group}/` prefix.
    pub fn filter(&self) -> &TopicFilter {
        match self {
            Self::Plain(filter) => filter,
            Self::Shared(shared) => &shared.filter,
        }
    }

    /// The share name of a shared subscription.
    pub fn group(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Shared(shared) => Some(shared.group()),
        }
    }

    /// Whether this is a shared subscription.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared(_))
    }
}

impl SharedFilter {
    /// A shared subscription from its parts; `group` is checked
    /// ([MQTT-4.8.2-1]), and the whole `$share/{group}/{filter}` must fit in
    /// 65,535 bytes ([MQTT-4.7.3-3]). Error offsets are those in the whole
    /// string.
    pub fn new(group: &str, filter: TopicFilter) -> Result<Self, TopicError> {
        let whole = format!("{SHARE_PREFIX}{group}/{filter}");
        match Subscription::new(&whole)? {
            Subscription::Shared(shared) if shared.group() == group => Ok(shared),
            // `group` contained a '/', so the share name ended early.
            _ => Err(TopicError::InvalidShareName {
                character: '/',
                offset: SHARE_PREFIX.len() + group.find('/').unwrap_or(0),
            }),
        }
    }

    /// The share name.
    pub fn group(&self) -> &str {
        as_str(&self.group)
    }

    /// The topic filter.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }
}

impl fmt::Debug for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFilter")
            .field("group", &self.group())
            .field("filter", &self.filter)
            .finish()
    }
}

impl fmt::Display for SharedFilter {
    /// The wire form, `$share/{group}/{filter}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARE_PREFIX}{}/{}", self.group(), self.filter)
    }
}

impl fmt::Display for Subscription {
    /// The wire form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(filter) => fmt::Display::fmt(filter, f),
            Self::Shared(shared) => fmt::Display::fmt(shared, f),
        }
    }
}

impl FromStr for Subscription {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Subscription {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for Subscription {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::from_bytes(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Subscription {
    type Error = TopicError;
    fn try_from(bytes: Bytes) -> Result<Self, TopicError> {
        Self::from_bytes(bytes)
    }
}
