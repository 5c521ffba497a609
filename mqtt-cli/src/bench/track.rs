//! What one subscriber received of one publisher's messages, by sequence
//! number: the gaps still open (at most [`MAX_GAPS`]), duplicates and late
//! arrivals.

use std::collections::VecDeque;

/// Gaps a [`Track`] keeps, at most: 1 MiB (16 bytes a gap) per publisher
/// and subscriber, however long the run and however the broker drops.
/// Past it, the lowest gap is forgotten: its messages are counted as
/// missing for good, and below it only counts are kept (see [`Track`]). A shared
/// subscription's member, which gets one message in a few, reaches it
/// after some hundred thousand messages; a plain subscription only with as
/// many separate losses.
pub(crate) const MAX_GAPS: usize = 65_536;

/// What one subscriber received of one publisher's messages, by sequence
/// number. The messages missing so far are kept as ranges, 16 bytes each:
/// a QoS 0 burst dropped by a full queue is one range, not one entry per
/// message, and a run without loss keeps none. New gaps are always above
/// the others (pushed at the end); a late message fills one, usually a
/// recent one (found by binary search, near the end).
///
/// At most [`MAX_GAPS`] gaps are kept. A new one beyond that makes the
/// track forget its lowest (oldest) gap: the messages in it are counted
/// as missing for good (in `forgotten`: lost, unless another member of a
/// shared group received them), and the `floor` rises to its end. Below the
/// floor the track keeps counts only, which stay exact (what was received
/// there, what was missing) as long as nothing more arrives there. A
/// message that does arrive below the floor (`unplaced`) may fill a
/// forgotten gap or be a duplicate: the track cannot tell, so it takes no
/// loss back and counts no duplicate. The losses reported may then be over
/// by up to the unplaced count, never under.
#[derive(Debug, Clone, Default)]
pub(crate) struct Track {
    /// The first sequence number tracked: 0 for this run's publishers (the
    /// subscribers were ready before they started); in `bench sub`, the
    /// lowest received (it may have subscribed mid-stream).
    base: u64,
    /// The lowest sequence number tracked one by one: `base` until a gap
    /// is forgotten, then the end of the last gap forgotten. In
    /// `base..floor` every sequence number was received except the
    /// `forgotten` ones.
    floor: u64,
    /// One past the highest sequence number received.
    next: u64,
    /// The sequence numbers in `floor..next` not received: (start, end
    /// exclusive), sorted, disjoint and never adjacent; at most
    /// [`MAX_GAPS`].
    gaps: VecDeque<(u64, u64)>,
    /// Sequence numbers in the gaps forgotten: missing for good.
    forgotten: u64,
    /// Gaps forgotten at the limit.
    pub(super) forgotten_gaps: u64,
    /// Deliveries below the floor: a late message for a forgotten gap, or
    /// a duplicate; counted as neither.
    pub(super) unplaced: u64,
    /// Deliveries, duplicates included.
    pub(super) received: u64,
    /// Deliveries of a sequence number already received.
    pub(super) duplicates: u64,
    /// Deliveries that filled a gap: they came after a later message.
    pub(super) reordered: u64,
}

impl Track {
    /// A track whose first message is `seq` (`bench sub`).
    pub(super) fn starting_at(seq: u64) -> Self {
        Self {
            base: seq,
            floor: seq,
            next: seq,
            ..Self::default()
        }
    }

    /// Records the arrival of `seq`; true unless it is a duplicate (or
    /// unplaced: below the floor, where the track cannot tell).
    pub(crate) fn arrive(&mut self, seq: u64) -> bool {
        self.received += 1;
        if seq == self.next {
            // In order: the usual case, and the cheapest.
            self.next = seq + 1;
            return true;
        }
        if seq > self.next {
            self.make_room();
            self.gaps.push_back((self.next, seq));
            self.next = seq + 1;
            return true;
        }
        if seq < self.floor {
            if self.forgotten_gaps > 0 {
                self.unplaced += 1;
                return false;
            }
            // Before the first one seen (`bench sub` only): late, and what
            // lies between is missing. It is the lowest gap: the one
            // forgotten if there is no room.
            if seq + 1 < self.base {
                if self.gaps.len() < MAX_GAPS {
                    self.gaps.push_front((seq + 1, self.base));
                } else {
                    self.forgotten += self.base - (seq + 1);
                    self.forgotten_gaps += 1;
                    self.floor = self.base;
                    self.base = seq;
                    self.reordered += 1;
                    return true;
                }
            }
            self.base = seq;
            self.floor = seq;
            self.reordered += 1;
            return true;
        }
        // The gap that would hold `seq`: the last one starting at or below.
        let i = self.gaps.partition_point(|&(start, _)| start <= seq);
        match i.checked_sub(1).map(|i| (i, self.gaps[i])) {
            Some((i, (start, end))) if seq < end => {
                match (start == seq, seq + 1 == end) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        // Forgetting the lowest gap moves this one down.
                        let at = if self.make_room() { i } else { i + 1 };
                        self.gaps.insert(at, (seq + 1, end));
                    }
                }
                self.reordered += 1;
                true
            }
            _ => {
                self.duplicates += 1;
                false
            }
        }
    }

    /// Forgets the lowest gap if there are [`MAX_GAPS`], so that one more
    /// fits; true if it did.
    fn make_room(&mut self) -> bool {
        if self.gaps.len() < MAX_GAPS {
            return false;
        }
        let Some((start, end)) = self.gaps.pop_front() else {
            return false;
        };
        self.forgotten += end - start;
        self.forgotten_gaps += 1;
        self.floor = end;
        true
    }

    /// The sequence numbers received at or above the floor, as sorted
    /// disjoint ranges.
    pub(super) fn received_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = self.floor;
        self.gaps
            .iter()
            .copied()
            .chain(std::iter::once((self.next, self.next)))
            .filter_map(move |(s, e)| {
                let r = (at, s);
                at = e;
                (r.0 < r.1).then_some(r)
            })
    }

    /// Below the floor, where only counts are kept: the floor, and how many
    /// distinct sequence numbers were received below it.
    pub(super) fn below_floor(&self) -> (u64, u64) {
        (self.floor, self.floor - self.base - self.forgotten)
    }

    /// Sequence numbers missing between the first and the last received,
    /// the forgotten ones included.
    pub(super) fn missing(&self) -> u64 {
        self.forgotten + self.gaps.iter().map(|(s, e)| e - s).sum::<u64>()
    }
}

#[cfg(test)]
impl Track {
    /// A track of `seqs`, arrived in that order.
    pub(super) fn from_arrivals(seqs: &[u64]) -> Self {
        let mut t = Self::default();
        for &s in seqs {
            t.arrive(s);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::rng::XorShift;
    use crate::bench::tally::Tally;

    #[test]
    fn gaps_split_and_fill() {
        let mut t = Track::from_arrivals(&[0, 10, 5]);
        assert_eq!(t.missing(), 8);
        for s in [1, 2, 3, 4, 6, 7, 8, 9] {
            assert!(t.arrive(s));
        }
        assert!(!t.arrive(4));
        assert_eq!(t.missing(), 0);
        assert!(t.gaps.is_empty());
        assert_eq!((t.reordered, t.duplicates), (9, 1));
        assert_eq!(t.received_ranges().collect::<Vec<_>>(), [(0, 11)]);
    }

    #[test]
    fn past_the_gap_limit_the_lowest_gaps_are_counted_lost_and_forgotten() {
        // Every odd number lost: a gap each, 10 more than the limit.
        let over = 10;
        let last = 2 * (MAX_GAPS as u64 + over);
        let mut t = Track::default();
        for seq in (0..=last).step_by(2) {
            assert!(t.arrive(seq));
        }
        assert_eq!(t.gaps.len(), MAX_GAPS);
        assert_eq!(
            (t.forgotten_gaps, t.forgotten, t.floor),
            (over, over, 2 * over)
        );
        assert_eq!(t.gaps.front(), Some(&(2 * over + 1, 2 * over + 2)));
        // The counts stay exact: every odd number is lost.
        let end = last + 1;
        let odds = end / 2;
        assert_eq!(t.missing(), odds);
        let tally = Tally::of(&[&t], end, &[]);
        assert_eq!(
            (
                tally.received,
                tally.expected,
                tally.losses,
                tally.duplicates
            ),
            (end - odds, end, odds, 0)
        );
        assert_eq!((tally.gaps_forgotten, tally.unplaced), (over, 0));
        // Due only below the floor (QoS 1/2, the rest never acknowledged):
        // how many of the 10 received below 20 are below 10 is not known.
        // Taken as none: 10 losses, where there are 5; never fewer.
        assert_eq!(Tally::of(&[&t], 10, &[]).losses, 10);

        // Below the floor: 5 fills a forgotten gap, 4 is a duplicate; the
        // track cannot tell them apart, and takes no loss back.
        assert!(!t.arrive(5));
        assert!(!t.arrive(4));
        let tally = Tally::of(&[&t], end, &[]);
        assert_eq!(
            (tally.losses, tally.duplicates, tally.unplaced),
            (odds, 0, 2)
        );
        assert_eq!(tally.received, end - odds + 2);
        // Above it, a late message still fills its gap.
        assert!(t.arrive(2 * over + 1));
        let tally = Tally::of(&[&t], end, &[]);
        assert_eq!((tally.losses, tally.reordered), (odds - 1, 1));
        // A refused message below the floor is taken as received: the
        // losses may be over, never under.
        let tally = Tally::of(&[&t], end, &[3]);
        assert_eq!((tally.expected, tally.losses), (end - 1, odds - 1));
    }

    #[test]
    fn a_gap_split_at_the_limit_forgets_the_lowest() {
        // Gaps of 3: (1, 4), (5, 8), ..., as many as the limit.
        let mut arrivals: Vec<u64> = (0..=MAX_GAPS as u64).map(|i| 4 * i).collect();
        let mut t = Track::from_arrivals(&arrivals);
        assert_eq!((t.gaps.len(), t.forgotten_gaps), (MAX_GAPS, 0));
        // 2 splits (1, 4): its lower half is the lowest gap, forgotten.
        assert!(t.arrive(2));
        assert_eq!((t.forgotten_gaps, t.forgotten, t.floor), (1, 1, 2));
        assert_eq!(t.gaps.front(), Some(&(3, 4)));
        // 6 splits (5, 8): (3, 4) is forgotten, the halves stay in order.
        assert!(t.arrive(6));
        assert_eq!((t.forgotten_gaps, t.forgotten, t.floor), (2, 2, 4));
        assert_eq!(
            t.gaps.iter().take(3).collect::<Vec<_>>(),
            [&(5, 6), &(7, 8), &(9, 12)]
        );
        assert_eq!(t.gaps.len(), MAX_GAPS);
        assert!(
            t.gaps
                .iter()
                .zip(t.gaps.iter().skip(1))
                .all(|(a, b)| a.1 < b.0)
        );
        // Nothing arrived below the floor since: the counts are exact.
        arrivals.extend([2, 6]);
        let end = t.next;
        let lost = end - arrivals.len() as u64;
        let tally = Tally::of(&[&t], end, &[]);
        assert_eq!(
            (tally.losses, tally.duplicates, tally.unplaced),
            (lost, 0, 0)
        );
        assert_eq!(t.missing(), lost);
    }

    #[test]
    fn in_bench_sub_a_message_before_the_first_at_the_limit_forgets_what_lies_between() {
        // From 1000 on, every other message: the limit of gaps.
        let mut t = Track::starting_at(1000);
        for i in 0..=MAX_GAPS as u64 {
            t.arrive(1000 + 2 * i);
        }
        assert_eq!((t.gaps.len(), t.forgotten_gaps), (MAX_GAPS, 0));
        // 10 came late: 11..1000 is the lowest gap, forgotten at once.
        assert!(t.arrive(10));
        assert_eq!((t.base, t.floor, t.forgotten), (10, 1000, 989));
        assert_eq!(t.below_floor(), (1000, 1));
        assert_eq!(t.missing(), 989 + MAX_GAPS as u64);
        assert_eq!(t.gaps.len(), MAX_GAPS);
        // Below the floor now: unplaced.
        assert!(!t.arrive(5));
        assert!(!t.arrive(500));
        assert_eq!((t.unplaced, t.reordered, t.duplicates), (2, 1, 0));
    }

    /// Random drops, duplicates and swaps against a plain set of what
    /// arrived.
    #[test]
    fn tracks_agree_with_a_set() {
        let mut rng = XorShift::new(3);
        for round in 0..200 {
            let n = 1 + rng.below(300) as u64;
            let mut arrivals = Vec::new();
            for seq in 0..n {
                match rng.below(10) {
                    0 => {}
                    1 => arrivals.extend([seq, seq]),
                    _ => arrivals.push(seq),
                }
            }
            for _ in 0..rng.below(20) {
                let (a, b) = (rng.below(arrivals.len() + 1), rng.below(arrivals.len() + 1));
                if a < arrivals.len() && b < arrivals.len() {
                    arrivals.swap(a, b);
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            let (mut dups, mut late, mut max) = (0, 0, None);
            let mut t = Track::default();
            for &seq in &arrivals {
                let fresh = seen.insert(seq);
                assert_eq!(t.arrive(seq), fresh, "round {round}");
                if !fresh {
                    dups += 1;
                } else if max.is_some_and(|m| seq < m) {
                    late += 1;
                }
                max = max.max(Some(seq));
            }
            let end = n - rng.below(3).min(n as usize) as u64;
            let tally = Tally::of(&[&t], end, &[]);
            let lost = (0..end).filter(|s| !seen.contains(s)).count() as u64;
            assert_eq!(
                (tally.losses, tally.duplicates, tally.reordered),
                (lost, dups, late),
                "round {round}: {arrivals:?}"
            );
            assert_eq!(tally.received, arrivals.len() as u64);
            assert!(
                t.gaps
                    .iter()
                    .zip(t.gaps.iter().skip(1))
                    .all(|(a, b)| a.1 < b.0)
            );
        }
    }
}
