//! Crash tests: the real `mqtt broker --data-dir` killed with SIGKILL in
//! the middle of QoS 1 and QoS 2 traffic to persistent sessions, then
//! restarted on the same directory. Every message whose PUBACK or PUBREC
//! the publisher received must reach every persistent subscriber — QoS 2
//! exactly once — and retained messages must be intact. Repeated at
//! several kill points.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Connect, Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, Received, packets};

mod common;

use common::Broker;

/// `mqtt broker --data-dir DIR` on `port` (0: a free one), once it accepts.
fn start_broker(dir: &Path, port: u16) -> Broker {
    let port = if port == 0 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    } else {
        port
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(dir.with_extension(format!("{port}.log"))).unwrap();
    // Offline queues hold the whole run: a full queue drops by policy
    // (counted), which is not what this test is about.
    let config = dir.with_extension("toml");
    std::fs::write(&config, "max_queued_messages = 100000\n").unwrap();
    Broker::start(&config, dir, addr, log)
}

fn connect(id: &str, clean_start: bool) -> Connect {
    let mut c = packets::connect(ProtocolVersion::V5, id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// A subscriber that acknowledges everything and keeps, as a real client
/// must across reconnections, the QoS 2 identifiers it has answered with
/// PUBREC and not seen released: a PUBLISH with one of them is a duplicate
/// and is not delivered again.
#[derive(Default)]
struct Subscriber {
    /// How many times each payload was delivered to the application.
    delivered: HashMap<String, u32>,
    awaiting_rel: HashSet<PacketId>,
}

impl Subscriber {
    /// Handles one packet; false if it was not a PUBLISH flow packet.
    async fn handle(&mut self, raw: &mut RawClient, packet: Packet) {
        match packet {
            Packet::Publish(p) => {
                let payload = String::from_utf8(p.payload.to_vec()).unwrap();
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        *self.delivered.entry(payload).or_default() += 1;
                        let _ = raw.send(&Packet::PubAck(Ack::new(id))).await;
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        if self.awaiting_rel.insert(id) {
                            *self.delivered.entry(payload).or_default() += 1;
                        } else {
                            assert!(p.dup, "a QoS 2 identifier reused before PUBREL");
                        }
                        let _ = raw.send(&Packet::PubRec(Ack::new(id))).await;
                    }
                    _ => {
                        *self.delivered.entry(payload).or_default() += 1;
                    }
                }
            }
            Packet::PubRel(a) => {
                self.awaiting_rel.remove(&a.packet_id);
                let _ = raw.send(&Packet::PubComp(Ack::new(a.packet_id))).await;
            }
            _ => {}
        }
    }

    /// Takes everything until `quiet` passes without a packet, or the
    /// connection closes.
    async fn drain(&mut self, raw: &mut RawClient, quiet: Duration) {
        loop {
            match raw.next(quiet).await {
                Received::Packet(p) => self.handle(raw, p).await,
                _ => return,
            }
        }
    }
}

async fn subscribe(raw: &mut RawClient) {
    raw.send(&Packet::Subscribe(packets::subscribe(
        1,
        &[("crash/1", QoS::AtLeastOnce), ("crash/2", QoS::ExactlyOnce)],
    )))
    .await
    .unwrap();
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.reason_codes,
            vec![ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS2]
        ),
        other => panic!("SUBACK expected, got {other:?}"),
    }
}

/// What the publisher was told before the broker died.
#[derive(Default, Debug)]
struct Acknowledged {
    qos1: Vec<String>,
    qos2: Vec<String>,
}

/// Publishes numbered QoS 1 (`crash/1`) and QoS 2 (`crash/2`) messages
/// alternately, 32 in flight, and kills the broker once `kill_after`
/// acknowledgements have arrived; returns every acknowledgement received
/// until the connection died.
async fn publish_until_killed(broker: &mut Broker, kill_after: usize) -> Acknowledged {
    let (mut raw, _) = RawClient::connect(broker.addr, connect("crash-pub", true)).await;
    let mut acked = Acknowledged::default();
    let mut inflight: HashMap<PacketId, (QoS, String)> = HashMap::new();
    let mut free: Vec<u16> = (1..=32).rev().collect();
    let mut n = 0u64;
    let mut killed = false;
    loop {
        while !killed && let Some(id) = free.pop() {
            let qos = if n.is_multiple_of(2) {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let topic = if qos == QoS::AtLeastOnce {
                "crash/1"
            } else {
                "crash/2"
            };
            let payload = format!("m{n}");
            n += 1;
            let p = packets::publish(topic, payload.as_bytes(), qos, id);
            if raw.send(&Packet::Publish(p)).await.is_err() {
                break;
            }
            inflight.insert(packets::pid(id), (qos, payload));
        }
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::PubAck(a)) => {
                assert_eq!(a.reason_code, ReasonCode::Success);
                let (_, payload) = inflight.remove(&a.packet_id).unwrap();
                acked.qos1.push(payload);
                free.push(a.packet_id.get());
            }
            Received::Packet(Packet::PubRec(a)) => {
                assert_eq!(a.reason_code, ReasonCode::Success);
                let (_, payload) = inflight.get(&a.packet_id).unwrap().clone();
                acked.qos2.push(payload);
                let _ = raw.send(&Packet::PubRel(Ack::new(a.packet_id))).await;
            }
            Received::Packet(Packet::PubComp(a)) => {
                inflight.remove(&a.packet_id);
                free.push(a.packet_id.get());
            }
            Received::Packet(other) => panic!("unexpected {other:?}"),
            Received::Closed => return acked,
            other => panic!("publisher: {other:?}"),
        }
        if !killed && acked.qos1.len() + acked.qos2.len() >= kill_after {
            broker.kill();
            killed = true;
        }
    }
}

async fn crash_at(kill_after: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut broker = start_broker(&dir, 0);
    let port = broker.addr.port();

    // A retained message, and a persistent subscriber that goes offline.
    let (mut admin, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "admin")).await;
    let mut r = packets::publish("crash/retained", b"kept", QoS::AtLeastOnce, 1);
    r.retain = true;
    admin.send(&Packet::Publish(r)).await.unwrap();
    assert!(matches!(admin.recv().await, Some(Packet::PubAck(_))));
    drop(admin);
    let (mut offline, _) = RawClient::connect(broker.addr, connect("crash-offline", true)).await;
    subscribe(&mut offline).await;
    offline
        .send(&Packet::from(Disconnect::new(ReasonCode::Success)))
        .await
        .unwrap();
    drop(offline);
    // And one that stays connected, acknowledging as messages come.
    let (mut online_raw, _) = RawClient::connect(broker.addr, connect("crash-online", true)).await;
    subscribe(&mut online_raw).await;
    let online_task = tokio::spawn(async move {
        let mut s = Subscriber::default();
        s.drain(&mut online_raw, Duration::from_secs(30)).await;
        s
    });

    let acked = publish_until_killed(&mut broker, kill_after).await;
    let mut online = online_task.await.unwrap();
    drop(broker);

    let restarted = Instant::now();
    let broker = start_broker(&dir, port);
    let recovery = restarted.elapsed();
    let (mut raw, ack) = RawClient::connect(broker.addr, connect("crash-online", false)).await;
    assert!(ack.session_present);
    online.drain(&mut raw, Duration::from_millis(1500)).await;
    let (mut raw, ack) = RawClient::connect(broker.addr, connect("crash-offline", false)).await;
    assert!(ack.session_present);
    let mut offline = Subscriber::default();
    offline.drain(&mut raw, Duration::from_millis(1500)).await;

    for (name, s) in [("online", &online), ("offline", &offline)] {
        for m in &acked.qos1 {
            assert!(
                s.delivered.contains_key(m),
                "kill after {kill_after}: {name} lost acknowledged QoS 1 message {m}"
            );
        }
        for m in &acked.qos2 {
            assert!(
                s.delivered.contains_key(m),
                "kill after {kill_after}: {name} lost acknowledged QoS 2 message {m}"
            );
        }
        // Every QoS 2 message (acknowledged or not) at most once.
        for (m, count) in &s.delivered {
            let n: u64 = m[1..].parse().unwrap();
            if n % 2 == 1 {
                assert_eq!(
                    *count, 1,
                    "kill after {kill_after}: {name} got QoS 2 message {m} {count} times"
                );
            }
        }
    }
    let (mut fresh, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "fresh")).await;
    fresh
        .send(&Packet::Subscribe(packets::subscribe(
            1,
            &[("crash/retained", QoS::AtLeastOnce)],
        )))
        .await
        .unwrap();
    assert!(matches!(fresh.recv().await, Some(Packet::SubAck(_))));
    match fresh.recv().await {
        Some(Packet::Publish(p)) => {
            assert!(p.retain);
            assert_eq!(&p.payload[..], b"kept");
        }
        other => panic!("kill after {kill_after}: retained message expected, got {other:?}"),
    }
    eprintln!(
        "kill after {kill_after}: {} QoS 1 and {} QoS 2 acknowledged; online got {}, offline got {}; restart took {recovery:?}",
        acked.qos1.len(),
        acked.qos2.len(),
        online.delivered.len(),
        offline.delivered.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_traffic_loses_no_acknowledged_message() {
    for kill_after in [1, 25, 200, 1500] {
        crash_at(kill_after).await;
    }
}

/// Where one message of [`BacklogPublisher`] stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Not sent yet.
    Queued,
    /// PUBLISH sent, no PUBREC yet.
    Published,
    /// PUBREC received, PUBREL sent.
    Released,
    /// PUBCOMP received.
    Completed,
}

/// A persistent QoS 2 publisher that behaves as paho-mqtt does: message
/// `i` has packet identifier `i + 1`; at most `window` are in flight while
/// connected; after reconnecting it sends, at once and in order, PUBREL
/// for every released message, PUBLISH with DUP for every published one
/// and PUBLISH for every queued one: its whole backlog, beyond the
/// broker's Receive Maximum.
struct BacklogPublisher {
    stages: Vec<Stage>,
    window: usize,
}

const BACKLOG_TOPIC: &str = "backlog/t";

impl BacklogPublisher {
    fn payload(i: usize) -> String {
        format!("b{i}")
    }

    fn publish(i: usize, dup: bool) -> Packet {
        let id = u16::try_from(i + 1).unwrap();
        let mut p = packets::publish(
            BACKLOG_TOPIC,
            Self::payload(i).as_bytes(),
            QoS::ExactlyOnce,
            id,
        );
        p.dup = dup;
        Packet::Publish(p)
    }

    fn completed(&self) -> usize {
        self.stages
            .iter()
            .filter(|s| **s == Stage::Completed)
            .count()
    }

    /// Handles an acknowledgement. `resumed`: after the restart, where a
    /// PUBREL resent for a message the broker completed before the crash
    /// may be answered with PUBCOMP 0x92.
    async fn on_ack(&mut self, raw: &mut RawClient, packet: Packet, resumed: bool) {
        match packet {
            Packet::PubRec(a) => {
                assert_eq!(a.reason_code, ReasonCode::Success, "PUBREC {a:?}");
                let i = usize::from(a.packet_id.get()) - 1;
                assert_ne!(self.stages[i], Stage::Completed, "PUBREC after PUBCOMP");
                self.stages[i] = Stage::Released;
                let _ = raw.send(&Packet::PubRel(Ack::new(a.packet_id))).await;
            }
            Packet::PubComp(a) => {
                let found = a.reason_code == ReasonCode::Success;
                assert!(found || resumed, "PUBCOMP {a:?}");
                self.stages[usize::from(a.packet_id.get()) - 1] = Stage::Completed;
            }
            other => panic!("publisher: unexpected {other:?}"),
        }
    }

    /// Publishes within the window until `kill_after` messages are
    /// completed, kills the broker, and takes what arrived before the
    /// connection died.
    async fn run_until_killed(&mut self, broker: &mut Broker, kill_after: usize) {
        let (mut raw, _) = RawClient::connect(broker.addr, connect("backlog-pub", true)).await;
        let mut killed = false;
        loop {
            let in_flight = self
                .stages
                .iter()
                .filter(|s| matches!(s, Stage::Published | Stage::Released))
                .count();
            if !killed && in_flight < self.window {
                let next = self.stages.iter().position(|s| *s == Stage::Queued);
                if let Some(i) = next {
                    raw.send(&Self::publish(i, false)).await.unwrap();
                    self.stages[i] = Stage::Published;
                    continue;
                }
            }
            match raw.next(Duration::from_secs(10)).await {
                Received::Packet(p) => self.on_ack(&mut raw, p, false).await,
                Received::Closed if killed => return,
                other => panic!("publisher before the kill: {other:?}"),
            }
            if !killed && self.completed() >= kill_after {
                broker.kill();
                killed = true;
            }
        }
    }

    /// Reconnects, sends the whole backlog at once, and completes every
    /// message on this one connection: the broker must not close it.
    async fn resume(&mut self, broker: &Broker) {
        let (mut raw, ack) = RawClient::connect(broker.addr, connect("backlog-pub", false)).await;
        assert!(ack.session_present);
        let mut backlog = bytes::BytesMut::new();
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let packet = match *stage {
                Stage::Released => {
                    Packet::PubRel(Ack::new(packets::pid(u16::try_from(i + 1).unwrap())))
                }
                Stage::Published => Self::publish(i, true),
                Stage::Queued => {
                    *stage = Stage::Published;
                    Self::publish(i, false)
                }
                Stage::Completed => continue,
            };
            packet.encode(ProtocolVersion::V5, &mut backlog).unwrap();
        }
        raw.send_bytes(&backlog).await.unwrap();
        while self.completed() < self.stages.len() {
            match raw.next(Duration::from_secs(10)).await {
                Received::Packet(p) => self.on_ack(&mut raw, p, true).await,
                other => panic!(
                    "the broker did not complete the backlog on one connection ({} of {} completed): {other:?}",
                    self.completed(),
                    self.stages.len()
                ),
            }
        }
    }
}

/// Takes deliveries until `n` distinct messages arrived (then a short
/// quiet, for duplicates) or the connection closes.
async fn collect(s: &mut Subscriber, raw: &mut RawClient, n: usize) {
    while s.delivered.len() < n {
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(p) => s.handle(raw, p).await,
            _ => return,
        }
    }
    s.drain(raw, Duration::from_millis(300)).await;
}

/// SIGKILL while a persistent QoS 2 publisher with a backlog beyond its
/// window and a persistent QoS 2 subscriber are both connected, then a
/// restart: the publisher resends its whole backlog at once, as paho-mqtt
/// does, more than the broker's Receive Maximum (1024). Every message is
/// completed on the first connection after the restart (no protocol-error
/// loop) and reaches the subscriber exactly once [MQTT-4.3.3-10].
async fn backlog_crash_at(kill_after: usize, n: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut broker = start_broker(&dir, 0);
    let port = broker.addr.port();

    let (mut sub_raw, _) = RawClient::connect(broker.addr, connect("backlog-sub", true)).await;
    sub_raw
        .send(&Packet::Subscribe(packets::subscribe(
            1,
            &[(BACKLOG_TOPIC, QoS::ExactlyOnce)],
        )))
        .await
        .unwrap();
    assert!(matches!(sub_raw.recv().await, Some(Packet::SubAck(_))));
    let before = tokio::spawn(async move {
        let mut s = Subscriber::default();
        collect(&mut s, &mut sub_raw, n).await;
        s
    });

    let mut publisher = BacklogPublisher {
        stages: vec![Stage::Queued; n],
        window: 20,
    };
    publisher.run_until_killed(&mut broker, kill_after).await;
    let completed_before = publisher.completed();
    let mut sub = before.await.unwrap();
    drop(broker);

    let broker = start_broker(&dir, port);
    let (mut sub_raw, ack) = RawClient::connect(broker.addr, connect("backlog-sub", false)).await;
    assert!(ack.session_present);
    let after = tokio::spawn(async move {
        collect(&mut sub, &mut sub_raw, n).await;
        sub
    });
    publisher.resume(&broker).await;
    let sub = after.await.unwrap();

    let missing: Vec<usize> = (0..n)
        .filter(|i| !sub.delivered.contains_key(&BacklogPublisher::payload(*i)))
        .collect();
    assert!(
        missing.is_empty(),
        "kill after {kill_after}: {} completed messages never delivered, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let duplicated: Vec<(&String, &u32)> = sub.delivered.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        duplicated.is_empty(),
        "kill after {kill_after}: {} messages delivered more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(sub.delivered.len(), n);
    eprintln!(
        "kill after {kill_after}: {completed_before} completed before the kill, a backlog of {} resent at once; {n} delivered once each",
        n - completed_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_persistent_clients_connected_and_a_backlog_beyond_the_window_is_exactly_once()
{
    for kill_after in [1, 500, 1400] {
        backlog_crash_at(kill_after, 2500).await;
    }
}
