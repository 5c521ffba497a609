//! The per-message accounting of a run: what each subscription should have
//! received of each publisher against what it did, and the totals when the
//! payloads are too short to be counted one by one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use mqtt_codec::QoS;

use super::latency::{Latency, new_histogram};
use super::publisher::PubResult;
use super::report::Report;
use super::stamp::STAMP_LEN;
use super::subscriber::SubResult;
use super::tally::Tally;
use super::tracker::Tracker;

pub(super) fn fill_receipts<'a>(
    report: &mut Report,
    results: impl IntoIterator<Item = &'a SubResult>,
    start: Instant,
) {
    let mut hist = new_histogram();
    let mut last = None::<Instant>;
    for r in results {
        report.received += r.received;
        let _ = hist.add(&r.latency);
        last = last.max(r.last);
    }
    let span = last.map_or(0.0, |l| l.duration_since(start).as_secs_f64());
    report.received_rate = if span > 0.0 {
        report.received as f64 / span
    } else {
        0.0
    };
    report.latency = Latency::from_histogram(&hist);
}

/// The group and filter of a shared subscription's `$share/GROUP/FILTER`.
pub(super) fn shared_subscription(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// Deliveries each message to `topic` makes: one per matching plain
/// subscription, one per shared-subscription group with a matching filter.
pub(super) fn fan_out(topic: &str, filters: &[String]) -> u64 {
    let mut plain = 0;
    let mut groups = BTreeSet::new();
    for f in filters {
        match shared_subscription(f) {
            Some((group, filter)) => {
                if mqtt_topic::matches(filter, topic) {
                    groups.insert((group, filter));
                }
            }
            None => plain += u64::from(mqtt_topic::matches(f, topic)),
        }
    }
    plain + groups.len() as u64
}

/// One subscription that should receive each matching message once: a
/// subscriber, or the members of a shared-subscription group (each gets
/// some of the messages).
pub(super) struct Unit<'a> {
    /// Its filter; `None`: every publisher's messages (`bench filters`).
    pub(super) filter: Option<&'a str>,
    /// What each member received.
    pub(super) members: Vec<&'a Tracker>,
}

/// The subscriptions of `filters` (by subscriber index), with what each
/// subscriber received (`None` if its task is gone).
pub(super) fn units<'a>(filters: &'a [String], results: &'a [Option<SubResult>]) -> Vec<Unit<'a>> {
    let mut units = Vec::new();
    let mut groups: BTreeMap<(&str, &str), Vec<&Tracker>> = BTreeMap::new();
    for (f, r) in filters.iter().zip(results) {
        let tracker = r.as_ref().map(|r| &r.tracker);
        match shared_subscription(f) {
            Some(key) => groups.entry(key).or_default().extend(tracker),
            None => units.push(Unit {
                filter: Some(f),
                members: tracker.into_iter().collect(),
            }),
        }
    }
    units.extend(groups.into_iter().map(|((_, filter), members)| Unit {
        filter: Some(filter),
        members,
    }));
    units
}

/// Messages of a publisher to be delivered: sent (QoS 0), or acknowledged
/// with success (QoS 1/2; the others are unacknowledged or refused).
pub(super) fn due(r: &PubResult, qos: QoS) -> u64 {
    if qos == QoS::AtMostOnce {
        r.sent
    } else {
        r.acked
    }
}

/// QoS 1/2 messages sent and never acknowledged (`None` at QoS 0).
pub(super) fn unacknowledged(results: &[PubResult], qos: QoS) -> Option<u64> {
    (qos != QoS::AtMostOnce).then(|| {
        results
            .iter()
            .map(|r| r.sent.saturating_sub(r.completed))
            .sum()
    })
}

/// Fills the report's per-message accounting: for each subscription and
/// each publisher whose topic (`topics`, by publisher index) its filter
/// matches, the messages due (`0..sent` at QoS 0; `0..completed` but the
/// refused at QoS 1/2: the never acknowledged are not losses, they are
/// counted as unacknowledged) against those received. What a subscription
/// received from a publisher it does not match is foreign.
pub(super) fn account(
    report: &mut Report,
    units: &[Unit<'_>],
    results: &[PubResult],
    topics: &[String],
    qos: QoS,
) {
    let mut sum = Tally::default();
    let mut foreign = 0;
    for unit in units {
        foreign += unit.members.iter().map(|t| t.foreign).sum::<u64>();
        for (p, r) in results.iter().enumerate() {
            let tracks: Vec<_> = unit.members.iter().filter_map(|t| t.track(p)).collect();
            let matches = match (unit.filter, topics.get(p)) {
                (Some(f), Some(topic)) => mqtt_topic::matches(f, topic),
                (Some(_), None) => false,
                (None, _) => true,
            };
            if !matches {
                foreign += Tally::of(&tracks, 0, &[]).received;
                continue;
            }
            sum += if qos == QoS::AtMostOnce {
                Tally::of(&tracks, r.sent, &[])
            } else {
                Tally::of(&tracks, r.completed, &r.refused)
            };
        }
    }
    report.per_message = Some(true);
    report.expected = Some(sum.expected);
    report.losses = Some(sum.losses);
    report.duplicates = Some(sum.duplicates);
    report.reordered = Some(sum.reordered);
    report.foreign = Some(foreign);
}

/// Losses and duplicates as differences of totals, for payloads too short
/// to carry a sequence number: a duplicate hides a loss.
pub(super) fn account_totals(report: &mut Report, expected: u64) {
    report.per_message = Some(false);
    report.expected = Some(expected);
    report.losses = Some(expected.saturating_sub(report.received));
    report.duplicates = Some(report.received.saturating_sub(expected));
}

pub(super) fn warn_small_payloads(size: usize) {
    if size < 8 {
        eprintln!("mqtt: payloads under 8 bytes carry no timestamp: no latency measured");
    }
    eprintln!(
        "mqtt: payloads under {STAMP_LEN} bytes carry no sequence number: losses and duplicates are differences of totals"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::filter_subscriber::{filter_for, topic_for};
    use crate::bench::stamp::Stamp;

    #[test]
    fn filters_are_distinct_and_each_matched_by_its_own_topic_only() {
        let n = 30;
        let filters: Vec<String> = (0..n).map(filter_for).collect();
        let distinct: BTreeSet<&String> = filters.iter().collect();
        assert_eq!(distinct.len(), n);
        for i in 0..n {
            let topic = topic_for(i);
            assert!(mqtt_topic::TopicName::new(&topic).is_ok());
            assert_eq!(fan_out(&topic, &filters), 1, "{topic}");
            assert!(mqtt_topic::matches(&filters[i], &topic));
        }
    }

    #[test]
    fn each_subscription_expects_the_publishers_it_matches() {
        let run = 42;
        let payload = |publisher: u32, seq: u64| {
            let mut b = Vec::new();
            Stamp {
                at: 0,
                run,
                publisher,
                seq,
            }
            .write(&mut b);
            b
        };
        let topics = ["bench/0".to_owned(), "bench/1".to_owned()];
        let pubs = [
            PubResult {
                sent: 4,
                acked: 4,
                completed: 4,
                ..PubResult::default()
            },
            PubResult {
                sent: 3,
                acked: 2,
                completed: 2,
                ..PubResult::default()
            },
        ];
        // Subscriber 0, on bench/0, also got a message of publisher 1.
        let mut only_0 = Tracker::new(Some(run), 2);
        for seq in [0, 1, 3] {
            only_0.arrive(&payload(0, seq));
        }
        only_0.arrive(&payload(1, 0));
        // Subscriber 1, on bench/#, got everything but publisher 0's 1.
        let mut all = Tracker::new(Some(run), 2);
        for (p, seq) in [(0, 0), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)] {
            all.arrive(&payload(p, seq));
        }
        let units = [
            Unit {
                filter: Some("bench/0"),
                members: vec![&only_0],
            },
            Unit {
                filter: Some("bench/#"),
                members: vec![&all],
            },
        ];
        let mut report = Report {
            qos: 1,
            ..Report::default()
        };
        account(&mut report, &units, &pubs, &topics, QoS::AtLeastOnce);
        // 4 + (4 + 2) due; publisher 1's message 2 was never acknowledged.
        assert_eq!(report.expected, Some(10));
        assert_eq!(report.losses, Some(2));
        assert_eq!(report.foreign, Some(1));
        assert_eq!(report.duplicates, Some(0));
        assert_eq!(unacknowledged(&pubs, QoS::AtLeastOnce), Some(1));
        assert!(report.failed());
    }
}
