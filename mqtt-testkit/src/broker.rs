//! The real broker on an ephemeral port.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use mqtt_server::{Config, ListenerKind, ListenerSettings, Server, ShutdownHandle, Stats, Store};
use tokio::task::JoinHandle;

use crate::TIMEOUT;

/// A broker running in the current tokio runtime; shut down when dropped.
#[derive(Debug)]
pub struct TestBroker {
    /// Where it listens (`127.0.0.1`, an ephemeral port).
    pub addr: SocketAddr,
    /// Every listener: the one of `addr` first, then the `[[listener]]`
    /// tables of the configuration (give them port 0), as bound.
    pub listeners: Vec<ListenerSettings>,
    /// Stops it.
    pub shutdown: ShutdownHandle,
    /// Its counters, live.
    pub stats: Arc<Stats>,
    /// Where the operator's console listens, with `admin_listen` set (give
    /// it port 0).
    pub admin: Option<SocketAddr>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TestBroker {
    /// The default configuration, for tests to adjust before
    /// [`TestBroker::start`], except that it listens on `127.0.0.1:0` (a
    /// port the OS picks): a test that binds it directly never takes, or
    /// fails on, port 1883, which a developer's own broker often holds.
    pub fn config() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..Config::default()
        }
    }

    /// Binds the broker with `config`, listening on `127.0.0.1:0` whatever
    /// `config.listen` says, and runs it in a task.
    ///
    /// # Panics
    /// If the configuration is invalid or the port cannot be bound.
    pub async fn start(config: Config) -> TestBroker {
        Self::start_inner(config, None).await
    }

    /// [`TestBroker::start`] with persistence on `store`
    /// ([`Server::bind_with_store`]): e.g. a store that fails on demand.
    ///
    /// # Panics
    /// If the configuration is invalid or the port cannot be bound.
    pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> TestBroker {
        Self::start_inner(config, Some(store)).await
    }

    async fn start_inner(mut config: Config, store: Option<Arc<dyn Store>>) -> TestBroker {
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let server = match store {
            Some(store) => Server::bind_with_store(config, store).await,
            None => Server::bind(config).await,
        }
        .expect("the test broker binds");
        let addr = *server
            .local_addrs()
            .first()
            .expect("the test broker has a listener");
        let listeners = server.listeners().cloned().collect();
        let shutdown = server.shutdown_handle();
        let stats = server.stats();
        let admin = server.admin_addr();
        let task = tokio::spawn(server.run());
        TestBroker {
            addr,
            listeners,
            shutdown,
            stats,
            admin,
            task: Some(task),
        }
    }

    /// The address of the first listener of `kind`.
    ///
    /// # Panics
    /// If the configuration has no listener of that kind.
    pub fn addr_of(&self, kind: ListenerKind) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.address)
            .unwrap_or_else(|| panic!("the test broker has no {kind} listener"))
    }

    /// Reads one counter, e.g. `broker.stat(|s| &s.dropped_queue_full)`.
    pub fn stat(&self, counter: impl FnOnce(&Stats) -> &AtomicU64) -> u64 {
        Stats::get(counter(&self.stats))
    }

    /// Waits until the counters satisfy `condition`, checking every few
    /// milliseconds: for what the broker does without telling any client
    /// (e.g. noticing that a connection closed).
    ///
    /// # Panics
    /// If the condition does not hold within [`TIMEOUT`]; `what` names it.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&Stats) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !condition(&self.stats) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker: {what} did not happen within {TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks the broker to stop and waits, at most `wait`, for
    /// [`Server::run`] to return. `None` if it did not return in time.
    pub async fn stop(&mut self, wait: Duration) -> Option<io::Result<()>> {
        self.shutdown.shutdown();
        let task = self.task.take()?;
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(join)) => Some(Err(io::Error::other(join.to_string()))),
            Err(_) => None,
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}
