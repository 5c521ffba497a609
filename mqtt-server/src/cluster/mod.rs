//! A cluster of brokers on NATS JetStream (the `[cluster]` table, the
//! `cluster` cargo feature).
//!
//! # Where the backplane sits, and why
//!
//! The rules of routing stay in `mqtt-router`, sans-IO: it defines the
//! seam, [`mqtt_router::cluster::Backplane`] ("this filter gained or lost
//! its last local subscriber", "forward this message"), and keeps the
//! other nodes' announced filters in a trie
//! ([`mqtt_router::cluster::RemoteInterest`]) that says which nodes a topic
//! goes to, each once. The router calls the backplane itself when its
//! filters change, so no subscription path of the server can forget to.
//! The NATS client (async-nats, tokio) is here, behind the `cluster`
//! feature, because only this crate may do I/O: the protocol and routing
//! crates build and test without a network, and a broker built without the
//! feature does not compile async-nats at all.
//!
//! Without a `[cluster]` table (or `--cluster`), nothing here runs: the
//! broker is a single node and never connects to NATS.
//!
//! # What crosses, and when a publisher is acknowledged
//!
//! A message published on this node goes, once per node, to each other
//! node whose announced filters match it: QoS 0 over core NATS (nothing
//! stored), QoS 1 and 2 into a JetStream stream, and the publisher's
//! PUBACK/PUBREC waits until JetStream confirmed the store. Without
//! NATS (or with the queue for it full) a QoS 1/2 publication is refused
//! (MQTT 5.0: 0x80, or 0x97 for a full queue; MQTT 3.1.1: the connection
//! is closed, so the client sends it again): nothing is acknowledged that
//! was not stored. Retained messages are kept in a KV bucket that every
//! node loads and watches. A client identifier is connected at most once
//! in the cluster (a compare-and-set claim; `clients.rs`). See `nats.rs`
//! for the subjects and buckets.

#[cfg(feature = "cluster")]
mod clients;
mod config;
#[cfg(feature = "cluster")]
mod nats;
#[cfg(feature = "cluster")]
mod watch;
#[cfg(feature = "cluster")]
mod wire;

pub use config::ClusterConfig;
#[cfg(feature = "cluster")]
pub(crate) use nats::Cluster;

/// The broker's side of the seam: compiled with or without the feature,
/// as the backplane is a trait object (none without a `[cluster]`).
mod hooks {
    use std::sync::Arc;

    use mqtt_router::cluster::{Forward, ForwardDone, ForwardError};
    use mqtt_session::Message;
    use mqtt_store::StoreError;
    use mqtt_topic::TopicName;

    use crate::broker::{Broker, Publishing};

    /// A refusal as the connection's acknowledgement path reads it: the
    /// stream of the cluster is the store of a message for other nodes.
    fn refusal(e: ForwardError) -> StoreError {
        match e {
            ForwardError::Full(n) => StoreError::QueueFull {
                client_id: mqtt_codec::MqttString::from_static("$cluster"),
                messages: n,
                bytes: 0,
            },
            ForwardError::Unavailable(message) => StoreError::Engine {
                path: "NATS JetStream".into(),
                message,
            },
        }
    }

    impl Broker {
        /// Sends a message published here to the other nodes that want
        /// it; true when `how.forward_done` will be called.
        pub(crate) fn forward(
            &self,
            topic: &TopicName,
            message: &Arc<Message>,
            how: &mut Publishing<'_>,
        ) -> bool {
            let Some(backplane) = self.backplane.as_ref().filter(|_| !how.from_cluster) else {
                return false;
            };
            let done = how.forward_done.take().map(|d| -> ForwardDone {
                Box::new(move |r: Result<(), ForwardError>| d(r.map_err(refusal)))
            });
            backplane.forward(topic, message, done) == Forward::Pending
        }
    }
}

#[cfg(feature = "cluster")]
impl crate::broker::Broker {
    /// A retained message of another node (or its removal: an empty
    /// payload), into this node's retained store.
    pub(crate) fn retain_from_cluster(
        &self,
        topic: &mqtt_topic::TopicName,
        message: std::sync::Arc<mqtt_session::Message>,
    ) {
        let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
        retained.retain(topic, &message, self.config.max_retained_messages);
    }
}

impl crate::broker::Broker {
    /// Connection `conn` here owns `client_id` now: with a cluster, it
    /// claims it there, and a connection elsewhere closes with 0x8E (see
    /// `clients.rs`).
    pub(crate) fn cluster_claim(&self, client_id: &mqtt_codec::MqttString, conn: u64) {
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            c.claim(client_id, conn);
        }
        #[cfg(not(feature = "cluster"))]
        let _ = (client_id, conn);
    }

    /// Connection `conn` of `client_id` ended: its claim in the cluster
    /// goes.
    pub(crate) fn cluster_release(&self, client_id: &mqtt_codec::MqttString, conn: u64) {
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            c.release(client_id, conn);
        }
        #[cfg(not(feature = "cluster"))]
        let _ = (client_id, conn);
    }
}
