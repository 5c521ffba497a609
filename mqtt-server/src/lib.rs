//! An MQTT 3.1, 3.1.1 and 5.0 broker on tokio, wiring together
//! `mqtt-codec` (packets), `mqtt-session` (the protocol of each
//! connection), `mqtt-topic` and `mqtt-router` (who gets what).
//!
//! A task per connection owns its socket and its session state machine.
//! Publishers route under a read lock of the subscription index, so they
//! route concurrently on every core, and put each delivery, as a shared
//! `Arc` whose payload is never copied, into the target session's bounded
//! mailbox. A QoS 1/2 delivery that finds a connected subscriber's mailbox
//! full holds back its publisher's acknowledgement (and reading) until
//! there is room, for at most `max_publish_wait_ms`; with persistence, the
//! acknowledgement also waits for the group commit that stores the message
//! (see `persist.rs`). Each connection task drains its
//! mailbox within the client's Receive Maximum, encodes every ready packet
//! into one buffer and writes it with as few syscalls as the socket allows.
//!
//! The path of one PUBLISH through the crates, and where each rule lives,
//! is drawn in the [`manual`]; the performance choices of this crate, with
//! the measurements behind each, are in `benches/README.md`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use mqtt_server::{Config, Server};
//!
//! let server = Server::bind(Config::default()).await?; // 127.0.0.1:1883
//! let shutdown = server.shutdown_handle();
//! tokio::spawn(async move {
//!     tokio::signal::ctrl_c().await.ok();
//!     shutdown.shutdown();
//! });
//! server.run().await
//! # }
//! ```

mod acl;
mod admin;
mod auth;
mod bridge;
mod broker;
mod cluster;
mod config;
mod connection;
mod handle;
mod http;
mod listener;
pub mod manual;
mod metrics;
mod passwd;
mod persist;
mod proxy;
mod quota;
mod stats;
mod sys;
mod tls;
mod writer;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

pub use acl::{AclRules, AclSubject};
pub use auth::{
    AuthDecision, AuthFuture, AuthRequest, Authenticator, MAX_TRACKED_ADDRESSES,
    PasswordFileAuthenticator, SecurityFileError,
};
pub use bridge::{BridgeConfig, BridgeProtocol, Direction, TopicRule};
pub use cluster::ClusterConfig;
pub use config::{ClientLimits, Config, ConfigError, QueueOverflow};
pub use listener::{DEFAULT_WEBSOCKET_PATH, ListenerConfig, ListenerKind, ListenerSettings};
pub use mqtt_store::{Store, StoreError};
pub use passwd::{DEFAULT_ITERATIONS, MAX_ITERATIONS, PasswordFile, PasswordHash, SALT_LEN};
pub use stats::Stats;

use broker::Broker;

/// How long shutdown waits for connections to send their DISCONNECT and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Stops a running [`Server`].
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Asks the server to stop: listeners close, MQTT 5.0 clients get
    /// DISCONNECT 0x8B (server shutting down), and [`Server::run`] returns
    /// once connections have closed (or after a grace period).
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// Reloads the password and ACL files of a running [`Server`] (what
/// SIGHUP does), without dropping connections.
#[derive(Clone)]
pub struct ReloadHandle(Arc<Broker>);

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHandle")
    }
}

impl ReloadHandle {
    /// Reads every password and ACL file again. A file that fails to load
    /// is logged as an error naming the file and line, keeps its previous
    /// rules, and is returned here.
    pub fn reload(&self) -> Vec<SecurityFileError> {
        self.0.security.reload()
    }
}

/// This node's view of its cluster ([`Server::cluster`]).
#[cfg(feature = "cluster")]
#[derive(Debug, Clone)]
pub struct ClusterHandle(Arc<cluster::Cluster>);

#[cfg(feature = "cluster")]
impl ClusterHandle {
    /// This node's name.
    pub fn node(&self) -> String {
        self.0.node.to_string()
    }

    /// The other nodes a message on `topic` published here goes to now
    /// (each once): those whose announced subscriptions match it. Interest
    /// spreads asynchronously; this says when it has.
    pub fn nodes_for(&self, topic: &str) -> Vec<String> {
        self.0.nodes_for(topic)
    }

    /// The other nodes alive now (heard of within `node_ttl`).
    pub fn nodes_seen(&self) -> Vec<String> {
        self.0.nodes_seen()
    }

    /// Whether this node's claim of `client_id` in the cluster is made
    /// (its connection here is the one that stays, until another node
    /// claims the identifier later).
    pub fn owns(&self, client_id: &str) -> bool {
        self.0.owns(client_id)
    }

    /// Whether this node can store QoS 1/2 messages for the others now:
    /// connected to NATS, its stream and buckets in place.
    pub fn is_ready(&self) -> bool {
        self.0.is_ready()
    }
}

/// A bound broker, ready to run.
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<listener::Listener>,
    shutdown: watch::Sender<bool>,
    /// The Prometheus metrics listener (`metrics_listen`).
    metrics: Option<TcpListener>,
    /// The operator's console (`admin_listen`).
    admin: Option<admin::Bound>,
}

impl Server {
    /// Checks the configuration and binds every listener. With
    /// `persistence`, opens the store in `data_dir` and restores what it
    /// holds first.
    pub async fn bind(config: Config) -> io::Result<Server> {
        Self::bind_inner(config, None).await
    }

    /// Like [`Server::bind`], with persistence on `store` whatever
    /// `persistence` and `data_dir` say: for another backend, or a test
    /// that injects failures. `store` must not be recovered yet.
    pub async fn bind_with_store(config: Config, store: Arc<dyn Store>) -> io::Result<Server> {
        Self::bind_inner(config, Some(store)).await
    }

    async fn bind_inner(config: Config, store: Option<Arc<dyn Store>>) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let admin = admin::bind(&config).await?;
        let security = auth::Security::from_config(&config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let now = tokio::time::Instant::now().into_std();
        let started = std::time::Instant::now();
        let opened = match store {
            Some(store) => Some(persist::Persist::with_store(store, now)?),
            None if config.persistence => {
                let dir = config.data_dir.clone();
                // Opening replays the journal and recovery reads every
                // record: blocking work, off the async threads.
                let opened = tokio::task::spawn_blocking(move || persist::Persist::open(&dir, now))
                    .await
                    .map_err(io::Error::other)??;
                Some(opened)
            }
            None => None,
        };
        let data_dir = config.data_dir.clone();
        let bridges = bridge::Bridges::prepare(&config.bridges)?;
        let mut broker = Broker::new(config);
        broker.security = security;
        broker.bridges = bridges;
        #[cfg(feature = "cluster")]
        if let Some(c) = &broker.config.cluster {
            let cluster = cluster::Cluster::new(c);
            tracing::info!(node = %cluster.node, urls = ?c.urls, "cluster node");
            let backplane: Arc<dyn mqtt_router::cluster::Backplane> = cluster.clone();
            broker.router_mut().set_backplane(backplane.clone());
            broker.backplane = Some(backplane);
            broker.cluster = Some(cluster);
        }
        if let Some((persist, recovered)) = opened {
            let r = recovered.report;
            broker.restore(recovered);
            tracing::info!(
                dir = %data_dir.display(),
                sessions = r.sessions,
                queued = r.queued,
                inflight = r.inflight,
                incoming_qos2 = r.incoming_qos2,
                retained = r.retained,
                wills = r.wills,
                expired_sessions = r.expired_sessions,
                expired_messages = r.expired_messages,
                corrupt = r.corrupt,
                orphans = r.orphans,
                took_ms = started.elapsed().as_millis() as u64,
                "persistent state restored"
            );
            broker.persist = Some(persist);
        }
        let listeners = listener::bind_all(&broker).await?;
        let (shutdown, _) = watch::channel(false);
        Ok(Server {
            broker: Arc::new(broker),
            listeners,
            shutdown,
            metrics,
            admin,
        })
    }

    /// Where the Prometheus metrics are served, if `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the operator's console is served, if `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(admin::Bound::local_addr)
    }

    /// A handle that reloads the password and ACL files.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.broker.clone())
    }

    /// Checks clients that send a user name with `authenticator` instead
    /// of the `password_file` (listeners with their own `password_file`
    /// keep it). Its [`Authenticator::reload`] runs on every reload.
    pub fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        self.broker.security.set_authenticator(authenticator);
    }

    /// Every listener bound: those of `listen` first, then the
    /// `[[listener]]` tables in order, with the addresses actually bound.
    pub fn listeners(&self) -> impl Iterator<Item = &ListenerSettings> {
        self.listeners.iter().map(|l| l.settings())
    }

    /// The addresses actually bound (useful with port 0), in the order of
    /// [`Server::listeners`].
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// This node's view of its cluster, with a `[cluster]` table (it
    /// stays valid after [`Server::run`] took the server).
    #[cfg(feature = "cluster")]
    pub fn cluster(&self) -> Option<ClusterHandle> {
        self.broker.cluster.clone().map(ClusterHandle)
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The broker's counters, live.
    pub fn stats(&self) -> Arc<Stats> {
        self.broker.stats.clone()
    }

    /// Accepts and serves clients until shut down.
    pub async fn run(self) -> io::Result<()> {
        let Server {
            broker,
            listeners,
            shutdown,
            metrics,
            admin,
        } = self;
        let janitor = tokio::spawn(broker.clone().run_janitor());
        #[cfg(feature = "cluster")]
        let cluster = broker
            .cluster
            .clone()
            .map(|c| tokio::spawn(c.run(Arc::downgrade(&broker), shutdown.subscribe())));
        let mut background = Vec::new();
        if let Some(listener) = metrics {
            background.push(tokio::spawn(metrics::serve(listener, broker.clone())));
        }
        if let Some(admin) = admin {
            let shown = listeners
                .iter()
                .map(|l| admin::ListenerInfo {
                    kind: l.settings().kind,
                    address: l.settings().address,
                    websocket_path: l.websocket_path().map(str::to_owned),
                })
                .collect();
            background.push(tokio::spawn(admin::serve(admin, broker.clone(), shown)));
        }
        if broker.config.sys_interval > 0 {
            let every = Duration::from_secs(broker.config.sys_interval);
            background.push(tokio::spawn(sys::run(broker.clone(), every)));
        }
        // Before the first client: a bridge's subscriptions are in place.
        let mut bridges = bridge::start(&broker, &shutdown);
        let permits = Arc::new(Semaphore::new(broker.config.max_connections));
        // Each connection task holds a clone; when all are dropped, every
        // connection has finished.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let mut accepts = Vec::new();
        for listener in listeners {
            let settings = listener.settings();
            tracing::info!(addr = %settings.address, kind = %settings.kind, "listening");
            accepts.push(tokio::spawn(accept_loop(
                broker.clone(),
                listener,
                permits.clone(),
                shutdown.subscribe(),
                done_tx.clone(),
            )));
        }
        drop(done_tx);
        let mut stop = shutdown.subscribe();
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        tracing::info!("shutting down");
        for a in &accepts {
            a.abort();
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv()).await;
        // Bridges send DISCONNECT to their remote brokers (they saw the
        // shutdown too).
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for b in &mut bridges {
            if tokio::time::timeout_at(deadline, &mut *b).await.is_err() {
                b.abort();
            }
        }
        janitor.abort();
        #[cfg(feature = "cluster")]
        if let Some(mut c) = cluster
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut c).await.is_err()
        {
            c.abort();
        }
        for task in background {
            task.abort();
        }
        let flushing = broker.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            flushing
                .persist
                .as_ref()
                .map(|p| p.flush(std::time::Instant::now()))
        })
        .await;
        if let Ok(Some(Err(e))) = flushed {
            tracing::error!(error = %e, "store flush at shutdown failed");
        }
        Ok(())
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: listener::Listener,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let handler = listener.handler();
    let mut backoff = Duration::from_millis(1);
    let mut rate = (broker.config.max_connection_rate > 0).then(|| {
        quota::TokenBucket::new(
            u64::from(broker.config.max_connection_rate),
            tokio::time::Instant::now().into_std(),
        )
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(1);
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then retry,
                // rather than spin or give up.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(bucket) = &mut rate
            && !bucket.try_take_one(tokio::time::Instant::now().into_std())
        {
            stats::Stats::add(&broker.stats.connections_rate_limited, 1);
            tracing::debug!(%peer, "max_connection_rate exceeded; connection closed");
            drop(stream);
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats::Stats::add(&broker.stats.connections_refused, 1);
            tracing::warn!(%peer, "max_connections reached; connection closed");
            drop(stream);
            continue;
        };
        stats::Stats::add(&broker.stats.connections_total, 1);
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        let handler = handler.clone();
        // One span per connection, at debug level: an enabled span costs
        // every connection a few hundred bytes for as long as it lives, so
        // at the default level the log lines that matter name the peer
        // themselves.
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(
            handler
                .serve(broker, stream, peer, shutdown, (permit, done))
                .instrument(span),
        );
    }
}
