//! Corners of the protocol no other test reaches: the refusals of the
//! CONNECT phase, topic aliases at their edges (a Topic Alias Maximum
//! smaller than the topics, a new connection, a re-bound alias) and
//! subscription identifiers on messages not sent live (retained, queued
//! while offline, resent after a reconnection). Raw peers throughout: what
//! is asserted is on the wire.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU16;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{
    Ack, Connect, DecodeLimits, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscriptionId, Will,
};
use mqtt_testkit::{RawClient, Received, TIMEOUT, TestBroker, packets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// --- Helpers -----------------------------------------------------------------

/// A 5.0 CONNECT whose session outlives the connection by 60 s.
fn persistent(client_id: &str, clean_start: bool) -> Connect {
    let mut c = packets::connect(ProtocolVersion::V5, client_id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(60);
    c
}

/// A 5.0 connection of `client_id` (clean start, no session kept).
async fn connected(broker: &TestBroker, client_id: &str) -> RawClient {
    let (raw, ack) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, client_id),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    raw
}

/// Subscribes to one filter, with a subscription identifier if `id` is
/// given, and waits for a SUBACK granting it.
async fn subscribe(raw: &mut RawClient, packet_id: u16, filter: &str, qos: QoS, id: Option<u32>) {
    let mut s = packets::subscribe(packet_id, &[(filter, qos)]);
    s.properties.subscription_identifier = id.map(|id| SubscriptionId::new(id).unwrap());
    raw.send(&Packet::Subscribe(s)).await.unwrap();
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert!(
            a.reason_codes.iter().all(|c| !c.is_error()),
            "SUBSCRIBE {filter} refused: {a:?}"
        ),
        other => panic!("SUBACK for {filter} expected, got {other:?}"),
    }
}

/// Sends a QoS 1 PUBLISH and waits for its PUBACK, which must not refuse it
/// (0x10, no matching subscribers, is not a refusal).
async fn publish_acked(raw: &mut RawClient, p: Publish) {
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let id = p.packet_id;
    raw.send(&Packet::Publish(p)).await.unwrap();
    match raw.recv().await {
        Some(Packet::PubAck(a)) if Some(a.packet_id) == id => assert!(
            !a.reason_code.is_error(),
            "PUBLISH refused with {:?}",
            a.reason_code
        ),
        other => panic!("PUBACK expected, got {other:?}"),
    }
}

/// A QoS 1 PUBLISH with its packet identifier.
fn qos1(topic: &str, payload: &str, packet_id: u16) -> Publish {
    packets::publish(topic, payload.as_bytes(), QoS::AtLeastOnce, packet_id)
}

/// A QoS 1 PUBLISH carrying Topic Alias `alias`; `topic` may be empty.
fn aliased(topic: &str, alias: u16, payload: &str, packet_id: u16) -> Publish {
    let mut p = qos1(topic, payload, packet_id);
    p.properties.topic_alias = NonZeroU16::new(alias);
    p
}

/// The next packet, which must be a PUBLISH.
async fn next_publish(raw: &mut RawClient) -> Publish {
    match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("PUBLISH expected, got {other:?}"),
    }
}

/// Acknowledges a QoS 1 PUBLISH.
async fn puback(raw: &mut RawClient, p: &Publish) {
    raw.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await
        .unwrap();
}

/// Sends DISCONNECT (normal disconnection) and waits for the close.
async fn disconnect(mut raw: RawClient) {
    raw.send(&Packet::from(Disconnect::new(ReasonCode::Success)))
        .await
        .unwrap();
    assert_eq!(raw.expect_closed().await, vec![]);
}

/// The subscription identifiers a PUBLISH carries, as a set.
fn ids(p: &Publish) -> BTreeSet<u32> {
    p.properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect()
}

/// A CONNECT written byte by byte: protocol `name` and `level`, connect
/// `flags`, keep alive 60 s, then `properties` verbatim (the property
/// length included; `None` for the framing of 3.1 and 3.1.1), and the
/// client identifier `id`.
fn connect_bytes(name: &str, level: u8, flags: u8, properties: Option<&[u8]>, id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[level, flags, 0, 60]);
    body.extend_from_slice(properties.unwrap_or_default());
    body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let len = u8::try_from(body.len()).unwrap();
    assert!(len < 0x80, "a one-byte remaining length");
    let mut packet = vec![0x10, len];
    packet.extend_from_slice(&body);
    packet
}

/// Opens a connection, writes `bytes`, and returns every byte the broker
/// sends until it closes the connection.
///
/// # Panics
/// If the connection is still open after [`TIMEOUT`].
async fn answer_until_closed(broker: &TestBroker, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(broker.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    match tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut got)).await {
        // The end of the stream, or a reset: a close either way, and what
        // arrived before it is kept.
        Ok(_) => got,
        Err(_) => {
            panic!("the broker did not close the connection within {TIMEOUT:?} (sent {got:02x?})")
        }
    }
}

/// Decodes `bytes` as a sequence of whole `version` packets.
fn decode_all(bytes: &[u8], version: ProtocolVersion) -> Vec<Packet> {
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Some(p) = Packet::decode(&mut buf, version, &DecodeLimits::UNLIMITED)
        .unwrap_or_else(|e| panic!("{bytes:02x?} is not a sequence of {version:?} packets: {e}"))
    {
        packets.push(p);
    }
    assert!(
        buf.is_empty(),
        "a partial packet at the end of {bytes:02x?}"
    );
    packets
}

/// Sends a hand-written CONNECT of `version` on a new connection and
/// asserts that it is accepted: CONNACK with Success, and PINGREQ answered.
async fn accepted(broker: &TestBroker, connect: &[u8], version: ProtocolVersion) {
    let mut raw = RawClient::open(broker.addr).await.unwrap();
    raw.version = version;
    raw.send_bytes(connect).await.unwrap();
    match raw.next(TIMEOUT).await {
        Received::Packet(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason_code, ReasonCode::Success, "{connect:02x?}")
        }
        other => panic!("CONNACK to {connect:02x?} expected, got {other:?}"),
    }
    raw.send(&Packet::PingReq).await.unwrap();
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
}

/// The CONNACK refusing a CONNECT for its protocol version, in the form of
/// MQTT 3.1 and 3.1.1: return code 1, unacceptable protocol version.
const CONNACK_RETURN_CODE_1: [u8; 4] = [0x20, 0x02, 0x00, 0x01];

// --- CONNECT-phase refusals ----------------------------------------------------

/// A CONNECT in the 3.1.1 framing whose protocol level this broker does not
/// speak gets CONNACK with return code 1 (unacceptable protocol version),
/// then the close [MQTT-3.1.2-2] (3.1.1); nothing else is sent. Levels 3
/// (MQTT 3.1, as `MQIsdp`), 4 and 5 are supported, so the refused levels
/// are 0, 2, 6 and 255, and the supported levels under the other version's
/// name (`MQTT` level 3, `MQIsdp` level 4), which MQTT 3.1.1 §3.1.2.1 lets
/// the server refuse [MQTT-3.1.2-1]. `MQIsdp` level 3 is accepted: the
/// refusals are not of MQTT 3.1 itself.
#[tokio::test]
async fn unsupported_protocol_level_gets_connack_return_code_1_and_the_close() {
    let broker = TestBroker::start(TestBroker::config()).await;
    for (name, level) in [
        ("MQTT", 0),
        ("MQTT", 2),
        ("MQTT", 6),
        ("MQTT", 255),
        ("MQTT", 3),
        ("MQIsdp", 4),
    ] {
        let connect = connect_bytes(name, level, 0x02, None, "old");
        let got = answer_until_closed(&broker, &connect).await;
        assert_eq!(
            got, CONNACK_RETURN_CODE_1,
            "{name} level {level}: CONNACK return code 1, then the close [MQTT-3.1.2-2]"
        );
    }

    // MQTT 3.1 is spoken: `MQIsdp` level 3, framed the same way, connects.
    let v31 = connect_bytes("MQIsdp", 3, 0x02, None, "v31");
    accepted(&broker, &v31, ProtocolVersion::V3_1).await;
}

/// A CONNECT framed as MQTT 5.0 (properties after the keep alive) with a
/// protocol level above 5 is refused with Unsupported Protocol Version and
/// the close [MQTT-3.1.2-2] (5.0: "MAY send a CONNACK packet with Reason
/// Code 0x84 ... and then MUST close"). A server cannot tell which
/// framing a client of an unknown level reads: this broker answers in the
/// form of 3.1.1 (return code 1), which its codec reads back as 0x84, for
/// every level it refuses; and it must not answer as if it were accepted.
#[tokio::test]
async fn v5_framed_connect_with_an_unknown_level_gets_unsupported_protocol_version() {
    let broker = TestBroker::start(TestBroker::config()).await;
    // Session Expiry Interval 60 s; or no property.
    let with_expiry: &[u8] = &[0x05, 0x11, 0, 0, 0, 60];
    let empty: &[u8] = &[0x00];
    for (level, properties) in [(6, with_expiry), (6, empty), (7, with_expiry)] {
        let connect = connect_bytes("MQTT", level, 0x02, Some(properties), "future");
        let got = answer_until_closed(&broker, &connect).await;
        assert_eq!(
            got, CONNACK_RETURN_CODE_1,
            "level {level}, properties {properties:02x?}: a refusal, then the close"
        );
        match &decode_all(&got, ProtocolVersion::V3_1_1)[..] {
            [Packet::ConnAck(a)] => {
                assert_eq!(a.reason_code, ReasonCode::UnsupportedProtocolVersion);
                assert!(!a.session_present, "[MQTT-3.2.2-6]");
            }
            other => panic!("one CONNACK expected, got {other:?}"),
        }
    }
    // The same bytes at level 5 are a valid CONNECT: the refusals are
    // about the level, not the bytes.
    let v5 = connect_bytes("MQTT", 5, 0x02, Some(with_expiry), "now");
    accepted(&broker, &v5, ProtocolVersion::V5).await;
}

/// A malformed MQTT 5.0 CONNECT closes the connection [MQTT-3.1.4-1]
/// [MQTT-4.13.1-1]. Before closing, the server MAY send CONNACK with the
/// error's reason code (MQTT 5.0 §3.1.4, §4.13.1): 0x81 (Malformed Packet)
/// for a property CONNECT may not carry (§2.2.2.2), a property length past
/// the end of the packet, the reserved flag set [MQTT-3.1.2-3]; 0x82
/// (Protocol Error) for a property given twice (§3.1.2.11.2). Whatever it
/// sends is that CONNACK, or nothing: never a CONNACK accepting the
/// connection, never a DISCONNECT (the first packet the server sends is a
/// CONNACK [MQTT-3.2.0-1]). Each refusal is counted as a protocol error.
/// A well-formed CONNECT built the same way is accepted first, which shows
/// that the bytes around each defect are right. (This broker sends nothing
/// before the close: it uses the MAY of §3.1.4 for an unsupported protocol
/// version only.)
#[tokio::test]
async fn malformed_v5_connect_is_closed_with_at_most_a_connack_of_its_reason_code() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let fine = connect_bytes("MQTT", 5, 0x02, Some(&[0x05, 0x11, 0, 0, 0, 60]), "fine");
    accepted(&broker, &fine, ProtocolVersion::V5).await;

    let cases: [(&str, u8, &[u8], ReasonCode); 5] = [
        (
            "Payload Format Indicator, a PUBLISH and will property",
            0x02,
            &[0x02, 0x01, 0x01],
            ReasonCode::MalformedPacket,
        ),
        (
            "property identifier 0x7F, which does not exist",
            0x02,
            &[0x02, 0x7F, 0x00],
            ReasonCode::MalformedPacket,
        ),
        (
            "property length 64, past the end of the packet",
            0x02,
            &[0x40, 0x11, 0, 0, 0, 60],
            ReasonCode::MalformedPacket,
        ),
        (
            "reserved connect flag set",
            0x03,
            &[0x00],
            ReasonCode::MalformedPacket,
        ),
        (
            "Session Expiry Interval twice",
            0x02,
            &[0x0A, 0x11, 0, 0, 0, 60, 0x11, 0, 0, 0, 60],
            ReasonCode::ProtocolError,
        ),
    ];
    for (what, flags, properties, code) in cases {
        let errors = broker.stat(|s| &s.protocol_errors);
        let connect = connect_bytes("MQTT", 5, flags, Some(properties), "bad");
        let got = answer_until_closed(&broker, &connect).await;
        match &decode_all(&got, ProtocolVersion::V5)[..] {
            [] => {}
            [Packet::ConnAck(a)] if a.reason_code == code && !a.session_present => {}
            other => panic!("{what}: nothing or CONNACK {code:?} before the close, got {other:?}"),
        }
        assert_eq!(
            broker.stat(|s| &s.protocol_errors),
            errors + 1,
            "{what}: refused as a protocol error"
        );
    }
}

/// A second CONNECT on a connection is a Protocol Error [MQTT-3.1.0-2],
/// not a new session: whatever its Clean Start and client identifier, the
/// connection gets DISCONNECT 0x82 and is closed; the close, for a protocol
/// error, publishes the will (MQTT 5.0 §3.1.2.5) [MQTT-3.1.2-8]; the
/// session of the connection is kept with its subscription (a second
/// CONNECT with its client identifier and Clean Start 1 discards nothing),
/// and none is made for another client identifier. (`hostile.rs` checks
/// the DISCONNECT alone, and the close under 3.1.1.)
#[tokio::test]
async fn second_connect_is_a_protocol_error_that_leaves_the_session_alone() {
    for second_id in ["keeper", "intruder"] {
        let broker = TestBroker::start(TestBroker::config()).await;
        let mut watcher = connected(&broker, "watcher").await;
        subscribe(&mut watcher, 1, "will/#", QoS::AtMostOnce, None).await;

        let mut first = persistent("keeper", true);
        first.will = Some(Will {
            topic: packets::string("will/keeper"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let (mut raw, _) = RawClient::connect(broker.addr, first).await;
        subscribe(&mut raw, 1, "kept/t", QoS::AtLeastOnce, None).await;

        let second = persistent(second_id, true);
        raw.send(&Packet::Connect(Box::new(second))).await.unwrap();
        raw.expect_disconnect(ReasonCode::ProtocolError).await;

        let will = next_publish(&mut watcher).await;
        assert_eq!(
            (&*will.topic, &will.payload[..]),
            ("will/keeper", &b"gone"[..]),
            "second CONNECT of {second_id}"
        );

        let (mut again, ack) = RawClient::connect(broker.addr, persistent("keeper", false)).await;
        assert!(
            ack.session_present,
            "the second CONNECT of {second_id} discarded nothing"
        );
        let mut publisher = connected(&broker, "pub").await;
        publish_acked(&mut publisher, qos1("kept/t", "still", 1)).await;
        assert_eq!(&next_publish(&mut again).await.payload[..], b"still");

        if second_id != "keeper" {
            let (_other, ack) = RawClient::connect(broker.addr, persistent(second_id, false)).await;
            assert!(
                !ack.session_present,
                "no session was made for the second CONNECT's {second_id}"
            );
        }
    }
}

// --- Topic aliases ---------------------------------------------------------------

/// The receiving side of topic aliases, as a client keeps it for one
/// connection: checks each PUBLISH the broker sends and gives its topic.
#[derive(Default)]
struct AliasTable {
    max: u16,
    topics: HashMap<u16, String>,
    alias_only: usize,
}

impl AliasTable {
    fn new(max: u16) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// The topic `p` is published to (MQTT 5.0 §3.3.4): a Topic Alias at
    /// most our maximum [MQTT-3.3.2-11] [MQTT-3.1.2-26]; a PUBLISH with a
    /// topic and an alias binds (or re-binds) the alias; one with the alias
    /// alone uses a binding made earlier on this connection.
    fn resolve(&mut self, p: &Publish) -> String {
        let Some(alias) = p.properties.topic_alias else {
            assert!(!p.topic.is_empty(), "no topic and no alias: {p:?}");
            return String::from(&*p.topic);
        };
        assert!(
            alias.get() <= self.max,
            "alias {alias} above our Topic Alias Maximum {} [MQTT-3.3.2-11]: {p:?}",
            self.max
        );
        if p.topic.is_empty() {
            self.alias_only += 1;
            self.topics.get(&alias.get()).cloned().unwrap_or_else(|| {
                panic!("alias {alias} used before it was bound on this connection: {p:?}")
            })
        } else {
            self.topics.insert(alias.get(), String::from(&*p.topic));
            String::from(&*p.topic)
        }
    }
}

/// With the client's Topic Alias Maximum 2 and messages on 3 topics, three
/// rounds: every PUBLISH the broker sends resolves to the topic it was
/// published to, with an alias of at most 2 [MQTT-3.3.2-11], an alias used
/// alone only after a PUBLISH on this connection bound it, and every
/// binding or re-binding carrying its topic (MQTT 5.0 §3.3.2.3.4). The
/// aliases are really used: later rounds send some PUBLISH with the alias
/// alone.
#[tokio::test]
async fn broker_aliases_stay_resolvable_when_topics_outnumber_the_client_maximum() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "few-aliases");
    connect.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = RawClient::connect(broker.addr, connect).await;
    subscribe(&mut sub, 1, "ta/+", QoS::AtLeastOnce, None).await;
    let mut publisher = connected(&broker, "pub").await;

    let topics = ["ta/1", "ta/2", "ta/3"];
    let mut sent = BTreeSet::new();
    let mut id = 0;
    for round in 0..3 {
        for topic in topics {
            id += 1;
            let payload = format!("{topic}|{round}");
            publish_acked(&mut publisher, qos1(topic, &payload, id)).await;
            sent.insert(payload);
        }
    }
    let mut table = AliasTable::new(2);
    let mut received = BTreeSet::new();
    for _ in 0..sent.len() {
        let p = next_publish(&mut sub).await;
        puback(&mut sub, &p).await;
        let payload = String::from_utf8(p.payload.to_vec()).unwrap();
        let (published_to, _) = payload.split_once('|').unwrap();
        assert_eq!(table.resolve(&p), published_to, "{p:?}");
        received.insert(payload);
    }
    assert_eq!(received, sent, "every message, once");
    assert!(table.topics.len() <= 2);
    assert!(
        table.alias_only >= 4,
        "aliases used alone {} times: the rounds after the first should",
        table.alias_only
    );
}

/// Topic alias mappings last one network connection [MQTT-3.3.2-7]: a
/// client binds alias 1 to "x", reconnects resuming its session, and
/// sends a PUBLISH with alias 1 and an empty topic: an alias the broker
/// has no mapping for is a Protocol Error, DISCONNECT 0x82 (MQTT 5.0
/// §3.3.4), and the message goes nowhere.
#[tokio::test]
async fn client_alias_from_a_previous_connection_is_a_protocol_error() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut sub = connected(&broker, "sub").await;
    subscribe(&mut sub, 1, "x", QoS::AtLeastOnce, None).await;

    let (mut raw, ack) = RawClient::connect(broker.addr, persistent("aliaser", true)).await;
    assert!(ack.properties.topic_alias_maximum.unwrap_or(0) >= 1);
    publish_acked(&mut raw, aliased("x", 1, "bound", 1)).await;
    publish_acked(&mut raw, aliased("", 1, "by alias", 2)).await;
    for want in ["bound", "by alias"] {
        let p = next_publish(&mut sub).await;
        assert_eq!((&*p.topic, &p.payload[..]), ("x", want.as_bytes()));
        puback(&mut sub, &p).await;
    }
    disconnect(raw).await;

    let (mut raw, ack) = RawClient::connect(broker.addr, persistent("aliaser", false)).await;
    assert!(ack.session_present, "the session, not the aliases, is kept");
    raw.send(&Packet::Publish(aliased("", 1, "stale alias", 3)))
        .await
        .unwrap();
    raw.expect_disconnect(ReasonCode::ProtocolError).await;

    let mut publisher = connected(&broker, "pub").await;
    publish_acked(&mut publisher, qos1("x", "end", 1)).await;
    assert_eq!(
        &next_publish(&mut sub).await.payload[..],
        b"end",
        "the PUBLISH with the stale alias went nowhere"
    );
}

/// The broker's aliases last one network connection too [MQTT-3.3.2-7]:
/// after the client reconnects, resuming its session, what the broker
/// sends (a QoS 1 message unacknowledged when the connection ended and
/// resent with DUP [MQTT-4.4.0-1], one queued while the client was
/// offline, one published after the reconnection) resolves with an alias
/// table that starts empty: an alias bound on the previous connection is
/// bound again before it is used alone.
#[tokio::test]
async fn broker_binds_its_aliases_again_on_a_new_connection() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let connect = |clean_start: bool| {
        let mut c = persistent("aliased", clean_start);
        c.properties.topic_alias_maximum = Some(2);
        c
    };
    let (mut sub, _) = RawClient::connect(broker.addr, connect(true)).await;
    subscribe(&mut sub, 1, "ra/t", QoS::AtLeastOnce, None).await;
    let mut publisher = connected(&broker, "pub").await;
    publish_acked(&mut publisher, qos1("ra/t", "m1", 1)).await;
    publish_acked(&mut publisher, qos1("ra/t", "m2", 2)).await;

    let mut table = AliasTable::new(2);
    let m1 = next_publish(&mut sub).await;
    assert_eq!(table.resolve(&m1), "ra/t");
    puback(&mut sub, &m1).await;
    let m2 = next_publish(&mut sub).await;
    assert_eq!(table.resolve(&m2), "ra/t");
    assert!(
        m2.topic.is_empty() && m2.properties.topic_alias.is_some(),
        "the second message uses the alias alone: {m2:?}"
    );
    // m2 is left unacknowledged.
    disconnect(sub).await;
    publish_acked(&mut publisher, qos1("ra/t", "m3", 3)).await;

    let (mut sub, ack) = RawClient::connect(broker.addr, connect(false)).await;
    assert!(ack.session_present);
    publish_acked(&mut publisher, qos1("ra/t", "m4", 4)).await;
    let mut table = AliasTable::new(2);
    for want in ["m2", "m3", "m4"] {
        let p = next_publish(&mut sub).await;
        assert_eq!(&p.payload[..], want.as_bytes());
        assert_eq!(p.dup, want == "m2", "only the resent message has DUP");
        assert_eq!(table.resolve(&p), "ra/t", "{want}: {p:?}");
        puback(&mut sub, &p).await;
    }
    assert!(
        table.alias_only >= 1,
        "the alias, bound again, is used alone again"
    );
}

/// A client re-binds alias 1 from "rb/a" to "rb/b" with a PUBLISH carrying
/// the alias and the new topic (MQTT 5.0 §3.3.2.3.4, §3.3.4): later PUBLISH
/// packets with alias 1 and an empty topic go to "rb/b"; a subscriber to
/// "rb/a" gets only what was published there.
#[tokio::test]
async fn client_alias_rebound_to_another_topic_publishes_there() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut sub_a = connected(&broker, "sub-a").await;
    subscribe(&mut sub_a, 1, "rb/a", QoS::AtLeastOnce, None).await;
    let mut sub_b = connected(&broker, "sub-b").await;
    subscribe(&mut sub_b, 1, "rb/b", QoS::AtLeastOnce, None).await;

    let mut publisher = connected(&broker, "pub").await;
    for (id, (topic, payload)) in [
        ("rb/a", "a1"),
        ("", "a2"),
        ("rb/b", "b1"),
        ("", "b2"),
        ("", "b3"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = u16::try_from(id).unwrap() + 1;
        publish_acked(&mut publisher, aliased(topic, 1, payload, id)).await;
    }
    publish_acked(&mut publisher, qos1("rb/a", "end", 10)).await;

    for (sub, topic, want) in [
        (&mut sub_a, "rb/a", &["a1", "a2", "end"][..]),
        (&mut sub_b, "rb/b", &["b1", "b2", "b3"][..]),
    ] {
        for w in want {
            let p = next_publish(sub).await;
            assert_eq!((&*p.topic, &p.payload[..]), (topic, w.as_bytes()));
            puback(sub, &p).await;
        }
    }
    sub_b.expect_silence(Duration::from_millis(200)).await;
}

// --- Subscription identifiers ---------------------------------------------------

/// A retained message sent because of a SUBSCRIBE carries the identifier
/// of the subscription that SUBSCRIBE made, and only it: [MQTT-3.3.4-3],
/// and it is a Protocol Error for a PUBLISH to carry a Subscription
/// Identifier other than those of the SUBSCRIBE that caused it to flow
/// (MQTT 5.0 §3.3.4). A subscription without one gets the message without.
#[tokio::test]
async fn retained_message_on_subscribe_carries_the_new_subscription_identifier_only() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut publisher = connected(&broker, "pub").await;
    let mut retained = qos1("sr/1", "kept", 1);
    retained.retain = true;
    publish_acked(&mut publisher, retained).await;

    let mut sub = connected(&broker, "sub").await;
    for (packet_id, filter, id, want) in [
        (1, "sr/+", Some(42), BTreeSet::from([42])),
        (2, "sr/#", Some(43), BTreeSet::from([43])),
        (3, "sr/1", None, BTreeSet::new()),
    ] {
        subscribe(&mut sub, packet_id, filter, QoS::AtLeastOnce, id).await;
        let p = next_publish(&mut sub).await;
        assert!(p.retain && &p.payload[..] == b"kept", "{p:?}");
        assert_eq!(ids(&p), want, "retained message sent on SUBSCRIBE {filter}");
        puback(&mut sub, &p).await;
    }
}

/// A SUBSCRIBE to a filter already subscribed replaces the subscription's
/// identifier, or its absence, with its own (MQTT 5.0 §3.8.2.1.2: the
/// identifier is associated with any subscription created or modified by
/// the SUBSCRIBE, and its absence is stored too): later deliveries carry
/// the new one.
#[tokio::test]
async fn resubscribing_replaces_the_subscription_identifier() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let mut sub = connected(&broker, "sub").await;
    let mut publisher = connected(&broker, "pub").await;
    for (packet_id, id, want) in [
        (1, Some(1), BTreeSet::from([1])),
        (2, Some(2), BTreeSet::from([2])),
        (3, None, BTreeSet::new()),
        (4, Some(4), BTreeSet::from([4])),
    ] {
        subscribe(&mut sub, packet_id, "rs/t", QoS::AtLeastOnce, id).await;
        publish_acked(&mut publisher, qos1("rs/t", "m", packet_id)).await;
        let p = next_publish(&mut sub).await;
        assert_eq!(ids(&p), want, "after SUBSCRIBE {packet_id} with {id:?}");
        puback(&mut sub, &p).await;
    }
}

fn persistent_config(dir: &Path) -> mqtt_server::Config {
    let mut c = TestBroker::config();
    c.persistence = true;
    c.data_dir = dir.to_path_buf();
    c.sys_interval = 0;
    c
}

/// Messages for a session whose client is away carry, once delivered, the
/// identifiers of the subscriptions they matched [MQTT-3.3.4-3]; the
/// identifiers are part of the session state (MQTT 5.0 §4.1): a message
/// queued while the client was offline, and one sent but not acknowledged
/// and resent after the reconnection [MQTT-4.4.0-1]. In memory, and with
/// persistence across a restart of the broker while the client was away.
/// Without a restart the resent message has DUP [MQTT-3.3.1-1]; across
/// one, a QoS 1 message in flight is resent from the queue (README,
/// "A restart restores"), without DUP, which is not what this test is
/// about.
#[tokio::test]
async fn queued_and_resent_messages_carry_their_subscription_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    for persistence in [false, true] {
        let config = if persistence {
            persistent_config(dir.path())
        } else {
            TestBroker::config()
        };
        let mut broker = TestBroker::start(config.clone()).await;
        let (mut sub, _) = RawClient::connect(broker.addr, persistent("away", true)).await;
        subscribe(&mut sub, 1, "sq/+", QoS::AtLeastOnce, Some(5)).await;
        subscribe(&mut sub, 2, "sq/x", QoS::AtLeastOnce, Some(6)).await;
        let mut publisher = connected(&broker, "pub").await;
        publish_acked(&mut publisher, qos1("sq/y", "in flight", 1)).await;
        let p = next_publish(&mut sub).await;
        assert_eq!(ids(&p), BTreeSet::from([5]));
        // Not acknowledged.
        disconnect(sub).await;
        publish_acked(&mut publisher, qos1("sq/x", "both", 2)).await;
        publish_acked(&mut publisher, qos1("sq/y", "one", 3)).await;
        drop(publisher);
        if persistence {
            assert!(broker.stop(Duration::from_secs(10)).await.is_some());
            broker = TestBroker::start(config).await;
        }

        let (mut sub, ack) = RawClient::connect(broker.addr, persistent("away", false)).await;
        assert!(ack.session_present, "persistence {persistence}");
        for (payload, dup, want) in [
            ("in flight", true, BTreeSet::from([5])),
            ("both", false, BTreeSet::from([5, 6])),
            ("one", false, BTreeSet::from([5])),
        ] {
            let p = next_publish(&mut sub).await;
            assert_eq!(
                &p.payload[..],
                payload.as_bytes(),
                "persistence {persistence}"
            );
            if !persistence {
                assert_eq!(p.dup, dup, "{payload}: DUP on the resent message only");
            }
            assert_eq!(
                ids(&p),
                want,
                "persistence {persistence}: {payload} [MQTT-3.3.4-3]"
            );
            puback(&mut sub, &p).await;
        }
        drop(sub);
        drop(broker);
    }
}
