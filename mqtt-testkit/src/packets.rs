//! Short builders for the packets tests send. Each gives a plain value of
//! the `mqtt-codec` model, to adjust field by field before sending.

use std::num::NonZeroU16;

use bytes::Bytes;
use mqtt_codec::{
    Connect, MqttString, PacketId, ProtocolVersion, Publish, QoS, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions,
};

/// A string of the packet model.
///
/// # Panics
/// If `s` is not a valid MQTT string (a bug in the test).
pub fn string(s: &str) -> MqttString {
    MqttString::try_from(s.to_owned()).expect("a valid MQTT string")
}

/// A packet identifier.
///
/// # Panics
/// If `id` is 0 (a bug in the test).
pub fn pid(id: u16) -> PacketId {
    NonZeroU16::new(id).expect("packet identifiers are not 0")
}

/// A CONNECT with clean start and keep alive 60 s.
pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, string(client_id))
}

/// A PUBLISH; `packet_id` is ignored for QoS 0.
pub fn publish(topic: &str, payload: &[u8], qos: QoS, packet_id: u16) -> Publish {
    let mut p = Publish::new(string(topic), Bytes::copy_from_slice(payload));
    p.qos = qos;
    if qos != QoS::AtMostOnce {
        p.packet_id = Some(pid(packet_id));
    }
    p
}

/// A SUBSCRIBE to `filters`, each with its maximum QoS and default options.
pub fn subscribe(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id: pid(packet_id),
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|(f, qos)| Subscription {
                filter: string(f),
                options: SubscriptionOptions::qos(*qos),
            })
            .collect(),
    }
}
