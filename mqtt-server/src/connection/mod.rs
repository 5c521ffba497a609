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
    ConnAckProperties, Connect, MqttString, Packet, PacketId, QoS, ReasonCode, Subscribe,
};
use mqtt_router::{Blocked, Held, SubscribeRules};
use mqtt_session::{
    Accept, CloseReason, Closed, Delivery, Inflight, InflightStage, Message, ServerConnection,
    ServerEvent, Transmit,
};
use mqtt_store::{Batch, StoreError};
use mqtt_topic::TopicName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{ClientAccess, ConnAuth};
use crate::broker::{Broker, Outbox, Publishing, RouteCache, Routed};
use crate::handle::{
    ClientInfo, Control, ControlRx, Live, Parked, SessionHandle, SessionRef, control_channel, lock,
};
use crate::persist::Persist;
use crate::quota::PublishQuota;
use crate::stats::Stats;
use crate::writer::WriteQueue;

mod commits;
mod events;
mod publish;

use commits::*;
use publish::*;

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
/// How long, at most, a connection the broker closes reads (and discards)
/// what its client still sends, after its last packet and the end of its
/// write side, waiting for the client to close too.
const LINGER: Duration = Duration::from_secs(1);
/// How many bytes, at most, a closing connection reads and discards.
const LINGER_BYTES: usize = 256 * 1024;
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
    /// Where a takeover request (or an operator's) will arrive, made when
    /// the session is registered (its sender goes into the session
    /// registry) and then moved to the select loop.
    control_rx: Option<ControlRx>,
    /// Where to send the session when another connection takes it over.
    takeover: Option<oneshot::Sender<Option<mqtt_session::SessionState>>>,
    /// What the session's subscriptions hold, against the limits.
    subscriptions: Held,
    /// The client's own subscription limits (a `[[client_limits]]` table
    /// matched it); `None`: the broker's.
    rules: Option<Arc<SubscribeRules>>,
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
    /// Retained messages due to the client's new subscriptions, not yet
    /// handed to its session: they enter it as the session's queue and the
    /// client's window make room (see `pull_mailbox`), and before any live
    /// delivery, so that a subscriber never gets a topic's retained value
    /// after a newer one. A SUBSCRIBE with retained messages makes it; at
    /// most `max_retained_messages` long. Boxed: a pointer in every
    /// connection's state instead of a 32-byte deque.
    #[allow(clippy::box_collection)]
    retained: Option<Box<VecDeque<Delivery>>>,
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
        let mut control_rx: Option<ControlRx> = None;
        // Also with a cluster: QoS 1/2 acknowledgements wait for NATS.
        let (commit_tx, mut commit_rx) =
            match broker.persist.is_some() || broker.backplane.is_some() {
                true => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    (Some(tx), Some(rx))
                }
                false => (None, None),
            };
        let mut task = Task {
            conn: ServerConnection::new(broker.session_config.clone(), now()),
            broker: &broker,
            peer: &peer,
            handle: None,
            id: broker.next_id(),
            control_rx: None,
            takeover: None,
            subscriptions: Held::default(),
            rules: None,
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
            retained: None,
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
                task.stalled
                    .as_ref()
                    .map(|s| broker.delivery.deadline(s.since)),
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
                        Some((h, size)) => Box::pin(wait_room(&h.0, *size, h.0.limits(&limits))).await,
                        None => std::future::pending().await,
                    }
                }, if stalled => {}
                // A poll, not an async block: an idle connection's future
                // keeps no state for it.
                control = std::future::poll_fn(|cx| match &control_rx {
                    Some(rx) => rx.poll_recv(cx),
                    None => Poll::Pending,
                }) => match control {
                    Control::TakeOver(reply) => {
                        task.takeover = Some(reply);
                        task.conn.close(now(), ReasonCode::SessionTakenOver);
                    }
                    Control::Disconnect => {
                        tracing::info!(peer = %peer, "disconnected by an operator");
                        task.conn.close(now(), ReasonCode::AdministrativeAction);
                    }
                    #[cfg(feature = "cluster")]
                    Control::TakenOverElsewhere => {
                        tracing::info!(peer = %peer, "client identifier taken over on another node");
                        task.conn.close(now(), ReasonCode::SessionTakenOver);
                    }
                    Control::Inspect(reply) => {
                        let _ = reply.send(Live {
                            inflight: task.conn.inflight(),
                            queued: task.conn.session().map_or(0, |s| s.queued.len()),
                        });
                    }
                },
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
        if read_open {
            // Boxed: only a connection that lingers pays for its state.
            Box::pin(linger(&mut reader)).await;
        }
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

/// Reads and discards what the client sends until it closes its side, for
/// at most [`LINGER`] and [`LINGER_BYTES`]. A socket closed with unread
/// bytes answers with a reset, and a reset makes the client's system throw
/// away what it had received and not yet read — the DISCONNECT (or
/// CONNACK refusal) telling it why the broker closed included. The time
/// and byte bounds keep a flood of such clients from holding connections
/// open (each still counts against `max_connections` meanwhile).
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buf = vec![0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
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

impl Task<'_> {
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
        let mut pulled = PULLED.with(|cell| cell.take());
        // Retained messages of new subscriptions first, paced like the
        // rest; the mailbox waits until they are all in.
        if let Some(backlog) = self.retained.as_deref_mut() {
            pulled.extend(backlog.drain(..room.min(backlog.len())));
            if backlog.is_empty() {
                self.retained = None;
            }
        }
        // Taken out under the lock, and only then handed to the session:
        // publishers pushing into the mailbox wait for the moves alone.
        let mut mailbox = lock(&handle.mailbox);
        while pulled.len() < room && self.retained.is_none() {
            let Some(d) = mailbox.pop_with(now, |d| expired.push(d.tag)) else {
                break;
            };
            pulled.push(d);
        }
        if !mailbox.is_empty() {
            // Not all taken: make sure the select loop comes back for more.
            handle.notify.notify_one();
        }
        if handle.is_congested() && self.broker.delivery.relieved(mailbox.len(), limits) {
            // Reading again: publishers may wait for it again.
            handle.congested.store(false, Ordering::Relaxed);
        }
        drop(mailbox);
        if !pulled.is_empty() {
            handle.space.notify_waiters();
        }
        for d in pulled.drain(..) {
            // Sent by `encode_transmit`, as the client's window allows.
            let _ = self.conn.deliver(d);
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
            self.conn.poll_transmit(now, |t| {
                write_transmit(wbuf, counts, &t, version, peer);
            });
            return;
        }
        // Stored or held back until a commit: the packets are kept.
        let mut packets = Vec::new();
        self.conn
            .poll_transmit(now, |t| packets.push(t.to_packet()));
        for packet in packets {
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
}
