//! Who should receive each message once: a plain subscription, or a
//! shared-subscription group as a whole. The one place that rule is
//! written: the deliveries a run expects ([`fan_out`]) and the per-message
//! accounting (`accounting::units`) both count by it.

use std::collections::BTreeMap;

/// One recipient of each message its filter matches: a subscriber with a
/// plain subscription, or the members of a shared-subscription group
/// (`$share/GROUP/FILTER`) together, as the broker delivers each matching
/// message to one member of a group only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recipient<'a> {
    /// The filter messages are matched against: a shared subscription's
    /// without its `$share/GROUP/` prefix.
    pub(super) filter: &'a str,
    /// The subscribers, by index: the one of a plain subscription, or the
    /// members of a group.
    pub(super) members: Vec<usize>,
}

/// The group and filter of a shared subscription's `$share/GROUP/FILTER`.
fn shared_subscription(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// The recipients of `filters` (one per subscriber, by index): the plain
/// subscriptions in subscriber order, then the shared groups, one per
/// (group, filter), in that order.
pub(super) fn recipients(filters: &[String]) -> Vec<Recipient<'_>> {
    let mut plain = Vec::new();
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, f) in filters.iter().enumerate() {
        match shared_subscription(f) {
            Some(key) => groups.entry(key).or_default().push(i),
            None => plain.push(Recipient {
                filter: f,
                members: vec![i],
            }),
        }
    }
    plain.extend(
        groups
            .into_iter()
            .map(|((_, filter), members)| Recipient { filter, members }),
    );
    plain
}

/// Deliveries each message to `topic` makes: one per recipient whose
/// filter matches.
pub(super) fn fan_out(topic: &str, recipients: &[Recipient<'_>]) -> u64 {
    recipients
        .iter()
        .filter(|r| mqtt_topic::matches(r.filter, topic))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::bench::filter_subscriber::{filter_for, topic_for};

    fn strings(filters: &[&str]) -> Vec<String> {
        filters.iter().map(|&f| f.to_owned()).collect()
    }

    #[test]
    fn a_shared_group_counts_once() {
        let filters = strings(&[
            "$share/g/bench/#",
            "bench/#",
            "$share/g/bench/#",
            "$share/h/bench/#",
            "$share/g/bench/0",
            "bench/1",
            "$share/g/bench/#",
        ]);
        let r = recipients(&filters);
        let members = |filter| {
            r.iter()
                .filter(|r| r.filter == filter)
                .map(|r| r.members.clone())
                .collect::<Vec<_>>()
        };
        // Plain first, in order; then (g, bench/#), (g, bench/0), (h, bench/#).
        assert_eq!(members("bench/#"), [vec![1], vec![0, 2, 6], vec![3]]);
        assert_eq!(members("bench/0"), [vec![4]]);
        assert_eq!(members("bench/1"), [vec![5]]);
        assert_eq!(r.len(), 5);
        // bench/#, g's bench/#, h's bench/#, and g's bench/0 for bench/0.
        assert_eq!(fan_out("bench/0", &r), 4);
        assert_eq!(fan_out("bench/1", &r), 4);
        assert_eq!(fan_out("bench/2", &r), 3);
        assert_eq!(fan_out("other", &r), 0);
    }

    #[test]
    fn filters_are_distinct_and_each_matched_by_its_own_topic_only() {
        let n = 30;
        let filters: Vec<String> = (0..n).map(filter_for).collect();
        let distinct: BTreeSet<&String> = filters.iter().collect();
        assert_eq!(distinct.len(), n);
        let r = recipients(&filters);
        for (i, filter) in filters.iter().enumerate() {
            let topic = topic_for(i);
            assert!(mqtt_topic::TopicName::new(&topic).is_ok());
            assert_eq!(fan_out(&topic, &r), 1, "{topic}");
            assert!(mqtt_topic::matches(filter, &topic));
        }
    }
}
