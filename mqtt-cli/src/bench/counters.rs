//! The counters every client task adds to, and the live progress line
//! that reads them.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Counters every client task adds to; read by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections open (CONNACK received, not yet closed).
    pub(crate) connected: AtomicU64,
    /// Connections that failed to open or were refused.
    pub(crate) connect_failed: AtomicU64,
    /// Messages handed to the connections.
    pub(crate) sent: AtomicU64,
    /// QoS 1/2 messages acknowledged (PUBACK / PUBCOMP) with success.
    pub(crate) acked: AtomicU64,
    /// QoS 1/2 messages acknowledged with an error reason code.
    pub(crate) publish_failed: AtomicU64,
    /// Messages received by subscribers.
    pub(crate) received: AtomicU64,
    /// Messages received by subscribers for the first time: neither a
    /// duplicate nor another run's (per-message accounting only).
    pub(crate) fresh: AtomicU64,
    /// Connections lost or closed by the server mid-run.
    pub(crate) disconnects: AtomicU64,
}

/// Prints a progress line on standard error once a second until `stop`.
pub(crate) async fn progress(counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (mut last_sent, mut last_recv) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let sent = counters.sent.load(Relaxed);
        let recv = counters.received.load(Relaxed);
        let line = format!(
            "[{:>4}s] conns {}  sent {}/s  recv {}/s  total sent {}  recv {}  failed conns {}  lost {}",
            start.elapsed().as_secs(),
            counters.connected.load(Relaxed),
            sent - last_sent,
            recv - last_recv,
            sent,
            recv,
            counters.connect_failed.load(Relaxed),
            counters.disconnects.load(Relaxed),
        );
        last_sent = sent;
        last_recv = recv;
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
}
