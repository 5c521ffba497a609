//! Byte-literal tests: every packet type of MQTT 3.1.1 and 5.0 (and a
//! CONNECT of MQTT 3.1), written out byte by byte with a comment per field.
//!
//! Each literal is followed on the wire by the bytes of another packet, to
//! prove that decoding stops exactly at the packet boundary; the literal is
//! also the canonical encoding of the expected packet, so every test checks
//! decoding and encoding against the same bytes.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeLimits, Disconnect, DisconnectProperties, MqttString, Packet,
    PacketId, PayloadFormat, ProtocolVersion, Publish, PublishExtras, PublishProperties, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription,
    SubscriptionId, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperty, Will, WillProperties,
};
use std::num::{NonZeroU16, NonZeroU32};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// PINGREQ: the packet that follows most literals on the wire.
const PINGREQ: &[u8] = &[
    0xC0, // PINGREQ
    0x00, // remaining length 0
];

/// PINGRESP: follows the PINGREQ literals, so that the trailer differs from the packet.
const PINGRESP: &[u8] = &[
    0xD0, // PINGRESP
    0x00, // remaining length 0
];

/// Decodes `wire` followed by PINGREQ and checks the packet against
/// `expected`, the boundary, and the canonical encoding.
fn check(version: ProtocolVersion, wire: &[u8], expected: Packet) {
    check_followed_by(version, wire, expected, PINGREQ, Packet::PingReq);
}

/// Decodes `wire` followed by `next`; checks that the first packet is
/// `expected`, that exactly `next` is left and decodes to `next_packet`, and
/// that `expected` encodes to `wire` with a matching `encoded_len`.
fn check_followed_by(
    version: ProtocolVersion,
    wire: &[u8],
    expected: Packet,
    next: &[u8],
    next_packet: Packet,
) {
    let limits = DecodeLimits::default();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(wire);
    buf.extend_from_slice(next);

    let decoded = Packet::decode(&mut buf, version, &limits).unwrap();
    assert_eq!(decoded, Some(expected.clone()), "decoded packet");
    assert_eq!(&buf[..], next, "decoding must stop at the packet boundary");
    let second = Packet::decode(&mut buf, version, &limits).unwrap();
    assert_eq!(second, Some(next_packet), "the following packet");
    assert!(buf.is_empty());

    let mut out = BytesMut::new();
    expected.encode(version, &mut out).unwrap();
    assert_eq!(&out[..], wire, "canonical encoding");
    assert_eq!(expected.encoded_len(version), wire.len(), "encoded_len");
}

fn s(v: &'static str) -> MqttString {
    MqttString::from_static(v)
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn user(name: &'static str, value: &'static str) -> UserProperty {
    UserProperty::new(s(name), s(value))
}

fn sub_id(v: u32) -> SubscriptionId {
    SubscriptionId::new(v).unwrap()
}

// ---------------------------------------------------------------- CONNECT

#[test]
fn connect_v3_1_mqisdp_minimal() {
    let wire = [
        0x10, // CONNECT
        0x10, // remaining length 16
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
        0x03, // protocol level 3 (MQTT 3.1)
        0x02, // connect flags: clean session
        0x00, 0x3C, // keep alive 60 s
        0x00, 0x02, b'c', b'1', // client identifier "c1"
    ];
    let expected = Connect {
        protocol: V3_1,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: s("c1"),
        will: None,
        username: None,
        password: None,
        bridge: false,
    };
    // A CONNECT is decoded by the version it announces, whatever the
    // connection's version was assumed to be.
    check(V3_1_1, &wire, Packet::Connect(Box::new(expected.clone())));
    check(V3_1, &wire, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_v3_1_1_minimal() {
    let wire = [
        0x10, // CONNECT
        0x0C, // remaining length 12
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04, // protocol level 4 (MQTT 3.1.1)
        0x00, // connect flags: none, not even clean session
        0x00, 0x1E, // keep alive 30 s
        0x00, 0x00, // client identifier "" (empty)
    ];
    let expected = Connect {
        protocol: V3_1_1,
        clean_start: false,
        keep_alive: 30,
        properties: ConnectProperties::default(),
        client_id: MqttString::new(),
        will: None,
        username: None,
        password: None,
        bridge: false,
    };
    check(V3_1_1, &wire, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_v3_1_1_with_will_username_and_password() {
    let wire = [
        0x10, // CONNECT
        0x24, // remaining length 36
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04, // protocol level 4
        0xEE, // connect flags: user name, password, will retain, will QoS 1, will, clean session
        0x00, 0x0A, // keep alive 10 s
        0x00, 0x03, b'c', b'i', b'd', // client identifier "cid"
        0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
        0x00, 0x03, b'b', b'y', b'e', // will payload "bye"
        0x00, 0x04, b'u', b's', b'e', b'r', // user name "user"
        0x00, 0x03, 0x01, 0x02, 0x03, // password [1, 2, 3]
    ];
    let expected = Connect {
        protocol: V3_1_1,
        clean_start: true,
        keep_alive: 10,
        properties: ConnectProperties::default(),
        client_id: s("cid"),
        will: Some(Will {
            topic: s("w/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(&[1, 2, 3])),
        bridge: false,
    };
    check(V3_1_1, &wire, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_v5_minimal() {
    let wire = [
        0x10, // CONNECT
        0x0E, // remaining length 14
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x05, // protocol level 5 (MQTT 5.0)
        0x02, // connect flags: clean start
        0x00, 0x3C, // keep alive 60 s
        0x00, // property length 0
        0x00, 0x01, b'c', // client identifier "c"
    ];
    let expected = Connect::new(V5, s("c"));
    check(V5, &wire, Packet::Connect(Box::new(expected)));
}

#[test]
fn connect_v5_with_every_property_and_will_property() {
    let wire = [
        0x10, // CONNECT
        0x82, 0x01, // remaining length 130 (two-byte variable byte integer)
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x05, // protocol level 5
        0xD4, // connect flags: user name, password, will QoS 2, will; no clean start
        0x01, 0x2C, // keep alive 300 s
        0x2F, // property length 47
        0x11, 0x00, 0x00, 0x0E, 0x10, // Session Expiry Interval 3600
        0x21, 0x00, 0x14, // Receive Maximum 20
        0x27, 0x00, 0x01, 0x00, 0x00, // Maximum Packet Size 65536
        0x22, 0x00, 0x0A, // Topic Alias Maximum 10
        0x19, 0x01, // Request Response Information 1
        0x17, 0x00, // Request Problem Information 0
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method "SCRAM"
        0x16, 0x00, 0x02, 0xDE, 0xAD, // Authentication Data [DE AD]
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property "k" = "v"
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', // User Property "k" = "w": same name, kept
        0x00, 0x05, b'd', b'e', b'v', b'-', b'1', // client identifier "dev-1"
        0x2B, // will property length 43
        0x18, 0x00, 0x00, 0x00, 0x05, // Will Delay Interval 5
        0x01, 0x01, // Payload Format Indicator 1 (UTF-8)
        0x02, 0x00, 0x00, 0x00, 0x3C, // Message Expiry Interval 60
        0x03, 0x00, 0x0A, // Content Type, 10 bytes:
        b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i', b'n', // "text/plain"
        0x08, 0x00, 0x03, b'r', b'/', b't', // Response Topic "r/t"
        0x09, 0x00, 0x02, 0x01, 0x02, // Correlation Data [01 02]
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property "a" = "b"
        0x00, 0x06, b'w', b'i', b'l', b'l', b'/', b't', // will topic "will/t"
        0x00, 0x04, b'g', b'o', b'n', b'e', // will payload "gone"
        0x00, 0x01, b'u', // user name "u"
        0x00, 0x02, b'p', b'w', // password "pw"
    ];
    let expected = Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 300,
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: NonZeroU16::new(20),
            maximum_packet_size: NonZeroU32::new(65536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[0xDE, 0xAD])),
            user_properties: vec![user("k", "v"), user("k", "w")].into(),
        },
        client_id: s("dev-1"),
        will: Some(Will {
            topic: s("will/t"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(60),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("r/t")),
                correlation_data: Some(Bytes::from_static(&[1, 2])),
                user_properties: vec![user("a", "b")].into(),
            },
        }),
        username: Some(s("u")),
        password: Some(Bytes::from_static(b"pw")),
        bridge: false,
    };
    check(V5, &wire, Packet::Connect(Box::new(expected)));
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn connack_v3_1_1_session_present_accepted() {
    let wire = [
        0x20, // CONNACK
        0x02, // remaining length 2
        0x01, // acknowledge flags: session present
        0x00, // return code 0: connection accepted
    ];
    check(
        V3_1_1,
        &wire,
        Packet::from(ConnAck::new(ReasonCode::Success, true)),
    );
}

#[test]
fn connack_v3_1_1_return_codes_map_to_reason_codes() {
    let table = [
        (0x00, ReasonCode::Success),
        (0x01, ReasonCode::UnsupportedProtocolVersion),
        (0x02, ReasonCode::ClientIdentifierNotValid),
        (0x03, ReasonCode::ServerUnavailable),
        (0x04, ReasonCode::BadUserNameOrPassword),
        (0x05, ReasonCode::NotAuthorized),
    ];
    for (code, reason) in table {
        let wire = [
            0x20, // CONNACK
            0x02, // remaining length 2
            0x00, // acknowledge flags: no session
            code, // return code
        ];
        check(V3_1_1, &wire, Packet::from(ConnAck::new(reason, false)));
    }
}

#[test]
fn connack_v3_1_1_encodes_v5_only_reason_codes_as_nearest_return_code() {
    let table = [
        (ReasonCode::Banned, 0x05),
        (ReasonCode::BadAuthenticationMethod, 0x05),
        (ReasonCode::ServerBusy, 0x03),
        (ReasonCode::UnspecifiedError, 0x03),
        (ReasonCode::QuotaExceeded, 0x03),
    ];
    for (reason, code) in table {
        let mut out = BytesMut::new();
        Packet::from(ConnAck::new(reason, false))
            .encode(V3_1_1, &mut out)
            .unwrap();
        let wire = [
            0x20, // CONNACK
            0x02, // remaining length 2
            0x00, // acknowledge flags: no session
            code, // return code
        ];
        assert_eq!(&out[..], &wire, "{reason}");
    }
}

#[test]
fn connack_v5_refused_without_properties() {
    let wire = [
        0x20, // CONNACK
        0x03, // remaining length 3
        0x00, // acknowledge flags: no session
        0x87, // reason code: Not authorized
        0x00, // property length 0
    ];
    check(
        V5,
        &wire,
        Packet::from(ConnAck::new(ReasonCode::NotAuthorized, false)),
    );
}

#[test]
fn connack_v5_with_every_property() {
    let wire = [
        0x20, // CONNACK
        0x52, // remaining length 82
        0x00, // acknowledge flags: no session
        0x00, // reason code: Success
        0x4F, // property length 79
        0x11, 0x00, 0x00, 0x00, 0x78, // Session Expiry Interval 120
        0x21, 0x00, 0x0A, // Receive Maximum 10
        0x24, 0x01, // Maximum QoS 1
        0x25, 0x00, // Retain Available 0
        0x27, 0x00, 0x00, 0x10, 0x00, // Maximum Packet Size 4096
        0x12, 0x00, 0x06, // Assigned Client Identifier, 6 bytes:
        b'a', b'u', b't', b'o', b'-', b'1', // "auto-1"
        0x22, 0x00, 0x05, // Topic Alias Maximum 5
        0x1F, 0x00, 0x02, b'o', b'k', // Reason String "ok"
        0x28, 0x00, // Wildcard Subscription Available 0
        0x29, 0x01, // Subscription Identifier Available 1
        0x2A, 0x00, // Shared Subscription Available 0
        0x13, 0x00, 0x1E, // Server Keep Alive 30
        0x1A, 0x00, 0x05, b'r', b'e', b's', b'p', b'/', // Response Information "resp/"
        0x1C, 0x00, 0x0A, // Server Reference, 10 bytes:
        b'o', b't', b'h', b'e', b'r', b':', b'1', b'8', b'8', b'3', // "other:1883"
        0x15, 0x00, 0x01, b'M', // Authentication Method "M"
        0x16, 0x00, 0x01, 0x09, // Authentication Data [09]
        0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y', // User Property "x" = "y"
    ];
    let expected = ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: NonZeroU16::new(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: NonZeroU32::new(4096),
            assigned_client_identifier: Some(s("auto-1")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("ok")),
            wildcard_subscription_available: Some(false),
            subscription_identifier_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some(s("resp/")),
            server_reference: Some(s("other:1883")),
            authentication_method: Some(s("M")),
            authentication_data: Some(Bytes::from_static(&[0x09])),
            user_properties: vec![user("x", "y")].into(),
        },
    };
    check(V5, &wire, Packet::from(expected));
}

// ---------------------------------------------------------------- PUBLISH

#[test]
fn publish_v3_1_1_qos0() {
    let wire = [
        0x30, // PUBLISH, QoS 0, no DUP, no RETAIN
        0x07, // remaining length 7
        0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
        b'h', b'i', // payload "hi"
    ];
    let expected = Publish::new(s("a/b"), Bytes::from_static(b"hi"));
    check(V3_1_1, &wire, Packet::Publish(expected));
}

#[test]
fn publish_v3_1_1_qos1_retain() {
    let wire = [
        0x33, // PUBLISH, QoS 1, RETAIN
        0x08, // remaining length 8
        0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
        0x00, 0x0A, // packet identifier 10
        b'x', // payload "x"
    ];
    let expected = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: s("a/b"),
        packet_id: Some(pid(10)),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(b"x"),
    };
    check(V3_1_1, &wire, Packet::Publish(expected));
}

#[test]
fn publish_v3_1_1_qos2_dup_empty_payload() {
    let wire = [
        0x3C, // PUBLISH, DUP, QoS 2
        0x05, // remaining length 5: no payload byte
        0x00, 0x01, b't', // topic "t"
        0xFF, 0xFF, // packet identifier 65535
    ];
    let expected = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: s("t"),
        packet_id: Some(pid(65535)),
        properties: PublishProperties::default(),
        payload: Bytes::new(),
    };
    check(V3_1_1, &wire, Packet::Publish(expected));
}

#[test]
fn publish_v5_qos0_without_properties() {
    let wire = [
        0x30, // PUBLISH, QoS 0
        0x08, // remaining length 8
        0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
        0x00, // property length 0
        b'h', b'i', // payload "hi"
    ];
    let expected = Publish::new(s("a/b"), Bytes::from_static(b"hi"));
    check(V5, &wire, Packet::Publish(expected));
}

#[test]
fn publish_v5_with_every_property() {
    let wire = [
        0x3B, // PUBLISH, DUP, QoS 1, RETAIN
        0x40, // remaining length 64
        0x00, 0x03, b's', b'/', b'1', // topic "s/1"
        0x12, 0x34, // packet identifier 0x1234
        0x36, // property length 54
        0x01, 0x01, // Payload Format Indicator 1 (UTF-8)
        0x02, 0x00, 0x00, 0x01, 0x2C, // Message Expiry Interval 300
        0x23, 0x00, 0x07, // Topic Alias 7
        0x08, 0x00, 0x05, b'r', b'e', b'p', b'l', b'y', // Response Topic "reply"
        0x09, 0x00, 0x03, 0x0A, 0x0B, 0x0C, // Correlation Data [0A 0B 0C]
        0x0B, 0x01, // Subscription Identifier 1
        0x0B, 0x80, 0x01, // Subscription Identifier 128 (two-byte variable byte integer)
        0x03, 0x00, 0x04, b'j', b's', b'o', b'n', // Content Type "json"
        0x26, 0x00, 0x02, b'k', b'1', 0x00, 0x02, b'v', b'1', // User Property "k1" = "v1"
        0x26, 0x00, 0x02, b'k', b'1', 0x00, 0x02, b'v', b'2', // User Property "k1" = "v2"
        b'{', b'}', // payload "{}"
    ];
    let expected = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: s("s/1"),
        packet_id: Some(pid(0x1234)),
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(300),
            topic_alias: NonZeroU16::new(7),
            subscription_identifiers: [sub_id(1), sub_id(128)].into_iter().collect(),
            extras: PublishExtras {
                response_topic: Some(s("reply")),
                correlation_data: Some(Bytes::from_static(&[0x0A, 0x0B, 0x0C])),
                content_type: Some(s("json")),
                user_properties: vec![user("k1", "v1"), user("k1", "v2")].into(),
            }
            .shared(),
        },
        payload: Bytes::from_static(b"{}"),
    };
    check(V5, &wire, Packet::Publish(expected));
}

#[test]
fn publish_v5_qos2_with_topic_alias_and_empty_topic() {
    let wire = [
        0x34, // PUBLISH, QoS 2
        0x0A, // remaining length 10
        0x00, 0x00, // topic "" (the alias stands for it)
        0x00, 0x02, // packet identifier 2
        0x03, // property length 3
        0x23, 0x00, 0x01, // Topic Alias 1
        b'o', b'k', // payload "ok"
    ];
    let expected = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: MqttString::new(),
        packet_id: Some(pid(2)),
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(1),
            ..PublishProperties::default()
        },
        payload: Bytes::from_static(b"ok"),
    };
    check(V5, &wire, Packet::Publish(expected));
}

// ------------------------------------------- PUBACK, PUBREC, PUBREL, PUBCOMP

/// Wraps an [`Ack`] in the packet variant of one acknowledgement type.
type MakeAck = fn(Ack) -> Packet;

/// The first byte of each acknowledgement and the packet it decodes to.
fn ack_packets() -> [(u8, MakeAck); 4] {
    [
        (0x40, Packet::PubAck),  // PUBACK
        (0x50, Packet::PubRec),  // PUBREC
        (0x62, Packet::PubRel),  // PUBREL, reserved flags 0b0010
        (0x70, Packet::PubComp), // PUBCOMP
    ]
}

#[test]
fn puback_pubrec_pubrel_pubcomp_v3_1_1() {
    for (first, make) in ack_packets() {
        let wire = [
            first, // PUBACK / PUBREC / PUBREL / PUBCOMP
            0x02,  // remaining length 2
            0x00, 0x07, // packet identifier 7
        ];
        check(V3_1_1, &wire, make(Ack::new(pid(7))));
    }
}

#[test]
fn puback_pubrec_pubrel_pubcomp_v5_short_form() {
    // Success without properties: the reason code and the property length
    // are left out (MQTT 5.0 §3.4.2.1), which gives the bytes of 3.1.1.
    for (first, make) in ack_packets() {
        let wire = [
            first, // PUBACK / PUBREC / PUBREL / PUBCOMP
            0x02,  // remaining length 2
            0x01, 0x00, // packet identifier 256
        ];
        check(V5, &wire, make(Ack::new(pid(256))));
    }
}

#[test]
fn puback_v5_with_reason_code() {
    let wire = [
        0x40, // PUBACK
        0x03, // remaining length 3
        0x00, 0x01, // packet identifier 1
        0x10, // reason code: No matching subscribers
    ];
    let expected = Ack::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    check(V5, &wire, Packet::PubAck(expected));
}

#[test]
fn pubrec_v5_with_reason_code() {
    let wire = [
        0x50, // PUBREC
        0x03, // remaining length 3
        0x00, 0x02, // packet identifier 2
        0x97, // reason code: Quota exceeded
    ];
    let expected = Ack::with_reason(pid(2), ReasonCode::QuotaExceeded);
    check(V5, &wire, Packet::PubRec(expected));
}

#[test]
fn pubrel_v5_with_reason_code() {
    let wire = [
        0x62, // PUBREL
        0x03, // remaining length 3
        0x00, 0x03, // packet identifier 3
        0x92, // reason code: Packet Identifier not found
    ];
    let expected = Ack::with_reason(pid(3), ReasonCode::PacketIdentifierNotFound);
    check(V5, &wire, Packet::PubRel(expected));
}

#[test]
fn pubcomp_v5_with_reason_code() {
    let wire = [
        0x70, // PUBCOMP
        0x03, // remaining length 3
        0x00, 0x04, // packet identifier 4
        0x92, // reason code: Packet Identifier not found
    ];
    let expected = Ack::with_reason(pid(4), ReasonCode::PacketIdentifierNotFound);
    check(V5, &wire, Packet::PubComp(expected));
}

#[test]
fn puback_pubrec_v5_full_form_with_reason_string() {
    let with_props = |code| Ack {
        packet_id: pid(5),
        reason_code: code,
        properties: AckProperties {
            reason_string: Some(s("no")),
            user_properties: vec![user("a", "b")].into(),
        },
    };
    for (first, make) in [(0x40, Packet::PubAck as MakeAck), (0x50, Packet::PubRec)] {
        let wire = [
            first, // PUBACK / PUBREC
            0x10,  // remaining length 16
            0x00, 0x05, // packet identifier 5
            0x87, // reason code: Not authorized
            0x0C, // property length 12
            0x1F, 0x00, 0x02, b'n', b'o', // Reason String "no"
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property "a" = "b"
        ];
        check(V5, &wire, make(with_props(ReasonCode::NotAuthorized)));
    }
}

#[test]
fn pubrel_pubcomp_v5_full_form_with_reason_string() {
    let expected = Ack {
        packet_id: pid(6),
        reason_code: ReasonCode::Success,
        properties: AckProperties {
            reason_string: Some(s("done")),
            user_properties: Default::default(),
        },
    };
    for (first, make) in [(0x62, Packet::PubRel as MakeAck), (0x70, Packet::PubComp)] {
        let wire = [
            first, // PUBREL / PUBCOMP
            0x0B,  // remaining length 11
            0x00, 0x06, // packet identifier 6
            0x00, // reason code: Success (written because properties follow)
            0x07, // property length 7
            0x1F, 0x00, 0x04, b'd', b'o', b'n', b'e', // Reason String "done"
        ];
        check(V5, &wire, make(expected.clone()));
    }
}

#[test]
fn puback_v5_reason_code_with_empty_property_length_decodes_to_the_short_form() {
    // A sender may write the property length 0 (MQTT 5.0 §3.4.2.2.1); it means
    // the same as leaving it out, and the canonical encoding leaves it out.
    let mut buf = BytesMut::from(
        &[
            0x40, // PUBACK
            0x04, // remaining length 4
            0x00, 0x01, // packet identifier 1
            0x10, // reason code: No matching subscribers
            0x00, // property length 0
        ][..],
    );
    let decoded = Packet::decode(&mut buf, V5, &DecodeLimits::default()).unwrap();
    let expected = Packet::PubAck(Ack::with_reason(pid(1), ReasonCode::NoMatchingSubscribers));
    assert_eq!(decoded, Some(expected.clone()));
    assert!(buf.is_empty());
    assert_eq!(expected.encoded_len(V5), 5);
}

// -------------------------------------------------------------- SUBSCRIBE

#[test]
fn subscribe_v3_1_1() {
    let wire = [
        0x82, // SUBSCRIBE, reserved flags 0b0010
        0x0C, // remaining length 12
        0x00, 0x0B, // packet identifier 11
        0x00, 0x03, b'a', b'/', b'+', // topic filter "a/+"
        0x01, // options: QoS 1
        0x00, 0x01, b'#', // topic filter "#"
        0x02, // options: QoS 2
    ];
    let expected = Subscribe {
        packet_id: pid(11),
        properties: SubscribeProperties::default(),
        subscriptions: vec![
            Subscription {
                filter: s("a/+"),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            },
            Subscription {
                filter: s("#"),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            },
        ],
    };
    check(V3_1_1, &wire, Packet::Subscribe(expected));
}

#[test]
fn subscribe_v5_with_subscription_identifier_and_every_option_bit() {
    let wire = [
        0x82, // SUBSCRIBE
        0x1B, // remaining length 27
        0x00, 0x0C, // packet identifier 12
        0x0A, // property length 10
        0x0B, 0xAC, 0x02, // Subscription Identifier 300
        0x26, 0x00, 0x01, b'u', 0x00, 0x01, b'1', // User Property "u" = "1"
        0x00, 0x03, b'a', b'/', b'b', // topic filter "a/b"
        0x2E, // options: retain handling 2, retain as published, no local, QoS 2
        0x00, 0x01, b'c', // topic filter "c"
        0x11, // options: retain handling 1, QoS 1
        0x00, 0x01, b'd', // topic filter "d"
        0x00, // options: all zero
    ];
    let expected = Subscribe {
        packet_id: pid(12),
        properties: SubscribeProperties {
            subscription_identifier: Some(sub_id(300)),
            user_properties: vec![user("u", "1")].into(),
        },
        subscriptions: vec![
            Subscription {
                filter: s("a/b"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
            Subscription {
                filter: s("c"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendIfNew,
                },
            },
            Subscription {
                filter: s("d"),
                options: SubscriptionOptions::default(),
            },
        ],
    };
    check(V5, &wire, Packet::Subscribe(expected));
}

// ----------------------------------------------------------------- SUBACK

#[test]
fn suback_v3_1_1_with_failure_return_code() {
    let wire = [
        0x90, // SUBACK
        0x06, // remaining length 6
        0x00, 0x07, // packet identifier 7
        0x00, // return code: granted QoS 0
        0x01, // return code: granted QoS 1
        0x02, // return code: granted QoS 2
        0x80, // return code: failure
    ];
    let expected = SubAck {
        packet_id: pid(7),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
    };
    check(V3_1_1, &wire, Packet::SubAck(expected));
}

#[test]
fn suback_v3_1_1_encodes_every_v5_failure_as_0x80() {
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid],
    });
    let mut out = BytesMut::new();
    packet.encode(V3_1_1, &mut out).unwrap();
    let wire = [
        0x90, // SUBACK
        0x04, // remaining length 4
        0x00, 0x01, // packet identifier 1
        0x80, // return code: failure (Not authorized)
        0x80, // return code: failure (Topic Filter invalid)
    ];
    assert_eq!(&out[..], &wire);
}

#[test]
fn suback_v5_with_reason_string() {
    let wire = [
        0x90, // SUBACK
        0x0D, // remaining length 13
        0x00, 0x08, // packet identifier 8
        0x06, // property length 6
        0x1F, 0x00, 0x03, b'w', b'h', b'y', // Reason String "why"
        0x01, // reason code: Granted QoS 1
        0x87, // reason code: Not authorized
        0xA2, // reason code: Wildcard Subscriptions not supported
        0x00, // reason code: Granted QoS 0
    ];
    let expected = SubAck {
        packet_id: pid(8),
        properties: AckProperties {
            reason_string: Some(s("why")),
            user_properties: Default::default(),
        },
        reason_codes: vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::GRANTED_QOS_0,
        ],
    };
    check(V5, &wire, Packet::SubAck(expected));
}

// ------------------------------------------------------------ UNSUBSCRIBE

#[test]
fn unsubscribe_v3_1_1() {
    let wire = [
        0xA2, // UNSUBSCRIBE, reserved flags 0b0010
        0x0C, // remaining length 12
        0x00, 0x0D, // packet identifier 13
        0x00, 0x03, b'a', b'/', b'b', // topic filter "a/b"
        0x00, 0x03, b'c', b'/', b'#', // topic filter "c/#"
    ];
    let expected = Unsubscribe {
        packet_id: pid(13),
        properties: UnsubscribeProperties::default(),
        filters: vec![s("a/b"), s("c/#")],
    };
    check(V3_1_1, &wire, Packet::Unsubscribe(expected));
}

#[test]
fn unsubscribe_v5_with_user_property() {
    let wire = [
        0xA2, // UNSUBSCRIBE
        0x0F, // remaining length 15
        0x00, 0x0E, // packet identifier 14
        0x07, // property length 7
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property "k" = "v"
        0x00, 0x03, b'a', b'/', b'b', // topic filter "a/b"
    ];
    let expected = Unsubscribe {
        packet_id: pid(14),
        properties: UnsubscribeProperties {
            user_properties: vec![user("k", "v")].into(),
        },
        filters: vec![s("a/b")],
    };
    check(V5, &wire, Packet::Unsubscribe(expected));
}

// --------------------------------------------------------------- UNSUBACK

#[test]
fn unsuback_v3_1_1() {
    let wire = [
        0xB0, // UNSUBACK
        0x02, // remaining length 2
        0x00, 0x09, // packet identifier 9
    ];
    let expected = UnsubAck {
        packet_id: pid(9),
        properties: AckProperties::default(),
        reason_codes: Vec::new(),
    };
    check(V3_1_1, &wire, Packet::UnsubAck(expected));
}

#[test]
fn unsuback_v5_with_reason_codes() {
    let wire = [
        0xB0, // UNSUBACK
        0x06, // remaining length 6
        0x00, 0x0A, // packet identifier 10
        0x00, // property length 0
        0x00, // reason code: Success
        0x11, // reason code: No subscription existed
        0x8F, // reason code: Topic Filter invalid
    ];
    let expected = UnsubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::Success,
            ReasonCode::NoSubscriptionExisted,
            ReasonCode::TopicFilterInvalid,
        ],
    };
    check(V5, &wire, Packet::UnsubAck(expected));
}

#[test]
fn unsuback_v5_with_reason_string() {
    let wire = [
        0xB0, // UNSUBACK
        0x0A, // remaining length 10
        0x00, 0x0B, // packet identifier 11
        0x06, // property length 6
        0x1F, 0x00, 0x03, b'n', b'o', b'!', // Reason String "no!"
        0x87, // reason code: Not authorized
    ];
    let expected = UnsubAck {
        packet_id: pid(11),
        properties: AckProperties {
            reason_string: Some(s("no!")),
            user_properties: Default::default(),
        },
        reason_codes: vec![ReasonCode::NotAuthorized],
    };
    check(V5, &wire, Packet::UnsubAck(expected));
}

// ------------------------------------------------------ PINGREQ, PINGRESP

#[test]
fn pingreq_both_versions() {
    for version in [V3_1_1, V5] {
        check_followed_by(
            version,
            PINGREQ,
            Packet::PingReq,
            PINGRESP,
            Packet::PingResp,
        );
    }
}

#[test]
fn pingresp_both_versions() {
    for version in [V3_1_1, V5] {
        check(version, PINGRESP, Packet::PingResp);
    }
}

// ------------------------------------------------------------- DISCONNECT

#[test]
fn disconnect_v3_1_1() {
    let wire = [
        0xE0, // DISCONNECT
        0x00, // remaining length 0
    ];
    check(V3_1_1, &wire, Packet::from(Disconnect::default()));
}

#[test]
fn disconnect_v5_empty_means_normal_disconnection() {
    let wire = [
        0xE0, // DISCONNECT
        0x00, // remaining length 0: reason Normal disconnection, no properties
    ];
    let expected = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    check(V5, &wire, Packet::from(expected));
}

#[test]
fn disconnect_v5_with_reason_code() {
    let wire = [
        0xE0, // DISCONNECT
        0x02, // remaining length 2
        0x04, // reason code: Disconnect with Will Message
        0x00, // property length 0: always written after a reason code
    ];
    let expected = Disconnect::new(ReasonCode::DisconnectWithWillMessage);
    check(V5, &wire, Packet::from(expected));
}

/// The form without a property length is valid (MQTT 5.0 §3.14.2.2.1) and
/// accepted; it is encoded with the property length.
#[test]
fn disconnect_v5_reason_code_without_property_length_is_accepted() {
    let mut wire = BytesMut::from(&[0xE0u8, 0x01, 0x8B][..]);
    let decoded = Packet::decode(&mut wire, V5, &DecodeLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        decoded,
        Packet::from(Disconnect::new(ReasonCode::ServerShuttingDown))
    );
    let mut out = BytesMut::new();
    decoded.encode(V5, &mut out).unwrap();
    assert_eq!(&out[..], &[0xE0, 0x02, 0x8B, 0x00]);
}

#[test]
fn disconnect_v5_with_every_property() {
    let wire = [
        0xE0, // DISCONNECT
        0x14, // remaining length 20
        0x9C, // reason code: Use another server
        0x12, // property length 18
        0x11, 0x00, 0x00, 0x00, 0x00, // Session Expiry Interval 0
        0x1F, 0x00, 0x03, b'b', b'y', b'e', // Reason String "bye"
        0x1C, 0x00, 0x04, b's', b'r', b'v', b'2', // Server Reference "srv2"
    ];
    let expected = Disconnect {
        reason_code: ReasonCode::UseAnotherServer,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some(s("bye")),
            server_reference: Some(s("srv2")),
            user_properties: Default::default(),
        },
    };
    check(V5, &wire, Packet::from(expected));
}

// ------------------------------------------------------------------- AUTH

#[test]
fn auth_v5_empty_means_success() {
    let wire = [
        0xF0, // AUTH
        0x00, // remaining length 0: reason Success, no properties
    ];
    check(V5, &wire, Packet::from(Auth::default()));
}

#[test]
fn auth_v5_reauthenticate_short_form() {
    let wire = [
        0xF0, // AUTH
        0x01, // remaining length 1
        0x19, // reason code: Re-authenticate
    ];
    let expected = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties::default(),
    };
    check(V5, &wire, Packet::from(expected));
}

#[test]
fn auth_v5_with_every_property() {
    let wire = [
        0xF0, // AUTH
        0x24, // remaining length 36
        0x18, // reason code: Continue authentication
        0x22, // property length 34
        0x15, 0x00, 0x0B, // Authentication Method, 11 bytes:
        b'S', b'C', b'R', b'A', b'M', b'-', b'S', b'H', b'A', b'-', b'1', // "SCRAM-SHA-1"
        0x16, 0x00, 0x03, 0x01, 0x02, 0x03, // Authentication Data [01 02 03]
        0x1F, 0x00, 0x04, b's', b't', b'e', b'p', // Reason String "step"
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property "a" = "b"
    ];
    let expected = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
            reason_string: Some(s("step")),
            user_properties: vec![user("a", "b")].into(),
        },
    };
    check(V5, &wire, Packet::from(expected));
}

// ------------------------------------------------ framing and zero copy

/// A v5 PUBLISH with a two-byte remaining length, so that even the fixed
/// header arrives in pieces.
fn long_publish() -> (Vec<u8>, Packet) {
    let payload = vec![0xA5; 200];
    let mut publish = Publish::new(s("x/y"), Bytes::from(payload.clone()));
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(pid(77));
    publish.properties.message_expiry_interval = Some(9);
    let mut wire = vec![
        0x32, // PUBLISH, QoS 1
        0xD5, 0x01, // remaining length 213 (two-byte variable byte integer)
        0x00, 0x03, b'x', b'/', b'y', // topic "x/y"
        0x00, 0x4D, // packet identifier 77
        0x05, // property length 5
        0x02, 0x00, 0x00, 0x00, 0x09, // Message Expiry Interval 9
    ];
    wire.extend_from_slice(&payload); // payload: 200 bytes of 0xA5
    (wire, Packet::Publish(publish))
}

#[test]
fn long_publish_literal_is_canonical() {
    let (wire, packet) = long_publish();
    check(V5, &wire, packet);
}

#[test]
fn incremental_decoding_consumes_nothing_until_the_packet_is_complete() {
    let limits = DecodeLimits::default();
    for (version, wire, expected) in [
        {
            let (wire, packet) = long_publish();
            (V5, wire, packet)
        },
        (
            V3_1_1,
            vec![
                0x82, // SUBSCRIBE
                0x06, // remaining length 6
                0x00, 0x01, // packet identifier 1
                0x00, 0x01, b'#', // topic filter "#"
                0x00, // options: QoS 0
            ],
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: s("#"),
                    options: SubscriptionOptions::default(),
                }],
            }),
        ),
    ] {
        let mut buf = BytesMut::new();
        for (i, &byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let decoded = Packet::decode(&mut buf, version, &limits).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(decoded, None, "prefix of {} bytes", i + 1);
                assert_eq!(&buf[..], &wire[..=i], "a prefix must not be consumed");
            } else {
                assert_eq!(decoded, Some(expected.clone()));
                assert!(buf.is_empty());
            }
        }
    }
}

#[test]
fn empty_buffer_decodes_to_none() {
    let mut buf = BytesMut::new();
    for version in [V3_1_1, V5] {
        assert_eq!(
            Packet::decode(&mut buf, version, &DecodeLimits::default()).unwrap(),
            None
        );
    }
}

#[test]
fn frame_len_is_known_from_the_fixed_header() {
    let (wire, _) = long_publish();
    let limits = DecodeLimits::default();
    assert_eq!(Packet::frame_len(&wire[..2], V5, &limits).unwrap(), None);
    assert_eq!(
        Packet::frame_len(&wire[..3], V5, &limits).unwrap(),
        Some(wire.len())
    );
}

#[test]
fn decoded_publish_shares_the_read_buffer() {
    let (wire, _) = long_publish();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&wire);
    buf.extend_from_slice(PINGREQ);
    let start = buf.as_ptr() as usize;
    let region = start..start + buf.len();

    let Some(Packet::Publish(publish)) =
        Packet::decode(&mut buf, V5, &DecodeLimits::default()).unwrap()
    else {
        panic!("expected a PUBLISH");
    };
    let payload_at = publish.payload.as_ptr() as usize;
    assert!(region.contains(&payload_at), "payload was copied");
    assert_eq!(payload_at, start + wire.len() - publish.payload.len());
    let topic_at = publish.topic.as_bytes().as_ptr() as usize;
    assert!(region.contains(&topic_at), "topic was copied");
    assert_eq!(topic_at, start + 5);
}

#[test]
fn decoded_connect_fields_share_the_read_buffer() {
    let wire = [
        0x10, // CONNECT
        0x1A, // remaining length 26
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04, // protocol level 4
        0xC6, // connect flags: user name, password, will, clean session
        0x00, 0x00, // keep alive 0
        0x00, 0x01, b'c', // client identifier "c"
        0x00, 0x01, b'w', // will topic "w"
        0x00, 0x02, b'w', b'p', // will payload "wp"
        0x00, 0x01, b'u', // user name "u"
        0x00, 0x01, b'p', // password "p"
    ];
    let mut buf = BytesMut::from(&wire[..]);
    let start = buf.as_ptr() as usize;
    let region = start..start + buf.len();
    let Some(Packet::Connect(connect)) =
        Packet::decode(&mut buf, V3_1_1, &DecodeLimits::default()).unwrap()
    else {
        panic!("expected a CONNECT");
    };
    let will = connect.will.as_ref().unwrap();
    for (what, ptr) in [
        ("client id", connect.client_id.as_bytes().as_ptr()),
        ("will payload", will.payload.as_ptr()),
        ("password", connect.password.as_ref().unwrap().as_ptr()),
    ] {
        assert!(region.contains(&(ptr as usize)), "{what} was copied");
    }
}

/// Packets are moved by value at each step of a message's path (decoded
/// into the caller's slot, handed to the session, queued as an event): the
/// big and rare ones are boxed, and a PUBLISH keeps only the properties a
/// broker reads for each message inline, so a move stays a few cache lines.
#[test]
#[cfg(target_pointer_width = "64")]
fn packet_and_publish_stay_small_to_move() {
    assert!(std::mem::size_of::<PublishProperties>() <= 48);
    assert!(std::mem::size_of::<Publish>() <= 120);
    assert!(std::mem::size_of::<Packet>() <= 144);
}
