//! Crash tests: the real `mqtt broker --data-dir` killed with SIGKILL in
//! the middle of QoS 1 and QoS 2 traffic to persistent sessions, then
//! restarted on the same directory. Every message whose PUBACK or PUBREC
//! the publisher received must reach every persistent subscriber — QoS 2
//! exactly once — and retained messages must be intact. Repeated at
//! several kill points.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Connect, Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, Received, packets};

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");

/// The broker process; killed (SIGKILL) when dropped.
struct Broker {
    child: Child,
    addr: SocketAddr,
}

impl Broker {
    /// `mqtt broker --data-dir DIR` on `port` (0: a free one), once it accepts.
    fn start(dir: &Path, port: u16) -> Broker {
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
        let child = Command::new(MQTT)
            .args(["broker", "--log-level", "info", "--config"])
            .arg(&config)
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
        Broker { child, addr }
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
    let mut broker = Broker::start(&dir, 0);
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
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
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
    let broker = Broker::start(&dir, port);
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
