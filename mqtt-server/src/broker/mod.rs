//! State shared by every connection: the routing tables, the session
//! registry, and the timers that outlive connections (will delay, session
//! expiry).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};
use std::time::Instant;

use mqtt_codec::{MqttString, PacketId, QoS, ReasonCode, Will};
use mqtt_router::{
    Blocked, DeliveryPolicy, Mailboxes, Placement, Registry, RetainedStore, Router, SubscribeRules,
    Subscriber, Target,
};
use mqtt_session::{Delivery, Message, QueueLimits, ServerConfig, SessionState};
use mqtt_store::{Batch, Recovered, StoreError};
use mqtt_topic::TopicName;
use tokio::sync::{Notify, oneshot};

use crate::auth::Security;
use crate::config::Config;
use crate::handle::{Control, ControlTx, Parked, SessionHandle, SessionRef, lock};
use crate::persist::Persist;
use crate::stats::Stats;

mod admin;
mod delivery;
mod jobs;

pub(crate) use admin::{Refused, SessionSummary};
pub(crate) use delivery::{CommitDone, Outbox, Publishing, RouteCache, Routed};
use jobs::BrokerTimers;

pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) session_config: Arc<ServerConfig>,
    /// What SUBSCRIBE may ask (from `config` and `session_config`).
    pub(crate) subscribe_rules: SubscribeRules,
    /// The rules of each `[[client_limits]]` table, in the same order.
    client_rules: Vec<Arc<SubscribeRules>>,
    pub(crate) queue_limits: QueueLimits,
    /// Whether and how long a publisher waits for room in a connected
    /// subscriber's mailbox (from `max_publish_wait_ms`).
    pub(crate) delivery: DeliveryPolicy,
    /// Read-mostly: publishers route under the read lock concurrently;
    /// SUBSCRIBE and UNSUBSCRIBE take the write lock for one insertion.
    /// Never held across an await.
    pub(crate) router: RwLock<Router<SessionRef>>,
    pub(crate) retained: RwLock<RetainedStore>,
    /// Sessions by client identifier, connected or not, and the connection
    /// owning each (reached through its control channel: takeover, and an
    /// operator's requests). A CONNECT
    /// claims a client identifier under this lock in one step (see
    /// [`Registry`]), so two connections never both own it.
    pub(crate) sessions: Mutex<Registry<Arc<SessionHandle>, ControlTx>>,
    next_id: AtomicU64,
    /// What the client identifiers this broker assigns begin with: random
    /// for each run, so that an identifier is unique across restarts (a
    /// session stored by an earlier run is never handed to a new client)
    /// and across the nodes of a cluster [MQTT-3.1.3-6].
    assigned_prefix: String,
    /// Incremented at every change of `router`, under its write lock (see
    /// [`Broker::router_mut`]): what a [`RouteCache`] is checked against.
    router_generation: AtomicU64,
    pub(crate) stats: Arc<Stats>,
    /// Delayed wills and session expiry, by deadline.
    timers: Mutex<BrokerTimers>,
    /// Wakes the janitor when a timer is scheduled (it may be earlier).
    timers_changed: Notify,
    /// Authentication, ACLs, failed-login tracking.
    pub(crate) security: Security,
    /// When the broker started (uptime in metrics and `$SYS`).
    pub(crate) started: Instant,
    /// The durable store, with persistence on.
    pub(crate) persist: Option<Persist>,
    /// The `[[bridge]]` connections to other brokers (see `bridge/`).
    pub(crate) bridges: crate::bridge::Bridges,
    /// The other nodes, as one of a cluster (see `cluster/`).
    pub(crate) backplane: Option<Arc<dyn mqtt_router::cluster::Backplane>>,
    /// The same, as this crate runs it.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Broker {
    pub(crate) fn new(config: Config) -> Self {
        let security = Security::new(&config);
        let session_config = config.session_config();
        let subscribe_rules = SubscribeRules {
            maximum_qos: session_config.maximum_qos,
            max_topic_levels: config.max_topic_levels,
            max_subscriptions: config.max_subscriptions_per_client,
            max_subscription_bytes: config.max_subscription_bytes_per_client,
            wildcard_available: session_config.wildcard_subscription_available,
            shared_available: session_config.shared_subscription_available,
        };
        // Made once, shared by the connections each table matches.
        let client_rules = config
            .client_limits
            .iter()
            .map(|l| {
                limited_rules(
                    &subscribe_rules,
                    l.max_subscriptions_per_client,
                    l.max_subscription_bytes_per_client,
                )
            })
            .collect();
        Self {
            subscribe_rules,
            client_rules,
            session_config: Arc::new(session_config),
            queue_limits: config.queue_limits(),
            delivery: DeliveryPolicy::new(config.max_publish_wait()),
            config,
            router: RwLock::new(Router::new()),
            retained: RwLock::new(RetainedStore::new()),
            sessions: Mutex::new(Registry::new()),
            next_id: AtomicU64::new(1),
            assigned_prefix: format!("auto-{:016x}-", run_nonce()),
            router_generation: AtomicU64::new(0),
            stats: Arc::new(Stats::default()),
            timers: Mutex::new(BrokerTimers::new()),
            timers_changed: Notify::new(),
            security,
            started: tokio::time::Instant::now().into_std(),
            persist: None,
            bridges: Default::default(),
            backplane: None,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }

    /// The router, to change it: every route a publisher keeps is
    /// forgotten.
    /// The subscription rules of a client: those of the first
    /// `[[client_limits]]` table that matches it, if any (`None`: the
    /// broker's own, [`Broker::subscribe_rules`]).
    pub(crate) fn rules_for(
        &self,
        client_id: &str,
        username: Option<&str>,
    ) -> Option<Arc<SubscribeRules>> {
        self.config
            .client_limits
            .iter()
            .zip(&self.client_rules)
            .find(|(l, _)| l.matches(client_id, username))
            .map(|(_, rules)| rules.clone())
    }

    pub(crate) fn router_mut(&self) -> RwLockWriteGuard<'_, Router<SessionRef>> {
        let router = self.router.write().unwrap_or_else(|p| p.into_inner());
        self.router_generation.fetch_add(1, Ordering::Release);
        router
    }

    /// A client identifier for a client that sent none: unique for this
    /// run (the counter) and across runs and nodes (the random prefix).
    pub(crate) fn assign_client_id(&self) -> String {
        format!("{}{:x}", self.assigned_prefix, self.next_id())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes every subscription of a session from the router.
    pub(crate) fn unsubscribe_all<'a>(
        &self,
        session: &SessionRef,
        filters: impl Iterator<Item = &'a MqttString>,
    ) {
        let mut router = self.router_mut();
        for f in filters {
            router.unsubscribe(session, f);
        }
    }

    /// Ends a session: its subscriptions leave the router and its registry
    /// entry goes, unless a connection claimed it (or a newer session took
    /// the client id) meanwhile. What it held for its shared subscriptions
    /// (queued, in flight, or arriving in its mailbox while it was offline)
    /// goes to other members of their groups: "if the Client's Session
    /// terminates before the Client reconnects, the Server SHOULD send the
    /// Application Message to another Client that is subscribed to the
    /// same Shared Subscription" (MQTT 5.0 §4.8.2). The rest is dropped.
    pub(crate) fn end_session(
        &self,
        handle: &Arc<SessionHandle>,
        mut state: SessionState,
        now: Instant,
    ) {
        let me = SessionRef(handle.clone());
        let filters: Vec<MqttString> = state.subscriptions.keys().cloned().collect();
        self.unsubscribe_all(&me, filters.iter());
        lock(&self.sessions).remove_offline(&handle.client_id, |h| h.id == handle.id);
        let mut shared = state.take_shared();
        shared.extend(
            lock(&handle.mailbox)
                .drain()
                .filter(|d| d.shared_group.is_some()),
        );
        if !shared.is_empty() {
            // Those with no other member to go to end with the session.
            drop(self.reassign_shared(&me, shared, now));
        }
        if handle.is_persistent()
            && let Some(persist) = &self.persist
        {
            let mut b = Persist::batch(tokio::time::Instant::now().into_std());
            b.delete_session(&handle.client_id);
            persist.submit_logged(b);
        }
    }

    /// Rebuilds what the store recovered: offline sessions with their
    /// subscriptions (into the router), queues, in-flight messages and
    /// expiry; retained messages; pending wills.
    pub(crate) fn restore(&self, recovered: Recovered) {
        let mut sessions = lock(&self.sessions);
        let mut router = self.router_mut();
        for loaded in recovered.sessions {
            let mut state = loaded.state;
            for (d, seq) in state.queued.iter_mut().zip(&loaded.queue_seqs) {
                d.tag = *seq;
            }
            let handle = Arc::new(SessionHandle::new(self.next_id(), state.client_id.clone()));
            handle
                .persistent
                .store(true, std::sync::atomic::Ordering::Release);
            handle
                .next_seq
                .store(loaded.next_seq.max(1), std::sync::atomic::Ordering::Relaxed);
            let me = SessionRef(handle.clone());
            for (filter, sub) in &state.subscriptions {
                if let Err(e) = router.subscribe(me.clone(), filter, sub.options, sub.id) {
                    tracing::warn!(client_id = %state.client_id, %filter, error = %e, "stored subscription not restored");
                }
            }
            *lock(&handle.offline) = Some(Box::new(Parked {
                state,
                expires_at: loaded.expires_at,
            }));
            sessions.insert_offline(handle.client_id.clone(), handle.clone());
            if let Some(at) = loaded.expires_at {
                self.schedule_expiry(handle, at);
            }
        }
        drop(router);
        drop(sessions);
        let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
        for message in recovered.retained {
            if let Ok(topic) = TopicName::from_bytes(message.topic.as_bytes().clone()) {
                retained.set(topic, Arc::new(message));
            }
        }
        drop(retained);
        let mut timers = lock(&self.timers);
        for pending in recovered.wills {
            timers.schedule_will(
                pending.client_id,
                pending.will.will,
                pending.will.publish_at,
            );
        }
        drop(timers);
        self.timers_changed.notify_one();
    }
}

/// `top` with the subscription limits a `[[client_limits]]` or a
/// `[[listener]]` table sets (`None`: the top-level value).
pub(crate) fn limited_rules(
    top: &SubscribeRules,
    max_subscriptions: Option<usize>,
    max_subscription_bytes: Option<usize>,
) -> Arc<SubscribeRules> {
    Arc::new(SubscribeRules {
        max_subscriptions: max_subscriptions.unwrap_or(top.max_subscriptions),
        max_subscription_bytes: max_subscription_bytes.unwrap_or(top.max_subscription_bytes),
        ..*top
    })
}

/// 64 random bits for this run of the broker, from the standard library's
/// randomly keyed hasher (seeded by the operating system) and the clock.
fn run_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use mqtt_session::SessionState;

    use super::delivery::recycle;
    use super::*;

    /// A session parked with a deadline, resumed, and parked again with a
    /// later one: the first parking's expiry job leaves it, the second's
    /// ends it (it was ended at the first deadline). Paused time.
    #[tokio::test(start_paused = true)]
    async fn an_expiry_job_of_an_earlier_parking_leaves_a_session_parked_again_with_a_later_deadline()
     {
        let broker = Arc::new(Broker::new(Config::default()));
        let id = MqttString::from_static("c");
        let handle = Arc::new(SessionHandle::new(broker.next_id(), id.clone()));
        let t0 = tokio::time::Instant::now().into_std();
        let park = |at: Instant| {
            *lock(&handle.offline) = Some(Box::new(Parked {
                state: SessionState::new(id.clone(), 60),
                expires_at: Some(at),
            }));
        };
        park(t0 + Duration::from_secs(1));
        lock(&broker.sessions).insert_offline(id.clone(), handle.clone());
        broker.schedule_expiry(handle.clone(), t0 + Duration::from_secs(1));
        park(t0 + Duration::from_secs(3));
        broker.schedule_expiry(handle.clone(), t0 + Duration::from_secs(3));
        let janitor = tokio::spawn(broker.clone().run_janitor());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            lock(&broker.sessions).get(&id).is_some(),
            "ended at the first parking's deadline"
        );
        assert!(lock(&handle.offline).is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            lock(&broker.sessions).get(&id).is_none(),
            "not ended at its deadline"
        );
        janitor.abort();
    }

    /// The scratch vectors keep their allocation from one publication to
    /// the next, though their element types borrow for one call only.
    #[test]
    fn recycled_scratch_keeps_its_allocation() {
        let mut v: Vec<Target<usize>> = Vec::with_capacity(64);
        v.push(Target {
            session: 1,
            qos: QoS::AtMostOnce,
            retain_as_published: false,
            subscription_ids: Default::default(),
            shared: None,
        });
        let ptr = v.as_ptr() as usize;
        let key = 7u64;
        let mut borrowed: Vec<Target<&u64>> = recycle(v);
        assert!(borrowed.is_empty());
        assert!(borrowed.capacity() >= 64);
        assert_eq!(borrowed.as_ptr() as usize, ptr);
        borrowed.push(Target {
            session: &key,
            qos: QoS::AtMostOnce,
            retain_as_published: false,
            subscription_ids: Default::default(),
            shared: None,
        });
        let back: Vec<Target<usize>> = recycle(borrowed);
        assert!(back.is_empty());
        assert_eq!(back.as_ptr() as usize, ptr);
    }
}
