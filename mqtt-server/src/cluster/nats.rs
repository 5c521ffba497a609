//! The backplane on NATS: [`Cluster`] implements `mqtt_router`'s
//! [`Backplane`] with async-nats.
//!
//! What lives where, with `P` the `prefix` and `N` a node's name:
//!
//! | what | NATS | why |
//! | --- | --- | --- |
//! | QoS 0 messages for node N | core subject `P.node.N` | the fast path: nothing stored |
//! | QoS 1/2 messages for node N | stream `P_MSGS`, subject `P.js.N`, work-queue retention | stored before the publisher's PUBACK/PUBREC; removed once node N took it |
//! | node N's reading of them | one durable pull consumer `node-N` per node | never one per client: each replicated consumer is a Raft group |
//! | each node's subscription filters | KV bucket `P-interest`, key N | so a message goes only to nodes with a matching subscriber |
//! | retained messages | KV bucket `P-retained`, key: the topic in base64url | a node loads and watches them |
//! | which node holds each client id | KV bucket `P-clients`, compare-and-set (`clients.rs`) | one connection per client id in the cluster |
//! | liveness | KV bucket `P-nodes`, key N, refreshed every `node_ttl` / 3 | a node unseen for `node_ttl` is dead |
//!
//! Everything sent goes through one bounded queue (`max_pending`) and one
//! task, in order: a publisher's messages reach NATS in the order it sent
//! them. Receiving goes through `Broker::publish` like a local publication,
//! marked as coming from the cluster (not forwarded again, not retained
//! again: the retained bucket already holds it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use mqtt_codec::QoS;
use mqtt_router::cluster::{Backplane, Forward, ForwardDone, ForwardError, RemoteInterest};
use mqtt_session::Message;
use mqtt_topic::{TopicFilter, TopicName};
use tokio::sync::{mpsc, oneshot, watch};

use super::ClusterConfig;
use super::wire;
use crate::broker::{Broker, CommitDone, Publishing};
use crate::handle::lock;

/// Largest interest announcement, in bytes: a larger set of filters is
/// announced as "every topic" (more traffic to this node, never less).
/// Below NATS's default `max_payload` (1 MiB).
const MAX_INTEREST_BYTES: usize = 512 * 1024;
/// Wait before retrying a NATS task that failed, at most.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Counters of the cluster, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ClusterStats {
    pub(crate) messages_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) jetstream_errors: AtomicU64,
    pub(crate) bad_messages: AtomicU64,
    pub(crate) taken_over: AtomicU64,
    pub(crate) claim_errors: AtomicU64,
}

/// One thing to send, in order.
enum Outgoing {
    /// Core NATS, nothing waits.
    Core { subject: String, payload: Bytes },
    /// Into JetStream; `join` learns whether it was stored.
    Stored {
        subject: String,
        payload: Bytes,
        delete: bool,
        join: Option<Arc<Join>>,
    },
}

/// The acknowledgement of one publication waiting for several stores.
struct Join {
    left: AtomicUsize,
    done: Mutex<Option<ForwardDone>>,
}

impl Join {
    fn new(n: usize, done: ForwardDone) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(n),
            done: Mutex::new(Some(done)),
        })
    }

    /// One store ended; the first failure, or the last success, answers.
    fn one(&self, result: Result<(), ForwardError>) {
        let last = self.left.fetch_sub(1, Ordering::AcqRel) == 1;
        if (result.is_err() || last)
            && let Some(done) = lock(&self.done).take()
        {
            done(result);
        }
    }
}

/// This node's side of the cluster.
pub(crate) struct Cluster {
    pub(crate) node: Arc<str>,
    pub(super) config: ClusterConfig,
    pub(crate) stats: ClusterStats,
    pub(super) remote: RwLock<RemoteInterest>,
    /// This node's filters, as the router reports them.
    local: Mutex<BTreeSet<TopicFilter>>,
    local_changed: watch::Sender<u64>,
    tx: mpsc::Sender<Outgoing>,
    rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// Connected to NATS, with the stream and buckets in place.
    ready: AtomicBool,
    /// Incremented at each (re)connection to NATS.
    connections: watch::Sender<u64>,
    /// When each other node was last heard of (heartbeat).
    pub(super) seen: Mutex<BTreeMap<String, Instant>>,
    /// This node's claims of its clients' identifiers (see `clients.rs`).
    pub(super) claims: super::clients::Claims,
    pub(super) claim_tx: mpsc::Sender<super::clients::Job>,
    claim_rx: Mutex<Option<mpsc::Receiver<super::clients::Job>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn new(config: &ClusterConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(config.max_pending);
        let (claim_tx, claim_rx) = mpsc::channel(config.max_pending);
        Arc::new(Self {
            node: Arc::from(config.node_name()),
            config: config.clone(),
            stats: ClusterStats::default(),
            remote: RwLock::new(RemoteInterest::new()),
            local: Mutex::new(BTreeSet::new()),
            local_changed: watch::channel(0).0,
            tx,
            rx: Mutex::new(Some(rx)),
            ready: AtomicBool::new(false),
            connections: watch::channel(0).0,
            seen: Mutex::new(BTreeMap::new()),
            claims: Default::default(),
            claim_tx,
            claim_rx: Mutex::new(Some(claim_rx)),
        })
    }

    fn subject(&self, kind: &str, node: &str) -> String {
        format!("{}.{kind}.{node}", self.config.prefix)
    }

    pub(super) fn bucket(&self, what: &str) -> String {
        format!("{}-{what}", self.config.prefix)
    }

    /// The other nodes a message on `topic` goes to (for tests and the
    /// operator: whether interest has propagated).
    pub(crate) fn nodes_for(&self, topic: &str) -> Vec<String> {
        let Ok(topic) = TopicName::new(topic) else {
            return Vec::new();
        };
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote
            .nodes_for(&topic)
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    /// The other nodes alive: heard of within `node_ttl`.
    pub(crate) fn nodes_seen(&self) -> Vec<String> {
        let ttl = Duration::from_secs(self.config.node_ttl);
        let now = Instant::now();
        lock(&self.seen)
            .iter()
            .filter(|(_, at)| now.duration_since(**at) <= ttl)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether QoS 1/2 messages can be stored now.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn retained_key(topic: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic)
    }

    /// Queues `item`; `false` when the queue is full.
    fn queue(&self, item: Outgoing) -> bool {
        self.tx.try_send(item).is_ok()
    }

    /// Connects and runs until `shutdown`: every task of this node.
    pub(crate) async fn run(
        self: Arc<Self>,
        broker: Weak<Broker>,
        shutdown: watch::Receiver<bool>,
    ) {
        let (Some(rx), Some(claim_rx)) = (lock(&self.rx).take(), lock(&self.claim_rx).take())
        else {
            return;
        };
        let client = loop {
            match self.connect().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, urls = ?self.config.urls, "cannot connect to NATS; retrying");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        };
        tracing::info!(node = %self.node, "cluster: connected to NATS");
        let js = jetstream::new(client.clone());
        let tasks = vec![
            tokio::spawn(self.clone().send_loop(client.clone(), js.clone(), rx)),
            tokio::spawn(self.clone().setup_loop(client.clone(), js.clone())),
            tokio::spawn(self.clone().core_loop(client.clone(), broker.clone())),
            tokio::spawn(self.clone().stream_loop(js.clone(), broker.clone())),
            tokio::spawn(self.clone().interest_loop(js.clone())),
            tokio::spawn(self.clone().announce_loop(js.clone())),
            tokio::spawn(self.clone().retained_loop(js.clone(), broker.clone())),
            tokio::spawn(self.clone().liveness_loop(js.clone())),
            tokio::spawn(
                self.clone()
                    .claims_loop(js.clone(), broker.clone(), claim_rx),
            ),
        ];
        let mut shutdown = shutdown;
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        // Leave: the others stop sending here at once, rather than after
        // `node_ttl`.
        if let Ok(kv) = js.get_key_value(self.bucket("interest")).await {
            let _ = kv.delete(&*self.node).await;
        }
        if let Ok(kv) = js.get_key_value(self.bucket("nodes")).await {
            let _ = kv.delete(&*self.node).await;
        }
        for t in tasks {
            t.abort();
        }
        let _ = client.flush().await;
    }

    async fn connect(self: &Arc<Self>) -> Result<async_nats::Client, async_nats::Error> {
        let c = &self.config;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("mqtt-broker {}", self.node))
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Back within a second of NATS returning: QoS 1/2 is refused
            // meanwhile.
            .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)));
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            options = options.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &c.token {
            options = options.token(t.clone());
        }
        if let Some(f) = &c.credentials_file {
            options = options.credentials_file(f).await?;
        }
        if let Some(ca) = &c.cafile {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&c.certfile, &c.keyfile) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let me = Arc::downgrade(self);
        options = options.event_callback(move |event| {
            let me = me.clone();
            async move {
                let Some(me) = me.upgrade() else { return };
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("cluster: NATS connection (re)established");
                        me.connections.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("cluster: NATS connection lost; QoS 1/2 publications are refused until it returns");
                        me.ready.store(false, Ordering::Release);
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
        let urls: Vec<async_nats::ServerAddr> =
            c.urls.iter().map(|u| u.parse()).collect::<Result<_, _>>()?;
        Ok(options.connect(urls).await?)
    }

    /// Puts the stream and buckets in place after each (re)connection,
    /// then says QoS 1/2 may be stored.
    async fn setup_loop(self: Arc<Self>, client: async_nats::Client, js: jetstream::Context) {
        let mut connections = self.connections.subscribe();
        loop {
            if client.connection_state() == async_nats::connection::State::Connected {
                match self.setup(&js).await {
                    Ok(()) => self.ready.store(true, Ordering::Release),
                    Err(e) => {
                        self.stats.jetstream_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cluster: JetStream setup failed; retrying");
                        tokio::time::sleep(MAX_BACKOFF).await;
                        continue;
                    }
                }
            }
            if connections.changed().await.is_err() {
                return;
            }
        }
    }

    async fn setup(&self, js: &jetstream::Context) -> Result<(), async_nats::Error> {
        let c = &self.config;
        js.get_or_create_stream(stream::Config {
            name: format!("{}_MSGS", c.prefix),
            subjects: vec![format!("{}.js.>", c.prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            max_bytes: c.stream_max_bytes,
            discard: stream::DiscardPolicy::New,
            num_replicas: c.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        for (what, max_age) in [
            ("interest", Duration::ZERO),
            ("retained", Duration::ZERO),
            ("nodes", Duration::from_secs(c.node_ttl)),
        ] {
            self.bucket_store(js, what, max_age).await?;
        }
        Ok(())
    }

    /// The bucket `what`, created if missing.
    pub(super) async fn bucket_store(
        &self,
        js: &jetstream::Context,
        what: &str,
        max_age: Duration,
    ) -> Result<kv::Store, async_nats::Error> {
        let bucket = self.bucket(what);
        if let Ok(store) = js.get_key_value(&bucket).await {
            return Ok(store);
        }
        // The bucket's stream made here, as a KV bucket's is, rather than
        // by `create_key_value`: that reads the account's limits first, in
        // a form a 2.9 server (Debian 12's) does not answer in.
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await?;
        Ok(js.get_key_value(&bucket).await?)
    }

    /// Sends what is queued, in order. A JetStream store's confirmation is
    /// awaited apart, so that the next message leaves meanwhile.
    async fn send_loop(
        self: Arc<Self>,
        client: async_nats::Client,
        js: jetstream::Context,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let timeout = Duration::from_secs(self.config.ack_timeout);
        while let Some(item) = rx.recv().await {
            match item {
                Outgoing::Core { subject, payload } => {
                    if client.publish(subject, payload).await.is_ok() {
                        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Outgoing::Stored {
                    subject,
                    payload,
                    delete,
                    join,
                } => {
                    let sent = if delete {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert("KV-Operation", "DEL");
                        js.publish_with_headers(subject, h, payload).await
                    } else {
                        js.publish(subject, payload).await
                    };
                    let me = self.clone();
                    match sent {
                        Ok(ack) => {
                            tokio::spawn(async move {
                                let r = match tokio::time::timeout(timeout, ack).await {
                                    Ok(Ok(_)) => {
                                        me.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                                        Ok(())
                                    }
                                    Ok(Err(e)) => Err(e.to_string()),
                                    Err(_) => Err("no confirmation within ack_timeout".into()),
                                };
                                me.stored(r, join);
                            });
                        }
                        Err(e) => me.stored(Err(e.to_string()), join),
                    }
                }
            }
        }
    }

    fn stored(&self, result: Result<(), String>, join: Option<Arc<Join>>) {
        if let Err(e) = &result {
            self.stats.jetstream_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cluster: JetStream did not store a message");
        }
        if let Some(j) = join {
            j.one(result.map_err(ForwardError::Unavailable));
        }
    }

    /// Publishes a message from another node here. With persistence,
    /// `done` is called once what it needs stored (deliveries to
    /// persistent sessions) is durable, and the answer is then `true`;
    /// otherwise there was nothing to wait for.
    pub(super) fn deliver(&self, broker: &Broker, bytes: &[u8], done: Option<CommitDone>) -> bool {
        let now = tokio::time::Instant::now().into_std();
        let message = match wire::decode(bytes, now) {
            Ok((_, m)) => m,
            Err(e) => {
                self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster: a message from NATS is not one; dropped");
                return false;
            }
        };
        let Ok(topic) = TopicName::from_bytes(message.topic.as_bytes().clone()) else {
            self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let how = Publishing {
            from_cluster: true,
            done,
            ..Publishing::default()
        };
        broker
            .publish(&topic, Arc::new(message), how, now)
            .committing
    }

    /// QoS 0 messages for this node.
    async fn core_loop(self: Arc<Self>, client: async_nats::Client, broker: Weak<Broker>) {
        loop {
            match client.subscribe(self.subject("node", &self.node)).await {
                Ok(mut sub) => {
                    while let Some(m) = sub.next().await {
                        let Some(b) = broker.upgrade() else { return };
                        self.deliver(&b, &m.payload, None);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cluster: cannot subscribe"),
            }
            tokio::time::sleep(MAX_BACKOFF).await;
        }
    }

    /// QoS 1/2 messages for this node, through its durable consumer;
    /// each acknowledged to JetStream once in its subscribers' queues and,
    /// with persistence, once stored for its persistent sessions — never
    /// before: until then JetStream keeps it, and sends it again if this
    /// node dies first.
    async fn stream_loop(self: Arc<Self>, js: jetstream::Context, broker: Weak<Broker>) {
        // Not before the stream exists: a failure then is no error.
        while !self.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            if let Err(e) = self.stream_once(&js, &broker).await {
                self.stats.jetstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "cluster: node consumer ended; restarting");
            }
            if broker.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(MAX_BACKOFF / 4).await;
        }
    }

    async fn stream_once(
        self: &Arc<Self>,
        js: &jetstream::Context,
        broker: &Weak<Broker>,
    ) -> Result<(), async_nats::Error> {
        let stream = js
            .get_stream(format!("{}_MSGS", self.config.prefix))
            .await?;
        let name = format!("node-{}", self.node);
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.subject("js", &self.node),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(m) = messages.next().await {
            let m = m?;
            let Some(b) = broker.upgrade() else {
                return Ok(());
            };
            let (stored_tx, stored) = oneshot::channel();
            let done: CommitDone = Box::new(move |r| {
                let _ = stored_tx.send(r);
            });
            let committing = self.deliver(&b, &m.payload, Some(done));
            drop(b);
            if !committing {
                m.ack().await?;
                continue;
            }
            // Acknowledged apart, so that the next messages are delivered
            // meanwhile (the consumer's `max_ack_pending` bounds how many
            // wait); the order of acknowledgements does not matter.
            let me = Arc::clone(self);
            tokio::spawn(async move {
                match stored.await {
                    Ok(Ok(())) => {
                        if m.ack().await.is_err() {
                            me.stats.jetstream_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Not stored: not acknowledged, so JetStream sends it
                    // again after its acknowledgement wait.
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cluster: a message from another node could not be stored; left to JetStream to send again");
                    }
                    Err(_) => {}
                }
            });
        }
        Ok(())
    }

    /// Announces this node's filters when they change, and again after
    /// each reconnection.
    async fn announce_loop(self: Arc<Self>, js: jetstream::Context) {
        let mut changed = self.local_changed.subscribe();
        let mut connections = self.connections.subscribe();
        loop {
            let value = {
                let local = lock(&self.local);
                announcement(local.iter())
            };
            changed.borrow_and_update();
            connections.borrow_and_update();
            let put = async {
                let kv = self.bucket_store(&js, "interest", Duration::ZERO).await?;
                kv.put(&*self.node, value.clone()).await?;
                Ok::<_, async_nats::Error>(())
            };
            if let Err(e) = put.await {
                self.stats.jetstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "cluster: cannot announce interest; retrying");
                tokio::time::sleep(MAX_BACKOFF / 4).await;
                continue;
            }
            tracing::debug!(node = %self.node, bytes = value.len(), "cluster: interest announced");
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                r = connections.changed() => if r.is_err() { return },
            }
        }
    }
}

/// The announcement of `filters`: JSON `{"filters": [...]}`, or
/// `{"everything": true}` when it would exceed [`MAX_INTEREST_BYTES`].
fn announcement<'a>(filters: impl Iterator<Item = &'a TopicFilter>) -> Bytes {
    let list: Vec<&str> = filters.map(TopicFilter::as_str).collect();
    let json = serde_json::json!({ "filters": list }).to_string();
    if json.len() > MAX_INTEREST_BYTES {
        return Bytes::from_static(br#"{"everything":true}"#);
    }
    Bytes::from(json)
}

/// What a node announced; anything unreadable counts as "every topic"
/// (more traffic, never a lost message).
pub(super) fn parse_interest(value: &[u8]) -> (Vec<TopicFilter>, bool) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else {
        return (Vec::new(), true);
    };
    if v.get("everything").and_then(|e| e.as_bool()) == Some(true) {
        return (Vec::new(), true);
    }
    let Some(list) = v.get("filters").and_then(|f| f.as_array()) else {
        return (Vec::new(), true);
    };
    let filters = list
        .iter()
        .filter_map(|f| f.as_str())
        .filter_map(|f| TopicFilter::new(f).ok())
        .collect();
    (filters, false)
}

impl Backplane for Cluster {
    fn interest_changed(&self, filter: &TopicFilter, present: bool) {
        let mut local = lock(&self.local);
        if present {
            local.insert(filter.clone());
        } else {
            local.remove(filter);
        }
        drop(local);
        self.local_changed.send_modify(|n| *n += 1);
    }

    fn forward(
        &self,
        topic: &TopicName,
        message: &Arc<Message>,
        done: Option<ForwardDone>,
    ) -> Forward {
        // `$` topics ($SYS) describe this node only.
        if topic.is_dollar() {
            return Forward::Local;
        }
        let stored = message.qos != QoS::AtMostOnce;
        let nodes = self
            .remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .nodes_for(topic);
        let retain = message.retain;
        if nodes.is_empty() && !retain {
            return Forward::Local;
        }
        let refuse = |done: Option<ForwardDone>, e: ForwardError| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            match done {
                Some(d) => {
                    d(Err(e));
                    Forward::Pending
                }
                None => Forward::Sent,
            }
        };
        if (stored || retain) && !self.is_ready() {
            return refuse(
                done.filter(|_| stored),
                ForwardError::Unavailable("not connected to NATS".into()),
            );
        }
        let now = tokio::time::Instant::now().into_std();
        let Some(payload) = wire::encode(&self.node, message, now) else {
            return Forward::Local;
        };
        let done = done.filter(|_| stored);
        let join = done.map(|d| Join::new(nodes.len() + usize::from(retain), d));
        let pending = join.is_some();
        if retain {
            let key = Self::retained_key(topic.as_str());
            let item = Outgoing::Stored {
                subject: format!("$KV.{}.{key}", self.bucket("retained")),
                delete: message.payload.is_empty(),
                payload: if message.payload.is_empty() {
                    Bytes::new()
                } else {
                    payload.clone()
                },
                join: join.clone(),
            };
            if !self.queue(item) {
                self.full(join.as_deref());
            }
        }
        for node in &nodes {
            let item = if stored {
                Outgoing::Stored {
                    subject: self.subject("js", node),
                    payload: payload.clone(),
                    delete: false,
                    join: join.clone(),
                }
            } else {
                Outgoing::Core {
                    subject: self.subject("node", node),
                    payload: payload.clone(),
                }
            };
            if !self.queue(item) {
                self.full(join.as_deref());
            }
        }
        if pending {
            Forward::Pending
        } else {
            Forward::Sent
        }
    }
}

impl Cluster {
    /// The queue of messages for NATS was full.
    fn full(&self, join: Option<&Join>) {
        match join {
            Some(j) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                j.one(Err(ForwardError::Full(self.config.max_pending)));
            }
            None => {
                self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
