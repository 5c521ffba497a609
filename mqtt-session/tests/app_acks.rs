//! The client role's hooks for an application that must take a message
//! before the server may forget it (a bridge, a store-and-forward
//! gateway): manual acknowledgements, confirmed releases, tags that come
//! back with each completed publication; and the server role's treatment
//! of a client that set mosquitto's bridge bit. Driven by hand, packet by
//! packet, with time passed in.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqtt_codec::{
    Ack, ConnAck, Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionId, SubscriptionOptions,
};
use mqtt_session::{
    Accept, ClientConfig, ClientConnection, ClientEvent, Delivery, Message, ServerConfig,
    ServerConnection, ServerEvent,
};

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

fn sent(client: &mut ClientConnection, now: Instant) -> Vec<Packet> {
    let mut out = Vec::new();
    client.poll_transmit(now, |t| out.push(t.to_packet()));
    out
}

fn events(client: &mut ClientConnection) -> Vec<ClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// A client whose CONNECT went out and whose CONNACK came back.
fn connected(version: ProtocolVersion) -> (ClientConnection, Instant) {
    let now = Instant::now();
    let connect = Connect::new(version, MqttString::from_static("bridge"));
    let mut client = ClientConnection::new(ClientConfig::default(), connect, None, now);
    assert!(matches!(sent(&mut client, now)[..], [Packet::Connect(_)]));
    client
        .handle_packet(now, Packet::from(ConnAck::new(ReasonCode::Success, false)))
        .unwrap();
    assert!(matches!(
        events(&mut client)[..],
        [ClientEvent::Connected(_)]
    ));
    (client, now)
}

fn publish(topic: &str, qos: QoS, id: Option<u16>) -> Packet {
    let mut p = Publish::new(
        MqttString::try_from(topic.to_owned()).unwrap(),
        Bytes::from_static(b"x"),
    );
    p.qos = qos;
    p.packet_id = id.map(pid);
    Packet::Publish(p)
}

#[test]
fn manual_acks_hold_puback_until_the_application_acknowledges_in_arrival_order() {
    let (mut client, now) = connected(ProtocolVersion::V5);
    client.set_manual_acks(true);
    client
        .handle_packet(now, publish("a", QoS::AtLeastOnce, Some(1)))
        .unwrap();
    client
        .handle_packet(now, publish("b", QoS::AtLeastOnce, Some(2)))
        .unwrap();
    client
        .handle_packet(now, publish("c", QoS::AtMostOnce, None))
        .unwrap();
    let ids: Vec<Option<PacketId>> = events(&mut client)
        .into_iter()
        .map(|e| match e {
            ClientEvent::Publish { packet_id, .. } => packet_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, [Some(pid(1)), Some(pid(2)), None]);
    assert!(sent(&mut client, now).is_empty(), "acknowledged too early");
    // The second is done first: its PUBACK waits for the first's
    // [MQTT-4.6.0-2].
    assert!(client.acknowledge(pid(2), ReasonCode::Success));
    assert!(sent(&mut client, now).is_empty());
    assert!(client.acknowledge(pid(1), ReasonCode::Success));
    assert_eq!(
        sent(&mut client, now),
        [
            Packet::PubAck(Ack::new(pid(1))),
            Packet::PubAck(Ack::new(pid(2)))
        ]
    );
    assert!(!client.acknowledge(pid(1), ReasonCode::Success));
}

#[test]
fn without_manual_acks_messages_are_acknowledged_as_they_arrive() {
    let (mut client, now) = connected(ProtocolVersion::V3_1_1);
    client
        .handle_packet(now, publish("a", QoS::AtLeastOnce, Some(5)))
        .unwrap();
    assert!(matches!(events(&mut client)[..], [ClientEvent::Message(_)]));
    assert_eq!(sent(&mut client, now), [Packet::PubAck(Ack::new(pid(5)))]);
}

#[test]
fn confirmed_releases_hold_pubcomp_until_complete_release() {
    let (mut client, now) = connected(ProtocolVersion::V5);
    client.set_manual_acks(true);
    client.set_confirm_releases(true);
    client
        .handle_packet(now, publish("a", QoS::ExactlyOnce, Some(3)))
        .unwrap();
    assert_eq!(events(&mut client).len(), 1);
    client.acknowledge(pid(3), ReasonCode::Success);
    assert_eq!(sent(&mut client, now), [Packet::PubRec(Ack::new(pid(3)))]);
    // A resend before PUBREL is a duplicate: not handed over again.
    client
        .handle_packet(now, publish("a", QoS::ExactlyOnce, Some(3)))
        .unwrap();
    assert!(events(&mut client).is_empty());
    assert_eq!(sent(&mut client, now), [Packet::PubRec(Ack::new(pid(3)))]);
    client
        .handle_packet(now, Packet::PubRel(Ack::new(pid(3))))
        .unwrap();
    assert!(matches!(
        events(&mut client)[..],
        [ClientEvent::Released { packet_id }] if packet_id == pid(3)
    ));
    assert!(
        sent(&mut client, now).is_empty(),
        "PUBCOMP before the release was confirmed"
    );
    assert!(client.complete_release(pid(3)));
    assert_eq!(sent(&mut client, now), [Packet::PubComp(Ack::new(pid(3)))]);
}

#[test]
fn a_published_delivery_comes_back_with_its_tag_and_without_subscription_ids() {
    let (mut client, now) = connected(ProtocolVersion::V5);
    let message = Arc::new(Message::new(
        MqttString::from_static("out/t"),
        Bytes::from_static(b"p"),
        QoS::ExactlyOnce,
        true,
    ));
    let mut d = Delivery::new(message, QoS::AtLeastOnce);
    d.tag = 42;
    d.subscription_ids.push(SubscriptionId::new(7).unwrap());
    client.publish(d).unwrap();
    let out = sent(&mut client, now);
    let [Packet::Publish(p)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(p.qos, QoS::AtLeastOnce, "sent at the delivery's QoS");
    assert!(p.retain);
    assert!(p.properties.subscription_identifiers.is_empty());
    let id = p.packet_id.unwrap();
    assert_eq!(client.inflight_delivery(id).map(|d| d.tag), Some(42));
    client
        .handle_packet(now, Packet::PubAck(Ack::new(id)))
        .unwrap();
    assert!(matches!(
        events(&mut client)[..],
        [ClientEvent::Published { packet_id, tag: 42, .. }] if packet_id == id
    ));
    // A plain message is published as it is, with tag 0.
    client
        .publish(Message::new(
            MqttString::from_static("t"),
            Bytes::new(),
            QoS::AtLeastOnce,
            false,
        ))
        .unwrap();
    let out = sent(&mut client, now);
    let [Packet::Publish(p)] = &out[..] else {
        panic!("{out:?}")
    };
    client
        .handle_packet(now, Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .unwrap();
    assert!(matches!(
        events(&mut client)[..],
        [ClientEvent::Published { tag: 0, .. }]
    ));
}

/// A client with mosquitto's bridge bit gets No Local and Retain As
/// Published on its subscriptions, whatever it asked (MQTT 3.1.1 has
/// neither option); a shared subscription is left as it is.
#[test]
fn a_bridge_client_subscribes_no_local_and_retain_as_published() {
    let now = Instant::now();
    let mut server = ServerConnection::new(ServerConfig::default(), now);
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::from_static("b"));
    connect.bridge = true;
    server
        .handle_packet(now, Packet::Connect(Box::new(connect)))
        .unwrap();
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Connect { .. })
    ));
    server.accept(now, Accept::default());
    assert!(server.is_bridge());
    let subscribe = Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: ["t/#", "$share/g/t/#"]
            .into_iter()
            .map(|f| Subscription {
                filter: MqttString::from_static(f),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            })
            .collect(),
    };
    server
        .handle_packet(now, Packet::Subscribe(subscribe))
        .unwrap();
    let Some(ServerEvent::Subscribe(s)) = server.poll_event() else {
        panic!("no SUBSCRIBE event")
    };
    let plain = s.subscriptions[0].options;
    assert!(plain.no_local && plain.retain_as_published);
    let shared = s.subscriptions[1].options;
    assert!(!shared.no_local && !shared.retain_as_published);
}

/// The client's own in-flight limit caps its window, whatever the server's
/// Receive Maximum (an MQTT 3.1.1 server tells none).
#[test]
fn max_inflight_caps_the_window_below_the_servers_receive_maximum() {
    let now = Instant::now();
    let connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::from_static("c"));
    let config = ClientConfig {
        max_inflight: 2,
        ..ClientConfig::default()
    };
    let mut client = ClientConnection::new(config, connect, None, now);
    sent(&mut client, now);
    client
        .handle_packet(now, Packet::from(ConnAck::new(ReasonCode::Success, false)))
        .unwrap();
    events(&mut client);
    for i in 0..5 {
        let m = Message::new(
            MqttString::try_from(format!("t/{i}")).unwrap(),
            Bytes::new(),
            QoS::AtLeastOnce,
            false,
        );
        client.publish(m).unwrap();
    }
    let out = sent(&mut client, now);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(client.inflight(), 2);
    assert_eq!(client.queued(), 3);
    let Packet::Publish(first) = &out[0] else {
        panic!("{out:?}")
    };
    client
        .handle_packet(now, Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .unwrap();
    assert_eq!(sent(&mut client, now).len(), 1, "one more as one completes");
}
