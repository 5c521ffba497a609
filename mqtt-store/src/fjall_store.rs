//! A durable store on fjall, an LSM-tree key/value engine in pure Rust.

use std::io::Write;
use std::path::{Path, PathBuf};

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use crate::engine::{Engine, Kv, RawOp, forward_store};
use crate::error::StoreError;
use crate::keys::{META_KEY, Part};
use crate::record::{self, FORMAT_VERSION};
use crate::store::StoreLimits;

/// Settings of a [`FjallStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FjallOptions {
    /// Backstop limits on each session's queue.
    pub limits: StoreLimits,
    /// Block cache size in bytes. Default: 32 MiB (fjall's).
    pub cache_bytes: u64,
    /// Journal size beyond which fjall flushes memtables to segments and
    /// drops old journals; it bounds the journal replay at startup.
    /// Default: 256 MiB.
    pub max_journal_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> Self {
        Self {
            limits: StoreLimits::default(),
            cache_bytes: 32 * 1024 * 1024,
            max_journal_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A durable [`Store`](crate::Store) in a directory, on fjall.
///
/// One fjall keyspace with a partition per kind of record: `sessions`,
/// `queues` (keyed by client identifier and big-endian sequence number),
/// `inflight`, `incoming`, `retained`, `wills`, and `meta`, which holds the
/// format version. Writes go to fjall's journal (one atomic write batch per
/// [`Batch`](crate::Batch)); [`sync`](crate::Store::sync) is
/// `Keyspace::persist(PersistMode::SyncAll)`: one fsync of the journal,
/// however many batches came before. The journal is not flushed to the OS
/// between syncs, so nothing is durable before a sync completes; everything
/// is after it.
///
/// On open, fjall replays its journal (dropping a torn tail) and the store
/// checks the meta record: a store of another format version is refused
/// with [`StoreError::IncompatibleVersion`]. Then
/// [`recover`](crate::Store::recover) must run before the first write.
pub struct FjallStore {
    engine: Engine<FjallKv>,
}

impl FjallStore {
    /// Opens (or creates) the store in directory `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, FjallOptions::default())
    }

    /// Opens (or creates) the store in directory `path`.
    pub fn open_with(path: impl AsRef<Path>, options: FjallOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let keyspace = Config::new(&path)
            .manual_journal_persist(true)
            .cache_size(options.cache_bytes)
            .max_journaling_size(options.max_journal_bytes)
            .open()
            .map_err(|e| engine_error(&path, e))?;
        let mut parts = Vec::with_capacity(Part::ALL.len());
        for part in Part::ALL {
            let handle = keyspace
                .open_partition(part.name(), PartitionCreateOptions::default())
                .map_err(|e| engine_error(&path, e))?;
            parts.push(handle);
        }
        let kv = FjallKv {
            path,
            keyspace,
            parts,
        };
        kv.check_format()?;
        Ok(Self {
            engine: Engine::new(kv, options.limits, false),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.engine.kv.path
    }

    /// Bytes the store takes on disk (journals and segments).
    pub fn disk_space(&self) -> u64 {
        self.engine.kv.keyspace.disk_space()
    }
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.engine.kv.path)
            .finish_non_exhaustive()
    }
}

forward_store!(FjallStore);

struct FjallKv {
    path: PathBuf,
    keyspace: Keyspace,
    /// One handle per [`Part`], in `Part::ALL` order.
    parts: Vec<PartitionHandle>,
}

impl FjallKv {
    fn part(&self, part: Part) -> &PartitionHandle {
        &self.parts[part.index()]
    }

    fn error(&self, e: fjall::Error) -> StoreError {
        engine_error(&self.path, e)
    }

    /// Checks the meta record, or writes it into a new store.
    fn check_format(&self) -> Result<(), StoreError> {
        let meta = self.part(Part::Meta);
        match meta.get(META_KEY).map_err(|e| self.error(e))? {
            Some(v) => match record::decode_meta(&v) {
                Ok(FORMAT_VERSION) => Ok(()),
                Ok(found) => Err(StoreError::IncompatibleVersion {
                    path: self.path.clone(),
                    found,
                    supported: FORMAT_VERSION,
                }),
                Err(e) => Err(StoreError::UnknownFormat {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }),
            },
            None => {
                for part in Part::ALL {
                    let empty = self.part(part).is_empty().map_err(|e| self.error(e))?;
                    if !empty {
                        return Err(StoreError::UnknownFormat {
                            path: self.path.clone(),
                            reason: format!(
                                "no format record, but partition {} holds data",
                                part.name()
                            ),
                        });
                    }
                }
                meta.insert(META_KEY, record::encode_meta())
                    .map_err(|e| self.error(e))?;
                self.keyspace
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| self.error(e))
            }
        }
    }
}

impl Kv for FjallKv {
    fn apply(&self, ops: Vec<RawOp>) -> Result<(), StoreError> {
        let mut batch = fjall::Batch::with_capacity(self.keyspace.clone(), ops.len());
        for op in ops {
            let p = self.part(op.part);
            match op.value {
                Some(v) => batch.insert(p, op.key, v),
                None => batch.remove(p, op.key),
            }
        }
        batch.commit().map_err(|e| self.error(e))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.error(e))
    }

    fn scan(
        &self,
        part: Part,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        for kv in self.part(part).prefix(prefix) {
            let (k, v) = kv.map_err(|e| self.error(e))?;
            f(&k, &v);
        }
        Ok(())
    }
}

/// Maps a fjall error to a store error at `path`.
///
/// fjall reports a failed journal write or fsync as `Poisoned` and keeps
/// the cause to its log; since a full disk is the usual cause and a broker
/// answers it differently (0x97), we probe for space to tell.
fn engine_error(path: &Path, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => {
            StoreError::from_io(path, io)
        }
        fjall::Error::Poisoned => match probe_space(path) {
            Err(io) if is_full(&io) => StoreError::Full {
                path: path.to_path_buf(),
            },
            _ => StoreError::Poisoned {
                path: path.to_path_buf(),
            },
        },
        other => StoreError::Engine {
            path: path.to_path_buf(),
            message: format!("{other:?}"),
        },
    }
}

fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Writes and syncs 64 KiB in the store's directory, then removes it:
/// fails with `StorageFull` when the disk is full.
fn probe_space(path: &Path) -> std::io::Result<()> {
    let probe = path.join(".space-probe");
    let result = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&[0; 64 * 1024])?;
        f.sync_all()
    });
    // Best effort: a leftover probe file is harmless.
    let _ = std::fs::remove_file(&probe);
    result
}
