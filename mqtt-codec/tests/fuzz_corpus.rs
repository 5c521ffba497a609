//! Replays the seed corpus of the `decode` fuzz target
//! (`fuzz/corpus/decode/` at the root of the repository) through the
//! decoder with `cargo test`, as the fuzz target feeds it: each file is a
//! stream of packets decoded under MQTT 3.1, 3.1.1 and 5.0, once with
//! `DecodeLimits::UNLIMITED` and once with tight limits.
//!
//! For every file, under every version and both limits:
//!
//! - decoding ends (each packet consumes bytes, so the loop is bounded by
//!   the file's length) in the whole file consumed, an incomplete packet
//!   (`Ok(None)`, which consumes nothing) or an error; it never panics;
//! - `Packet::frame_len` agrees with the bytes each packet consumed;
//! - each packet encodes, in `encoded_len` bytes, and the encoding decodes
//!   to the same packet;
//! - the encoding is exactly the bytes the packet was decoded from. MQTT
//!   5.0 also allows forms the encoder does not write (an implicit zero
//!   spelled out, properties in another order), so under 5.0 this is
//!   checked only for a named seed (below) under its own version: a 3.1.1
//!   seed may be such a form when read as 5.0.
//!
//! A seed's name says what it is: `<version>-<kind>-<description>`, where
//! the version is `v31`, `v311` or `v5`, and under that version and the
//! default limits a file
//!
//! - with no kind (`v5-publish-qos1-props`) decodes whole into valid packets;
//! - `noncanonical` decodes whole, but one of its packets is in one of
//!   those other 5.0 forms: it re-encodes to other bytes;
//! - `truncated` ends in an incomplete packet;
//! - `bad` ends in a decode error.
//!
//! Files named otherwise (libFuzzer names what it finds by its SHA-1) get
//! the checks that hold for any input. Together the valid seeds must hold
//! every packet type of 3.1.1 and of 5.0, so the corpus cannot silently
//! shrink to nothing.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mqtt_codec::{DecodeError, DecodeLimits, Packet, PacketType, ProtocolVersion};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// The limits the fuzz target uses besides `UNLIMITED`: small inputs reach
/// the limit checks.
const TIGHT: DecodeLimits = DecodeLimits {
    max_packet_size: 64,
    max_user_properties: 2,
    max_topic_filters: 2,
};

const ALL_TYPES: [PacketType; 15] = [
    PacketType::Connect,
    PacketType::ConnAck,
    PacketType::Publish,
    PacketType::PubAck,
    PacketType::PubRec,
    PacketType::PubRel,
    PacketType::PubComp,
    PacketType::Subscribe,
    PacketType::SubAck,
    PacketType::Unsubscribe,
    PacketType::UnsubAck,
    PacketType::PingReq,
    PacketType::PingResp,
    PacketType::Disconnect,
    PacketType::Auth,
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode")
}

/// What a seed's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Valid,
    NonCanonical,
    Truncated,
    Malformed,
}

/// The version and kind a seed's name gives, if it follows the naming.
fn parse_name(name: &str) -> Option<(ProtocolVersion, Kind)> {
    let (version, rest) = name.split_once('-')?;
    let version = match version {
        "v31" => V3_1,
        "v311" => V3_1_1,
        "v5" => V5,
        _ => return None,
    };
    let kind = match rest.split_once('-').map_or(rest, |(kind, _)| kind) {
        "noncanonical" => Kind::NonCanonical,
        "truncated" => Kind::Truncated,
        "bad" => Kind::Malformed,
        _ => Kind::Valid,
    };
    Some((version, kind))
}

/// How decoding a file ended.
#[derive(Debug)]
enum End {
    /// Every byte was decoded into packets.
    Drained,
    /// An incomplete packet is left.
    Incomplete,
    /// The decoder refused the input.
    Error(DecodeError),
}

/// The packets decoded from one file, each with the bytes it came from,
/// and how decoding ended.
struct Run {
    packets: Vec<(Packet, Vec<u8>)>,
    end: End,
}

/// Decodes `data` as a stream of packets, as the fuzz target does.
fn decode_all(name: &str, data: &[u8], version: ProtocolVersion, limits: &DecodeLimits) -> Run {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    // Every packet consumes at least two bytes: more rounds than bytes is
    // a decoder that stopped consuming.
    for _ in 0..=data.len() {
        let before = buf.clone();
        let frame_len = Packet::frame_len(&before, version, limits);
        match Packet::decode(&mut buf, version, limits) {
            Ok(Some(packet)) => {
                let consumed = before[..before.len() - buf.len()].to_vec();
                assert!(
                    !consumed.is_empty(),
                    "{name} under {version}: a packet from no bytes"
                );
                assert_eq!(
                    frame_len,
                    Ok(Some(consumed.len())),
                    "{name} under {version}: frame_len"
                );
                packets.push((packet, consumed));
            }
            Ok(None) => {
                assert_eq!(
                    buf, before,
                    "{name} under {version}: Ok(None) consumed bytes"
                );
                if let Ok(Some(n)) = frame_len {
                    assert!(
                        n > before.len(),
                        "{name} under {version}: Ok(None) with a whole frame"
                    );
                }
                let end = if buf.is_empty() {
                    End::Drained
                } else {
                    End::Incomplete
                };
                return Run { packets, end };
            }
            Err(e) => {
                return Run {
                    packets,
                    end: End::Error(e),
                };
            }
        }
    }
    panic!(
        "{name} under {version}: still decoding after {} rounds",
        data.len() + 1
    );
}

/// Checks the encoding of `packet`, decoded from `consumed`: its length,
/// that it decodes to the same packet, and, if `exact`, that it is
/// `consumed`. Returns whether it is.
fn check_reencoding(
    name: &str,
    packet: &Packet,
    version: ProtocolVersion,
    consumed: &[u8],
    exact: bool,
) -> bool {
    let mut wire = BytesMut::new();
    packet
        .encode(version, &mut wire)
        .unwrap_or_else(|e| panic!("{name} under {version}: {packet:?} does not encode: {e}"));
    assert_eq!(
        wire.len(),
        packet.encoded_len(version),
        "{name} under {version}: encoded_len of {packet:?}"
    );
    let same = wire[..] == consumed[..];
    if exact {
        assert!(
            same,
            "{name} under {version}: {packet:?} decoded from {consumed:02x?} re-encodes as {wire:02x?}"
        );
    }
    let mut again = wire.clone();
    let redecoded = Packet::decode(&mut again, version, &DecodeLimits::UNLIMITED)
        .unwrap_or_else(|e| panic!("{name} under {version}: the re-encoding fails: {e}"));
    assert_eq!(
        redecoded.as_ref(),
        Some(packet),
        "{name} under {version}: the re-encoding {wire:02x?} decodes to another packet"
    );
    assert!(
        again.is_empty(),
        "{name} under {version}: bytes left after the re-encoding"
    );
    same
}

/// Every file of the corpus, sorted by name.
fn read_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the seed corpus {} cannot be read ({e}); it is committed with the fuzz crate",
            dir.display()
        )
    });
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, std::fs::read(entry.path()).unwrap()));
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "the seed corpus {} is empty",
        dir.display()
    );
    files
}

#[test]
fn seed_corpus_replays_through_the_decoder() {
    let mut types: HashSet<(ProtocolVersion, PacketType)> = HashSet::new();
    let mut seen_kinds = HashSet::new();
    for (name, data) in read_corpus() {
        let seed = parse_name(&name);
        for version in [V3_1, V3_1_1, V5] {
            for limits in [DecodeLimits::UNLIMITED, TIGHT] {
                let run = decode_all(&name, &data, version, &limits);
                for (packet, consumed) in &run.packets {
                    // Only MQTT 5.0 has forms besides the encoder's (a seed
                    // of another version can be one under 5.0); a seed is
                    // in the encoder's form under its own version, unless
                    // named noncanonical.
                    let effective = match packet {
                        Packet::Connect(c) => c.protocol,
                        _ => version,
                    };
                    let exact = !effective.is_v5()
                        || matches!(seed, Some((v, kind)) if v == version && kind != Kind::NonCanonical);
                    check_reencoding(&name, packet, version, consumed, exact);
                }
            }
        }

        let Some((version, kind)) = seed else {
            continue;
        };
        seen_kinds.insert(kind);
        let run = decode_all(&name, &data, version, &DecodeLimits::default());
        match kind {
            Kind::Valid | Kind::NonCanonical => {
                assert!(
                    matches!(run.end, End::Drained) && !run.packets.is_empty(),
                    "{name}: not whole valid packets under {version}: {:?}",
                    run.end
                );
                let same: Vec<bool> = run
                    .packets
                    .iter()
                    .map(|(p, consumed)| check_reencoding(&name, p, version, consumed, false))
                    .collect();
                let canonical = same.iter().all(|&s| s);
                if kind == Kind::Valid {
                    for (packet, _) in &run.packets {
                        types.insert((version, packet.packet_type()));
                    }
                } else {
                    assert!(
                        !canonical,
                        "{name}: named noncanonical, but re-encodes to its own bytes"
                    );
                }
            }
            Kind::Truncated => assert!(
                matches!(run.end, End::Incomplete),
                "{name}: not an incomplete packet under {version}: {:?}",
                run.end
            ),
            Kind::Malformed => match run.end {
                // The error names a failure code to send the peer.
                End::Error(e) => assert!(
                    e.reason_code().is_error(),
                    "{name}: {e} maps to {:?}",
                    e.reason_code()
                ),
                end => panic!("{name}: not refused under {version}: {end:?}"),
            },
        }
    }

    for kind in [
        Kind::Valid,
        Kind::NonCanonical,
        Kind::Truncated,
        Kind::Malformed,
    ] {
        assert!(seen_kinds.contains(&kind), "no {kind:?} seed in the corpus");
    }
    for version in [V3_1_1, V5] {
        for t in ALL_TYPES {
            if t == PacketType::Auth && !version.is_v5() {
                continue;
            }
            assert!(
                types.contains(&(version, t)),
                "no valid {version} {t} seed in the corpus"
            );
        }
    }
}

#[test]
fn seed_names_are_parsed() {
    assert_eq!(parse_name("v5-publish-qos1"), Some((V5, Kind::Valid)));
    assert_eq!(
        parse_name("v311-bad-topic-wildcard"),
        Some((V3_1_1, Kind::Malformed))
    );
    assert_eq!(
        parse_name("v5-noncanonical-disconnect"),
        Some((V5, Kind::NonCanonical))
    );
    assert_eq!(
        parse_name("v5-truncated-publish"),
        Some((V5, Kind::Truncated))
    );
    assert_eq!(parse_name("v31-connect-mqisdp"), Some((V3_1, Kind::Valid)));
    assert_eq!(parse_name("v5-pingreq"), Some((V5, Kind::Valid)));
    assert_eq!(parse_name("0123456789abcdef0123456789abcdef01234567"), None);
}
