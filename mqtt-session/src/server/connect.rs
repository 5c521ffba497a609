//! CONNECT to CONNACK: the checks made when CONNECT arrives, and the
//! application's answer (accept with the server's limits and the resumed
//! session, or reject), with enhanced authentication between them.

use std::time::Instant;

use mqtt_codec::{
    Auth, ConnAck, ConnAckProperties, Connect, DecodeLimits, MqttString, Packet, QoS, ReasonCode,
    Will,
};

use super::{Accept, CloseReason, ServerConnection, ServerEvent, State};
use crate::error::ProtocolError;
use crate::inbound::Inbound;
use crate::outbound::Outbound;
use crate::state::SessionState;

impl ServerConnection {
    pub(super) fn on_connect(
        &mut self,
        now: Instant,
        connect: Box<Connect>,
    ) -> Result<(), ProtocolError> {
        self.version = connect.protocol;
        self.bridge = connect.bridge;
        self.state = State::Connecting;
        let v5 = self.version.is_v5();
        if !v5 {
            // A 3.1.1 client is never told our Receive Maximum (nor topic
            // aliases), so it cannot be held to it.
            self.inbound = Inbound::new(u16::MAX, 0);
        }
        let max_ka = self.config.max_keepalive;
        let needs_client_id = connect.client_id.is_empty();
        if needs_client_id && !v5 && !connect.clean_start {
            // [MQTT-3.1.3-8]: a 3.1.1 client without an identifier must
            // ask for a clean session.
            self.reject_now(now, ReasonCode::ClientIdentifierNotValid);
            return Ok(());
        }
        if !v5 && max_ka < u16::MAX && (connect.keep_alive == 0 || connect.keep_alive > max_ka) {
            self.reject_now(now, ReasonCode::ClientIdentifierNotValid);
            return Ok(());
        }
        self.connect_expiry_zero = match connect.properties.session_expiry_interval {
            Some(s) => s == 0,
            None => v5 || connect.clean_start,
        };
        self.connect = Some(connect.clone());
        self.events.push(ServerEvent::Connect {
            connect,
            needs_client_id,
        });
        Ok(())
    }

    pub(super) fn reject_now(&mut self, now: Instant, code: ReasonCode) {
        self.transmit.push(Packet::from(ConnAck::new(code, false)));
        self.finish(now, CloseReason::Rejected(code));
    }

    /// Refuses the CONNECT with `code` (mapped to a 3.1.1 return code for
    /// 3.1.1 clients) and ends the connection.
    pub fn reject(&mut self, now: Instant, code: ReasonCode, properties: ConnAckProperties) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        let mut ack = ConnAck::new(code, false);
        ack.properties = properties;
        self.transmit.push(Packet::from(ack));
        self.finish(now, CloseReason::Rejected(code));
    }

    /// Accepts the CONNECT: sends CONNACK with the server's limits, resumes
    /// or starts the session, resends what was in flight, and processes
    /// packets the client sent meanwhile.
    pub fn accept(&mut self, now: Instant, accept: Accept) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        // The CONNECT is not kept: its fields are slices of the read buffer
        // that would stay allocated for the connection's lifetime.
        let Some(connect) = self.connect.take() else {
            return;
        };
        let v5 = self.version.is_v5();
        let cfg = &self.config;
        let mut props = accept.properties;

        let client_id = match (&accept.assigned_client_id, connect.client_id.is_empty()) {
            (Some(id), true) => {
                if v5 {
                    props.assigned_client_identifier = Some(id.clone());
                }
                id.clone()
            }
            // Kept for the whole session: not sharing the read buffer.
            _ => connect.client_id.detached(),
        };

        let asked_expiry = match connect.properties.session_expiry_interval {
            Some(s) => s,
            None if v5 || connect.clean_start => 0,
            None => u32::MAX,
        };
        let expiry = asked_expiry.min(cfg.max_session_expiry);
        if v5 && expiry != asked_expiry {
            props.session_expiry_interval = Some(expiry);
        }

        self.keep_alive = connect.keep_alive;
        if cfg.max_keepalive < u16::MAX
            && (connect.keep_alive == 0 || connect.keep_alive > cfg.max_keepalive)
        {
            self.keep_alive = cfg.max_keepalive;
            if v5 {
                props.server_keep_alive = Some(cfg.max_keepalive);
            }
        }

        if v5 {
            if cfg.receive_maximum != u16::MAX {
                props.receive_maximum = std::num::NonZeroU16::new(cfg.receive_maximum);
            }
            if cfg.max_packet_size < DecodeLimits::PROTOCOL_MAX_PACKET_SIZE {
                props.maximum_packet_size = std::num::NonZeroU32::new(cfg.max_packet_size);
            }
            if cfg.topic_alias_maximum > 0 {
                props.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            }
            if cfg.maximum_qos != QoS::ExactlyOnce {
                props.maximum_qos = Some(cfg.maximum_qos);
            }
            let off = |available: bool| (!available).then_some(false);
            props.retain_available = off(cfg.retain_available);
            props.wildcard_subscription_available = off(cfg.wildcard_subscription_available);
            props.subscription_identifier_available = off(cfg.subscription_identifiers_available);
            props.shared_subscription_available = off(cfg.shared_subscription_available);
        }

        let resumed = accept.session.filter(|_| !connect.clean_start);
        let session_present = resumed.is_some();
        let mut session = resumed.unwrap_or_else(|| SessionState::new(client_id.clone(), expiry));
        session.client_id = client_id;
        session.expiry_interval = expiry;

        let client_receive_max = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, |r| r.get());
        let client_max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(u32::MAX, |m| m.get());
        let alias_max = connect
            .properties
            .topic_alias_maximum
            .unwrap_or(0)
            .min(cfg.topic_alias_maximum);
        self.outbound = Outbound::new(
            client_receive_max.min(cfg.max_inflight),
            client_max_packet,
            alias_max,
        );

        let mut ack = ConnAck::new(ReasonCode::Success, session_present);
        ack.properties = props;
        self.transmit.push(Packet::from(ack));
        self.outbound
            .resume(&mut session, self.version, now, &mut self.transmit);
        self.inbound.resume(&session.incoming_qos2);
        session.incoming_qos2.clear();
        self.session = Some(session);
        self.will = connect.will.map(|w| Box::new(detach_will(w)));
        self.state = State::Connected;

        for packet in std::mem::take(&mut self.early) {
            if let Err(e) = self.on_packet(now, packet) {
                self.fail(now, e);
                break;
            }
        }
    }

    /// Sends an AUTH packet (enhanced authentication, MQTT 5.0).
    pub fn send_auth(&mut self, auth: Auth) {
        if self.version.is_v5() && !self.is_closed() {
            self.transmit.push(Packet::from(auth));
        }
    }
}

/// Copies a will out of the packet buffer it was decoded from, so that a
/// small will does not keep a whole read buffer alive for the connection's
/// lifetime.
fn detach_will(mut will: Will) -> Will {
    let copy = MqttString::detached;
    will.topic = copy(&will.topic);
    will.payload = bytes::Bytes::copy_from_slice(&will.payload);
    let p = &mut will.properties;
    p.content_type = p.content_type.as_ref().map(copy);
    p.response_topic = p.response_topic.as_ref().map(copy);
    p.correlation_data = p
        .correlation_data
        .as_ref()
        .map(|b| bytes::Bytes::copy_from_slice(b));
    for u in &mut p.user_properties {
        u.name = copy(&u.name);
        u.value = copy(&u.value);
    }
    will
}
