//! What a connection reads: packets decoded and handed to the session,
//! and the client's publications routed (through the outbox, or stalled
//! while a subscriber's queue is full).

use super::*;

/// A publication whose deliveries wait for room.
pub(super) struct Stall {
    /// The acknowledgement waiting (see [`Commits::acks`]).
    pub(super) serial: Option<u64>,
    pub(super) deliveries: Blocked<SessionRef>,
    /// When the wait began; it ends at
    /// [`DeliveryPolicy::deadline`](mqtt_router::DeliveryPolicy::deadline).
    pub(super) since: Instant,
}

/// Waits until `h`'s mailbox has room for `size` bytes, or it is no longer
/// worth waiting for (congested, disconnected: see
/// [`Subscriber::worth_waiting_for`](mqtt_router::Subscriber::worth_waiting_for)).
pub(super) async fn wait_room(h: &SessionHandle, size: usize, limits: &mqtt_session::QueueLimits) {
    let notified = h.space.notified();
    tokio::pin!(notified);
    // Registered before the check: a notification between the two is
    // not lost.
    notified.as_mut().enable();
    if lock(&h.mailbox).has_room(size, limits) || !h.subscriber().worth_waiting_for() {
        return;
    }
    notified.await;
}

impl Task<'_> {
    /// Hands what was read to the session, packet by packet, and handles
    /// the events as they come; then the deliveries they made wait no more.
    /// Their acknowledgements may reopen the receive window, and decoding
    /// goes on.
    pub(super) fn decode(&mut self, rbuf: &mut BytesMut) {
        loop {
            self.window_waits = false;
            self.decode_packets(rbuf);
            self.flush_outbox();
            if !self.window_waits || self.conn.receive_window_full() {
                return;
            }
        }
    }

    /// Whether a publication of `event` goes through the outbox.
    pub(super) fn outbox_takes(&self, event: &ServerEvent) -> bool {
        matches!(event, ServerEvent::Publish { .. }) && self.outbox_in_use()
    }

    /// Whether publications go through the outbox: no store (nothing to
    /// write before a delivery is queued), and publishers that may wait
    /// for room.
    pub(super) fn outbox_in_use(&self) -> bool {
        self.broker.persist.is_none() && self.broker.delivery.publishers_wait()
    }

    /// Puts the outbox's deliveries in their mailbox; those that do not
    /// fit stall the connection, as a publication's would. The outbox
    /// itself is kept for the next publications.
    pub(super) fn flush_outbox(&mut self) {
        let Some(outbox) = self.outbox.as_deref_mut() else {
            return;
        };
        if !outbox.is_empty() {
            let mut routed = Routed::default();
            self.broker.flush_outbox(outbox, &mut routed);
            self.counts.routed = self.counts.routed.saturating_add(routed.queued as u32);
            self.stall_on(routed.blocked, None);
        }
        self.release_deferred_acks();
    }

    /// Acknowledges the publications whose deliveries went through the
    /// outbox, once every one of those is in its mailbox (the outbox empty,
    /// no stall): an acknowledged message is queued for its subscriber.
    pub(super) fn release_deferred_acks(&mut self) {
        if self.stalled.is_some() {
            return;
        }
        if let Some(outbox) = self.outbox.as_deref_mut()
            && outbox.is_empty()
        {
            for (id, code) in outbox.acks.drain(..) {
                self.conn.acknowledge(id, code);
            }
        }
    }

    /// The connection went quiet: an outbox with nothing in it is given
    /// back, so an idle connection keeps none.
    pub(super) fn quiet(&mut self) {
        if self
            .outbox
            .as_deref()
            .is_some_and(|o| o.is_empty() && o.acks.is_empty())
        {
            self.outbox = None;
        }
    }

    /// Stops reading and handling events until `blocked` (if any) has room
    /// in its mailboxes, for at most `max_publish_wait_ms`; `serial` is the
    /// acknowledgement it holds back. A stall already there (only outbox
    /// deliveries, which hold no acknowledgement, can join one) takes them
    /// after its own.
    pub(super) fn stall_on(&mut self, blocked: Blocked<SessionRef>, serial: Option<u64>) {
        if blocked.is_empty() {
            return;
        }
        match &mut self.stalled {
            Some(stall) => {
                debug_assert!(serial.is_none(), "a publication handled while stalled");
                stall.deliveries.append(blocked);
            }
            None => {
                Stats::add(&self.broker.stats.publish_waits, 1);
                self.stalled = Some(Box::new(Stall {
                    serial,
                    deliveries: blocked,
                    since: self.now,
                }));
            }
        }
    }

    /// Before an event the outbox does not take, the outbox's deliveries
    /// go first. Returns whether events may still be handled (false: that
    /// stalled the connection).
    pub(super) fn flush_outbox_before_next_event(&mut self) -> bool {
        if self
            .conn
            .peek_event()
            .is_some_and(|e| !self.outbox_takes(e))
        {
            self.flush_outbox();
        }
        self.stalled.is_none()
    }

    pub(super) fn decode_packets(&mut self, rbuf: &mut BytesMut) {
        let limits = self.conn.decode_limits();
        self.now = now();
        let now = self.now;
        loop {
            if self.conn.is_closed() {
                rbuf.clear();
                return;
            }
            if let Some(until) = self.quota.throttled_until(now) {
                if self.throttled.is_none() {
                    Stats::add(&self.broker.stats.publish_throttled, 1);
                }
                self.throttled = Some(until);
                return;
            }
            if self.conn.receive_window_full() {
                // The client sent beyond our Receive Maximum: what it sent
                // waits in the read buffer, and the socket is not read,
                // until acknowledgements leave (see `window_waits`).
                Stats::add(&self.broker.stats.receive_window_waits, 1);
                self.window_waits = true;
                return;
            }
            let handled = match Packet::decode(rbuf, self.conn.version(), &limits) {
                // Bound by reference and moved once, into the session: a
                // `Packet` is some 300 bytes.
                Ok(Some(ref mut packet)) => {
                    if let Packet::Publish(p) = &*packet {
                        let size = p.topic.len() + p.payload.len();
                        let q = p.qos as usize;
                        self.counts.received[q] += 1;
                        self.counts.received_bytes[q] =
                            self.counts.received_bytes[q].saturating_add(size as u32);
                        self.quota.on_publish(size, now);
                    }
                    // Its message comes back as an event, routed below
                    // unless an event or a stall waits before it.
                    self.conn
                        .handle_packet(now, std::mem::replace(packet, Packet::PingReq))
                }
                Ok(None) => return,
                Err(e) => {
                    Stats::add(&self.broker.stats.protocol_errors, 1);
                    tracing::info!(peer = %self.peer, error = %e, "closing connection: malformed packet");
                    self.conn.handle_decode_error(now, e);
                    rbuf.clear();
                    return;
                }
            };
            if let Err(e) = handled {
                Stats::add(&self.broker.stats.protocol_errors, 1);
                tracing::info!(peer = %self.peer, error = %e, "closing connection: protocol error");
            }
            self.process_ready_events();
        }
    }

    /// Tries again to deliver what a stalled publication waits for.
    pub(super) fn retry_stalled(&mut self) {
        self.release_held();
        let Some(stall) = self.stalled.as_mut() else {
            return;
        };
        let queued = self.broker.retry_blocked(
            &mut stall.deliveries,
            stall.since,
            self.conn.is_closed(),
            self.now,
        );
        self.counts.routed = self.counts.routed.saturating_add(queued as u32);
        if stall.deliveries.is_empty() {
            let serial = stall.serial;
            self.stalled = None;
            if let Some(serial) = serial {
                self.ack_ready(serial, None);
            }
            self.release_deferred_acks();
        }
    }

    pub(super) fn on_publish(&mut self, message: Arc<Message>, packet_id: Option<PacketId>) {
        let broker = self.broker;
        let now = self.now;
        // The topic of the last publication is already checked.
        let cache = self.route_cache.get_or_insert_with(Box::default);
        let cached = cache.take_topic(message.topic.as_bytes());
        let is_cached = cached.is_some();
        let topic = cached.or_else(|| {
            TopicName::from_bytes(message.topic.as_bytes().clone())
                .ok()
                .filter(|t| t.level_count() <= broker.config.max_topic_levels)
        });
        let Some(topic) = topic else {
            if let Some(id) = packet_id {
                self.conn.acknowledge(id, ReasonCode::TopicNameInvalid);
            }
            return;
        };
        if let Some(a) = &self.access
            && !a.can_publish(topic.as_str())
        {
            // Dropped. MQTT 5.0 clients learn it from the acknowledgement;
            // 3.1.1 clients get a plain PUBACK/PUBREC, as from mosquitto.
            Stats::add(&broker.stats.dropped_acl_publish, 1);
            tracing::debug!(peer = %self.peer, topic = %topic.as_str(), "PUBLISH denied by the ACL");
            if let Some(id) = packet_id {
                self.conn.acknowledge(id, ReasonCode::NotAuthorized);
            }
            return;
        }
        let persistence = broker.persist.is_some();
        let serial = packet_id.map(|_| {
            self.commits.next_serial += 1;
            self.commits.next_serial
        });
        let ticket = (persistence && serial.is_some()).then(|| self.commits.ticket());
        let incoming_qos2 =
            packet_id.filter(|_| self.persistent && message.qos == QoS::ExactlyOnce);
        let done = ticket.map(|t| self.commits.done(t));
        // With a cluster, a QoS 1/2 acknowledgement also waits for the
        // other nodes' copies to be stored.
        let forward_ticket =
            (broker.backplane.is_some() && serial.is_some()).then(|| self.commits.ticket());
        let forward_done = forward_ticket.map(|t| self.commits.done(t));
        let outbox = self
            .outbox_in_use()
            .then(|| &mut **self.outbox.get_or_insert_with(Box::default));
        let how = Publishing {
            publisher: self.handle.as_ref(),
            incoming_qos2,
            // A client's connection: it can stop reading.
            publisher_may_wait: true,
            done,
            forward_done,
            from_cluster: false,
            count_later: true,
            route_cache: self.route_cache.as_deref_mut(),
            outbox,
        };
        let routed = broker.publish(&topic, message, how, now);
        if let Some(c) = self.route_cache.as_deref_mut() {
            c.keep_topic(if is_cached { topic } else { topic.detached() });
        }
        self.counts.routed = self.counts.routed.saturating_add(routed.queued as u32);
        if let Some(t) = ticket
            && !routed.committing
        {
            self.commits.outstanding.remove(&t);
        }
        if let Some(t) = forward_ticket
            && !routed.forwarding
        {
            self.commits.outstanding.remove(&t);
        }
        let (Some(id), Some(serial)) = (packet_id, serial) else {
            // QoS 0: no acknowledgement to hold, but the publisher stops
            // reading until its subscribers have room.
            self.stall_on(routed.blocked, None);
            return;
        };
        // Sent to other nodes (or, retained, kept in the cluster): matched.
        let code = if routed.matched == 0 && !routed.forwarding {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        let mut waits = 0;
        // The acknowledgement waits for the store, and for the other
        // nodes' copies, whichever of them this message needs.
        for (ticket, pending) in [
            (ticket, routed.committing),
            (forward_ticket, routed.forwarding),
        ] {
            if let (Some(t), true) = (ticket, pending) {
                waits += 1;
                self.commits
                    .after
                    .entry(t)
                    .or_default()
                    .push(AfterCommit::Ack(serial));
            }
        }
        if !routed.blocked.is_empty() {
            waits += 1;
            self.stall_on(routed.blocked, Some(serial));
        }
        if waits == 0 {
            match self.outbox.as_deref_mut().filter(|o| !o.is_empty()) {
                // Its delivery, or an earlier one's, waits in the outbox.
                Some(outbox) => outbox.acks.push((id, code)),
                None => {
                    self.conn.acknowledge(id, code);
                }
            }
        } else {
            self.commits.acks.insert(
                serial,
                PendingAck {
                    packet_id: id,
                    code,
                    waits,
                    error: None,
                },
            );
        }
    }
}
