//! mosquitto's bridge bit (`Connect::bridge`): the high bit of the
//! protocol level, which a mosquitto bridge sets (`try_private`), written
//! out byte by byte and followed by another packet to prove that decoding
//! stops at the boundary.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use mqtt_codec::{
    Connect, ConnectProperties, DecodeError, DecodeLimits, MqttString, Packet, ProtocolVersion,
};

/// The level with its high bit decodes as the level it goes with plus
/// `Connect::bridge`, and encodes back to the same bytes.
#[test]
fn connect_v3_1_1_with_the_bridge_bit() {
    let wire = [
        0x10, // CONNECT
        0x0E, // remaining length 14
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x84, // protocol level 4 (MQTT 3.1.1) | 0x80: a bridge
        0x02, // connect flags: clean session
        0x00, 0x3C, // keep alive 60 s
        0x00, 0x02, b'b', b'r', // client identifier "br"
        0xC0, 0x00, // the next packet: PINGREQ
    ];
    let expected = Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: MqttString::from_static("br"),
        will: None,
        username: None,
        password: None,
        bridge: true,
    };
    let mut buf = BytesMut::from(&wire[..]);
    let limits = DecodeLimits::default();
    let decoded = Packet::decode(&mut buf, ProtocolVersion::V3_1_1, &limits).unwrap();
    assert_eq!(decoded, Some(Packet::Connect(Box::new(expected.clone()))));
    assert_eq!(
        &buf[..],
        [0xC0, 0x00],
        "decoding stops at the packet boundary"
    );
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(expected))
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    assert_eq!(&out[..], &wire[..16]);
}

/// The high bit on a level no version has is still an unknown level.
#[test]
fn the_bridge_bit_on_an_unknown_level_is_refused() {
    let wire = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', //
        0x86, // level 6 | 0x80
        0x02, 0x00, 0x3C, 0x00, 0x00,
    ];
    let mut buf = BytesMut::from(&wire[..]);
    let err =
        Packet::decode(&mut buf, ProtocolVersion::V3_1_1, &DecodeLimits::default()).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion { level: 0x86 });
}
