//! Retained messages on subscribe, many at once: a dashboard subscribing
//! to `ret/#` after 100,000 devices each left their last value gets every
//! one of them, at QoS 0 and at QoS 1, paced by its own window and queue
//! rather than pushed into its queue at once (whose limit dropped all but
//! the first thousand), while other clients keep being served.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{Ack, Packet, ProtocolVersion, QoS};
use mqtt_testkit::{RawClient, Received, TestBroker, packets};

const GROUPS: usize = 100;
const DEVICES: usize = 1000;

fn topic(i: usize) -> String {
    format!("ret/{}/{}", i / DEVICES, i % DEVICES)
}

/// Publishes one retained message per device at `qos`, in batches of a
/// thousand (QoS 1: each batch's PUBACKs read before the next), then one
/// more QoS 1 retained message whose PUBACK says every earlier one is
/// stored (a connection's messages are handled in order).
async fn publish_retained(raw: &mut RawClient, qos: QoS) {
    let n = GROUPS * DEVICES;
    for batch in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut bytes = BytesMut::new();
        for (k, &i) in batch.iter().enumerate() {
            let id = u16::try_from(k + 1).unwrap();
            let mut p = packets::publish(&topic(i), format!("v{i}").as_bytes(), qos, id);
            p.retain = true;
            Packet::Publish(p)
                .encode(ProtocolVersion::V5, &mut bytes)
                .unwrap();
        }
        raw.send_bytes(&bytes).await.unwrap();
        if qos == QoS::AtLeastOnce {
            for _ in batch {
                assert!(matches!(raw.recv().await, Some(Packet::PubAck(_))));
            }
        }
    }
    let mut last = packets::publish("ret/last", b"x", QoS::AtLeastOnce, 1);
    last.retain = true;
    raw.send(&Packet::Publish(last)).await.unwrap();
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(_))));
}

async fn every_retained_message_reaches_a_wildcard_subscriber(qos: QoS) {
    let mut config = TestBroker::config();
    // Room for the devices' 100,000 and the marker published after them.
    config.max_retained_messages = 200_000;
    let broker = TestBroker::start(config).await;
    let (mut publisher, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "devices"),
    )
    .await;
    publish_retained(&mut publisher, qos).await;

    // A canary subscriber, served while the flood goes on.
    let (mut canary, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "canary")).await;
    canary
        .send(&Packet::Subscribe(packets::subscribe(
            1,
            &[("canary", QoS::AtMostOnce)],
        )))
        .await
        .unwrap();
    assert!(matches!(canary.recv().await, Some(Packet::SubAck(_))));

    let (mut dashboard, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "dashboard"),
    )
    .await;
    dashboard
        .send(&Packet::Subscribe(packets::subscribe(1, &[("ret/#", qos)])))
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut canary_sent = 0u32;
    let mut canary_received = 0u32;
    let n = GROUPS * DEVICES;
    while seen.len() < n + 1 {
        match dashboard.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::SubAck(_)) => {}
            Received::Packet(Packet::Publish(p)) => {
                assert!(p.retain, "sent on subscribe: RETAIN set [MQTT-3.3.1-9]");
                assert_eq!(p.qos, qos);
                if let Some(id) = p.packet_id {
                    dashboard.send(&Packet::PubAck(Ack::new(id))).await.unwrap();
                }
                if !seen.insert(p.topic.as_str().to_owned()) {
                    duplicates += 1;
                }
                // Now and then, a message through the canary.
                if seen.len() % 10_000 == 0 {
                    let ping = packets::publish("canary", b"ping", QoS::AtMostOnce, 0);
                    publisher.send(&Packet::Publish(ping)).await.unwrap();
                    canary_sent += 1;
                    match canary.next(Duration::from_secs(10)).await {
                        Received::Packet(Packet::Publish(p)) if &p.payload[..] == b"ping" => {
                            canary_received += 1;
                        }
                        other => panic!("the canary was not served: {other:?}"),
                    }
                }
            }
            other => {
                let missing: Vec<String> = (0..n)
                    .map(topic)
                    .filter(|t| !seen.contains(t))
                    .take(5)
                    .collect();
                panic!(
                    "{qos:?}: {} of {} retained messages, then {other:?}; missing e.g. {missing:?}",
                    seen.len(),
                    n + 1,
                )
            }
        }
    }
    assert_eq!(duplicates, 0);
    assert!(seen.contains(&topic(0)) && seen.contains(&topic(n - 1)));
    assert_eq!(canary_received, canary_sent);
    assert!(canary_sent >= 9, "the canary was pinged during the flood");
    match dashboard.next(Duration::from_millis(300)).await {
        Received::TimedOut => {}
        other => panic!("nothing more expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_100000_retained_messages_reaches_a_wildcard_subscriber_at_qos0() {
    every_retained_message_reaches_a_wildcard_subscriber(QoS::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_100000_retained_messages_reaches_a_wildcard_subscriber_at_qos1() {
    every_retained_message_reaches_a_wildcard_subscriber(QoS::AtLeastOnce).await;
}
