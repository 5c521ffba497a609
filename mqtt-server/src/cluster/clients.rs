//! One client identifier connected at most once in the cluster.
//!
//! A connection accepted here claims its client identifier in the KV
//! bucket `P-clients` (key: the SHA-256 of the identifier, in hex; value:
//! this node's name) by compare-and-set: `create` when the key is absent,
//! else `update` with the revision just read; a conflicting write makes it
//! read and try again. Every successful claim so has its own revision, in
//! one order for the whole cluster, and never overwrites a claim it did
//! not see ("last writer wins" is what this avoids). Each node watches the
//! bucket: a claim by another node with a later revision than this node's
//! own claim of that identifier closes the local connection with 0x8E
//! (Session taken over) [MQTT-3.1.4-3]. The connection with the latest
//! claim is the one that stays; a connection whose claim is still on its
//! way when a later one is seen closes as soon as its own claim is known
//! to be earlier. An ended connection deletes its claim, if it is still
//! the latest (an expected-revision delete).
//!
//! While NATS is unreachable, connections are accepted and claimed when
//! it returns (the claims wait in the bounded queue, `max_pending`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use mqtt_codec::MqttString;
use sha2::{Digest, Sha256};

use super::nats::{Cluster, MAX_BACKOFF};
use crate::broker::Broker;
use crate::handle::{Control, lock};

/// Most compare-and-set attempts for one claim before it is given up
/// (counted, logged): as many other nodes writing the same key at once.
const MAX_CAS_TRIES: usize = 16;

/// This node's claim of a client identifier, for its connection `conn`.
#[derive(Debug)]
pub(crate) struct Claim {
    client_id: MqttString,
    conn: u64,
    /// The revision of the claim, once made.
    revision: Option<u64>,
    /// The latest revision another node wrote while ours was on its way.
    seen_elsewhere: u64,
}

/// What the claims task does, in order.
#[derive(Debug)]
pub(crate) enum Job {
    Claim { key: String, conn: u64 },
    Release { key: String, revision: u64 },
}

/// The bucket key of a client identifier.
fn key(client_id: &MqttString) -> String {
    Sha256::digest(client_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cluster {
    /// A connection accepted here owns `client_id`: claim it in the cluster.
    pub(crate) fn claim(&self, client_id: &MqttString, conn: u64) {
        let key = key(client_id);
        lock(&self.claims).insert(
            key.clone(),
            Claim {
                client_id: client_id.clone(),
                conn,
                revision: None,
                seen_elsewhere: 0,
            },
        );
        if self.claim_tx.try_send(Job::Claim { key, conn }).is_err() {
            self.stats.claim_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%client_id, "cluster: the claims queue is full; this connection is not claimed in the cluster");
        }
    }

    /// Connection `conn` of `client_id` ended: its claim goes, if it is
    /// still the latest.
    pub(crate) fn release(&self, client_id: &MqttString, conn: u64) {
        let key = key(client_id);
        let mut claims = lock(&self.claims);
        if claims.get(&key).is_none_or(|c| c.conn != conn) {
            return;
        }
        let revision = claims.remove(&key).and_then(|c| c.revision);
        drop(claims);
        if let Some(revision) = revision {
            let _ = self.claim_tx.try_send(Job::Release { key, revision });
        }
    }

    /// Whether this node's claim of `client_id` is made (for tests).
    pub(crate) fn owns(&self, client_id: &str) -> bool {
        let Ok(id) = MqttString::try_from(client_id.to_owned()) else {
            return false;
        };
        lock(&self.claims)
            .get(&key(&id))
            .is_some_and(|c| c.revision.is_some())
    }

    /// Makes the claims, in order, and watches the others'.
    pub(super) async fn claims_loop(
        self: Arc<Self>,
        js: jetstream::Context,
        broker: Weak<Broker>,
        mut jobs: tokio::sync::mpsc::Receiver<Job>,
    ) {
        let kv = loop {
            match self.bucket_store(&js, "clients", Duration::ZERO).await {
                Ok(kv) => break kv,
                Err(e) => tracing::debug!(error = %e, "cluster: no clients bucket yet; retrying"),
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        };
        let watch = tokio::spawn(self.clone().watch_claims(kv.clone(), broker.clone()));
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Claim { key, conn } => {
                    let claimed = self.cas(&kv, &key).await;
                    let Some(b) = broker.upgrade() else { break };
                    self.claimed(&b, key, conn, claimed);
                }
                Job::Release { key, revision } => {
                    // Fails when a later claim replaced ours: then it stays.
                    let _ = kv.delete_expect_revision(&key, Some(revision)).await;
                }
            }
        }
        watch.abort();
    }

    /// Claims `key` for this node by compare-and-set; its revision.
    async fn cas(&self, kv: &kv::Store, key: &str) -> Result<u64, String> {
        let value = Bytes::copy_from_slice(self.node.as_bytes());
        let mut last = String::new();
        for _ in 0..MAX_CAS_TRIES {
            let entry = match kv.entry(key).await {
                Ok(e) => e,
                Err(e) => {
                    // NATS away: wait for it, the claim stays queued.
                    last = e.to_string();
                    tokio::time::sleep(MAX_BACKOFF / 4).await;
                    continue;
                }
            };
            let written = match entry {
                Some(e) if e.operation == kv::Operation::Put => kv
                    .update(key, value.clone(), e.revision)
                    .await
                    .map_err(|e| e.to_string()),
                _ => kv
                    .create(key, value.clone())
                    .await
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(revision) => return Ok(revision),
                // Another claim came between the read and the write.
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A claim was made (or not).
    fn claimed(&self, broker: &Broker, key: String, conn: u64, result: Result<u64, String>) {
        let revision = match result {
            Ok(r) => r,
            Err(e) => {
                self.stats.claim_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster: a client identifier could not be claimed");
                return;
            }
        };
        let mut claims = lock(&self.claims);
        match claims.get_mut(&key) {
            Some(c) if c.conn == conn => {
                c.revision = Some(revision);
                if c.seen_elsewhere > revision {
                    let (id, conn) = (c.client_id.clone(), c.conn);
                    drop(claims);
                    self.kick(broker, &id, conn);
                }
            }
            // The connection ended meanwhile (or a newer one here claims).
            _ => {
                drop(claims);
                let _ = self.claim_tx.try_send(Job::Release { key, revision });
            }
        }
    }

    /// Watches the claims of the other nodes.
    async fn watch_claims(self: Arc<Self>, kv: kv::Store, broker: Weak<Broker>) {
        loop {
            if let Ok(mut watch) = kv.watch(">").await {
                while let Some(Ok(entry)) = watch.next().await {
                    if entry.operation != kv::Operation::Put
                        || *entry.value == *self.node.as_bytes()
                    {
                        continue;
                    }
                    let Some(b) = broker.upgrade() else { return };
                    self.claimed_elsewhere(&b, &entry.key, entry.revision);
                }
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        }
    }

    /// Another node claimed `key` at `revision`.
    fn claimed_elsewhere(&self, broker: &Broker, key: &str, revision: u64) {
        let mut claims = lock(&self.claims);
        let Some(c) = claims.get_mut(key) else {
            return;
        };
        match c.revision {
            Some(own) if own < revision => {
                let (id, conn) = (c.client_id.clone(), c.conn);
                drop(claims);
                self.kick(broker, &id, conn);
            }
            Some(_) => {}
            None => c.seen_elsewhere = c.seen_elsewhere.max(revision),
        }
    }

    /// Closes connection `conn` of `client_id` with 0x8E, if it still owns
    /// the session here.
    fn kick(&self, broker: &Broker, client_id: &MqttString, conn: u64) {
        let sessions = lock(&broker.sessions);
        if let Some((owner, control)) = sessions.owning(client_id)
            && owner == conn
            && control.send(Control::TakenOverElsewhere).is_ok()
        {
            self.stats.taken_over.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%client_id, "cluster: client identifier claimed on another node; closing with 0x8E");
        }
    }
}

/// The claims of this node's connections, by bucket key: one per
/// connected client, so bounded by `max_connections`.
pub(crate) type Claims = std::sync::Mutex<HashMap<String, Claim>>;
