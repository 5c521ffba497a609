//! Routing as one publisher sees it while others subscribe and leave: a
//! publisher that keeps publishing to one topic keeps that topic's route
//! only while no subscription changes, and never for a shared
//! subscription, whose member is chosen in turn.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mqtt_codec::{Packet, ProtocolVersion, QoS, Unsubscribe, UnsubscribeProperties};
use mqtt_testkit::{RawClient, Received, TestBroker, packets};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

async fn subscriber(broker: &TestBroker, id: &str, filters: &[&str]) -> RawClient {
    let (mut c, _) = RawClient::connect(broker.addr, packets::connect(V, id)).await;
    let filters: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtMostOnce)).collect();
    c.send(&Packet::Subscribe(packets::subscribe(1, &filters)))
        .await
        .unwrap();
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    c
}

/// Publishes at QoS 1 and waits for PUBACK: by then the message is routed.
async fn publish(publisher: &mut RawClient, topic: &str, payload: &str, id: u16) {
    publisher
        .send(&Packet::Publish(packets::publish(
            topic,
            payload.as_bytes(),
            QoS::AtLeastOnce,
            id,
        )))
        .await
        .unwrap();
    match publisher.next(Duration::from_secs(10)).await {
        Received::Packet(Packet::PubAck(a)) => assert_eq!(a.packet_id.get(), id),
        other => panic!("PUBACK expected, got {other:?}"),
    }
}

async fn next_payload(c: &mut RawClient) -> String {
    match c.next(Duration::from_secs(10)).await {
        Received::Packet(Packet::Publish(p)) => String::from_utf8(p.payload.to_vec()).unwrap(),
        other => panic!("PUBLISH expected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_repeated_topic_follows_subscriptions_made_and_removed_meanwhile() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut a = subscriber(&broker, "a", &["r/t", "other"]).await;
    let (mut p, _) = RawClient::connect(broker.addr, packets::connect(V, "p")).await;
    publish(&mut p, "r/t", "m1", 1).await;
    assert_eq!(next_payload(&mut a).await, "m1");

    // A new subscriber of the same topic gets the next message.
    let mut b = subscriber(&broker, "b", &["r/+"]).await;
    publish(&mut p, "r/t", "m2", 2).await;
    assert_eq!(next_payload(&mut a).await, "m2");
    assert_eq!(next_payload(&mut b).await, "m2");

    // A subscriber that unsubscribed does not.
    a.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: packets::pid(3),
        properties: UnsubscribeProperties::default(),
        filters: vec![packets::string("r/t")],
    }))
    .await
    .unwrap();
    assert!(matches!(a.recv().await, Some(Packet::UnsubAck(_))));
    publish(&mut p, "r/t", "m3", 4).await;
    assert_eq!(next_payload(&mut b).await, "m3");
    // Had m3 reached `a`, it would come before this later message.
    publish(&mut p, "other", "m4", 5).await;
    assert_eq!(next_payload(&mut a).await, "m4");
}

#[tokio::test]
async fn a_repeated_topic_still_takes_shared_subscription_members_in_turn() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut c = subscriber(&broker, "c", &["$share/g/s/t"]).await;
    let mut d = subscriber(&broker, "d", &["$share/g/s/t"]).await;
    let (mut p, _) = RawClient::connect(broker.addr, packets::connect(V, "p")).await;
    for i in 0..4u16 {
        publish(&mut p, "s/t", &format!("m{i}"), i + 1).await;
    }
    // Two each, whichever member took which.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next_payload(&mut c).await);
        got.push(next_payload(&mut d).await);
    }
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3"]);
}
