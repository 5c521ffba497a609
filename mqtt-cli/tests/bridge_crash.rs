//! A bridge across a crash: the real `mqtt broker --data-dir`, bridged to a
//! real mosquitto (and to another broker of ours), killed with SIGKILL in
//! the middle of QoS 1 and QoS 2 streams both ways, then restarted on the
//! same directory; the remote broker stays up.
//!
//! - Out: every message whose PUBACK (QoS 1) or PUBREC (QoS 2) our
//!   publisher received reaches the remote subscriber (a persistent
//!   session there). At QoS 2 this also checks that a packet identifier
//!   the remote broker still held unreleased at the crash is not reused
//!   for another message before it is released: a strict broker (ours)
//!   takes such a message for a duplicate and drops it.
//! - In: every message the remote broker accepted for the bridge's topics
//!   reaches a persistent subscriber of ours: the bridge acknowledges a
//!   message only once it is stored, and the remote broker keeps the rest
//!   for the bridge's session while this broker is down.
//!
//! The mosquitto case is skipped, saying so, where mosquitto is not
//! installed (CI installs it).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Packet, ProtocolVersion, QoS};
use mqtt_testkit::mosquitto::{Mosquitto, free_port};
use mqtt_testkit::{Collected, Collector, RawClient, Received, packets};

mod common;

use common::Broker;
const LONG: Duration = Duration::from_secs(60);

/// Our broker on `addr` with `config` and `--data-dir dir`, its log
/// appended to `log` (kept across restarts).
fn start_broker(config: &Path, dir: &Path, addr: SocketAddr, log: &Path) -> Broker {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Broker::start(config, dir, addr, log)
}

/// For each `i` of `ids`, sends a QoS 1 PUBLISH of `out{i}` to `stream/1`
/// (identifier `i`) and a QoS 2 PUBLISH of `two{i}` to `stream/2`
/// (identifier `10000 + i`) without waiting, then reads until `wait_for`
/// acknowledgements came (PUBACK, or PUBREC, answered with PUBREL): the
/// payloads acknowledged go to `acked`.
async fn pipeline(
    raw: &mut RawClient,
    ids: std::ops::RangeInclusive<u16>,
    wait_for: usize,
    acked: &mut Vec<String>,
) {
    for i in ids.clone() {
        for (topic, payload, qos, id) in [
            ("stream/1", format!("out{i}"), QoS::AtLeastOnce, i),
            ("stream/2", format!("two{i}"), QoS::ExactlyOnce, 10_000 + i),
        ] {
            let p = packets::publish(topic, payload.as_bytes(), qos, id);
            raw.send(&Packet::Publish(p)).await.unwrap();
        }
    }
    let mut n = 0;
    while n < wait_for {
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::PubAck(a)) => {
                acked.push(format!("out{}", a.packet_id.get()));
                n += 1;
            }
            Received::Packet(Packet::PubRec(a)) => {
                acked.push(format!("two{}", a.packet_id.get() - 10_000));
                n += 1;
                let _ = raw.send(&Packet::PubRel(Ack::new(a.packet_id))).await;
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
async fn every_acknowledged_message_crosses_a_bridge_to_mosquitto_across_a_sigkill() {
    if Mosquitto::binary().is_none() {
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(&dir.path().join("mosquitto"), "", &[]);
    across_a_sigkill(dir.path(), mosquitto.addr).await;
}

/// The same with another broker of ours as the remote one (it stays up):
/// a QoS 2 packet identifier it still holds unreleased after the crash
/// must not be reused for another message, which it would take for a
/// duplicate [MQTT-4.3.3-10] (mosquitto, more lenient, would take it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_crosses_a_bridge_to_a_broker_of_ours_across_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let remote = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = d.join("remote.toml");
    std::fs::write(&config, "max_queued_messages = 100000\n").unwrap();
    let _remote = start_broker(
        &config,
        &d.join("remote-data"),
        remote,
        &d.join("remote.log"),
    );
    across_a_sigkill(d, remote).await;
}

/// The scenario, against the remote broker at `remote` (up all along).
async fn across_a_sigkill(d: &Path, remote: SocketAddr) {
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
max_inflight_messages = 10
receive_maximum = 10
[[bridge.topic]]
pattern = "stream/#"
direction = "out"
qos = 1
remote_prefix = "site/"
[[bridge.topic]]
pattern = "stream/2"
direction = "out"
qos = 2
remote_prefix = "site/"
[[bridge.topic]]
pattern = "cmd/#"
direction = "in"
qos = 1
remote_prefix = "site/"
"##,
            remote
        ),
    )
    .unwrap();
    let data = d.join("data");
    let log = d.join("broker.log");
    let mut broker = start_broker(&config, &data, addr, &log);

    // The subscribers: persistent sessions, there and here.
    let remote_sub = Collector::start(
        remote,
        "remote-sub",
        false,
        "site/stream/#",
        QoS::AtLeastOnce,
    )
    .await;
    let local_sub = Collector::start(addr, "local-sub", false, "cmd/#", QoS::AtLeastOnce).await;
    let (mut remote_pub, _) = RawClient::connect(
        remote,
        packets::connect(ProtocolVersion::V3_1_1, "remote-pub"),
    )
    .await;
    // The bridge's subscription there is in place once a message crosses:
    // it was made at the bridge's first connection, and its session there
    // is persistent from then on.
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
    // bridge has messages queued for the remote broker (it has at most
    // max_inflight_messages = 10 in flight) and messages from it in flight.
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
    let kill_after = 500;
    pipeline(&mut publisher, 1..=300, kill_after, &mut acked).await;
    // Killed once part of the stream has crossed: delivered (and removed
    // from the store), in flight, and queued, all at once.
    remote_sub
        .wait_until("the stream under way", LONG, |r| r.len() >= 100)
        .await;
    broker.kill();
    // Down for a while: the remote broker keeps what comes for the bridge.
    for j in 1..=20u16 {
        let p = packets::publish(
            "site/cmd/x",
            format!("down{j}").as_bytes(),
            QoS::AtLeastOnce,
            3000 + j,
        );
        remote_pub.send(&Packet::Publish(p)).await.unwrap();
    }
    broker = start_broker(&config, &data, addr, &log);
    let (mut publisher, _) =
        RawClient::connect(addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    pipeline(
        &mut publisher,
        301..=total,
        2 * usize::from(total - 300),
        &mut acked,
    )
    .await;
    assert!(acked.len() >= kill_after + 2 * usize::from(total - 300));
    let restored = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    let field = |name: &str| -> Vec<u64> {
        restored
            .lines()
            .filter(|l| l.contains("persistent state restored"))
            .filter_map(|l| l.split(name).nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    };
    let queued = field(" queued=");
    eprintln!(
        "restored after the kill: {queued:?} queued messages, {:?} QoS 2 identifiers held",
        field(" inflight=")
    );
    assert!(
        queued.last().is_some_and(|&n| n > 0 && n < 600),
        "the kill found nothing queued for the remote broker, or nothing sent: {queued:?} (see {})",
        log.display()
    );

    let got = remote_sub
        .wait_until("every acknowledged message there", LONG, |r| {
            let p = payloads(r);
            acked.iter().all(|a| p.contains(a))
        })
        .await;
    // In order, first arrivals (duplicates allowed at QoS 1, and at QoS 2
    // across this broker's crash).
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
        .wait_until(
            "every message the remote broker accepted, here",
            LONG,
            |r| {
                let p = payloads(r);
                wanted.iter().all(|w| p.contains(w))
            },
        )
        .await;
    drop(broker);
}
