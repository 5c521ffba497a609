//! What goes out to the remote broker: deliveries from the local
//! session's mailbox into the client connection, their topics remapped,
//! and the store kept in step.
//!
//! # The store
//!
//! A message pulled from the mailbox keeps its place in the store (its
//! [`Delivery::tag`] is its sequence number there) until the remote broker
//! completes it: [`ClientEvent::Published`] gives the tag back, and the
//! entry is removed. A restart resends what is left, as new messages.
//!
//! The packet identifiers of QoS 2 messages are the one thing more that is
//! stored, with `clean_start = false` (with a clean start the remote broker
//! forgets them at each connection): a QoS 2 PUBLISH leaves only once its
//! identifier is stored as one the remote broker may hold. After a
//! restart, those identifiers are released (PUBREL) before being used
//! again; otherwise a new message sent under one that the remote broker
//! still held unreleased would be taken there for a duplicate, and lost.
//! The message itself is not stored under it (its queue entry is): resent
//! as a new message after a restart, it may reach the remote broker twice.
//! Storing the whole in-flight state, as the broker does for its own
//! clients, would make it exactly once, at the cost of re-keying the
//! messages a remote broker without our session makes the client resend
//! (`mqtt-session` does that resend itself, keeping each message's tag):
//! a rare case, left for later.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mqtt_codec::{MqttString, Packet, PacketId, QoS, ReasonCode};
use mqtt_session::{Delivery, Message, Transmit};
use mqtt_store::Batch;

use super::link::{Bridge, Done, Link};

/// A QoS 2 message in flight to the remote broker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Qos2 {
    /// Its queue entry in the store (0: none).
    pub(super) tag: u64,
    /// PUBREC received, PUBREL sent: the client session keeps only the
    /// identifier, not the tag.
    pub(super) released: bool,
    /// Its identifier is stored as one the remote broker may hold.
    pub(super) held: bool,
}

impl Bridge {
    /// The remote delivery of a local one: its topic remapped by the first
    /// rule that sends it out. `None` (dropped, counted, forgotten from the
    /// store) if none does.
    pub(super) fn outgoing(&self, d: Delivery, batch: &mut Option<Batch>) -> Option<Delivery> {
        let remote = self
            .config
            .topics
            .iter()
            .find_map(|r| r.to_remote(d.message.topic.as_str()))
            .and_then(|t| MqttString::try_from(t).ok());
        let Some(topic) = remote else {
            self.stats.unmapped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = %d.message.topic, "no rule maps this topic out; dropped");
            self.local.forget_queued(d.tag, batch);
            return None;
        };
        let message = Message {
            topic,
            ..Message::clone(&d.message)
        };
        Some(Delivery {
            message: Arc::new(message),
            qos: d.qos,
            retain: d.retain,
            subscription_ids: Default::default(),
            shared_group: None,
            tag: d.tag,
        })
    }
}

impl Link<'_> {
    /// One of our messages completed: the remote broker has it (or
    /// refused it: dropped, as an MQTT 5.0 client would).
    pub(super) fn on_completed(&mut self, packet_id: PacketId, reason: ReasonCode, tag: u64) {
        let b = &mut *self.bridge;
        let flow = b.qos2.remove(&packet_id);
        let tag = if tag != 0 {
            tag
        } else {
            flow.map_or(0, |f| f.tag)
        };
        b.local.forget_queued(tag, &mut self.batch);
        if flow.is_some_and(|f| f.held) {
            b.local.release_id(packet_id, &mut self.batch);
        }
        // A PUBCOMP 0x92 ends the release of an identifier the remote
        // broker had forgotten (after a restart of ours): nothing refused.
        let forgotten =
            reason == ReasonCode::PacketIdentifierNotFound && flow.is_some_and(|f| f.released);
        if reason.is_error() && !forgotten {
            tracing::warn!(%reason, "the remote broker refused a message of the bridge; dropped");
        }
    }

    /// Moves deliveries from the mailbox into the connection as the window
    /// allows (only when the connection's own queue is empty: the mailbox
    /// stays the one bounded queue).
    pub(super) fn pull(&mut self, now: Instant) {
        if !self.conn.is_connected() || self.conn.queued() > 0 {
            return;
        }
        let room = usize::from(self.bridge.config.max_inflight_messages)
            .saturating_sub(self.conn.inflight());
        let mut pulled = Vec::new();
        self.bridge
            .local
            .pull(room, now, &mut self.batch, |d| pulled.push(d));
        for d in pulled {
            if let Some(d) = self.bridge.outgoing(d, &mut self.batch) {
                let tag = d.tag;
                if let Err(e) = self.conn.publish(d) {
                    tracing::warn!(reason = ?e, "a message for the remote broker was dropped");
                    self.bridge.local.forget_queued(tag, &mut self.batch);
                }
            }
        }
    }

    /// Encodes what the connection sends; with stored identifiers, a new
    /// QoS 2 PUBLISH (and what follows it) waits for the commit that
    /// stores its identifier.
    pub(super) fn transmit(&mut self, now: Instant) {
        let store_ids = self.bridge.local.persistent && !self.bridge.config.clean_start;
        let version = self.conn.version();
        let mut fresh_qos2 = Vec::new();
        let mut released = Vec::new();
        let mut packets = Vec::new();
        let lend = !store_ids && self.held.is_empty();
        let (wbuf, stats) = (&mut self.wbuf, &self.bridge.stats);
        self.conn.poll_transmit(now, |t| {
            match &t {
                Transmit::Publish(p) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    if p.qos == QoS::ExactlyOnce {
                        fresh_qos2.extend(p.packet_id);
                    }
                }
                Transmit::Packet(Packet::PubRel(a)) if a.reason_code == ReasonCode::Success => {
                    released.push(a.packet_id);
                }
                Transmit::Packet(_) => {}
            }
            if lend {
                if let Err(e) = t.encode(version, wbuf) {
                    tracing::warn!(error = %e, "cannot encode packet");
                }
            } else {
                packets.push(t.to_packet());
            }
        });
        for id in &fresh_qos2 {
            let tag = self.conn.inflight_delivery(*id).map_or(0, |d| d.tag);
            self.bridge.qos2.insert(
                *id,
                Qos2 {
                    tag,
                    released: false,
                    held: store_ids,
                },
            );
            if store_ids {
                self.bridge.local.hold_id(*id, &mut self.batch);
            }
        }
        for id in released {
            if let Some(flow) = self.bridge.qos2.get_mut(&id) {
                flow.released = true;
            }
        }
        let mut gate = self.held.last().map(|(t, _)| *t);
        for packet in packets {
            let fresh = matches!(&packet, Packet::Publish(p)
                if p.qos == QoS::ExactlyOnce && !p.dup && store_ids);
            if fresh {
                gate = Some(*self.ticket.get_or_insert_with(|| {
                    self.next_ticket += 1;
                    self.next_ticket
                }));
            }
            match gate {
                Some(t) if t > self.committed => self.held.push((t, packet)),
                _ => {
                    if let Err(e) = packet.encode(version, &mut self.wbuf) {
                        tracing::warn!(error = %e, "cannot encode packet");
                    }
                }
            }
        }
    }

    /// Submits this turn's batch.
    pub(super) fn flush_batch(&mut self) {
        let ticket = self.ticket.take();
        let batch = self.batch.take();
        if batch.is_none()
            && let Some(t) = ticket
        {
            // Nothing to wait for after all.
            self.on_done(Done::Batch(t, Ok(())));
            return;
        }
        self.bridge
            .submit(batch, ticket.map(|t| (t, &self.done_tx)));
    }

    /// Writes the held packets whose commits have completed.
    pub(super) fn release_held(&mut self) {
        let committed = self.committed;
        let ready = self
            .held
            .iter()
            .take_while(|(t, _)| *t <= committed)
            .count();
        let version = self.conn.version();
        for (_, packet) in self.held.drain(..ready) {
            if let Err(e) = packet.encode(version, &mut self.wbuf) {
                tracing::warn!(error = %e, "cannot encode packet");
            }
        }
    }
}
