//! What a node watches in the cluster's KV buckets: the other nodes'
//! announced filters, the retained messages, and the heartbeats.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use mqtt_codec::QoS;
use mqtt_session::Message;
use mqtt_topic::TopicName;

use super::nats::{Cluster, MAX_BACKOFF, parse_interest};
use super::wire;
use crate::broker::Broker;
use crate::handle::lock;

impl Cluster {
    /// Watches the other nodes' announced filters.
    pub(super) async fn interest_loop(self: Arc<Self>, js: jetstream::Context) {
        loop {
            if let Err(e) = self.interest_once(&js).await {
                tracing::debug!(error = %e, "cluster: interest watch ended; restarting");
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        }
    }

    async fn interest_once(&self, js: &jetstream::Context) -> Result<(), async_nats::Error> {
        let kv = js.get_key_value(self.bucket("interest")).await?;
        let mut watch = kv.watch_with_history(">").await?;
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            tracing::debug!(node = %self.node, from = %entry.key, op = ?entry.operation, "cluster: interest");
            if *entry.key == *self.node {
                continue;
            }
            let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
            match entry.operation {
                kv::Operation::Put => {
                    let (filters, everything) = parse_interest(&entry.value);
                    remote.replace(&entry.key, filters, everything);
                }
                kv::Operation::Delete | kv::Operation::Purge => remote.remove(&entry.key),
            }
        }
        Ok(())
    }

    /// Loads and watches the retained messages of the cluster.
    pub(super) async fn retained_loop(
        self: Arc<Self>,
        js: jetstream::Context,
        broker: Weak<Broker>,
    ) {
        loop {
            if let Err(e) = self.retained_once(&js, &broker).await {
                tracing::debug!(error = %e, "cluster: retained watch ended; restarting");
            }
            if broker.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        }
    }

    async fn retained_once(
        &self,
        js: &jetstream::Context,
        broker: &Weak<Broker>,
    ) -> Result<(), async_nats::Error> {
        let kv = js.get_key_value(self.bucket("retained")).await?;
        let mut watch = kv.watch_with_history(">").await?;
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            let Some(b) = broker.upgrade() else {
                return Ok(());
            };
            let now = tokio::time::Instant::now().into_std();
            let topic = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&entry.key)
                .ok()
                .and_then(|t| String::from_utf8(t).ok())
                .and_then(|t| TopicName::new(&t).ok());
            let Some(topic) = topic else {
                self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match entry.operation {
                kv::Operation::Put => match wire::decode(&entry.value, now) {
                    Ok((origin, m)) if origin != *self.node => {
                        b.retain_from_cluster(&topic, Arc::new(m));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    b.retain_from_cluster(
                        &topic,
                        Arc::new(Message {
                            topic: mqtt_codec::MqttString::try_from(topic.as_str().to_owned())
                                .unwrap_or_default(),
                            payload: Bytes::new(),
                            qos: QoS::AtMostOnce,
                            retain: true,
                            properties: Default::default(),
                            expires_at: None,
                        }),
                    );
                }
            }
        }
        Ok(())
    }

    /// Refreshes this node's heartbeat and watches the others'.
    pub(super) async fn liveness_loop(self: Arc<Self>, js: jetstream::Context) {
        let ttl = Duration::from_secs(self.config.node_ttl);
        loop {
            match self.bucket_store(&js, "nodes", ttl).await {
                Ok(kv) => {
                    tokio::select! {
                        () = self.clone().watch_nodes(kv.clone()) => {}
                        () = self.clone().heartbeats(kv) => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cluster: no nodes bucket yet; retrying"),
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        }
    }

    /// Every third of `node_ttl`: this node's heartbeat, and the others
    /// unseen for `node_ttl` forgotten (nothing more is sent to them).
    async fn heartbeats(self: Arc<Self>, kv: kv::Store) {
        let ttl = Duration::from_secs(self.config.node_ttl);
        let mut tick = tokio::time::interval(ttl / 3);
        loop {
            tick.tick().await;
            if let Err(e) = kv.put(&*self.node, Bytes::from_static(b"alive")).await {
                tracing::debug!(error = %e, "cluster: heartbeat failed");
            }
            let now = Instant::now();
            let dead: Vec<String> = lock(&self.seen)
                .iter()
                .filter(|(_, at)| now.duration_since(**at) > ttl)
                .map(|(n, _)| n.clone())
                .collect();
            for node in dead {
                tracing::warn!(%node, "cluster: node unseen for node_ttl; taken for dead");
                lock(&self.seen).remove(&node);
                self.remote
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&node);
            }
        }
    }

    async fn watch_nodes(self: Arc<Self>, kv: kv::Store) {
        let Ok(mut watch) = kv.watch_with_history(">").await else {
            return;
        };
        while let Some(Ok(entry)) = watch.next().await {
            if *entry.key == *self.node {
                continue;
            }
            match entry.operation {
                kv::Operation::Put => {
                    // When the heartbeat was written, not when it was read:
                    // a dead node's last one, read at startup, is old.
                    let written = entry.created.unix_timestamp_nanos();
                    let now_ns = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i128);
                    let age = Duration::from_nanos(
                        (now_ns - written).clamp(0, 86_400_000_000_000) as u64
                    );
                    let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    lock(&self.seen).insert(entry.key.clone(), at);
                }
                kv::Operation::Delete | kv::Operation::Purge => {
                    lock(&self.seen).remove(&entry.key);
                    self.remote
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&entry.key);
                }
            }
        }
    }
}
