//! State shared by every connection: the routing tables, the session
//! registry, and the timers that outlive connections (will delay, session
//! expiry).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use mqtt_codec::{MqttString, PublishProperties, QoS, Will};
use mqtt_router::{RetainedStore, Router, Target};
use mqtt_session::{Delivery, Message, QueueLimits, ServerConfig};
use mqtt_topic::TopicName;
use tokio::sync::Notify;

use crate::auth::Security;
use crate::config::Config;
use crate::handle::{SessionHandle, SessionRef, lock};
use crate::stats::Stats;

thread_local! {
    /// Routing scratch space, reused so that routing a message allocates
    /// nothing once it has grown to the usual fan-out.
    static TARGETS: RefCell<Vec<Target<SessionRef>>> = const { RefCell::new(Vec::new()) };
}

/// A job for the janitor.
#[derive(Debug)]
enum Job {
    /// Publish a will whose delay has passed.
    Will(MqttString, Box<Will>),
    /// End a session whose expiry has passed, if it is still offline.
    Expire(Arc<SessionHandle>),
}

pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) session_config: ServerConfig,
    pub(crate) queue_limits: QueueLimits,
    /// Read-mostly: publishers route under the read lock concurrently;
    /// SUBSCRIBE and UNSUBSCRIBE take the write lock for one insertion.
    /// Never held across an await.
    pub(crate) router: RwLock<Router<SessionRef>>,
    pub(crate) retained: RwLock<RetainedStore>,
    /// Sessions by client identifier, connected or not.
    pub(crate) sessions: Mutex<HashMap<MqttString, Arc<SessionHandle>>>,
    next_id: AtomicU64,
    pub(crate) stats: Arc<Stats>,
    /// Timed jobs by deadline (a sequence number keeps equal deadlines apart).
    jobs: Mutex<BTreeMap<(Instant, u64), Job>>,
    jobs_changed: Notify,
    /// Authentication, ACLs, failed-login tracking.
    pub(crate) security: Security,
    /// When the broker started (uptime in metrics and `$SYS`).
    pub(crate) started: Instant,
}

impl Broker {
    pub(crate) fn new(config: Config) -> Self {
        let security = Security::new(&config);
        Self {
            session_config: config.session_config(),
            queue_limits: config.queue_limits(),
            config,
            router: RwLock::new(Router::new()),
            retained: RwLock::new(RetainedStore::new()),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stats: Arc::new(Stats::default()),
            jobs: Mutex::new(BTreeMap::new()),
            jobs_changed: Notify::new(),
            security,
            started: tokio::time::Instant::now().into_std(),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Routes a message to every matching session's mailbox and stores it
    /// if retained. Returns the number of sessions it went to.
    pub(crate) fn publish(
        &self,
        topic: &TopicName,
        message: Arc<Message>,
        publisher: Option<&SessionRef>,
        now: Instant,
    ) -> usize {
        if message.retain && self.config.retain_available {
            let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
            let is_new = retained.get(topic).is_none();
            if !is_new
                || message.payload.is_empty()
                || retained.len() < self.config.max_retained_messages
            {
                retained.set(topic.clone(), message.clone());
            }
        }
        TARGETS.with(|cell| {
            let mut targets = cell.borrow_mut();
            {
                let router = self.router.read().unwrap_or_else(|p| p.into_inner());
                router.route(topic, publisher, |s| s.0.is_connected(), &mut targets);
            }
            let mut n = targets.len();
            // Only with an ACL: the subscriber may not read every topic its
            // filters match.
            if self.security.acl_in_use() {
                targets.retain(|t| t.session.0.may_read(topic.as_str()));
                let denied = n - targets.len();
                Stats::add(&self.stats.dropped_acl_read, denied as u64);
                n -= denied;
            }
            for t in targets.drain(..) {
                let delivery = Delivery {
                    qos: t.qos.min(message.qos),
                    // Established subscriptions get RETAIN 0 unless they
                    // asked for Retain As Published [MQTT-3.3.1-12] [MQTT-3.3.1-13].
                    retain: message.retain && t.retain_as_published,
                    subscription_ids: t.subscription_ids,
                    shared_group: t.shared,
                    message: message.clone(),
                };
                self.deliver(&t.session.0, delivery, now);
            }
            n
        })
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
        let mut kept = Vec::new();
        let router = self.router.read().unwrap_or_else(|p| p.into_inner());
        let mut moves = Vec::new();
        for mut d in deliveries {
            let target = d
                .shared_group
                .as_ref()
                .and_then(|share| router.reassign(share, leaving, |s| s.0.is_connected()));
            match target {
                Some(t) => {
                    d.qos = t.qos.min(d.message.qos);
                    d.subscription_ids = t.subscription_ids;
                    moves.push((t.session, d));
                }
                None => kept.push(d),
            }
        }
        drop(router);
        for (session, d) in moves {
            self.deliver(&session.0, d, now);
        }
        kept
    }

    /// Puts a delivery in a session's mailbox and wakes its connection.
    pub(crate) fn deliver(&self, session: &SessionHandle, delivery: Delivery, now: Instant) {
        let _ = now;
        let pushed = lock(&session.mailbox).push(delivery, &self.queue_limits);
        match pushed {
            Ok(()) => Stats::add(&self.stats.messages_routed, 1),
            Err(_) => Stats::add(&self.stats.dropped_queue_full, 1),
        }
        session.notify.notify_one();
    }

    /// Publishes a will message.
    pub(crate) fn publish_will(&self, will: Will, now: Instant) {
        let Ok(topic) = TopicName::from_bytes(will.topic.as_bytes().clone()) else {
            return;
        };
        let p = will.properties;
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..PublishProperties::default()
            },
            expires_at: p
                .message_expiry_interval
                .map(|s| now + std::time::Duration::from_secs(u64::from(s))),
        };
        tracing::debug!(topic = %topic.as_str(), "publishing will");
        self.publish(&topic, Arc::new(message), None, now);
    }

    /// Removes every subscription of a session from the router.
    pub(crate) fn unsubscribe_all<'a>(
        &self,
        session: &SessionRef,
        filters: impl Iterator<Item = &'a MqttString>,
    ) {
        let mut router = self.router.write().unwrap_or_else(|p| p.into_inner());
        for f in filters {
            router.unsubscribe(session, f);
        }
    }

    /// Ends a session: its subscriptions leave the router and its registry
    /// entry goes, unless a newer session took the client id.
    pub(crate) fn end_session(
        &self,
        handle: &Arc<SessionHandle>,
        subscriptions: impl Iterator<Item = MqttString>,
    ) {
        let filters: Vec<MqttString> = subscriptions.collect();
        self.unsubscribe_all(&SessionRef(handle.clone()), filters.iter());
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&handle.client_id)
            .is_some_and(|h| h.id == handle.id)
        {
            sessions.remove(&handle.client_id);
        }
        drop(sessions);
        lock(&handle.mailbox).drain().for_each(drop);
    }

    pub(crate) fn schedule_will(&self, client_id: MqttString, will: Will, at: Instant) {
        let seq = self.next_id();
        lock(&self.jobs).insert((at, seq), Job::Will(client_id, Box::new(will)));
        self.jobs_changed.notify_one();
    }

    /// A client reconnected: a will waiting for its delay is not sent if
    /// the session goes on (Clean Start 0), and is sent now if the session
    /// ends (Clean Start 1): the will waits for the earlier of its delay
    /// and the session's end [MQTT-3.1.3-9] (MQTT 5.0 §3.1.2.5, §3.1.3.2.2).
    pub(crate) fn on_reconnect_will(
        &self,
        client_id: &MqttString,
        session_ends: bool,
        now: Instant,
    ) {
        let wills: Vec<Will> = {
            let mut jobs = lock(&self.jobs);
            let keys: Vec<(Instant, u64)> = jobs
                .iter()
                .filter(|(_, job)| matches!(job, Job::Will(c, _) if c == client_id))
                .map(|(k, _)| *k)
                .collect();
            keys.iter()
                .filter_map(|k| match jobs.remove(k) {
                    Some(Job::Will(_, w)) => Some(*w),
                    _ => None,
                })
                .collect()
        };
        if session_ends {
            for w in wills {
                self.publish_will(w, now);
            }
        }
    }

    pub(crate) fn schedule_expiry(&self, handle: Arc<SessionHandle>, at: Instant) {
        let seq = self.next_id();
        lock(&self.jobs).insert((at, seq), Job::Expire(handle));
        self.jobs_changed.notify_one();
    }

    /// Runs the timed jobs as they fall due; never returns.
    pub(crate) async fn run_janitor(self: Arc<Self>) {
        loop {
            let now = tokio::time::Instant::now().into_std();
            let mut due = Vec::new();
            let next = {
                let mut jobs = lock(&self.jobs);
                while let Some(entry) = jobs.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove());
                }
                jobs.keys().next().map(|(at, _)| *at)
            };
            for job in due {
                match job {
                    Job::Will(_, will) => self.publish_will(*will, now),
                    Job::Expire(handle) => {
                        if handle.is_connected() {
                            continue;
                        }
                        let state = lock(&handle.offline).take();
                        if let Some(state) = state {
                            tracing::debug!(client_id = %handle.client_id, "session expired");
                            self.end_session(&handle, state.subscriptions.into_keys());
                        }
                    }
                }
            }
            match next {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.jobs_changed.notified() => {}
                    }
                }
                None => self.jobs_changed.notified().await,
            }
        }
    }

    /// The QoS a subscription is granted: the lesser of what it asked and
    /// the broker's maximum.
    pub(crate) fn grant(&self, asked: QoS) -> QoS {
        asked.min(self.session_config.maximum_qos)
    }
}
