//! Bridges: connections from this broker to other MQTT brokers, carrying
//! the topics of their rules each way, in mosquitto's vocabulary (see
//! [`BridgeConfig`]).
//!
//! # How a bridge is put together
//!
//! ```text
//!              this broker                                 remote broker
//!  publishers ─▶ Broker::publish ─▶ $bridge/NAME's mailbox ─▶ ClientConnection ─▶ socket
//!                  ▲                (bounded, stored)           (mqtt-session,
//!                  │                                              client role)
//!                  └────────── Broker::publish ◀── manual acknowledgement ◀─── socket
//! ```
//!
//! - **The local side is a session of this broker**, `$bridge/NAME`
//!   (`local.rs`): registered like a client's, subscribed with No Local and
//!   Retain As Published to the local filters of the `out`/`both` rules, so
//!   that messages for the remote broker wait in its mailbox with the same
//!   bounded queue, overflow policy and counted drops as any session
//!   (`max_queued_messages`... of the `[[bridge]]` table, or the top-level
//!   ones). With `--data-dir` the session is persistent, so its queue is in
//!   the store like any persistent session's. Network clients cannot use a
//!   client identifier starting with `$bridge/` (refused with 0x85). While
//!   the remote broker is unreachable the session counts as offline: a full
//!   queue drops by its policy, and publishers never wait for it; while it
//!   is connected, a full queue slows publishers as any subscriber's does.
//! - **The remote side is `mqtt-session`'s client role** (`link.rs`), which
//!   holds every rule of the protocol (packet identifiers, the remote's
//!   Receive Maximum, keep alive, QoS 2 flows, resending after a
//!   reconnection); the bridge only moves bytes and messages.
//! - **Out**: messages move from the mailbox into the client connection as
//!   its window allows (at most `max_inflight_messages` in flight), with
//!   the local prefix replaced by the remote one. A message leaves the
//!   store only when the remote broker has acknowledged it (PUBACK, or
//!   PUBCOMP): until then it is resent after a reconnection or a restart.
//! - **In**: the bridge subscribes at the remote broker to the remote
//!   filters of the `in`/`both` rules, and publishes what arrives into this
//!   broker by [`Broker::publish`], as a client's connection does, with the
//!   remote prefix replaced by the local one. The client connection holds
//!   its PUBACK/PUBREC (manual acknowledgements) until this broker has
//!   taken the message: stored, when a persistent session needs it. At
//!   most `receive_maximum` messages wait so; beyond, the bridge stops
//!   reading from the remote broker.
//!
//! What the bridge publishes here, and what its subscriptions take, is
//! not checked against the ACL file: the `[[bridge.topic]]` rules are the
//! operator's, as in mosquitto.
//!
//! # Loops
//!
//! A message published here by the bridge is not sent back out: the local
//! subscriptions are No Local. At the remote broker, with MQTT 5.0, the
//! bridge subscribes with No Local; with MQTT 3.1.1 it sets mosquitto's
//! bridge bit in CONNECT (`try_private`), which mosquitto and this broker
//! understand (their subscriptions for such a client behave as No Local).
//! A 3.1.1 remote that refuses the bit (CONNACK 0x01) is tried again
//! without it, and then a topic carried both ways comes back once: the
//! limit of MQTT 3.1.1. Two bridges between the same brokers carrying the
//! same topics (A to B and B to A) make a loop, as with mosquitto: bridge
//! both ways with one `both` rule on one side.
//!
//! # What survives what
//!
//! - The remote broker going away, or restarting: messages for it wait
//!   (bounded, counted drops), and those in flight are resent, QoS 2 ones
//!   exactly once when the remote broker kept the session (`clean_start =
//!   false`, the default).
//! - This broker killed (`kill -9`) with `--data-dir`: every message
//!   queued for the remote broker whose publisher was acknowledged, and
//!   every message in flight to it, is sent after the restart. A QoS 2
//!   message in flight at the crash may reach the remote broker twice (it
//!   is resent as a new message: the packet identifiers are not stored,
//!   only which ones the remote broker may still hold, so that none is
//!   reused before it is released). A message from the remote broker is
//!   acknowledged only once stored here, so none is lost; one not yet
//!   acknowledged at the crash is resent by the remote broker, and may
//!   arrive twice.
//!
//! # Notifications and metrics
//!
//! `$SYS/broker/connection/NAME/state` is `1` while the bridge is connected
//! and `0` otherwise, retained, as mosquitto publishes it (on this broker
//! only). The Prometheus metrics have, per bridge (label `bridge`), its
//! state, the messages each way, what is queued, what was dropped and the
//! reconnections; `$SYS/broker/connection/NAME/...` has the same.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_codec::{MqttString, QoS};
use mqtt_session::Message;
use mqtt_topic::TopicName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::broker::{Broker, Publishing};
use crate::handle::{SessionHandle, lock};

mod config;
mod link;
mod local;
mod outgoing;
mod transport;

pub(crate) use config::validate_all;
pub use config::{BridgeConfig, BridgeProtocol, Direction, TopicRule};

/// Client identifiers of the bridges' local sessions start with this;
/// network clients may not use it.
pub(crate) const RESERVED_PREFIX: &str = "$bridge/";

/// Counters of one bridge, for metrics and `$SYS`.
#[derive(Debug)]
pub(crate) struct BridgeStats {
    pub(crate) name: String,
    /// Connected to the remote broker (CONNACK received) now.
    pub(crate) connected: AtomicBool,
    /// PUBLISH packets sent to the remote broker (first sends).
    pub(crate) sent: AtomicU64,
    /// Messages received from the remote broker and published here.
    pub(crate) received: AtomicU64,
    /// Connection attempts after the first (after a failure or a loss).
    pub(crate) reconnects: AtomicU64,
    /// Messages no rule could map (a filter matched a topic without the
    /// rule's prefix), dropped.
    pub(crate) unmapped: AtomicU64,
    /// Messages handed to the connection to the remote broker and not yet
    /// acknowledged by it, as of the bridge's last turn.
    pub(crate) in_transit: AtomicU64,
    /// The local session, once claimed: its mailbox holds what waits.
    pub(crate) session: std::sync::OnceLock<Arc<SessionHandle>>,
}

impl BridgeStats {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            connected: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unmapped: AtomicU64::new(0),
            in_transit: AtomicU64::new(0),
            session: std::sync::OnceLock::new(),
        }
    }

    /// Messages waiting for the remote broker: in the local session's
    /// mailbox, and in the connection (queued or in flight).
    pub(crate) fn queued(&self) -> u64 {
        let mailbox = self.session.get().map_or(0, |h| lock(&h.mailbox).len());
        mailbox as u64 + self.in_transit.load(Ordering::Relaxed)
    }

    /// Messages for the remote broker dropped: by the queue's policy (full
    /// or expired) and for want of a mapping.
    pub(crate) fn dropped(&self) -> u64 {
        let queue = self.session.get().map_or(0, |h| {
            let d = lock(&h.mailbox).drops;
            d.queue_full + d.queue_full_qos0 + d.expired
        });
        queue + self.unmapped.load(Ordering::Relaxed)
    }

    /// A snapshot, by `$SYS` name: the state (1 connected, 0 not), messages
    /// sent, received, queued and dropped, reconnections. (The metrics
    /// take them in this order.)
    pub(crate) fn values(&self) -> [(&'static str, u64); 6] {
        [
            ("state", u64::from(self.connected.load(Ordering::Relaxed))),
            ("messages/sent", self.sent.load(Ordering::Relaxed)),
            ("messages/received", self.received.load(Ordering::Relaxed)),
            ("messages/queued", self.queued()),
            ("messages/dropped", self.dropped()),
            ("reconnects", self.reconnects.load(Ordering::Relaxed)),
        ]
    }
}

/// One configured bridge, ready to start: its configuration, its TLS
/// client configuration (files read when the server is bound, so that a
/// bad file stops the start with an error naming it), its counters.
pub(crate) struct Prepared {
    pub(crate) config: Arc<BridgeConfig>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) stats: Arc<BridgeStats>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// The broker's bridges.
#[derive(Debug, Default)]
pub(crate) struct Bridges(pub(crate) Vec<Prepared>);

impl Bridges {
    /// Reads what the `[[bridge]]` tables name (TLS files).
    pub(crate) fn prepare(bridges: &[BridgeConfig]) -> io::Result<Self> {
        let mut out = Vec::with_capacity(bridges.len());
        for b in bridges {
            let tls = match &b.cafile {
                Some(cafile) => Some(
                    crate::tls::client_config(
                        cafile,
                        b.certfile.as_deref().zip(b.keyfile.as_deref()),
                    )
                    .map_err(|e| io::Error::new(e.kind(), format!("[[bridge]] {}: {e}", b.name)))?,
                ),
                None => None,
            };
            out.push(Prepared {
                config: Arc::new(b.clone()),
                tls,
                stats: Arc::new(BridgeStats::new(&b.name)),
            });
        }
        Ok(Self(out))
    }

    /// Each bridge's counters.
    pub(crate) fn stats(&self) -> impl Iterator<Item = &BridgeStats> {
        self.0.iter().map(|p| &*p.stats)
    }
}

/// Ends the stored sessions of bridges no longer configured, claims each
/// bridge's local session (before any client is accepted, so that no
/// message published at startup misses its subscriptions), then starts a
/// task per bridge; each stops when `shutdown` turns true.
pub(crate) fn start(broker: &Arc<Broker>, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
    local::end_unconfigured(broker);
    broker
        .bridges
        .0
        .iter()
        .map(|p| {
            let bridge = link::Bridge::new(broker, p.config.clone(), p.stats.clone());
            let span = tracing::info_span!("bridge", name = %p.config.name);
            tokio::spawn(
                run(
                    broker.clone(),
                    bridge,
                    p.config.clone(),
                    p.tls.clone(),
                    p.stats.clone(),
                    shutdown.subscribe(),
                )
                .instrument(span),
            )
        })
        .collect()
}

/// The delay before the next connection attempt: `delay` with jitter,
/// between half and all of it (so that bridges that lost their remote
/// together do not come back together).
fn jittered(delay: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 1024;
    delay / 2 + delay / 2 * u32::try_from(r).unwrap_or(0) / 1024
}

/// A bridge's life: connect, serve the connection, wait, again; until
/// shutdown.
async fn run(
    broker: Arc<Broker>,
    mut bridge: link::Bridge,
    config: Arc<BridgeConfig>,
    tls: Option<Arc<rustls::ClientConfig>>,
    stats: Arc<BridgeStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    publish_state(&broker, &config.name, false);
    let (min, max) = config.reconnect_delays();
    let mut delay = min;
    let mut first = true;
    // mosquitto's bridge bit, until a remote refuses it.
    let mut try_private = config.try_private && config.protocol == BridgeProtocol::V3_1_1;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if !first {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let connecting = transport::connect(&config, tls.as_ref());
        let stream = tokio::select! {
            r = bridge.idle(connecting) => r,
            _ = shutdown.changed() => break,
        };
        let outcome = match stream {
            Ok((stream, addr)) => {
                tracing::debug!(%addr, "connected to the remote broker; sending CONNECT");
                bridge.serve(stream, try_private, &mut shutdown).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the remote broker");
                link::Outcome::Failed
            }
        };
        match outcome {
            link::Outcome::Shutdown => break,
            link::Outcome::WasConnected => delay = min,
            link::Outcome::RefusedBridgeBit if try_private => {
                tracing::warn!(
                    "the remote broker refused mosquitto's bridge bit (try_private): connecting without it; messages carried both ways may come back once"
                );
                try_private = false;
                delay = min;
                continue;
            }
            link::Outcome::RefusedBridgeBit | link::Outcome::Failed => {}
        }
        let wait = jittered(delay);
        delay = (delay * 2).min(max);
        tokio::select! {
            _ = bridge.idle(tokio::time::sleep(wait)) => {}
            _ = shutdown.changed() => break,
        }
    }
    bridge.stop();
    publish_state(&broker, &config.name, false);
}

/// Publishes `$SYS/broker/connection/NAME/state`, `1` or `0`, retained,
/// as mosquitto does.
pub(crate) fn publish_state(broker: &Broker, name: &str, connected: bool) {
    let topic = format!("$SYS/broker/connection/{name}/state");
    let (Ok(name), Ok(string)) = (TopicName::new(&topic), MqttString::try_from(topic)) else {
        return;
    };
    let message = Message {
        topic: string,
        payload: Bytes::from_static(if connected { b"1" } else { b"0" }),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
        expires_at: None,
    };
    let now: Instant = tokio::time::Instant::now().into_std();
    broker.publish(&name, Arc::new(message), Publishing::default(), now);
}
