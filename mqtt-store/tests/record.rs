//! The record format: round trips, and every torn or flipped record is
//! rejected rather than misread.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use mqtt_codec::QoS;
use mqtt_store::record::{RecordError, decode_message, encode_message};

#[test]
fn a_message_round_trips_with_its_expiry_as_remaining_time() {
    let c = clock();
    let m = rich_message(&c);
    let bytes = encode_message(&m, &c);
    // Read back 100 s later: 500 s of the 600 are left.
    let later = c.advance(Duration::from_secs(100));
    let back = decode_message(&bytes, &later).unwrap();
    assert_eq!(
        back.expires_at.unwrap() - later.instant(),
        Duration::from_secs(500)
    );
    let mut back = back;
    back.expires_at = m.expires_at;
    assert_eq!(back, m);
}

#[test]
fn a_plain_message_is_compact() {
    let c = clock();
    let m = message("a/b", "hello", QoS::AtLeastOnce);
    let bytes = encode_message(&m, &c);
    // version, kind, 2 flags, topic (2+3), 0 user properties (4),
    // payload (4+5), CRC (4).
    assert_eq!(bytes.len(), 2 + 2 + 5 + 4 + 9 + 4);
    assert_eq!(decode_message(&bytes, &c).unwrap(), m);
}

#[test]
fn every_truncation_is_rejected() {
    let c = clock();
    let bytes = encode_message(&rich_message(&c), &c);
    for len in 0..bytes.len() {
        assert!(
            decode_message(&bytes[..len], &c).is_err(),
            "accepted {len} bytes"
        );
    }
}

#[test]
fn every_bit_flip_is_rejected() {
    let c = clock();
    let bytes = encode_message(&rich_message(&c), &c);
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(
            decode_message(&b, &c).is_err(),
            "accepted a flip of bit {i}"
        );
    }
}

#[test]
fn an_unknown_record_version_is_named() {
    let c = clock();
    let mut b = encode_message(&message("t", "x", QoS::AtMostOnce), &c);
    b[0] = 9;
    let n = b.len() - 4;
    let crc = crc32fast_like(&b[..n]);
    b[n..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(decode_message(&b, &c), Err(RecordError::Version(9)));
}

fn crc32fast_like(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
