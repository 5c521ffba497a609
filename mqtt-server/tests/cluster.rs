//! Three brokers in one cluster on one NATS server (JetStream), each
//! started in this process on 127.0.0.1:0, with real MQTT clients on
//! their sockets. Interest spreads asynchronously: a test waits, polling
//! with a deadline, until node A knows the others' subscriptions before it
//! publishes. Skipped (printed) without a `nats-server` binary, unless
//! `NATS_REQUIRE=1`.
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used)]

#[path = "cluster/nats.rs"]
mod nats;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_server::{ClusterConfig, ClusterHandle, Config, Server, ShutdownHandle};
use mqtt_testkit::{RawClient, Received, packets};
use nats::Nats;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    addr: SocketAddr,
    cluster: ClusterHandle,
    shutdown: ShutdownHandle,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

async fn node(nats: &Nats, name: &str) -> Node {
    node_with(nats, name, None).await
}

/// A node, with persistence in `data_dir` if given.
async fn node_with(nats: &Nats, name: &str, data_dir: Option<&std::path::Path>) -> Node {
    // `$SYS` every second: the liveness test reads it.
    let mut config = Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        sys_interval: 1,
        cluster: Some(ClusterConfig {
            urls: vec![nats.url()],
            node: Some(name.into()),
            node_ttl: 3,
            ack_timeout: 2,
            ..ClusterConfig::default()
        }),
        ..Config::default()
    };
    if let Some(dir) = data_dir {
        config.persistence = true;
        config.data_dir = dir.to_path_buf();
    }
    let server = Server::bind(config).await.unwrap();
    let node = Node {
        addr: server.local_addrs()[0],
        cluster: server.cluster().unwrap(),
        shutdown: server.shutdown_handle(),
    };
    tokio::spawn(server.run());
    node
}

async fn three(nats: &Nats) -> (Node, Node, Node) {
    // RUST_LOG=mqtt_server=debug shows what the nodes did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let nodes = (
        node(nats, "a").await,
        node(nats, "b").await,
        node(nats, "c").await,
    );
    for n in [&nodes.0, &nodes.1, &nodes.2] {
        poll(|| n.cluster.is_ready(), "a node connected to NATS").await;
    }
    nodes
}

/// Waits until `cond` holds, at most [`WAIT`].
async fn poll(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn client(addr: SocketAddr, v: ProtocolVersion, id: &str) -> RawClient {
    RawClient::connect(addr, packets::connect(v, id)).await.0
}

async fn subscribe(c: &mut RawClient, filter: &str, qos: QoS) {
    c.send(&Packet::Subscribe(packets::subscribe(1, &[(filter, qos)])))
        .await
        .unwrap();
    match c.next(WAIT).await {
        Received::Packet(Packet::SubAck(_)) => {}
        other => panic!("SUBACK expected, got {other:?}"),
    }
}

/// Publishes and completes the flow: the reason code of the PUBACK or
/// PUBREC (`None` at QoS 0; `Closed` when the broker closed instead).
async fn publish(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: u16,
) -> Result<Option<ReasonCode>, Received> {
    let mut p = packets::publish(topic, payload, qos, id);
    p.retain = retain;
    c.send(&Packet::Publish(p)).await.unwrap();
    match qos {
        QoS::AtMostOnce => Ok(None),
        QoS::AtLeastOnce => match c.next(WAIT).await {
            Received::Packet(Packet::PubAck(a)) => Ok(Some(a.reason_code)),
            other => Err(other),
        },
        QoS::ExactlyOnce => match c.next(WAIT).await {
            Received::Packet(Packet::PubRec(a)) => {
                if a.reason_code.is_error() {
                    return Ok(Some(a.reason_code));
                }
                c.send(&Packet::PubRel(Ack::new(a.packet_id)))
                    .await
                    .unwrap();
                match c.next(WAIT).await {
                    Received::Packet(Packet::PubComp(_)) => Ok(Some(a.reason_code)),
                    other => Err(other),
                }
            }
            other => Err(other),
        },
    }
}

/// The next `n` messages (payload, QoS, RETAIN), their flows answered
/// as packets come (PUBACK; PUBREC, and PUBCOMP for each PUBREL, which
/// may come after the next PUBLISH).
async fn receive_n(c: &mut RawClient, n: usize) -> Vec<(String, QoS, bool)> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.next(WAIT).await {
            Received::Packet(Packet::Publish(p)) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        c.send(&Packet::PubAck(Ack::new(id))).await.unwrap()
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        c.send(&Packet::PubRec(Ack::new(id))).await.unwrap()
                    }
                    _ => {}
                }
                got.push((
                    String::from_utf8(p.payload.to_vec()).unwrap(),
                    p.qos,
                    p.retain,
                ));
            }
            Received::Packet(Packet::PubRel(r)) => c
                .send(&Packet::PubComp(Ack::new(r.packet_id)))
                .await
                .unwrap(),
            other => panic!("PUBLISH expected, got {other:?}"),
        }
    }
    got
}

/// The next message.
async fn receive(c: &mut RawClient) -> (String, QoS, bool) {
    receive_n(c, 1).await.remove(0)
}

/// Publisher on A, subscribers on B and C, at QoS 0, 1 and 2 of protocol
/// version `v`: each subscriber receives each message once, in the order
/// published [MQTT-4.6.0-6], at the QoS it subscribed with
/// [MQTT-3.3.4-2]; the end marker coming right after the last message
/// shows that nothing came twice.
async fn fan_out_across_nodes(v: ProtocolVersion, test: &str) {
    let Some(nats) = Nats::start(test) else {
        return;
    };
    let (a, b, c) = three(&nats).await;
    let tag = if v.is_v5() { "v5" } else { "v311" };
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("fan/{tag}/{}", qos as u8);
        let mut subs = Vec::new();
        for (n, node) in [("b", &b), ("c", &c)] {
            let mut s = client(node.addr, v, &format!("{tag}-sub-{n}-{}", qos as u8)).await;
            subscribe(&mut s, &topic, qos).await;
            subs.push(s);
        }
        poll(
            || a.cluster.nodes_for(&topic) == ["b", "c"],
            "node a knows the subscriptions of b and c",
        )
        .await;
        let mut p = client(a.addr, v, &format!("{tag}-pub-{}", qos as u8)).await;
        const N: u16 = 30;
        for i in 1..=N + 1 {
            let payload = if i > N {
                "end".to_string()
            } else {
                format!("m{i}")
            };
            let code = publish(&mut p, &topic, payload.as_bytes(), qos, false, i)
                .await
                .unwrap();
            assert!(code.is_none_or(|c| !c.is_error()), "{payload}: {code:?}");
        }
        let expected: Vec<(String, QoS, bool)> = (1..=N)
            .map(|i| format!("m{i}"))
            .chain(["end".to_string()])
            .map(|m| (m, qos, false))
            .collect();
        for s in &mut subs {
            // In order, none lost; the end marker right after the last
            // shows that none came twice.
            assert_eq!(
                receive_n(s, expected.len()).await,
                expected,
                "{tag} QoS {qos:?}"
            );
        }
    }
}

#[tokio::test]
async fn mqtt_311_messages_published_on_a_reach_subscribers_on_b_and_c_once_in_order() {
    fan_out_across_nodes(ProtocolVersion::V3_1_1, "mqtt_311_fan_out").await;
}

#[tokio::test]
async fn mqtt_5_messages_published_on_a_reach_subscribers_on_b_and_c_once_in_order() {
    fan_out_across_nodes(ProtocolVersion::V5, "mqtt_5_fan_out").await;
}

/// A message goes only to nodes with a matching subscription: with a
/// subscriber on B alone, C receives nothing from the cluster.
#[tokio::test]
async fn a_message_goes_only_to_nodes_with_a_matching_subscription() {
    let Some(nats) = Nats::start("only_interested_nodes") else {
        return;
    };
    let (a, b, c) = three(&nats).await;
    let mut s = client(b.addr, ProtocolVersion::V5, "only-b").await;
    subscribe(&mut s, "only/+", QoS::AtLeastOnce).await;
    poll(
        || a.cluster.nodes_for("only/x") == ["b"],
        "a knows b's interest",
    )
    .await;
    assert!(a.cluster.nodes_for("other").is_empty());
    let mut p = client(a.addr, ProtocolVersion::V5, "only-pub").await;
    let code = publish(&mut p, "only/x", b"hello", QoS::AtLeastOnce, false, 1)
        .await
        .unwrap();
    assert_eq!(code, Some(ReasonCode::Success));
    assert_eq!(receive(&mut s).await.0, "hello");
    // C's view agrees: only B wants it.
    assert_eq!(c.cluster.nodes_for("only/x"), ["b"]);
}

/// A retained message published on A is delivered to a client that
/// subscribes on C afterwards [MQTT-3.3.1-9], with RETAIN set
/// [MQTT-3.3.1-8], once C has loaded it from the cluster.
#[tokio::test]
async fn a_retained_message_set_on_a_is_received_on_subscribe_at_c() {
    let Some(nats) = Nats::start("retained_across_nodes") else {
        return;
    };
    let (a, _b, c) = three(&nats).await;
    let mut p = client(a.addr, ProtocolVersion::V5, "ret-pub").await;
    let code = publish(&mut p, "ret/t", b"kept", QoS::AtLeastOnce, true, 1)
        .await
        .unwrap();
    // Acknowledged: the cluster's retained bucket holds it.
    assert_eq!(code, Some(ReasonCode::Success));
    let deadline = Instant::now() + WAIT;
    let mut round = 0;
    loop {
        round += 1;
        let mut s = client(c.addr, ProtocolVersion::V5, &format!("ret-sub-{round}")).await;
        subscribe(&mut s, "ret/#", QoS::AtLeastOnce).await;
        match s.next(Duration::from_millis(200)).await {
            Received::Packet(Packet::Publish(m)) => {
                assert_eq!(&m.payload[..], b"kept");
                assert!(
                    m.retain,
                    "a retained message at subscription has RETAIN set"
                );
                break;
            }
            Received::TimedOut => {
                assert!(
                    Instant::now() < deadline,
                    "C never had the retained message"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// With NATS stopped, a QoS 1 publication on A for a subscriber on B is
/// refused, never acknowledged: MQTT 5.0 with 0x80 in the PUBACK, MQTT
/// 3.1.1 (which cannot refuse) by closing the connection. Once NATS is
/// back, publications are accepted again and reach B.
#[tokio::test]
async fn qos1_is_refused_while_nats_is_stopped_and_accepted_after_it_restarts() {
    let Some(mut nats) = Nats::start("refused_without_nats") else {
        return;
    };
    let (a, b, _c) = three(&nats).await;
    let mut s = client(b.addr, ProtocolVersion::V5, "down-sub").await;
    subscribe(&mut s, "down/t", QoS::AtLeastOnce).await;
    poll(
        || a.cluster.nodes_for("down/t") == ["b"],
        "a knows b's interest",
    )
    .await;
    let mut p = client(a.addr, ProtocolVersion::V5, "down-pub").await;
    let code = publish(&mut p, "down/t", b"before", QoS::AtLeastOnce, false, 1).await;
    assert_eq!(code.unwrap(), Some(ReasonCode::Success));
    assert_eq!(receive(&mut s).await.0, "before");

    nats.stop();
    poll(|| !a.cluster.is_ready(), "a notices that NATS is gone").await;
    let code = publish(&mut p, "down/t", b"refused", QoS::AtLeastOnce, false, 2).await;
    assert_eq!(code.unwrap(), Some(ReasonCode::UnspecifiedError));
    let mut old = client(a.addr, ProtocolVersion::V3_1_1, "down-pub-311").await;
    let refused = publish(&mut old, "down/t", b"refused", QoS::AtLeastOnce, false, 1).await;
    assert!(
        matches!(refused, Err(Received::Closed)),
        "MQTT 3.1.1: closed, not acknowledged: {refused:?}"
    );

    nats.restart();
    let deadline = Instant::now() + WAIT;
    let mut id = 3;
    loop {
        let code = publish(&mut p, "down/t", b"after", QoS::AtLeastOnce, false, id).await;
        match code.unwrap() {
            Some(ReasonCode::Success) => break,
            Some(ReasonCode::UnspecifiedError) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after NATS returned"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                id += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // What was acknowledged arrives; what was refused never does.
    assert_eq!(receive(&mut s).await.0, "after");
}

/// A node that leaves is no longer seen by the others, nor sent to.
#[tokio::test]
async fn a_node_that_leaves_is_no_longer_seen_nor_sent_to() {
    let Some(nats) = Nats::start("node_leaves") else {
        return;
    };
    let (a, b, c) = three(&nats).await;
    let mut s = client(c.addr, ProtocolVersion::V5, "leave-sub").await;
    subscribe(&mut s, "leave/#", QoS::AtMostOnce).await;
    poll(
        || {
            let mut seen = a.cluster.nodes_seen();
            seen.sort();
            seen == ["b", "c"]
        },
        "a sees b and c",
    )
    .await;
    poll(
        || a.cluster.nodes_for("leave/x") == ["c"],
        "a knows c's interest",
    )
    .await;
    // `$SYS` says it too (published every second, when it changes).
    let mut sys = client(a.addr, ProtocolVersion::V5, "leave-sys").await;
    subscribe(&mut sys, "$SYS/broker/cluster/nodes", QoS::AtMostOnce).await;
    let deadline = Instant::now() + WAIT;
    while receive(&mut sys).await.0 != "b c" {
        assert!(
            Instant::now() < deadline,
            "$SYS/broker/cluster/nodes never said b c"
        );
    }
    drop(c);
    poll(|| a.cluster.nodes_seen() == ["b"], "a no longer sees c").await;
    poll(
        || a.cluster.nodes_for("leave/x").is_empty(),
        "a forgets c's interest",
    )
    .await;
    drop(b);
}

fn taken_over(r: Received, round: usize) {
    match r {
        Received::Packet(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, ReasonCode::SessionTakenOver, "round {round}")
        }
        other => panic!("round {round}: DISCONNECT 0x8E expected, got {other:?}"),
    }
}

async fn ping(c: &mut RawClient) -> bool {
    if c.send(&Packet::PingReq).await.is_err() {
        return false;
    }
    loop {
        match c.next(WAIT).await {
            Received::Packet(Packet::PingResp) => return true,
            Received::Packet(_) => continue,
            _ => return false,
        }
    }
}

/// A client identifier connected on A, then on B: A's connection closes
/// with 0x8E (Session taken over) [MQTT-3.1.4-3], B's stays.
#[tokio::test]
async fn a_client_id_connecting_on_b_takes_over_its_connection_on_a() {
    let Some(nats) = Nats::start("takeover_across_nodes") else {
        return;
    };
    let (a, b, _c) = three(&nats).await;
    let mut first = client(a.addr, ProtocolVersion::V5, "dup").await;
    poll(|| a.cluster.owns("dup"), "a claims the client id").await;
    let mut second = client(b.addr, ProtocolVersion::V5, "dup").await;
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    poll(|| b.cluster.owns("dup"), "b claims the client id").await;
    assert!(ping(&mut second).await, "the connection on b stays");
    assert!(!a.cluster.owns("dup"));
}

/// One client identifier connecting on A and B at the same moment, round
/// after round: each time exactly one connection remains, and the other
/// is closed with 0x8E; never both, never none.
#[tokio::test]
async fn one_client_id_connecting_on_a_and_b_at_once_leaves_exactly_one() {
    let Some(nats) = Nats::start("simultaneous_takeover") else {
        return;
    };
    let (a, b, _c) = three(&nats).await;
    for round in 0..5 {
        let id = format!("race-{round}");
        let (mut on_a, mut on_b) = tokio::join!(
            client(a.addr, ProtocolVersion::V5, &id),
            client(b.addr, ProtocolVersion::V5, &id),
        );
        // The first to hear anything is the one taken over; the other
        // hears nothing.
        let a_lost = tokio::select! {
            r = on_a.next(WAIT) => { taken_over(r, round); true }
            r = on_b.next(WAIT) => { taken_over(r, round); false }
        };
        let (winner, node) = if a_lost {
            (&mut on_b, &b)
        } else {
            (&mut on_a, &a)
        };
        assert!(
            ping(winner).await,
            "round {round}: the remaining connection answers"
        );
        poll(
            || node.cluster.owns(&id),
            "the remaining connection's node owns the id",
        )
        .await;
        assert!(a.cluster.owns(&id) != b.cluster.owns(&id), "round {round}");
    }
}

/// With persistence on the receiving node, a QoS 1 message from another
/// node for a persistent session there is acknowledged to JetStream once
/// the store says it is durable (the path through the commit's callback;
/// that the acknowledgement never comes first is by construction, not
/// observed here): every message is acknowledged (nothing left pending on
/// B's consumer) and delivered when the session returns.
#[tokio::test]
async fn a_persistent_session_on_another_node_gets_every_message_and_jetstream_every_ack() {
    let Some(nats) = Nats::start("persistent_elsewhere") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = node(&nats, "a").await;
    let b = node_with(&nats, "b", Some(dir.path())).await;
    for n in [&a, &b] {
        poll(|| n.cluster.is_ready(), "a node connected to NATS").await;
    }
    let mut connect = packets::connect(ProtocolVersion::V5, "kept-on-b");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let (mut s, _) = RawClient::connect(b.addr, connect.clone()).await;
    subscribe(&mut s, "kept/#", QoS::AtLeastOnce).await;
    s.send(&Packet::from(mqtt_codec::Disconnect::new(
        ReasonCode::Success,
    )))
    .await
    .unwrap();
    let _ = s.expect_closed().await;
    poll(
        || a.cluster.nodes_for("kept/x") == ["b"],
        "a knows b's interest",
    )
    .await;

    let mut p = client(a.addr, ProtocolVersion::V5, "kept-pub").await;
    for i in 1..=5u16 {
        let code = publish(
            &mut p,
            "kept/x",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i,
        )
        .await
        .unwrap();
        assert_eq!(code, Some(ReasonCode::Success));
    }

    // B's durable consumer: everything delivered to it, and acknowledged.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("mqtt_MSGS")
        .await
        .unwrap()
        .get_consumer("node-b")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let info = consumer.info().await.unwrap();
        if info.delivered.stream_sequence >= 5 && info.num_ack_pending == 0 && info.num_pending == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not acknowledged within {WAIT:?}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut s, ack) = RawClient::connect(b.addr, connect).await;
    assert!(ack.session_present);
    let got: Vec<String> = receive_n(&mut s, 5)
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
}
