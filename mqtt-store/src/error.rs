//! What can go wrong, with the path it went wrong at and the reason code a
//! broker answers with.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use mqtt_codec::{MqttString, ReasonCode};

/// Why a store operation failed.
///
/// Cheap to clone: a group commit hands the same error to every request of
/// the failed group.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file system holding the store is full (or over quota). Nothing of
    /// the failed write is durable. A broker refuses the message with 0x97
    /// (Quota exceeded).
    #[error("storage full at {path}: the write was not made durable")]
    Full {
        /// The store's directory.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("I/O error at {path}: {source}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// The error the operating system gave.
        #[source]
        source: Arc<io::Error>,
    },
    /// An earlier write or sync failed, so the engine refuses every further
    /// write: what was committed before is safe on disk, what came after is
    /// not. Restart (and recover) to go on.
    #[error(
        "an earlier write or sync at {path} failed (I/O error); the store refuses further writes until it is reopened"
    )]
    Poisoned {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store was written by a version of this crate whose format this
    /// one does not read. It is refused rather than misread.
    #[error(
        "the store at {path} has format version {found}, this build reads version {supported} only: refusing to open it (use the matching build, migrate it, or point to another directory)"
    )]
    IncompatibleVersion {
        /// The store's directory.
        path: PathBuf,
        /// The version in the store's meta record.
        found: u32,
        /// The version this build writes and reads.
        supported: u32,
    },
    /// The format record is missing from a store that holds data, or is
    /// unreadable: the format cannot be known, so the store is refused.
    #[error("the store at {path} has no readable format record ({reason}): refusing to open it")]
    UnknownFormat {
        /// The store's directory.
        path: PathBuf,
        /// What is wrong with the record.
        reason: String,
    },
    /// An append would take a session's queue past the store's backstop
    /// limit ([`crate::StoreLimits`]). The batch was not applied.
    #[error("the offline queue of {client_id:?} is full: {messages} messages, {bytes} bytes")]
    QueueFull {
        /// The session.
        client_id: MqttString,
        /// Messages it would hold.
        messages: usize,
        /// Bytes it would hold.
        bytes: usize,
    },
    /// The storage engine reported an error that is not an I/O error.
    #[error("storage engine error at {path}: {message}")]
    Engine {
        /// The store's directory.
        path: PathBuf,
        /// The engine's description.
        message: String,
    },
    /// A write came before [`crate::Store::recover`]: the store does not
    /// yet know what it holds, so it cannot keep its indexes right.
    #[error("the store must be recovered (Store::recover) before it is written")]
    NotRecovered,
    /// The group commit writer has stopped.
    #[error("the group commit writer has stopped")]
    Closed,
}

impl StoreError {
    /// The reason code a broker answers a refused PUBLISH (or CONNECT) with:
    /// 0x97 Quota exceeded when space or a queue ran out, 0x80 Unspecified
    /// error otherwise.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Full { .. } | Self::QueueFull { .. } => ReasonCode::QuotaExceeded,
            _ => ReasonCode::UnspecifiedError,
        }
    }

    /// Whether the error says the storage is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }

    /// Classifies an I/O error at `path`: out of space is [`Self::Full`].
    pub fn from_io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        let path = path.into();
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::Full { path },
            _ => Self::Io {
                path,
                source: Arc::new(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_full_and_maps_to_quota_exceeded() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
            let e = StoreError::from_io("/var/lib/mqtt", io::Error::from(kind));
            assert!(e.is_full());
            assert_eq!(e.reason_code(), ReasonCode::QuotaExceeded);
            assert!(e.to_string().contains("/var/lib/mqtt"), "{e}");
        }
        let e = StoreError::from_io("/x", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(e, StoreError::Io { .. }));
        assert_eq!(e.reason_code(), ReasonCode::UnspecifiedError);
    }
}
