//! The naive matcher: one filter against one topic, level by level.

use crate::validate;

/// Whether topic name `topic` matches topic filter `filter` (MQTT 4.7).
///
/// Returns `false` when `filter` is not a valid topic filter or `topic` is not
/// a valid topic name. Otherwise the levels are compared one by one: `+`
/// matches any one level, `#` matches any number of levels including none
/// (so `sport/#` matches `sport`), and a topic that starts with `$` is not
/// matched by a filter that starts with a wildcard [MQTT-4.7.2-1].
///
/// This is the reference the [`SubscriptionTrie`](crate::SubscriptionTrie)
/// and the [`RetainedIndex`](crate::RetainedIndex) are tested against.
///
/// ```
/// use mqtt_topic::matches;
///
/// assert!(matches("sport/#", "sport"));
/// assert!(matches("+/+", "/finance"));
/// assert!(!matches("+", "/finance"));
/// assert!(!matches("#", "$SYS/uptime"));
/// assert!(matches("$SYS/#", "$SYS/uptime"));
/// ```
pub fn matches(filter: &str, topic: &str) -> bool {
    validate::filter(filter).is_ok()
        && validate::name(topic).is_ok()
        && matches_bytes(filter.as_bytes(), topic.as_bytes())
}

/// [`matches()`] for a filter and a topic that are known to be valid.
pub(crate) fn matches_bytes(filter: &[u8], topic: &[u8]) -> bool {
    if topic.first() == Some(&b'$') && matches!(filter.first(), Some(b'+' | b'#')) {
        return false;
    }
    let mut filter_levels = filter.split(|&b| b == b'/');
    let mut topic_levels = topic.split(|&b| b == b'/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
