//! The session registry as clients see it: one client identifier is
//! connected at most once, however many CONNECT packets with it arrive at
//! the same moment [MQTT-3.1.4-3].
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, Received, TestBroker, packets};
use tokio::sync::Barrier;

/// Whether the connection is still open and served: PINGREQ answered.
/// A connection taken over gets DISCONNECT 0x8E (MQTT 5.0) and is closed.
async fn still_connected(raw: &mut RawClient) -> bool {
    if raw.send(&Packet::PingReq).await.is_err() {
        return false;
    }
    loop {
        match raw.next(Duration::from_secs(5)).await {
            Received::Packet(Packet::PingResp) => return true,
            Received::Packet(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::SessionTakenOver);
            }
            Received::Closed => return false,
            other => panic!("PINGRESP or a close expected, got {other:?}"),
        }
    }
}

/// Three connections send CONNECT with one client identifier at the same
/// moment, 100 rounds, clean start and resumed sessions mixed: once every
/// CONNACK is in, exactly one of them is still connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_with_one_client_id_leave_exactly_one_connected() {
    let broker = TestBroker::start(TestBroker::config()).await;
    for round in 0..100 {
        let barrier = Arc::new(Barrier::new(3));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let barrier = barrier.clone();
            let addr = broker.addr;
            tasks.push(tokio::spawn(async move {
                let mut raw = RawClient::open(addr).await.unwrap();
                let mut connect = packets::connect(ProtocolVersion::V5, "one-id");
                connect.clean_start = (round + i) % 2 == 0;
                connect.properties.session_expiry_interval = Some(60);
                raw.version = ProtocolVersion::V5;
                barrier.wait().await;
                raw.send(&Packet::Connect(Box::new(connect))).await.unwrap();
                let accepted = loop {
                    match raw.next(Duration::from_secs(10)).await {
                        Received::Packet(Packet::ConnAck(a)) => {
                            break a.reason_code == ReasonCode::Success;
                        }
                        Received::Packet(Packet::Disconnect(_)) => {}
                        Received::Closed => break false,
                        other => panic!("round {round}: CONNACK expected, got {other:?}"),
                    }
                };
                (raw, accepted)
            }));
        }
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await.unwrap());
        }
        let mut connected = 0;
        for (raw, accepted) in &mut clients {
            if *accepted && still_connected(raw).await {
                connected += 1;
            }
        }
        assert_eq!(
            connected, 1,
            "round {round}: {connected} connections with one client id"
        );
    }
}

/// A takeover carries the session's in-flight state to the new
/// connection: a QoS 1 and a QoS 2 message sent and not acknowledged are
/// sent again with DUP and their packet identifiers, and a QoS 2 message
/// whose PUBREC arrived gets its PUBREL again, not the message
/// [MQTT-4.4.0-1] [MQTT-3.1.4-3].
#[tokio::test]
async fn a_takeover_carries_in_flight_qos1_and_qos2_state_to_the_new_connection() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let connect = |clean_start: bool| {
        let mut c = packets::connect(ProtocolVersion::V5, "carried");
        c.clean_start = clean_start;
        c.properties.session_expiry_interval = Some(60);
        c
    };
    let (mut first, _) = RawClient::connect(broker.addr, connect(true)).await;
    first
        .send(&Packet::Subscribe(packets::subscribe(
            1,
            &[("c/1", QoS::AtLeastOnce), ("c/2", QoS::ExactlyOnce)],
        )))
        .await
        .unwrap();
    assert!(matches!(first.recv().await, Some(Packet::SubAck(_))));
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "p")).await;
    for (topic, payload, qos, id) in [
        ("c/1", "one", QoS::AtLeastOnce, 1),
        ("c/2", "two", QoS::ExactlyOnce, 2),
        ("c/2", "three", QoS::ExactlyOnce, 3),
    ] {
        let p = packets::publish(topic, payload.as_bytes(), qos, id);
        publisher.send(&Packet::Publish(p)).await.unwrap();
    }
    let mut sent = Vec::new();
    while sent.len() < 3 {
        match first.recv().await {
            Some(Packet::Publish(p)) => sent.push(p),
            other => panic!("PUBLISH expected, got {other:?}"),
        }
    }
    // "two" is received (PUBREC) and released by the broker; the others
    // are left unacknowledged.
    let two = sent.iter().find(|p| &p.payload[..] == b"two").unwrap();
    let two_id = two.packet_id.unwrap();
    first
        .send(&Packet::PubRec(mqtt_codec::Ack::new(two_id)))
        .await
        .unwrap();
    match first.recv().await {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, two_id),
        other => panic!("PUBREL expected, got {other:?}"),
    }

    let (mut second, ack) = RawClient::connect(broker.addr, connect(false)).await;
    assert!(ack.session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    let mut resent = Vec::new();
    while resent.len() < 3 {
        match second.recv().await {
            Some(p) => resent.push(p),
            None => panic!("the new connection closed"),
        }
    }
    for p in &sent {
        let id = p.packet_id.unwrap();
        let again = if id == two_id {
            Packet::PubRel(mqtt_codec::Ack::new(id))
        } else {
            let mut dup = p.clone();
            dup.dup = true;
            Packet::Publish(dup)
        };
        assert!(resent.contains(&again), "{again:?} not resent: {resent:?}");
    }
}
