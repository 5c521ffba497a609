//! A message between nodes: the node it comes from and the whole PUBLISH,
//! encoded by `mqtt-codec` as MQTT 5.0, so that every property crosses
//! unaltered [MQTT-3.3.2-17] [MQTT-3.3.2-18] without this module naming
//! them. Message expiry crosses as the interval left.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_codec::{DecodeLimits, Packet, PacketId, ProtocolVersion, Publish, QoS};
use mqtt_session::Message;

/// The format's first byte; another is refused.
const VERSION: u8 = 1;

/// Why bytes from NATS are not a message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("unknown format or truncated header")]
    Header,
    #[error("not a whole PUBLISH: {0}")]
    Packet(String),
}

/// `message` as sent to other nodes by `origin`; `None` if it has expired.
pub(crate) fn encode(origin: &str, message: &Message, now: Instant) -> Option<Bytes> {
    let mut properties = message.properties.clone().into_inner();
    properties.message_expiry_interval = match message.expires_at {
        None => None,
        Some(at) if at <= now => return None,
        // Rounded up: never expires earlier over there.
        Some(at) => Some(u32::try_from((at - now).as_millis().div_ceil(1000)).unwrap_or(u32::MAX)),
    };
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id: (message.qos != QoS::AtMostOnce).then_some(PacketId::MIN),
        properties,
        payload: message.payload.clone(),
    };
    let origin = origin.as_bytes();
    let len = origin.len().min(255);
    let mut buf = BytesMut::with_capacity(2 + len + publish.encoded_len(ProtocolVersion::V5));
    buf.put_u8(VERSION);
    buf.put_u8(len as u8);
    buf.put_slice(&origin[..len]);
    publish.encode(ProtocolVersion::V5, &mut buf).ok()?;
    Some(buf.freeze())
}

/// The node a message came from, and the message; bad bytes are an error,
/// never a panic.
pub(crate) fn decode(bytes: &[u8], now: Instant) -> Result<(String, Message), WireError> {
    let [VERSION, len, rest @ ..] = bytes else {
        return Err(WireError::Header);
    };
    let len = usize::from(*len);
    if rest.len() < len {
        return Err(WireError::Header);
    }
    let origin = String::from_utf8_lossy(&rest[..len]).into_owned();
    let mut buf = BytesMut::from(&rest[len..]);
    let limits = DecodeLimits {
        max_packet_size: DecodeLimits::PROTOCOL_MAX_PACKET_SIZE,
        ..DecodeLimits::default()
    };
    match Packet::decode(&mut buf, ProtocolVersion::V5, &limits) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() && !p.topic.is_empty() => {
            Ok((origin, Message::from_publish(p, now)))
        }
        Ok(Some(_)) => Err(WireError::Packet(
            "another packet, or trailing bytes".into(),
        )),
        Ok(None) => Err(WireError::Packet("truncated".into())),
        Err(e) => Err(WireError::Packet(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use mqtt_codec::{MqttString, PublishProperties};

    use super::*;

    /// What crosses is the message: topic, payload, QoS, RETAIN, its
    /// properties, and the expiry left.
    #[test]
    fn a_message_crosses_whole() {
        let now = Instant::now();
        let props = PublishProperties {
            payload_format_indicator: Some(mqtt_codec::PayloadFormat::Utf8),
            ..PublishProperties::default()
        };
        let m = Message {
            topic: MqttString::from_static("a/b"),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: props.into(),
            expires_at: Some(now + Duration::from_millis(2500)),
        };
        let bytes = encode("n1", &m, now).unwrap();
        let (origin, back) = decode(&bytes, now).unwrap();
        assert_eq!(origin, "n1");
        assert_eq!(back.expires_at, Some(now + Duration::from_secs(3)));
        assert_eq!(
            Message {
                expires_at: m.expires_at,
                ..back
            },
            m
        );
    }

    /// An expired message is not sent; bad bytes are errors.
    #[test]
    fn expired_messages_stay_and_bad_bytes_are_refused() {
        let now = Instant::now();
        let m = Message {
            topic: MqttString::from_static("a"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at: Some(now),
        };
        assert!(encode("n", &m, now).is_none());
        let good = encode(
            "n",
            &Message {
                expires_at: None,
                ..m
            },
            now,
        )
        .unwrap();
        for bad in [&[][..], &[2, 0], &[1, 5, b'a'], &good[..good.len() - 1]] {
            assert!(decode(bad, now).is_err(), "{bad:?}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(decode(&trailing, now).is_err());
    }
}
