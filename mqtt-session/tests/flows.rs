//! The protocol flows of `mqtt-session`, one test per behaviour, each named
//! after the statement of the specification it checks where there is one.
//!
//! A client and a server connection run against each other through the
//! codec in virtual time (see `harness`).

#![allow(clippy::unwrap_used)]

pub mod harness;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harness::{Pair, Setup, Side, message, mqtt, pid, raw_publish, secs, text};
use mqtt_codec::{
    Ack, Auth, AuthProperties, ConnAckProperties, Connect, Disconnect, Packet, ProtocolVersion,
    QoS, ReasonCode, SubscribeProperties, Subscription, SubscriptionOptions, Will,
};
use mqtt_session::{
    Accept, ClientCloseReason, CloseReason, Delivery, DropReason, InflightStage, Overflow,
    ProtocolError, ServerEvent,
};

fn will(delay: Option<u32>) -> Will {
    let mut w = Will {
        topic: mqtt("clients/c1/status"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    w.properties.will_delay_interval = delay;
    w
}

fn with_will(mut setup: Setup, delay: Option<u32>) -> Setup {
    setup.connect.will = Some(will(delay));
    setup
}

fn disconnects_sent_by(pair: &Pair, side: Side) -> Vec<ReasonCode> {
    pair.sent_by(side)
        .filter_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason_code),
            _ => None,
        })
        .collect()
}

fn server_protocol_error(pair: &Pair) -> &ProtocolError {
    match &pair.server_closed().reason {
        CloseReason::Protocol(e) => e,
        other => panic!("closed for {other:?}, not a protocol error"),
    }
}

/// Packets of one kind written by `side` since `mark` in the sent log.
fn acks_sent_by(
    pair: &Pair,
    side: Side,
    mark: usize,
    kind: fn(&Packet) -> Option<&Ack>,
) -> Vec<Ack> {
    pair.sent[mark..]
        .iter()
        .filter(|(s, _)| *s == side)
        .filter_map(|(_, p)| kind(p).cloned())
        .collect()
}

fn puback(p: &Packet) -> Option<&Ack> {
    match p {
        Packet::PubAck(a) => Some(a),
        _ => None,
    }
}

fn pubrec(p: &Packet) -> Option<&Ack> {
    match p {
        Packet::PubRec(a) => Some(a),
        _ => None,
    }
}

fn pubrel(p: &Packet) -> Option<&Ack> {
    match p {
        Packet::PubRel(a) => Some(a),
        _ => None,
    }
}

fn pubcomp(p: &Packet) -> Option<&Ack> {
    match p {
        Packet::PubComp(a) => Some(a),
        _ => None,
    }
}

// ---- CONNECT and CONNACK ------------------------------------------------------

#[test]
fn connect_v5_is_accepted_with_connack_success() {
    let pair = Pair::connected(Setup::v5("c1"));
    let ack = pair.connack();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(!ack.session_present);
    assert!(pair.client.is_connected());
    assert!(!pair.server.is_closed());
    assert_eq!(pair.server.version(), ProtocolVersion::V5);
    assert_eq!(pair.server.client_id(), Some(&mqtt("c1")));
    assert!(matches!(
        pair.sent_by(Side::Client).next(),
        Some(Packet::Connect(_))
    ));
}

#[test]
fn connect_v3_1_1_is_accepted_with_connack_without_properties() {
    let pair = Pair::connected(Setup::v3("c1"));
    let ack = pair.connack();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(
        ack.properties.is_empty(),
        "3.1.1 has no CONNACK properties: {ack:?}"
    );
    assert_eq!(pair.server.version(), ProtocolVersion::V3_1_1);
    assert_eq!(pair.client.version(), ProtocolVersion::V3_1_1);
}

#[test]
fn connack_carries_the_server_limits() {
    let mut setup = Setup::v5("c1");
    setup.server.receive_maximum = 10;
    setup.server.max_packet_size = 4096;
    setup.server.topic_alias_maximum = 5;
    setup.server.maximum_qos = QoS::AtLeastOnce;
    setup.server.retain_available = false;
    let pair = Pair::connected(setup);
    let p = &pair.connack().properties;
    assert_eq!(p.receive_maximum.map(|r| r.get()), Some(10));
    assert_eq!(p.maximum_packet_size.map(|m| m.get()), Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(5));
    assert_eq!(p.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(p.retain_available, Some(false));
}

#[test]
fn empty_client_id_v5_gets_an_assigned_client_identifier() {
    let pair = Pair::connected(Setup::v5(""));
    assert_eq!(
        pair.connack().properties.assigned_client_identifier,
        Some(mqtt("auto-1"))
    );
    assert_eq!(pair.server.client_id(), Some(&mqtt("auto-1")));
    assert!(matches!(
        &pair.server_events[0],
        ServerEvent::Connect {
            needs_client_id: true,
            ..
        }
    ));
}

#[test]
fn empty_client_id_v3_1_1_with_clean_session_is_accepted() {
    let pair = Pair::connected(Setup::v3(""));
    assert_eq!(pair.connack().reason_code, ReasonCode::Success);
    assert_eq!(pair.server.client_id(), Some(&mqtt("auto-1")));
}

/// [MQTT-3.1.3-8]
#[test]
fn empty_client_id_v3_1_1_without_clean_session_is_refused_identifier_rejected() {
    let mut setup = Setup::v3("");
    setup.connect.clean_start = false;
    let mut pair = Pair::new(setup);
    pair.drive();
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::Refused(ReasonCode::ClientIdentifierNotValid)
    );
    assert_eq!(
        pair.server_closed().reason,
        CloseReason::Rejected(ReasonCode::ClientIdentifierNotValid)
    );
    // On the wire: CONNACK with return code 0x02, "identifier rejected".
    let connack = pair.sent_by(Side::Server).next().unwrap();
    let mut wire = BytesMut::new();
    connack.encode(ProtocolVersion::V3_1_1, &mut wire).unwrap();
    assert_eq!(&wire[..], &[0x20, 0x02, 0x00, 0x02]);
    // The application was never asked.
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Connect { .. }))
    );
}

/// [MQTT-3.1.0-1]
#[test]
fn first_packet_not_connect_closes_the_connection() {
    let mut pair = Pair::new(Setup::v5("c1"));
    pair.inject(Side::Client, Packet::PingReq);
    pair.read(Side::Server, 1);
    assert!(pair.server.is_closed());
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::FirstPacketNotConnect {
            packet: mqtt_codec::PacketType::PingReq
        }
    );
    assert!(pair.server_closed().session.is_none());
    assert!(
        pair.intercept(Side::Server).is_empty(),
        "nothing is answered"
    );
}

/// [MQTT-3.1.0-2]
#[test]
fn second_connect_is_a_protocol_error_disconnect_0x82() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let connect = Connect::new(ProtocolVersion::V5, mqtt("c1"));
    pair.inject(Side::Client, Packet::Connect(Box::new(connect)));
    pair.drive();
    assert_eq!(server_protocol_error(&pair), &ProtocolError::SecondConnect);
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::ProtocolError]
    );
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::ServerDisconnect(ReasonCode::ProtocolError)
    );
}

#[test]
fn connect_timeout_closes_a_connection_that_never_sends_connect() {
    let mut setup = Setup::v5("c1");
    setup.server.connect_timeout = secs(10);
    let mut pair = Pair::new(setup);
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + secs(10)));
    pair.advance(Duration::from_millis(9_999));
    assert!(!pair.server.is_closed());
    pair.advance(Duration::from_millis(1));
    assert!(pair.server.is_closed());
    assert_eq!(server_protocol_error(&pair), &ProtocolError::ConnectTimeout);
    assert!(pair.server_closed().will.is_none());
}

#[test]
fn max_keepalive_v5_client_is_told_server_keep_alive_and_uses_it() {
    let mut setup = Setup::v5("c1").keep_alive(120);
    setup.server.max_keepalive = 30;
    let mut pair = Pair::connected(setup);
    assert_eq!(pair.connack().properties.server_keep_alive, Some(30));
    // The client pings on the server's period, not its own.
    pair.advance(secs(29));
    assert!(pair.intercept(Side::Client).is_empty());
    pair.advance(secs(1));
    assert_eq!(pair.intercept(Side::Client), vec![Packet::PingReq]);
}

#[test]
fn max_keepalive_v5_keep_alive_zero_is_replaced() {
    let mut setup = Setup::v5("c1").keep_alive(0);
    setup.server.max_keepalive = 30;
    let pair = Pair::connected(setup);
    assert_eq!(pair.connack().properties.server_keep_alive, Some(30));
}

#[test]
fn max_keepalive_v3_1_1_client_over_the_maximum_is_refused() {
    let mut setup = Setup::v3("c1").keep_alive(120);
    setup.server.max_keepalive = 30;
    let mut pair = Pair::new(setup);
    pair.drive();
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::Refused(ReasonCode::ClientIdentifierNotValid)
    );
    assert!(!pair.client.is_connected());
}

// ---- keep alive ----------------------------------------------------------------

/// [MQTT-3.1.2-22]
#[test]
fn server_closes_after_one_and_a_half_keep_alive_of_silence() {
    let mut pair = Pair::connected(Setup::v5("c1").keep_alive(10));
    assert_eq!(
        pair.server.poll_timeout(),
        Some(pair.now + Duration::from_millis(15_000))
    );
    // The client's PINGREQ stays in its buffer: the server hears nothing.
    pair.advance(Duration::from_millis(14_900));
    assert!(
        !pair.server.is_closed(),
        "closed at 1.49 times the keep alive"
    );
    pair.advance(Duration::from_millis(100));
    assert!(pair.server.is_closed());
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::KeepAliveTimeout { keep_alive: 10 }
    );
}

#[test]
fn keep_alive_timeout_sends_disconnect_0x8d_under_v5() {
    let mut pair = Pair::connected(Setup::v5("c1").keep_alive(10));
    pair.advance(secs(15));
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::from(Disconnect::new(ReasonCode::KeepAliveTimeout))]
    );
}

#[test]
fn keep_alive_timeout_v3_1_1_closes_without_disconnect() {
    let mut pair = Pair::connected(Setup::v3("c1").keep_alive(10));
    pair.advance(secs(15));
    assert!(pair.server.is_closed());
    assert!(pair.intercept(Side::Server).is_empty());
}

/// [MQTT-3.1.2-8]
#[test]
fn keep_alive_timeout_publishes_the_will() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1").keep_alive(10), None));
    pair.advance(secs(15));
    let will = pair.server_closed().will.as_ref().expect("will published");
    assert_eq!(will.will.topic, mqtt("clients/c1/status"));
    assert_eq!(will.publish_at, pair.now);
}

/// [MQTT-3.1.2-20] [MQTT-3.12.4-1]
#[test]
fn client_sends_pingreq_after_keep_alive_of_idle_and_gets_pingresp() {
    let mut pair = Pair::connected(Setup::v5("c1").keep_alive(10));
    let count = |pair: &Pair, side, packet| pair.sent_by(side).filter(|p| **p == packet).count();
    for round in 1..=3 {
        pair.advance(Duration::from_millis(9_999));
        pair.drive();
        assert_eq!(
            count(&pair, Side::Client, Packet::PingReq),
            round - 1,
            "pinged early"
        );
        pair.advance(Duration::from_millis(1));
        pair.drive();
        assert_eq!(count(&pair, Side::Client, Packet::PingReq), round);
        assert_eq!(count(&pair, Side::Server, Packet::PingResp), round);
        assert!(pair.client.is_connected());
        assert!(!pair.server.is_closed());
    }
}

#[test]
fn client_gives_up_when_pingresp_never_comes() {
    let mut pair = Pair::connected(Setup::v5("c1").keep_alive(10));
    // The server hears nothing and answers nothing from here on.
    pair.advance(secs(10));
    assert!(pair.client.is_connected());
    pair.advance(Duration::from_millis(9_999));
    assert!(
        pair.client.is_connected(),
        "gave up before a keep alive passed"
    );
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::Protocol(ProtocolError::PingTimeout)
    );
    assert_eq!(
        pair.intercept(Side::Client),
        vec![
            Packet::PingReq,
            Packet::from(Disconnect::new(ReasonCode::KeepAliveTimeout))
        ]
    );
}

// ---- QoS 1 and QoS 2, both ways --------------------------------------------------

#[test]
fn qos1_client_to_server_puback_carries_the_server_reason_code() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.ack_reason = ReasonCode::NoMatchingSubscribers;
    pair.client_publish("a/b", "m1", QoS::AtLeastOnce).unwrap();
    pair.drive();
    assert_eq!(pair.server_payloads(), vec!["m1"]);
    assert_eq!(pair.server_messages()[0].qos, QoS::AtLeastOnce);
    assert_eq!(
        pair.published(),
        vec![(pid(1), ReasonCode::NoMatchingSubscribers)]
    );
    assert_eq!(pair.client.inflight(), 0);
}

#[test]
fn qos2_client_to_server_publish_pubrec_pubrel_pubcomp() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mark = pair.sent.len();
    pair.client_publish("a/b", "m1", QoS::ExactlyOnce).unwrap();
    pair.drive();
    let kinds: Vec<_> = pair.sent[mark..]
        .iter()
        .map(|(s, p)| (*s, p.packet_type()))
        .collect();
    use mqtt_codec::PacketType as T;
    assert_eq!(
        kinds,
        vec![
            (Side::Client, T::Publish),
            (Side::Server, T::PubRec),
            (Side::Client, T::PubRel),
            (Side::Server, T::PubComp),
        ]
    );
    assert_eq!(pair.server_payloads(), vec!["m1"]);
    assert_eq!(pair.published(), vec![(pid(1), ReasonCode::Success)]);
    assert_eq!(pair.client.inflight(), 0);
}

#[test]
fn qos2_pubrec_with_a_failure_code_ends_the_flow() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.ack_reason = ReasonCode::NotAuthorized;
    let mark = pair.sent.len();
    pair.client_publish("a/b", "m1", QoS::ExactlyOnce).unwrap();
    pair.drive();
    assert_eq!(pair.published(), vec![(pid(1), ReasonCode::NotAuthorized)]);
    assert!(acks_sent_by(&pair, Side::Client, mark, pubrel).is_empty());
    assert_eq!(pair.client.inflight(), 0);
}

#[test]
fn qos1_server_to_client_delivery_is_acknowledged() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mark = pair.sent.len();
    pair.server_publish("t", "d1", QoS::AtLeastOnce).unwrap();
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["d1"]);
    let acks = acks_sent_by(&pair, Side::Client, mark, puback);
    assert_eq!(acks, vec![Ack::with_reason(pid(1), ReasonCode::Success)]);
    assert_eq!(pair.server.inflight(), 0);
}

#[test]
fn qos2_server_to_client_delivery_completes_with_pubcomp() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mark = pair.sent.len();
    pair.server_publish("t", "d1", QoS::ExactlyOnce).unwrap();
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["d1"]);
    assert_eq!(
        acks_sent_by(&pair, Side::Client, mark, pubrec),
        vec![Ack::new(pid(1))]
    );
    assert_eq!(
        acks_sent_by(&pair, Side::Server, mark, pubrel),
        vec![Ack::new(pid(1))]
    );
    assert_eq!(
        acks_sent_by(&pair, Side::Client, mark, pubcomp),
        vec![Ack::new(pid(1))]
    );
    assert_eq!(pair.server.inflight(), 0);
}

#[test]
fn qos1_and_qos2_flows_work_under_v3_1_1() {
    let mut pair = Pair::connected(Setup::v3("c1"));
    pair.client_publish("a", "up1", QoS::AtLeastOnce).unwrap();
    pair.client_publish("a", "up2", QoS::ExactlyOnce).unwrap();
    pair.server_publish("t", "down1", QoS::AtLeastOnce).unwrap();
    pair.server_publish("t", "down2", QoS::ExactlyOnce).unwrap();
    pair.drive();
    assert_eq!(pair.server_payloads(), vec!["up1", "up2"]);
    assert_eq!(pair.client_payloads(), vec!["down1", "down2"]);
    assert_eq!(pair.published().len(), 2);
    assert_eq!((pair.client.inflight(), pair.server.inflight()), (0, 0));
}

#[test]
fn routed_message_is_delivered_at_the_lesser_of_message_and_subscription_qos() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.subscribe(&[("r/+", QoS::AtLeastOnce)]);
    pair.client_publish("r/1", "hello", QoS::ExactlyOnce)
        .unwrap();
    pair.drive();
    let got = pair.client_messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].topic.as_str(), got[0].qos),
        ("r/1", QoS::AtLeastOnce)
    );
}

/// [MQTT-4.3.3-10]: the receiver does not deliver a QoS 2 message twice.
#[test]
fn qos2_duplicate_publish_before_pubrec_is_delivered_once() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.manual_ack = true;
    pair.policy.route = false;
    let p = raw_publish("a", "once", QoS::ExactlyOnce, Some(7));
    pair.inject(Side::Client, Packet::Publish(p.clone()));
    pair.read(Side::Server, 1);
    let mut dup = p;
    dup.dup = true;
    pair.inject(Side::Client, Packet::Publish(dup));
    pair.read(Side::Server, 1);
    assert_eq!(pair.server_payloads(), vec!["once"]);
    assert!(
        pair.intercept(Side::Server).is_empty(),
        "PUBREC before the application acked"
    );
    assert!(pair.server.acknowledge(pid(7), ReasonCode::Success));
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::PubRec(Ack::new(pid(7)))]
    );
}

/// The client resends QoS 2 message `p` (id 7, payload "once", delivered
/// already) with DUP: it is answered with PUBREC and not delivered again
/// [MQTT-4.3.3-10]; its PUBREL then ends the flow with PUBCOMP.
fn resend_is_answered_not_delivered_then_released(pair: &mut Pair, p: mqtt_codec::Publish) {
    let mut dup = p;
    dup.dup = true;
    pair.inject(Side::Client, Packet::Publish(dup));
    pair.read(Side::Server, 1);
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::PubRec(Ack::new(pid(7)))]
    );
    assert_eq!(pair.server_payloads(), vec!["once"]);
    pair.inject(Side::Client, Packet::PubRel(Ack::new(pid(7))));
    pair.read(Side::Server, 1);
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::PubComp(Ack::new(pid(7)))]
    );
}

#[test]
fn qos2_duplicate_publish_after_pubrec_is_answered_with_pubrec_again() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.route = false;
    let p = raw_publish("a", "once", QoS::ExactlyOnce, Some(7));
    pair.inject(Side::Client, Packet::Publish(p.clone()));
    pair.read(Side::Server, 1);
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::PubRec(Ack::new(pid(7)))]
    );
    resend_is_answered_not_delivered_then_released(&mut pair, p);
    // Released: the identifier starts a new message now.
    pair.inject(
        Side::Client,
        Packet::Publish(raw_publish("a", "again", QoS::ExactlyOnce, Some(7))),
    );
    pair.read(Side::Server, 1);
    assert_eq!(pair.server_payloads(), vec!["once", "again"]);
}

#[test]
fn pubrel_for_an_unknown_identifier_gets_pubcomp_0x92() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.inject(Side::Client, Packet::PubRel(Ack::new(pid(42))));
    pair.read(Side::Server, 1);
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::PubComp(Ack::with_reason(
            pid(42),
            ReasonCode::PacketIdentifierNotFound
        ))]
    );
    assert!(!pair.server.is_closed());
}

/// [MQTT-4.6.0-2] [MQTT-4.6.0-3]
#[test]
fn acknowledgements_are_sent_in_arrival_order_whatever_order_the_app_acks_in() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.manual_ack = true;
    for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]
        .into_iter()
        .enumerate()
    {
        pair.client_publish("a", &format!("m{i}"), qos).unwrap();
    }
    pair.drive();
    assert_eq!(pair.server_payloads(), vec!["m0", "m1", "m2"]);
    assert!(pair.server.acknowledge(pid(3), ReasonCode::Success));
    assert!(pair.intercept(Side::Server).is_empty());
    assert!(pair.server.acknowledge(pid(2), ReasonCode::Success));
    assert!(pair.intercept(Side::Server).is_empty());
    assert!(pair.server.acknowledge(pid(1), ReasonCode::Success));
    assert_eq!(
        pair.intercept(Side::Server),
        vec![
            Packet::PubAck(Ack::new(pid(1))),
            Packet::PubRec(Ack::new(pid(2))),
            Packet::PubAck(Ack::new(pid(3))),
        ]
    );
    assert!(
        !pair.server.acknowledge(pid(1), ReasonCode::Success),
        "acked twice"
    );
}

// ---- retransmission on reconnection ------------------------------------------------

/// [MQTT-4.4.0-1]
#[test]
fn unacknowledged_deliveries_are_resent_with_dup_after_reconnect() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.server_publish("t", "d1", QoS::AtLeastOnce).unwrap();
    pair.server_publish("t", "d2", QoS::ExactlyOnce).unwrap();
    let lost = pair.write(Side::Server, usize::MAX);
    assert_eq!(lost, 2);
    let first: Vec<_> = pair
        .publishes_sent_by(Side::Server)
        .into_iter()
        .cloned()
        .collect();
    assert!(first.iter().all(|p| !p.dup));
    pair.break_connection();
    assert_eq!(pair.store[&mqtt("c1")].inflight.len(), 2);

    let mark = pair.sent.len();
    pair.reconnect(false);
    pair.drive();
    assert!(pair.connack().session_present);
    let resent: Vec<_> = pair.sent[mark..]
        .iter()
        .filter_map(|(s, p)| match (s, p) {
            (Side::Server, Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resent.len(), 2);
    for (old, new) in first.iter().zip(&resent) {
        assert!(new.dup, "resent without DUP: {new:?}");
        assert_eq!((new.packet_id, &new.payload), (old.packet_id, &old.payload));
    }
    assert_eq!(pair.client_payloads(), vec!["d1", "d2"]);
    assert_eq!(pair.server.inflight(), 0);
}

/// [MQTT-4.4.0-1]
#[test]
fn pubrel_is_resent_after_reconnect_for_a_released_qos2_delivery() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.server_publish("t", "d1", QoS::ExactlyOnce).unwrap();
    pair.write(Side::Server, 1); // PUBLISH
    pair.read(Side::Client, 1);
    pair.write(Side::Client, 1); // PUBREC
    pair.read(Side::Server, 1);
    pair.write(Side::Server, 1); // PUBREL, lost
    pair.break_connection();
    assert_eq!(
        pair.store[&mqtt("c1")].inflight[0].stage,
        InflightStage::Released
    );
    assert_eq!(
        pair.client_session.as_ref().unwrap().incoming_qos2,
        vec![pid(1)]
    );

    let mark = pair.sent.len();
    pair.reconnect(false);
    pair.drive();
    assert!(pair.connack().session_present);
    let server_sent: Vec<_> = pair.sent[mark..]
        .iter()
        .filter(|(s, _)| *s == Side::Server)
        .map(|(_, p)| p.clone())
        .collect();
    assert!(matches!(&server_sent[0], Packet::ConnAck(_)));
    assert_eq!(server_sent[1], Packet::PubRel(Ack::new(pid(1))));
    assert_eq!(
        acks_sent_by(&pair, Side::Client, mark, pubcomp),
        vec![Ack::new(pid(1))]
    );
    assert!(
        pair.publishes_sent_by(Side::Server).len() == 1,
        "PUBLISH resent after PUBREC"
    );
    assert_eq!(pair.client_payloads(), vec!["d1"]);
    assert_eq!(pair.server.inflight(), 0);
}

#[test]
fn client_publications_in_flight_are_resent_with_dup_after_reconnect() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.client_publish("a", "u1", QoS::AtLeastOnce).unwrap();
    pair.client_publish("a", "u2", QoS::ExactlyOnce).unwrap();
    pair.write(Side::Client, usize::MAX);
    pair.break_connection();
    let mark = pair.sent.len();
    pair.reconnect(false);
    pair.drive();
    let resent: Vec<_> = pair.sent[mark..]
        .iter()
        .filter_map(|(s, p)| match (s, p) {
            (Side::Client, Packet::Publish(p)) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|p| p.dup));
    assert_eq!(pair.server_payloads(), vec!["u1", "u2"]);
    assert_eq!(pair.published().len(), 2);
}

#[test]
fn inflight_deliveries_are_resent_after_reconnect_under_v3_1_1() {
    let mut setup = Setup::v3("c1");
    setup.connect.clean_start = false;
    let mut pair = Pair::connected(setup);
    pair.server_publish("t", "d1", QoS::AtLeastOnce).unwrap();
    pair.write(Side::Server, usize::MAX);
    pair.break_connection();
    pair.reconnect(false);
    pair.drive();
    assert!(pair.connack().session_present);
    assert!(pair.publishes_sent_by(Side::Server).last().unwrap().dup);
    assert_eq!(pair.client_payloads(), vec!["d1"]);
}

#[test]
fn clean_start_discards_the_session() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.subscribe(&[("t", QoS::AtLeastOnce)]);
    pair.server_publish("t", "d1", QoS::AtLeastOnce).unwrap();
    pair.server_publish("t", "d2", QoS::AtLeastOnce).unwrap();
    pair.write(Side::Server, 1);
    pair.break_connection();
    let stored = &pair.store[&mqtt("c1")];
    assert_eq!(stored.inflight.len() + stored.queued.len(), 2);

    pair.reconnect(true);
    pair.drive();
    assert!(!pair.connack().session_present);
    assert!(pair.client_payloads().is_empty());
    let session = pair.server.session().unwrap();
    assert!(session.subscriptions.is_empty());
    assert!(session.queued.is_empty() && session.inflight.is_empty());
    assert_eq!(pair.publishes_sent_by(Side::Server).len(), 1);
}

// ---- packet identifiers -------------------------------------------------------------

fn ids(publishes: &[Packet]) -> Vec<u16> {
    publishes
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => p.packet_id.map(|i| i.get()),
            _ => None,
        })
        .collect()
}

#[test]
fn server_packet_ids_skip_those_still_in_use() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    for i in 0..10 {
        pair.server_publish("t", &format!("d{i}"), QoS::AtLeastOnce)
            .unwrap();
    }
    let first = ids(&pair.intercept(Side::Server));
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    for id in [3, 4, 5] {
        pair.inject(Side::Client, Packet::PubAck(Ack::new(pid(id))));
    }
    pair.read(Side::Server, usize::MAX);
    assert_eq!(pair.server.inflight(), 7);
    for i in 10..15 {
        pair.server_publish("t", &format!("d{i}"), QoS::ExactlyOnce)
            .unwrap();
    }
    let second = ids(&pair.intercept(Side::Server));
    assert_eq!(second.len(), 5);
    let held = [1, 2, 6, 7, 8, 9, 10];
    assert!(
        second.iter().all(|id| !held.contains(id)),
        "{second:?} reuses one of {held:?}"
    );
    let mut unique = second.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{second:?}");
    assert_eq!(pair.server.inflight(), 12);
}

#[test]
fn client_packet_ids_skip_those_still_in_use() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    for i in 0..10 {
        pair.client_publish("a", &format!("u{i}"), QoS::ExactlyOnce)
            .unwrap();
    }
    let first = ids(&pair.intercept(Side::Client));
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    // 2 completes; 8 is released but not completed: still in use.
    pair.inject(
        Side::Server,
        Packet::PubRec(Ack::with_reason(pid(2), ReasonCode::NotAuthorized)),
    );
    pair.inject(Side::Server, Packet::PubRec(Ack::new(pid(8))));
    pair.read(Side::Client, usize::MAX);
    assert_eq!(pair.client.inflight(), 9);
    let sub = pair
        .client
        .subscribe(
            vec![Subscription {
                filter: mqtt("x"),
                options: SubscriptionOptions::qos(QoS::AtMostOnce),
            }],
            SubscribeProperties::default(),
        )
        .unwrap();
    pair.client_publish("a", "u10", QoS::AtLeastOnce).unwrap();
    pair.client_publish("a", "u11", QoS::AtLeastOnce).unwrap();
    let out = pair.intercept(Side::Client);
    let new_ids = ids(&out);
    assert_eq!(new_ids.len(), 2);
    let mut all: Vec<u16> = new_ids.clone();
    all.push(sub.get());
    all.extend([1, 3, 4, 5, 6, 7, 8, 9, 10]);
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        n,
        "an identifier in use was reused: {new_ids:?}, SUBSCRIBE {sub}"
    );
}

// ---- Receive Maximum ------------------------------------------------------------------

/// [MQTT-3.3.4-7]
#[test]
fn server_sends_no_more_than_the_client_receive_maximum() {
    let mut setup = Setup::v5("c1");
    setup.client.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    for i in 0..5 {
        pair.server_publish("t", &format!("d{i}"), QoS::AtLeastOnce)
            .unwrap();
    }
    assert_eq!(pair.write(Side::Server, usize::MAX), 2);
    assert_eq!(pair.server.inflight(), 2);
    assert_eq!(pair.server.session().unwrap().queued.len(), 3);
    // One packet at a time, checking the window after each.
    loop {
        let moved = pair.read(Side::Client, 1)
            + pair.write(Side::Client, 1)
            + pair.read(Side::Server, 1)
            + pair.write(Side::Server, 1);
        assert!(pair.server.inflight() <= 2);
        if moved == 0 {
            break;
        }
    }
    assert_eq!(pair.client_payloads(), vec!["d0", "d1", "d2", "d3", "d4"]);
}

/// The client sends no more QoS 1/2 messages than the server's Receive
/// Maximum [MQTT-4.9.0-2]; the rest wait in the session's queue and follow,
/// in order, as acknowledgements come. The same for a message given as a
/// shared `Arc`.
#[test]
fn client_sends_no_more_than_the_server_receive_maximum() {
    for shared in [false, true] {
        let mut setup = Setup::v5("c1");
        setup.server.receive_maximum = 2;
        let mut pair = Pair::connected(setup);
        pair.policy.manual_ack = true;
        for i in 0..5 {
            let m = message("a", &format!("u{i}"), QoS::ExactlyOnce);
            if shared {
                pair.client.publish(Arc::new(m)).unwrap();
            } else {
                pair.client.publish(m).unwrap();
            }
        }
        assert_eq!(pair.write(Side::Client, usize::MAX), 2);
        assert_eq!((pair.client.inflight(), pair.client.queued()), (2, 3));
        pair.drive();
        assert_eq!(pair.server_payloads().len(), 2);
        assert!(!pair.server.is_closed());
        // Each acknowledgement opens the window for one more.
        let mut acked = 0;
        while acked < 5 {
            let ids: Vec<_> = pair
                .server_events
                .iter()
                .filter_map(|e| match e {
                    ServerEvent::Publish { packet_id, .. } => *packet_id,
                    _ => None,
                })
                .collect();
            assert!(
                ids.len() > acked,
                "no progress after {acked} acknowledgements"
            );
            for id in &ids[acked..] {
                assert!(pair.server.acknowledge(*id, ReasonCode::Success));
            }
            acked = ids.len();
            pair.drive();
            assert!(pair.client.inflight() <= 2);
        }
        assert_eq!(pair.server_payloads(), vec!["u0", "u1", "u2", "u3", "u4"]);
        assert_eq!(pair.published().len(), 5);
    }
}

/// The receive window counts publications waiting for their
/// acknowledgement: full at the Receive Maximum, open again once one is
/// acknowledged, so that the caller can stop reading rather than refuse.
#[test]
fn receive_window_is_full_while_receive_maximum_publications_wait_for_their_acknowledgement() {
    let mut setup = Setup::v5("c1");
    setup.server.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    pair.policy.manual_ack = true;
    pair.policy.route = false;
    for id in 1..=2 {
        assert!(!pair.server.receive_window_full());
        pair.inject(
            Side::Client,
            Packet::Publish(raw_publish("a", "x", QoS::AtLeastOnce, Some(id))),
        );
        pair.read(Side::Server, 1);
    }
    assert!(pair.server.receive_window_full());
    assert!(pair.server.acknowledge(pid(1), ReasonCode::Success));
    assert!(!pair.server.receive_window_full());
}

/// QoS 2 flows between PUBREC and PUBREL hold no more than their
/// identifier, and their PUBREL comes behind the client's next packets:
/// they do not fill the receive window (a client resending its backlog
/// after reconnecting is not disconnected for them).
#[test]
fn qos2_flows_awaiting_pubrel_do_not_fill_the_receive_window() {
    let mut setup = Setup::v5("c1");
    setup.server.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    pair.policy.route = false;
    for id in 1..=5 {
        pair.inject(
            Side::Client,
            Packet::Publish(raw_publish(
                "a",
                &format!("m{id}"),
                QoS::ExactlyOnce,
                Some(id),
            )),
        );
        pair.read(Side::Server, 1);
        assert!(!pair.server.receive_window_full());
    }
    assert!(!pair.server.is_closed());
    assert_eq!(pair.server_payloads(), vec!["m1", "m2", "m3", "m4", "m5"]);
    let recs: Vec<_> = pair.intercept(Side::Server);
    assert_eq!(
        recs,
        (1..=5)
            .map(|id| Packet::PubRec(Ack::new(pid(id))))
            .collect::<Vec<_>>()
    );
}

/// A QoS 2 message handed to the application whose PUBREC had not left
/// when the connection broke is not delivered again when the client
/// resends it on the next connection: the identifier stays in the session
/// and the resend is answered with PUBREC [MQTT-4.3.3-10]. (The broker
/// routed such messages once more at every reconnection.)
#[test]
fn qos2_message_delivered_before_its_pubrec_left_is_not_delivered_again_after_reconnecting() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.policy.manual_ack = true;
    pair.policy.route = false;
    let p = raw_publish("a", "once", QoS::ExactlyOnce, Some(7));
    pair.inject(Side::Client, Packet::Publish(p.clone()));
    pair.read(Side::Server, 1);
    assert_eq!(pair.server_payloads(), vec!["once"]);
    pair.reconnect(false);
    pair.drive();
    assert!(pair.connack().session_present);
    resend_is_answered_not_delivered_then_released(&mut pair, p);
}

/// A resumed session's QoS 2 flows do not count against the new
/// connection's receive window, whose quota starts afresh (MQTT 5.0
/// §4.9): with Receive Maximum 2 and two flows awaiting PUBREL, the client
/// may send two new publications, and each resend is answered with PUBREC
/// and not counted again.
#[test]
fn resumed_qos2_flows_do_not_count_against_the_new_connection_receive_window() {
    let mut setup = Setup::v5("c1").persistent(3600);
    setup.server.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    pair.policy.route = false;
    for id in 1..=2 {
        pair.inject(
            Side::Client,
            Packet::Publish(raw_publish(
                "a",
                &format!("old{id}"),
                QoS::ExactlyOnce,
                Some(id),
            )),
        );
        pair.read(Side::Server, 1);
    }
    pair.reconnect(false);
    pair.drive();
    pair.policy.manual_ack = true;
    for id in 1..=2 {
        let mut dup = raw_publish("a", &format!("old{id}"), QoS::ExactlyOnce, Some(id));
        dup.dup = true;
        pair.inject(Side::Client, Packet::Publish(dup));
        pair.read(Side::Server, 1);
    }
    assert!(!pair.server.receive_window_full());
    for id in 3..=4 {
        pair.inject(
            Side::Client,
            Packet::Publish(raw_publish(
                "a",
                &format!("new{id}"),
                QoS::ExactlyOnce,
                Some(id),
            )),
        );
        pair.read(Side::Server, 1);
    }
    assert!(!pair.server.is_closed());
    assert!(pair.server.receive_window_full());
    assert_eq!(pair.server_payloads(), vec!["old1", "old2", "new3", "new4"]);
}

/// A QoS 1/2 PUBLISH handed in while the receive window is full (the
/// caller did not wait) is the Receive Maximum exceeded.
#[test]
fn publish_handed_in_beyond_a_full_receive_window_gets_disconnect_0x93() {
    let mut setup = Setup::v5("c1");
    setup.server.receive_maximum = 3;
    let mut pair = Pair::connected(setup);
    pair.policy.manual_ack = true;
    for id in 1..=4 {
        pair.inject(
            Side::Client,
            Packet::Publish(raw_publish("a", "x", QoS::AtLeastOnce, Some(id))),
        );
    }
    pair.read(Side::Server, 3);
    assert!(pair.server.receive_window_full());
    pair.read(Side::Server, usize::MAX);
    assert_eq!(pair.server_payloads().len(), 3);
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::ReceiveMaximumExceeded { max: 3 }
    );
    assert_eq!(
        pair.intercept(Side::Server),
        vec![Packet::from(Disconnect::new(
            ReasonCode::ReceiveMaximumExceeded
        ))]
    );
}

// ---- Maximum Packet Size ----------------------------------------------------------------

/// [MQTT-3.1.2-25]
#[test]
fn delivery_larger_than_the_client_maximum_packet_size_is_dropped_and_counted() {
    let mut setup = Setup::v5("c1");
    setup.client.max_packet_size = 64;
    let mut pair = Pair::connected(setup);
    let big = "x".repeat(100);
    pair.server_publish("t", &big, QoS::AtLeastOnce).unwrap();
    pair.server_publish("t", "small", QoS::AtLeastOnce).unwrap();
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["small"]);
    assert!(
        pair.publishes_sent_by(Side::Server)
            .iter()
            .all(|p| p.payload.len() < 64)
    );
    assert_eq!(pair.server.session().unwrap().drops.too_large, 1);
    assert_eq!(pair.server.inflight(), 0);
    assert!(pair.client.is_connected());
}

#[test]
fn dropped_too_large_delivery_does_not_leave_its_topic_alias_unknown_to_the_client() {
    let mut setup = Setup::v5("c1");
    setup.client.max_packet_size = 64;
    let mut pair = Pair::connected(setup);
    pair.server_publish("t/alias", &"x".repeat(100), QoS::AtMostOnce)
        .unwrap();
    pair.server_publish("t/alias", "small", QoS::AtMostOnce)
        .unwrap();
    pair.drive();
    assert!(pair.client.is_connected(), "{:?}", pair.client_events);
    let got = pair.client_messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].topic.as_str(), text(&got[0].payload).as_str()),
        ("t/alias", "small")
    );
}

// ---- topic aliases -------------------------------------------------------------------------

#[test]
fn server_assigns_a_topic_alias_then_sends_an_empty_topic_and_the_client_resolves_it() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.server_publish("s/1", "a", QoS::AtMostOnce).unwrap();
    pair.server_publish("s/1", "b", QoS::AtLeastOnce).unwrap();
    pair.server_publish("s/2", "c", QoS::AtMostOnce).unwrap();
    pair.drive();
    let sent: Vec<_> = pair
        .publishes_sent_by(Side::Server)
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("s/1".to_string(), Some(1)),
            (String::new(), Some(1)),
            ("s/2".to_string(), Some(2)),
        ]
    );
    let got: Vec<_> = pair
        .client_messages()
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(got, vec!["s/1", "s/1", "s/2"]);
    assert!(
        pair.client_messages()
            .iter()
            .all(|m| m.properties.topic_alias.is_none())
    );
}

#[test]
fn server_sends_full_topics_to_a_client_without_topic_alias_maximum() {
    let mut setup = Setup::v5("c1");
    setup.client.topic_alias_maximum = 0;
    let mut pair = Pair::connected(setup);
    pair.server_publish("s/1", "a", QoS::AtMostOnce).unwrap();
    pair.server_publish("s/1", "b", QoS::AtMostOnce).unwrap();
    pair.drive();
    assert!(
        pair.publishes_sent_by(Side::Server)
            .iter()
            .all(|p| p.topic.as_str() == "s/1" && p.properties.topic_alias.is_none())
    );
}

#[test]
fn client_topic_aliases_are_resolved_by_the_server() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.client_publish("c/1", "a", QoS::AtMostOnce).unwrap();
    pair.client_publish("c/1", "b", QoS::AtLeastOnce).unwrap();
    pair.drive();
    let sent = pair.publishes_sent_by(Side::Client);
    assert_eq!(sent[1].topic.as_str(), "");
    assert_eq!(
        sent[1].properties.topic_alias,
        sent[0].properties.topic_alias
    );
    assert!(sent[0].properties.topic_alias.is_some());
    let got: Vec<_> = pair
        .server_messages()
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(got, vec!["c/1", "c/1"]);
}

#[test]
fn topic_alias_above_the_maximum_is_disconnect_0x94() {
    let mut setup = Setup::v5("c1");
    setup.server.topic_alias_maximum = 5;
    let mut pair = Pair::connected(setup);
    let mut p = raw_publish("a", "x", QoS::AtMostOnce, None);
    p.properties.topic_alias = std::num::NonZeroU16::new(6);
    pair.inject(Side::Client, Packet::Publish(p));
    pair.drive();
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::TopicAliasInvalid { alias: 6, max: 5 }
    );
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::TopicAliasInvalid]
    );
    assert!(pair.server_messages().is_empty());
}

#[test]
fn unknown_topic_alias_with_an_empty_topic_is_a_protocol_error() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mut p = raw_publish("", "x", QoS::AtMostOnce, None);
    p.properties.topic_alias = std::num::NonZeroU16::new(3);
    pair.inject(Side::Client, Packet::Publish(p));
    pair.drive();
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::UnknownTopicAlias { alias: 3 }
    );
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::ProtocolError]
    );
}

// ---- will ----------------------------------------------------------------------------------

/// [MQTT-3.1.2-8]
#[test]
fn will_is_published_when_the_connection_is_lost() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), None));
    pair.break_connection();
    let closed = pair.server_closed();
    assert_eq!(closed.reason, CloseReason::ConnectionLost);
    let will = closed.will.as_ref().expect("will");
    assert_eq!(will.will, self::will(None));
    assert_eq!(will.publish_at, pair.now);
}

/// [MQTT-3.1.2-10] [MQTT-3.14.4-3]
#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), None));
    pair.client
        .disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    pair.drive();
    let closed = pair.server_closed();
    assert_eq!(
        closed.reason,
        CloseReason::ClientDisconnect(ReasonCode::Success)
    );
    assert!(closed.will.is_none());
}

#[test]
fn will_is_not_published_after_a_v3_1_1_disconnect() {
    let mut pair = Pair::connected(with_will(Setup::v3("c1"), None));
    pair.client.disconnect(Disconnect::default());
    pair.drive();
    assert!(pair.server_closed().will.is_none());
}

#[test]
fn will_is_published_after_disconnect_with_will_message_0x04() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), None));
    pair.client
        .disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage));
    pair.drive();
    let closed = pair.server_closed();
    assert_eq!(
        closed.reason,
        CloseReason::ClientDisconnect(ReasonCode::DisconnectWithWillMessage)
    );
    assert!(closed.will.is_some());
}

/// Only DISCONNECT 0x00 discards the will [MQTT-3.14.4-3]; a client that
/// disconnects with an error code did not end normally.
#[test]
fn will_is_published_after_disconnect_with_an_error_code() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), None));
    pair.client
        .disconnect(Disconnect::new(ReasonCode::UnspecifiedError));
    pair.drive();
    assert!(pair.server_closed().will.is_some());
}

#[test]
fn will_is_published_when_the_server_closes_the_connection() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), None));
    pair.server.close(pair.now, ReasonCode::SessionTakenOver);
    pair.drive();
    assert!(pair.server_closed().will.is_some());
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::ServerDisconnect(ReasonCode::SessionTakenOver)
    );
}

#[test]
fn will_delay_shorter_than_the_session_is_kept() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1").persistent(60), Some(10)));
    pair.break_connection();
    let will = pair.server_closed().will.as_ref().unwrap();
    assert_eq!(will.publish_at, pair.now + secs(10));
}

/// [MQTT-3.1.3-9]: the will is published when the session ends, if that
/// comes before the will delay.
#[test]
fn will_delay_longer_than_the_session_is_cut_to_the_session_end() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1").persistent(30), Some(100)));
    pair.break_connection();
    let closed = pair.server_closed();
    assert_eq!(
        closed.will.as_ref().unwrap().publish_at,
        pair.now + secs(30)
    );
    assert_eq!(closed.session_expires_at, Some(pair.now + secs(30)));
}

#[test]
fn session_expiry_zero_publishes_the_will_at_once() {
    let mut pair = Pair::connected(with_will(Setup::v5("c1"), Some(100)));
    pair.break_connection();
    assert_eq!(
        pair.server_closed().will.as_ref().unwrap().publish_at,
        pair.now
    );
}

// ---- session expiry ---------------------------------------------------------------------------

#[test]
fn session_expiry_zero_ends_the_session_with_the_connection() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.subscribe(&[("t", QoS::AtLeastOnce)]);
    pair.break_connection();
    let closed = pair.server_closed();
    // Handed over (so a router can drop its subscriptions) with an expiry
    // of now: it ends with the connection.
    assert!(
        closed
            .session
            .as_ref()
            .unwrap()
            .subscriptions
            .contains_key(&mqtt("t"))
    );
    assert_eq!(closed.session_expires_at, Some(pair.now));
    assert!(pair.store.is_empty());
    pair.reconnect(false);
    pair.drive();
    assert!(!pair.connack().session_present);
}

#[test]
fn session_with_expiry_is_kept_until_its_expiry() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(60));
    pair.subscribe(&[("t", QoS::AtLeastOnce)]);
    pair.advance(secs(5));
    pair.break_connection();
    let closed = pair.server_closed();
    let session = closed.session.as_ref().unwrap();
    assert_eq!(session.expiry_interval, 60);
    assert!(session.subscriptions.contains_key(&mqtt("t")));
    assert_eq!(closed.session_expires_at, Some(pair.now + secs(60)));
}

#[test]
fn session_of_v3_1_1_client_without_clean_session_never_expires() {
    let mut setup = Setup::v3("c1");
    setup.connect.clean_start = false;
    let mut pair = Pair::connected(setup);
    pair.break_connection();
    let closed = pair.server_closed();
    assert!(closed.session.is_some());
    assert_eq!(closed.session_expires_at, None);
}

#[test]
fn server_caps_the_session_expiry_and_says_so() {
    let mut setup = Setup::v5("c1").persistent(3600);
    setup.server.max_session_expiry = 600;
    let mut pair = Pair::connected(setup);
    assert_eq!(pair.connack().properties.session_expiry_interval, Some(600));
    pair.break_connection();
    assert_eq!(
        pair.server_closed().session_expires_at,
        Some(pair.now + secs(600))
    );
}

#[test]
fn disconnect_may_lower_the_session_expiry_to_zero() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(60));
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    pair.client.disconnect(d);
    pair.drive();
    let closed = pair.server_closed();
    assert_eq!(
        closed.reason,
        CloseReason::ClientDisconnect(ReasonCode::Success)
    );
    assert_eq!(closed.session.as_ref().unwrap().expiry_interval, 0);
    assert_eq!(closed.session_expires_at, Some(pair.now));
}

#[test]
fn disconnect_may_raise_a_non_zero_session_expiry() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(60));
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(120);
    pair.client.disconnect(d);
    pair.drive();
    let closed = pair.server_closed();
    assert_eq!(closed.session.as_ref().unwrap().expiry_interval, 120);
    assert_eq!(closed.session_expires_at, Some(pair.now + secs(120)));
}

/// MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval of 0 in CONNECT may not
/// be raised by DISCONNECT.
#[test]
fn disconnect_setting_session_expiry_after_zero_is_a_protocol_error() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(300);
    pair.client.disconnect(d);
    pair.drive();
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::SessionExpiryAfterZero
    );
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::ProtocolError]
    );
    assert_eq!(pair.server_closed().session_expires_at, Some(pair.now));
}

// ---- message expiry ------------------------------------------------------------------------------

fn expiring(topic: &str, payload: &str, qos: QoS, pair: &Pair, secs: u64) -> Delivery {
    let mut m = message(topic, payload, qos);
    m.expires_at = Some(pair.now + Duration::from_secs(secs));
    Delivery::new(Arc::new(m), qos)
}

#[test]
fn queued_message_that_expires_before_delivery_is_dropped_and_counted() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let d = expiring("t", "stale", QoS::AtLeastOnce, &pair, 5);
    pair.deliver(d).unwrap();
    let d = expiring("t", "fresh", QoS::AtLeastOnce, &pair, 50);
    pair.deliver(d).unwrap();
    pair.advance(secs(5));
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["fresh"]);
    assert_eq!(pair.server.session().unwrap().drops.expired, 1);
}

/// [MQTT-3.3.2-6]
#[test]
fn delivered_message_carries_the_remaining_expiry_interval() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let d = expiring("t", "m", QoS::AtLeastOnce, &pair, 10);
    pair.deliver(d).unwrap();
    pair.advance(secs(3));
    pair.drive();
    let sent = pair.publishes_sent_by(Side::Server);
    assert_eq!(sent[0].properties.message_expiry_interval, Some(7));
    let got = pair.client_messages();
    assert_eq!(got[0].expires_at, Some(pair.now + secs(7)));
}

/// [MQTT-3.3.2-6] holds for a PUBLISH resent after reconnection too: it
/// carries what is left of the interval, not none.
#[test]
fn resent_message_carries_the_remaining_expiry_interval() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    let d = expiring("t", "m", QoS::AtLeastOnce, &pair, 60);
    pair.deliver(d).unwrap();
    pair.write(Side::Server, usize::MAX);
    pair.break_connection();
    pair.advance(secs(10));
    pair.reconnect(false);
    pair.drive();
    let sent = pair.publishes_sent_by(Side::Server);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].properties.message_expiry_interval, Some(60));
    assert!(sent[1].dup);
    assert_eq!(sent[1].properties.message_expiry_interval, Some(50));
    assert_eq!(
        pair.client_messages()[0].expires_at,
        Some(pair.now + secs(50))
    );
}

#[test]
fn message_expiry_of_a_client_publication_is_kept_by_the_server() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.route = false;
    let mut m = message("a", "m", QoS::AtMostOnce);
    m.properties.make_mut().message_expiry_interval = Some(30);
    pair.client.publish(m).unwrap();
    pair.drive();
    assert_eq!(
        pair.server_messages()[0].expires_at,
        Some(pair.now + secs(30))
    );
    assert_eq!(
        pair.server_messages()[0].properties.message_expiry_interval,
        None
    );
}

// ---- queue limits -----------------------------------------------------------------------------------

#[test]
fn full_queue_drops_qos0_first_and_counts_every_drop() {
    let mut setup = Setup::v5("c1");
    setup.server.queue.max_messages = 3;
    let mut pair = Pair::connected(setup);
    pair.server_publish("t", "a0", QoS::AtMostOnce).unwrap();
    pair.server_publish("t", "b1", QoS::AtLeastOnce).unwrap();
    pair.server_publish("t", "c1", QoS::AtLeastOnce).unwrap();
    // Full: a QoS 1 message takes the place of the QoS 0 one.
    pair.server_publish("t", "d1", QoS::AtLeastOnce).unwrap();
    // Full of QoS 1: a new QoS 0 message is refused, and so is a QoS 1 one.
    assert_eq!(
        pair.server_publish("t", "e0", QoS::AtMostOnce),
        Err(DropReason::QueueFull)
    );
    assert_eq!(
        pair.server_publish("t", "f1", QoS::AtLeastOnce),
        Err(DropReason::QueueFull)
    );
    let drops = pair.server.session().unwrap().drops;
    assert_eq!((drops.queue_full_qos0, drops.queue_full), (2, 1));
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["b1", "c1", "d1"]);
}

#[test]
fn full_queue_with_drop_oldest_makes_room_for_the_new_message() {
    let mut setup = Setup::v5("c1");
    setup.server.queue.max_messages = 2;
    setup.server.queue.overflow = Overflow::DropOldest;
    let mut pair = Pair::connected(setup);
    for p in ["m1", "m2", "m3"] {
        pair.server_publish("t", p, QoS::AtLeastOnce).unwrap();
    }
    assert_eq!(pair.server.session().unwrap().drops.queue_full, 1);
    pair.drive();
    assert_eq!(pair.client_payloads(), vec!["m2", "m3"]);
}

#[test]
fn queue_byte_limit_refuses_a_message_that_does_not_fit() {
    let mut setup = Setup::v5("c1");
    setup.server.queue.max_bytes = 10;
    let mut pair = Pair::connected(setup);
    assert_eq!(
        pair.server_publish("t", &"x".repeat(20), QoS::AtLeastOnce),
        Err(DropReason::QueueFull)
    );
    assert_eq!(pair.server.session().unwrap().queued_bytes, 0);
}

// ---- SUBSCRIBE and UNSUBSCRIBE ----------------------------------------------------------------

#[test]
fn suback_codes_are_recorded_in_the_session() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.policy.refused_filters.push(mqtt("secret/#"));
    let id = pair.subscribe(&[
        ("a", QoS::AtLeastOnce),
        ("b/+", QoS::ExactlyOnce),
        ("secret/#", QoS::AtMostOnce),
    ]);
    let suback = pair
        .client_events
        .iter()
        .find_map(|e| match e {
            mqtt_session::ClientEvent::Subscribed(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(suback.packet_id, id);
    assert_eq!(
        suback.reason_codes,
        vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::NotAuthorized
        ]
    );
    let subs = &pair.server.session().unwrap().subscriptions;
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[&mqtt("a")].options.qos, QoS::AtLeastOnce);
    assert_eq!(subs[&mqtt("b/+")].options.qos, QoS::ExactlyOnce);
}

#[test]
fn subscription_identifier_is_recorded_with_the_subscription() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let props = SubscribeProperties {
        subscription_identifier: mqtt_codec::SubscriptionId::new(9),
        ..Default::default()
    };
    let subs = vec![Subscription {
        filter: mqtt("a"),
        options: SubscriptionOptions::qos(QoS::AtMostOnce),
    }];
    pair.client.subscribe(subs, props).unwrap();
    pair.drive();
    let rec = pair.server.session().unwrap().subscriptions[&mqtt("a")];
    assert_eq!(rec.id.map(|i| i.get()), Some(9));
}

#[test]
fn subscription_identifier_when_not_available_is_disconnect_0xa1() {
    let mut setup = Setup::v5("c1");
    setup.server.subscription_identifiers_available = false;
    let mut pair = Pair::connected(setup);
    let props = SubscribeProperties {
        subscription_identifier: mqtt_codec::SubscriptionId::new(9),
        ..Default::default()
    };
    let subs = vec![Subscription {
        filter: mqtt("a"),
        options: SubscriptionOptions::qos(QoS::AtMostOnce),
    }];
    pair.client.subscribe(subs, props).unwrap();
    pair.drive();
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::SubscriptionIdentifiersNotSupported]
    );
}

#[test]
fn unsuback_reports_no_subscription_existed_for_an_unknown_filter() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.subscribe(&[("a", QoS::AtLeastOnce)]);
    let id = pair
        .client
        .unsubscribe(vec![mqtt("a"), mqtt("nope")])
        .unwrap();
    pair.drive();
    let unsuback = pair
        .client_events
        .iter()
        .find_map(|e| match e {
            mqtt_session::ClientEvent::Unsubscribed(u) => Some(u),
            _ => None,
        })
        .unwrap();
    assert_eq!(unsuback.packet_id, id);
    assert_eq!(
        unsuback.reason_codes,
        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    assert!(pair.server.session().unwrap().subscriptions.is_empty());
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Unsubscribed(_)))
    );
}

/// [MQTT-3.8.3-4]
#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    let mut options = SubscriptionOptions::qos(QoS::AtLeastOnce);
    options.no_local = true;
    let subs = vec![Subscription {
        filter: mqtt("$share/g/t"),
        options,
    }];
    pair.client
        .subscribe(subs, SubscribeProperties::default())
        .unwrap();
    pair.drive();
    assert_eq!(
        server_protocol_error(&pair),
        &ProtocolError::NoLocalOnSharedSubscription {
            filter: "$share/g/t".to_string()
        }
    );
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::ProtocolError]
    );
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Subscribe(_)))
    );
}

// ---- server limits on PUBLISH --------------------------------------------------------------------

/// [MQTT-3.2.2-11]
#[test]
fn publish_above_the_maximum_qos_is_disconnect_0x9b() {
    let mut setup = Setup::v5("c1");
    setup.server.maximum_qos = QoS::AtLeastOnce;
    let mut pair = Pair::connected(setup);
    pair.inject(
        Side::Client,
        Packet::Publish(raw_publish("a", "x", QoS::ExactlyOnce, Some(1))),
    );
    pair.drive();
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::QoSNotSupported]
    );
}

/// [MQTT-3.2.2-14]
#[test]
fn retained_publish_when_retain_is_unavailable_is_disconnect_0x9a() {
    let mut setup = Setup::v5("c1");
    setup.server.retain_available = false;
    let mut pair = Pair::connected(setup);
    let mut p = raw_publish("a", "x", QoS::AtMostOnce, None);
    p.retain = true;
    pair.inject(Side::Client, Packet::Publish(p));
    pair.drive();
    assert_eq!(
        disconnects_sent_by(&pair, Side::Server),
        vec![ReasonCode::RetainNotSupported]
    );
}

// ---- AUTH -------------------------------------------------------------------------------------------

/// MQTT 5.0 §4.12: CONNECT with an authentication method, AUTH 0x18 both
/// ways, then CONNACK with the same method.
#[test]
fn enhanced_authentication_exchange_ends_in_connack_with_the_method() {
    let method = mqtt("SCRAM-SHA-256");
    let mut setup = Setup::v5("c1");
    setup.connect.properties.authentication_method = Some(method.clone());
    setup.connect.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    let mut pair = Pair::new(setup);
    pair.policy.auto_accept = false;
    pair.drive();
    let connect = pair
        .server_events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Connect { connect, .. } => Some(connect),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        connect.properties.authentication_method,
        Some(method.clone())
    );
    assert!(!pair.client.is_connected());

    let challenge = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: Some(Bytes::from_static(b"server-first")),
            ..Default::default()
        },
    };
    pair.server.send_auth(challenge.clone());
    pair.drive();
    let got = pair
        .client_events
        .iter()
        .find_map(|e| match e {
            mqtt_session::ClientEvent::Auth(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert_eq!(got, &challenge);

    let response = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: Some(Bytes::from_static(b"client-final")),
            ..Default::default()
        },
    };
    pair.client.send_auth(response.clone());
    pair.drive();
    let got = pair
        .server_events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Auth(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert_eq!(**got, response);

    let properties = ConnAckProperties {
        authentication_method: Some(method.clone()),
        authentication_data: Some(Bytes::from_static(b"server-final")),
        ..Default::default()
    };
    pair.server.accept(
        pair.now,
        Accept {
            properties,
            ..Default::default()
        },
    );
    pair.drive();
    assert!(pair.client.is_connected());
    let ack = pair.connack();
    assert_eq!(ack.properties.authentication_method, Some(method));
    assert_eq!(
        ack.properties.authentication_data,
        Some(Bytes::from_static(b"server-final"))
    );
}

#[test]
fn rejected_authentication_closes_with_the_reason_code() {
    let mut setup = Setup::v5("c1");
    setup.connect.properties.authentication_method = Some(mqtt("UNKNOWN"));
    let mut pair = Pair::new(setup);
    pair.policy.auto_accept = false;
    pair.drive();
    pair.server.reject(
        pair.now,
        ReasonCode::BadAuthenticationMethod,
        Default::default(),
    );
    pair.drive();
    assert_eq!(
        pair.client_closed(),
        &ClientCloseReason::Refused(ReasonCode::BadAuthenticationMethod)
    );
    assert_eq!(
        pair.server_closed().reason,
        CloseReason::Rejected(ReasonCode::BadAuthenticationMethod)
    );
}

// ---- a client that sends before CONNACK ----------------------------------------------------------

#[test]
fn packets_sent_before_acceptance_are_processed_on_accept() {
    let mut pair = Pair::new(Setup::v5("c1"));
    pair.policy.auto_accept = false;
    pair.policy.route = false;
    pair.write(Side::Client, 1);
    pair.inject(
        Side::Client,
        Packet::Publish(raw_publish("a", "early", QoS::AtLeastOnce, Some(1))),
    );
    pair.read(Side::Server, usize::MAX);
    assert!(pair.server_messages().is_empty());
    pair.server.accept(pair.now, Accept::default());
    pair.process_events();
    assert_eq!(pair.server_payloads(), vec!["early"]);
    let out = pair.intercept(Side::Server);
    assert!(matches!(out[0], Packet::ConnAck(_)));
    assert_eq!(out[1], Packet::PubAck(Ack::new(pid(1))));
}

// ---- regressions found by the property tests ------------------------------------------------------

/// A client whose connection breaks again before CONNACK must still know
/// the QoS 2 messages it has received, or the server's DUP resend is
/// delivered twice [MQTT-4.3.3-10].
#[test]
fn qos2_receipts_survive_a_connection_that_breaks_before_connack() {
    let mut pair = Pair::connected(Setup::v5("c1").persistent(3600));
    pair.server_publish("t", "once", QoS::ExactlyOnce).unwrap();
    pair.write(Side::Server, 1);
    pair.read(Side::Client, 1); // delivered; its PUBREC is lost below
    pair.break_connection();
    pair.reconnect(false);
    pair.break_connection(); // before CONNECT even left
    assert_eq!(
        pair.client_session.as_ref().unwrap().incoming_qos2,
        vec![pid(1)]
    );
    pair.reconnect(false);
    pair.drive();
    assert!(pair.publishes_sent_by(Side::Server).last().unwrap().dup);
    assert_eq!(pair.client_payloads(), vec!["once"]);
    assert_eq!(pair.server.inflight(), 0);
}

/// Receive Maximum is a 5.0 property: a 3.1.1 server is never told the
/// client's, so the client cannot hold it to it.
#[test]
fn v3_1_1_server_is_not_held_to_the_client_receive_maximum() {
    let mut setup = Setup::v3("c1");
    setup.client.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    for i in 0..5 {
        pair.server_publish("t", &format!("d{i}"), QoS::ExactlyOnce)
            .unwrap();
    }
    // All five arrive before any PUBREL.
    pair.write(Side::Server, usize::MAX);
    pair.read(Side::Client, usize::MAX);
    assert!(
        pair.client.is_connected(),
        "{:?}",
        pair.client_events.last()
    );
    pair.drive();
    assert_eq!(pair.client_payloads().len(), 5);
}

#[test]
fn v3_1_1_client_is_not_held_to_the_server_receive_maximum() {
    let mut setup = Setup::v3("c1");
    setup.server.receive_maximum = 2;
    let mut pair = Pair::connected(setup);
    pair.policy.manual_ack = true;
    for i in 0..5 {
        pair.client_publish("a", &format!("u{i}"), QoS::AtLeastOnce)
            .unwrap();
    }
    pair.drive();
    assert!(!pair.server.is_closed());
    assert_eq!(pair.server_payloads().len(), 5);
}

/// A delivery to a closed connection is refused as having no session to
/// queue in, not as a full queue (which a broker counts as a drop by
/// policy).
#[test]
fn delivery_to_a_closed_connection_is_refused_as_no_session() {
    let mut pair = Pair::connected(Setup::v5("c1"));
    pair.break_connection();
    let d = Delivery::new(
        Arc::new(message("t", "x", QoS::AtLeastOnce)),
        QoS::AtLeastOnce,
    );
    assert_eq!(pair.server.deliver(d), Err(DropReason::NoSession));
}

/// An unsupported protocol level in a CONNECT that follows a 5.0 CONNECT
/// still waiting for the application (here, in an AUTH exchange) does not
/// turn the connection into a 3.1.1 one: the AUTH already queued still
/// encodes, and the CONNACK refusing it is a 5.0 one with 0x84. (Found by
/// the `server_session` fuzz target: the version was switched whenever a
/// CONNECT phase met an unsupported level.)
#[test]
fn an_unsupported_level_after_a_connect_keeps_the_connections_version() {
    let now = std::time::Instant::now();
    let mut server =
        mqtt_session::ServerConnection::new(mqtt_session::ServerConfig::default(), now);
    let mut connect = Connect::new(ProtocolVersion::V5, mqtt("c1"));
    connect.properties.authentication_method = Some(mqtt("SCRAM"));
    server
        .handle_packet(now, Packet::Connect(Box::new(connect)))
        .unwrap();
    server.send_auth(Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(mqtt("SCRAM")),
            ..Default::default()
        },
    });
    server.handle_decode_error(
        now,
        mqtt_codec::DecodeError::UnsupportedProtocolVersion { level: 9 },
    );
    assert!(server.is_closed());
    assert_eq!(server.version(), ProtocolVersion::V5);
    let mut sent = Vec::new();
    server.poll_transmit(now, |t| sent.push(t.to_packet()));
    for p in &sent {
        let mut buf = BytesMut::new();
        p.encode(ProtocolVersion::V5, &mut buf)
            .unwrap_or_else(|e| panic!("{p:?} does not encode under 5.0: {e}"));
    }
    assert!(
        matches!(
            sent.last(),
            Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::UnsupportedProtocolVersion
        ),
        "{sent:?}"
    );
}

/// Every connection keeps its `ServerConnection`, idle or not, and moves
/// each event out of it: rare, large events are boxed so that the room
/// kept for one stays small, as is the whole (the broker's memory per idle
/// connection is measured by `mqtt bench conn`; this keeps its share).
#[test]
#[cfg(target_pointer_width = "64")]
fn server_connection_and_its_events_stay_small() {
    assert!(std::mem::size_of::<ServerEvent>() <= 16);
    assert!(std::mem::size_of::<mqtt_session::ServerConnection>() <= 640);
}
