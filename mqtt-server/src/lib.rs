//! An MQTT 3.1, 3.1.1 and 5.0 broker on tokio, wiring together
//! `mqtt-codec` (packets), `mqtt-session` (the protocol of each
//! connection), `mqtt-topic` and `mqtt-router` (who gets what).
//!
//! A task per connection owns its socket and its session state machine.
//! Publishers route under a read lock of the subscription index, so they
//! route concurrently on every core, and put each delivery, as a shared
//! `Arc` whose payload is never copied, into the target session's bounded
//! mailbox; they never wait for a subscriber. Each connection task drains its
//! mailbox within the client's Receive Maximum, encodes every ready packet
//! into one buffer and writes it with as few syscalls as the socket allows.
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

mod broker;
mod config;
mod connection;
mod handle;
mod stats;
mod writer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::Instrument;
use tokio::sync::{Semaphore, mpsc, watch};

pub use config::{Config, ConfigError, QueueOverflow};
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

/// A bound broker, ready to run.
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// Checks the configuration and binds every listener.
    pub async fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for addr in &config.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push(l);
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Server {
            broker: Arc::new(Broker::new(config)),
            listeners,
            shutdown,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
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
        } = self;
        let janitor = tokio::spawn(broker.clone().run_janitor());
        let permits = Arc::new(Semaphore::new(broker.config.max_connections));
        // Each connection task holds a clone; when all are dropped, every
        // connection has finished.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let mut accepts = Vec::new();
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "listening for MQTT over TCP");
            }
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
        janitor.abort();
        Ok(())
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(1);
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
        // One span per connection: every log line of the task names the peer.
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                connection::serve(broker, stream, peer, shutdown).await;
                drop(permit);
                drop(done);
            }
            .instrument(span),
        );
    }
}
