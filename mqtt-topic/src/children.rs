//! The children of a tree node, keyed by topic level: a short vector while
//! there are few, a hash map once there are many.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use smallvec::SmallVec;

/// A topic level as stored in the tree. Levels up to 16 bytes (most of them:
/// `sport`, device ids, `telemetry`) live inline, without an allocation of
/// their own.
pub(crate) type Label = SmallVec<[u8; 16]>;

/// Above this many children a node switches from a vector scanned linearly
/// to a hash map: a scan of 8 short labels is about as fast as hashing one.
const MAX_FEW: usize = 8;

/// A map goes back to a vector when it shrinks to this many children, below
/// [`MAX_FEW`] so that a node hovering at the limit does not convert back and
/// forth.
const BACK_TO_FEW: usize = MAX_FEW / 2;

/// The children of a node.
pub(crate) enum Children<N> {
    /// Few children, in insertion order. Capacity is kept equal to the length
    /// (`reserve_exact`): most nodes have one child, and `Vec`'s default
    /// growth would give each of them room for four.
    Few(Vec<(Label, N)>),
    /// Many children. Boxed to keep `Children`, and so every node, small:
    /// few nodes have a map, all have a `Children`.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Label, N, LevelState>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<N> Children<N> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The child for `level`; the operation on the publish path.
    #[inline]
    pub(crate) fn get(&self, level: &[u8]) -> Option<&N> {
        match self {
            Self::Few(v) => v
                .iter()
                .find(|(l, _)| l.as_slice() == level)
                .map(|(_, n)| n),
            Self::Many(m) => m.get(level),
        }
    }

    pub(crate) fn get_mut(&mut self, level: &[u8]) -> Option<&mut N> {
        match self {
            Self::Few(v) => v
                .iter_mut()
                .find(|(l, _)| l.as_slice() == level)
                .map(|(_, n)| n),
            Self::Many(m) => m.get_mut(level),
        }
    }

    /// The child for `level`, made with `make` if there is none.
    pub(crate) fn get_or_insert_with(&mut self, level: &[u8], make: impl FnOnce() -> N) -> &mut N {
        if let Self::Few(v) = self
            && v.len() >= MAX_FEW
            && !v.iter().any(|(l, _)| l.as_slice() == level)
        {
            let mut map = HashMap::with_capacity_and_hasher(MAX_FEW * 2, LevelState::new());
            map.extend(v.drain(..));
            *self = Self::Many(Box::new(map));
        }
        match self {
            Self::Few(v) => match v.iter().position(|(l, _)| l.as_slice() == level) {
                Some(i) => &mut v[i].1,
                None => {
                    v.reserve_exact(1);
                    v.push((Label::from_slice(level), make()));
                    let last = v.len() - 1;
                    &mut v[last].1
                }
            },
            Self::Many(m) => m.entry(Label::from_slice(level)).or_insert_with(make),
        }
    }

    /// Removes the child for `level`, giving memory back as the node shrinks.
    pub(crate) fn remove(&mut self, level: &[u8]) -> Option<N> {
        match self {
            Self::Few(v) => {
                let i = v.iter().position(|(l, _)| l.as_slice() == level)?;
                let (_, child) = v.swap_remove(i);
                v.shrink_to_fit();
                Some(child)
            }
            Self::Many(m) => {
                let child = m.remove(level)?;
                if m.len() <= BACK_TO_FEW {
                    let mut v = Vec::with_capacity(m.len());
                    v.extend(m.drain());
                    *self = Self::Few(v);
                } else if m.len() * 4 < m.capacity() {
                    m.shrink_to_fit();
                }
                Some(child)
            }
        }
    }

    /// Calls `f` with every child and its level.
    pub(crate) fn for_each<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a N)) {
        match self {
            Self::Few(v) => v.iter().for_each(|(l, n)| f(l, n)),
            Self::Many(m) => m.iter().for_each(|(l, n)| f(l, n)),
        }
    }

    /// Moves every child out into `out`: for dropping deep trees without
    /// recursion.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<N>) {
        match std::mem::take(self) {
            Self::Few(v) => out.extend(v.into_iter().map(|(_, n)| n)),
            Self::Many(m) => out.extend(m.into_values()),
        }
    }
}

/// The hasher of [`Children::Many`]: a seeded folded-multiply hash.
///
/// Levels are short and hashed on the publish path, where SipHash (std's
/// default) costs more than the rest of a lookup. Levels also come from
/// clients, so the hash is seeded per map from std's random keys: a client
/// cannot choose levels that collide without knowing the seed.
#[derive(Clone)]
pub(crate) struct LevelState {
    seed: u64,
}

impl LevelState {
    fn new() -> Self {
        Self {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for LevelState {
    type Hasher = LevelHasher;

    fn build_hasher(&self) -> LevelHasher {
        LevelHasher { state: self.seed }
    }
}

/// See [`LevelState`].
pub(crate) struct LevelHasher {
    state: u64,
}

/// Odd constants from the fractional parts of pi, as in foldhash and wyhash.
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

/// The 128-bit product folded to 64 bits: every input bit reaches the low
/// bits that pick the bucket.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for LevelHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.state = fold_mul(self.state ^ u64::from_le_bytes(word), K0);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.state = fold_mul(self.state ^ u64::from_le_bytes(word), K1);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // The length prefix of a slice: keeps "a\0" and "a" apart even though
        // the tail word is zero-padded.
        self.state = fold_mul(self.state ^ n as u64, K1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, K0)
    }
}

/// Splits the first level off `levels`: `a/b/c` gives `a` and `Some("b/c")`,
/// `c` gives `c` and `None`, `a/` gives `a` and `Some("")`.
#[inline]
pub(crate) fn split_level(levels: &[u8]) -> (&[u8], Option<&[u8]>) {
    match levels.iter().position(|&b| b == b'/') {
        Some(i) => (&levels[..i], Some(&levels[i + 1..])),
        None => (levels, None),
    }
}

/// The levels of a topic name or filter, from a `Some(whole)` start; `None`
/// yields nothing (used for the filter `#`, which has no level before its
/// wildcard).
pub(crate) struct SplitLevels<'a>(pub(crate) Option<&'a [u8]>);

impl<'a> Iterator for SplitLevels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (level, rest) = split_level(self.0?);
        self.0 = rest;
        Some(level)
    }
}
