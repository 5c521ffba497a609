//! End to end, MQTT 5.0: the real broker on a real socket, and rumqttc's
//! v5 client (or a raw peer where rumqttc cannot express the test, or
//! hides what is on the wire).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{Packet, ProtocolVersion, PublishProperties as WireProps, ReasonCode};
use mqtt_testkit::v5::{Peer, options};
use mqtt_testkit::{RawClient, TestBroker, packets, v4};
use rumqttc::v5::MqttOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, Filter, LastWill, LastWillProperties, PublishProperties, RetainForwardRule,
    SubscribeReasonCode,
};

/// Options with a Session Expiry Interval, so the session outlives the
/// connection.
fn with_expiry(broker: &TestBroker, id: &str, expiry: u32, clean_start: bool) -> MqttOptions {
    let mut o = options(broker.addr, id);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(expiry);
    o.set_connect_properties(props);
    o.set_clean_start(clean_start);
    o
}

async fn round_trip(qos: QoS) {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    let ack = sub.subscribe("a/b", qos).await;
    assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(qos)]);
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher.publish("a/b", qos, false, b"hello").await;
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"a/b");
    assert_eq!(&p.payload[..], b"hello");
    assert_eq!(p.qos, qos);
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
async fn v311_publisher_reaches_v5_subscriber() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub5")).await;
    sub.subscribe("mixed", QoS::ExactlyOnce).await;
    let (mut publisher, _) = v4::Peer::connect(v4::options(broker.addr, "pub3")).await;
    publisher
        .publish("mixed", rumqttc::QoS::ExactlyOnce, false, b"from 3.1.1")
        .await;
    let p = sub.next_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"mixed"[..], &b"from 3.1.1"[..])
    );
    assert_eq!(p.qos, QoS::ExactlyOnce);
}

#[tokio::test]
async fn v5_publisher_reaches_v311_subscriber_without_properties() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = v4::Peer::connect(v4::options(broker.addr, "sub3")).await;
    sub.subscribe("mixed", rumqttc::QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub5")).await;
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    publisher
        .publish_with("mixed", QoS::AtLeastOnce, false, b"from 5.0", props)
        .await;
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("mixed", &b"from 5.0"[..])
    );
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
}

// --- Retained messages -------------------------------------------------

async fn retained_setup() -> (TestBroker, Peer) {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, b"kept")
        .await;
    (broker, publisher)
}

fn filter(path: &str, rule: RetainForwardRule) -> Filter {
    let mut f = Filter::new(path, QoS::AtLeastOnce);
    f.retain_forward_rule = rule;
    f
}

#[tokio::test]
async fn retain_handling_0_sends_retained_on_every_subscribe() {
    let (broker, _publisher) = retained_setup().await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    for _ in 0..2 {
        sub.subscribe_with(filter("r/+", RetainForwardRule::OnEverySubscribe), None)
            .await;
        let p = sub.next_publish().await;
        assert_eq!(&p.payload[..], b"kept");
        assert!(p.retain, "[MQTT-3.3.1-9]");
    }
}

#[tokio::test]
async fn retain_handling_1_sends_retained_only_for_a_new_subscription() {
    let (broker, mut publisher) = retained_setup().await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("sentinel", QoS::AtLeastOnce).await;
    sub.subscribe_with(filter("r/+", RetainForwardRule::OnNewSubscribe), None)
        .await;
    assert_eq!(&sub.next_publish().await.payload[..], b"kept");
    sub.subscribe_with(filter("r/+", RetainForwardRule::OnNewSubscribe), None)
        .await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(
        &sub.next_publish().await.topic[..],
        b"sentinel",
        "[MQTT-3.3.1-10]"
    );
}

#[tokio::test]
async fn retain_handling_2_sends_no_retained_message() {
    let (broker, mut publisher) = retained_setup().await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("sentinel", QoS::AtLeastOnce).await;
    sub.subscribe_with(filter("r/+", RetainForwardRule::Never), None)
        .await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(
        &sub.next_publish().await.topic[..],
        b"sentinel",
        "[MQTT-3.3.1-11]"
    );
}

#[tokio::test]
async fn retain_as_published_keeps_the_retain_flag_of_live_messages() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut keeps, _) = Peer::connect(options(broker.addr, "keeps")).await;
    let mut f = Filter::new("live", QoS::AtLeastOnce);
    f.preserve_retain = true;
    keeps.subscribe_with(f, None).await;
    let (mut clears, _) = Peer::connect(options(broker.addr, "clears")).await;
    clears.subscribe("live", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("live", QoS::AtLeastOnce, true, b"r")
        .await;
    assert!(keeps.next_publish().await.retain, "[MQTT-3.3.1-13]");
    assert!(!clears.next_publish().await.retain, "[MQTT-3.3.1-12]");
}

// --- Wills -------------------------------------------------------------

fn will_options(broker: &TestBroker, id: &str, delay: u32, clean_start: bool) -> MqttOptions {
    // The will waits for the earlier of its delay and the session's end
    // [MQTT-3.1.3-9]: the session must outlive the delay.
    let mut o = with_expiry(broker, id, 60, clean_start);
    let props = LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Default::default(),
    };
    o.set_last_will(LastWill::new(
        "will/w",
        "gone",
        QoS::AtLeastOnce,
        false,
        Some(props),
    ));
    o
}

async fn will_watcher(broker: &TestBroker) -> Peer {
    let (mut watcher, _) = Peer::connect(options(broker.addr, "watcher")).await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    watcher
}

#[tokio::test]
async fn will_is_published_after_its_delay() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut watcher = will_watcher(&broker).await;
    let (client, _) = Peer::connect(will_options(&broker, "w", 1, true)).await;
    let dropped = tokio::time::Instant::now();
    client.kill().await;
    let p = watcher.next_publish().await;
    assert_eq!(&p.payload[..], b"gone");
    assert!(
        dropped.elapsed() >= Duration::from_millis(900),
        "published after {:?}, before the will delay",
        dropped.elapsed()
    );
}

#[tokio::test]
async fn will_is_not_published_if_the_client_reconnects_within_the_delay() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut watcher = will_watcher(&broker).await;
    let (client, _) = Peer::connect(will_options(&broker, "w", 1, true)).await;
    client.kill().await;
    broker
        .wait_until("the drop noticed", |s| {
            s.clients_connected.load(Ordering::Relaxed) == 1
        })
        .await;
    let (_again, ack) = Peer::connect(will_options(&broker, "w", 1, false)).await;
    assert!(ack.session_present);
    // Past the delay, nothing came (MQTT 5.0 §3.1.3.2.2).
    watcher.expect_no_publish(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn will_of_a_taken_over_connection_waits_for_its_delay_and_is_cancelled() {
    // MQTT 5.0 §3.1.2.5: the will of the existing connection is sent unless
    // the new connection has Clean Start 0 and the will delay is above 0.
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut watcher = will_watcher(&broker).await;
    let (mut first, _) = Peer::connect(will_options(&broker, "w", 1, true)).await;
    let (_second, ack) = Peer::connect(will_options(&broker, "w", 1, false)).await;
    assert!(ack.session_present);
    first.wait_error().await;
    watcher.expect_no_publish(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn will_is_published_when_a_clean_start_ends_the_session_within_the_delay() {
    // The will waits for its delay or the session's end, whichever is first
    // [MQTT-3.1.3-9]; a reconnection with Clean Start 1 ends the session.
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut watcher = will_watcher(&broker).await;
    let (client, _) = Peer::connect(will_options(&broker, "w", 30, true)).await;
    client.kill().await;
    broker
        .wait_until("the drop noticed", |s| {
            s.clients_connected.load(Ordering::Relaxed) == 1
        })
        .await;
    let (_again, ack) = Peer::connect(options(broker.addr, "w")).await;
    assert!(!ack.session_present);
    assert_eq!(&watcher.next_publish().await.payload[..], b"gone");
}

#[tokio::test]
async fn disconnect_with_will_message_publishes_the_will() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut watcher = will_watcher(&broker).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "w");
    connect.will = Some(mqtt_codec::Will {
        topic: packets::string("will/w"),
        payload: Bytes::from_static(b"asked"),
        qos: mqtt_codec::QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    let d = mqtt_codec::Disconnect::new(ReasonCode::DisconnectWithWillMessage);
    raw.send(&Packet::from(d)).await.unwrap();
    assert_eq!(&watcher.next_publish().await.payload[..], b"asked");
}

// --- Sessions ----------------------------------------------------------

#[tokio::test]
async fn session_with_expiry_receives_what_was_published_while_offline() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, ack) = Peer::connect(with_expiry(&broker, "p", 60, true)).await;
    assert!(!ack.session_present);
    p.subscribe("q/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    for i in 0..3u8 {
        publisher
            .publish("q/t", QoS::AtLeastOnce, false, &[i])
            .await;
    }
    let (mut p, ack) = Peer::connect(with_expiry(&broker, "p", 60, false)).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    for i in 0..3u8 {
        let m = p.next_publish().await;
        assert_eq!((&m.topic[..], &m.payload[..]), (&b"q/t"[..], &[i][..]));
        assert_eq!(m.qos, QoS::AtLeastOnce);
    }
}

#[tokio::test]
async fn clean_start_discards_the_session() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 60, true)).await;
    p.subscribe("q/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, b"lost")
        .await;
    let (mut p, ack) = Peer::connect(with_expiry(&broker, "p", 60, true)).await;
    assert!(!ack.session_present, "[MQTT-3.2.2-2]");
    p.subscribe("sentinel", QoS::AtLeastOnce).await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, b"x")
        .await;
    publisher
        .publish("sentinel", QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(&p.next_publish().await.topic[..], b"sentinel");
}

#[tokio::test]
async fn session_ends_when_its_expiry_passes() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 1, true)).await;
    p.subscribe("q/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the expiry pass
    let (_p, ack) = Peer::connect(with_expiry(&broker, "p", 1, false)).await;
    assert!(!ack.session_present, "the session expired");
}

#[tokio::test]
async fn queued_message_expires_while_the_session_is_offline() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 60, true)).await;
    p.subscribe("e/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publisher
        .publish_with("e/t", QoS::AtLeastOnce, false, b"short", short)
        .await;
    publisher
        .publish("e/t", QoS::AtLeastOnce, false, b"kept")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let the expiry pass
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 60, false)).await;
    assert_eq!(
        &p.next_publish().await.payload[..],
        b"kept",
        "[MQTT-3.3.2-5]"
    );
}

#[tokio::test]
async fn queued_message_is_delivered_with_its_remaining_expiry() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 60, true)).await;
    p.subscribe("e/t", QoS::AtLeastOnce).await;
    p.disconnect().await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let props = PublishProperties {
        message_expiry_interval: Some(60),
        ..Default::default()
    };
    publisher
        .publish_with("e/t", QoS::AtLeastOnce, false, b"m", props)
        .await;
    let (mut p, _) = Peer::connect(with_expiry(&broker, "p", 60, false)).await;
    let m = p.next_publish().await;
    let left = m.properties.unwrap().message_expiry_interval.unwrap();
    assert!((1..=60).contains(&left), "[MQTT-3.3.2-6]: {left}");
}

// --- Keep alive, takeover, client identifiers -----------------------------

#[tokio::test]
async fn silent_client_gets_keep_alive_timeout() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "silent");
    connect.keep_alive = 1;
    let started = tokio::time::Instant::now();
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "[MQTT-3.1.2-22]"
    );
}

#[tokio::test]
async fn takeover_sends_session_taken_over_to_the_first_connection() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut first, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "same")).await;
    let (mut second, _) = Peer::connect(options(broker.addr, "same")).await;
    first.expect_disconnect(ReasonCode::SessionTakenOver).await; // [MQTT-3.1.4-3]
    second.subscribe("t", QoS::AtLeastOnce).await;
    second.publish("t", QoS::AtLeastOnce, false, b"x").await;
    assert_eq!(&second.next_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn empty_client_id_gets_an_assigned_client_identifier() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut c, ack) = Peer::connect(options(broker.addr, "")).await;
    let id = ack.properties.unwrap().assigned_client_identifier;
    assert!(id.is_some_and(|id| !id.is_empty()), "[MQTT-3.2.2-16]");
    c.subscribe("t", QoS::AtMostOnce).await;
}

/// An assigned client identifier is unique beyond one run of one broker
/// [MQTT-3.1.3-6]: two brokers (two nodes of a cluster, or one broker and
/// the same after a restart, whose store may hold a session of the
/// identifier it assigned before) never assign the same one.
#[tokio::test]
async fn two_brokers_never_assign_the_same_client_identifier() {
    let mut assigned = BTreeSet::new();
    for _ in 0..2 {
        let broker = TestBroker::start(TestBroker::config()).await;
        for _ in 0..3 {
            let (_c, ack) = Peer::connect(options(broker.addr, "")).await;
            let id = ack.properties.unwrap().assigned_client_identifier.unwrap();
            assert!(assigned.insert(id.clone()), "{id} assigned twice");
        }
    }
    assert_eq!(assigned.len(), 6);
}

// --- Topic aliases --------------------------------------------------------

#[tokio::test]
async fn client_topic_alias_is_resolved_by_the_broker() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("al/t", QoS::AtLeastOnce).await;
    let (mut publisher, ack) = Peer::connect(options(broker.addr, "pub")).await;
    assert!(ack.properties.unwrap().topic_alias_max.unwrap_or(0) >= 1);
    let alias = || PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    publisher
        .publish_with("al/t", QoS::AtLeastOnce, false, b"1", alias())
        .await;
    publisher
        .publish_with("", QoS::AtLeastOnce, false, b"2", alias())
        .await;
    for payload in [b"1", b"2"] {
        let p = sub.next_publish().await;
        assert_eq!((&p.topic[..], &p.payload[..]), (&b"al/t"[..], &payload[..]));
    }
}

#[tokio::test]
async fn broker_assigns_topic_aliases_when_the_client_allows() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "raw");
    connect.properties.topic_alias_maximum = Some(4);
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    let sub = packets::subscribe(1, &[("al/t", mqtt_codec::QoS::AtMostOnce)]);
    raw.send(&Packet::Subscribe(sub)).await.unwrap();
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("al/t", QoS::AtMostOnce, false, b"1")
        .await;
    publisher
        .publish("al/t", QoS::AtMostOnce, false, b"2")
        .await;
    let Some(Packet::Publish(first)) = raw.recv().await else {
        panic!("PUBLISH expected")
    };
    let Some(Packet::Publish(second)) = raw.recv().await else {
        panic!("PUBLISH expected")
    };
    let alias = first
        .properties
        .topic_alias
        .expect("an alias on the first PUBLISH");
    assert_eq!(&*first.topic, "al/t", "the first use binds the alias");
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(&*second.topic, "", "later ones send the alias alone");
    assert!(alias.get() <= 4, "[MQTT-3.3.2-9]");
}

#[tokio::test]
async fn rumqttc_resolves_the_broker_topic_aliases() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut o = options(broker.addr, "sub");
    o.set_topic_alias_max(Some(4));
    let (mut sub, _) = Peer::connect(o).await;
    sub.subscribe("al/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    for _ in 0..2 {
        publisher
            .publish("al/t", QoS::AtLeastOnce, false, b"x")
            .await;
        let p = sub.next_publish().await;
        assert_eq!(&p.topic[..], b"al/t");
        assert!(p.properties.unwrap().topic_alias.is_some());
    }
}

#[tokio::test]
async fn no_topic_alias_without_the_client_topic_alias_maximum() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("al/t", QoS::AtMostOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    for _ in 0..2 {
        publisher
            .publish("al/t", QoS::AtMostOnce, false, b"x")
            .await;
        let p = sub.next_publish().await;
        assert_eq!(
            p.properties.and_then(|p| p.topic_alias),
            None,
            "[MQTT-3.3.2-8]"
        );
    }
}

// --- Subscription identifiers, no local -----------------------------------

#[tokio::test]
async fn delivery_carries_the_subscription_identifier() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe_id("s/+", QoS::AtLeastOnce, 7).await;
    sub.subscribe("plain", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("s/1", QoS::AtLeastOnce, false, b"x")
        .await;
    publisher
        .publish("plain", QoS::AtLeastOnce, false, b"y")
        .await;
    let p = sub.next_publish().await;
    assert_eq!(p.properties.unwrap().subscription_identifiers, vec![7]);
    let p = sub.next_publish().await;
    let ids = p
        .properties
        .map(|p| p.subscription_identifiers)
        .unwrap_or_default();
    assert!(
        ids.is_empty(),
        "no identifier for a subscription without one"
    );
}

#[tokio::test]
async fn overlapping_subscriptions_get_one_delivery_with_every_identifier() {
    // [MQTT-3.3.4-2] [MQTT-3.3.4-3]: one PUBLISH at the highest granted
    // QoS carrying the identifiers of every matching subscription. A raw
    // subscriber: rumqttc 0.24 loses identifiers after the first.
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    for (n, f, qos) in [
        (1, "o/+", mqtt_codec::QoS::AtMostOnce),
        (2, "o/t", mqtt_codec::QoS::AtLeastOnce),
        (3, "#", mqtt_codec::QoS::AtMostOnce),
    ] {
        let mut sub = packets::subscribe(n, &[(f, qos)]);
        sub.properties.subscription_identifier = mqtt_codec::SubscriptionId::new(u32::from(n));
        raw.send(&Packet::Subscribe(sub)).await.unwrap();
        assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    }
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("o/t", QoS::ExactlyOnce, false, b"x")
        .await;
    publisher
        .publish("sentinel", QoS::AtMostOnce, false, b"end")
        .await;
    let Some(Packet::Publish(p)) = raw.recv().await else {
        panic!("PUBLISH expected")
    };
    assert_eq!(p.qos, mqtt_codec::QoS::AtLeastOnce);
    let ids: BTreeSet<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    let Some(Packet::Publish(p)) = raw.recv().await else {
        panic!("PUBLISH expected")
    };
    assert_eq!(&*p.topic, "sentinel", "one copy only");
}

#[tokio::test]
async fn no_local_subscription_does_not_get_its_own_messages() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut me, _) = Peer::connect(options(broker.addr, "me")).await;
    let mut f = Filter::new("nl", QoS::AtLeastOnce);
    f.nolocal = true;
    me.subscribe_with(f, None).await;
    me.publish("nl", QoS::AtLeastOnce, false, b"mine").await;
    let (mut other, _) = Peer::connect(options(broker.addr, "other")).await;
    other
        .publish("nl", QoS::AtLeastOnce, false, b"theirs")
        .await;
    assert_eq!(
        &me.next_publish().await.payload[..],
        b"theirs",
        "[MQTT-3.8.3-3]"
    );
}

// --- Shared subscriptions -------------------------------------------------

async fn collect(peer: &mut Peer, into: &mut Vec<Vec<u8>>) {
    while let Some(Ok(e)) = peer.next_event(Duration::from_millis(1)).await {
        if let rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)) = e {
            into.push(p.payload.to_vec());
        }
    }
}

#[tokio::test]
async fn shared_subscription_delivers_each_message_to_one_member_per_group() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut members = Vec::new();
    for (id, group) in [("g1", "g"), ("g2", "g"), ("h1", "h"), ("h2", "h")] {
        let (mut m, _) = Peer::connect(options(broker.addr, id)).await;
        m.subscribe(&format!("$share/{group}/sh/+"), QoS::AtLeastOnce)
            .await;
        members.push(m);
    }
    let (mut plain, _) = Peer::connect(options(broker.addr, "plain")).await;
    plain.subscribe("sh/+", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    const N: u8 = 20;
    for i in 0..N {
        publisher
            .publish("sh/t", QoS::AtLeastOnce, false, &[i])
            .await;
    }
    let want: Vec<Vec<u8>> = (0..N).map(|i| vec![i]).collect();
    for _ in 0..N {
        plain.next_publish().await;
    }
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    let deadline = tokio::time::Instant::now() + mqtt_testkit::TIMEOUT;
    while got.iter().map(Vec::len).sum::<usize>() < 2 * usize::from(N) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shared deliveries missing: {got:?}"
        );
        for (m, g) in members.iter_mut().zip(got.iter_mut()) {
            collect(m, g).await;
        }
    }
    for (group, (a, b)) in [("g", (0, 1)), ("h", (2, 3))] {
        let mut all = [got[a].clone(), got[b].clone()].concat();
        all.sort();
        assert_eq!(
            all, want,
            "group {group}: every message once, to one member"
        );
    }
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "both members of a group take turns: {got:?}"
    );
}

#[tokio::test]
async fn shared_subscription_redelivers_unacknowledged_messages_of_a_leaving_member() {
    let broker = TestBroker::start(TestBroker::config()).await;
    // A member that receives and never acknowledges.
    let mut connect = packets::connect(ProtocolVersion::V5, "lazy");
    connect.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut lazy, _) = RawClient::connect(broker.addr, connect).await;
    let sub = packets::subscribe(1, &[("$share/g/sh/t", mqtt_codec::QoS::AtLeastOnce)]);
    lazy.send(&Packet::Subscribe(sub)).await.unwrap();
    assert!(matches!(lazy.recv().await, Some(Packet::SubAck(_))));
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("sh/t", QoS::AtLeastOnce, false, b"x")
        .await;
    assert!(matches!(lazy.recv().await, Some(Packet::Publish(_))));
    let (mut good, _) = Peer::connect(options(broker.addr, "good")).await;
    good.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    drop(lazy);
    // MQTT 5.0 §4.8.2: a message not acknowledged by a member whose
    // session ends is sent to another member.
    assert_eq!(&good.next_publish().await.payload[..], b"x");
}

// --- Flow control and sizes -------------------------------------------------

#[tokio::test]
async fn connack_announces_the_configured_receive_maximum() {
    let mut config = TestBroker::config();
    config.receive_maximum = 2;
    let broker = TestBroker::start(config).await;
    let (_c, ack) = Peer::connect(options(broker.addr, "c")).await;
    assert_eq!(ack.properties.unwrap().receive_max, Some(2));
}

/// A client that sends beyond the broker's Receive Maximum at once
/// (paho-mqtt resends its whole backlog after reconnecting) is slowed
/// down, not disconnected: its packets wait unread until acknowledgements
/// leave, and every message reaches the subscriber once, acknowledged in
/// order [MQTT-4.6.0-2]. With a store, acknowledgements wait for their
/// commit, so the window really fills.
#[tokio::test]
async fn a_client_sending_beyond_the_broker_receive_maximum_is_slowed_not_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    for persistence in [false, true] {
        let mut config = TestBroker::config();
        config.receive_maximum = 2;
        config.persistence = persistence;
        config.data_dir = dir.path().join(format!("{persistence}"));
        let broker = TestBroker::start(config).await;
        let (mut sub, _) = Peer::connect(with_expiry(&broker, "sub", 60, true)).await;
        sub.subscribe("rm/t", QoS::ExactlyOnce).await;
        let (mut raw, _) =
            RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
        let n: u16 = 40;
        let mut burst = bytes::BytesMut::new();
        for id in 1..=n {
            let qos = if id % 2 == 0 {
                mqtt_codec::QoS::ExactlyOnce
            } else {
                mqtt_codec::QoS::AtLeastOnce
            };
            let p = packets::publish("rm/t", format!("m{id}").as_bytes(), qos, id);
            Packet::Publish(p)
                .encode(ProtocolVersion::V5, &mut burst)
                .unwrap();
        }
        raw.send_bytes(&burst).await.unwrap();
        let mut acked = Vec::new();
        let mut completed = 0;
        while completed < n / 2 {
            match raw.recv().await {
                Some(Packet::PubAck(a)) => acked.push(a.packet_id.get()),
                Some(Packet::PubRec(a)) => {
                    assert_eq!(a.reason_code, ReasonCode::Success);
                    acked.push(a.packet_id.get());
                    raw.send(&Packet::PubRel(mqtt_codec::Ack::new(a.packet_id)))
                        .await
                        .unwrap();
                }
                Some(Packet::PubComp(_)) => completed += 1,
                other => {
                    panic!("persistence {persistence}: acknowledgement expected, got {other:?}")
                }
            }
        }
        assert_eq!(
            acked,
            (1..=n).collect::<Vec<_>>(),
            "persistence {persistence}"
        );
        let mut got = Vec::new();
        for _ in 1..=n {
            got.push(String::from_utf8(sub.next_publish().await.payload.to_vec()).unwrap());
        }
        let want: Vec<String> = (1..=n).map(|id| format!("m{id}")).collect();
        assert_eq!(got, want, "persistence {persistence}");
        sub.expect_no_publish(Duration::from_millis(200)).await;
        if persistence {
            // Acknowledgements wait for their commit: the window filled.
            assert!(broker.stat(|s| &s.receive_window_waits) >= 1);
        }
    }
}

#[tokio::test]
async fn broker_honours_the_client_receive_maximum() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "raw");
    connect.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    let sub = packets::subscribe(1, &[("rm", mqtt_codec::QoS::AtLeastOnce)]);
    raw.send(&Packet::Subscribe(sub)).await.unwrap();
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    for i in 0..4u8 {
        publisher.publish("rm", QoS::AtLeastOnce, false, &[i]).await;
    }
    let mut ids = Vec::new();
    for i in 0..2u8 {
        let Some(Packet::Publish(p)) = raw.recv().await else {
            panic!("PUBLISH expected")
        };
        assert_eq!(&p.payload[..], &[i]);
        ids.push(p.packet_id.unwrap());
    }
    raw.expect_silence(Duration::from_millis(300)).await; // [MQTT-3.3.4-9]
    for id in ids {
        raw.send(&Packet::PubAck(mqtt_codec::Ack::new(id)))
            .await
            .unwrap();
    }
    for i in 2..4u8 {
        let Some(Packet::Publish(p)) = raw.recv().await else {
            panic!("PUBLISH expected")
        };
        assert_eq!(&p.payload[..], &[i]);
    }
}

#[tokio::test]
async fn message_larger_than_the_client_maximum_packet_size_is_not_sent() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut o = options(broker.addr, "small");
    o.set_max_packet_size(Some(100));
    let (mut sub, _) = Peer::connect(o).await;
    sub.subscribe("big", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    publisher
        .publish("big", QoS::AtLeastOnce, false, &[7; 200])
        .await;
    publisher
        .publish("big", QoS::AtLeastOnce, false, b"small")
        .await;
    assert_eq!(
        &sub.next_publish().await.payload[..],
        b"small",
        "[MQTT-3.1.2-24]"
    );
}

#[tokio::test]
async fn publish_over_the_broker_maximum_packet_size_gets_disconnect_0x95() {
    let mut config = TestBroker::config();
    config.max_packet_size = 1024;
    let broker = TestBroker::start(config).await;
    let (mut c, ack) = Peer::connect(options(broker.addr, "c")).await;
    assert_eq!(ack.properties.unwrap().max_packet_size, Some(1024));
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    let p = packets::publish("t", &[0; 2000], mqtt_codec::QoS::AtMostOnce, 0);
    let _ = raw.send(&Packet::Publish(p)).await;
    raw.expect_disconnect(ReasonCode::PacketTooLarge).await;
    // Others are unaffected.
    c.subscribe("t", QoS::AtLeastOnce).await;
    c.publish("t", QoS::AtLeastOnce, false, &[1; 900]).await;
    assert_eq!(c.next_publish().await.payload.len(), 900);
}

#[tokio::test]
async fn v311_publish_over_the_broker_maximum_packet_size_is_closed() {
    let mut config = TestBroker::config();
    config.max_packet_size = 1024;
    let broker = TestBroker::start(config).await;
    let (mut raw, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V3_1_1, "raw"),
    )
    .await;
    let p = packets::publish("t", &[0; 2000], mqtt_codec::QoS::AtMostOnce, 0);
    let _ = raw.send(&Packet::Publish(p)).await;
    assert_eq!(raw.expect_closed().await, vec![]);
}

// --- Properties passed through ----------------------------------------------

#[tokio::test]
async fn user_and_request_response_properties_pass_through_untouched() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut sub, _) = Peer::connect(options(broker.addr, "sub")).await;
    sub.subscribe("req", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("resp/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        content_type: Some("application/json".into()),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
        ],
        ..Default::default()
    };
    publisher
        .publish_with("req", QoS::AtLeastOnce, false, b"{}", sent.clone())
        .await;
    let got = sub.next_publish().await.properties.unwrap();
    assert_eq!(got.payload_format_indicator, sent.payload_format_indicator);
    assert_eq!(got.response_topic, sent.response_topic);
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(got.content_type, sent.content_type);
    assert_eq!(
        got.user_properties, sent.user_properties,
        "order kept [MQTT-3.3.2-18]"
    );
}

#[tokio::test]
async fn will_properties_pass_through_untouched() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut raw_watcher, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "watcher"),
    )
    .await;
    let sub = packets::subscribe(1, &[("will/#", mqtt_codec::QoS::AtMostOnce)]);
    raw_watcher.send(&Packet::Subscribe(sub)).await.unwrap();
    assert!(matches!(raw_watcher.recv().await, Some(Packet::SubAck(_))));
    let mut connect = packets::connect(ProtocolVersion::V5, "w");
    let props = mqtt_codec::WillProperties {
        content_type: Some(packets::string("text/plain")),
        response_topic: Some(packets::string("resp")),
        correlation_data: Some(Bytes::from_static(b"c")),
        user_properties: vec![mqtt_codec::UserProperty::new(
            packets::string("k"),
            packets::string("v"),
        )]
        .into(),
        ..Default::default()
    };
    connect.will = Some(mqtt_codec::Will {
        topic: packets::string("will/w"),
        payload: Bytes::from_static(b"gone"),
        qos: mqtt_codec::QoS::AtMostOnce,
        retain: false,
        properties: props.clone(),
    });
    let (raw, _) = RawClient::connect(broker.addr, connect).await;
    drop(raw);
    let Some(Packet::Publish(p)) = raw_watcher.recv().await else {
        panic!("will expected")
    };
    let want = WireProps {
        extras: mqtt_codec::PublishExtras {
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
        }
        .shared(),
        ..Default::default()
    };
    assert_eq!(p.properties, want);
}
