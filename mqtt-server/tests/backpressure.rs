//! Backpressure: a QoS 1/2 message that does not fit a connected
//! subscriber's full queue holds back its publisher's acknowledgement
//! instead of being dropped, for at most `max_publish_wait_ms`.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, Received, TestBroker, packets};

/// The queue filled (publishers waited for room) and yet no delivery was
/// dropped, neither at the queue's limit nor after waiting.
fn publishers_waited_and_nothing_was_dropped(broker: &TestBroker) {
    assert_eq!(broker.stat(|s| &s.dropped_queue_full), 0);
    assert_eq!(broker.stat(|s| &s.dropped_publish_wait), 0);
    assert!(
        broker.stat(|s| &s.publish_waits) > 0,
        "the queue never filled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_publishers_and_a_slow_subscriber_lose_no_acknowledged_qos1_message() {
    const PER_PUBLISHER: u16 = 300;
    let mut config = TestBroker::config();
    // A small queue, so that the publishers outrun it at once.
    config.max_queued_messages = 20;
    let broker = TestBroker::start(config).await;
    let (mut sub, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "slow")).await;
    sub.send(&Packet::Subscribe(packets::subscribe(
        1,
        &[("load/#", QoS::AtLeastOnce)],
    )))
    .await
    .unwrap();
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));

    let mut publishers = Vec::new();
    for p in 0..4 {
        let addr = broker.addr;
        publishers.push(tokio::spawn(async move {
            let id = format!("pub{p}");
            let (mut raw, _) =
                RawClient::connect(addr, packets::connect(ProtocolVersion::V5, &id)).await;
            // Open loop: everything at once, within the Receive Maximum.
            for i in 1..=PER_PUBLISHER {
                let payload = format!("{p}-{i}");
                let topic = format!("load/{p}");
                raw.send(&Packet::Publish(packets::publish(
                    &topic,
                    payload.as_bytes(),
                    QoS::AtLeastOnce,
                    i,
                )))
                .await
                .unwrap();
            }
            let mut acked = Vec::new();
            while acked.len() < usize::from(PER_PUBLISHER) {
                match raw.next(Duration::from_secs(20)).await {
                    Received::Packet(Packet::PubAck(a)) => {
                        assert_eq!(a.reason_code, ReasonCode::Success);
                        acked.push(format!("{p}-{}", a.packet_id));
                    }
                    other => panic!("{id}: PUBACK expected, got {other:?}"),
                }
            }
            acked
        }));
    }
    let mut received = HashSet::new();
    let mut next = [1u16; 4];
    let mut n = 0;
    while received.len() < 4 * usize::from(PER_PUBLISHER) {
        match sub.next(Duration::from_secs(20)).await {
            Received::Packet(Packet::Publish(p)) => {
                let text = String::from_utf8(p.payload.to_vec()).unwrap();
                // Each publisher's messages in the order sent [MQTT-4.6.0-6].
                let (who, i) = text.split_once('-').unwrap();
                let (who, i): (usize, u16) = (who.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[who], "publisher {who}: out of order or lost");
                next[who] += 1;
                received.insert(text);
                sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                    .await
                    .unwrap();
                n += 1;
                if n % 50 == 0 {
                    // Slower than the publishers.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            other => panic!(
                "subscriber: PUBLISH expected after {} messages, got {other:?}",
                received.len()
            ),
        }
    }
    for p in publishers {
        for m in p.await.unwrap() {
            assert!(received.contains(&m), "acknowledged message {m} lost");
        }
    }
    publishers_waited_and_nothing_was_dropped(&broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_delays_publishers_by_at_most_max_publish_wait() {
    let mut config = TestBroker::config();
    config.max_queued_messages = 10;
    config.max_publish_wait_ms = 300;
    let broker = TestBroker::start(config).await;
    let dead = RawClient::slow_subscriber(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "dead"),
        "t",
        QoS::AtLeastOnce,
    )
    .await;
    // From now on it reads nothing.

    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let payload = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 1..=300u16 {
        let sent = Instant::now();
        publisher
            .send(&Packet::Publish(packets::publish(
                "t",
                &payload,
                QoS::AtLeastOnce,
                i,
            )))
            .await
            .unwrap();
        match publisher.next(Duration::from_secs(5)).await {
            Received::Packet(Packet::PubAck(a)) => assert_eq!(a.packet_id.get(), i),
            other => panic!("PUBACK {i} expected, got {other:?}"),
        }
        slowest = slowest.max(sent.elapsed());
    }
    assert!(
        broker.stat(|s| &s.dropped_publish_wait) >= 1,
        "the dead subscriber's queue never filled"
    );
    // One wait of 300 ms, then the session is congested: no more waits.
    assert!(slowest < Duration::from_millis(1300), "{slowest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(dead);
}

/// A broker whose session queues hold 20 messages, and a QoS 0 subscriber
/// of `filter` with a small receive buffer, so that publishers soon wait
/// for room.
async fn small_queue_and_sink(filter: &str) -> (TestBroker, RawClient) {
    let mut config = TestBroker::config();
    config.max_queued_messages = 20;
    let broker = TestBroker::start(config).await;
    let sub = RawClient::slow_subscriber(
        broker.addr,
        packets::connect(ProtocolVersion::V3_1_1, "sink"),
        filter,
        QoS::AtMostOnce,
    )
    .await;
    (broker, sub)
}

/// QoS 0 fan-in: each publisher's deliveries wait in its outbox and enter
/// the subscriber's small queue together; when they do not fit, the
/// publisher waits. Nothing is dropped, and each publisher's messages
/// arrive in the order sent [MQTT-4.6.0-6].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_qos0_publishers_and_a_small_queue_keep_order_and_lose_nothing() {
    const PER_PUBLISHER: u32 = 2000;
    let (broker, mut sub) = small_queue_and_sink("fan/#").await;

    let mut publishers = Vec::new();
    for p in 0..4u32 {
        let addr = broker.addr;
        publishers.push(tokio::spawn(async move {
            let id = format!("pub{p}");
            let (mut raw, _) =
                RawClient::connect(addr, packets::connect(ProtocolVersion::V3_1_1, &id)).await;
            for i in 0..PER_PUBLISHER {
                let payload = format!("{p}-{i}");
                raw.send(&Packet::Publish(packets::publish(
                    &format!("fan/{p}"),
                    payload.as_bytes(),
                    QoS::AtMostOnce,
                    0,
                )))
                .await
                .unwrap();
            }
            raw
        }));
    }
    let mut next = [0u32; 4];
    let mut received = 0;
    while received < 4 * PER_PUBLISHER {
        match sub.next(Duration::from_secs(20)).await {
            Received::Packet(Packet::Publish(p)) => {
                let text = String::from_utf8(p.payload.to_vec()).unwrap();
                let (who, i) = text.split_once('-').unwrap();
                let (who, i): (usize, u32) = (who.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[who], "publisher {who}: out of order or lost");
                next[who] += 1;
                received += 1;
            }
            other => panic!("PUBLISH expected after {received} messages, got {other:?}"),
        }
    }
    for p in publishers {
        drop(p.await.unwrap());
    }
    publishers_waited_and_nothing_was_dropped(&broker);
}

/// A publisher that disconnects while it waits for room still has every
/// message it sent before its DISCONNECT routed: those held back behind the
/// wait are delivered or, with nobody left to slow down, dropped by the
/// queue's policy and counted; none is forgotten, and those delivered
/// arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_disconnect_are_routed_though_the_publisher_was_waiting() {
    const COUNT: u32 = 3000;
    let (broker, mut sub) = small_queue_and_sink("bye").await;

    let (mut publisher, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V3_1_1, "pub"),
    )
    .await;
    let mut burst = bytes::BytesMut::new();
    for i in 0..COUNT {
        Packet::Publish(packets::publish(
            "bye",
            format!("{i:0100}").as_bytes(),
            QoS::AtMostOnce,
            0,
        ))
        .encode(ProtocolVersion::V3_1_1, &mut burst)
        .unwrap();
    }
    Packet::from(mqtt_codec::Disconnect::new(ReasonCode::Success))
        .encode(ProtocolVersion::V3_1_1, &mut burst)
        .unwrap();
    // All at once, DISCONNECT last: most of it arrives while the broker
    // waits for room in the subscriber's queue.
    publisher.send_bytes(&burst).await.unwrap();

    // A slow reader, so that the publisher waits for room again and again,
    // its DISCONNECT read meanwhile. Every message is then delivered or
    // counted as dropped.
    let mut last = None;
    let mut received = 0u64;
    loop {
        let dropped =
            broker.stat(|s| &s.dropped_queue_full) + broker.stat(|s| &s.dropped_publish_wait);
        if received + dropped == u64::from(COUNT) {
            break;
        }
        match sub.next(Duration::from_secs(5)).await {
            Received::Packet(Packet::Publish(p)) => {
                let i: u32 = String::from_utf8(p.payload.to_vec())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(last.is_none_or(|l| i > l), "{i} after {last:?}");
                last = Some(i);
                received += 1;
                if received.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            other => panic!(
                "PUBLISH expected after {received} received and {dropped} dropped, got {other:?}"
            ),
        }
    }
    drop(publisher);
}
