//! An MQTT 3.1.1 client: rumqttc's v4 API, driven by a task.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubAck,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::TIMEOUT;

/// Options for client `id` of the broker at `addr`: clean session, keep
/// alive 30 s (no pings during a test).
pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

include!("peer.rs");
