//! Strict validation: one test per rule, named after the normative statement
//! (or, where the specification gives none, the section) it enforces.
//!
//! Each test checks the exact [`DecodeError`], the reason code a receiver
//! sends for it, and that the message cites the statement it enforces.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, Connect, DecodeError, DecodeLimits, EncodeError, MqttString, Packet, PacketId,
    PacketType, ProtocolVersion, Publish, QoS, ReasonCode, StringError, SubAck, Subscribe,
    SubscribeProperties, UnsubAck, Unsubscribe, UnsubscribeProperties, Will,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// Decodes `wire` with `limits` and returns the error it must produce.
fn decode_err_with(version: ProtocolVersion, wire: &[u8], limits: &DecodeLimits) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    match Packet::decode(&mut buf, version, limits) {
        Err(e) => e,
        Ok(p) => panic!("{wire:02X?} decoded to {p:?} under {version}; expected an error"),
    }
}

fn decode_err(version: ProtocolVersion, wire: &[u8]) -> DecodeError {
    decode_err_with(version, wire, &DecodeLimits::default())
}

/// Checks that `wire` is refused with exactly `expected`, that the error maps
/// to `code`, and that its message cites every one of `cites`.
fn rejected_with(
    version: ProtocolVersion,
    wire: &[u8],
    limits: &DecodeLimits,
    expected: DecodeError,
    code: ReasonCode,
    cites: &[&str],
) {
    let err = decode_err_with(version, wire, limits);
    assert_eq!(err, expected, "{wire:02X?} under {version}");
    assert_eq!(err.reason_code(), code, "reason code of {err}");
    let message = err.to_string();
    for cite in cites {
        assert!(message.contains(cite), "{message:?} does not cite {cite}");
    }
}

fn rejected(
    version: ProtocolVersion,
    wire: &[u8],
    expected: DecodeError,
    code: ReasonCode,
    cites: &[&str],
) {
    rejected_with(
        version,
        wire,
        &DecodeLimits::default(),
        expected,
        code,
        cites,
    );
}

/// Decodes `wire`, which must be one whole, valid packet.
fn decode_ok(version: ProtocolVersion, wire: &[u8], limits: &DecodeLimits) -> Packet {
    let mut buf = BytesMut::from(wire);
    let packet = Packet::decode(&mut buf, version, limits).unwrap().unwrap();
    assert!(buf.is_empty(), "the whole packet is consumed");
    packet
}

/// Checks that encoding `packet` fails with exactly `expected`, citing
/// `cites`, and leaves the buffer as it was.
fn encode_rejected(
    packet: &Packet,
    version: ProtocolVersion,
    expected: EncodeError,
    cites: &[&str],
) {
    let mut buf = BytesMut::from(&b"earlier bytes"[..]);
    let err = packet.encode(version, &mut buf).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(
        &buf[..],
        b"earlier bytes",
        "a failed encode must write nothing"
    );
    let message = err.to_string();
    for cite in cites {
        assert!(message.contains(cite), "{message:?} does not cite {cite}");
    }
}

fn s(v: &'static str) -> MqttString {
    MqttString::from_static(v)
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL_ERROR: ReasonCode = ReasonCode::ProtocolError;

// ------------------------------------------------ fixed header [MQTT-2.1.3-1]

/// A packet whose first byte is `first` (a fixed-flag type with wrong flags)
/// is refused from that byte alone, and with a complete empty body.
fn reserved_flags(version: ProtocolVersion, first: u8, packet: PacketType, expected: u8) {
    let err = DecodeError::InvalidFlags {
        packet,
        flags: first & 0x0F,
        expected,
    };
    rejected(
        version,
        &[first],
        err.clone(),
        MALFORMED,
        &["[MQTT-2.1.3-1]"],
    );
    rejected(version, &[first, 0x00], err, MALFORMED, &["[MQTT-2.1.3-1]"]);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_connect_rejected() {
    reserved_flags(V5, 0x12, PacketType::Connect, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_connack_rejected() {
    reserved_flags(V3_1_1, 0x21, PacketType::ConnAck, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_puback_rejected() {
    reserved_flags(V5, 0x42, PacketType::PubAck, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_pubrec_rejected() {
    reserved_flags(V3_1_1, 0x58, PacketType::PubRec, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_pubrel_rejected() {
    // PUBREL must carry 0b0010 [MQTT-3.6.1-1]: 0 is as wrong as any other value.
    reserved_flags(V5, 0x60, PacketType::PubRel, 0b0010);
    reserved_flags(V3_1_1, 0x63, PacketType::PubRel, 0b0010);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_pubcomp_rejected() {
    reserved_flags(V5, 0x72, PacketType::PubComp, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_subscribe_rejected() {
    // SUBSCRIBE must carry 0b0010 [MQTT-3.8.1-1].
    reserved_flags(V3_1_1, 0x80, PacketType::Subscribe, 0b0010);
    reserved_flags(V5, 0x8A, PacketType::Subscribe, 0b0010);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_suback_rejected() {
    reserved_flags(V5, 0x92, PacketType::SubAck, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_unsubscribe_rejected() {
    // UNSUBSCRIBE must carry 0b0010 [MQTT-3.10.1-1].
    reserved_flags(V3_1_1, 0xA0, PacketType::Unsubscribe, 0b0010);
    reserved_flags(V5, 0xA3, PacketType::Unsubscribe, 0b0010);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_unsuback_rejected() {
    reserved_flags(V3_1_1, 0xB2, PacketType::UnsubAck, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_pingreq_rejected() {
    reserved_flags(V5, 0xC1, PacketType::PingReq, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_pingresp_rejected() {
    reserved_flags(V3_1_1, 0xD4, PacketType::PingResp, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_disconnect_rejected() {
    reserved_flags(V5, 0xE2, PacketType::Disconnect, 0);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_in_auth_rejected() {
    reserved_flags(V5, 0xF1, PacketType::Auth, 0);
}

#[test]
fn mqtt_2_1_2_packet_type_0_rejected() {
    for version in [V3_1, V3_1_1, V5] {
        rejected(
            version,
            &[0x00, 0x00],
            DecodeError::ReservedPacketType { nibble: 0, version },
            MALFORMED,
            &["§2.1.2"],
        );
    }
}

#[test]
fn mqtt_2_1_2_auth_rejected_before_5_0() {
    for version in [V3_1, V3_1_1] {
        rejected(
            version,
            &[0xF0, 0x00], // AUTH, remaining length 0
            DecodeError::ReservedPacketType {
                nibble: 15,
                version,
            },
            MALFORMED,
            &["§2.1.2"],
        );
    }
}

// ------------------------------------------------------ QoS and DUP flags

#[test]
fn mqtt_3_3_1_4_publish_qos_3_rejected() {
    let wire = [
        0x36, // PUBLISH, QoS bits 11
        0x05, // remaining length 5
        0x00, 0x01, b'a', // topic "a"
        0x00, 0x01, // packet identifier 1
    ];
    for version in [V3_1_1, V5] {
        let err = DecodeError::InvalidQoS { what: "PUBLISH" };
        rejected(version, &wire, err, MALFORMED, &["[MQTT-3.3.1-4]"]);
    }
}

#[test]
fn mqtt_3_1_2_12_will_qos_3_rejected() {
    let wire = [
        0x10, // CONNECT
        0x12, // remaining length 18
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x1E, // flags: will QoS bits 11, will, clean session
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
        0x00, 0x01, b'w', // will topic "w"
        0x00, 0x00, // will payload ""
    ];
    let err = DecodeError::InvalidQoS { what: "will" };
    rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-3.1.2-12]"]);
}

#[test]
fn mqtt_3_8_3_1_subscription_qos_3_rejected() {
    let v3 = [
        0x82, // SUBSCRIBE
        0x06, // remaining length 6
        0x00, 0x01, // packet identifier 1
        0x00, 0x01, b'a', // topic filter "a"
        0x03, // options: QoS 3
    ];
    let err = DecodeError::InvalidQoS {
        what: "subscription",
    };
    // MQTT 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has
    // the value 3." (3.1.1 sends no reason codes, so the mapping is 5.0's.)
    rejected(V3_1_1, &v3, err.clone(), PROTOCOL_ERROR, &[]);
    let v5 = [
        0x82, // SUBSCRIBE
        0x07, // remaining length 7
        0x00, 0x01, // packet identifier 1
        0x00, // property length 0
        0x00, 0x01, b'a', // topic filter "a"
        0x03, // options: QoS 3
    ];
    rejected(V5, &v5, err, PROTOCOL_ERROR, &[]);
}

#[test]
fn mqtt_3_3_1_2_dup_on_qos_0_rejected() {
    let wire = [
        0x38, // PUBLISH, DUP, QoS 0
        0x03, // remaining length 3
        0x00, 0x01, b'a', // topic "a"
    ];
    for version in [V3_1_1, V5] {
        rejected(
            version,
            &wire,
            DecodeError::DupWithQoS0,
            MALFORMED,
            &["[MQTT-3.3.1-2]"],
        );
    }
}

// ----------------------------------------------- packet identifier 0

#[test]
fn mqtt_2_2_1_3_publish_packet_id_0_rejected() {
    let wire = [
        0x32, // PUBLISH, QoS 1
        0x05, // remaining length 5
        0x00, 0x01, b'a', // topic "a"
        0x00, 0x00, // packet identifier 0
    ];
    for version in [V3_1_1, V5] {
        let err = DecodeError::ZeroPacketId {
            packet: PacketType::Publish,
        };
        rejected(version, &wire, err, MALFORMED, &["[MQTT-2.2.1-3]"]);
    }
}

#[test]
fn mqtt_2_2_1_3_puback_pubrec_pubrel_pubcomp_packet_id_0_rejected() {
    for (first, packet) in [
        (0x40, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
    ] {
        let wire = [
            first, // PUBACK / PUBREC / PUBREL / PUBCOMP
            0x02,  // remaining length 2
            0x00, 0x00, // packet identifier 0
        ];
        for version in [V3_1_1, V5] {
            let err = DecodeError::ZeroPacketId { packet };
            rejected(version, &wire, err, MALFORMED, &["[MQTT-2.2.1-3]"]);
        }
    }
}

#[test]
fn mqtt_2_2_1_3_subscribe_packet_id_0_rejected() {
    let wire = [
        0x82, // SUBSCRIBE
        0x06, // remaining length 6
        0x00, 0x00, // packet identifier 0
        0x00, 0x01, b'a', // topic filter "a"
        0x00, // options: QoS 0
    ];
    let err = DecodeError::ZeroPacketId {
        packet: PacketType::Subscribe,
    };
    rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-2.2.1-3]"]);
}

#[test]
fn mqtt_2_2_1_3_unsubscribe_packet_id_0_rejected() {
    let wire = [
        0xA2, // UNSUBSCRIBE
        0x06, // remaining length 6
        0x00, 0x00, // packet identifier 0
        0x00, // property length 0
        0x00, 0x01, b'a', // topic filter "a"
    ];
    let err = DecodeError::ZeroPacketId {
        packet: PacketType::Unsubscribe,
    };
    rejected(V5, &wire, err, MALFORMED, &["[MQTT-2.2.1-3]"]);
}

// ------------------------------------------ variable byte integers (§1.5.5)

#[test]
fn mqtt_1_5_5_remaining_length_of_five_bytes_rejected() {
    // Four continuation bytes: a fifth length byte would be needed. The error
    // comes as soon as the fourth arrives, not when the fifth does.
    let wire = [
        0x30, // PUBLISH
        0xFF, 0xFF, 0xFF, 0xFF, // remaining length: four bytes, all with continuation bit
    ];
    rejected(
        V5,
        &wire,
        DecodeError::VarintTooLong,
        MALFORMED,
        &["§1.5.5"],
    );
    rejected(
        V3_1_1,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        DecodeError::VarintTooLong,
        MALFORMED,
        &[],
    );
    // Three continuation bytes may still be followed by a valid fourth.
    let mut partial = BytesMut::from(&wire[..4]);
    assert_eq!(
        Packet::decode(&mut partial, V5, &DecodeLimits::default()),
        Ok(None)
    );
}

#[test]
fn mqtt_1_5_5_1_non_minimal_remaining_length_rejected() {
    let wire = [
        0xC0, // PINGREQ
        0x80, 0x00, // remaining length 0 in two bytes
    ];
    for version in [V3_1_1, V5] {
        rejected(
            version,
            &wire,
            DecodeError::NonMinimalVarint,
            MALFORMED,
            &["[MQTT-1.5.5-1]"],
        );
    }
    let wire = [
        0x30, // PUBLISH
        0x83, 0x80, 0x00, // remaining length 3 in three bytes
        0x00, 0x01, b'a', // topic "a"
    ];
    rejected(
        V3_1_1,
        &wire,
        DecodeError::NonMinimalVarint,
        MALFORMED,
        &["[MQTT-1.5.5-1]"],
    );
}

#[test]
fn mqtt_1_5_5_1_non_minimal_property_length_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x05, // remaining length 5
        0x00, 0x01, b'a', // topic "a"
        0x80, 0x00, // property length 0 in two bytes
    ];
    rejected(
        V5,
        &wire,
        DecodeError::NonMinimalVarint,
        MALFORMED,
        &["[MQTT-1.5.5-1]"],
    );
}

// ------------------------------------------------------ strings (§1.5.4)

#[test]
fn mqtt_1_5_4_1_invalid_utf8_in_topic_rejected() {
    let err = DecodeError::InvalidString {
        what: "topic name",
        error: StringError::InvalidUtf8,
    };
    let wire = [
        0x30, // PUBLISH
        0x04, // remaining length 4
        0x00, 0x02, 0xC3, 0x28, // topic: a two-byte sequence cut short
    ];
    rejected(V3_1_1, &wire, err.clone(), MALFORMED, &["[MQTT-1.5.4-1]"]);
    let wire = [
        0x30, // PUBLISH
        0x05, // remaining length 5
        0x00, 0x03, 0xED, 0xA0, 0x80, // topic: the surrogate U+D800
    ];
    rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-1.5.4-1]"]);
}

#[test]
fn mqtt_1_5_4_2_null_character_in_topic_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x06, // remaining length 6
        0x00, 0x03, b'a', 0x00, b'b', // topic "a\0b"
        0x00, // property length 0
    ];
    let err = DecodeError::InvalidString {
        what: "topic name",
        error: StringError::NullCharacter,
    };
    rejected(V5, &wire, err, MALFORMED, &["[MQTT-1.5.4-2]"]);
}

#[test]
fn mqtt_1_5_4_2_null_character_in_client_id_rejected() {
    let wire = [
        0x10, // CONNECT
        0x0E, // remaining length 14
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x02, // flags: clean session
        0x00, 0x00, // keep alive
        0x00, 0x02, b'a', 0x00, // client identifier "a\0"
    ];
    let err = DecodeError::InvalidString {
        what: "client identifier",
        error: StringError::NullCharacter,
    };
    rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-1.5.4-2]"]);
}

// -------------------------------------------------- properties (§2.2.2.2)

#[test]
fn mqtt_2_2_2_2_duplicate_message_expiry_interval_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x0E, // remaining length 14
        0x00, 0x01, b'a', // topic "a"
        0x0A, // property length 10
        0x02, 0x00, 0x00, 0x00, 0x01, // Message Expiry Interval 1
        0x02, 0x00, 0x00, 0x00, 0x02, // Message Expiry Interval 2: again
    ];
    let err = DecodeError::DuplicateProperty {
        name: "Message Expiry Interval",
    };
    rejected(V5, &wire, err, PROTOCOL_ERROR, &["§2.2.2.2"]);
}

#[test]
fn mqtt_2_2_2_2_session_expiry_in_publish_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x09, // remaining length 9
        0x00, 0x01, b'a', // topic "a"
        0x05, // property length 5
        0x11, 0x00, 0x00, 0x00, 0x01, // Session Expiry Interval: not a PUBLISH property
    ];
    let err = DecodeError::PropertyNotAllowed {
        packet: "PUBLISH",
        id: 0x11,
        name: "Session Expiry Interval",
    };
    rejected(V5, &wire, err, MALFORMED, &["§2.2.2.2"]);
}

#[test]
fn mqtt_2_2_2_2_session_expiry_in_will_properties_rejected() {
    let wire = [
        0x10, // CONNECT
        0x19, // remaining length 25
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x05, // level 5
        0x06, // flags: will, clean start
        0x00, 0x00, // keep alive
        0x00, // property length 0
        0x00, 0x01, b'c', // client identifier "c"
        0x05, // will property length 5
        0x11, 0x00, 0x00, 0x00, 0x01, // Session Expiry Interval: not a will property
        0x00, 0x01, b'w', // will topic "w"
        0x00, 0x00, // will payload ""
    ];
    let err = DecodeError::PropertyNotAllowed {
        packet: "Will Properties",
        id: 0x11,
        name: "Session Expiry Interval",
    };
    rejected(V5, &wire, err, MALFORMED, &["§2.2.2.2"]);
}

#[test]
fn mqtt_2_2_2_2_unknown_property_identifier_rejected() {
    let wire = [
        0xE0, // DISCONNECT
        0x03, // remaining length 3
        0x00, // reason code: Normal disconnection
        0x01, // property length 1
        0x7F, // property identifier 0x7F: not defined
    ];
    let err = DecodeError::PropertyNotAllowed {
        packet: "DISCONNECT",
        id: 0x7F,
        name: "unknown",
    };
    rejected(V5, &wire, err, MALFORMED, &["§2.2.2.2"]);
}

/// The property a value error names, for errors whose wording is not pinned.
fn invalid_property_name(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::InvalidPropertyValue { name, .. } => name,
        other => panic!("expected InvalidPropertyValue, got {other:?}"),
    }
}

#[test]
fn mqtt_3_3_2_8_topic_alias_0_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x07, // remaining length 7
        0x00, 0x01, b'a', // topic "a"
        0x03, // property length 3
        0x23, 0x00, 0x00, // Topic Alias 0
    ];
    let err = decode_err(V5, &wire);
    assert_eq!(invalid_property_name(&err), "Topic Alias");
    assert_eq!(err.reason_code(), PROTOCOL_ERROR);
    assert!(err.to_string().contains("[MQTT-3.3.2-8]"), "{err}");
}

#[test]
fn mqtt_3_1_2_11_3_receive_maximum_0_rejected() {
    let connect = [
        0x10, // CONNECT
        0x11, // remaining length 17
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x05, // level 5
        0x02, // flags: clean start
        0x00, 0x00, // keep alive
        0x03, // property length 3
        0x21, 0x00, 0x00, // Receive Maximum 0
        0x00, 0x01, b'c', // client identifier "c"
    ];
    let connack = [
        0x20, // CONNACK
        0x06, // remaining length 6
        0x00, // acknowledge flags
        0x00, // reason code: Success
        0x03, // property length 3
        0x21, 0x00, 0x00, // Receive Maximum 0
    ];
    for wire in [&connect[..], &connack[..]] {
        let err = decode_err(V5, wire);
        assert_eq!(invalid_property_name(&err), "Receive Maximum");
        assert_eq!(err.reason_code(), PROTOCOL_ERROR);
        assert!(err.to_string().contains("§3.1.2.11.3"), "{err}");
    }
}

#[test]
fn mqtt_3_2_2_3_4_maximum_qos_2_rejected() {
    let wire = [
        0x20, // CONNACK
        0x05, // remaining length 5
        0x00, // acknowledge flags
        0x00, // reason code: Success
        0x02, // property length 2
        0x24, 0x02, // Maximum QoS 2: only 0 or 1 may be sent
    ];
    let err = decode_err(V5, &wire);
    assert_eq!(invalid_property_name(&err), "Maximum QoS");
    assert_eq!(err.reason_code(), PROTOCOL_ERROR);
    assert!(err.to_string().contains("§3.2.2.3.4"), "{err}");
}

// ------------------------------------------------------ configured limits

#[test]
fn limit_max_user_properties_exceeded_rejected() {
    let limits = DecodeLimits {
        max_user_properties: 1,
        ..DecodeLimits::default()
    };
    let one = [
        0x30, // PUBLISH
        0x0B, // remaining length 11
        0x00, 0x01, b'a', // topic "a"
        0x07, // property length 7
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property "k" = "v"
    ];
    decode_ok(V5, &one, &limits);
    let two = [
        0x30, // PUBLISH
        0x12, // remaining length 18
        0x00, 0x01, b'a', // topic "a"
        0x0E, // property length 14
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property "k" = "v"
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', // User Property "k" = "w": one too many
    ];
    rejected_with(
        V5,
        &two,
        &limits,
        DecodeError::TooManyUserProperties { max: 1 },
        ReasonCode::ImplementationSpecificError,
        &["configured limit"],
    );
}

#[test]
fn limit_max_topic_filters_exceeded_rejected() {
    let limits = DecodeLimits {
        max_topic_filters: 1,
        ..DecodeLimits::default()
    };
    let subscribe_one = [
        0x82, // SUBSCRIBE
        0x06, // remaining length 6
        0x00, 0x01, // packet identifier 1
        0x00, 0x01, b'a', 0x00, // topic filter "a", QoS 0
    ];
    decode_ok(V3_1_1, &subscribe_one, &limits);
    let subscribe_two = [
        0x82, // SUBSCRIBE
        0x0A, // remaining length 10
        0x00, 0x01, // packet identifier 1
        0x00, 0x01, b'a', 0x00, // topic filter "a", QoS 0
        0x00, 0x01, b'b', 0x00, // topic filter "b", QoS 0: one too many
    ];
    rejected_with(
        V3_1_1,
        &subscribe_two,
        &limits,
        DecodeError::TooManyTopicFilters {
            packet: PacketType::Subscribe,
            max: 1,
        },
        ReasonCode::ImplementationSpecificError,
        &["configured limit"],
    );
    let unsubscribe_two = [
        0xA2, // UNSUBSCRIBE
        0x08, // remaining length 8
        0x00, 0x01, // packet identifier 1
        0x00, 0x01, b'a', // topic filter "a"
        0x00, 0x01, b'b', // topic filter "b": one too many
    ];
    rejected_with(
        V3_1_1,
        &unsubscribe_two,
        &limits,
        DecodeError::TooManyTopicFilters {
            packet: PacketType::Unsubscribe,
            max: 1,
        },
        ReasonCode::ImplementationSpecificError,
        &["configured limit"],
    );
}

#[test]
fn mqtt_3_1_2_24_packet_larger_than_maximum_refused_from_fixed_header() {
    let limits = DecodeLimits {
        max_packet_size: 100,
        ..DecodeLimits::default()
    };
    // Only the fixed header has arrived: the body is refused before it is buffered.
    let header = [
        0x30, // PUBLISH
        0xC8, 0x01, // remaining length 200: 203 bytes in all
    ];
    let mut partial = BytesMut::from(&header[..2]);
    assert_eq!(Packet::decode(&mut partial, V5, &limits), Ok(None));
    let err = DecodeError::PacketTooLarge {
        size: 203,
        max: 100,
    };
    rejected_with(
        V5,
        &header,
        &limits,
        err.clone(),
        ReasonCode::PacketTooLarge,
        &["[MQTT-3.1.2-24]"],
    );
    assert_eq!(Packet::frame_len(&header, V5, &limits), Err(err));

    // The largest remaining length, in a five-byte fixed header.
    let header = [
        0x30, // PUBLISH
        0xFF, 0xFF, 0xFF, 0x7F, // remaining length 268,435,455
    ];
    let err = DecodeError::PacketTooLarge {
        size: 268_435_460,
        max: DecodeLimits::DEFAULT_MAX_PACKET_SIZE,
    };
    rejected(
        V3_1_1,
        &header,
        err,
        ReasonCode::PacketTooLarge,
        &["[MQTT-3.1.2-24]"],
    );
}

#[test]
fn mqtt_3_1_2_24_packet_of_exactly_the_maximum_size_accepted() {
    let wire = [
        0x30, // PUBLISH
        0x05, // remaining length 5: 7 bytes in all
        0x00, 0x01, b'a', // topic "a"
        b'h', b'i', // payload "hi"
    ];
    let exact = DecodeLimits {
        max_packet_size: 7,
        ..DecodeLimits::default()
    };
    decode_ok(V3_1_1, &wire, &exact);
    let smaller = DecodeLimits {
        max_packet_size: 6,
        ..DecodeLimits::default()
    };
    let err = DecodeError::PacketTooLarge { size: 7, max: 6 };
    rejected_with(
        V3_1_1,
        &wire,
        &smaller,
        err,
        ReasonCode::PacketTooLarge,
        &[],
    );
}

// ------------------------------------------------- lengths and boundaries

#[test]
fn mqtt_3_12_pingreq_with_a_body_rejected() {
    let wire = [
        0xC0, // PINGREQ
        0x01, // remaining length 1
        0x00, // a byte PINGREQ does not have
    ];
    let err = DecodeError::TrailingBytes {
        what: "PINGREQ fixed header",
        count: 1,
    };
    rejected(V3_1_1, &wire, err, MALFORMED, &[]);
}

#[test]
fn mqtt_3_4_puback_v3_with_three_bytes_rejected() {
    let wire = [
        0x40, // PUBACK
        0x03, // remaining length 3
        0x00, 0x01, // packet identifier 1
        0x00, // a reason code, which 3.1.1 does not have
    ];
    let err = DecodeError::TrailingBytes {
        what: "PUBACK",
        count: 1,
    };
    rejected(
        V3_1_1,
        &wire,
        err,
        MALFORMED,
        &["unexpected bytes after the PUBACK"],
    );
}

#[test]
fn mqtt_3_4_puback_v5_byte_after_properties_rejected() {
    let wire = [
        0x40, // PUBACK
        0x05, // remaining length 5
        0x00, 0x01, // packet identifier 1
        0x10, // reason code: No matching subscribers
        0x00, // property length 0
        0xFF, // a byte after the last field
    ];
    let err = DecodeError::TrailingBytes {
        what: "PUBACK",
        count: 1,
    };
    rejected(V5, &wire, err, MALFORMED, &[]);
}

#[test]
fn mqtt_3_1_4_1_connect_with_trailing_byte_rejected() {
    let wire = [
        0x10, // CONNECT
        0x0E, // remaining length 14
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x02, // flags: clean session
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
        0x00, // a byte no flag announced
    ];
    let err = DecodeError::TrailingBytes {
        what: "CONNECT payload",
        count: 1,
    };
    rejected(V3_1_1, &wire, err, MALFORMED, &[]);
}

#[test]
fn mqtt_3_v3_fixed_size_packets_with_trailing_bytes_rejected() {
    for (wire, what) in [
        (&[0x20, 0x03, 0x00, 0x00, 0x00][..], "CONNACK"), // CONNACK with 3 bytes
        (&[0xB0, 0x03, 0x00, 0x01, 0x00][..], "UNSUBACK"), // UNSUBACK with 3 bytes
        (&[0xE0, 0x01, 0x00][..], "DISCONNECT"),          // DISCONNECT with 1 byte
    ] {
        let err = DecodeError::TrailingBytes { what, count: 1 };
        rejected(V3_1_1, wire, err, MALFORMED, &[]);
    }
}

#[test]
fn mqtt_1_5_4_string_longer_than_the_packet_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x03, // remaining length 3
        0x00, 0x05, b'a', // topic: length 5, but one byte left
    ];
    let err = DecodeError::Truncated { what: "topic name" };
    rejected(
        V3_1_1,
        &wire,
        err,
        MALFORMED,
        &["topic name runs past the end"],
    );

    let wire = [
        0x10, // CONNECT
        0x0D, // remaining length 13: ends before the user name and password
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0xC2, // flags: user name, password, clean session
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
    ];
    let err = DecodeError::Truncated { what: "user name" };
    rejected(V3_1_1, &wire, err, MALFORMED, &[]);
}

#[test]
fn mqtt_2_2_2_1_property_length_longer_than_the_packet_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x04, // remaining length 4
        0x00, 0x01, b'a', // topic "a"
        0x05, // property length 5, but nothing left
    ];
    let err = DecodeError::Truncated {
        what: "PUBLISH properties",
    };
    rejected(V5, &wire, err, MALFORMED, &[]);
}

#[test]
fn mqtt_2_2_2_1_property_value_cannot_run_past_the_property_length() {
    // The Message Expiry Interval needs four bytes; the property length gives
    // it one. The payload that follows must not be read as the rest of it.
    let wire = [
        0x30, // PUBLISH
        0x08, // remaining length 8
        0x00, 0x01, b'a', // topic "a"
        0x02, // property length 2
        0x02, 0x00, // Message Expiry Interval, cut after one byte
        b'x', b'y', // payload "xy"
    ];
    let err = DecodeError::Truncated {
        what: "Message Expiry Interval",
    };
    rejected(V5, &wire, err, MALFORMED, &[]);
}

// ------------------------------------------------------------- topic names

#[test]
fn mqtt_3_3_2_2_wildcard_in_publish_topic_rejected() {
    let err = DecodeError::WildcardInTopicName { what: "topic name" };
    let plus = [
        0x30, // PUBLISH
        0x05, // remaining length 5
        0x00, 0x03, b'a', b'/', b'+', // topic "a/+"
    ];
    let hash = [
        0x30, // PUBLISH
        0x03, // remaining length 3
        0x00, 0x01, b'#', // topic "#"
    ];
    for wire in [&plus[..], &hash[..]] {
        rejected(
            V3_1_1,
            wire,
            err.clone(),
            ReasonCode::TopicNameInvalid,
            &["[MQTT-3.3.2-2]"],
        );
    }
}

#[test]
fn mqtt_3_3_2_2_wildcard_in_will_topic_rejected() {
    let wire = [
        0x10, // CONNECT
        0x14, // remaining length 20
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x06, // flags: will, clean session
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
        0x00, 0x03, b'w', b'/', b'#', // will topic "w/#"
        0x00, 0x00, // will payload ""
    ];
    let err = DecodeError::WildcardInTopicName { what: "will topic" };
    rejected(
        V3_1_1,
        &wire,
        err,
        ReasonCode::TopicNameInvalid,
        &["[MQTT-3.3.2-2]"],
    );
}

#[test]
fn mqtt_3_3_2_14_wildcard_in_response_topic_rejected() {
    let wire = [
        0x30, // PUBLISH, QoS 0
        0x0A, // remaining length 10
        0x00, 0x01, b't', // topic "t"
        0x06, // property length 6
        0x08, 0x00, 0x03, b'r', b'/', b'+', // Response Topic "r/+"
    ];
    let err = DecodeError::WildcardInTopicName {
        what: "Response Topic",
    };
    rejected(
        V5,
        &wire,
        err,
        ReasonCode::TopicNameInvalid,
        &["Response Topic"],
    );
}

#[test]
fn mqtt_3_3_2_14_empty_will_response_topic_rejected() {
    let wire = [
        0x10, // CONNECT
        0x16, // remaining length 22
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x05, // level 5
        0x06, // flags: will, clean start
        0x00, 0x00, // keep alive
        0x00, // properties: none
        0x00, 0x01, b'c', // client identifier "c"
        0x03, // will property length 3
        0x08, 0x00, 0x00, // Response Topic ""
        0x00, 0x01, b'w', // will topic "w"
        0x00, 0x00, // will payload ""
    ];
    let err = DecodeError::EmptyTopicName {
        what: "Response Topic",
    };
    rejected(
        V5,
        &wire,
        err,
        ReasonCode::TopicNameInvalid,
        &["[MQTT-4.7.3-1]"],
    );
}

#[test]
fn mqtt_4_7_3_1_empty_topic_in_v3_publish_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x02, // remaining length 2
        0x00, 0x00, // topic ""
    ];
    let err = DecodeError::EmptyTopicName { what: "topic name" };
    rejected(
        V3_1_1,
        &wire,
        err,
        ReasonCode::TopicNameInvalid,
        &["[MQTT-4.7.3-1]"],
    );
}

#[test]
fn mqtt_4_7_3_1_empty_will_topic_rejected() {
    let wire = [
        0x10, // CONNECT
        0x11, // remaining length 17
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0x06, // flags: will, clean session
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
        0x00, 0x00, // will topic ""
        0x00, 0x00, // will payload ""
    ];
    let err = DecodeError::EmptyTopicName { what: "will topic" };
    rejected(
        V3_1_1,
        &wire,
        err,
        ReasonCode::TopicNameInvalid,
        &["[MQTT-4.7.3-1]"],
    );
}

#[test]
fn mqtt_3_3_2_3_4_empty_topic_without_alias_rejected() {
    let wire = [
        0x30, // PUBLISH
        0x03, // remaining length 3
        0x00, 0x00, // topic ""
        0x00, // property length 0: no Topic Alias
    ];
    rejected(
        V5,
        &wire,
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL_ERROR,
        &["§3.3.2.3.4"],
    );
}

#[test]
fn mqtt_3_3_2_3_4_empty_topic_with_alias_accepted() {
    let wire = [
        0x30, // PUBLISH
        0x06, // remaining length 6
        0x00, 0x00, // topic ""
        0x03, // property length 3
        0x23, 0x00, 0x01, // Topic Alias 1
    ];
    let Packet::Publish(publish) = decode_ok(V5, &wire, &DecodeLimits::default()) else {
        panic!("expected a PUBLISH");
    };
    assert!(publish.topic.is_empty());
    assert_eq!(publish.properties.topic_alias.map(|a| a.get()), Some(1));
    assert!(publish.payload.is_empty());
}

// ---------------------------------------------------------------- CONNECT

/// A CONNECT with this protocol name and level, flags 0x02, keep alive 0 and
/// client identifier "c" (and an empty property block at level 5).
fn connect_with(name: &[u8], level: u8) -> Vec<u8> {
    let mut body = vec![0x00, name.len() as u8]; // protocol name length
    body.extend_from_slice(name); // protocol name
    body.push(level); // protocol level
    body.push(0x02); // flags: clean start
    body.extend_from_slice(&[0x00, 0x00]); // keep alive 0
    if level == 5 {
        body.push(0x00); // property length 0
    }
    body.extend_from_slice(&[0x00, 0x01, b'c']); // client identifier "c"
    let mut wire = vec![0x10, body.len() as u8]; // CONNECT, remaining length
    wire.extend_from_slice(&body);
    wire
}

#[test]
fn connect_with_accepts_every_supported_name_and_level() {
    for (name, level, version) in [
        (&b"MQIsdp"[..], 3, V3_1),
        (&b"MQTT"[..], 4, V3_1_1),
        (&b"MQTT"[..], 5, V5),
    ] {
        let Packet::Connect(c) =
            decode_ok(V3_1_1, &connect_with(name, level), &DecodeLimits::default())
        else {
            panic!("expected a CONNECT");
        };
        assert_eq!(c.protocol, version);
    }
}

#[test]
fn mqtt_3_1_2_1_protocol_name_mqtx_rejected() {
    let err = DecodeError::InvalidProtocolName {
        name: "MQTX".to_owned(),
    };
    rejected(
        V3_1_1,
        &connect_with(b"MQTX", 4),
        err,
        ReasonCode::UnsupportedProtocolVersion,
        &["[MQTT-3.1.2-1]"],
    );
}

#[test]
fn mqtt_3_1_2_2_protocol_level_6_rejected() {
    let err = DecodeError::UnsupportedProtocolVersion { level: 6 };
    rejected(
        V5,
        &connect_with(b"MQTT", 6),
        err,
        ReasonCode::UnsupportedProtocolVersion,
        &["[MQTT-3.1.2-2]"],
    );
}

#[test]
fn mqtt_3_1_2_1_protocol_name_does_not_match_level_rejected() {
    for (name, level) in [("MQTT", 3), ("MQIsdp", 4), ("MQIsdp", 5)] {
        let err = DecodeError::ProtocolNameMismatch {
            name: name.to_owned(),
            level,
        };
        rejected(
            V3_1_1,
            &connect_with(name.as_bytes(), level),
            err,
            ReasonCode::UnsupportedProtocolVersion,
            &["[MQTT-3.1.2-1]"],
        );
    }
}

/// A level 4 CONNECT with these flags, client identifier "c" and `payload`
/// (the fields the flags announce) after it.
fn connect_v3_flags(flags: u8, payload: &[u8]) -> Vec<u8> {
    let remaining = u8::try_from(13 + payload.len()).unwrap();
    let mut wire = vec![
        0x10,      // CONNECT
        remaining, // remaining length
        0x00, 0x04, b'M', b'Q', b'T', b'T',  // protocol name
        0x04,  // level 4
        flags, // connect flags
        0x00, 0x00, // keep alive
        0x00, 0x01, b'c', // client identifier "c"
    ];
    wire.extend_from_slice(payload);
    wire
}

#[test]
fn mqtt_3_1_2_3_connect_reserved_flag_rejected() {
    let wire = connect_v3_flags(0x03, &[]); // flags: clean session and reserved bit 0
    rejected(
        V3_1_1,
        &wire,
        DecodeError::ConnectReservedFlag,
        MALFORMED,
        &["[MQTT-3.1.2-3]"],
    );
}

#[test]
fn mqtt_3_1_2_11_will_qos_without_will_flag_rejected() {
    let wire = connect_v3_flags(0x0A, &[]); // flags: will QoS 1, clean session; no will flag
    rejected(
        V3_1_1,
        &wire,
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
        &["[MQTT-3.1.2-11]"],
    );
}

#[test]
fn mqtt_3_1_2_13_will_retain_without_will_flag_rejected() {
    let wire = connect_v3_flags(0x22, &[]); // flags: will retain, clean session; no will flag
    rejected(
        V3_1_1,
        &wire,
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
        &["[MQTT-3.1.2-13]"],
    );
}

#[test]
fn mqtt_3_1_2_22_password_without_username_rejected_in_3_1_1() {
    let wire = connect_v3_flags(
        0x42,                // flags: password, clean session; no user name
        &[0x00, 0x01, b'p'], // password "p"
    );
    rejected(
        V3_1_1,
        &wire,
        DecodeError::PasswordWithoutUsername,
        MALFORMED,
        &["[MQTT-3.1.2-22]"],
    );
}

#[test]
fn password_without_username_accepted_in_5_0() {
    // MQTT 5.0 §3.1.2.9 lifts the 3.1.1 rule: a password may come alone.
    let wire = [
        0x10, // CONNECT
        0x11, // remaining length 17
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x05, // level 5
        0x42, // flags: password, clean start; no user name
        0x00, 0x00, // keep alive
        0x00, // property length 0
        0x00, 0x01, b'c', // client identifier "c"
        0x00, 0x01, b'p', // password "p"
    ];
    let packet = decode_ok(V5, &wire, &DecodeLimits::default());
    let Packet::Connect(c) = &packet else {
        panic!("expected a CONNECT");
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    let mut out = BytesMut::new();
    packet.encode(V5, &mut out).unwrap();
    assert_eq!(&out[..], &wire[..]);
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn mqtt_3_2_2_1_connack_reserved_flags_rejected() {
    let v3 = [
        0x20, // CONNACK
        0x02, // remaining length 2
        0x02, // acknowledge flags: reserved bit 1
        0x00, // return code 0
    ];
    let err = DecodeError::ConnAckReservedFlags { flags: 0x02 };
    rejected(V3_1_1, &v3, err, MALFORMED, &["[MQTT-3.2.2-1]"]);
    let v5 = [
        0x20, // CONNACK
        0x03, // remaining length 3
        0x80, // acknowledge flags: reserved bit 7
        0x00, // reason code: Success
        0x00, // property length 0
    ];
    let err = DecodeError::ConnAckReservedFlags { flags: 0x80 };
    rejected(V5, &v5, err, MALFORMED, &["[MQTT-3.2.2-1]"]);
}

#[test]
fn mqtt_3_2_2_6_session_present_with_failure_code_rejected() {
    let v3 = [
        0x20, // CONNACK
        0x02, // remaining length 2
        0x01, // acknowledge flags: session present
        0x05, // return code 5: not authorized
    ];
    let err = DecodeError::SessionPresentOnFailure { code: 0x05 };
    rejected(V3_1_1, &v3, err, PROTOCOL_ERROR, &["[MQTT-3.2.2-6]"]);
    let v5 = [
        0x20, // CONNACK
        0x03, // remaining length 3
        0x01, // acknowledge flags: session present
        0x87, // reason code: Not authorized
        0x00, // property length 0
    ];
    let err = DecodeError::SessionPresentOnFailure { code: 0x87 };
    rejected(V5, &v5, err, PROTOCOL_ERROR, &["[MQTT-3.2.2-6]"]);
}

#[test]
fn mqtt_3_2_2_3_v3_connack_return_code_6_rejected() {
    let wire = [
        0x20, // CONNACK
        0x02, // remaining length 2
        0x00, // acknowledge flags
        0x06, // return code 6: reserved
    ];
    let err = DecodeError::InvalidConnectReturnCode { code: 6 };
    rejected(V3_1_1, &wire, err, MALFORMED, &["§3.2.2.3"]);
}

// ------------------------------------------------------------ reason codes

/// `wire` carries `code`, which `packet` may not carry.
fn invalid_reason(wire: &[u8], packet: PacketType, code: u8) {
    let err = DecodeError::InvalidReasonCode { packet, code };
    rejected(V5, wire, err, MALFORMED, &["§2.4"]);
}

#[test]
fn mqtt_3_4_2_1_puback_reason_code_0x8b_rejected() {
    // 0x8B (Server shutting down) belongs to DISCONNECT only.
    invalid_reason(&[0x40, 0x03, 0x00, 0x01, 0x8B], PacketType::PubAck, 0x8B);
}

#[test]
fn mqtt_3_4_2_1_puback_reason_code_0x92_rejected() {
    // 0x92 (Packet Identifier not found) belongs to PUBREL and PUBCOMP.
    invalid_reason(&[0x40, 0x03, 0x00, 0x01, 0x92], PacketType::PubAck, 0x92);
}

#[test]
fn mqtt_3_5_2_1_pubrec_reason_code_0x92_rejected() {
    invalid_reason(&[0x50, 0x03, 0x00, 0x01, 0x92], PacketType::PubRec, 0x92);
}

#[test]
fn mqtt_3_6_2_1_pubrel_reason_code_0x10_rejected() {
    // 0x10 (No matching subscribers) belongs to PUBACK and PUBREC.
    invalid_reason(&[0x62, 0x03, 0x00, 0x01, 0x10], PacketType::PubRel, 0x10);
}

#[test]
fn mqtt_3_7_2_1_1_pubcomp_reason_code_0x10_rejected() {
    invalid_reason(&[0x70, 0x03, 0x00, 0x01, 0x10], PacketType::PubComp, 0x10);
}

#[test]
fn mqtt_3_2_2_8_connack_reason_code_0x04_rejected() {
    // 0x04 (Disconnect with Will Message) belongs to DISCONNECT only.
    invalid_reason(&[0x20, 0x03, 0x00, 0x04, 0x00], PacketType::ConnAck, 0x04);
}

#[test]
fn mqtt_3_9_3_suback_reason_code_0x11_rejected() {
    // 0x11 (No subscription existed) belongs to UNSUBACK.
    invalid_reason(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
        PacketType::SubAck,
        0x11,
    );
}

#[test]
fn mqtt_3_11_3_unsuback_reason_code_0x01_rejected() {
    // 0x01 (Granted QoS 1) belongs to SUBACK.
    invalid_reason(
        &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x01],
        PacketType::UnsubAck,
        0x01,
    );
}

#[test]
fn mqtt_3_14_2_1_disconnect_reason_code_0x8c_rejected() {
    // 0x8C (Bad authentication method) belongs to CONNACK; 0x03 is no code at all.
    invalid_reason(&[0xE0, 0x01, 0x8C], PacketType::Disconnect, 0x8C);
    invalid_reason(&[0xE0, 0x01, 0x03], PacketType::Disconnect, 0x03);
}

#[test]
fn mqtt_3_15_2_1_auth_reason_code_0x87_rejected() {
    invalid_reason(&[0xF0, 0x01, 0x87], PacketType::Auth, 0x87);
}

#[test]
fn mqtt_3_9_3_2_v3_suback_return_code_3_rejected() {
    for code in [0x03, 0x81] {
        let wire = [
            0x90, // SUBACK
            0x03, // remaining length 3
            0x00, 0x01, // packet identifier 1
            code, // return code: neither a QoS nor 0x80
        ];
        let err = DecodeError::InvalidSubAckReturnCode { code };
        rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-3.9.3-2]"]);
    }
}

// ---------------------------------------------------- SUBSCRIBE and acks

#[test]
fn mqtt_3_8_3_2_subscribe_without_filters_rejected() {
    let err = DecodeError::NoTopicFilters {
        packet: PacketType::Subscribe,
    };
    let v3 = [0x82, 0x02, 0x00, 0x01]; // SUBSCRIBE, length 2, packet identifier 1
    rejected(
        V3_1_1,
        &v3,
        err.clone(),
        PROTOCOL_ERROR,
        &["[MQTT-3.8.3-2]"],
    );
    let v5 = [0x82, 0x03, 0x00, 0x01, 0x00]; // ... and property length 0
    rejected(V5, &v5, err, PROTOCOL_ERROR, &["[MQTT-3.8.3-2]"]);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_rejected() {
    let err = DecodeError::NoTopicFilters {
        packet: PacketType::Unsubscribe,
    };
    let v3 = [0xA2, 0x02, 0x00, 0x01]; // UNSUBSCRIBE, length 2, packet identifier 1
    rejected(
        V3_1_1,
        &v3,
        err.clone(),
        PROTOCOL_ERROR,
        &["[MQTT-3.10.3-2]"],
    );
    let v5 = [0xA2, 0x03, 0x00, 0x01, 0x00]; // ... and property length 0
    rejected(V5, &v5, err, PROTOCOL_ERROR, &["[MQTT-3.10.3-2]"]);
}

#[test]
fn mqtt_3_9_3_1_suback_without_reason_codes_rejected() {
    let err = DecodeError::NoReasonCodes {
        packet: PacketType::SubAck,
    };
    let v3 = [0x90, 0x02, 0x00, 0x01]; // SUBACK, length 2, packet identifier 1
    rejected(
        V3_1_1,
        &v3,
        err.clone(),
        PROTOCOL_ERROR,
        &["[MQTT-3.9.3-1]"],
    );
    let v5 = [0x90, 0x03, 0x00, 0x01, 0x00]; // ... and property length 0
    rejected(V5, &v5, err, PROTOCOL_ERROR, &["[MQTT-3.9.3-1]"]);
}

#[test]
fn mqtt_3_11_3_1_v5_unsuback_without_reason_codes_rejected() {
    let err = DecodeError::NoReasonCodes {
        packet: PacketType::UnsubAck,
    };
    let wire = [0xB0, 0x03, 0x00, 0x01, 0x00]; // UNSUBACK, length 3, id 1, property length 0
    rejected(V5, &wire, err, PROTOCOL_ERROR, &["[MQTT-3.11.3-1]"]);
}

#[test]
fn mqtt_3_8_3_4_v3_subscription_options_reserved_bits_rejected() {
    // 3.1.1: bits 2-7 of the requested QoS byte are reserved.
    for bit in 2..8 {
        let byte = 1u8 << bit;
        let wire = [
            0x82, // SUBSCRIBE
            0x06, // remaining length 6
            0x00, 0x01, // packet identifier 1
            0x00, 0x01, b'a', // topic filter "a"
            byte, // options: one reserved bit
        ];
        let err = DecodeError::SubscriptionOptionsReserved { byte };
        rejected(V3_1_1, &wire, err, MALFORMED, &["[MQTT-3.8.3-4]"]);
    }
}

#[test]
fn mqtt_3_8_3_5_v5_subscription_options_reserved_bits_rejected() {
    // 5.0: bits 6 and 7 are reserved; bits 2-5 are options.
    for byte in [0x40, 0x80] {
        let wire = [
            0x82, // SUBSCRIBE
            0x07, // remaining length 7
            0x00, 0x01, // packet identifier 1
            0x00, // property length 0
            0x00, 0x01, b'a', // topic filter "a"
            byte, // options: one reserved bit
        ];
        let err = DecodeError::SubscriptionOptionsReserved { byte };
        rejected(V5, &wire, err, MALFORMED, &["[MQTT-3.8.3-5]"]);
    }
}

#[test]
fn mqtt_3_8_3_1_retain_handling_3_rejected() {
    let wire = [
        0x82, // SUBSCRIBE
        0x07, // remaining length 7
        0x00, 0x01, // packet identifier 1
        0x00, // property length 0
        0x00, 0x01, b'a', // topic filter "a"
        0x30, // options: retain handling 3
    ];
    rejected(
        V5,
        &wire,
        DecodeError::InvalidRetainHandling,
        PROTOCOL_ERROR,
        &["§3.8.3.1"],
    );
}

// ----------------------------------------------------------------- encode

fn qos_publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    let mut p = Publish::new(s("a"), Bytes::from_static(b"x"));
    p.qos = qos;
    p.packet_id = packet_id.map(pid);
    p
}

#[test]
fn mqtt_2_2_1_2_qos_1_and_2_publish_without_packet_id_not_encoded() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let publish = qos_publish(qos, None);
        let err = EncodeError::PacketIdMismatch { qos, has_id: false };
        for version in [V3_1_1, V5] {
            encode_rejected(
                &Packet::Publish(publish.clone()),
                version,
                err.clone(),
                &["[MQTT-2.2.1-2]"],
            );
        }
        // The header-only path refuses it too, and writes nothing either.
        let mut buf = BytesMut::new();
        assert_eq!(publish.encode_header(V5, &mut buf), Err(err));
        assert!(buf.is_empty());
    }
}

#[test]
fn mqtt_2_2_1_2_qos_0_publish_with_packet_id_not_encoded() {
    let publish = qos_publish(QoS::AtMostOnce, Some(1));
    let err = EncodeError::PacketIdMismatch {
        qos: QoS::AtMostOnce,
        has_id: true,
    };
    encode_rejected(
        &Packet::Publish(publish),
        V3_1_1,
        err,
        &["[MQTT-2.2.1-2]", "must not have"],
    );
}

#[test]
fn auth_not_encoded_before_5_0() {
    for version in [V3_1, V3_1_1] {
        let err = EncodeError::NotInVersion {
            packet: PacketType::Auth,
            version,
        };
        encode_rejected(
            &Packet::from(Auth::default()),
            version,
            err,
            &["does not exist"],
        );
    }
}

#[test]
fn mqtt_3_8_3_2_subscribe_without_filters_not_encoded() {
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        subscriptions: Vec::new(),
    });
    let err = EncodeError::Empty {
        packet: PacketType::Subscribe,
    };
    for version in [V3_1_1, V5] {
        encode_rejected(&subscribe, version, err.clone(), &["[MQTT-3.8.3-2]"]);
    }
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_not_encoded() {
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        properties: UnsubscribeProperties::default(),
        filters: Vec::new(),
    });
    let err = EncodeError::Empty {
        packet: PacketType::Unsubscribe,
    };
    encode_rejected(&unsubscribe, V5, err, &["[MQTT-3.10.3-2]"]);
}

#[test]
fn mqtt_3_9_3_1_suback_without_reason_codes_not_encoded() {
    let suback = Packet::SubAck(SubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reason_codes: Vec::new(),
    });
    let err = EncodeError::Empty {
        packet: PacketType::SubAck,
    };
    encode_rejected(&suback, V3_1_1, err, &[]);
}

#[test]
fn mqtt_3_11_3_1_unsuback_without_reason_codes_encoded_only_in_3_1_1() {
    // 3.1.1 UNSUBACK has no reason codes at all; 5.0 needs one per filter.
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reason_codes: Vec::new(),
    });
    let mut out = BytesMut::new();
    unsuback.encode(V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &[0xB0, 0x02, 0x00, 0x01]);
    let err = EncodeError::Empty {
        packet: PacketType::UnsubAck,
    };
    encode_rejected(&unsuback, V5, err, &[]);
}

#[test]
fn mqtt_1_5_6_binary_data_over_65535_bytes_not_encoded() {
    let big = Bytes::from(vec![0u8; 65_536]);

    let mut connect = Connect::new(V3_1_1, s("c"));
    connect.username = Some(s("u"));
    connect.password = Some(big.clone());
    let err = EncodeError::BinaryTooLong {
        what: "password",
        len: 65_536,
    };
    encode_rejected(
        &Packet::Connect(Box::new(connect)),
        V3_1_1,
        err,
        &["§1.5.6"],
    );

    let mut connect = Connect::new(V5, s("c"));
    connect.will = Some(Will {
        topic: s("w"),
        payload: big.clone(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let err = EncodeError::BinaryTooLong {
        what: "will payload",
        len: 65_536,
    };
    encode_rejected(&Packet::Connect(Box::new(connect)), V5, err, &["§1.5.6"]);

    let mut publish = qos_publish(QoS::AtMostOnce, None);
    publish.properties.extras_mut().correlation_data = Some(big);
    let err = EncodeError::BinaryTooLong {
        what: "Correlation Data",
        len: 65_536,
    };
    encode_rejected(&Packet::Publish(publish), V5, err, &["§1.5.6"]);
}

#[test]
fn binary_data_of_exactly_65535_bytes_encoded() {
    let mut connect = Connect::new(V3_1_1, s("c"));
    connect.username = Some(s("u"));
    connect.password = Some(Bytes::from(vec![7u8; 65_535]));
    let packet = Packet::Connect(Box::new(connect));
    let mut out = BytesMut::new();
    packet.encode(V3_1_1, &mut out).unwrap();
    assert_eq!(out.len(), packet.encoded_len(V3_1_1));
    assert_eq!(decode_ok(V3_1_1, &out, &DecodeLimits::default()), packet);
}
