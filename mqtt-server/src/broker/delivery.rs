//! A publication's way to its subscribers' mailboxes: routed (or along a
//! publisher's route cache), stored first when a persistent session needs
//! it, and placed as `mqtt_router::DeliveryPolicy` decides, waiting for
//! room (a stall) or dropped and counted. The rules are the router's; here
//! are the mailboxes' locks, wake-ups, counters and store batches.

use super::*;

thread_local! {
    /// Routing scratch space, reused so that routing a message allocates
    /// nothing once it has grown to the usual fan-out. Kept empty between
    /// uses, as vectors of a key of the same size as the `&SessionRef` the
    /// router lends (see [`recycle`]).
    static TARGETS: RefCell<Vec<Target<usize>>> = const { RefCell::new(Vec::new()) };
    /// The deliveries made of them, with a store (likewise).
    static DELIVERIES: RefCell<Vec<(usize, Delivery)>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with `v`'s allocation, of another element type of the
/// same size and alignment (otherwise a new empty vector): how scratch
/// space of borrowed elements outlives the borrows of one call.
pub(super) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    // Collecting a vector's own iterator reuses its buffer; with nothing
    // in it the closure never runs.
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// Called once a publication's batch is durable, or has failed.
pub(crate) type CommitDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// How to publish one message.
#[derive(Default)]
pub(crate) struct Publishing<'a> {
    /// The publishing session (for No Local).
    pub(crate) publisher: Option<&'a SessionRef>,
    /// A QoS 2 PUBLISH of a persistent session: its packet identifier is
    /// stored with the message, so that a resend after a crash is known
    /// as a duplicate.
    pub(crate) incoming_qos2: Option<PacketId>,
    /// The publisher is a client's connection, which can stop reading:
    /// a delivery that does not fit a connected session's mailbox may be
    /// handed back in [`Routed::blocked`] instead of dropped, so the
    /// publisher waits for room (QoS 0 included: a fast publisher is slowed
    /// to its subscribers' pace rather than losing most of what it sends).
    /// Whether it does is the [`DeliveryPolicy`]'s ([`Placement`]).
    pub(crate) publisher_may_wait: bool,
    /// Called when the message's batch is durable; not called (and
    /// [`Routed::committing`] false) when there was nothing to store.
    pub(crate) done: Option<CommitDone>,
    /// Called when the other nodes' copies are stored (see `cluster/`);
    /// not called (and [`Routed::forwarding`] false) when none was needed.
    pub(crate) forward_done: Option<CommitDone>,
    /// The message comes from another node of the cluster: not forwarded
    /// again, and not retained here again (the cluster's retained bucket
    /// holds it).
    pub(crate) from_cluster: bool,
    /// The caller adds [`Routed::queued`] to `messages_routed` itself
    /// (a connection counts once per turn, not once per message).
    pub(crate) count_later: bool,
    /// The publisher's [`RouteCache`], whose targets, if any, are for
    /// this topic ([`RouteCache::take_topic`] made sure of it).
    pub(crate) route_cache: Option<&'a mut RouteCache>,
    /// Where the delivery of a message that goes to one session only
    /// waits, with those of the publisher's next messages to that session,
    /// to enter the mailbox together (see [`Outbox`]). Only when publishers
    /// may wait ([`DeliveryPolicy::publishers_wait`]) and without a store.
    pub(crate) outbox: Option<&'a mut Outbox>,
}

/// Most targets a [`RouteCache`] keeps: a larger fan-out is routed anew.
const ROUTE_CACHE_MAX: usize = 64;

/// The targets of the last topic a connection published to, kept while no
/// subscription changes anywhere (the broker's router generation): a
/// publisher that publishes to its topic again, as a device does, skips the
/// router, its lock shared with every other publisher, and its walk. Not
/// kept when a shared subscription matched (a member is chosen in turn) or
/// for more than [`ROUTE_CACHE_MAX`] targets.
///
/// The topic is kept checked, in a copy of its own: the next publication
/// to it is not checked again, the cache does not keep the read buffer it
/// came in, and the topic the publication is routed by is not a reference
/// count on the read buffer that the subscribers' tasks release
/// concurrently.
#[derive(Debug, Default)]
pub(crate) struct RouteCache {
    /// The last topic published to, unless taken out.
    topic: Option<TopicName>,
    /// The router generation the targets were routed at, for `topic`.
    routed_at: Option<u64>,
    targets: Vec<Target<SessionRef>>,
}

impl RouteCache {
    /// Takes out the topic last published to, if it is `name`, to be put
    /// back with [`RouteCache::keep_topic`]. If not, the targets, another
    /// topic's, are forgotten.
    pub(crate) fn take_topic(&mut self, name: &[u8]) -> Option<TopicName> {
        match self.topic.take() {
            Some(t) if t.as_bytes()[..] == *name => Some(t),
            _ => {
                self.routed_at = None;
                self.targets.clear();
                None
            }
        }
    }

    /// Keeps `topic` (checked, and not a slice of a read buffer: see
    /// [`TopicName::detached`]) as the topic the targets are for.
    pub(crate) fn keep_topic(&mut self, topic: TopicName) {
        self.topic = Some(topic);
    }
}

/// Most deliveries an [`Outbox`] holds before it is flushed.
const OUTBOX_MAX: usize = 256;

/// Deliveries to one session from consecutive publications of one
/// connection that each went to that session alone (fan-in): they enter
/// its mailbox together, under one lock, when the publisher has read what
/// it had (or when another destination comes), rather than one lock per
/// message shared with every other publisher. In order: a delivery that
/// does not fit holds back those after it ([`Routed::blocked`]). At most
/// [`OUTBOX_MAX`] deliveries. The connection holds the acknowledgements of
/// QoS 1/2 publications here until their deliveries are in their mailbox.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    session: Option<SessionRef>,
    deliveries: Vec<Delivery>,
    /// The acknowledgements (QoS 1 and 2) of the publications whose
    /// deliveries went through the outbox, held by the connection until
    /// those are all in their mailbox.
    pub(crate) acks: Vec<(PacketId, ReasonCode)>,
}

impl Outbox {
    pub(crate) fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }
}

/// What publishing a message did.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Sessions it matched.
    pub(crate) matched: usize,
    /// Deliveries waiting for room in connected sessions' mailboxes, in
    /// the order they were made.
    pub(crate) blocked: Blocked<SessionRef>,
    /// Whether a batch was submitted and `done` will be called.
    pub(crate) committing: bool,
    /// Whether the message went to other nodes and `forward_done` will be
    /// called.
    pub(crate) forwarding: bool,
    /// Deliveries queued in mailboxes.
    pub(crate) queued: u64,
}

impl Broker {
    /// Routes a message to every matching session's mailbox and keeps it
    /// if retained.
    ///
    /// With persistence, QoS 1/2 deliveries to persistent sessions and the
    /// retained message go into one batch, submitted *before* the
    /// deliveries enter the mailboxes: a subscriber's removal of a
    /// delivered message is then always submitted after its append.
    pub(crate) fn publish(
        &self,
        topic: &TopicName,
        message: Arc<Message>,
        mut how: Publishing<'_>,
        now: Instant,
    ) -> Routed {
        let forwarding = self.forward(topic, &message, &mut how);
        let mut routed = self.publish_here(topic, message, how, now);
        routed.forwarding = forwarding;
        routed
    }

    /// [`Broker::publish`] to this node's sessions.
    fn publish_here(
        &self,
        topic: &TopicName,
        message: Arc<Message>,
        mut how: Publishing<'_>,
        now: Instant,
    ) -> Routed {
        let mut batch = self.persist.as_ref().map(|_| Persist::batch(now));
        if message.retain && self.config.retain_available && !how.from_cluster {
            let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
            if retained.retain(topic, &message, self.config.max_retained_messages) {
                // $SYS topics describe this run of the broker: not stored.
                if let Some(b) = batch
                    .as_mut()
                    .filter(|_| !topic.as_str().starts_with("$SYS/"))
                {
                    if message.payload.is_empty() {
                        b.clear_retained(&message.topic);
                    } else {
                        b.set_retained(&message);
                    }
                }
            }
        }
        let publisher = how.publisher;
        if let (Some(b), Some(id), Some(me)) = (batch.as_mut(), how.incoming_qos2, publisher) {
            b.add_incoming_qos2(&me.0.client_id, id);
        }
        // Shared by the deliveries; the last one takes it.
        let mut message = Some(message);
        // The publisher's last route, if it is for this topic and the
        // subscriptions have not changed since: no router, no lock.
        let cache = how.route_cache.take();
        let generation = self.router_generation.load(Ordering::Acquire);
        let hit = cache
            .as_ref()
            .is_some_and(|c| c.routed_at == Some(generation));
        // Otherwise held until every delivery is in its mailbox: targets
        // borrow their session from the router, so routing touches no
        // reference count. Nothing here waits, and only SUBSCRIBE and
        // UNSUBSCRIBE wait for it.
        if let Some(c) = cache.as_deref().filter(|_| hit)
            && batch.is_none()
            && !self.security.acl_in_use()
        {
            return self.place_cached(c, message, how, now);
        }
        let router = (!hit).then(|| self.router.read().unwrap_or_else(|p| p.into_inner()));
        TARGETS.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let mut targets: Vec<Target<&SessionRef>> = recycle(std::mem::take(&mut *scratch));
            match (&router, cache) {
                (Some(router), cache) => {
                    let shared =
                        router.route(topic, publisher, |s| s.0.is_connected(), &mut targets);
                    if let Some(c) = cache {
                        c.targets.clear();
                        c.routed_at = None;
                        if !shared && targets.len() <= ROUTE_CACHE_MAX {
                            // Read under the lock: the generation of this route.
                            c.routed_at = Some(self.router_generation.load(Ordering::Acquire));
                            c.targets.extend(targets.iter().map(|t| t.clone().cloned()));
                        }
                    }
                }
                (None, Some(c)) => targets.extend(c.targets.iter().map(|t| Target {
                    session: &t.session,
                    qos: t.qos,
                    retain_as_published: t.retain_as_published,
                    subscription_ids: t.subscription_ids.clone(),
                    shared: None,
                })),
                (None, None) => {}
            }
            let mut matched = targets.len();
            // Only with an ACL: the subscriber may not read every topic its
            // filters match.
            if self.security.acl_in_use() {
                targets.retain(|t| t.session.0.may_read(topic.as_str()));
                let denied = matched - targets.len();
                Stats::add(&self.stats.dropped_acl_read, denied as u64);
                matched -= denied;
            }
            let mut routed = Routed {
                matched,
                ..Routed::default()
            };
            let mut forget = None;
            match batch {
                None => {
                    let n = targets.len();
                    let deliveries = targets
                        .drain(..)
                        .enumerate()
                        .map_while(|(i, t)| t.into_delivery(&mut message, i + 1 == n));
                    self.place_all(n, deliveries, &mut how, &mut routed, &mut forget, now);
                }
                Some(mut b) => {
                    let mut deliveries = DELIVERIES.with(|cell| recycle(cell.take()));
                    let n = targets.len();
                    for (i, t) in targets.drain(..).enumerate() {
                        let Some((session, mut d)) = t.into_delivery(&mut message, i + 1 == n)
                        else {
                            break;
                        };
                        let handle = &session.0;
                        if d.qos != QoS::AtMostOnce && handle.is_persistent() {
                            d.tag = handle.take_seq();
                            b.append_queued(&handle.client_id, d.tag, &d);
                        }
                        deliveries.push((session, d));
                    }
                    if let Some(persist) = &self.persist
                        && !b.is_empty()
                    {
                        match how.done.take() {
                            Some(done) => {
                                persist.submit(b, done);
                                routed.committing = true;
                            }
                            None => persist.submit_logged(b),
                        }
                    }
                    how.outbox = None;
                    for (session, d) in deliveries.drain(..) {
                        self.place(session, d, &mut how, &mut routed, &mut forget, now);
                    }
                    DELIVERIES.with(|cell| cell.replace(recycle(deliveries)));
                }
            }
            *scratch = recycle(targets);
            drop(router);
            self.settle(&routed, how.count_later, forget);
            routed
        })
    }

    /// [`Broker::publish`] of a message without a store or an ACL, along
    /// the publisher's [`RouteCache`]: each delivery made from the cached
    /// target in place.
    fn place_cached(
        &self,
        cache: &RouteCache,
        mut message: Option<Arc<Message>>,
        mut how: Publishing<'_>,
        now: Instant,
    ) -> Routed {
        let n = cache.targets.len();
        let mut routed = Routed {
            matched: n,
            ..Routed::default()
        };
        let mut forget = None;
        let deliveries = cache
            .targets
            .iter()
            .enumerate()
            .map_while(|(i, t)| Some((&t.session, t.delivery(&mut message, i + 1 == n)?)));
        self.place_all(n, deliveries, &mut how, &mut routed, &mut forget, now);
        self.settle(&routed, how.count_later, forget);
        routed
    }

    /// Places the `n` deliveries of one publication without a store, in
    /// order. A fan-out (other than one target) first empties the outbox,
    /// so that each delivery enters its mailbox after those waiting there.
    fn place_all<'s>(
        &self,
        n: usize,
        deliveries: impl Iterator<Item = (&'s SessionRef, Delivery)>,
        how: &mut Publishing<'_>,
        routed: &mut Routed,
        forget: &mut Option<Batch>,
        now: Instant,
    ) {
        if n != 1
            && let Some(outbox) = how.outbox.take()
        {
            self.flush_outbox(outbox, routed);
        }
        for (session, d) in deliveries {
            self.place(session, d, how, routed, forget, now);
        }
    }

    /// Ends a publication: its queued deliveries counted as routed (unless
    /// the caller counts them), the removals of stored ones it dropped
    /// submitted.
    fn settle(&self, routed: &Routed, count_later: bool, forget: Option<Batch>) {
        if routed.queued > 0 && !count_later {
            Stats::add(&self.stats.messages_routed, routed.queued);
        }
        self.forget(forget);
    }

    /// Puts one routed delivery in its session's mailbox as the
    /// [`DeliveryPolicy`] places it: if it fits, or handed back in
    /// [`Routed::blocked`] for the publisher to wait for room (through the
    /// outbox, if the publisher has one); else within the mailbox's limits
    /// and policy.
    fn place(
        &self,
        session: &SessionRef,
        delivery: Delivery,
        how: &mut Publishing<'_>,
        routed: &mut Routed,
        forget: &mut Option<Batch>,
        now: Instant,
    ) {
        let handle = &session.0;
        let placement = self
            .delivery
            .placement(how.publisher_may_wait, handle.subscriber());
        if let Some(outbox) = how.outbox.as_deref_mut() {
            if placement == Placement::ByQueuePolicy {
                // Placed now: after those waiting.
                self.flush_outbox(outbox, routed);
            } else {
                if !outbox
                    .session
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(&s.0, handle))
                {
                    self.flush_outbox(outbox, routed);
                    outbox.session = Some(session.clone());
                }
                outbox.deliveries.push(delivery);
                if outbox.deliveries.len() >= OUTBOX_MAX {
                    self.flush_outbox(outbox, routed);
                }
                return;
            }
        }
        let queued = match placement {
            Placement::WaitForRoom => routed
                .blocked
                .place(session, delivery, |d| self.try_push(handle, d)),
            Placement::ByQueuePolicy => self.push(handle, delivery, forget, now),
        };
        if queued {
            routed.queued += 1;
        }
    }

    /// Puts what `outbox` holds in its session's mailbox, under one lock;
    /// from the first that does not fit, they are handed back in
    /// [`Routed::blocked`], in order.
    pub(crate) fn flush_outbox(&self, outbox: &mut Outbox, routed: &mut Routed) {
        let Some(session) = outbox.session.take() else {
            return;
        };
        let handle = &session.0;
        let mut deliveries = outbox.deliveries.drain(..);
        let limits = handle.limits(&self.queue_limits);
        let mut mailbox = lock(&handle.mailbox);
        let was_empty = mailbox.is_empty();
        let mut queued = 0;
        let mut refused = None;
        for d in deliveries.by_ref() {
            if let Err(d) = mailbox.try_push(d, limits) {
                refused = Some(d);
                break;
            }
            queued += 1;
        }
        drop(mailbox);
        if let Some(d) = refused {
            let mut run = VecDeque::with_capacity(deliveries.len() + 1);
            run.push_back(d);
            run.extend(deliveries);
            routed.blocked.push_run(session.clone(), run);
        }
        if queued > 0 && was_empty {
            // As in `try_push`: only a mailbox that was empty wakes its task.
            handle.notify.notify_one();
        }
        routed.queued += queued;
    }

    /// Tries again to put what `blocked` holds (waiting since `since`) in
    /// its sessions' mailboxes, each run under one lock, in order, as
    /// [`Blocked::retry`] says; what still waits stays in `blocked`.
    /// `publisher_gone`: the publisher's connection is closed.
    /// Returns how many were queued (the caller counts them as routed).
    pub(crate) fn retry_blocked(
        &self,
        blocked: &mut Blocked<SessionRef>,
        since: Instant,
        publisher_gone: bool,
        now: Instant,
    ) -> u64 {
        let mut mailboxes = Retrying {
            broker: self,
            now,
            queued: 0,
        };
        blocked.retry(&self.delivery, since, now, publisher_gone, &mut mailboxes);
        mailboxes.queued
    }

    /// Puts a delivery in a session's mailbox if it fits without dropping
    /// a QoS 1/2 message; hands it back otherwise. The caller counts it.
    fn try_push(&self, session: &SessionHandle, delivery: Delivery) -> Result<(), Delivery> {
        let mut mailbox = lock(&session.mailbox);
        let was_empty = mailbox.is_empty();
        let pushed = mailbox.try_push(delivery, session.limits(&self.queue_limits));
        drop(mailbox);
        if pushed.is_ok() && was_empty {
            // Only the first delivery into an empty mailbox wakes the task:
            // it takes what is there, and wakes itself if it leaves any.
            session.notify.notify_one();
        }
        pushed
    }

    /// Pushes within the mailbox's limits and policy; stored deliveries it
    /// drops are added to `forget`, a batch removing them.
    /// Returns whether it was queued; a drop is counted here, a queued
    /// delivery by the caller.
    fn push(
        &self,
        session: &SessionHandle,
        delivery: Delivery,
        forget: &mut Option<Batch>,
        now: Instant,
    ) -> bool {
        let mut dropped = |d: Delivery| {
            if d.tag != 0 && self.persist.is_some() {
                forget
                    .get_or_insert_with(|| Persist::batch(now))
                    .remove_queued(&session.client_id, d.tag);
            }
        };
        let limits = session.limits(&self.queue_limits);
        let pushed = lock(&session.mailbox).push_with(delivery, limits, &mut dropped);
        if pushed.is_err() {
            Stats::add(&self.stats.dropped_queue_full, 1);
        }
        session.notify.notify_one();
        pushed.is_ok()
    }

    /// Pushes within the mailbox's limits and policy (stored deliveries it
    /// drops are removed from the store).
    fn push_by_policy(&self, session: &SessionHandle, delivery: Delivery, now: Instant) {
        let mut forget = None;
        self.push_counted(session, delivery, &mut forget, now);
        self.forget(forget);
    }

    /// [`Broker::push`], counting a queued delivery as routed.
    fn push_counted(
        &self,
        session: &SessionHandle,
        delivery: Delivery,
        forget: &mut Option<Batch>,
        now: Instant,
    ) {
        if self.push(session, delivery, forget, now) {
            Stats::add(&self.stats.messages_routed, 1);
        }
    }

    /// Submits a batch of removals, if any.
    pub(crate) fn forget(&self, batch: Option<Batch>) {
        if let (Some(persist), Some(b)) = (&self.persist, batch) {
            persist.submit_logged(b);
        }
    }

    /// A publisher's wait for room in `session`'s mailbox ended in
    /// [`Verdict::DropAndCongest`](mqtt_router::Verdict::DropAndCongest):
    /// the delivery is dropped and counted, and the session is marked
    /// congested so that publishers stop waiting for it.
    fn drop_blocked(&self, session: &SessionHandle, delivery: Delivery, now: Instant) {
        Stats::add(&self.stats.dropped_publish_wait, 1);
        lock(&session.mailbox).drops.queue_full += 1;
        session
            .congested
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if delivery.tag != 0
            && let Some(persist) = &self.persist
        {
            let mut b = Persist::batch(now);
            b.remove_queued(&session.client_id, delivery.tag);
            persist.submit_logged(b);
        }
        tracing::warn!(client_id = %session.client_id, qos = ?delivery.qos, "a delivery was dropped after waiting max_publish_wait_ms for room in the session's queue; the session is marked congested");
    }

    /// Gives deliveries a leaving session did not acknowledge to other
    /// members of their shared subscriptions; returns those that found no
    /// other member.
    pub(crate) fn reassign_shared(
        &self,
        leaving: &SessionRef,
        deliveries: Vec<Delivery>,
        now: Instant,
    ) -> Vec<Delivery> {
        // A moved delivery leaves the stored queue of the leaving session
        // (and enters that of its new session, if stored).
        let mut forget = None;
        let mut kept = Vec::new();
        let router = self.router.read().unwrap_or_else(|p| p.into_inner());
        let mut moves = Vec::new();
        for d in deliveries {
            let target = d
                .shared_group
                .as_ref()
                .and_then(|share| router.reassign(share, leaving, |s| s.0.is_connected()));
            match target {
                Some(t) => {
                    if d.tag != 0 && self.persist.is_some() {
                        forget
                            .get_or_insert_with(|| Persist::batch(now))
                            .remove_queued(&leaving.0.client_id, d.tag);
                    }
                    // The same message, delivered as the new member's
                    // subscription asks.
                    let mut message = Some(d.message);
                    moves.extend(t.into_delivery(&mut message, true));
                }
                None => kept.push(d),
            }
        }
        drop(router);
        for (session, d) in &mut moves {
            if d.qos != QoS::AtMostOnce && session.0.is_persistent() && self.persist.is_some() {
                d.tag = session.0.take_seq();
                forget
                    .get_or_insert_with(|| Persist::batch(now))
                    .append_queued(&session.0.client_id, d.tag, d);
            }
        }
        // Appends are submitted before the deliveries can be taken (and
        // removed) by their new sessions.
        self.forget(forget.take());
        for (session, d) in moves {
            self.push_counted(&session.0, d, &mut forget, now);
        }
        self.forget(forget);
        kept
    }
}

/// The broker's mailboxes as [`Blocked::retry`] fills them: each run under
/// the mailbox's lock, its task woken if the mailbox was empty, the
/// deliveries queued counted.
struct Retrying<'a> {
    broker: &'a Broker,
    now: Instant,
    queued: u64,
}

impl Mailboxes<SessionRef, Delivery> for Retrying<'_> {
    fn subscriber(&self, session: &SessionRef) -> Subscriber {
        session.0.subscriber()
    }

    fn fill(&mut self, session: &SessionRef, run: &mut VecDeque<Delivery>) {
        let h = &session.0;
        let limits = h.limits(&self.broker.queue_limits);
        let mut mailbox = lock(&h.mailbox);
        let was_empty = mailbox.is_empty();
        let mut n = 0;
        while let Some(d) = run.pop_front() {
            if let Err(d) = mailbox.try_push(d, limits) {
                run.push_front(d);
                break;
            }
            n += 1;
        }
        drop(mailbox);
        if n > 0 && was_empty {
            h.notify.notify_one();
        }
        self.queued += n;
    }

    fn drop_and_congest(&mut self, session: &SessionRef, delivery: Delivery) {
        self.broker.drop_blocked(&session.0, delivery, self.now);
    }

    fn push_by_policy(&mut self, session: &SessionRef, delivery: Delivery) {
        self.broker.push_by_policy(&session.0, delivery, self.now);
    }
}
