//! The client role: connect, publish at every QoS, subscribe, keep alive,
//! and resume a session after reconnecting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mqtt_codec::{
    Auth, ConnAck, Connect, DecodeLimits, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties, Subscription,
    UnsubAck, Unsubscribe, UnsubscribeProperties,
};

use crate::error::ProtocolError;
use crate::inbound::{Inbound, PubRelOutcome};
use crate::outbound::{AckOutcome, Outbound, Transmit};
use crate::state::{Delivery, DropReason, Message, QueueLimits, SessionState};

/// What a client accepts from its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// QoS 1/2 messages the server may have unacknowledged towards us
    /// (Receive Maximum, sent in CONNECT if not 65,535). Default: 65,535.
    pub receive_maximum: u16,
    /// Largest packet we accept. Default: 1 MiB.
    pub max_packet_size: u32,
    /// Highest topic alias the server may use towards us. Default: 16.
    pub topic_alias_maximum: u16,
    /// Limits of the queue of messages waiting for the server's Receive
    /// Maximum.
    pub queue: QueueLimits,
    /// Most QoS 1/2 messages in flight to the server at once, whatever its
    /// Receive Maximum allows (an MQTT 3.1.1 server tells none, and some
    /// drop what comes beyond their own limit: mosquitto's
    /// `max_inflight_messages`, 20 by default). Default: 65,535 (the
    /// server's Receive Maximum alone).
    pub max_inflight: u16,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            max_packet_size: DecodeLimits::DEFAULT_MAX_PACKET_SIZE,
            topic_alias_maximum: 16,
            queue: QueueLimits::default(),
            max_inflight: u16::MAX,
        }
    }
}

/// What the client application is told.
#[derive(Debug)]
pub enum ClientEvent {
    /// The server accepted the connection.
    Connected(ConnAck),
    /// A message arrived (already acknowledged to the server).
    Message(Message),
    /// A message arrived, with manual acknowledgements
    /// ([`ClientConnection::set_manual_acks`]): its PUBACK or PUBREC waits
    /// for [`ClientConnection::acknowledge`] with `packet_id` (QoS 1/2).
    Publish {
        /// The message.
        message: Message,
        /// Its packet identifier (QoS 1/2), to acknowledge it with.
        packet_id: Option<PacketId>,
    },
    /// One of our QoS 1/2 messages completed its flow, with the server's
    /// reason code.
    Published {
        /// Its packet identifier.
        packet_id: PacketId,
        /// The PUBACK or PUBREC/PUBCOMP outcome.
        reason_code: ReasonCode,
        /// The [`Delivery::tag`] it was published with (0 for a plain
        /// message): what the application needs to forget it, e.g. from a
        /// store.
        tag: u64,
    },
    /// The server released a QoS 2 message we received (PUBREL), with
    /// [`ClientConnection::set_confirm_releases`]: PUBCOMP waits for
    /// [`ClientConnection::complete_release`].
    Released {
        /// The identifier released.
        packet_id: PacketId,
    },
    /// The answer to a SUBSCRIBE.
    Subscribed(SubAck),
    /// The answer to an UNSUBSCRIBE.
    Unsubscribed(UnsubAck),
    /// An AUTH packet from the server.
    Auth(Auth),
    /// The connection ended; the session (with what was still in flight or
    /// queued) is kept for a reconnection.
    Closed {
        /// The CONNACK refusal, the server's DISCONNECT reason, or the
        /// error that ended it.
        reason: ClientCloseReason,
        /// The session to resume with.
        session: SessionState,
    },
}

/// Why a client connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// The server refused the CONNECT.
    Refused(ReasonCode),
    /// The server sent DISCONNECT with this reason code.
    ServerDisconnect(ReasonCode),
    /// We disconnected.
    Disconnected,
    /// The server broke the protocol, or did not answer a ping.
    Protocol(ProtocolError),
    /// The transport failed.
    ConnectionLost,
}

/// The client side of one connection, without I/O.
///
/// # Call order
///
/// 1. [`ClientConnection::new`] with the CONNECT to send (and the session
///    of a previous connection to resume, if any).
/// 2. Write what [`ClientConnection::poll_transmit`] gives; feed each
///    decoded packet to [`ClientConnection::handle_packet`]; drain
///    [`ClientConnection::poll_event`]; call
///    [`ClientConnection::handle_timeout`] at [`ClientConnection::poll_timeout`].
/// 3. Commands: [`ClientConnection::publish`], [`ClientConnection::subscribe`],
///    [`ClientConnection::unsubscribe`], [`ClientConnection::disconnect`],
///    [`ClientConnection::connection_lost`].
///
/// ```text
///  new() ──CONNACK 0x00──▶ Connected ──DISCONNECT / error / ping timeout──▶ Closed
///    └────CONNACK ≥ 0x80──────────────────────────────────────────────────▶ Closed
/// ```
#[derive(Debug)]
pub struct ClientConnection {
    config: ClientConfig,
    version: ProtocolVersion,
    keep_alive: u16,
    connected: bool,
    closed: bool,
    session: Option<SessionState>,
    inbound: Inbound,
    outbound: Outbound,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    transmit: Vec<Packet>,
    events: VecDeque<ClientEvent>,
    /// Received QoS 1/2 messages wait for [`ClientConnection::acknowledge`].
    manual_acks: bool,
}

impl ClientConnection {
    /// Starts a connection: `connect` is the first packet to transmit. Its
    /// Receive Maximum, Maximum Packet Size and Topic Alias Maximum are set
    /// from `config`. `session` is the state of an earlier connection, to
    /// resume if `connect.clean_start` is false.
    pub fn new(
        config: ClientConfig,
        mut connect: Connect,
        session: Option<SessionState>,
        now: Instant,
    ) -> Self {
        let version = connect.protocol;
        if version.is_v5() {
            let p = &mut connect.properties;
            if config.receive_maximum != u16::MAX {
                p.receive_maximum = std::num::NonZeroU16::new(config.receive_maximum);
            }
            p.maximum_packet_size = std::num::NonZeroU32::new(config.max_packet_size);
            if config.topic_alias_maximum > 0 {
                p.topic_alias_maximum = Some(config.topic_alias_maximum);
            }
        }
        let expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        let session = match session {
            Some(s) if !connect.clean_start => s,
            _ => SessionState::new(connect.client_id.clone(), expiry),
        };
        // A 3.1.1 server is never told our Receive Maximum (nor topic
        // aliases), so it cannot be held to it.
        let inbound = if version.is_v5() {
            Inbound::new(config.receive_maximum, config.topic_alias_maximum)
        } else {
            Inbound::new(u16::MAX, 0)
        };
        Self {
            version,
            keep_alive: connect.keep_alive,
            connected: false,
            closed: false,
            session: Some(session),
            inbound,
            outbound: Outbound::new(1, u32::MAX, 0),
            last_sent: now,
            ping_sent: None,
            transmit: vec![Packet::Connect(Box::new(connect))],
            events: VecDeque::new(),
            manual_acks: false,
            config,
        }
    }

    /// The protocol version of this connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The decode limits for packets from the server.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_packet_size: self.config.max_packet_size,
            ..DecodeLimits::default()
        }
    }

    /// Whether CONNACK accepted the connection and it has not ended.
    pub fn is_connected(&self) -> bool {
        self.connected && !self.closed
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Our QoS 1/2 messages sent and not yet completed.
    pub fn inflight(&self) -> usize {
        self.outbound.held()
    }

    /// Messages waiting for the server's Receive Maximum.
    pub fn queued(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.queued.len())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Hands every packet there is to write to `f`, in order: the packets
    /// the connection made (CONNECT, acknowledgements, SUBSCRIBE, PINGREQ,
    /// resent PUBLISH packets...), then the PUBLISH of each queued message
    /// the server's Receive Maximum lets out, lent from the session's copy
    /// ([`Transmit::Publish`]): encoding it clones nothing. A caller that
    /// must keep a packet takes it with [`Transmit::to_packet`].
    ///
    /// The one way out for packets: call it after every input and command.
    pub fn poll_transmit(&mut self, now: Instant, mut f: impl FnMut(Transmit<'_>)) {
        let mut sent = false;
        for p in &self.transmit {
            sent = true;
            f(Transmit::Packet(p));
        }
        self.transmit.clear();
        if self.is_connected()
            && let Some(session) = self.session.as_mut()
        {
            self.outbound
                .send_queued(session, self.version, now, usize::MAX, |p| {
                    sent = true;
                    f(Transmit::Publish(p));
                });
        }
        if sent {
            self.last_sent = now;
        }
    }

    /// When [`ClientConnection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_connected() || self.keep_alive == 0 {
            return None;
        }
        let ka = Duration::from_secs(u64::from(self.keep_alive));
        Some(match self.ping_sent {
            Some(at) => at + ka,
            None => self.last_sent + ka,
        })
    }

    /// Sends PINGREQ when nothing was sent for a keep-alive period
    /// [MQTT-3.1.2-20]; ends the connection when the PINGRESP does not come
    /// within another one.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.ping_sent.is_some() {
            self.fail(ProtocolError::PingTimeout);
        } else {
            self.ping_sent = Some(now);
            self.transmit.push(Packet::PingReq);
        }
    }

    /// Queues a message to publish; [`ClientConnection::poll_transmit`]
    /// sends it. QoS 1/2 messages get their packet identifier when sent,
    /// within the server's Receive Maximum; the outcome comes as
    /// [`ClientEvent::Published`]. A message sent many times is given as
    /// one `Arc`, shared rather than copied. A [`Delivery`] sets the QoS
    /// and RETAIN flag to send with, and a [`Delivery::tag`] that comes
    /// back in [`ClientEvent::Published`] (a message or an `Arc` of one is
    /// sent as published, with tag 0).
    pub fn publish(&mut self, message: impl Into<Delivery>) -> Result<(), DropReason> {
        let mut delivery = message.into();
        // Identifiers of the subscriptions that brought a message here are
        // not the server's to receive [MQTT-3.3.4-6].
        delivery.subscription_ids.clear();
        delivery.shared_group = None;
        match self.session.as_mut() {
            Some(s) => s.enqueue(delivery, &self.config.queue),
            None => Err(DropReason::NoSession),
        }
    }

    /// Whether received QoS 1/2 messages wait for
    /// [`ClientConnection::acknowledge`] (off by default: acknowledged as
    /// they arrive). On, messages come as [`ClientEvent::Publish`] with
    /// their packet identifier: for an application that must take a
    /// message (store it, forward it) before the server may forget it.
    pub fn set_manual_acks(&mut self, on: bool) {
        self.manual_acks = on;
    }

    /// With [`ClientConnection::set_manual_acks`]: the application is done
    /// with a received QoS 1/2 message, so PUBACK or PUBREC goes out with
    /// `reason` (MQTT 5.0; a 3.1.1 server only learns that it was
    /// received). Acknowledgements leave in arrival order
    /// [MQTT-4.6.0-2]. Returns false if no message with that identifier
    /// was waiting.
    pub fn acknowledge(&mut self, packet_id: PacketId, reason: ReasonCode) -> bool {
        if self.closed {
            return false;
        }
        self.inbound
            .acknowledge(packet_id, reason, &mut self.transmit)
    }

    /// Makes the PUBCOMP answering each PUBREL wait for
    /// [`ClientConnection::complete_release`] ([`ClientEvent::Released`]
    /// says which): for an application that stores the identifiers of
    /// received QoS 2 messages, and must forget one durably before the
    /// server may reuse it. Off by default (PUBCOMP at once).
    pub fn set_confirm_releases(&mut self, on: bool) {
        self.inbound.set_confirm_releases(on);
    }

    /// With [`ClientConnection::set_confirm_releases`]: the application has
    /// forgotten the released identifier, so PUBCOMP goes out. Returns
    /// false if no such release was waiting.
    pub fn complete_release(&mut self, packet_id: PacketId) -> bool {
        if self.closed {
            return false;
        }
        self.inbound.complete_release(packet_id, &mut self.transmit)
    }

    /// The delivery in flight under `packet_id` before its PUBREC (the
    /// PUBLISH sent or about to be), if any: for an application that
    /// stores outgoing QoS 2 messages under the identifier they were sent
    /// with, so that after a crash they are resent with it.
    pub fn inflight_delivery(&self, packet_id: PacketId) -> Option<&Delivery> {
        match self.outbound.stage(packet_id)? {
            crate::state::InflightStage::Published(d) => Some(d),
            crate::state::InflightStage::Released => None,
        }
    }

    /// Sends SUBSCRIBE; returns its packet identifier, or `None` if the
    /// connection is not up or every identifier is in use.
    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Option<PacketId> {
        if !self.is_connected() {
            return None;
        }
        let packet_id = self.outbound.allocate_control()?;
        self.transmit.push(Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            subscriptions,
        }));
        Some(packet_id)
    }

    /// Sends UNSUBSCRIBE; returns its packet identifier.
    pub fn unsubscribe(&mut self, filters: Vec<MqttString>) -> Option<PacketId> {
        if !self.is_connected() {
            return None;
        }
        let packet_id = self.outbound.allocate_control()?;
        self.transmit.push(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties::default(),
            filters,
        }));
        Some(packet_id)
    }

    /// Sends AUTH (enhanced authentication, MQTT 5.0).
    pub fn send_auth(&mut self, auth: Auth) {
        if self.version.is_v5() && !self.closed {
            self.transmit.push(Packet::from(auth));
        }
    }

    /// Sends DISCONNECT and ends the connection; the session is kept.
    pub fn disconnect(&mut self, disconnect: Disconnect) {
        if self.closed {
            return;
        }
        self.transmit.push(Packet::from(disconnect));
        self.finish(ClientCloseReason::Disconnected);
    }

    /// The transport failed.
    pub fn connection_lost(&mut self) {
        self.finish(ClientCloseReason::ConnectionLost);
    }

    /// The bytes received could not be decoded.
    pub fn handle_decode_error(&mut self, error: mqtt_codec::DecodeError) {
        self.fail(ProtocolError::Decode(error));
    }

    /// A packet arrived from the server. An error has been acted on
    /// (DISCONNECT queued under 5.0, [`ClientEvent::Closed`] emitted).
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolError> {
        if self.closed {
            return Ok(());
        }
        let result = self.on_packet(now, packet);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    fn on_packet(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolError> {
        if !self.connected {
            return match packet {
                Packet::ConnAck(ack) => {
                    self.on_connack(*ack, now);
                    Ok(())
                }
                Packet::Auth(a) => {
                    self.events.push_back(ClientEvent::Auth(*a));
                    Ok(())
                }
                Packet::Disconnect(d) => {
                    self.finish(ClientCloseReason::ServerDisconnect(d.reason_code));
                    Ok(())
                }
                other => Err(ProtocolError::UnexpectedPacket {
                    packet: other.packet_type(),
                }),
            };
        }
        match packet {
            Packet::Publish(mut p) => {
                if self.inbound.on_publish(&mut p, &mut self.transmit)? {
                    let packet_id = p.packet_id;
                    let message = Message::from_publish(p, now);
                    if self.manual_acks {
                        self.events
                            .push_back(ClientEvent::Publish { message, packet_id });
                    } else {
                        if let Some(id) = packet_id {
                            self.inbound
                                .acknowledge(id, ReasonCode::Success, &mut self.transmit);
                        }
                        self.events.push_back(ClientEvent::Message(message));
                    }
                }
            }
            Packet::PubAck(a) => {
                let outcome = self.outbound.on_puback(a.packet_id);
                self.on_ack_outcome(a.packet_id, a.reason_code, outcome);
            }
            Packet::PubRec(a) => {
                let outcome = self.outbound.on_pubrec(&a, &mut self.transmit);
                self.on_ack_outcome(a.packet_id, a.reason_code, outcome);
            }
            Packet::PubComp(a) => {
                let outcome = self.outbound.on_pubcomp(a.packet_id);
                self.on_ack_outcome(a.packet_id, a.reason_code, outcome);
            }
            Packet::PubRel(a) => {
                if self.inbound.on_pubrel(a.packet_id, &mut self.transmit)
                    == PubRelOutcome::AwaitingConfirmation
                {
                    self.events.push_back(ClientEvent::Released {
                        packet_id: a.packet_id,
                    });
                }
            }
            Packet::SubAck(s) => {
                if self.outbound.on_control_ack(s.packet_id) {
                    self.events.push_back(ClientEvent::Subscribed(s));
                }
            }
            Packet::UnsubAck(u) => {
                if self.outbound.on_control_ack(u.packet_id) {
                    self.events.push_back(ClientEvent::Unsubscribed(u));
                }
            }
            Packet::PingResp => self.ping_sent = None,
            Packet::Disconnect(d) => {
                self.finish(ClientCloseReason::ServerDisconnect(d.reason_code))
            }
            Packet::Auth(a) => self.events.push_back(ClientEvent::Auth(*a)),
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq) => {
                return Err(ProtocolError::UnexpectedPacket {
                    packet: other.packet_type(),
                });
            }
        }
        Ok(())
    }

    fn on_ack_outcome(
        &mut self,
        packet_id: PacketId,
        reason_code: ReasonCode,
        outcome: AckOutcome,
    ) {
        if let AckOutcome::Completed { tag, .. } = outcome {
            self.events.push_back(ClientEvent::Published {
                packet_id,
                reason_code,
                tag,
            });
        }
    }

    fn on_connack(&mut self, ack: ConnAck, now: Instant) {
        if ack.reason_code.is_error() {
            self.finish(ClientCloseReason::Refused(ack.reason_code));
            return;
        }
        let Some(mut session) = self.session.take() else {
            return;
        };
        let p = &ack.properties;
        if let Some(ka) = p.server_keep_alive {
            self.keep_alive = ka;
        }
        if let Some(id) = &p.assigned_client_identifier {
            session.client_id = id.clone();
        }
        if !ack.session_present {
            // The server has no session: what was in flight is sent anew
            // as fresh messages, and QoS 2 receipts are forgotten.
            let inflight = std::mem::take(&mut session.inflight);
            for i in inflight.into_iter().rev() {
                if let crate::state::InflightStage::Published(d) = i.stage {
                    session.requeue_front(d);
                }
            }
            session.incoming_qos2.clear();
        }
        let window = p
            .receive_maximum
            .map_or(u16::MAX, |r| r.get())
            .min(self.config.max_inflight);
        let max_packet = p.maximum_packet_size.map_or(u32::MAX, |m| m.get());
        self.outbound = Outbound::new(window, max_packet, p.topic_alias_maximum.unwrap_or(0));
        self.outbound
            .resume(&mut session, self.version, now, &mut self.transmit);
        self.inbound.resume(&session.incoming_qos2);
        session.incoming_qos2.clear();
        self.session = Some(session);
        self.connected = true;
        self.events.push_back(ClientEvent::Connected(ack));
    }

    fn fail(&mut self, error: ProtocolError) {
        if self.closed {
            return;
        }
        if self.connected && self.version.is_v5() {
            self.transmit
                .push(Packet::from(Disconnect::new(error.reason_code())));
        }
        self.finish(ClientCloseReason::Protocol(error));
    }

    fn finish(&mut self, reason: ClientCloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut session = self
            .session
            .take()
            .unwrap_or_else(|| SessionState::new(MqttString::new(), 0));
        self.outbound.suspend(&mut session);
        // Before CONNACK the inbound half was never resumed: the session
        // still holds the QoS 2 receipts of the previous connection.
        if self.connected {
            session.incoming_qos2 = self.inbound.unreleased();
        }
        self.events
            .push_back(ClientEvent::Closed { reason, session });
    }
}

impl Message {
    /// A message to publish, without properties or expiry.
    pub fn new(topic: MqttString, payload: bytes::Bytes, qos: QoS, retain: bool) -> Self {
        Self {
            topic,
            payload,
            qos,
            retain,
            properties: Default::default(),
            expires_at: None,
        }
    }
}
