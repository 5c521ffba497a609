//! End to end, MQTT 3.1.1: the real broker on a real socket, and rumqttc's
//! v4 client (or a raw peer where rumqttc cannot express the test).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use mqtt_codec::{Packet, ProtocolVersion};
use mqtt_testkit::v4::{Peer, options};
use mqtt_testkit::{RawClient, TestBroker, packets};
use rumqttc::{LastWill, QoS, SubscribeReasonCode};

async fn round_trip(qos: QoS) {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    let ack = sub.subscribe("a/b", qos).await;
    assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(qos)]);
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher.publish("a/b", qos, false, b"hello").await;
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "a/b");
    assert_eq!(&p.payload[..], b"hello");
    assert_eq!(p.qos, qos);
    assert!(!p.retain);
}

#[tokio::test]
async fn qos0_round_trip() {
    round_trip(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn qos1_round_trip() {
    round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn qos2_round_trip() {
    round_trip(QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn delivery_qos_is_the_lesser_of_publish_and_subscription() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher.publish("t", QoS::ExactlyOnce, false, b"2").await;
    publisher.publish("t", QoS::AtMostOnce, false, b"0").await;
    assert_eq!(sub.next_publish().await.qos, QoS::AtLeastOnce);
    assert_eq!(sub.next_publish().await.qos, QoS::AtMostOnce);
}

#[tokio::test]
async fn retained_message_is_delivered_on_subscribe_with_retain_set() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, b"kept")
        .await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("r/+", QoS::AtLeastOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "r/1");
    assert_eq!(&p.payload[..], b"kept");
    assert!(
        p.retain,
        "a retained message sent on subscribe has RETAIN 1 [MQTT-3.3.1-8]"
    );
    // A live publication of a retained message to an existing subscription
    // has RETAIN 0 under 3.1.1 [MQTT-3.3.1-9].
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, b"live")
        .await;
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"live");
    assert!(!p.retain);
}

#[tokio::test]
async fn empty_retained_payload_clears_the_retained_message() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, b"kept")
        .await;
    publisher.publish("r/1", QoS::AtLeastOnce, true, b"").await;
    publisher
        .publish("r/2", QoS::AtLeastOnce, true, b"other")
        .await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("r/+", QoS::AtLeastOnce).await;
    // Only r/2 is left: r/1 was cleared [MQTT-3.3.1-10].
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "r/2");
    sub.subscribe("sentinel", QoS::AtLeastOnce).await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(sub.next_publish().await.topic, "sentinel");
}

fn with_will(broker: &TestBroker, id: &str) -> rumqttc::MqttOptions {
    let mut o = options(broker.addr, id);
    o.set_last_will(LastWill::new("will/w", "gone", QoS::AtLeastOnce, false));
    o
}

#[tokio::test]
async fn will_is_published_when_the_connection_drops_without_disconnect() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut watcher, _) = Peer::connect(options(broker.addr, "watcher")).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    let (client, _) = Peer::connect(with_will(&broker, "w")).await;
    client.kill().await;
    let p = watcher.next_publish().await;
    assert_eq!(p.topic, "will/w");
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn will_is_not_published_after_disconnect() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut watcher, _) = Peer::connect(options(broker.addr, "watcher")).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    watcher.subscribe("sentinel", QoS::AtLeastOnce).await;
    let (client, _) = Peer::connect(with_will(&broker, "w")).await;
    client.disconnect().await;
    broker
        .wait_until("the client's disconnection", |s| {
            s.clients_connected.load(Ordering::Relaxed) == 1
        })
        .await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(
        watcher.next_publish().await.topic,
        "sentinel",
        "no will after DISCONNECT [MQTT-3.1.2-10]"
    );
}

fn persistent(broker: &TestBroker, id: &str, clean: bool) -> rumqttc::MqttOptions {
    let mut o = options(broker.addr, id);
    o.set_clean_session(clean);
    o
}

#[tokio::test]
async fn persistent_session_receives_what_was_published_while_offline() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, ack) = Peer::connect(persistent(&broker, "p", false)).await;
    assert!(!ack.session_present);
    p.subscribe("q/t", QoS::AtLeastOnce).await;
    p.disconnect().await;

    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    for i in 0..3u8 {
        publisher
            .publish("q/t", QoS::AtLeastOnce, false, &[i])
            .await;
    }
    let (mut p, ack) = Peer::connect(persistent(&broker, "p", false)).await;
    assert!(ack.session_present, "the session was kept [MQTT-3.2.2-2]");
    for i in 0..3u8 {
        let m = p.next_publish().await;
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("q/t", &[i][..]));
        assert_eq!(m.qos, QoS::AtLeastOnce);
    }
}

#[tokio::test]
async fn clean_session_discards_the_stored_session() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, _) = Peer::connect(persistent(&broker, "p", false)).await;
    p.subscribe("q/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, b"lost")
        .await;

    let (mut p, ack) = Peer::connect(persistent(&broker, "p", true)).await;
    assert!(!ack.session_present, "[MQTT-3.2.2-1]");
    p.subscribe("sentinel", QoS::AtLeastOnce).await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, b"unsubscribed")
        .await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(p.next_publish().await.topic, "sentinel");
}

#[tokio::test]
async fn second_connection_with_the_same_client_id_closes_the_first() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut first, _) = Peer::connect(options(broker.addr, "same")).await;
    let (mut second, _) = Peer::connect(options(broker.addr, "same")).await;
    first.wait_error().await;
    // The new connection works.
    second.subscribe("t", QoS::AtLeastOnce).await;
    second.publish("t", QoS::AtLeastOnce, false, b"x").await;
    assert_eq!(&second.next_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn overlapping_subscriptions_get_one_delivery_at_the_highest_qos() {
    // [MQTT-3.3.5-1]: the server may deliver once per matching subscription
    // or once in all; this broker sends one copy at the highest QoS.
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("a/+", QoS::AtMostOnce).await;
    sub.subscribe("a/b", QoS::AtLeastOnce).await;
    sub.subscribe("sentinel", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("a/b", QoS::ExactlyOnce, false, b"once")
        .await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    let p = sub.next_publish().await;
    assert_eq!((p.topic.as_str(), p.qos), ("a/b", QoS::AtLeastOnce));
    assert_eq!(sub.next_publish().await.topic, "sentinel", "one copy only");
}

#[tokio::test]
async fn silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V3_1_1, "silent");
    connect.keep_alive = 1;
    let started = tokio::time::Instant::now();
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    let before = raw.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(before.is_empty(), "3.1.1 has no DISCONNECT from the server");
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}, before 1.5 x keep alive [MQTT-3.1.2-24]"
    );
}

#[tokio::test]
async fn pings_keep_a_connection_alive() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V3_1_1, "pinger");
    connect.keep_alive = 1;
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        raw.send(&Packet::PingReq).await.unwrap();
        assert_eq!(raw.recv().await, Some(Packet::PingResp));
    }
}

/// `$share/{group}/{filter}` from MQTT 3.1.1 clients is a shared
/// subscription, as mosquitto offers it: each message goes to one member,
/// and joining the group sends no retained message (MQTT 5.0 §4.8.2),
/// whereas a plain subscription to the same filter gets it.
#[tokio::test]
async fn shared_subscription_from_v311_clients_takes_turns_and_gets_no_retained() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let v = ProtocolVersion::V3_1_1;
    let (mut publisher, _) = RawClient::connect(broker.addr, packets::connect(v, "p")).await;
    let mut retained = packets::publish("sh311/t", b"kept", mqtt_codec::QoS::AtLeastOnce, 1);
    retained.retain = true;
    publisher.send(&Packet::Publish(retained)).await.unwrap();
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    let mut members = Vec::new();
    for id in ["m1", "m2"] {
        let (mut m, _) = RawClient::connect(broker.addr, packets::connect(v, id)).await;
        m.send(&Packet::Subscribe(packets::subscribe(
            1,
            &[("$share/g/sh311/t", mqtt_codec::QoS::AtLeastOnce)],
        )))
        .await
        .unwrap();
        assert!(matches!(m.recv().await, Some(Packet::SubAck(_))));
        members.push(m);
    }
    let (mut plain, _) = RawClient::connect(broker.addr, packets::connect(v, "plain")).await;
    plain
        .send(&Packet::Subscribe(packets::subscribe(
            1,
            &[("sh311/t", mqtt_codec::QoS::AtMostOnce)],
        )))
        .await
        .unwrap();
    assert!(matches!(plain.recv().await, Some(Packet::SubAck(_))));
    match plain.recv().await {
        Some(Packet::Publish(p)) => assert!(p.retain && &p.payload[..] == b"kept"),
        other => panic!("the retained message expected, got {other:?}"),
    }
    for i in 0..4u8 {
        let p = packets::publish("sh311/t", &[i], mqtt_codec::QoS::AtMostOnce, 0);
        publisher.send(&Packet::Publish(p)).await.unwrap();
    }
    let mut got = Vec::new();
    for m in &mut members {
        loop {
            match m.next(Duration::from_millis(300)).await {
                mqtt_testkit::Received::Packet(Packet::Publish(p)) => {
                    assert!(!p.retain, "a shared member got the retained message");
                    got.push(p.payload[0]);
                }
                mqtt_testkit::Received::TimedOut => break,
                other => panic!("PUBLISH expected, got {other:?}"),
            }
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3], "each message once to the group");
}
