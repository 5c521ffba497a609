//! The MQTT protocol state machine of one connection, for the server and
//! the client role, without I/O.
//!
//! No sockets, no tasks, no clock: time comes in as an argument, packets
//! come in decoded (by `mqtt-codec`) and go out as [`Packet`](mqtt_codec::Packet)
//! values the caller encodes and writes — or, on the hot path, lent: a
//! PUBLISH of a queued message is handed out as a borrowed
//! [`PublishRef`](mqtt_codec::PublishRef) inside a [`Transmit`] (see
//! `transmit_with`, `ServerConnection::deliver_with` and
//! `ClientConnection::publish_with`), encoded from the session's own copy
//! without cloning anything. Incoming PUBLISH packets can likewise be
//! taken apart where they were decoded, the message returned for routing
//! (`ServerConnection::take_publish`) or lent to a callback
//! (`ClientConnection::handle_publish_with`) instead of queued as an
//! event, and a client can send one shared message many times
//! (`ClientConnection::publish_shared_with`). Everything the protocol decides —
//! CONNECT validation, CONNACK with the server's limits, keep-alive, QoS 1
//! and 2 flows both ways, packet identifiers, Receive Maximum both ways,
//! Maximum Packet Size, topic aliases both ways, will and session expiry,
//! message expiry, DISCONNECT reason codes, AUTH hooks — happens here, so it
//! can be tested exhaustively without a network.
//!
//! - [`ServerConnection`]: the server side of one client connection.
//! - [`ClientConnection`]: the client side.
//! - [`SessionState`]: what outlives a connection, as plain data for a store.
//!
//! # Example: a client and a server, by hand
//!
//! ```
//! use std::time::Instant;
//! use mqtt_codec::{Connect, MqttString, ProtocolVersion, QoS};
//! use mqtt_session::{Accept, ClientConfig, ClientConnection, ClientEvent, Message,
//!     ServerConfig, ServerConnection, ServerEvent};
//!
//! let now = Instant::now();
//! let connect = Connect::new(ProtocolVersion::V5, MqttString::from_static("c1"));
//! let mut client = ClientConnection::new(ClientConfig::default(), connect, None, now);
//! let mut server = ServerConnection::new(ServerConfig::default(), now);
//!
//! // Move packets from one side to the other until both are quiet.
//! let mut pump = |client: &mut ClientConnection, server: &mut ServerConnection| {
//!     loop {
//!         let mut moved = false;
//!         while let Some(p) = client.poll_transmit(now) { server.handle_packet(now, p).unwrap(); moved = true; }
//!         while let Some(ev) = server.poll_event() {
//!             match ev {
//!                 ServerEvent::Connect { .. } => server.accept(now, Accept::default()),
//!                 ServerEvent::Publish { packet_id: Some(id), .. } => { server.acknowledge(id, mqtt_codec::ReasonCode::Success); }
//!                 _ => {}
//!             }
//!         }
//!         while let Some(p) = server.poll_transmit(now) { client.handle_packet(now, p).unwrap(); moved = true; }
//!         if !moved { break; }
//!     }
//! };
//! pump(&mut client, &mut server);
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Connected(_))));
//!
//! let msg = Message::new(MqttString::from_static("a/b"), "hi".into(), QoS::AtLeastOnce, false);
//! client.publish(msg).unwrap();
//! pump(&mut client, &mut server);
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Published { .. })));
//! ```

mod client;
mod error;
mod inbound;
mod outbound;
mod server;
mod state;

pub use client::{ClientCloseReason, ClientConfig, ClientConnection, ClientEvent};
pub use error::ProtocolError;
pub use outbound::Transmit;
pub use server::{
    Accept, CloseReason, Closed, Publication, ScheduledWill, ServerConfig, ServerConnection,
    ServerEvent,
};
pub use state::{
    Delivery, DropCounts, DropReason, Inflight, InflightStage, Message, MessageProperties,
    MessageQueue, Overflow, QueueLimits, SessionState, SubscriptionRecord,
};
