//! Clients that break the rules, on purpose: each is cut off with the right
//! reason code, and nobody else notices.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, TestBroker, packets, v4};

/// A QoS 1 round trip through the broker, between two fresh rumqttc clients.
async fn round_trip_works(broker: &TestBroker, tag: &str) {
    let (mut sub, _) = v4::Peer::connect(v4::options(broker.addr, &format!("{tag}-sub"))).await;
    sub.subscribe("ok", rumqttc::QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        v4::Peer::connect(v4::options(broker.addr, &format!("{tag}-pub"))).await;
    publisher
        .publish("ok", rumqttc::QoS::AtLeastOnce, false, tag.as_bytes())
        .await;
    assert_eq!(&sub.next_publish().await.payload[..], tag.as_bytes());
}

#[tokio::test]
async fn garbage_bytes_are_closed_and_others_keep_working() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    let _ = raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    raw.expect_closed().await;
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    let _ = raw.send_bytes(&[0xff; 64]).await;
    raw.expect_closed().await;
    round_trip_works(&broker, "after-garbage").await;
}

#[tokio::test]
async fn garbage_after_connect_gets_malformed_packet() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    // PUBLISH with QoS 3 [MQTT-3.3.1-4].
    raw.send_bytes(&[0x36, 0x00]).await.unwrap();
    raw.expect_disconnect(ReasonCode::MalformedPacket).await;
    round_trip_works(&broker, "after-malformed").await;
}

#[tokio::test]
async fn oversize_header_is_closed_before_the_body_is_sent() {
    let mut config = TestBroker::config();
    config.max_packet_size = 1024;
    let broker = TestBroker::start(config).await;
    // Before CONNECT: a CONNECT announcing 268 MB, and nothing more.
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    raw.send_bytes(&[0x10, 0xff, 0xff, 0xff, 0x7f])
        .await
        .unwrap();
    raw.expect_closed().await;
    // After CONNECT: a PUBLISH announcing 2 MB, and nothing more.
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    raw.send_bytes(&[0x30, 0x80, 0x80, 0x80, 0x01])
        .await
        .unwrap();
    raw.expect_disconnect(ReasonCode::PacketTooLarge).await;
    round_trip_works(&broker, "after-oversize").await;
}

fn impatient() -> mqtt_server::Config {
    let mut config = TestBroker::config();
    config.connect_timeout = 1;
    config
}

#[tokio::test]
async fn silent_connection_is_closed_after_connect_timeout() {
    let broker = TestBroker::start(impatient()).await;
    let started = tokio::time::Instant::now();
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    assert_eq!(raw.expect_closed().await, vec![]);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn half_a_connect_is_closed_after_connect_timeout() {
    let broker = TestBroker::start(impatient()).await;
    let mut whole = bytes::BytesMut::new();
    Packet::Connect(Box::new(packets::connect(ProtocolVersion::V5, "slow")))
        .encode(ProtocolVersion::V5, &mut whole)
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    raw.send_bytes(&whole[..whole.len() / 2]).await.unwrap();
    assert_eq!(raw.expect_closed().await, vec![]);
    assert!(started.elapsed() >= Duration::from_millis(900));
    round_trip_works(&broker, "after-slowloris").await;
}

#[tokio::test]
async fn subscriber_that_never_reads_does_not_slow_anyone_down() {
    let mut config = TestBroker::config();
    config.max_queued_messages = 50;
    let broker = TestBroker::start(config).await;

    // Subscribes, then never reads again; its receive window is tiny.
    let sleeper = RawClient::slow_subscriber(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "sleeper"),
        "flood",
        QoS::AtMostOnce,
    )
    .await;

    let (mut healthy, _) = v4::Peer::connect(v4::options(broker.addr, "healthy")).await;
    healthy.subscribe("check", rumqttc::QoS::AtLeastOnce).await;
    let (mut publisher, _) = v4::Peer::connect(v4::options(broker.addr, "pub")).await;

    let payload = vec![0x55; 1024];
    let mut batches = 0;
    // At most 8 MiB: far more than the socket buffers, the write buffer
    // and the 50-message queue hold together.
    while broker.stat(|s| &s.dropped_queue_full) == 0 {
        batches += 1;
        assert!(batches <= 40, "no drop counted after {batches} batches");
        for _ in 0..200 {
            publisher
                .publish("flood", rumqttc::QoS::AtMostOnce, false, &payload)
                .await;
        }
        // The publisher's own round trip and another subscriber's delivery
        // still complete within the usual timeout.
        publisher
            .publish("check", rumqttc::QoS::AtLeastOnce, false, b"alive")
            .await;
        assert_eq!(&healthy.next_publish().await.payload[..], b"alive");
    }
    drop(sleeper);
    round_trip_works(&broker, "after-flood").await;
}

#[tokio::test]
async fn first_packet_other_than_connect_is_closed() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    raw.send(&Packet::PingReq).await.unwrap();
    assert_eq!(raw.expect_closed().await, vec![], "[MQTT-3.1.0-1]");
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    let p = packets::publish("t", b"x", QoS::AtMostOnce, 0);
    raw.send(&Packet::Publish(p)).await.unwrap();
    assert_eq!(raw.expect_closed().await, vec![]);
}

#[tokio::test]
async fn second_connect_gets_protocol_error() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let connect = packets::connect(ProtocolVersion::V5, "twice");
    let (mut raw, _) = RawClient::connect(broker.addr, connect.clone()).await;
    raw.send(&Packet::Connect(Box::new(connect))).await.unwrap();
    raw.expect_disconnect(ReasonCode::ProtocolError).await; // [MQTT-3.1.0-2]

    let connect = packets::connect(ProtocolVersion::V3_1_1, "twice3");
    let (mut raw, _) = RawClient::connect(broker.addr, connect.clone()).await;
    raw.send(&Packet::Connect(Box::new(connect))).await.unwrap();
    assert_eq!(raw.expect_closed().await, vec![]);
}

#[tokio::test]
async fn topic_alias_above_the_maximum_gets_topic_alias_invalid() {
    let mut config = TestBroker::config();
    config.topic_alias_maximum = 2;
    let broker = TestBroker::start(config).await;
    let (mut raw, ack) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    let mut p = packets::publish("t", b"x", QoS::AtMostOnce, 0);
    p.properties.topic_alias = std::num::NonZeroU16::new(3);
    raw.send(&Packet::Publish(p)).await.unwrap();
    raw.expect_disconnect(ReasonCode::TopicAliasInvalid).await; // [MQTT-3.3.2-10]
}

#[tokio::test]
async fn unknown_topic_alias_gets_protocol_error() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    let mut p = packets::publish("", b"x", QoS::AtMostOnce, 0);
    p.properties.topic_alias = std::num::NonZeroU16::new(1);
    raw.send(&Packet::Publish(p)).await.unwrap();
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
}

#[tokio::test]
async fn pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    raw.send(&Packet::PubRel(mqtt_codec::Ack::new(packets::pid(7))))
        .await
        .unwrap();
    match raw.recv().await {
        Some(Packet::PubComp(a)) => {
            assert_eq!(a.reason_code, ReasonCode::PacketIdentifierNotFound)
        }
        other => panic!("PUBCOMP expected, got {other:?}"),
    }
}

/// A client that keeps writing after the broker decided to close its
/// connection can go on writing, and still reads why: the broker sends
/// DISCONNECT, ends its write side and reads (and discards) what the
/// client still sends until the client closes, for a bounded time. Closing
/// at once with unread bytes answers the client's next bytes with a
/// reset: its writes fail ("broken pipe") before it has read the
/// DISCONNECT, and some systems throw the unread DISCONNECT away.
/// Ten rounds, each a malformed packet, then 64 KiB more once the broker
/// has refused it.
#[tokio::test]
async fn a_client_still_writing_when_the_broker_closes_reads_the_reason_code() {
    let broker = TestBroker::start(TestBroker::config()).await;
    for round in 0..10u64 {
        let (mut raw, _) = RawClient::connect(
            broker.addr,
            packets::connect(ProtocolVersion::V5, &format!("late-{round}")),
        )
        .await;
        // A PUBLISH with QoS 3 is malformed [MQTT-3.3.1-4].
        raw.send_bytes(&[0x36, 0x03, 0x00, 0x01, b'a'])
            .await
            .unwrap();
        broker
            .wait_until("the malformed packet refused", |s| {
                s.protocol_errors.load(std::sync::atomic::Ordering::Relaxed) > round
            })
            .await;
        // PINGREQs the broker never reads as MQTT.
        let chunk = [0xC0_u8, 0x00].repeat(2048);
        for i in 0..16 {
            if let Err(e) = raw.send_bytes(&chunk).await {
                panic!("round {round}: write {i} after the broker's close failed: {e}");
            }
            tokio::task::yield_now().await;
        }
        let before = raw.expect_closed().await;
        assert!(
            matches!(
                before.last(),
                Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::MalformedPacket
            ),
            "round {round}: DISCONNECT 0x81 expected before the close, got {before:?}"
        );
    }
}
