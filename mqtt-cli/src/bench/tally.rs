//! The sums of the per-message accounting: what one subscription received
//! of one publisher's messages against what was due, and totals of those.

use super::track::Track;

/// What one subscription (one subscriber, or the members of one shared
/// subscription) received of one publisher's messages, or a sum of those.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Deliveries, duplicates included.
    pub(crate) received: u64,
    /// Deliveries due.
    pub(crate) expected: u64,
    /// Deliveries due that did not come.
    pub(crate) losses: u64,
    /// Deliveries of a message already delivered.
    pub(crate) duplicates: u64,
    /// Deliveries after a later message.
    pub(crate) reordered: u64,
    /// Deliveries below a track's floor, after it forgot gaps at the gap
    /// limit: a late message for a forgotten gap, or a duplicate. Counted
    /// as neither: `losses` may be over by up to this many.
    pub(crate) unplaced: u64,
    /// Gaps forgotten at the gap limit ([`MAX_GAPS`](super::track::MAX_GAPS) per track).
    pub(crate) gaps_forgotten: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.received += o.received;
        self.expected += o.expected;
        self.losses += o.losses;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.unplaced += o.unplaced;
        self.gaps_forgotten += o.gaps_forgotten;
    }
}

impl Tally {
    /// What `tracks` (the members of one subscription) received of a
    /// publisher whose messages `0..end`, except the `refused` ones, were
    /// to be delivered once each. A message two members both received
    /// is a duplicate.
    ///
    /// Below the floor of a track that forgot gaps at the limit, only the
    /// count of what it received is known. Where it stands against `end`
    /// is not (QoS 1/2: messages delivered but never acknowledged lie
    /// above it): as many as fit in `end..floor` are taken to lie there,
    /// not due, so that the losses are not undercounted; and a refused
    /// message below a floor is taken as received, for the same reason.
    /// The count is added to what the other members received, as a shared
    /// subscription delivers each message to one member only: a broker
    /// that gave one message to two members, one of them below its floor,
    /// would go unseen there (no duplicate, and a loss it hides). That is
    /// the one undercount the limit allows, and only in shared groups.
    pub(crate) fn of(tracks: &[&Track], end: u64, refused: &[u64]) -> Self {
        let mut t = Self::default();
        let mut ranges = Vec::new();
        let mut sum = 0;
        // Received below the floors, and due; and the highest floor.
        let (mut below_due, mut top_floor) = (0, 0);
        for track in tracks {
            t.received += track.received;
            t.duplicates += track.duplicates;
            t.reordered += track.reordered;
            t.unplaced += track.unplaced;
            t.gaps_forgotten += track.forgotten_gaps;
            for (s, e) in track.received_ranges() {
                sum += e - s;
                ranges.push((s, e));
            }
            let (floor, below) = track.below_floor();
            below_due += below.saturating_sub(floor.saturating_sub(end));
            top_floor = top_floor.max(floor);
        }
        // The union of what the members received.
        ranges.sort_unstable();
        let mut union: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match union.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => union.push((s, e)),
            }
        }
        let union_len: u64 = union.iter().map(|(s, e)| e - s).sum();
        t.duplicates += sum - union_len;
        let due_received: u64 = below_due
            + union
                .iter()
                .filter(|(s, _)| *s < end)
                .map(|(s, e)| (*e).min(end) - s)
                .sum::<u64>();
        let got = |seq: u64| {
            let i = union.partition_point(|(s, _)| *s <= seq);
            seq < top_floor || (i > 0 && seq < union[i - 1].1)
        };
        let refused_due = refused.iter().filter(|&&r| r < end).count() as u64;
        let refused_missing = refused.iter().filter(|&&r| r < end && !got(r)).count() as u64;
        t.expected = end - refused_due;
        // Saturating: only a message two members both received below a
        // floor can make the received due exceed what was due.
        t.losses = end
            .saturating_sub(due_received)
            .saturating_sub(refused_missing);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::track::MAX_GAPS;

    #[test]
    fn a_duplicate_does_not_hide_a_loss() {
        // 3 lost, 5 twice, 7 after 8.
        let t = Track::from_arrivals(&[0, 1, 2, 4, 5, 5, 6, 8, 7, 9]);
        let tally = Tally::of(&[&t], 10, &[]);
        assert_eq!(
            tally,
            Tally {
                received: 10,
                expected: 10,
                losses: 1,
                duplicates: 1,
                reordered: 1,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn the_messages_after_the_last_received_are_lost_up_to_the_end() {
        let t = Track::from_arrivals(&[0, 1, 2, 3, 4]);
        assert_eq!(Tally::of(&[&t], 8, &[]).losses, 3);
        // QoS 1/2: received beyond the acknowledged is no loss.
        let t = Track::from_arrivals(&(0..10).collect::<Vec<_>>());
        let tally = Tally::of(&[&t], 5, &[]);
        assert_eq!((tally.expected, tally.losses), (5, 0));
        // Nothing received at all.
        assert_eq!(Tally::of(&[], 7, &[]).losses, 7);
    }

    #[test]
    fn refused_messages_are_not_due() {
        let t = Track::from_arrivals(&[0, 1, 2, 4]);
        let tally = Tally::of(&[&t], 5, &[3]);
        assert_eq!((tally.expected, tally.losses), (4, 0));
        // A refused message delivered anyway is no loss either.
        let t = Track::from_arrivals(&[0, 1, 2, 3, 4]);
        let tally = Tally::of(&[&t], 5, &[3]);
        assert_eq!((tally.expected, tally.losses), (4, 0));
    }

    #[test]
    fn shared_members_past_the_gap_limit_are_counted_exactly() {
        // Evens to one member, odds to the other: each sees a gap at every
        // message of the other, far beyond the limit. 10, 500 and 7 lost.
        let n = 2 * (MAX_GAPS as u64 + 100);
        let lost = [7, 10, 500];
        let arrived = |parity| {
            (0..n)
                .filter(|s| s % 2 == parity && !lost.contains(s))
                .collect::<Vec<_>>()
        };
        let a = Track::from_arrivals(&arrived(0));
        let b = Track::from_arrivals(&arrived(1));
        let tally = Tally::of(&[&a, &b], n, &[]);
        assert!(a.forgotten_gaps > 0 && b.forgotten_gaps > 0);
        assert_eq!(
            (
                tally.received,
                tally.losses,
                tally.duplicates,
                tally.unplaced
            ),
            (n - 3, 3, 0, 0)
        );
        assert_eq!(tally.gaps_forgotten, a.forgotten_gaps + b.forgotten_gaps);
    }

    #[test]
    fn shared_members_are_counted_together() {
        // Evens to one member, odds (and 4 again) to the other, 9 lost.
        let a = Track::from_arrivals(&[0, 2, 4, 6, 8]);
        let b = Track::from_arrivals(&[1, 3, 4, 5, 7]);
        let tally = Tally::of(&[&a, &b], 10, &[]);
        assert_eq!((tally.received, tally.losses, tally.duplicates), (10, 1, 1));
    }
}
