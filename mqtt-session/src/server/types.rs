//! What the server role is configured with and what it reports: its
//! configuration, the application's acceptance of a CONNECT, the events,
//! and the end of a connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{
    Auth, ConnAckProperties, Connect, DecodeLimits, MqttString, PacketId, QoS, ReasonCode,
    Subscribe, Unsubscribe, Will,
};

use crate::error::ProtocolError;
use crate::state::{Message, QueueLimits, SessionState};
// Named by the documentation's links only.
#[cfg(doc)]
use super::ServerConnection;
#[cfg(doc)]
use crate::state::Delivery;

/// What a server allows its clients; sent to MQTT 5.0 clients in CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// QoS 1/2 publications a client may have unacknowledged towards the
    /// server (Receive Maximum): received, and not yet acknowledged with
    /// PUBACK or PUBREC. Default: 1024.
    pub receive_maximum: u16,
    /// QoS 1/2 deliveries the server keeps unacknowledged towards a client,
    /// at most (the client's Receive Maximum may lower it). Default: 1024.
    pub max_inflight: u16,
    /// Largest packet the server accepts, in bytes. Default: 1 MiB.
    pub max_packet_size: u32,
    /// Highest topic alias a client may use towards the server, and most
    /// aliases the server assigns towards a client. Default: 64.
    pub topic_alias_maximum: u16,
    /// Largest keep alive, in seconds. A 5.0 client asking for more (or for
    /// 0) is told this value as Server Keep Alive; a 3.1.1 client is refused
    /// with "identifier rejected", as mosquitto does. 65,535 (the default)
    /// imposes nothing.
    pub max_keepalive: u16,
    /// Time a new connection has to send CONNECT. Default: 10 s.
    pub connect_timeout: Duration,
    /// Highest QoS clients may publish with. Default: 2.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported. Default: true.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are supported. Default: true.
    pub wildcard_subscription_available: bool,
    /// Whether subscription identifiers are supported. Default: true.
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are supported. Default: true.
    pub shared_subscription_available: bool,
    /// Longest session expiry granted, in seconds; `u32::MAX` (the default)
    /// lets sessions of 3.1.1 clients without clean session live forever.
    pub max_session_expiry: u32,
    /// Limits of each session's queue of outgoing messages.
    pub queue: QueueLimits,
    /// Packets a client may send after CONNECT before it is accepted; they
    /// are processed on acceptance. Default: 64.
    pub max_early_packets: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            receive_maximum: 1024,
            max_inflight: 1024,
            max_packet_size: DecodeLimits::DEFAULT_MAX_PACKET_SIZE,
            topic_alias_maximum: 64,
            max_keepalive: u16::MAX,
            connect_timeout: Duration::from_secs(10),
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            max_session_expiry: u32::MAX,
            queue: QueueLimits::default(),
            max_early_packets: 64,
        }
    }
}

/// The application's decision to accept a CONNECT.
#[derive(Debug, Default)]
pub struct Accept {
    /// The stored session for this client id, if any. It is resumed unless
    /// the client asked for a clean start, in which case it is discarded.
    pub session: Option<SessionState>,
    /// The identifier to give a client that sent an empty one
    /// ([`ServerEvent::Connect::needs_client_id`]).
    pub assigned_client_id: Option<MqttString>,
    /// Extra CONNACK properties (reason string, response information,
    /// authentication method and data...); the limits are filled in by the
    /// session from [`ServerConfig`].
    pub properties: ConnAckProperties,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT with this reason code.
    ClientDisconnect(ReasonCode),
    /// The peer broke the protocol or a limit; it was told the reason code.
    Protocol(ProtocolError),
    /// The application refused the CONNECT with this code.
    Rejected(ReasonCode),
    /// The application closed the connection with this code (takeover,
    /// shutdown, administrative action).
    Server(ReasonCode),
    /// The transport failed or the peer closed it without DISCONNECT.
    ConnectionLost,
}

/// A will message to publish at `publish_at` unless the client reconnects
/// first (MQTT 5.0 §3.1.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledWill {
    /// The will.
    pub will: Will,
    /// The earlier of the will delay and the session's end [MQTT-3.1.3-9].
    pub publish_at: Instant,
}

/// The end of a connection, and what outlives it.
#[derive(Debug)]
pub struct Closed {
    /// Why it ended.
    pub reason: CloseReason,
    /// The will to publish, if the connection did not end normally
    /// [MQTT-3.1.2-8] [MQTT-3.1.2-10].
    pub will: Option<ScheduledWill>,
    /// The session, if the connection was accepted: with what was still in
    /// flight or queued, and the subscriptions (also needed to remove them
    /// from a router when the session ends now).
    pub session: Option<SessionState>,
    /// When the session expires: at the close itself for a Session Expiry
    /// Interval of 0 (the session ends with the connection), `None` never.
    pub session_expires_at: Option<Instant>,
}

/// What the server application must act on.
#[derive(Debug)]
pub enum ServerEvent {
    /// A valid CONNECT arrived: authenticate, look up the session, then call
    /// [`ServerConnection::accept`] or [`ServerConnection::reject`]. During
    /// enhanced authentication, [`ServerConnection::send_auth`] may come first.
    Connect {
        /// The packet.
        connect: Box<Connect>,
        /// The client identifier is empty: [`Accept::assigned_client_id`]
        /// must give one.
        needs_client_id: bool,
    },
    /// An application message to route. For QoS 1 and 2, call
    /// [`ServerConnection::acknowledge`] with `packet_id` once it is safely
    /// routed (stored, where persistence requires it).
    Publish {
        /// The message, in the `Arc` its deliveries share (made once here:
        /// the event then moves as a pointer, not as the whole message).
        message: Arc<Message>,
        /// Its identifier (QoS 1 and 2).
        packet_id: Option<PacketId>,
    },
    /// Topic filters to subscribe to: check them, then call
    /// [`ServerConnection::acknowledge_subscribe`]. Boxed, as `Auth`.
    Subscribe(Box<Subscribe>),
    /// Topic filters removed from the session (UNSUBACK is already sent).
    /// Boxed, as `Auth`.
    Unsubscribed(Box<Unsubscribe>),
    /// An outgoing QoS 1/2 message was fully acknowledged (PUBACK,
    /// PUBCOMP, or a PUBREC with an error code): the server may forget it.
    Delivered {
        /// The identifier it had (now free).
        packet_id: PacketId,
        /// The QoS it was sent with.
        qos: QoS,
        /// Its [`Delivery::tag`].
        tag: u64,
    },
    /// An incoming QoS 2 message was released (PUBREL): its identifier is
    /// no longer a duplicate's. With
    /// [`ServerConnection::set_confirm_releases`], call
    /// [`ServerConnection::complete_release`] once it is forgotten (PUBCOMP
    /// waits for that); otherwise PUBCOMP is already sent.
    Released {
        /// The identifier.
        packet_id: PacketId,
    },
    /// An AUTH packet: answer with [`ServerConnection::send_auth`], or
    /// accept, reject or close. Boxed: it is rare, and every connection
    /// has room for one event.
    Auth(Box<Auth>),
    /// The connection ended. The last event.
    Closed(Box<Closed>),
}
