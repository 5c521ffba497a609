//! Persistence for an MQTT broker: sessions with their subscriptions and
//! expiry, offline queues, in-flight messages, incoming QoS 2 state,
//! retained messages and wills — behind one [`Store`] trait, in memory
//! ([`MemoryStore`]) or durable on disk ([`FjallStore`]).
//!
//! The durability rule a broker builds on: a [`Batch`] whose
//! [`commit`](Store::commit) (or [`GroupCommit::commit`]) has returned
//! `Ok` survives `kill -9` and power loss. A broker acknowledges a QoS 1/2
//! PUBLISH for a persistent session, or a retained message, only then; a
//! [`GroupCommit`] makes that cost one fsync per group of messages rather
//! than one per message.
//!
//! Time: the store writes deadlines as UNIX time, converted from and to
//! the broker's [`Instant`](std::time::Instant)s with a [`Clock`] the
//! caller reads; time spent down counts against every expiry.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//!
//! use bytes::Bytes;
//! use mqtt_codec::{MqttString, QoS};
//! use mqtt_session::{Delivery, Message, SessionState};
//! use mqtt_store::{Batch, Clock, MemoryStore, Store};
//!
//! let store = MemoryStore::new();
//! let now = Clock::new(Instant::now(), SystemTime::now());
//!
//! // A persistent session goes offline with one message waiting.
//! let id = MqttString::from_static("sensor-1");
//! let session = SessionState::new(id.clone(), 3600);
//! let message = Arc::new(Message {
//!     topic: MqttString::from_static("alerts"),
//!     payload: Bytes::from_static(b"fire"),
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     properties: Default::default(),
//!     expires_at: None,
//! });
//! let mut batch = Batch::new(now);
//! batch
//!     .save_session(&session, Some(now.instant() + std::time::Duration::from_secs(3600)))
//!     .append_queued(&id, 0, &Delivery::new(message, QoS::AtLeastOnce));
//! store.commit(&batch)?;
//!
//! // After a restart: everything comes back.
//! let recovered = store.recover(now)?;
//! assert_eq!(recovered.sessions[0].state.queued.len(), 1);
//! assert_eq!(recovered.sessions[0].next_seq, 1);
//! # Ok::<(), mqtt_store::StoreError>(())
//! ```

mod batch;
mod clock;
mod engine;
mod error;
mod fjall_store;
mod group;
mod keys;
mod memory;
pub mod record;
mod store;

pub use batch::Batch;
pub use clock::Clock;
pub use error::StoreError;
pub use fjall_store::{FjallOptions, FjallStore};
pub use group::{GroupCommit, GroupCommitConfig};
pub use memory::MemoryStore;
pub use record::{FORMAT_VERSION, RecordError};
pub use store::{
    LoadedSession, PendingWill, Recovered, RecoveryReport, Store, StoreLimits, StoreStats,
};
