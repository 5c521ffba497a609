//! What one subscriber received of one publisher's messages, by sequence
//! number: the gaps still open, duplicates and late arrivals.

/// What one subscriber received of one publisher's messages, by sequence
/// number. The messages missing so far are kept as ranges, 16 bytes each:
/// a QoS 0 burst dropped by a full queue is one range, not one entry per
/// message, and a run without loss keeps none. New gaps are always above
/// the others (pushed at the end); a late message fills one, usually a
/// recent one (found by binary search, near the end).
#[derive(Debug, Clone, Default)]
pub(crate) struct Track {
    /// The first sequence number tracked: 0 for this run's publishers (the
    /// subscribers were ready before they started); in `bench sub`, the
    /// lowest received (it may have subscribed mid-stream).
    base: u64,
    /// One past the highest sequence number received.
    next: u64,
    /// The sequence numbers in `base..next` not received: (start, end
    /// exclusive), sorted, disjoint and never adjacent.
    gaps: Vec<(u64, u64)>,
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
            next: seq,
            ..Self::default()
        }
    }

    /// Records the arrival of `seq`; true unless it is a duplicate.
    pub(crate) fn arrive(&mut self, seq: u64) -> bool {
        self.received += 1;
        if seq == self.next {
            // In order: the usual case, and the cheapest.
            self.next = seq + 1;
            return true;
        }
        if seq > self.next {
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return true;
        }
        if seq < self.base {
            // Before the first one seen (`bench sub` only): late, and what
            // lies between is missing.
            if seq + 1 < self.base {
                self.gaps.insert(0, (seq + 1, self.base));
            }
            self.base = seq;
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
                        self.gaps.insert(i + 1, (seq + 1, end));
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

    /// The sequence numbers received, as sorted disjoint ranges.
    pub(super) fn received_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = self.base;
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

    /// Sequence numbers missing between the first and the last received.
    pub(super) fn missing(&self) -> u64 {
        self.gaps.iter().map(|(s, e)| e - s).sum()
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
            assert!(t.gaps.windows(2).all(|w| w[0].1 < w[1].0));
        }
    }
}
