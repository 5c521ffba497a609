//! What the bridge tests share: configurations, waiting for a bridge to
//! connect, publishing with a scripted client, counting, metrics, and a
//! fake remote broker.

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_codec::{Ack, Packet, ProtocolVersion, QoS};
use mqtt_server::Config;
use mqtt_testkit::mosquitto::{Mosquitto, free_port};
use mqtt_testkit::{Collected, Collector, RawClient, Received, packets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the slowest expectation may take (a reconnection with backoff, a
/// mosquitto restart) on a loaded CI machine.
pub(crate) const LONG: Duration = Duration::from_secs(30);

pub(crate) fn have_mosquitto() -> bool {
    let found = Mosquitto::binary().is_some();
    if !found {
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
    }
    found
}

/// A configuration of ours from TOML (`listen` is the test broker's).
pub(crate) fn config(toml: &str) -> Config {
    Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// Waits until the bridge `name` of the broker at `addr` says it is
/// connected (`$SYS/broker/connection/NAME/state` is "1").
pub(crate) async fn wait_connected(addr: SocketAddr, name: &str) {
    let topic = format!("$SYS/broker/connection/{name}/state");
    let id = format!("state-{name}-{}", free_port());
    let state = Collector::start(addr, &id, true, &topic, QoS::AtMostOnce).await;
    state
        .wait_until("the bridge connected", LONG, |r| {
            r.last()
                .is_some_and(|m| m.payload == "1" && m.topic == topic)
        })
        .await;
}

/// Publishes with `raw` and waits for the end of the flow.
pub(crate) async fn publish(raw: &mut RawClient, topic: &str, payload: &str, qos: QoS, id: u16) {
    publish_retained(raw, topic, payload, qos, id, false).await;
}

/// [`publish`], with the RETAIN flag `retain`.
pub(crate) async fn publish_retained(
    raw: &mut RawClient,
    topic: &str,
    payload: &str,
    qos: QoS,
    id: u16,
    retain: bool,
) {
    let mut p = packets::publish(topic, payload.as_bytes(), qos, id);
    p.retain = retain;
    raw.send(&Packet::Publish(p)).await.unwrap();
    let pid = packets::pid(id);
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => match raw.next(LONG).await {
            Received::Packet(Packet::PubAck(a)) if a.packet_id == pid => {}
            other => panic!("expected PUBACK {id}, got {other:?}"),
        },
        QoS::ExactlyOnce => {
            match raw.next(LONG).await {
                Received::Packet(Packet::PubRec(a)) if a.packet_id == pid => {}
                other => panic!("expected PUBREC {id}, got {other:?}"),
            }
            raw.send(&Packet::PubRel(Ack::new(pid))).await.unwrap();
            match raw.next(LONG).await {
                Received::Packet(Packet::PubComp(a)) if a.packet_id == pid => {}
                other => panic!("expected PUBCOMP {id}, got {other:?}"),
            }
        }
    }
}

/// How many times each payload arrived.
pub(crate) fn counts(received: &[Collected]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in received {
        *out.entry(r.payload.clone()).or_insert(0) += 1;
    }
    out
}

/// One sample of the Prometheus page of the broker whose metrics listen
/// on `port`, e.g. `mqtt_bridge_messages_sent_total{bridge="b"}`.
pub(crate) async fn metric(port: u16, sample: &str) -> u64 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in the metrics"))
}

/// Waits until the metric `sample` satisfies `ok`.
pub(crate) async fn wait_metric(port: u16, sample: &str, ok: impl Fn(u64) -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let v = metric(port, sample).await;
        if ok(v) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} stays at {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `probe` on `topic` with `raw` every 100 ms until `sub` has
/// received it: the bridge's subscription at the remote broker is then in
/// place (it is made after CONNACK, and not waited for).
pub(crate) async fn probe(raw: &mut RawClient, topic: &str, sub: &Collector) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        publish(raw, topic, "probe", QoS::AtMostOnce, 1).await;
        let got = sub.received().iter().any(|r| r.payload == "probe");
        if got {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge's remote subscription never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Accepts a connection on `listener` and reads its CONNECT.
pub(crate) async fn accept_connect(
    listener: &tokio::net::TcpListener,
) -> (tokio::net::TcpStream, mqtt_codec::Connect) {
    let (mut stream, _) = tokio::time::timeout(LONG, listener.accept())
        .await
        .expect("the bridge connects")
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        let limits = mqtt_codec::DecodeLimits::default();
        match Packet::decode(&mut buf, ProtocolVersion::V3_1_1, &limits).unwrap() {
            Some(Packet::Connect(c)) => return (stream, *c),
            Some(other) => panic!("expected CONNECT, got {other:?}"),
            None => {
                let n = stream.read_buf(&mut buf).await.unwrap();
                assert!(n > 0, "closed before CONNECT");
            }
        }
    }
}

/// Answers a CONNECT with `code` (MQTT 3.1.1).
pub(crate) async fn connack(stream: &mut tokio::net::TcpStream, code: mqtt_codec::ReasonCode) {
    let mut buf = bytes::BytesMut::new();
    Packet::from(mqtt_codec::ConnAck::new(code, false))
        .encode(ProtocolVersion::V3_1_1, &mut buf)
        .unwrap();
    stream.write_all(&buf).await.unwrap();
}
