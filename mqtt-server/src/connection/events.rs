//! The session's events: CONNECT (authentication, the registry's claim,
//! takeover), SUBSCRIBE and UNSUBSCRIBE, released QoS 2 identifiers, and
//! the end of the connection (will, shared messages handed on, the session
//! parked or ended).

use super::*;

impl Task<'_> {
    pub(super) async fn process_events(&mut self) {
        // A stalled publication holds back every later event: messages
        // from one client stay in order.
        while self.stalled.is_none() {
            if !self.flush_outbox_before_next_event() {
                break;
            }
            let Some(event) = self.conn.poll_event() else {
                break;
            };
            match event {
                ServerEvent::Connect {
                    connect,
                    needs_client_id,
                } => Box::pin(self.on_connect(connect, needs_client_id)).await,
                other => self.on_event(other),
            }
        }
        self.flush_outbox();
    }

    /// Handles the events that need no waiting, in order, up to the first
    /// that does (a CONNECT) or a stall. Called after each decoded packet,
    /// so that a PUBLISH is routed while it is still in the cache and the
    /// event queue never grows with a whole read's worth of packets.
    pub(super) fn process_ready_events(&mut self) {
        while self.stalled.is_none()
            && self
                .conn
                .peek_event()
                .is_some_and(|e| !matches!(e, ServerEvent::Connect { .. }))
        {
            if !self.flush_outbox_before_next_event() {
                return;
            }
            if let Some(event) = self.conn.poll_event() {
                self.on_event(event);
            }
        }
    }

    /// One event that needs no waiting.
    pub(super) fn on_event(&mut self, event: ServerEvent) {
        match event {
            // Never here: process_events gives CONNECT to on_connect,
            // and process_ready_events stops before it.
            ServerEvent::Connect { .. } => {}
            ServerEvent::Publish { message, packet_id } => self.on_publish(message, packet_id),
            ServerEvent::Subscribe(s) => self.on_subscribe(*s),
            ServerEvent::Unsubscribed(u) => {
                if let Some(me) = &self.handle {
                    let mut router = self.broker.router_mut();
                    for f in &u.filters {
                        if router.unsubscribe(me, f) {
                            self.subscriptions.remove(f.as_str());
                        }
                    }
                }
                self.save_session();
            }
            ServerEvent::Delivered {
                packet_id,
                qos,
                tag,
            } => {
                if self.persistent
                    && let Some(client_id) = self.conn.client_id().cloned()
                {
                    if qos == QoS::ExactlyOnce {
                        self.batch().remove_inflight(&client_id, packet_id);
                    } else if tag != 0 {
                        self.batch().remove_queued(&client_id, tag);
                    }
                }
            }
            ServerEvent::Released { packet_id } => {
                if self.persistent
                    && let Some(client_id) = self.conn.client_id().cloned()
                {
                    self.batch().remove_incoming_qos2(&client_id, packet_id);
                    let ticket = self.commits.batch.as_ref().map_or(0, |b| b.0);
                    self.commits
                        .after
                        .entry(ticket)
                        .or_default()
                        .push(AfterCommit::Complete(packet_id));
                }
            }
            ServerEvent::Auth(_) => {
                // No enhanced authentication method is supported.
                self.conn.reject(
                    now(),
                    ReasonCode::BadAuthenticationMethod,
                    ConnAckProperties::default(),
                );
                self.conn.close(now(), ReasonCode::BadAuthenticationMethod);
            }
            ServerEvent::Closed(closed) => self.on_closed(*closed),
        }
    }

    pub(super) async fn on_connect(&mut self, connect: Box<Connect>, needs_client_id: bool) {
        let broker = self.broker;
        let now = now();
        if connect.properties.authentication_method.is_some() {
            self.conn.reject(
                now,
                ReasonCode::BadAuthenticationMethod,
                ConnAckProperties::default(),
            );
            return;
        }
        if connect
            .client_id
            .as_str()
            .starts_with(crate::bridge::RESERVED_PREFIX)
        {
            // The bridges' own sessions: no client may take one over.
            tracing::info!(peer = %self.peer, client_id = %connect.client_id, "CONNECT refused: client identifiers starting with $bridge/ are the bridges'");
            self.conn.reject(
                now,
                ReasonCode::ClientIdentifierNotValid,
                ConnAckProperties::default(),
            );
            return;
        }
        let identity = match broker
            .security
            .authenticate(self.auth, *self.peer, &connect, now)
            .await
        {
            Ok(identity) => identity,
            Err(code) => {
                crate::auth::count_refusal(&broker.stats, code);
                self.conn.reject(now, code, ConnAckProperties::default());
                return;
            }
        };
        let client_id = if needs_client_id {
            match MqttString::try_from(broker.assign_client_id()) {
                Ok(id) => id,
                Err(_) => return,
            }
        } else {
            // Kept as long as the session: not sharing the read buffer.
            connect.client_id.detached()
        };
        let access = identity.access(client_id.as_str());
        if let (Some(a), Some(will)) = (&access, &connect.will)
            && !a.can_publish(will.topic.as_str())
        {
            tracing::info!(peer = %self.peer, topic = %will.topic, "CONNECT refused: the ACL denies the will topic");
            crate::auth::count_refusal(&broker.stats, ReasonCode::NotAuthorized);
            self.conn
                .reject(now, ReasonCode::NotAuthorized, ConnAckProperties::default());
            return;
        }

        // One step under the registry's lock: this connection owns the
        // client id from here on, and a CONNECT a moment later takes it
        // from this one [MQTT-3.1.4-3]. A clean start puts a new session
        // in place at once; its sequence numbers go on from the old one's,
        // never reused for a client id.
        let (control_tx, control_rx) = control_channel();
        let claim = lock(&broker.sessions).claim(
            &client_id,
            self.id,
            control_tx,
            connect.clean_start,
            |old| {
                let h = Arc::new(SessionHandle::new(broker.next_id(), client_id.clone()));
                if let Some(old) = old {
                    h.next_seq
                        .store(old.next_seq.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                h
            },
        );
        self.control_rx = Some(control_rx);
        let handle = claim.session;
        let old = claim.replaced.unwrap_or_else(|| handle.clone());
        // The old session's state: from the connection that owned it (it
        // closes with 0x8E and hands it over), or parked offline (also
        // where a connection that ended just before our takeover request
        // reached it left it).
        let mut state = None;
        let mut timed_out = false;
        if let Some((_, ctl)) = claim.previous {
            let (tx, rx) = oneshot::channel();
            if ctl.send(Control::TakeOver(tx)).is_ok() {
                match tokio::time::timeout(TAKEOVER_TIMEOUT, rx).await {
                    Ok(reply) => state = reply.ok().flatten(),
                    Err(_) => timed_out = true,
                }
            }
        }
        if state.is_none() {
            state = lock(&old.offline).take().map(|p| p.state);
        }
        if timed_out && state.is_none() && !connect.clean_start {
            // The previous connection did not hand the session over in
            // time: going on without it would lose what it holds (messages
            // in flight and queued, subscriptions). Refused as busy; the
            // previous connection parks the session as it ends, for the
            // client's next attempt. (A clean start needs no state.)
            lock(&broker.sessions).release(&client_id, self.id);
            Stats::add(&broker.stats.takeover_timeouts, 1);
            tracing::warn!(peer = %self.peer, client_id = %client_id, "CONNECT refused (server busy): the connection that owned the session did not hand it over within 5 s");
            self.control_rx = None;
            self.conn
                .reject(now, ReasonCode::ServerBusy, ConnAckProperties::default());
            return;
        }
        // After the takeover, so that the will the previous connection
        // scheduled as it closed is seen too.
        broker.on_reconnect_will(&client_id, connect.clean_start, now);
        let resumed = state.is_some() && !connect.clean_start;
        let old_persistent = old.is_persistent();
        if !Arc::ptr_eq(&old, &handle)
            && let Some(s) = state.take()
        {
            broker.end_session(&old, s, now);
        }
        self.subscriptions = state
            .as_ref()
            .map_or_else(Held::default, |s| Held::of(s.subscriptions.keys()));
        self.rules = broker
            .rules_for(client_id.as_str(), identity.username())
            .or_else(|| self.auth.rules.clone());
        handle.connected.store(true, Ordering::Release);
        *lock(&handle.access) = access.clone();
        self.access = access;
        self.handle = Some(SessionRef(handle));
        // Then in the cluster: a connection elsewhere closes with 0x8E.
        broker.cluster_claim(&client_id, self.id);
        Stats::add(&broker.stats.clients_connected, 1);
        tracing::debug!(peer = %self.peer, client_id = %client_id, version = %connect.protocol, "client connected");
        let persistence = broker.persist.is_some();
        self.conn.accept(
            now,
            Accept {
                session: state,
                assigned_client_id: needs_client_id.then_some(client_id.clone()),
                properties: ConnAckProperties::default(),
            },
        );
        let info = Arc::new(ClientInfo {
            address: *self.peer,
            username: identity.username().map(Box::from),
            connected_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            listener: self.auth.listener_index,
            keep_alive: self.conn.keep_alive(),
            protocol: connect.protocol,
            clean_start: connect.clean_start,
        });
        if let Some(h) = &self.handle {
            *lock(&h.0.info) = Some(info);
        }
        if !persistence {
            return;
        }
        let Some(session) = self.conn.session() else {
            return;
        };
        self.persistent = session.expiry_interval > 0;
        // PUBCOMP once the released identifier is forgotten on disk.
        self.conn.set_confirm_releases(self.persistent);
        // Completed deliveries are only removed from the store.
        self.conn.set_report_deliveries(self.persistent);
        let was_persistent = self
            .handle
            .as_ref()
            .is_some_and(|h| h.0.persistent.swap(self.persistent, Ordering::AcqRel));
        if (!resumed && old_persistent) || (was_persistent && !self.persistent) {
            // What was stored for this client id is gone: a new session.
            self.batch().delete_session(&client_id);
        }
        if self.persistent {
            self.save_session();
        }
    }

    pub(super) fn on_subscribe(&mut self, s: Subscribe) {
        let broker = self.broker;
        let Some(me) = self.handle.clone() else {
            return;
        };
        let access = self.access.as_deref();
        let session = self.conn.session();
        let granted = broker.router_mut().subscribe_packet(
            &me,
            &s,
            &mut self.subscriptions,
            |filter| session.is_some_and(|session| session.subscriptions.contains_key(filter)),
            self.rules.as_deref().unwrap_or(&broker.subscribe_rules),
            |filter| {
                let allowed = access.is_none_or(|a| a.can_subscribe(filter.as_str()));
                if !allowed {
                    tracing::debug!(peer = %self.peer, %filter, "SUBSCRIBE denied by the ACL");
                }
                allowed
            },
        );
        let mut retained: Vec<Delivery> = Vec::new();
        let mut codes = Vec::with_capacity(granted.len());
        for g in granted {
            codes.push(g.code);
            if let Some((filter, qos)) = &g.retained {
                let store = broker.retained.read().unwrap_or_else(|p| p.into_inner());
                store.deliveries_for(
                    filter,
                    *qos,
                    s.properties.subscription_identifier,
                    now(),
                    |topic| access.is_none_or(|a| a.can_read(topic)),
                    &mut retained,
                );
            }
        }
        self.conn.acknowledge_subscribe(s.packet_id, codes);
        // SUBACK leaves once the subscriptions are stored.
        self.save_session();
        if !retained.is_empty() {
            // Not into the session's queue at once, whose limit would drop
            // all but the first `max_queued_messages` of them: paced by
            // `pull_mailbox` as room frees up.
            let backlog = self.retained.get_or_insert_with(Box::default);
            let room = broker
                .config
                .max_retained_messages
                .saturating_sub(backlog.len());
            if retained.len() > room {
                let over = retained.len() - room;
                Stats::add(&broker.stats.dropped_queue_full, over as u64);
                tracing::warn!(peer = %self.peer, dropped = over, "retained messages beyond max_retained_messages waiting for one client: dropped");
            }
            backlog.extend(retained.into_iter().take(room));
            if let Some(h) = &self.handle {
                // The connection's loop takes them at its next turn.
                h.0.notify.notify_one();
            }
        }
    }

    pub(super) fn on_closed(&mut self, closed: Closed) {
        let broker = self.broker;
        let now = now();
        match &closed.reason {
            CloseReason::Protocol(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "connection closed")
            }
            other => tracing::debug!(peer = %self.peer, reason = ?other, "connection closed"),
        }
        let Some(SessionRef(handle)) = self.handle.take() else {
            return;
        };
        broker.cluster_release(&handle.client_id, self.id);
        Stats::sub(&broker.stats.clients_connected, 1);
        handle.connected.store(false, Ordering::Release);
        // Publishers waiting for room in this session's queue stop waiting.
        handle.space.notify_waiters();
        if let Some(w) = closed.will {
            if w.publish_at <= now {
                broker.publish_will(w.will, now);
            } else {
                broker.schedule_will(handle.client_id.clone(), w.will, w.publish_at);
            }
        }
        let Some(mut session) = closed.session else {
            lock(&broker.sessions).release(&handle.client_id, self.id);
            return;
        };
        // Retained messages not handed over yet wait in the session, within
        // its queue's limits, as they would have from the start.
        for d in self.retained.take().into_iter().flat_map(|b| *b) {
            let _ = session.enqueue(d, &broker.queue_limits);
        }
        // Messages chosen for this member of a shared subscription and not
        // acknowledged go to another member (MQTT 5.0 §4.8.2); those in the
        // mailbox too. Those with no other member to go to stay.
        let me = SessionRef(handle.clone());
        let mut shared = session.take_shared();
        let mut dropped = Vec::new();
        {
            let mut mailbox = lock(&handle.mailbox);
            let all: Vec<Delivery> = mailbox.drain().collect();
            for d in all {
                if d.shared_group.is_some() {
                    shared.push(d);
                } else {
                    let _ = mailbox.push_with(d, &broker.queue_limits, |d| dropped.push(d.tag));
                }
            }
        }
        if self.persistent {
            for tag in dropped.into_iter().filter(|&t| t != 0) {
                self.batch().remove_queued(&handle.client_id, tag);
            }
        }
        // What this connection gathered goes before what follows.
        self.flush_batch();
        if !shared.is_empty() {
            for d in broker.reassign_shared(&me, shared, now) {
                let _ = session.enqueue(d, &broker.queue_limits);
            }
        }
        let takeover = self.takeover.take();
        match closed.session_expires_at {
            Some(at) if at <= now => {
                lock(&broker.sessions).release(&handle.client_id, self.id);
                broker.end_session(&handle, session, now);
                if let Some(reply) = takeover {
                    let _ = reply.send(None);
                }
            }
            // The new connection decides what becomes of the session,
            // unless it gave up waiting for it (then it is parked below,
            // if the registry still has it: a clean start replaced it).
            _ if takeover.is_some() => {
                if let Some(reply) = takeover
                    && let Err(Some(session)) = reply.send(Some(session))
                {
                    self.park(&handle, session, closed.session_expires_at, now, true);
                }
            }
            at => self.park(&handle, session, at, now, false),
        }
    }

    /// Parks an ended connection's session offline (stored, if
    /// persistent) until a CONNECT claims it or it expires at `at`. With
    /// `if_registered`, only if the registry still has this session (a
    /// clean start may have replaced it: then it is discarded, as asked).
    fn park(
        &self,
        handle: &Arc<SessionHandle>,
        session: mqtt_session::SessionState,
        at: Option<Instant>,
        now: Instant,
        if_registered: bool,
    ) {
        let broker = self.broker;
        // Parked under the registry's lock, before the release: a CONNECT
        // that claims the session next finds it there.
        let mut sessions = lock(&broker.sessions);
        if if_registered
            && !sessions
                .get(&handle.client_id)
                .is_some_and(|h| Arc::ptr_eq(h, handle))
        {
            return;
        }
        if self.persistent
            && let Some(persist) = &broker.persist
        {
            // The deadline is stored: time spent down counts.
            let mut b = Persist::batch(now);
            b.save_session(&session, at);
            persist.submit_logged(b);
        }
        *lock(&handle.offline) = Some(Box::new(Parked {
            state: session,
            expires_at: at,
        }));
        sessions.release(&handle.client_id, self.id);
        drop(sessions);
        if let Some(at) = at {
            broker.schedule_expiry(handle.clone(), at);
        }
        // Deliveries keep arriving in the mailbox while offline.
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use mqtt_codec::{ConnAck, Connect, DecodeLimits, MqttString, Packet, ProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Config;

    /// A connection that owns a session and does not answer the takeover
    /// request of a new CONNECT for it (stuck, here a request nobody
    /// reads): the new CONNECT is refused with 0x89 (Server busy) after
    /// the takeover timeout rather than accepted without the session's
    /// state, which would lose what it holds; the claim is released, so
    /// that the client's next attempt finds the session. Paused time.
    #[tokio::test(start_paused = true)]
    async fn a_takeover_the_owner_does_not_answer_is_refused_as_busy_not_accepted_empty() {
        let broker = Arc::new(Broker::new(Config::default()));
        let id = MqttString::from_static("c1");
        let (stuck_tx, _stuck_rx) = crate::handle::control_channel();
        let claim = lock(&broker.sessions).claim(&id, u64::MAX, stuck_tx, false, |_| {
            Arc::new(SessionHandle::new(broker.next_id(), id.clone()))
        });
        assert!(claim.previous.is_none());

        let (mut client, server) = tokio::io::duplex(4096);
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let auth = ConnAuth {
            listener: None,
            cert_username: None,
            rules: None,
            listener_index: 0,
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let served = tokio::spawn(super::super::serve(
            broker.clone(),
            server,
            peer,
            shutdown,
            auth,
        ));
        let mut connect = Connect::new(ProtocolVersion::V5, id.clone());
        connect.clean_start = false;
        let mut out = BytesMut::new();
        Packet::Connect(Box::new(connect))
            .encode(ProtocolVersion::V5, &mut out)
            .unwrap();
        client.write_all(&out).await.unwrap();

        let mut read = BytesMut::new();
        let packet = loop {
            if let Some(p) =
                Packet::decode(&mut read, ProtocolVersion::V5, &DecodeLimits::default()).unwrap()
            {
                break p;
            }
            assert!(
                client.read_buf(&mut read).await.unwrap() > 0,
                "closed without CONNACK"
            );
        };
        let Packet::ConnAck(ack) = packet else {
            panic!("{packet:?}");
        };
        let ConnAck { reason_code, .. } = *ack;
        assert_eq!(reason_code, ReasonCode::ServerBusy);
        assert_eq!(Stats::get(&broker.stats.takeover_timeouts), 1);
        served.await.unwrap();
        // Released: nobody owns the session, which stays registered.
        let sessions = lock(&broker.sessions);
        assert_eq!(sessions.owner(&id), None);
        assert!(sessions.get(&id).is_some());
    }
}
