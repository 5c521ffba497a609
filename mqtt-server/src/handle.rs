//! A session as the broker shares it between tasks: the mailbox publishers
//! push into, and how to reach the connection that owns it.

use std::cmp::Ordering as CmpOrdering;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::task::AtomicWaker;
use mqtt_codec::{MqttString, ProtocolVersion};
use mqtt_router::Subscriber;
use mqtt_session::{MessageQueue, QueueLimits, SessionState};
use tokio::sync::{Notify, oneshot};

/// A request to the task that owns a session's connection, through the
/// channel the session registry keeps for it.
#[derive(Debug)]
pub(crate) enum Control {
    /// Another connection with the same client identifier arrived: close
    /// with 0x8E and hand the session over.
    TakeOver(oneshot::Sender<Option<SessionState>>),
    /// An operator asked (the admin API): close with 0x98 (Administrative
    /// action; MQTT 3.1.1 clients see the connection end), the session
    /// parked or ended as when the client goes.
    Disconnect,
    /// An operator asks what only the connection knows (the admin API).
    Inspect(oneshot::Sender<Live>),
    /// A connection on another node of the cluster claimed the client
    /// identifier after this one: close with 0x8E [MQTT-3.1.4-3], the
    /// session parked or ended as when the client goes.
    #[cfg(feature = "cluster")]
    TakenOverElsewhere,
}

/// How many operator's requests may wait in a connection's control
/// channel; more are refused. A takeover is never refused (a connection
/// is taken over once).
pub(crate) const CONTROL_CAPACITY: usize = 4;

/// What a connection's control channel holds.
#[derive(Debug, Default)]
struct ControlQueue {
    waiting: Mutex<VecDeque<Control>>,
    /// The connection task, waiting for a request.
    waker: AtomicWaker,
    /// The connection has ended: nothing is read any more.
    closed: AtomicBool,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// [`CONTROL_CAPACITY`] operator's requests wait already.
    Full,
    /// The connection has ended.
    Gone,
}

/// Sends requests to the connection that owns a session; the session
/// registry keeps it as the owner's handle.
///
/// Not a tokio channel: every connection has one from its CONNECT on,
/// so it is one small allocation (a queue that allocates only when a
/// request comes, and a waker), no larger than the oneshot a takeover
/// alone needed (see "Small idle connections" in `benches/README.md`).
#[derive(Debug, Clone)]
pub(crate) struct ControlTx(Arc<ControlQueue>);

/// The connection's end of its control channel.
#[derive(Debug)]
pub(crate) struct ControlRx(Arc<ControlQueue>);

/// A new control channel.
pub(crate) fn control_channel() -> (ControlTx, ControlRx) {
    let queue = Arc::new(ControlQueue::default());
    (ControlTx(queue.clone()), ControlRx(queue))
}

impl ControlTx {
    /// Queues `request` for the connection; refused (and dropped, which
    /// tells whoever waits for its answer) when the connection has ended,
    /// or, for an operator's request, when [`CONTROL_CAPACITY`] wait.
    pub(crate) fn send(&self, request: Control) -> Result<(), Unsent> {
        let mut waiting = lock(&self.0.waiting);
        if self.0.closed.load(Ordering::Acquire) {
            return Err(Unsent::Gone);
        }
        if !matches!(request, Control::TakeOver(_)) && waiting.len() >= CONTROL_CAPACITY {
            return Err(Unsent::Full);
        }
        waiting.push_back(request);
        drop(waiting);
        self.0.waker.wake();
        Ok(())
    }
}

impl ControlRx {
    /// The next request, in the order they were sent.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Control> {
        if let Some(request) = lock(&self.0.waiting).pop_front() {
            return Poll::Ready(request);
        }
        self.0.waker.register(cx.waker());
        // A request sent between the look and the registration.
        match lock(&self.0.waiting).pop_front() {
            Some(request) => Poll::Ready(request),
            None => Poll::Pending,
        }
    }
}

impl Drop for ControlRx {
    fn drop(&mut self) {
        // Under the lock, so that no request is queued after: their
        // answers' senders go with them, and whoever waits is told.
        let mut waiting = lock(&self.0.waiting);
        self.0.closed.store(true, Ordering::Release);
        waiting.clear();
    }
}

/// What a connection reports of itself ([`Control::Inspect`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Live {
    /// QoS 1/2 deliveries sent and not yet acknowledged.
    pub(crate) inflight: usize,
    /// Deliveries in the session's own queue (beyond the mailbox).
    pub(crate) queued: usize,
}

/// How a client connected, kept with its session from its CONNECT on (an
/// offline session keeps its last): what the admin API lists. Small, as
/// every connection has one.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    /// The client's address (from the PROXY header, behind a proxy).
    pub(crate) address: SocketAddr,
    pub(crate) username: Option<Box<str>>,
    /// Seconds since the Unix epoch.
    pub(crate) connected_at: u64,
    /// The listener it came through: its position in `Server::listeners`.
    pub(crate) listener: u16,
    /// The keep alive in force, in seconds.
    pub(crate) keep_alive: u16,
    pub(crate) protocol: ProtocolVersion,
    /// The clean start flag of its CONNECT.
    pub(crate) clean_start: bool,
}

/// A session parked while no connection owns it.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) state: SessionState,
    /// When it ends if no connection resumes it (`None`: never). An
    /// expiry job scheduled for an earlier parking of the same session
    /// (resumed since, and parked again) finds a later deadline here and
    /// leaves it.
    pub(crate) expires_at: Option<Instant>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked:
/// every critical section here is a few plain assignments.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One session, shared by the router (as a subscriber key), publishers
/// (through the mailbox) and the connection task that owns it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// Unique for the broker's lifetime: a new session for a client id gets
    /// a new handle.
    pub(crate) id: u64,
    pub(crate) client_id: MqttString,
    /// Deliveries waiting for the connection task (or for the client to
    /// reconnect). A std mutex: held only to push or pop, never across an
    /// await, so publishers never wait on a subscriber's I/O.
    pub(crate) mailbox: Mutex<MessageQueue>,
    /// Wakes the owning connection task when the mailbox gets something.
    pub(crate) notify: Notify,
    /// Wakes publishers waiting for room in the mailbox (backpressure):
    /// notified when the owning task takes from it, or disconnects.
    pub(crate) space: Notify,
    /// A publisher waited `max_publish_wait_ms` for room in vain: until
    /// the owning task takes from its mailbox again, publishers do not
    /// wait for it and a full mailbox drops by policy.
    pub(crate) congested: AtomicBool,
    /// Whether the session is stored (persistence on, expiry > 0): its
    /// QoS 1/2 deliveries are appended to the store before the publisher
    /// is acknowledged.
    pub(crate) persistent: AtomicBool,
    /// The next sequence number of the session's stored queue; from 1, as
    /// 0 is the `Delivery::tag` of a delivery not stored.
    pub(crate) next_seq: AtomicU64,
    pub(crate) connected: AtomicBool,
    /// The session while no connection owns it.
    /// Boxed: most sessions are connected, and a connected one should not
    /// carry room for it.
    pub(crate) offline: Mutex<Option<Box<Parked>>>,
    /// The ACL view of the client that last connected with this session,
    /// checked at each delivery; `None` when no ACL applies.
    pub(crate) access: Mutex<Option<Arc<crate::auth::ClientAccess>>>,
    /// How its client last connected; `None` for a session restored from
    /// the store and not resumed since.
    pub(crate) info: Mutex<Option<Arc<ClientInfo>>>,
    /// The mailbox's own limits, in place of the broker's: a bridge's
    /// (`[[bridge]]` `max_queued_messages`...). Set once, by the bridge
    /// that owns the session; boxed, as other sessions have none.
    pub(crate) own_limits: OnceLock<Box<QueueLimits>>,
}

impl SessionHandle {
    pub(crate) fn new(id: u64, client_id: MqttString) -> Self {
        Self {
            id,
            client_id,
            mailbox: Mutex::new(MessageQueue::new()),
            notify: Notify::new(),
            space: Notify::new(),
            congested: AtomicBool::new(false),
            persistent: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            offline: Mutex::new(None),
            access: Mutex::new(None),
            info: Mutex::new(None),
            own_limits: OnceLock::new(),
        }
    }

    /// The limits of this session's mailbox: its own, or the broker's.
    #[inline]
    pub(crate) fn limits<'a>(&'a self, broker: &'a QueueLimits) -> &'a QueueLimits {
        self.own_limits.get().map_or(broker, |l| l)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Acquire)
    }

    pub(crate) fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Relaxed)
    }

    /// The session as `mqtt_router::DeliveryPolicy` sees its subscriber.
    #[inline]
    pub(crate) fn subscriber(&self) -> Subscriber {
        Subscriber {
            connected: self.is_connected(),
            congested: self.is_congested(),
        }
    }

    /// A sequence number for the session's stored queue.
    pub(crate) fn take_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the ACL lets this session's client read `topic`.
    pub(crate) fn may_read(&self, topic: &str) -> bool {
        let access = lock(&self.access).clone();
        access.is_none_or(|a| a.can_read(topic))
    }
}

/// A session as a router key: compared by its unique id.
#[derive(Debug, Clone)]
pub(crate) struct SessionRef(pub(crate) Arc<SessionHandle>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for SessionRef {}

impl Hash for SessionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialOrd for SessionRef {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionRef {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.id.cmp(&other.0.id)
    }
}
