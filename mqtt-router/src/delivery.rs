//! The delivery policy for connected subscribers: what happens to a
//! delivery that does not fit its subscriber's queue, and how deliveries
//! that wait for room keep their order.
//!
//! Every session's deliveries go into one bounded queue
//! (`mqtt_session::MessageQueue`), whose overflow policy drops QoS 0
//! first, then the newest or the oldest QoS 1/2 message. For a
//! *connected* subscriber that is only the last resort: its client is
//! reading, so a full queue first makes the publisher wait for room (a
//! server stops reading from that publisher, and MQTT's own flow control
//! slows it down), and every message the publisher sent still reaches the
//! subscriber's session [MQTT-4.5.0-1]. How long a publisher waits is
//! bounded ([`DeliveryPolicy::max_publish_wait`]): after that the delivery
//! is dropped, counted, and the subscriber marked *congested*, so that no
//! publisher waits for it again until it has read its queue down to half
//! ([`DeliveryPolicy::relieved`]). So nothing is thrown away silently, and
//! no subscriber stalls publishers for long. The time limit, the congested
//! mark and the relief at half are this broker's policy, not the spec's.
//!
//! Deliveries that wait are held in a [`Blocked`], one per waiting
//! publisher, in the order they were made: a later delivery to a session
//! that has one waiting waits behind it, even if room came meanwhile, so
//! that a subscriber receives each publisher's messages in the order they
//! were sent [MQTT-4.6.0-6] (for every topic and QoS at once: stricter
//! than the spec's "Ordered Topic", which asks it per topic and QoS).
//!
//! Time is passed in. A server keeps the queues, behind whatever locks it
//! wants, and lends them to [`Blocked::retry`] through [`Mailboxes`].
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::{Duration, Instant};
//! use mqtt_router::{Blocked, DeliveryPolicy, Mailboxes, Placement, Subscriber};
//!
//! // Session 7's queue, with room for one delivery.
//! struct Queues {
//!     queue: Vec<&'static str>,
//!     room: usize,
//!     dropped: Vec<&'static str>,
//! }
//! impl Mailboxes<u32, &'static str> for Queues {
//!     fn subscriber(&self, _: &u32) -> Subscriber {
//!         Subscriber { connected: true, congested: false }
//!     }
//!     fn fill(&mut self, _: &u32, run: &mut VecDeque<&'static str>) {
//!         while self.room > 0 && !run.is_empty() {
//!             self.queue.extend(run.pop_front());
//!             self.room -= 1;
//!         }
//!     }
//!     fn drop_and_congest(&mut self, _: &u32, delivery: &'static str) {
//!         self.dropped.push(delivery);
//!     }
//!     fn push_by_policy(&mut self, _: &u32, _: &'static str) {}
//! }
//!
//! let policy = DeliveryPolicy::new(Duration::from_secs(2));
//! let subscriber = Subscriber { connected: true, congested: false };
//! // A client's publication to a connected subscriber: it waits for room.
//! assert_eq!(policy.placement(true, subscriber), Placement::WaitForRoom);
//!
//! let mut queues = Queues { queue: Vec::new(), room: 0, dropped: Vec::new() };
//! let mut blocked = Blocked::new();
//! let since = Instant::now();
//! assert!(!blocked.place(&7, "a", |d| Err(d))); // the queue is full: "a" waits
//! assert!(!blocked.place(&7, "b", |_| Ok(()))); // behind "a", untried
//!
//! // The subscriber read one: "a" goes in, "b" waits on.
//! queues.room = 1;
//! blocked.retry(&policy, since, since + Duration::from_millis(10), false, &mut queues);
//! assert_eq!(queues.queue, ["a"]);
//! assert_eq!(blocked.first(), Some((&7, &"b")));
//!
//! // The publisher waited as long as it may: "b" is dropped.
//! blocked.retry(&policy, since, since + Duration::from_secs(2), false, &mut queues);
//! assert_eq!(queues.dropped, ["b"]);
//! assert!(blocked.is_empty());
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mqtt_session::{Delivery, QueueLimits};

/// The delivery policy's one setting, and its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// How long a publisher waits for room in a subscriber's queue, at
    /// most; zero: publishers never wait, and a full queue drops by its
    /// overflow policy at once.
    max_publish_wait: Duration,
}

impl Default for DeliveryPolicy {
    /// Publishers wait up to 2 seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

/// A subscriber as the delivery policy sees it, read when a rule needs it
/// (its connection may change it meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// A connection owns the session: a client reads its queue.
    pub connected: bool,
    /// A publisher waited [`DeliveryPolicy::max_publish_wait`] for room in
    /// its queue in vain, and the subscriber has not read its queue down to
    /// half since ([`DeliveryPolicy::relieved`]).
    pub congested: bool,
}

impl Subscriber {
    /// Whether a publisher waits for room in this subscriber's queue: a
    /// client reads it (connected), and has not let a publisher wait in
    /// vain since it last caught up (not congested). A publisher waiting
    /// for a subscriber that stops being so waits no more.
    #[inline]
    pub const fn worth_waiting_for(self) -> bool {
        self.connected && !self.congested
    }
}

/// How a delivery enters its subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Only if it fits without dropping a QoS 1/2 message
    /// (`MessageQueue::try_push`); if not, its publisher waits for room
    /// ([`Blocked::place`]).
    WaitForRoom,
    /// At once, the queue's overflow policy making room or refusing it
    /// (`MessageQueue::push_with`).
    ByQueuePolicy,
}

/// What becomes of a delivery that waited for room and still does not
/// fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It goes on waiting.
    KeepWaiting,
    /// Dropped (counted), and the subscriber marked congested, so that
    /// publishers stop waiting for it.
    DropAndCongest,
    /// Placed by the queue's overflow policy, as if nobody could wait.
    ByQueuePolicy,
}

impl DeliveryPolicy {
    /// Publishers wait up to `max_publish_wait` for room (zero: never).
    pub const fn new(max_publish_wait: Duration) -> Self {
        Self { max_publish_wait }
    }

    /// How long a publisher waits for room in a subscriber's queue, at most.
    pub const fn max_publish_wait(&self) -> Duration {
        self.max_publish_wait
    }

    /// Whether publishers ever wait for room (a non-zero
    /// [`max_publish_wait`](Self::max_publish_wait)).
    #[inline]
    pub const fn publishers_wait(&self) -> bool {
        !self.max_publish_wait.is_zero()
    }

    /// How a delivery enters its subscriber's queue. It waits for room
    /// when its publisher can wait — a client's PUBLISH (`publisher_may_wait`),
    /// whose connection stops reading meanwhile; not a will, nor a message
    /// of the broker's own — publishers wait at all, and the subscriber is
    /// [worth waiting for](Subscriber::worth_waiting_for). Otherwise the
    /// queue's overflow policy applies at once: an offline session's queue
    /// only fills, a congested subscriber holds up no one.
    #[inline]
    pub const fn placement(&self, publisher_may_wait: bool, subscriber: Subscriber) -> Placement {
        if publisher_may_wait && self.publishers_wait() && subscriber.worth_waiting_for() {
            Placement::WaitForRoom
        } else {
            Placement::ByQueuePolicy
        }
    }

    /// When a publisher that began waiting at `since` has waited as long
    /// as it may.
    #[inline]
    pub fn deadline(&self, since: Instant) -> Instant {
        since + self.max_publish_wait
    }

    /// What becomes, at `now`, of a delivery that has waited since `since`
    /// and still does not fit:
    ///
    /// 1. the publisher waited as long as it may ([`deadline`](Self::deadline)),
    ///    or the subscriber is congested (another publisher's wait for it
    ///    ended so): [`Verdict::DropAndCongest`];
    /// 2. the publisher is gone (there is no one left to hold back), or the
    ///    subscriber is (its queue only fills until it returns):
    ///    [`Verdict::ByQueuePolicy`];
    /// 3. otherwise [`Verdict::KeepWaiting`].
    #[inline]
    pub fn after_wait(
        &self,
        since: Instant,
        now: Instant,
        publisher_gone: bool,
        subscriber: Subscriber,
    ) -> Verdict {
        if now >= self.deadline(since) || subscriber.congested {
            Verdict::DropAndCongest
        } else if publisher_gone || !subscriber.connected {
            Verdict::ByQueuePolicy
        } else {
            Verdict::KeepWaiting
        }
    }

    /// Whether a congested subscriber with `queued` deliveries in its queue
    /// is relieved (publishers wait for it again): it has read its queue
    /// down to half of `limits.max_messages`. Half, not "any room": a
    /// subscriber that just keeps up with a full queue would otherwise let
    /// each publisher wait its limit again and again.
    #[inline]
    pub const fn relieved(&self, queued: usize, limits: &QueueLimits) -> bool {
        queued <= limits.max_messages / 2
    }
}

/// A server's queues of its sessions, as [`Blocked::retry`] uses them:
/// the mechanics (locks, wake-ups, counters, storage) behind the policy's
/// decisions. `K` names a session, `D` is a delivery.
pub trait Mailboxes<K, D> {
    /// The session's subscriber, now.
    fn subscriber(&self, session: &K) -> Subscriber;

    /// Moves deliveries from the front of `run` into the session's queue
    /// while they fit without dropping a QoS 1/2 message
    /// (`MessageQueue::try_push`), and stops at the first that does not:
    /// it and those after it stay in `run`, in order.
    fn fill(&mut self, session: &K, run: &mut VecDeque<D>);

    /// [`Verdict::DropAndCongest`]: drops `delivery` (counted) and marks
    /// the session's subscriber congested.
    fn drop_and_congest(&mut self, session: &K, delivery: D);

    /// [`Verdict::ByQueuePolicy`]: pushes `delivery` into the session's
    /// queue, whose overflow policy makes room or refuses it
    /// (`MessageQueue::push_with`).
    fn push_by_policy(&mut self, session: &K, delivery: D);
}

/// Deliveries of one publisher waiting for room in their subscribers'
/// queues, in the order they were made, as runs of consecutive deliveries
/// to one session: a run names its session once and enters the queue in
/// one go ([`Mailboxes::fill`]).
///
/// `K` names a session (compared with `==`); `D` is a delivery.
#[derive(Debug)]
pub struct Blocked<K, D = Delivery> {
    runs: Vec<(K, VecDeque<D>)>,
}

impl<K, D> Default for Blocked<K, D> {
    fn default() -> Self {
        Self { runs: Vec::new() }
    }
}

impl<K: Clone + PartialEq, D> Blocked<K, D> {
    /// Nothing waits (allocates nothing).
    pub const fn new() -> Self {
        Self { runs: Vec::new() }
    }

    /// Whether nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Whether a delivery to `session` waits.
    #[inline]
    pub fn holds(&self, session: &K) -> bool {
        self.runs.iter().any(|(s, _)| s == session)
    }

    /// Adds a delivery to `session`, after the others.
    pub fn push(&mut self, session: &K, delivery: D) {
        match self.runs.last_mut() {
            Some((s, run)) if s == session => run.push_back(delivery),
            _ => self
                .runs
                .push((session.clone(), VecDeque::from([delivery]))),
        }
    }

    /// Adds `run`, deliveries to `session` in order, after the others.
    pub fn push_run(&mut self, session: K, mut run: VecDeque<D>) {
        if run.is_empty() {
            return;
        }
        match self.runs.last_mut() {
            Some((s, last)) if *s == session => last.append(&mut run),
            _ => self.runs.push((session, run)),
        }
    }

    /// Adds `other`'s deliveries after these (a publisher that waits
    /// already, and made more deliveries that wait).
    pub fn append(&mut self, other: Self) {
        for (s, run) in other.runs {
            self.push_run(s, run);
        }
    }

    /// The first delivery waiting, and its session: the room a publisher
    /// waits for first.
    pub fn first(&self) -> Option<(&K, &D)> {
        let (s, run) = self.runs.first()?;
        Some((s, run.front()?))
    }

    /// Places a delivery to `session` whose publisher waits for room
    /// ([`Placement::WaitForRoom`]): behind the deliveries to `session`
    /// that wait already, without trying its queue, so they arrive in order
    /// [MQTT-4.6.0-6]; otherwise into its queue with `try_push`, which
    /// hands it back if it does not fit, and then it waits. Returns whether
    /// it went into the queue.
    #[inline]
    pub fn place(
        &mut self,
        session: &K,
        delivery: D,
        try_push: impl FnOnce(D) -> Result<(), D>,
    ) -> bool {
        if self.holds(session) {
            self.push(session, delivery);
            return false;
        }
        match try_push(delivery) {
            Ok(()) => true,
            Err(d) => {
                self.push(session, d);
                false
            }
        }
    }

    /// Tries again, at `now`, to put what waits (since `since`) into its
    /// subscribers' queues, each run in one go, in order: a run to a
    /// session that an earlier run still waits for is not tried, even if
    /// room came meanwhile (its subscriber reads concurrently), so that the
    /// deliveries arrive in order [MQTT-4.6.0-6]. What still does not fit
    /// gets the policy's [`after_wait`](DeliveryPolicy::after_wait)
    /// verdict: it keeps waiting here, or `mailboxes` drops it or places
    /// it by the queue's policy. `publisher_gone`: the publisher's
    /// connection is closed.
    pub fn retry(
        &mut self,
        policy: &DeliveryPolicy,
        since: Instant,
        now: Instant,
        publisher_gone: bool,
        mailboxes: &mut impl Mailboxes<K, D>,
    ) {
        let runs = std::mem::take(&mut self.runs);
        for (session, mut run) in runs {
            if !self.holds(&session) {
                mailboxes.fill(&session, &mut run);
                if run.is_empty() {
                    continue;
                }
            }
            match policy.after_wait(since, now, publisher_gone, mailboxes.subscriber(&session)) {
                Verdict::KeepWaiting => self.push_run(session, run),
                Verdict::DropAndCongest => {
                    for d in run {
                        mailboxes.drop_and_congest(&session, d);
                    }
                }
                Verdict::ByQueuePolicy => {
                    for d in run {
                        mailboxes.push_by_policy(&session, d);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const WAIT: Duration = Duration::from_millis(2000);
    const READING: Subscriber = Subscriber {
        connected: true,
        congested: false,
    };
    const CONGESTED: Subscriber = Subscriber {
        connected: true,
        congested: true,
    };
    const OFFLINE: Subscriber = Subscriber {
        connected: false,
        congested: false,
    };

    /// One subscriber's queue: what is in it, room for how many more,
    /// and what became of the deliveries that waited in vain.
    #[derive(Default)]
    struct Queue {
        queued: Vec<u32>,
        room: usize,
        disconnected: bool,
        congested: bool,
        dropped: Vec<u32>,
        by_policy: Vec<u32>,
        fills: usize,
    }

    #[derive(Default)]
    struct Queues(HashMap<char, Queue>);

    impl Queues {
        fn with(sessions: &[(char, usize)]) -> Self {
            let mut q = Self::default();
            for &(s, room) in sessions {
                q.0.insert(
                    s,
                    Queue {
                        room,
                        ..Queue::default()
                    },
                );
            }
            q
        }

        fn get(&mut self, s: char) -> &mut Queue {
            self.0.get_mut(&s).unwrap()
        }

        fn try_push(&mut self, s: char, d: u32) -> Result<(), u32> {
            let q = self.get(s);
            if q.room == 0 {
                return Err(d);
            }
            q.room -= 1;
            q.queued.push(d);
            Ok(())
        }
    }

    impl Mailboxes<char, u32> for Queues {
        fn subscriber(&self, s: &char) -> Subscriber {
            let q = &self.0[s];
            Subscriber {
                connected: !q.disconnected,
                congested: q.congested,
            }
        }

        fn fill(&mut self, s: &char, run: &mut VecDeque<u32>) {
            self.get(*s).fills += 1;
            while let Some(d) = run.pop_front() {
                if let Err(d) = self.try_push(*s, d) {
                    run.push_front(d);
                    return;
                }
            }
        }

        fn drop_and_congest(&mut self, s: &char, d: u32) {
            let q = self.get(*s);
            q.dropped.push(d);
            q.congested = true;
        }

        fn push_by_policy(&mut self, s: &char, d: u32) {
            self.get(*s).by_policy.push(d);
        }
    }

    fn place(blocked: &mut Blocked<char, u32>, queues: &mut Queues, s: char, d: u32) -> bool {
        blocked.place(&s, d, |d| queues.try_push(s, d))
    }

    fn waiting(blocked: &Blocked<char, u32>) -> Vec<(char, Vec<u32>)> {
        blocked
            .runs
            .iter()
            .map(|(s, run)| (*s, run.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn a_client_publication_waits_for_a_connected_subscriber() {
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(policy.placement(true, READING), Placement::WaitForRoom);
    }

    #[test]
    fn nobody_waits_for_a_congested_or_offline_subscriber() {
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(policy.placement(true, CONGESTED), Placement::ByQueuePolicy);
        assert_eq!(policy.placement(true, OFFLINE), Placement::ByQueuePolicy);
    }

    #[test]
    fn a_publisher_that_cannot_wait_places_by_queue_policy() {
        // A will, or the broker's own message: no connection to hold back.
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(policy.placement(false, READING), Placement::ByQueuePolicy);
        // max_publish_wait 0: nobody waits.
        let never = DeliveryPolicy::new(Duration::ZERO);
        assert!(!never.publishers_wait());
        assert_eq!(never.placement(true, READING), Placement::ByQueuePolicy);
    }

    /// [MQTT-4.6.0-6]: a delivery to a session that has one waiting waits
    /// behind it, its queue untried; other sessions are not held back.
    #[test]
    fn a_later_delivery_waits_behind_a_waiting_one() {
        let mut queues = Queues::with(&[('a', 1), ('b', 5)]);
        let mut blocked = Blocked::new();
        assert!(place(&mut blocked, &mut queues, 'a', 1));
        assert!(!place(&mut blocked, &mut queues, 'a', 2));
        // Room came, but 3 must not pass 2.
        queues.get('a').room = 5;
        assert!(!place(&mut blocked, &mut queues, 'a', 3));
        assert!(place(&mut blocked, &mut queues, 'b', 10));
        assert!(!place(&mut blocked, &mut queues, 'a', 4));
        assert_eq!(queues.get('a').queued, [1]);
        assert_eq!(queues.get('b').queued, [10]);
        assert_eq!(waiting(&blocked), [('a', vec![2, 3, 4])]);
        assert_eq!(blocked.first(), Some((&'a', &2)));
    }

    #[test]
    fn deliveries_enter_in_order_when_room_comes() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        let mut queues = Queues::with(&[('a', 0), ('b', 0)]);
        let mut blocked = Blocked::new();
        for (s, d) in [('a', 1), ('b', 10), ('a', 2), ('a', 3)] {
            place(&mut blocked, &mut queues, s, d);
        }
        assert_eq!(
            waiting(&blocked),
            [('a', vec![1]), ('b', vec![10]), ('a', vec![2, 3])]
        );
        // Room for one in 'a', plenty in 'b'.
        queues.get('a').room = 1;
        queues.get('b').room = 5;
        blocked.retry(&policy, since, since + WAIT / 2, false, &mut queues);
        assert_eq!(queues.get('a').queued, [1]);
        assert_eq!(queues.get('b').queued, [10]);
        assert_eq!(waiting(&blocked), [('a', vec![2, 3])]);
        // Then room for all.
        queues.get('a').room = 5;
        blocked.retry(&policy, since, since + WAIT / 2, false, &mut queues);
        assert_eq!(queues.get('a').queued, [1, 2, 3]);
        assert!(blocked.is_empty());
    }

    /// A run to a session an earlier run still waits for is not tried, even
    /// if its subscriber made room meanwhile: it would pass the earlier one.
    #[test]
    fn a_retry_tries_no_run_behind_one_still_waiting() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        let mut blocked = Blocked::new();
        blocked.push(&'a', 1);
        blocked.push(&'b', 10);
        blocked.push(&'a', 2);
        let mut queues = Queues::with(&[('a', 0), ('b', 5)]);
        blocked.retry(&policy, since, since, false, &mut queues);
        assert_eq!(queues.get('a').fills, 1);
        assert_eq!(waiting(&blocked), [('a', vec![1, 2])]);
    }

    #[test]
    fn a_wait_that_times_out_drops_and_congests() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        let deadline = policy.deadline(since);
        assert_eq!(deadline, since + WAIT);
        let just_before = deadline - Duration::from_millis(1);
        assert_eq!(
            policy.after_wait(since, just_before, false, READING),
            Verdict::KeepWaiting
        );
        assert_eq!(
            policy.after_wait(since, deadline, false, READING),
            Verdict::DropAndCongest
        );
        // Timed out comes first: the publisher did wait its limit.
        assert_eq!(
            policy.after_wait(since, deadline, true, OFFLINE),
            Verdict::DropAndCongest
        );

        let mut queues = Queues::with(&[('a', 0), ('b', 0)]);
        let mut blocked = Blocked::new();
        for (s, d) in [('a', 1), ('a', 2), ('b', 10)] {
            place(&mut blocked, &mut queues, s, d);
        }
        blocked.retry(&policy, since, just_before, false, &mut queues);
        assert_eq!(waiting(&blocked), [('a', vec![1, 2]), ('b', vec![10])]);
        blocked.retry(&policy, since, deadline, false, &mut queues);
        assert!(blocked.is_empty());
        assert_eq!(queues.get('a').dropped, [1, 2]);
        assert!(queues.get('a').congested);
        assert_eq!(queues.get('b').dropped, [10]);
    }

    /// Another publisher's wait for the subscriber ended in a drop: this
    /// one waits no more either.
    #[test]
    fn a_wait_for_a_congested_subscriber_drops() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(
            policy.after_wait(since, since, false, CONGESTED),
            Verdict::DropAndCongest
        );
        let mut queues = Queues::with(&[('a', 0)]);
        let mut blocked = Blocked::new();
        place(&mut blocked, &mut queues, 'a', 1);
        queues.get('a').congested = true;
        blocked.retry(&policy, since, since, false, &mut queues);
        assert!(blocked.is_empty());
        assert_eq!(queues.get('a').dropped, [1]);
    }

    #[test]
    fn publisher_gone_places_by_queue_policy() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(
            policy.after_wait(since, since, true, READING),
            Verdict::ByQueuePolicy
        );
        let mut queues = Queues::with(&[('a', 0)]);
        let mut blocked = Blocked::new();
        place(&mut blocked, &mut queues, 'a', 1);
        place(&mut blocked, &mut queues, 'a', 2);
        blocked.retry(&policy, since, since, true, &mut queues);
        assert!(blocked.is_empty());
        assert_eq!(queues.get('a').by_policy, [1, 2]);
        assert!(!queues.get('a').congested);
    }

    #[test]
    fn disconnected_subscriber_places_by_queue_policy() {
        let since = Instant::now();
        let policy = DeliveryPolicy::new(WAIT);
        assert_eq!(
            policy.after_wait(since, since, false, OFFLINE),
            Verdict::ByQueuePolicy
        );
        let mut queues = Queues::with(&[('a', 0), ('b', 0)]);
        let mut blocked = Blocked::new();
        place(&mut blocked, &mut queues, 'a', 1);
        place(&mut blocked, &mut queues, 'b', 10);
        queues.get('a').disconnected = true;
        blocked.retry(&policy, since, since, false, &mut queues);
        assert_eq!(queues.get('a').by_policy, [1]);
        // The other subscriber still reads: its delivery waits on.
        assert_eq!(waiting(&blocked), [('b', vec![10])]);
    }

    #[test]
    fn a_congested_subscriber_is_relieved_at_half_its_queue() {
        let policy = DeliveryPolicy::new(WAIT);
        let limits = QueueLimits {
            max_messages: 10,
            ..QueueLimits::default()
        };
        assert!(!policy.relieved(10, &limits));
        assert!(!policy.relieved(6, &limits));
        assert!(policy.relieved(5, &limits));
        assert!(policy.relieved(0, &limits));
        let odd = QueueLimits {
            max_messages: 11,
            ..limits
        };
        assert!(!policy.relieved(6, &odd));
        assert!(policy.relieved(5, &odd));
    }

    #[test]
    fn runs_join_when_their_session_is_the_same() {
        let mut blocked: Blocked<char, u32> = Blocked::new();
        assert!(blocked.first().is_none());
        blocked.push(&'a', 1);
        blocked.push(&'a', 2);
        blocked.push_run('b', VecDeque::new());
        let mut later = Blocked::new();
        later.push_run('a', VecDeque::from([3]));
        later.push(&'b', 10);
        blocked.append(later);
        assert_eq!(waiting(&blocked), [('a', vec![1, 2, 3]), ('b', vec![10])]);
        assert!(blocked.holds(&'b'));
        assert!(!blocked.holds(&'c'));
    }
}
