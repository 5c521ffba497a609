//! Builders shared by the tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqtt_codec::{
    MqttString, PacketId, PayloadFormat, PublishExtras, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, UserProperty, Will, WillProperties,
};
use mqtt_session::{Delivery, Message, SessionState, SubscriptionRecord};
use mqtt_store::{Clock, FjallStore, MemoryStore, Store};
use tempfile::TempDir;

/// A fixed moment: 2026-01-01T00:00:00Z on the wall clock.
pub fn clock() -> Clock {
    Clock::from_unix_ms(Instant::now(), 1_767_225_600_000)
}

pub fn s(v: &str) -> MqttString {
    MqttString::try_from(v).unwrap()
}

pub fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

pub fn message(topic: &str, payload: &str, qos: QoS) -> Message {
    Message {
        topic: s(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
        expires_at: None,
    }
}

/// A message with every persisted property set.
pub fn rich_message(clock: &Clock) -> Message {
    Message {
        topic: s("home/kitchen/temp"),
        payload: Bytes::from_static(b"\x00\x01binary\xff"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            extras: PublishExtras {
                content_type: Some(s("application/json")),
                response_topic: Some(s("reply/here")),
                correlation_data: Some(Bytes::from_static(b"corr-42")),
                user_properties: vec![
                    UserProperty::new(s("a"), s("1")),
                    UserProperty::new(s("a"), s("2")),
                    UserProperty::new(s("ünï"), s("çødé")),
                ]
                .into(),
            }
            .shared(),
            ..PublishProperties::default()
        }
        .into(),
        // Whole milliseconds: the store keeps millisecond precision.
        expires_at: Some(clock.instant() + std::time::Duration::from_secs(600)),
    }
}

pub fn delivery(m: Message, qos: QoS) -> Delivery {
    Delivery::new(Arc::new(m), qos)
}

pub fn rich_delivery(clock: &Clock) -> Delivery {
    let mut d = delivery(rich_message(clock), QoS::AtLeastOnce);
    d.retain = false;
    d.subscription_ids.push(SubscriptionId::new(7).unwrap());
    d.subscription_ids
        .push(SubscriptionId::new(268_435_455).unwrap());
    d.shared_group = Some(s("workers"));
    d
}

pub fn session(id: &str, expiry: u32) -> SessionState {
    let mut st = SessionState::new(s(id), expiry);
    st.subscriptions.insert(
        s("home/+/temp"),
        SubscriptionRecord {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::SendIfNew,
            },
            id: SubscriptionId::new(7),
        },
    );
    st.subscriptions.insert(
        s("$share/workers/jobs/#"),
        SubscriptionRecord {
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            id: None,
        },
    );
    st.drops.expired = 3;
    st.drops.queue_full_qos0 = 9;
    st
}

pub fn will(topic: &str) -> Will {
    Will {
        topic: s(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(30),
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            message_expiry_interval: Some(120),
            content_type: Some(s("text/plain")),
            response_topic: None,
            correlation_data: Some(Bytes::from_static(b"x")),
            user_properties: vec![UserProperty::new(s("k"), s("v"))].into(),
        },
    }
}

/// Compares instants at the millisecond precision the store keeps.
pub fn same_ms(a: Option<Instant>, b: Option<Instant>, c: &Clock) -> bool {
    a.map(|t| c.to_unix_ms(t)) == b.map(|t| c.to_unix_ms(t))
}

/// Something that makes fresh, recovered stores for the shared suite.
pub trait Fixture {
    type S: Store + 'static;
    fn new() -> Self;
    fn store(&self) -> &Self::S;
    fn store_arc(&self) -> Arc<Self::S>;
}

pub struct Memory(Arc<MemoryStore>);

impl Fixture for Memory {
    type S = MemoryStore;
    fn new() -> Self {
        Self(Arc::new(MemoryStore::new()))
    }
    fn store(&self) -> &MemoryStore {
        &self.0
    }
    fn store_arc(&self) -> Arc<MemoryStore> {
        self.0.clone()
    }
}

pub struct Fjall {
    store: Arc<FjallStore>,
    _dir: TempDir,
}

impl Fixture for Fjall {
    type S = FjallStore;
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        store.recover(clock()).unwrap();
        Self {
            store: Arc::new(store),
            _dir: dir,
        }
    }
    fn store(&self) -> &FjallStore {
        &self.store
    }
    fn store_arc(&self) -> Arc<FjallStore> {
        self.store.clone()
    }
}
