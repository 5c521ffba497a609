//! Decodes arbitrary bytes as a stream of packets under every protocol
//! version and checks every packet accepted: it re-encodes to the bytes it
//! was decoded from (or, for the forms MQTT 5.0 allows besides the
//! encoder's, to an equivalent packet), and the re-encoding decodes to the
//! same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{DecodeLimits, Packet, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        decode_all(data, version, &DecodeLimits::UNLIMITED);
        // Tight limits reach the limit checks with small inputs.
        let tight = DecodeLimits {
            max_packet_size: 64,
            max_user_properties: 2,
            max_topic_filters: 2,
        };
        decode_all(data, version, &tight);
    }
});

fn decode_all(data: &[u8], version: ProtocolVersion, limits: &DecodeLimits) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        let frame_len = Packet::frame_len(&before, version, limits);
        match Packet::decode(&mut buf, version, limits) {
            Ok(Some(packet)) => {
                let consumed = &before[..before.len() - buf.len()];
                assert_eq!(frame_len, Ok(Some(consumed.len())));
                check_reencoding(&packet, version, consumed);
            }
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) consumed bytes");
                if let Ok(Some(n)) = frame_len {
                    assert!(n > before.len(), "Ok(None) with a whole frame");
                }
                return;
            }
            Err(_) => return,
        }
    }
}

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut wire = BytesMut::new();
    packet
        .encode(version, &mut wire)
        .expect("a decoded packet encodes");
    wire
}

/// Length of the fixed header at the front of a whole encoded packet.
fn header_len(frame: &[u8]) -> usize {
    let n = frame[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a decoded frame has a whole remaining length");
    2 + n
}

/// An acknowledgement, DISCONNECT or AUTH without properties: the packets
/// whose 5.0 encoding may spell out a Success reason code or a property
/// length of 0 that the shortest form leaves out (§3.4.2.1, §3.14.2.1,
/// §3.15.2.1).
fn has_short_form(packet: &Packet) -> bool {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties.is_empty()
        }
        Packet::Disconnect(d) => d.properties.is_empty(),
        Packet::Auth(a) => a.properties.is_empty(),
        _ => false,
    }
}

/// The re-encoding equals `consumed`, except for the two non-canonical
/// forms MQTT 5.0 allows: trailing implicit zeros of a reason tail, and
/// properties in another order than the encoder's (§2.2.2.2), which makes
/// the re-encoding a permutation of the consumed bytes.
fn check_reencoding(packet: &Packet, version: ProtocolVersion, consumed: &[u8]) {
    let wire = encode(packet, version);
    assert_eq!(wire.len(), packet.encoded_len(version), "encoded_len");
    if wire[..] != consumed[..] {
        let effective = match packet {
            Packet::Connect(c) => c.protocol,
            _ => version,
        };
        assert!(
            effective.is_v5(),
            "{version}: {packet:?} accepted from non-canonical {consumed:02x?}, re-encoded as {wire:02x?}"
        );
        if has_short_form(packet) {
            let body = &consumed[header_len(consumed)..];
            let short = &wire[header_len(&wire)..];
            // DISCONNECT is written with its property length after a reason
            // code, so a received reason-only form re-encodes one zero longer.
            let extra = body.strip_prefix(short).or_else(|| {
                matches!(packet, Packet::Disconnect(_))
                    .then(|| short.strip_prefix(body))
                    .flatten()
            });
            assert!(
                matches!(extra, Some([0] | [0, 0])),
                "{packet:?}: {consumed:02x?} is not {wire:02x?} with implicit zeros"
            );
        } else {
            let mut a = consumed.to_vec();
            let mut b = wire.to_vec();
            a.sort_unstable();
            b.sort_unstable();
            assert!(
                a == b,
                "{packet:?}: {consumed:02x?} and {wire:02x?} differ by more than property order"
            );
        }
    }
    let mut again = wire.clone();
    let redecoded = Packet::decode(&mut again, version, &DecodeLimits::UNLIMITED)
        .expect("the re-encoding decodes")
        .expect("the re-encoding is whole");
    assert_eq!(&redecoded, packet);
    assert!(again.is_empty());
    assert_eq!(
        encode(&redecoded, version),
        wire,
        "re-encoding is not stable"
    );
}
