//! One client connection: a task that owns the transport and the
//! connection's [`ServerConnection`], and wires it to the broker.
//!
//! The task selects over four inputs — bytes from the client, room to write,
//! deliveries in the session's mailbox, and the protocol's next deadline —
//! plus control requests (takeover) and shutdown. Every whole packet in the
//! read buffer is decoded before the next read; every packet ready to send
//! is encoded into one buffer and written with as few syscalls as the
//! socket allows.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_codec::{
    ConnAckProperties, Connect, MqttString, Packet, PacketId, Publish, QoS, ReasonCode, Subscribe,
};
use mqtt_session::{
    Accept, CloseReason, Closed, Delivery, Inflight, InflightStage, Message, ProtocolError,
    ServerConnection, ServerEvent, Transmit,
};
use mqtt_store::{Batch, StoreError};
use mqtt_topic::TopicName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{ClientAccess, ConnAuth};
use crate::broker::{Blocked, Broker, Outbox, Publishing, RouteCache, Routed};
use crate::handle::{Control, Parked, SessionHandle, SessionRef, lock};
use crate::persist::Persist;
use crate::quota::PublishQuota;
use crate::stats::Stats;
use crate::writer::WriteQueue;

thread_local! {
    /// Deliveries taken out of a mailbox, to be encoded once its lock is
    /// released; kept empty between uses, so its allocation serves every
    /// connection of the thread.
    static PULLED: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
}

/// Bytes waiting to be written beyond which no more deliveries are taken
/// from the mailbox: a client that does not read fills its own mailbox
/// (bounded, counted drops), not the broker's memory.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Smallest read buffer: what an idle connection keeps allocated.
const READ_MIN: usize = 512;
/// Largest read buffer step, for a client that fills every read.
const READ_MAX: usize = 64 * 1024;
/// How long a new connection waits for the previous owner of its client
/// identifier to hand the session over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// When the connection's timer fires if there is no deadline: it only
/// recomputes (a timer kept armed costs less than one created per turn).
const IDLE_TIMER: Duration = Duration::from_secs(3600);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Task<'a> {
    broker: &'a Arc<Broker>,
    /// Borrowed from the connection future, which keeps its arguments
    /// anyway: every connection's future is that much smaller.
    peer: &'a SocketAddr,
    conn: ServerConnection,
    handle: Option<SessionRef>,
    /// This connection's number, unique for the broker's lifetime (for
    /// [`SessionHandle::control`]).
    id: u64,
    /// Where a takeover request will arrive, made when the session is
    /// registered (its sender goes into the session's handle) and then
    /// moved to the select loop.
    control_rx: Option<oneshot::Receiver<Control>>,
    /// Where to send the session when another connection takes it over.
    takeover: Option<oneshot::Sender<Option<mqtt_session::SessionState>>>,
    subscriptions: usize,
    wbuf: WriteQueue,
    /// How this connection's listener authenticates (borrowed, as `peer`).
    auth: &'a ConnAuth,
    /// The client's ACL view, once connected; `None` when no ACL applies.
    access: Option<Arc<ClientAccess>>,
    quota: PublishQuota,
    /// Over its publish quota: nothing is read or decoded until then.
    throttled: Option<Instant>,
    /// As many of the client's publications as our Receive Maximum wait
    /// for their acknowledgement: nothing is read or decoded until one
    /// leaves (a commit, or room for a stalled delivery, frees it).
    window_waits: bool,
    /// The session is stored (persistence on, expiry > 0).
    persistent: bool,
    /// Store commits of this connection: what waits for them.
    commits: Commits,
    /// A publication waiting for room in connected subscribers' queues:
    /// nothing is read nor processed until it is resolved.
    stalled: Option<Box<Stall>>,
    /// The time of this turn of the loop: read once per turn (and once
    /// per read), not once per packet.
    now: Instant,
    /// Counters gathered during a turn, added to the broker's shared
    /// [`Stats`] once per turn rather than once per packet.
    counts: Counts,
    /// Deliveries of this turn's publications waiting to enter a
    /// subscriber's mailbox together, and the acknowledgements waiting for
    /// them (see [`Outbox`]); flushed when the read is handled and before
    /// any event that does not use it. Made at the first publication,
    /// given back when the connection goes quiet.
    outbox: Option<Box<Outbox>>,
    /// The route of the last topic this connection published to (see
    /// [`RouteCache`]); made at its first publication.
    route_cache: Option<Box<RouteCache>>,
}

/// Per-connection counters waiting to be added to the shared [`Stats`].
#[derive(Default)]
struct Counts {
    // Per turn: a turn reads at most READ_MAX bytes and writes at most
    // WRITE_HIGH_WATER beyond what was queued, so 32 bits are plenty.
    received: [u32; 3],
    received_bytes: [u32; 3],
    sent: [u32; 3],
    sent_bytes: [u32; 3],
    routed: u32,
}

impl Counts {
    /// A PUBLISH of `qos` carrying `size` bytes of topic and payload was sent.
    fn sent_publish(&mut self, qos: QoS, size: usize) {
        let q = qos as usize;
        self.sent[q] += 1;
        self.sent_bytes[q] = self.sent_bytes[q].saturating_add(size as u32);
    }

    /// Adds what was counted to `stats` and starts again from zero.
    fn flush(&mut self, stats: &Stats) {
        let received: u64 = self.received.iter().map(|&n| u64::from(n)).sum();
        if received > 0 {
            Stats::add(&stats.messages_received, received);
            for q in 0..3 {
                Stats::add(&stats.messages_received_by_qos[q], self.received[q].into());
                Stats::add(
                    &stats.publish_bytes_received_by_qos[q],
                    self.received_bytes[q].into(),
                );
            }
        }
        if self.routed > 0 {
            Stats::add(&stats.messages_routed, self.routed.into());
        }
        if self.sent.iter().any(|&n| n > 0) {
            for q in 0..3 {
                Stats::add(&stats.messages_sent_by_qos[q], self.sent[q].into());
                Stats::add(
                    &stats.publish_bytes_sent_by_qos[q],
                    self.sent_bytes[q].into(),
                );
            }
        }
        *self = Self::default();
    }
}

/// Completions of this connection's store commits: (ticket, result).
type CommitTx = mpsc::UnboundedSender<(u64, Result<(), StoreError>)>;

/// What waits for a commit.
#[derive(Debug)]
enum AfterCommit {
    /// The acknowledgement of publication `serial` (see [`Commits::acks`]).
    Ack(u64),
    /// The PUBCOMP of a released incoming QoS 2 identifier.
    Complete(PacketId),
}

/// An acknowledgement waiting for its message's commit and/or for room
/// in subscribers' queues.
#[derive(Debug)]
struct PendingAck {
    packet_id: PacketId,
    code: ReasonCode,
    /// What it still waits for (a commit, a stall): 1 or 2.
    waits: u8,
    error: Option<StoreError>,
}

/// This connection's side of the store: tickets of commits in flight,
/// what waits for them, and packets held until they are durable.
struct Commits {
    /// Only with persistence: a channel costs an allocation per connection.
    tx: Option<CommitTx>,
    next_ticket: u64,
    /// Tickets submitted and not completed.
    outstanding: BTreeSet<u64>,
    // B-trees rather than hash maps: half the size in every connection,
    // and these hold a few entries at most.
    after: BTreeMap<u64, Vec<AfterCommit>>,
    acks: BTreeMap<u64, PendingAck>,
    next_serial: u64,
    /// Changes gathered during one turn of the loop, submitted at its end
    /// as one batch, under its ticket. Boxed: only a connection with
    /// something to store has one, and every connection has the field.
    batch: Option<Box<(u64, Batch)>>,
    /// The ticket packets written now must wait for (0: none).
    gate: u64,
    /// Packets held until the commit of their ticket (and every earlier
    /// one) completes, in order.
    held: VecDeque<(u64, Packet)>,
}

impl Commits {
    fn new(tx: Option<CommitTx>) -> Self {
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

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.outstanding.insert(self.next_ticket);
        self.next_ticket
    }

    /// Whether every commit up to `ticket` has completed.
    fn done_up_to(&self, ticket: u64) -> bool {
        self.outstanding.first().is_none_or(|&first| first > ticket)
    }

    /// A callback completing `ticket` into the connection's loop (there is
    /// one whenever the broker has a store, the only case commits happen).
    fn done(&self, ticket: u64) -> Box<dyn FnOnce(Result<(), StoreError>) + Send> {
        let tx = self.tx.clone();
        Box::new(move |result| {
            // The connection may be gone: nothing waits any more.
            if let Some(tx) = tx {
                let _ = tx.send((ticket, result));
            }
        })
    }
}

/// A publication whose deliveries wait for room.
struct Stall {
    /// The acknowledgement waiting (see [`Commits::acks`]).
    serial: Option<u64>,
    deliveries: Blocked,
    until: Instant,
}

/// Serves one client until the connection ends.
///
/// Not an `async fn`: an `async fn` keeps a dead copy of each argument it
/// moves, and this future lives as long as the connection; the block below
/// uses what it captures in place.
pub(crate) fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    auth: ConnAuth,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    async move {
        // Allocated at the first CONNECT only: until then nothing can take
        // this connection over.
        let mut control_rx: Option<oneshot::Receiver<Control>> = None;
        let (commit_tx, mut commit_rx) = match broker.persist {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let mut task = Task {
            conn: ServerConnection::new(broker.session_config.clone(), now()),
            broker: &broker,
            peer: &peer,
            handle: None,
            id: broker.next_id(),
            control_rx: None,
            takeover: None,
            subscriptions: 0,
            wbuf: WriteQueue::default(),
            auth: &auth,
            access: None,
            quota: PublishQuota::new(&broker.config, now()),
            throttled: None,
            window_waits: false,
            persistent: false,
            commits: Commits::new(commit_tx),
            stalled: None,
            now: now(),
            counts: Counts::default(),
            outbox: None,
            route_cache: None,
        };
        // No read buffer while idle: a read into an empty buffer goes to the
        // stack first (see `read_into`), and the buffer is given back once
        // everything in it is decoded.
        let mut rbuf = BytesMut::new();
        // How much room each read gets: doubled while reads fill it, back to
        // READ_MIN when they do not, so a busy publisher reads in large chunks.
        let mut read_chunk = READ_MIN;
        let mut read_open = true;
        let mut stopping = false;
        // Written since the last flush: TLS and WebSocket streams may hold
        // what they accepted until flushed, so the stream is flushed whenever
        // the write queue runs empty (for TCP, flushing does nothing).
        let mut unflushed = false;
        // One timer for every deadline (the protocol's, the end of a publish
        // throttle, the end of a stall), kept across turns and moved only
        // when a deadline comes earlier: a later one (the keep-alive moves on
        // with every packet) waits until it fires, and firing early does
        // nothing but recompute. So a busy connection does not register and
        // cancel a timer at every turn, and the task keeps one timer's state.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now() + IDLE_TIMER);
        tokio::pin!(timer);
        loop {
            task.now = now();
            task.retry_stalled();
            task.process_events().await;
            if task.window_waits && task.stalled.is_none() && !task.conn.receive_window_full() {
                task.decode(&mut rbuf);
            }
            if let Some(rx) = task.control_rx.take() {
                control_rx = Some(rx);
            }
            task.pull_mailbox();
            task.encode_transmit();
            task.flush_batch();
            task.counts.flush(&broker.stats);
            let held = !task.commits.held.is_empty();
            if task.conn.is_closed() && ((task.wbuf.is_empty() && !held) || !read_open) {
                break;
            }
            let next = [
                task.conn.poll_timeout(),
                task.throttled,
                task.stalled.as_ref().map(|s| s.until),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            if let Some(next) = next
                && next < timer.deadline()
            {
                timer.as_mut().reset(next);
            }
            let handle = task.handle.as_ref().map(|h| h.0.clone());
            let room = task.wbuf.len() < WRITE_HIGH_WATER && handle.is_some();
            let throttled = task.throttled.is_some() || task.window_waits;
            let stall = task
                .stalled
                .as_ref()
                .and_then(|s| s.deliveries.first())
                .map(|(h, d)| (h.clone(), d.message.size()));
            let stalled = stall.is_some();
            let limits = broker.queue_limits;
            tokio::select! {
                r = std::future::poll_fn(|cx| read_into(&mut reader, &mut rbuf, read_chunk, cx)),
                    if read_open && !task.conn.is_closed() && !throttled && !stalled =>
                {
                    match r {
                        Ok((0, _)) | Err(_) => {
                            read_open = false;
                            task.conn.connection_lost(now());
                        }
                        Ok((n, room)) => {
                            Stats::add(&broker.stats.bytes_received, n as u64);
                            read_chunk = if n >= room / 2 {
                                (read_chunk * 2).min(READ_MAX)
                            } else {
                                READ_MIN
                            };
                            task.decode(&mut rbuf);
                            if rbuf.is_empty() && read_chunk == READ_MIN {
                                // Quiet again: give the buffer back (packets
                                // decoded from it keep what they share of it).
                                rbuf = BytesMut::new();
                                task.quiet();
                            }
                        }
                    }
                }
                // A poll, not an async block: an idle connection's future
                // keeps no state for it.
                r = std::future::poll_fn(|cx| {
                    if task.wbuf.is_empty() {
                        Pin::new(&mut writer).poll_flush(cx).map_ok(|()| 0)
                    } else {
                        task.wbuf.poll_write_to(&mut writer, cx)
                    }
                }), if !task.wbuf.is_empty() || unflushed => {
                    match r {
                        Ok(0) => unflushed = false,
                        Ok(n) => {
                            Stats::add(&broker.stats.bytes_sent, n as u64);
                            unflushed = true;
                        }
                        Err(_) => {
                            task.wbuf.clear();
                            read_open = false;
                            task.conn.connection_lost(now());
                        }
                    }
                }
                _ = async {
                    match &handle {
                        Some(h) => h.notify.notified().await,
                        None => std::future::pending().await,
                    }
                }, if room => {}
                () = timer.as_mut() => {
                    let now = now();
                    task.conn.handle_timeout(now);
                    if task.throttled.is_some_and(|t| now >= t) {
                        // The publish quota has refilled: decode what was left unread.
                        task.throttled = None;
                        task.decode(&mut rbuf);
                    }
                    // Parked; the top of the loop moves it to the next
                    // deadline (and resolves a stall that timed out).
                    timer.as_mut().reset(tokio::time::Instant::from_std(now) + IDLE_TIMER);
                }
                Some((ticket, result)) = async {
                    match commit_rx.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    task.on_commit(ticket, result);
                    while let Some(Ok((ticket, result))) = commit_rx.as_mut().map(|rx| rx.try_recv()) {
                        task.on_commit(ticket, result);
                    }
                }
                // Room in the queue a publication waits for (its time limit is
                // the timer's); boxed, as only a stalled connection needs it.
                _ = async {
                    match &stall {
                        Some((h, size)) => Box::pin(wait_room(h, *size, &limits)).await,
                        None => std::future::pending().await,
                    }
                }, if stalled => {}
                control = async {
                    match control_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    // Received once: a oneshot is not polled after it completes.
                    control_rx = None;
                    if let Ok(Control::TakeOver(reply)) = control {
                        task.takeover = Some(reply);
                        task.conn.close(now(), ReasonCode::SessionTakenOver);
                    }
                }
                // Once seen (or once the server is gone), shutdown is not polled
                // again: a closed channel would otherwise be ready forever.
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    task.conn.close(now(), ReasonCode::ServerShuttingDown);
                }
            }
        }
        task.now = now();
        if !task.conn.is_closed() {
            task.conn.connection_lost(task.now);
        }
        // What the client sent before it went (its DISCONNECT or the end of
        // its stream comes after) is still routed, and the session's end
        // handled: the events a stall held back included. With the
        // connection closed, a stall no longer waits (the queues' policies
        // apply, drops counted), so each turn makes progress.
        loop {
            task.retry_stalled();
            task.process_events().await;
            if task.stalled.is_none() {
                break;
            }
        }
        task.flush_batch();
        task.counts.flush(&broker.stats);
        let _ = writer.shutdown().await;
    }
}

/// Reads what the client sent into `rbuf`: returns how many bytes came and
/// how much room the read had. Into an empty buffer without room (an idle
/// connection keeps none), the read goes to the stack and only what
/// arrived is copied into a new buffer, so a connection waiting for its
/// client holds no read buffer.
fn read_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    chunk: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(usize, usize)>> {
    if rbuf.is_empty() && rbuf.capacity() == 0 {
        let mut stack = [0u8; READ_MIN];
        let mut buf = ReadBuf::new(&mut stack);
        ready!(Pin::new(reader).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n > 0 {
            rbuf.reserve(chunk.max(n));
            rbuf.extend_from_slice(buf.filled());
        }
        return Poll::Ready(Ok((n, READ_MIN)));
    }
    if rbuf.capacity() - rbuf.len() < chunk / 4 {
        rbuf.reserve(chunk);
    }
    let room = rbuf.capacity() - rbuf.len();
    let read = reader.read_buf(rbuf);
    tokio::pin!(read);
    let n = ready!(read.poll(cx))?;
    Poll::Ready(Ok((n, room)))
}

/// Encodes a packet the session lends into the write queue, counting a
/// PUBLISH.
fn write_transmit(
    wbuf: &mut WriteQueue,
    counts: &mut Counts,
    t: &Transmit<'_>,
    version: mqtt_codec::ProtocolVersion,
    peer: SocketAddr,
) {
    if let Transmit::Publish(p) = t {
        counts.sent_publish(p.qos, p.topic.len() + p.payload.len());
    }
    if let Err(e) = wbuf.push_transmit(t, version) {
        tracing::warn!(%peer, error = %e, "cannot encode packet");
    }
}

/// The batch of this turn of the loop.
fn batch_of(commits: &mut Commits) -> &mut Batch {
    let batch = match commits.batch.take() {
        Some(b) => b,
        None => Box::new((commits.ticket(), Persist::batch(now()))),
    };
    &mut commits.batch.insert(batch).1
}

/// Waits until `h`'s mailbox has room for `size` bytes, or it no longer
/// needs waiting for (congested, disconnected).
async fn wait_room(h: &SessionHandle, size: usize, limits: &mqtt_session::QueueLimits) {
    let notified = h.space.notified();
    tokio::pin!(notified);
    // Registered before the check: a notification between the two is
    // not lost.
    notified.as_mut().enable();
    if lock(&h.mailbox).has_room(size, limits) || h.is_congested() || !h.is_connected() {
        return;
    }
    notified.await;
}

impl Task<'_> {
    /// Hands what was read to the session, packet by packet, and handles
    /// the events as they come; then the deliveries they made wait no more.
    /// Their acknowledgements may reopen the receive window, and decoding
    /// goes on.
    fn decode(&mut self, rbuf: &mut BytesMut) {
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
    fn outbox_takes(&self, event: &ServerEvent) -> bool {
        matches!(event, ServerEvent::Publish { .. }) && self.outbox_in_use()
    }

    /// Whether publications go through the outbox: no store (nothing to
    /// write before a delivery is queued), and publishers that may wait
    /// for room.
    fn outbox_in_use(&self) -> bool {
        self.broker.persist.is_none() && !self.broker.config.max_publish_wait().is_zero()
    }

    /// A PUBLISH, taken apart where it lies (not moved): routed at once
    /// when no event or stall waits before it, else queued behind them as
    /// an event.
    fn on_publish_packet(&mut self, now: Instant, p: &mut Publish) -> Result<(), ProtocolError> {
        if self.stalled.is_none() && self.conn.peek_event().is_none() {
            if let Some((message, packet_id)) = self.conn.take_publish(now, p)? {
                self.on_publish(message, packet_id);
            }
            return Ok(());
        }
        self.conn.handle_publish(now, p)
    }

    /// Puts the outbox's deliveries in their mailbox; those that do not
    /// fit stall the connection, as a publication's would. The outbox
    /// itself is kept for the next publications.
    fn flush_outbox(&mut self) {
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
    fn release_deferred_acks(&mut self) {
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
    fn quiet(&mut self) {
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
    fn stall_on(&mut self, blocked: Blocked, serial: Option<u64>) {
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
                    until: self.now + self.broker.config.max_publish_wait(),
                }));
            }
        }
    }

    /// Before an event the outbox does not take, the outbox's deliveries
    /// go first. Returns whether events may still be handled (false: that
    /// stalled the connection).
    fn flush_outbox_before_next_event(&mut self) -> bool {
        if self
            .conn
            .peek_event()
            .is_some_and(|e| !self.outbox_takes(e))
        {
            self.flush_outbox();
        }
        self.stalled.is_none()
    }

    fn decode_packets(&mut self, rbuf: &mut BytesMut) {
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
            // A PUBLISH is handled where the decoder put it (bound by
            // reference): not moved, which is over 200 bytes.
            let handled = match Packet::decode(rbuf, self.conn.version(), &limits) {
                Ok(Some(Packet::Publish(ref mut p))) => {
                    let size = p.topic.len() + p.payload.len();
                    let q = p.qos as usize;
                    self.counts.received[q] += 1;
                    self.counts.received_bytes[q] =
                        self.counts.received_bytes[q].saturating_add(size as u32);
                    self.quota.on_publish(size, now);
                    self.on_publish_packet(now, p)
                }
                Ok(Some(packet)) => self.conn.handle_packet(now, packet),
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

    /// Moves deliveries from the mailbox into the connection while its
    /// queue is empty and the client's Receive Maximum leaves room, so the
    /// mailbox stays the one bounded queue of the session.
    fn pull_mailbox(&mut self) {
        let Some(SessionRef(handle)) = &self.handle else {
            return;
        };
        if self.conn.is_closed() || self.wbuf.len() >= WRITE_HIGH_WATER {
            return;
        }
        let Some(session) = self.conn.session() else {
            return;
        };
        if !session.queued.is_empty() {
            return;
        }
        let limits = &self.broker.queue_limits;
        // Never more than the session's queue takes: what it refused
        // would be lost.
        let room = usize::from(self.broker.session_config.max_inflight)
            .saturating_sub(self.conn.inflight())
            .max(16)
            .min(limits.max_messages);
        let now = self.now;
        let mut expired = Vec::new();
        let lends = self.lends();
        // Taken out under the lock, and only then encoded: publishers
        // pushing into the mailbox wait for the moves, not for the encoding.
        let mut pulled = PULLED.with(|cell| cell.take());
        let mut mailbox = lock(&handle.mailbox);
        while pulled.len() < room {
            let Some(d) = mailbox.pop_with(now, |d| expired.push(d.tag)) else {
                break;
            };
            pulled.push(d);
        }
        if !mailbox.is_empty() {
            // Not all taken: make sure the select loop comes back for more.
            handle.notify.notify_one();
        }
        if handle.is_congested() && mailbox.len() <= limits.max_messages / 2 {
            // Reading again: publishers may wait for it again.
            handle.congested.store(false, Ordering::Relaxed);
        }
        drop(mailbox);
        if !pulled.is_empty() {
            handle.space.notify_waiters();
        }
        let (wbuf, counts, version, peer) = (
            &mut self.wbuf,
            &mut self.counts,
            self.conn.version(),
            *self.peer,
        );
        for d in pulled.drain(..) {
            let _ = if lends {
                // Straight to the write queue while nothing waits before
                // it: the session's queue is for what the window holds back.
                self.conn.deliver_with(now, d, |t| {
                    write_transmit(wbuf, counts, &t, version, peer);
                })
            } else {
                self.conn.deliver(d)
            };
        }
        PULLED.with(|cell| cell.replace(pulled));
        if self.persistent {
            let client_id = handle.client_id.clone();
            for tag in expired.into_iter().filter(|&t| t != 0) {
                self.batch().remove_queued(&client_id, tag);
            }
        }
    }

    /// Whether packets may be encoded as the session lends them: nothing
    /// to store before they leave, nothing held back waiting for a commit.
    fn lends(&self) -> bool {
        let c = &self.commits;
        !self.persistent && c.held.is_empty() && (c.gate == 0 || c.done_up_to(c.gate))
    }

    fn encode_transmit(&mut self) {
        let now = self.now;
        if self.lends() {
            // PUBLISH packets are encoded from the session's copy of each
            // message.
            let (wbuf, counts, version, peer) = (
                &mut self.wbuf,
                &mut self.counts,
                self.conn.version(),
                *self.peer,
            );
            self.conn.transmit_with(now, |t| {
                write_transmit(wbuf, counts, &t, version, peer);
            });
            return;
        }
        while let Some(packet) = self.conn.poll_transmit(now) {
            if let Packet::Publish(p) = &packet {
                self.counts
                    .sent_publish(p.qos, p.topic.len() + p.payload.len());
            }
            if self.persistent {
                self.store_outgoing(&packet);
            }
            self.send(packet);
        }
    }

    /// Stores what a QoS 2 packet commits this side to, before the packet
    /// leaves: a PUBLISH under its packet identifier (so that after a
    /// crash it is resent with that identifier and DUP, which the client
    /// recognises), a PUBREL as the message's new stage (so that after a
    /// crash PUBREL is resent, not the PUBLISH, which the client would take
    /// for a new message once it has released the identifier).
    fn store_outgoing(&mut self, packet: &Packet) {
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
    fn send(&mut self, packet: Packet) {
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
    fn release_held(&mut self) {
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
    fn batch(&mut self) -> &mut Batch {
        batch_of(&mut self.commits)
    }

    /// Submits this turn's batch.
    fn flush_batch(&mut self) {
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
    fn gate_on_batch(&mut self) {
        if let Some(b) = &self.commits.batch {
            self.commits.gate = b.0;
        }
    }

    /// A commit of this connection completed.
    fn on_commit(&mut self, ticket: u64, result: Result<(), StoreError>) {
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
    fn ack_ready(&mut self, serial: u64, error: Option<StoreError>) {
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

    /// Tries again to deliver what a stalled publication waits for.
    fn retry_stalled(&mut self) {
        self.release_held();
        let Some(stall) = self.stalled.as_mut() else {
            return;
        };
        let timed_out = self.now >= stall.until;
        let (waiting, queued) = self.broker.retry_blocked(
            std::mem::take(&mut stall.deliveries),
            timed_out,
            self.conn.is_closed(),
            self.now,
        );
        self.counts.routed = self.counts.routed.saturating_add(queued as u32);
        if waiting.is_empty() {
            let serial = stall.serial;
            self.stalled = None;
            if let Some(serial) = serial {
                self.ack_ready(serial, None);
            }
            self.release_deferred_acks();
        } else {
            stall.deliveries = waiting;
        }
    }

    async fn process_events(&mut self) {
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
    fn process_ready_events(&mut self) {
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
    fn on_event(&mut self, event: ServerEvent) {
        match event {
            // Never here: process_events gives CONNECT to on_connect,
            // and process_ready_events stops before it.
            ServerEvent::Connect { .. } => {}
            ServerEvent::Publish { message, packet_id } => self.on_publish(message, packet_id),
            ServerEvent::Subscribe(s) => self.on_subscribe(s),
            ServerEvent::Unsubscribed(u) => {
                if let Some(me) = &self.handle {
                    let mut router = self.broker.router_mut();
                    for f in &u.filters {
                        if router.unsubscribe(me, f) {
                            self.subscriptions = self.subscriptions.saturating_sub(1);
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

    async fn on_connect(&mut self, connect: Box<Connect>, needs_client_id: bool) {
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
            match MqttString::try_from(format!("auto-{:016x}", broker.next_id())) {
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
        let (control_tx, control_rx) = oneshot::channel();
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
        if let Some((_, ctl)) = claim.previous {
            let (tx, rx) = oneshot::channel();
            if ctl.send(Control::TakeOver(tx)).is_ok() {
                state = tokio::time::timeout(TAKEOVER_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten();
            }
        }
        if state.is_none() {
            state = lock(&old.offline).take().map(|p| p.state);
        }
        // After the takeover, so that the will the previous connection
        // scheduled as it closed is seen too.
        broker.on_reconnect_will(&client_id, connect.clean_start, now);
        let resumed = state.is_some() && !connect.clean_start;
        let old_persistent = old.is_persistent();
        if !Arc::ptr_eq(&old, &handle)
            && let Some(s) = state.take()
        {
            broker.end_session(&old, s.subscriptions.into_keys());
        }
        self.subscriptions = state.as_ref().map_or(0, |s| s.subscriptions.len());
        handle.connected.store(true, Ordering::Release);
        *lock(&handle.access) = access.clone();
        self.access = access;
        self.handle = Some(SessionRef(handle));
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

    /// Stores the session record (subscriptions, expiry) of a persistent
    /// session; what is written next waits for it (SUBACK, UNSUBACK).
    fn save_session(&mut self) {
        if !self.persistent {
            return;
        }
        let Some(session) = self.conn.session() else {
            return;
        };
        batch_of(&mut self.commits).save_session(session, None);
        self.gate_on_batch();
    }

    fn on_publish(&mut self, message: Arc<Message>, packet_id: Option<PacketId>) {
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
        let may_block = !broker.config.max_publish_wait().is_zero();
        let done = ticket.map(|t| self.commits.done(t));
        let outbox = self
            .outbox_in_use()
            .then(|| &mut **self.outbox.get_or_insert_with(Box::default));
        let how = Publishing {
            publisher: self.handle.as_ref(),
            incoming_qos2,
            may_block,
            done,
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
        let (Some(id), Some(serial)) = (packet_id, serial) else {
            // QoS 0: no acknowledgement to hold, but the publisher stops
            // reading until its subscribers have room.
            self.stall_on(routed.blocked, None);
            return;
        };
        let code = if routed.matched == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        let mut waits = 0;
        if let (Some(t), true) = (ticket, routed.committing) {
            waits += 1;
            self.commits
                .after
                .entry(t)
                .or_default()
                .push(AfterCommit::Ack(serial));
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

    fn on_subscribe(&mut self, s: Subscribe) {
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
            &broker.subscribe_rules,
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
        for d in retained {
            let _ = self.conn.deliver(d);
        }
    }

    fn on_closed(&mut self, closed: Closed) {
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
                broker.end_session(&handle, session.subscriptions.into_keys());
                if let Some(reply) = takeover {
                    let _ = reply.send(None);
                }
            }
            // The new connection decides what becomes of the session.
            _ if takeover.is_some() => {
                if let Some(reply) = takeover {
                    let _ = reply.send(Some(session));
                }
            }
            at => {
                if self.persistent
                    && let Some(persist) = &broker.persist
                {
                    // The deadline is stored: time spent down counts.
                    let mut b = Persist::batch(now);
                    b.save_session(&session, at);
                    persist.submit_logged(b);
                }
                // Parked before the release, under the registry's lock: a
                // CONNECT that claims the session next finds it there.
                {
                    let mut sessions = lock(&broker.sessions);
                    *lock(&handle.offline) = Some(Box::new(Parked {
                        state: session,
                        expires_at: at,
                    }));
                    sessions.release(&handle.client_id, self.id);
                }
                if let Some(at) = at {
                    broker.schedule_expiry(handle.clone(), at);
                }
                // Deliveries keep arriving in the mailbox while offline.
            }
        }
    }
}
