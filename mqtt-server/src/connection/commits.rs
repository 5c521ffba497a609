//! The connection's side of the store: each turn's changes go as one
//! batch under a ticket; acknowledgements and packets that promise
//! something durable wait for their ticket's commit.

use super::*;

/// Completions of this connection's store commits: (ticket, result).
pub(super) type CommitTx = mpsc::UnboundedSender<(u64, Result<(), StoreError>)>;

/// What waits for a commit.
#[derive(Debug)]
pub(super) enum AfterCommit {
    /// The acknowledgement of publication `serial` (see [`Commits::acks`]).
    Ack(u64),
    /// The PUBCOMP of a released incoming QoS 2 identifier.
    Complete(PacketId),
}

/// An acknowledgement waiting for its message's commit and/or for room
/// in subscribers' queues.
#[derive(Debug)]
pub(super) struct PendingAck {
    pub(super) packet_id: PacketId,
    pub(super) code: ReasonCode,
    /// What it still waits for (a commit, a stall): 1 or 2.
    pub(super) waits: u8,
    pub(super) error: Option<StoreError>,
}

/// This connection's side of the store: tickets of commits in flight,
/// what waits for them, and packets held until they are durable.
pub(super) struct Commits {
    /// Only with persistence: a channel costs an allocation per connection.
    pub(super) tx: Option<CommitTx>,
    pub(super) next_ticket: u64,
    /// Tickets submitted and not completed.
    pub(super) outstanding: BTreeSet<u64>,
    // B-trees rather than hash maps: half the size in every connection,
    // and these hold a few entries at most.
    pub(super) after: BTreeMap<u64, Vec<AfterCommit>>,
    pub(super) acks: BTreeMap<u64, PendingAck>,
    pub(super) next_serial: u64,
    /// Changes gathered during one turn of the loop, submitted at its end
    /// as one batch, under its ticket. Boxed: only a connection with
    /// something to store has one, and every connection has the field.
    pub(super) batch: Option<Box<(u64, Batch)>>,
    /// The ticket packets written now must wait for (0: none).
    pub(super) gate: u64,
    /// Packets held until the commit of their ticket (and every earlier
    /// one) completes, in order.
    pub(super) held: VecDeque<(u64, Packet)>,
}

impl Commits {
    pub(super) fn new(tx: Option<CommitTx>) -> Self {
        Self {
            tx,
            next_ticket: 0,
            outstanding: BTreeSet::new(),
            after: BTreeMap::new(),
            acks: BTreeMap::new(),
            next_serial: 0,
            batch: None,
            gate: 0,
            held: VecDeque::new(),
        }
    }

    pub(super) fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.outstanding.insert(self.next_ticket);
        self.next_ticket
    }

    /// Whether every commit up to `ticket` has completed.
    pub(super) fn done_up_to(&self, ticket: u64) -> bool {
        self.outstanding.first().is_none_or(|&first| first > ticket)
    }

    /// A callback completing `ticket` into the connection's loop (there is
    /// one whenever the broker has a store, the only case commits happen).
    pub(super) fn done(&self, ticket: u64) -> Box<dyn FnOnce(Result<(), StoreError>) + Send> {
        let tx = self.tx.clone();
        Box::new(move |result| {
            // The connection may be gone: nothing waits any more.
            if let Some(tx) = tx {
                let _ = tx.send((ticket, result));
            }
        })
    }
}

/// The batch of this turn of the loop.
pub(super) fn batch_of(commits: &mut Commits) -> &mut Batch {
    let batch = match commits.batch.take() {
        Some(b) => b,
        None => Box::new((commits.ticket(), Persist::batch(now()))),
    };
    &mut commits.batch.insert(batch).1
}

impl Task<'_> {
    /// Stores what a QoS 2 packet commits this side to, before the packet
    /// leaves: a PUBLISH under its packet identifier (so that after a
    /// crash it is resent with that identifier and DUP, which the client
    /// recognises), a PUBREL as the message's new stage (so that after a
    /// crash PUBREL is resent, not the PUBLISH, which the client would take
    /// for a new message once it has released the identifier).
    pub(super) fn store_outgoing(&mut self, packet: &Packet) {
        let Some(client_id) = self.conn.client_id().cloned() else {
            return;
        };
        let inflight = match packet {
            Packet::Publish(p) if p.qos == QoS::ExactlyOnce && !p.dup => {
                let Some(id) = p.packet_id else { return };
                let Some(d) = self.conn.inflight_delivery(id) else {
                    return;
                };
                let tag = d.tag;
                let inflight = Inflight {
                    packet_id: id,
                    stage: InflightStage::Published(d.clone()),
                };
                if tag != 0 {
                    self.batch().remove_queued(&client_id, tag);
                }
                inflight
            }
            Packet::PubRel(a) if a.reason_code == ReasonCode::Success => Inflight {
                packet_id: a.packet_id,
                stage: InflightStage::Released,
            },
            _ => return,
        };
        self.batch().set_inflight(&client_id, &inflight);
        self.commits.gate = self.commits.batch.as_ref().map_or(0, |b| b.0);
    }

    /// Writes a packet, or holds it (and every later one) until the commit
    /// it waits for completes.
    pub(super) fn send(&mut self, packet: Packet) {
        let c = &mut self.commits;
        if !c.held.is_empty() || (c.gate != 0 && !c.done_up_to(c.gate)) {
            c.held.push_back((c.gate, packet));
            return;
        }
        if let Err(e) = self.wbuf.push(&packet, self.conn.version()) {
            tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet");
        }
    }

    /// Writes the held packets whose commits have completed.
    pub(super) fn release_held(&mut self) {
        while let Some((ticket, _)) = self.commits.held.front() {
            if !self.commits.done_up_to(*ticket) {
                return;
            }
            let Some((_, packet)) = self.commits.held.pop_front() else {
                return;
            };
            if let Err(e) = self.wbuf.push(&packet, self.conn.version()) {
                tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet");
            }
        }
    }

    /// The batch of this turn of the loop.
    pub(super) fn batch(&mut self) -> &mut Batch {
        batch_of(&mut self.commits)
    }

    /// Submits this turn's batch.
    pub(super) fn flush_batch(&mut self) {
        let Some((ticket, batch)) = self.commits.batch.take().map(|b| *b) else {
            return;
        };
        match &self.broker.persist {
            Some(persist) => persist.submit(batch, self.commits.done(ticket)),
            None => {
                self.commits.outstanding.remove(&ticket);
            }
        }
    }

    /// Makes the gate wait for this turn's batch: packets written from
    /// now on (CONNACK, SUBACK...) wait until it is durable.
    pub(super) fn gate_on_batch(&mut self) {
        if let Some(b) = &self.commits.batch {
            self.commits.gate = b.0;
        }
    }

    /// A commit of this connection completed.
    pub(super) fn on_commit(&mut self, ticket: u64, result: Result<(), StoreError>) {
        self.commits.outstanding.remove(&ticket);
        if let Err(e) = &result {
            tracing::error!(peer = %self.peer, error = %e, "store commit failed");
        }
        for after in self.commits.after.remove(&ticket).unwrap_or_default() {
            match after {
                AfterCommit::Ack(serial) => self.ack_ready(serial, result.clone().err()),
                AfterCommit::Complete(id) => {
                    // Even if the store failed: the flow must end, and
                    // the store is the operator's alarm (logged above).
                    self.conn.complete_release(id);
                }
            }
        }
        self.release_held();
    }

    /// One thing an acknowledgement waited for is done.
    pub(super) fn ack_ready(&mut self, serial: u64, error: Option<StoreError>) {
        let Some(pending) = self.commits.acks.get_mut(&serial) else {
            return;
        };
        if let Some(e) = error {
            pending.error = Some(e);
        }
        pending.waits = pending.waits.saturating_sub(1);
        if pending.waits > 0 {
            return;
        }
        let Some(pending) = self.commits.acks.remove(&serial) else {
            return;
        };
        match pending.error {
            None => {
                self.conn.acknowledge(pending.packet_id, pending.code);
            }
            Some(e) => {
                Stats::add(&self.broker.stats.store_refused, 1);
                if self.conn.version().is_v5() {
                    // Not acknowledged as received: the client knows it
                    // was not kept (0x97 when the disk or a quota is full).
                    self.conn.acknowledge(pending.packet_id, e.reason_code());
                } else {
                    // MQTT 3.1.1 has no way to refuse a PUBLISH: close, so
                    // that the client sends it again later.
                    tracing::warn!(peer = %self.peer, error = %e, "closing an MQTT 3.1.1 connection: a message could not be stored");
                    self.conn.close(now(), e.reason_code());
                }
            }
        }
    }

    /// Stores the session record (subscriptions, expiry) of a persistent
    /// session; what is written next waits for it (SUBACK, UNSUBACK).
    pub(super) fn save_session(&mut self) {
        if !self.persistent {
            return;
        }
        let Some(session) = self.conn.session() else {
            return;
        };
        batch_of(&mut self.commits).save_session(session, None);
        self.gate_on_batch();
    }
}
