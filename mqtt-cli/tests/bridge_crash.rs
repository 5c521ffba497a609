//! A bridge across a crash: the real `mqtt broker --data-dir`, bridged to a
//! real mosquitto, killed with SIGKILL in the middle of QoS 1 streams both
//! ways, then restarted on the same directory.
//!
//! - Out: every message whose PUBACK our publisher received reaches the
//!   remote subscriber (a persistent session at mosquitto).
//! - In: every message mosquitto accepted for the bridge's topics reaches
//!   a persistent subscriber of ours: the bridge acknowledges a message to
//!   mosquitto only once it is stored, and mosquitto keeps the rest for
//!   the bridge's session while this broker is down.
//!
//! Skipped, saying so, where mosquitto is not installed (CI installs it).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqtt_codec::{Packet, ProtocolVersion, QoS};
use mqtt_testkit::mosquitto::{Mosquitto, free_port};
use mqtt_testkit::{Collected, Collector, RawClient, Received, packets};

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");
const LONG: Duration = Duration::from_secs(60);

/// Our broker process; killed (SIGKILL) when dropped.
struct Broker {
    child: Child,
}

impl Broker {
    /// `mqtt broker --config CONFIG --data-dir DIR` on `addr`, once it
    /// accepts.
    fn start(config: &Path, dir: &Path, addr: SocketAddr, log: &Path) -> Broker {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(MQTT)
            .args(["broker", "--log-level", "info", "--config"])
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the broker");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child }
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a QoS 1 PUBLISH of `out{i}` to `stream/1` for each `i` of `ids`
/// without waiting, then reads PUBACKs until `wait_for` of them came (or
/// the connection broke): the payloads acknowledged go to `acked`.
async fn pipeline(
    raw: &mut RawClient,
    ids: std::ops::RangeInclusive<u16>,
    wait_for: usize,
    acked: &mut Vec<String>,
) {
    for i in ids.clone() {
        let p = packets::publish(
            "stream/1",
            format!("out{i}").as_bytes(),
            QoS::AtLeastOnce,
            i,
        );
        raw.send(&Packet::Publish(p)).await.unwrap();
    }
    let mut n = 0;
    while n < wait_for {
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::PubAck(a)) => {
                acked.push(format!("out{}", a.packet_id.get()));
                n += 1;
            }
            Received::Packet(_) => {}
            other => panic!("the publisher's connection: {other:?}"),
        }
    }
}

/// Publishes at QoS 1 and waits for PUBACK; false if the connection broke
/// first (the message may or may not have been taken).
async fn publish_acked(raw: &mut RawClient, topic: &str, payload: &str, id: u16) -> bool {
    let p = packets::publish(topic, payload.as_bytes(), QoS::AtLeastOnce, id);
    if raw.send(&Packet::Publish(p)).await.is_err() {
        return false;
    }
    loop {
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::PubAck(a)) if a.packet_id == packets::pid(id) => {
                return true;
            }
            Received::Packet(_) => {}
            _ => return false,
        }
    }
}

/// The log without its colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: up to the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn payloads(received: &[Collected]) -> std::collections::HashSet<String> {
    received.iter().map(|r| r.payload.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_crosses_the_bridge_across_a_sigkill() {
    if Mosquitto::binary().is_none() {
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mosquitto = Mosquitto::start(&d.join("mosquitto"), "", &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            r##"
max_queued_messages = 100000
[[bridge]]
name = "m"
address = "{}"
client_id = "edge"
keep_alive = 5
reconnect_delay_min_ms = 50
reconnect_delay_max_ms = 300
max_queued_messages = 50000
max_inflight_messages = 1
receive_maximum = 10
[[bridge.topic]]
pattern = "stream/#"
direction = "out"
qos = 1
remote_prefix = "site/"
[[bridge.topic]]
pattern = "cmd/#"
direction = "in"
qos = 1
remote_prefix = "site/"
"##,
            mosquitto.addr
        ),
    )
    .unwrap();
    let data = d.join("data");
    let log = d.join("broker.log");
    let mut broker = Broker::start(&config, &data, addr, &log);

    // The subscribers: persistent sessions, at mosquitto and here.
    let remote_sub = Collector::start(
        mosquitto.addr,
        "remote-sub",
        false,
        "site/stream/#",
        QoS::AtLeastOnce,
    )
    .await;
    let local_sub = Collector::start(addr, "local-sub", false, "cmd/#", QoS::AtLeastOnce).await;
    let (mut remote_pub, _) = RawClient::connect(
        mosquitto.addr,
        packets::connect(ProtocolVersion::V3_1_1, "remote-pub"),
    )
    .await;
    // The bridge's subscription at mosquitto is in place once a message
    // crosses: it was made at the bridge's first connection, and its
    // session at mosquitto is persistent from then on.
    let deadline = Instant::now() + LONG;
    let mut probes = 0u16;
    while !payloads(&local_sub.received()).contains("probe") {
        assert!(
            Instant::now() < deadline,
            "the bridge never connected: see {}",
            log.display()
        );
        probes += 1;
        assert!(publish_acked(&mut remote_pub, "site/cmd/x", "probe", probes).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Both streams at once, pipelined (nothing waits for its
    // acknowledgement before the next is sent), so that at the kill the
    // bridge has messages queued for mosquitto (it sends one at a time:
    // max_inflight_messages = 1) and messages from it in flight.
    let total = 400u16;
    for i in 1..=total {
        let p = packets::publish(
            "site/cmd/x",
            format!("in{i}").as_bytes(),
            QoS::AtLeastOnce,
            1000 + i,
        );
        remote_pub.send(&Packet::Publish(p)).await.unwrap();
    }
    let (mut publisher, _) =
        RawClient::connect(addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let mut acked = Vec::new();
    let kill_after = 250;
    pipeline(&mut publisher, 1..=300, kill_after, &mut acked).await;
    broker.kill();
    // Down for a while: mosquitto keeps what comes for the bridge.
    for j in 1..=20u16 {
        let p = packets::publish(
            "site/cmd/x",
            format!("down{j}").as_bytes(),
            QoS::AtLeastOnce,
            3000 + j,
        );
        remote_pub.send(&Packet::Publish(p)).await.unwrap();
    }
    broker = Broker::start(&config, &data, addr, &log);
    let (mut publisher, _) =
        RawClient::connect(addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    pipeline(
        &mut publisher,
        301..=total,
        usize::from(total - 300),
        &mut acked,
    )
    .await;
    assert!(acked.len() >= kill_after + usize::from(total - 300));
    let restored = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    let queued: Vec<u64> = restored
        .lines()
        .filter(|l| l.contains("persistent state restored"))
        .filter_map(|l| l.split("queued=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    eprintln!("restored after the kill: {queued:?} queued messages");
    assert!(
        queued.last().is_some_and(|&n| n > 0),
        "the kill found nothing queued for mosquitto: {queued:?} (see {})",
        log.display()
    );

    let got = remote_sub
        .wait_until("every acknowledged message at mosquitto", LONG, |r| {
            let p = payloads(r);
            acked.iter().all(|a| p.contains(a))
        })
        .await;
    // In order, first arrivals (duplicates allowed at QoS 1).
    let mut seen = std::collections::HashSet::new();
    let order: Vec<u16> = got
        .iter()
        .filter(|m| seen.insert(m.payload.clone()))
        .filter_map(|m| m.payload.strip_prefix("out")?.parse().ok())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );

    let wanted: Vec<String> = (1..=total)
        .map(|i| format!("in{i}"))
        .chain((1..=20).map(|j| format!("down{j}")))
        .collect();
    local_sub
        .wait_until("every message mosquitto accepted, here", LONG, |r| {
            let p = payloads(r);
            wanted.iter().all(|w| p.contains(w))
        })
        .await;
    drop(broker);
}
