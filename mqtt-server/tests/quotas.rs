//! Per-client publish quotas and the per-listener connection rate, seen
//! from clients on a real socket. Rates are measured by the broker's own
//! counters over a short window, with wide margins: a loaded machine
//! makes a window longer, never the rate higher.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bytes::BytesMut;
use mqtt_codec::{Packet, ProtocolVersion, QoS};
use mqtt_testkit::{RawClient, TestBroker, packets};

#[tokio::test]
async fn a_client_over_max_publish_rate_is_throttled_not_dropped() {
    const RATE: u64 = 50;
    const SENT: u64 = 150;
    let mut config = TestBroker::config();
    config.max_publish_rate = RATE as u32;
    let broker = TestBroker::start(config).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "fast")).await;
    // Everything at once: far faster than RATE.
    let mut burst = BytesMut::new();
    for i in 0..SENT {
        Packet::Publish(packets::publish(
            &format!("t/{i}"),
            b"x",
            QoS::AtMostOnce,
            0,
        ))
        .encode(ProtocolVersion::V5, &mut burst)
        .unwrap();
    }
    let start = Instant::now();
    raw.send_bytes(&burst).await.unwrap();
    // The first second's burst passes at once.
    broker
        .wait_until("the first burst", |s| {
            mqtt_server::Stats::get(&s.messages_received) >= RATE
        })
        .await;
    let received = broker.stat(|s| &s.messages_received);
    let elapsed = start.elapsed().as_secs_f64();
    // One second's burst, then RATE per second.
    let allowed = RATE as f64 * (1.0 + elapsed);
    assert!(
        (received as f64) <= 2.0 * allowed,
        "{received} messages in {elapsed:.2} s; at most about {allowed:.0} expected"
    );
    // Within 1.5 s the bucket allows at most 125 of the 150 (a slower
    // machine only makes the window longer, so the check is skipped then).
    if elapsed < 1.5 {
        assert!(received < SENT, "throttled: {received} of {SENT} already");
    }
    assert!(broker.stat(|s| &s.publish_throttled) >= 1);
    // Throttled, not dropped: the rest follows, and the connection lives.
    broker
        .wait_until("every message received", |s| {
            mqtt_server::Stats::get(&s.messages_received) == SENT
        })
        .await;
    raw.send(&Packet::PingReq).await.unwrap();
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn a_client_over_max_publish_bytes_rate_is_throttled() {
    const BYTES_PER_SECOND: u64 = 10_000;
    let mut config = TestBroker::config();
    config.max_publish_bytes_rate = BYTES_PER_SECOND;
    let broker = TestBroker::start(config).await;
    let (mut raw, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "big")).await;
    let payload = vec![0u8; 999]; // + topic "b" = 1000 bytes a message
    let mut burst = BytesMut::new();
    for _ in 0..40 {
        Packet::Publish(packets::publish("b", &payload, QoS::AtMostOnce, 0))
            .encode(ProtocolVersion::V5, &mut burst)
            .unwrap();
    }
    let start = Instant::now();
    raw.send_bytes(&burst).await.unwrap();
    // One second's worth (10 messages) passes at once.
    broker
        .wait_until("the first second's bytes", |s| {
            mqtt_server::Stats::get(&s.messages_received) >= 5
        })
        .await;
    let received = broker.stat(|s| &s.messages_received);
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = (BYTES_PER_SECOND as f64 * (1.0 + elapsed)) / 1000.0;
    assert!(
        (received as f64) <= 2.0 * allowed,
        "{received} messages of 1000 bytes in {elapsed:.2} s"
    );
    assert!(broker.stat(|s| &s.publish_throttled) >= 1);
    // Throttled, not dropped: all 40 arrive in about 3 s.
    broker
        .wait_until("every message received", |s| {
            mqtt_server::Stats::get(&s.messages_received) == 40
        })
        .await;
}

#[tokio::test]
async fn connections_over_max_connection_rate_are_closed_and_counted() {
    let mut config = TestBroker::config();
    config.max_connection_rate = 2;
    let broker = TestBroker::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(RawClient::open(broker.addr).await.unwrap());
    }
    broker
        .wait_until("connections refused for their rate", |s| {
            mqtt_server::Stats::get(&s.connections_rate_limited) >= 3
        })
        .await;
    let refused = broker.stat(|s| &s.connections_rate_limited);
    assert!(
        refused <= 6,
        "at least the first second's 2 are accepted: {refused}"
    );
}
