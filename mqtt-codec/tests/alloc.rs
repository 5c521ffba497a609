//! The hot path allocates nothing per packet: decoding a PUBLISH out of a
//! read buffer, and encoding a PUBLISH or a PUBACK into a write buffer that
//! has room.
//!
//! A counting global allocator sees every heap allocation of this test
//! binary; the count is kept per thread, so the test harness's own threads
//! and tests running in parallel do not disturb each other.

// A `#[global_allocator]` has to `unsafe impl GlobalAlloc`; the impl only
// forwards to `System` and bumps a counter.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, DecodeLimits, MqttString, Packet, PayloadFormat, ProtocolVersion, Publish, QoS,
    ReasonCode, SubscriptionId,
};

struct Counting;

thread_local! {
    // `const` and without a destructor: reading it never allocates, which
    // would recurse into the allocator.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees are the caller's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many heap allocations it made on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// A QoS 1 PUBLISH; under 5.0 with the properties kept inline (those a
/// broker reads or rewrites for each message).
fn publish(version: ProtocolVersion) -> Publish {
    let mut p = Publish::new(
        MqttString::from_static("sensors/building-7/floor-3/temperature"),
        Bytes::from_static(&[0x5a; 256]),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = NonZeroU16::new(4242);
    if version.is_v5() {
        p.properties.payload_format_indicator = Some(PayloadFormat::Unspecified);
        p.properties.message_expiry_interval = Some(3600);
        p.properties.topic_alias = NonZeroU16::new(3);
        p.properties
            .subscription_identifiers
            .extend(SubscriptionId::new(17));
    }
    p
}

/// [`publish`] under 5.0 with the properties kept out of line too, and
/// `user` User Properties.
fn publish_with_extras(user: usize) -> Publish {
    let mut p = publish(ProtocolVersion::V5);
    let extras = p.properties.extras_mut();
    extras.content_type = Some(MqttString::from_static("application/octet-stream"));
    extras.response_topic = Some(MqttString::from_static("replies/sensor-7"));
    extras.correlation_data = Some(Bytes::from_static(b"req-0001"));
    for i in 0..user {
        extras.user_properties.push(mqtt_codec::UserProperty {
            name: MqttString::from_static("k"),
            value: MqttString::try_from(format!("v{i}")).unwrap(),
        });
    }
    p
}

/// Allocations made while decoding `n` back-to-back copies of `packet` from
/// one read buffer (filled beforehand, outside the count).
fn decode_allocations(packet: &Packet, version: ProtocolVersion, n: usize) -> usize {
    let mut one = BytesMut::new();
    packet.encode(version, &mut one).unwrap();
    let mut buf = BytesMut::with_capacity(one.len() * n);
    for _ in 0..n {
        buf.extend_from_slice(&one);
    }
    let limits = DecodeLimits::default();
    let mut decoded = 0;
    let count = allocations(|| {
        while let Some(p) = Packet::decode(&mut buf, version, &limits).unwrap() {
            assert_eq!(&p, packet);
            black_box(p);
            decoded += 1;
        }
    });
    assert_eq!(decoded, n);
    count
}

/// Splitting the first packet off a read buffer moves the buffer to shared
/// storage: one allocation per buffer, never one per packet.
#[test]
fn decoding_publish_allocates_nothing_per_packet() {
    // The counter works: one boxed value is one allocation.
    assert_eq!(allocations(|| drop(black_box(Box::new(7u64)))), 1);
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let packet = Packet::Publish(publish(version));
        let hundred = decode_allocations(&packet, version, 100);
        let thousand = decode_allocations(&packet, version, 1000);
        assert_eq!(
            hundred, thousand,
            "{version:?}: allocations grow with the packet count"
        );
        assert!(
            hundred <= 1,
            "{version:?}: {hundred} allocations per read buffer"
        );
    }
}

#[test]
fn encoding_publish_and_puback_into_a_buffer_with_room_allocates_nothing() {
    let publishes = [
        (ProtocolVersion::V3_1_1, publish(ProtocolVersion::V3_1_1)),
        (ProtocolVersion::V5, publish(ProtocolVersion::V5)),
        (ProtocolVersion::V5, publish_with_extras(3)),
    ];
    for (version, publish) in publishes {
        let packet_id = publish.packet_id.unwrap();
        let publish = Packet::Publish(publish);
        let puback = Packet::PubAck(Ack::new(packet_id));
        let mut refused = Ack::with_reason(packet_id, ReasonCode::NotAuthorized);
        refused.properties.reason_string = Some(MqttString::from_static("not yours"));
        let refused = Packet::PubAck(refused);

        let mut buf = BytesMut::with_capacity(4096);
        let count = allocations(|| {
            for _ in 0..1000 {
                for packet in [&publish, &puback, &refused] {
                    buf.clear();
                    packet.encode(version, &mut buf).unwrap();
                    assert_eq!(buf.len(), packet.encoded_len(version));
                }
                let Packet::Publish(p) = &publish else {
                    unreachable!()
                };
                buf.clear();
                let payload = p.encode_header(version, &mut buf).unwrap();
                assert_eq!(buf.len() + payload, publish.encoded_len(version));
            }
        });
        assert_eq!(count, 0, "{version:?}: encoding allocated");
    }
}

/// What the README says of the rarer properties: a 5.0 PUBLISH with any of
/// Content Type, Response Topic, Correlation Data or one User Property
/// allocates once per packet (the box that holds them all); with more User
/// Properties, once more for their list (not once per property); nothing
/// else beyond the read buffer's one.
#[test]
fn a_publish_with_extras_allocates_once_and_with_more_user_properties_twice() {
    for (user, per_packet) in [(0, 1), (1, 1), (3, 2)] {
        let packet = Packet::Publish(publish_with_extras(user));
        let hundred = decode_allocations(&packet, ProtocolVersion::V5, 100);
        assert!(
            (100 * per_packet..=100 * per_packet + 1).contains(&hundred),
            "{hundred} allocations for 100 packets with {user} User Properties"
        );
    }
}
