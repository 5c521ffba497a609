//! Persistence (`persistence = true`, a `data_dir`): what a restart
//! restores, the QoS 2 guarantees across it, and what a failing store
//! answers. The broker runs in-process on a temporary directory; the crash
//! tests with SIGKILL are in `mqtt-cli/tests/crash.rs`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{Ack, Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Will};
use mqtt_server::{Config, Store, StoreError};
use mqtt_store::{Batch, Clock, LoadedSession, MemoryStore, PendingWill, Recovered, StoreStats};
use mqtt_testkit::{RawClient, TestBroker, packets};

fn config(dir: &Path) -> Config {
    let mut c = TestBroker::config();
    c.persistence = true;
    c.data_dir = dir.to_path_buf();
    c.sys_interval = 0;
    c
}

/// A CONNECT of a session that outlives its connection by `expiry` seconds.
fn connect(id: &str, clean_start: bool, expiry: u32) -> Connect {
    let mut c = packets::connect(ProtocolVersion::V5, id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

async fn subscribe(raw: &mut RawClient, filters: &[(&str, QoS)]) {
    raw.send(&Packet::Subscribe(packets::subscribe(1, filters)))
        .await
        .unwrap();
    match raw.recv().await {
        Some(Packet::SubAck(_)) => {}
        other => panic!("SUBACK expected, got {other:?}"),
    }
}

async fn disconnect(mut raw: RawClient) {
    raw.send(&Packet::from(mqtt_codec::Disconnect::new(
        ReasonCode::Success,
    )))
    .await
    .unwrap();
    let _ = raw.expect_closed().await;
}

/// Publishes and waits for PUBACK (QoS 1) or PUBREC + PUBCOMP (QoS 2);
/// returns the reason code of PUBACK / PUBREC.
async fn publish(raw: &mut RawClient, p: Publish) -> ReasonCode {
    let qos = p.qos;
    raw.send(&Packet::Publish(p)).await.unwrap();
    match (qos, raw.recv().await) {
        (QoS::AtLeastOnce, Some(Packet::PubAck(a))) => a.reason_code,
        (QoS::ExactlyOnce, Some(Packet::PubRec(a))) => {
            if a.reason_code.is_error() {
                return a.reason_code;
            }
            raw.send(&Packet::PubRel(Ack::new(a.packet_id)))
                .await
                .unwrap();
            match raw.recv().await {
                Some(Packet::PubComp(_)) => a.reason_code,
                other => panic!("PUBCOMP expected, got {other:?}"),
            }
        }
        (_, other) => panic!("acknowledgement expected, got {other:?}"),
    }
}

async fn next_publish(raw: &mut RawClient) -> Publish {
    match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("PUBLISH expected, got {other:?}"),
    }
}

/// Stops the broker and waits until it has let go of its directory.
async fn stop(mut broker: TestBroker) {
    assert!(broker.stop(Duration::from_secs(10)).await.is_some());
}

#[tokio::test]
async fn a_restart_restores_sessions_subscriptions_queued_messages_in_order_and_retained() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, ack) = RawClient::connect(broker.addr, connect("sub", true, 3600)).await;
    assert!(!ack.session_present);
    subscribe(
        &mut sub,
        &[("t/#", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)],
    )
    .await;
    disconnect(sub).await;

    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    for i in 0..20u16 {
        let p = packets::publish("t/a", format!("m{i}").as_bytes(), QoS::AtLeastOnce, i + 1);
        assert_eq!(publish(&mut publisher, p).await, ReasonCode::Success);
    }
    let q2 = packets::publish("q2", b"once", QoS::ExactlyOnce, 100);
    assert_eq!(publish(&mut publisher, q2).await, ReasonCode::Success);
    let mut retained = packets::publish("ret/x", b"kept", QoS::AtLeastOnce, 101);
    retained.retain = true;
    // Nobody subscribes to it: acknowledged as such, and still kept.
    assert_eq!(
        publish(&mut publisher, retained).await,
        ReasonCode::NoMatchingSubscribers
    );
    drop(publisher);
    stop(broker).await;

    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, ack) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    assert!(ack.session_present, "the session survived the restart");
    for i in 0..20u16 {
        let p = next_publish(&mut sub).await;
        assert_eq!(p.payload, Bytes::from(format!("m{i}")), "in order");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await
            .unwrap();
    }
    let p = next_publish(&mut sub).await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"once"[..]));
    // The subscriptions came back too: a new message is routed.
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let p2 = packets::publish("t/b", b"after", QoS::AtLeastOnce, 1);
    assert_eq!(publish(&mut publisher, p2).await, ReasonCode::Success);
    let p = next_publish(&mut sub).await;
    assert_eq!(&p.payload[..], b"after");
    // And the retained message.
    let (mut fresh, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "fresh")).await;
    subscribe(&mut fresh, &[("ret/#", QoS::AtLeastOnce)]).await;
    let p = next_publish(&mut fresh).await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"kept");
}

#[tokio::test]
async fn delivered_messages_are_not_delivered_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", true, 3600)).await;
    subscribe(&mut sub, &[("t", QoS::AtLeastOnce)]).await;
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    for i in 0..3u16 {
        let p = packets::publish("t", format!("m{i}").as_bytes(), QoS::AtLeastOnce, i + 1);
        assert_eq!(publish(&mut publisher, p).await, ReasonCode::Success);
        let got = next_publish(&mut sub).await;
        sub.send(&Packet::PubAck(Ack::new(got.packet_id.unwrap())))
            .await
            .unwrap();
    }
    // One more, received and not acknowledged: it comes back.
    let p = packets::publish("t", b"unacked", QoS::AtLeastOnce, 9);
    assert_eq!(publish(&mut publisher, p).await, ReasonCode::Success);
    assert_eq!(&next_publish(&mut sub).await.payload[..], b"unacked");
    disconnect(sub).await;
    drop(publisher);
    stop(broker).await;

    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, ack) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    assert!(ack.session_present);
    assert_eq!(&next_publish(&mut sub).await.payload[..], b"unacked");
    sub.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn qos2_keeps_its_packet_identifier_and_stage_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", true, 3600)).await;
    subscribe(&mut sub, &[("t", QoS::ExactlyOnce)]).await;
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let p = packets::publish("t", b"exactly", QoS::ExactlyOnce, 7);
    assert_eq!(publish(&mut publisher, p).await, ReasonCode::Success);
    // Received, PUBREC not sent: the broker crashes (stops) now.
    let first = next_publish(&mut sub).await;
    let id = first.packet_id.unwrap();
    drop(sub);
    drop(publisher);
    stop(broker).await;

    // Resent with the same identifier and DUP: the client knows it.
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    let again = next_publish(&mut sub).await;
    assert_eq!(again.packet_id, Some(id));
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"exactly");
    sub.send(&Packet::PubRec(Ack::new(id))).await.unwrap();
    match sub.recv().await {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
        other => panic!("PUBREL expected, got {other:?}"),
    }
    // PUBREL received, PUBCOMP not sent: the broker stops again.
    drop(sub);
    stop(broker).await;

    // Only PUBREL is resent, never the message.
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    match sub.recv().await {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
        other => panic!("PUBREL expected, got {other:?}"),
    }
    sub.send(&Packet::PubComp(Ack::new(id))).await.unwrap();
    sub.expect_silence(Duration::from_millis(200)).await;
    drop(sub);
    stop(broker).await;
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    sub.expect_silence(Duration::from_millis(200)).await;
    drop(broker);
}

#[tokio::test]
async fn an_incoming_qos2_resent_after_a_restart_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", true, 3600)).await;
    subscribe(&mut sub, &[("t", QoS::AtLeastOnce)]).await;
    disconnect(sub).await;
    let (mut publisher, _) = RawClient::connect(broker.addr, connect("pub", true, 3600)).await;
    publisher
        .send(&Packet::Publish(packets::publish(
            "t",
            b"one",
            QoS::ExactlyOnce,
            5,
        )))
        .await
        .unwrap();
    match publisher.recv().await {
        Some(Packet::PubRec(a)) => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("PUBREC expected, got {other:?}"),
    }
    // PUBREC was lost with the broker: the publisher sends it again.
    drop(publisher);
    stop(broker).await;

    let broker = TestBroker::start(config(dir.path())).await;
    let (mut publisher, ack) = RawClient::connect(broker.addr, connect("pub", false, 3600)).await;
    assert!(ack.session_present);
    let mut dup = packets::publish("t", b"one", QoS::ExactlyOnce, 5);
    dup.dup = true;
    assert_eq!(publish(&mut publisher, dup).await, ReasonCode::Success);
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", false, 3600)).await;
    let p = next_publish(&mut sub).await;
    assert_eq!(&p.payload[..], b"one");
    sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await
        .unwrap();
    sub.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn session_expiry_counts_the_time_the_broker_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let (mut short, _) = RawClient::connect(broker.addr, connect("short", true, 1)).await;
    subscribe(&mut short, &[("t", QoS::AtLeastOnce)]).await;
    disconnect(short).await;
    let (long, _) = RawClient::connect(broker.addr, connect("long", true, 3600)).await;
    disconnect(long).await;
    stop(broker).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let broker = TestBroker::start(config(dir.path())).await;
    let (_short, ack) = RawClient::connect(broker.addr, connect("short", false, 1)).await;
    assert!(!ack.session_present, "expired while the broker was down");
    let (_long, ack) = RawClient::connect(broker.addr, connect("long", false, 3600)).await;
    assert!(ack.session_present);
}

#[tokio::test]
async fn a_delayed_will_is_published_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(config(dir.path())).await;
    let mut c = connect("dying", true, 3600);
    let mut will = Will {
        topic: packets::string("wills/dying"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(1);
    c.will = Some(will);
    let (dying, _) = RawClient::connect(broker.addr, c).await;
    // Lost without DISCONNECT: the will waits for its delay.
    drop(dying);
    broker
        .wait_until("the connection is closed", |s| {
            s.clients_connected.load(Ordering::Relaxed) == 0
        })
        .await;
    stop(broker).await;

    let broker = TestBroker::start(config(dir.path())).await;
    let (mut watcher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "w")).await;
    subscribe(&mut watcher, &[("wills/#", QoS::AtLeastOnce)]).await;
    let p = next_publish(&mut watcher).await;
    assert_eq!(&p.payload[..], b"gone");
}

/// A store that refuses every write while `fail` is set, as a full disk does.
#[derive(Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    fail: AtomicBool,
}

impl Store for FailingStore {
    fn recover(&self, now: Clock) -> Result<Recovered, StoreError> {
        self.inner.recover(now)
    }
    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Full {
                path: "/full".into(),
            });
        }
        self.inner.write(batch)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
    fn load_session(&self, id: &str, now: Clock) -> Result<Option<LoadedSession>, StoreError> {
        self.inner.load_session(id, now)
    }
    fn load_retained(&self, now: Clock) -> Result<Vec<mqtt_session::Message>, StoreError> {
        self.inner.load_retained(now)
    }
    fn load_wills(&self, now: Clock) -> Result<Vec<PendingWill>, StoreError> {
        self.inner.load_wills(now)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_full_disk_refuses_qos1_and_2_with_quota_exceeded_and_closes_3_1_1_publishers() {
    let store = Arc::new(FailingStore::default());
    let mut c = TestBroker::config();
    c.sys_interval = 0;
    let broker = TestBroker::start_with_store(c, store.clone()).await;
    let (mut sub, _) = RawClient::connect(broker.addr, connect("sub", true, 3600)).await;
    subscribe(&mut sub, &[("t", QoS::ExactlyOnce)]).await;
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let ok = packets::publish("t", b"fits", QoS::AtLeastOnce, 1);
    assert_eq!(publish(&mut publisher, ok).await, ReasonCode::Success);

    store.fail.store(true, Ordering::SeqCst);
    let p = packets::publish("t", b"no room", QoS::AtLeastOnce, 2);
    assert_eq!(publish(&mut publisher, p).await, ReasonCode::QuotaExceeded);
    let p = packets::publish("t", b"no room", QoS::ExactlyOnce, 3);
    assert_eq!(publish(&mut publisher, p).await, ReasonCode::QuotaExceeded);
    // A retained message is refused too, whoever subscribes.
    let mut r = packets::publish("r", b"no room", QoS::AtLeastOnce, 4);
    r.retain = true;
    assert_eq!(publish(&mut publisher, r).await, ReasonCode::QuotaExceeded);
    // MQTT 3.1.1 cannot say so: the connection closes unacknowledged.
    let (mut v3, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V3_1_1, "pub3"),
    )
    .await;
    v3.send(&Packet::Publish(packets::publish(
        "t",
        b"no room",
        QoS::AtLeastOnce,
        1,
    )))
    .await
    .unwrap();
    let before_close = v3.expect_closed().await;
    assert!(
        !before_close.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{before_close:?}"
    );
    assert_eq!(broker.stat(|s| &s.store_refused), 4);

    // Room again: accepted again.
    store.fail.store(false, Ordering::SeqCst);
    let p = packets::publish("t", b"room", QoS::AtLeastOnce, 5);
    assert_eq!(publish(&mut publisher, p).await, ReasonCode::Success);
}
