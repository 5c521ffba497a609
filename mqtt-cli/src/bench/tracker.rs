//! What one subscriber received, by publisher: a [`Track`] for each, with
//! the messages of other runs, or without a stamp, counted as foreign.

use std::collections::HashMap;

use super::stamp::Stamp;
use super::tally::Tally;
use super::track::Track;

/// What one subscriber received, by publisher.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// This run's id: its publishers are tracked from sequence number 0
    /// and anything else is foreign. `None` (`bench sub`): every run's
    /// publishers are tracked, each from its first message.
    own: Option<u32>,
    /// This run's publishers.
    publishers: usize,
    /// Tracks of this run's publishers, by index (grown on demand).
    mine: Vec<Track>,
    /// Tracks by (run, publisher), in `bench sub`.
    others: HashMap<(u32, u32), Track>,
    /// Deliveries that no publisher of this run made, or without a stamp.
    pub(crate) foreign: u64,
}

impl Tracker {
    /// A tracker of run `own`'s `publishers`, or of every run (`None`).
    pub(crate) fn new(own: Option<u32>, publishers: usize) -> Self {
        Self {
            own,
            publishers,
            ..Self::default()
        }
    }

    /// Records the arrival of a message; true if it is new: neither a
    /// duplicate nor foreign.
    pub(crate) fn arrive(&mut self, payload: &[u8]) -> bool {
        let Some(stamp) = Stamp::parse(payload) else {
            self.foreign += 1;
            return false;
        };
        let index = stamp.publisher as usize;
        match self.own {
            Some(run) if run == stamp.run && index < self.publishers => {
                if index >= self.mine.len() {
                    self.mine.resize_with(index + 1, Track::default);
                }
                self.mine[index].arrive(stamp.seq)
            }
            Some(_) => {
                self.foreign += 1;
                false
            }
            None => self
                .others
                .entry((stamp.run, stamp.publisher))
                .or_insert_with(|| Track::starting_at(stamp.seq))
                .arrive(stamp.seq),
        }
    }

    /// The track of this run's publisher `index`, if anything came from it.
    pub(crate) fn track(&self, index: usize) -> Option<&Track> {
        self.mine.get(index).filter(|t| t.received > 0)
    }

    /// What came from every run's publishers (`bench sub`): duplicates,
    /// reordered, and the messages missing between the first and the last
    /// received of each (those of the gaps forgotten at the gap limit
    /// included, and the unplaced deliveries counted apart).
    pub(crate) fn seen(&self) -> Tally {
        let mut t = Tally::default();
        for track in self.others.values().chain(&self.mine) {
            t.received += track.received;
            t.duplicates += track.duplicates;
            t.reordered += track.reordered;
            t.losses += track.missing();
            t.unplaced += track.unplaced;
            t.gaps_forgotten += track.forgotten_gaps;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(run: u32, publisher: u32, seq: u64) -> Vec<u8> {
        let mut b = Vec::new();
        Stamp {
            at: 1,
            run,
            publisher,
            seq,
        }
        .write(&mut b);
        b.extend_from_slice(b"filler");
        b
    }

    #[test]
    fn trackers_keep_runs_and_publishers_apart() {
        let mut t = Tracker::new(Some(7), 2);
        assert!(t.arrive(&stamped(7, 0, 0)));
        assert!(t.arrive(&stamped(7, 1, 0)));
        assert!(!t.arrive(&stamped(7, 1, 0)));
        // Another run, a publisher out of range, no stamp: foreign.
        assert!(!t.arrive(&stamped(8, 0, 1)));
        assert!(!t.arrive(&stamped(7, 2, 0)));
        assert!(!t.arrive(b"short"));
        assert_eq!(t.foreign, 3);
        assert_eq!(t.track(0).map(|t| t.received), Some(1));
        assert_eq!(t.track(1).map(|t| t.duplicates), Some(1));

        // `bench sub`: every run, each from its first message.
        let mut t = Tracker::new(None, 0);
        for (run, seq) in [(1, 100), (1, 101), (1, 103), (1, 99), (2, 5), (2, 5)] {
            t.arrive(&stamped(run, 0, seq));
        }
        let seen = t.seen();
        assert_eq!(
            (seen.received, seen.losses, seen.duplicates, seen.reordered),
            (6, 1, 1, 1)
        );
    }
}
