//! Test support for the `mqtt-*` crates; dev-only, never published.
//!
//! - [`TestBroker`]: the real broker (`mqtt-server`) on `127.0.0.1:0` in
//!   the current tokio runtime, with its address, shutdown handle and
//!   counters.
//! - [`RawClient`]: a scripted MQTT peer over a plain `TcpStream` that
//!   sends [`Packet`](mqtt_codec::Packet)s or arbitrary bytes and receives
//!   decoded packets with a timeout: for what real clients cannot express
//!   (garbage, oversize packets, slowloris, a subscriber that never reads,
//!   protocol violations).
//! - [`packets`]: short builders for the packets tests send.
//! - [`v4`] and [`v5`]: a `rumqttc` client whose event loop runs in its own
//!   task, with awaitable, time-bounded expectations on its events.
//! - [`Collector`]: a `rumqttc` subscriber that reconnects after every
//!   error and keeps what it receives, for brokers that restart.
//! - [`mosquitto::Mosquitto`]: a real mosquitto started by the test (the
//!   other end of a bridge), stopped by PID.
//!
//! Everything here waits with a timeout ([`TIMEOUT`]) and panics with a
//! message when an expectation fails: it is meant for tests.
//!
//! ```no_run
//! # async fn example() {
//! use mqtt_codec::{Packet, ProtocolVersion, QoS};
//! use mqtt_testkit::{RawClient, TestBroker, packets};
//!
//! let broker = TestBroker::start(TestBroker::config()).await;
//! let (mut raw, connack) =
//!     RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
//! assert!(!connack.session_present);
//! raw.send(&Packet::Subscribe(packets::subscribe(1, &[("t", QoS::AtMostOnce)]))).await.ok();
//! assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
//! # }
//! ```

mod broker;
mod collector;
pub mod mosquitto;
pub mod packets;
mod raw;
pub mod v4;
pub mod v5;

pub use broker::TestBroker;
pub use collector::{Collector, Received as Collected};
pub use raw::{RawClient, Received};

use std::time::Duration;

/// How long any expectation waits before it fails. Generous, so that a
/// loaded CI machine does not make tests flaky; expectations that succeed
/// return as soon as the event happens.
pub const TIMEOUT: Duration = Duration::from_secs(5);
