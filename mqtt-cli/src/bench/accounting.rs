//! The per-message accounting of a run: what each subscription should have
//! received of each publisher against what it did, and the totals when the
//! payloads are too short to be counted one by one.

use std::time::Instant;

use mqtt_codec::QoS;

use super::latency::{Latency, new_histogram};
use super::publisher::PubResult;
use super::recipients::Recipient;
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

/// One subscription that should receive each matching message once (a
/// [`Recipient`]), with what its members received.
pub(super) struct Unit<'a> {
    /// Its filter; `None`: every publisher's messages (`bench filters`).
    pub(super) filter: Option<&'a str>,
    /// What each member received.
    pub(super) members: Vec<&'a Tracker>,
}

/// The per-message accounting's view of `recipients`: what each member
/// received (`results`, by subscriber index; a member whose task is gone
/// has nothing to show).
pub(super) fn units<'a>(
    recipients: &[Recipient<'a>],
    results: &'a [Option<SubResult>],
) -> Vec<Unit<'a>> {
    recipients
        .iter()
        .map(|r| Unit {
            filter: Some(r.filter),
            members: r
                .members
                .iter()
                .filter_map(|&i| results.get(i)?.as_ref().map(|r| &r.tracker))
                .collect(),
        })
        .collect()
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
    report.note_gap_limit(&sum);
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
    use crate::bench::recipients::recipients;
    use crate::bench::stamp::Stamp;

    #[test]
    fn a_unit_holds_the_trackers_of_the_members_still_there() {
        let filters = ["$share/g/t", "t", "$share/g/t", "u"].map(String::from);
        let result = || Some(SubResult::new(Tracker::new(None, 0)));
        let results = [result(), None, None, result()];
        let recipients = recipients(&filters);
        let units = units(&recipients, &results);
        let shape: Vec<_> = units.iter().map(|u| (u.filter, u.members.len())).collect();
        // The plain subscription whose task is gone still expects its due.
        assert_eq!(shape, [(Some("t"), 0), (Some("u"), 1), (Some("t"), 1)]);
        let first = results[0].as_ref().map(|r| &r.tracker);
        assert!(first.is_some_and(|t| std::ptr::eq(units[2].members[0], t)));
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
