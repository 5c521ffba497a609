//! The MQTT protocol state machine of one connection, for the server and
//! the client role, without I/O.
//!
//! No sockets, no tasks, no clock: time comes in as an argument, packets
//! come in decoded (by `mqtt-codec`) and go out as packets the caller
//! encodes and writes. Each role has one way in per kind of input and one
//! way out per kind of output, as quinn-proto sorts its API: `handle_packet`,
//! `handle_timeout` and the commands (`deliver`, `publish`, `accept`...)
//! take input; `poll_event`, `poll_transmit` and `poll_timeout` give
//! output. `poll_transmit` lends each PUBLISH of a queued message as a
//! borrowed [`OutgoingPublish`](mqtt_codec::OutgoingPublish) inside a [`Transmit`],
//! encoded from the session's own copy without cloning anything.
//! Everything the protocol decides —
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
//!         let mut packets = Vec::new();
//!         client.poll_transmit(now, |t| packets.push(t.to_packet()));
//!         for p in packets.drain(..) { server.handle_packet(now, p).unwrap(); moved = true; }
//!         while let Some(ev) = server.poll_event() {
//!             match ev {
//!                 ServerEvent::Connect { .. } => server.accept(now, Accept::default()),
//!                 ServerEvent::Publish { packet_id: Some(id), .. } => { server.acknowledge(id, mqtt_codec::ReasonCode::Success); }
//!                 _ => {}
//!             }
//!         }
//!         server.poll_transmit(now, |t| packets.push(t.to_packet()));
//!         for p in packets.drain(..) { client.handle_packet(now, p).unwrap(); moved = true; }
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
    Accept, CloseReason, Closed, ScheduledWill, ServerConfig, ServerConnection, ServerEvent,
};
pub use state::{
    Delivery, DropCounts, DropReason, Inflight, InflightStage, Message, MessageProperties,
    MessageQueue, Overflow, QueueLimits, SessionState, SubscriptionRecord,
};
