//! The limits of [`mqtt_server::Config`], and graceful shutdown, seen from
//! clients on a real socket.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, TestBroker, packets, v5};

async fn subscribe(raw: &mut RawClient, filters: &[(&str, QoS)]) -> Vec<ReasonCode> {
    raw.send(&Packet::Subscribe(packets::subscribe(1, filters)))
        .await
        .unwrap();
    match raw.recv().await {
        Some(Packet::SubAck(a)) => a.reason_codes,
        other => panic!("SUBACK expected, got {other:?}"),
    }
}

#[tokio::test]
async fn max_connections_closes_the_connection_over_the_limit() {
    let mut config = TestBroker::config();
    config.max_connections = 2;
    let broker = TestBroker::start(config).await;
    let (_a, _) = RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "a")).await;
    let (_b, _) = RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "b")).await;
    let mut c = RawClient::open(broker.addr).await.unwrap();
    let _ = c
        .send(&Packet::Connect(Box::new(packets::connect(
            ProtocolVersion::V5,
            "c",
        ))))
        .await;
    assert_eq!(c.expect_closed().await, vec![], "closed without CONNACK");
    assert_eq!(broker.stat(|s| &s.connections_refused), 1);
}

#[tokio::test]
async fn max_subscriptions_per_client_answers_quota_exceeded() {
    let mut config = TestBroker::config();
    config.max_subscriptions_per_client = 2;
    let broker = TestBroker::start(config).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    let codes = subscribe(
        &mut raw,
        &[
            ("a", QoS::AtMostOnce),
            ("b", QoS::AtMostOnce),
            ("c", QoS::AtMostOnce),
        ],
    )
    .await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    // Subscribing again to a filter already held is a replacement, not a new one.
    let codes = subscribe(&mut raw, &[("a", QoS::AtLeastOnce)]).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1]);
}

#[tokio::test]
async fn max_topic_levels_refuses_deeper_filters_and_topics() {
    let mut config = TestBroker::config();
    config.max_topic_levels = 3;
    let broker = TestBroker::start(config).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    let codes = subscribe(
        &mut raw,
        &[("a/b/c", QoS::AtMostOnce), ("a/b/c/d", QoS::AtMostOnce)],
    )
    .await;
    assert_eq!(
        codes,
        vec![ReasonCode::Success, ReasonCode::TopicFilterInvalid]
    );
    let p = packets::publish("a/b/c/d", b"x", QoS::AtLeastOnce, 9);
    raw.send(&Packet::Publish(p)).await.unwrap();
    match raw.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::TopicNameInvalid),
        other => panic!("PUBACK expected, got {other:?}"),
    }
}

#[tokio::test]
async fn max_qos_caps_granted_qos_and_refuses_higher_publications() {
    let mut config = TestBroker::config();
    config.max_qos = 1;
    let broker = TestBroker::start(config).await;
    let (mut raw, ack) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw")).await;
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    let codes = subscribe(&mut raw, &[("t", QoS::ExactlyOnce)]).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1]);
    let p = packets::publish("t", b"x", QoS::ExactlyOnce, 1);
    raw.send(&Packet::Publish(p)).await.unwrap();
    raw.expect_disconnect(ReasonCode::QoSNotSupported).await; // [MQTT-3.2.2-11]
}

#[tokio::test]
async fn max_keepalive_is_imposed_as_server_keep_alive() {
    let mut config = TestBroker::config();
    config.max_keepalive = 10;
    let broker = TestBroker::start(config).await;
    let (_c, ack) = v5::Peer::connect(v5::options(broker.addr, "c")).await; // asks for 30 s
    assert_eq!(ack.properties.unwrap().server_keep_alive, Some(10));
    // 3.1.1 has no Server Keep Alive: the client is refused, as mosquitto does.
    let mut connect = packets::connect(ProtocolVersion::V3_1_1, "old");
    connect.keep_alive = 30;
    let (_raw, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
}

#[tokio::test]
async fn shutdown_sends_server_shutting_down_and_run_returns() {
    let mut broker = TestBroker::start(TestBroker::config()).await;
    let addr = broker.addr;
    let (mut raw5, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "raw5")).await;
    let (mut raw3, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V3_1_1, "raw3"),
    )
    .await;
    let (mut peer, _) = v5::Peer::connect(v5::options(broker.addr, "peer")).await;
    let stopped = tokio::spawn(async move { broker.stop(Duration::from_secs(10)).await });
    raw5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    assert_eq!(
        raw3.expect_closed().await,
        vec![],
        "3.1.1 clients are just closed"
    );
    peer.wait_error().await;
    let result = stopped.await.unwrap();
    assert!(matches!(result, Some(Ok(()))), "run() returned: {result:?}");
    // The listener is closed: refused, or closed at once.
    if let Ok(mut late) = RawClient::open(addr).await {
        late.expect_closed().await;
    }
}

#[tokio::test]
async fn shutdown_disconnect_reason_reaches_rumqttc() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut peer, _) = v5::Peer::connect(v5::options(broker.addr, "peer")).await;
    broker.shutdown.shutdown();
    match peer.wait_error().await {
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code,
            ..
        }) => assert_eq!(
            reason_code,
            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::ServerShuttingDown
        ),
        other => panic!("DISCONNECT 0x8B expected, got {other:?}"),
    }
}

/// Subscribes to `n` filters `{prefix}/{i}` in SUBSCRIBE packets of 500;
/// returns how many were granted.
async fn subscribe_many(raw: &mut RawClient, prefix: &str, n: usize) -> usize {
    let filters: Vec<String> = (0..n).map(|i| format!("{prefix}/{i}")).collect();
    let mut granted = 0;
    for chunk in filters.chunks(500) {
        let chunk: Vec<(&str, QoS)> = chunk
            .iter()
            .map(|f| (f.as_str(), QoS::AtMostOnce))
            .collect();
        granted += subscribe(raw, &chunk)
            .await
            .iter()
            .filter(|c| **c == ReasonCode::Success)
            .count();
    }
    granted
}

/// The defaults accept a backend application that subscribes one filter
/// per device, 20,000 of them on one connection (the old default refused
/// 19,000 with 0x97), while the byte budget still bounds what one client
/// takes: a client whose filters are long runs into it (0x97).
#[tokio::test]
async fn defaults_take_20000_device_filters_and_the_byte_budget_bounds_long_ones() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (mut app, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "app")).await;
    assert_eq!(
        subscribe_many(&mut app, "fleet/device", 20_000).await,
        20_000
    );
    let (mut greedy, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "greedy")).await;
    // About 16 MiB / (1,000-byte filter + 430): each counted as the
    // broker counts it, refused once it would go over.
    let long = "x".repeat(990);
    let (mut held, mut fit) = (0, 0);
    for i in 0..12_000 {
        let bytes = format!("{long}/{i}").len() + 430;
        if held + bytes <= 16 * 1024 * 1024 {
            held += bytes;
            fit += 1;
        }
    }
    assert!(fit < 12_000);
    assert_eq!(subscribe_many(&mut greedy, &long, 12_000).await, fit);
}

/// A `[[client_limits]]` table gives the clients it matches (by user name
/// and client identifier prefix) their own limits; others keep the
/// top-level ones.
#[tokio::test]
async fn client_limits_tables_give_matching_clients_their_own_limits() {
    let config = mqtt_server::Config::from_toml(
        r#"
        listen = ["127.0.0.1:0"]
        max_subscriptions_per_client = 3
        [[client_limits]]
        client_id_prefix = "backend-"
        max_subscriptions_per_client = 5
        "#,
    )
    .unwrap();
    let broker = TestBroker::start(config).await;
    let (mut backend, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "backend-1"),
    )
    .await;
    assert_eq!(subscribe_many(&mut backend, "b", 10).await, 5);
    let (mut device, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "device-1"),
    )
    .await;
    assert_eq!(subscribe_many(&mut device, "d", 10).await, 3);
}

/// A `[[listener]]` table's own subscription limits hold for the clients
/// that connect through it (an internal listener for backends, say); the
/// other listeners keep the top-level ones, and a matching
/// `[[client_limits]]` table still comes first.
#[tokio::test]
async fn a_listener_gives_its_clients_its_own_subscription_limits() {
    let config = mqtt_server::Config::from_toml(
        r#"
        listen = ["127.0.0.1:0"]
        max_subscriptions_per_client = 3
        [[client_limits]]
        client_id_prefix = "special-"
        max_subscriptions_per_client = 4
        [[listener]]
        kind = "mqtt"
        address = "127.0.0.1:0"
        max_subscriptions_per_client = 6
        "#,
    )
    .unwrap();
    let broker = TestBroker::start(config).await;
    let [public, internal] = [broker.listeners[0].address, broker.listeners[1].address];
    assert_ne!(public, internal);
    let connect = |addr, id| RawClient::connect(addr, packets::connect(ProtocolVersion::V5, id));
    let (mut backend, _) = connect(internal, "backend-1").await;
    assert_eq!(subscribe_many(&mut backend, "b", 10).await, 6);
    let (mut device, _) = connect(public, "device-1").await;
    assert_eq!(subscribe_many(&mut device, "d", 10).await, 3);
    let (mut special, _) = connect(internal, "special-1").await;
    assert_eq!(subscribe_many(&mut special, "s", 10).await, 4);
}
