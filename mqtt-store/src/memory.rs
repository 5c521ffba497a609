//! A store in memory: for tests, and for brokers without persistence.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use crate::engine::{Engine, Kv, RawOp, forward_store};
use crate::error::StoreError;
use crate::keys::Part;
use crate::store::StoreLimits;

/// A [`Store`](crate::Store) in memory: nothing survives the process.
///
/// It keeps the same encoded records in the same key layout as
/// [`FjallStore`](crate::FjallStore) and runs the same engine, so it
/// behaves exactly like it, durability aside: a test against it tests the
/// record format and the store logic too. `sync` does nothing but count.
///
/// It starts empty and ready: [`recover`](crate::Store::recover) is not
/// needed first (it returns what has been written).
pub struct MemoryStore {
    engine: Engine<MemoryKv>,
}

impl MemoryStore {
    /// An empty store with the default [`StoreLimits`].
    pub fn new() -> Self {
        Self::with_limits(StoreLimits::default())
    }

    /// An empty store with these limits.
    pub fn with_limits(limits: StoreLimits) -> Self {
        Self {
            engine: Engine::new(MemoryKv::default(), limits, true),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

forward_store!(MemoryStore);

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct MemoryKv {
    // One lock for all partitions, so that a batch is atomic across them.
    parts: RwLock<[Map; Part::ALL.len()]>,
}

impl Kv for MemoryKv {
    fn apply(&self, ops: Vec<RawOp>) -> Result<(), StoreError> {
        let mut parts = self.parts.write().unwrap_or_else(PoisonError::into_inner);
        for op in ops {
            let map = &mut parts[op.part.index()];
            match op.value {
                Some(v) => {
                    map.insert(op.key, v);
                }
                None => {
                    map.remove(&op.key);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn scan(
        &self,
        part: Part,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let parts = self.parts.read().unwrap_or_else(PoisonError::into_inner);
        let range =
            parts[part.index()].range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded));
        for (k, v) in range {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v);
        }
        Ok(())
    }
}
