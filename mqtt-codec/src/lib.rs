//! Every MQTT 3.1, 3.1.1 and 5.0 packet: strict, zero-copy decoding and
//! encoding, with no async runtime required.
//!
//! - One [`Packet`] model for all versions; the [`ProtocolVersion`] is a
//!   parameter of [`Packet::decode`] and [`Packet::encode`].
//! - Zero copy: topics, payloads and other byte fields of a decoded packet
//!   are [`Bytes`](bytes::Bytes) slices of the input buffer.
//! - Strict: reserved bits, QoS 3, packet identifier 0, malformed variable
//!   byte integers, invalid UTF-8 and U+0000, duplicate or misplaced
//!   properties, wildcards in topic names, trailing bytes: each is a
//!   [`DecodeError`] that names what is wrong, cites the specification, and
//!   maps to the [`ReasonCode`] to send ([`DecodeError::reason_code`]).
//! - Bounded: [`DecodeLimits`] caps the packet size (checked from the fixed
//!   header, before the body is buffered), user properties and topic filters.
//! - Encoding writes into any [`BufMut`](bytes::BufMut);
//!   [`Packet::encoded_len`] is known without encoding, and
//!   [`Publish::encode_header`] lets one payload go to many subscribers
//!   without being copied.
//! - The `codec` feature adds [`MqttCodec`], a `tokio_util::codec` decoder
//!   and encoder.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use mqtt_codec::{DecodeLimits, MqttString, Packet, ProtocolVersion, Publish, QoS};
//!
//! let version = ProtocolVersion::V5;
//! let mut publish = Publish::new(MqttString::from_static("sensors/1/temp"), Bytes::from_static(b"21.5"));
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = std::num::NonZeroU16::new(7);
//! publish.properties.message_expiry_interval = Some(60);
//!
//! // Encode into a buffer, as a connection's writer would.
//! let packet = Packet::Publish(publish);
//! let mut wire = BytesMut::new();
//! packet.encode(version, &mut wire)?;
//! assert_eq!(wire.len(), packet.encoded_len(version));
//!
//! // Bytes arrive in pieces: a partial packet decodes to `None` and stays put.
//! let mut input = BytesMut::from(&wire[..5]);
//! assert_eq!(Packet::decode(&mut input, version, &DecodeLimits::default())?, None);
//! input.extend_from_slice(&wire[5..]);
//! let decoded = Packet::decode(&mut input, version, &DecodeLimits::default())?;
//! assert_eq!(decoded, Some(packet));
//! assert!(input.is_empty());
//!
//! // Corrupt input is an error that says what is wrong and which reason code to send.
//! let mut bad = BytesMut::from(&[0x36u8, 0x00][..]); // PUBLISH with QoS 3
//! let err = Packet::decode(&mut bad, version, &DecodeLimits::default()).unwrap_err();
//! assert_eq!(err.reason_code(), mqtt_codec::ReasonCode::MalformedPacket);
//! assert!(err.to_string().contains("[MQTT-3.3.1-4]"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "codec")]
mod codec;
mod error;
mod limits;
mod packet;
pub mod properties;
mod reason;
mod string;
mod types;
mod wire;

#[cfg(feature = "codec")]
pub use codec::{CodecError, MqttCodec};
pub use error::{DecodeError, EncodeError};
pub use limits::DecodeLimits;
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, OutgoingPublish, Packet, Publish, SubAck, Subscribe,
    Subscription, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishExtras, PublishProperties, SubscribeProperties, UnsubscribeProperties, UserProperties,
    UserProperty, WillProperties,
};
pub use reason::ReasonCode;
pub use string::{MqttString, StringError};
pub use types::{
    PacketId, PacketType, PayloadFormat, ProtocolVersion, QoS, RetainHandling, SubscriptionId,
    SubscriptionOptions,
};
