//! The broker core of this crate against a naive model: random sequences
//! of CONNECT (new session, resumption, clean start, takeover), disconnect
//! (by the owner, or by a connection that was taken over), session expiry,
//! restoring an offline session, SUBSCRIBE, UNSUBSCRIBE, PUBLISH and time
//! steps, run against a [`Router`], a [`Registry`] and a [`RetainedStore`]
//! driven the way a broker drives them, and against a model made of plain
//! maps and a level-by-level topic matcher written here.
//!
//! What is modelled and checked:
//!
//! - the registry: after every step, each client identifier's session and
//!   owning connection (one owner per client identifier: the last
//!   connection that claimed it and has not ended [MQTT-3.1.4-3]); what a
//!   claim reports (the displaced connection, the session a clean start
//!   replaced); that expiry only removes a session no connection owns;
//! - SUBSCRIBE ([`Router::subscribe_packet`], one filter a packet): the
//!   reason code (invalid filter, too many levels, shared subscriptions or
//!   wildcards not offered, refused by an ACL, over the quota, else the
//!   lesser of the QoS asked and the server's maximum), whether retained
//!   messages follow (Retain Handling 0 always, 1 only for a new
//!   subscription, 2 never [MQTT-3.3.1-10] [MQTT-3.3.1-11]; never for a
//!   shared subscription), and which ones
//!   ([`RetainedStore::deliveries_for`]: every unexpired, readable retained
//!   message matching the filter, at the lesser QoS, RETAIN set, with the
//!   subscription identifier [MQTT-3.3.1-9]);
//! - UNSUBSCRIBE, and the subscriptions a broker drops when a session ends
//!   (clean start, expiry): whether each existed; the router's count and
//!   its list of plain subscriptions after every step;
//! - PUBLISH ([`Router::route`]): exactly one target per session that has
//!   a matching plain subscription (not counting the publisher's No Local
//!   ones [MQTT-3.8.3-3]) or was chosen by a shared group, with the highest
//!   matching QoS [MQTT-3.3.4-2], every matching subscription identifier
//!   [MQTT-3.3.4-3] and Retain As Published if any matching subscription
//!   asked for it; every shared group that matches delivers once, to one of
//!   its members, a connected one if it has any; a target is marked shared
//!   only when no plain subscription of its session matched (the router
//!   merges a session's matches into one target; a session chosen by two
//!   groups gets one target naming either). The checker accepts the
//!   targets if some choice of one allowed member per group gives exactly
//!   them. Then each target's [`Delivery`] (QoS the lesser of message and
//!   target [MQTT-3.3.4-2], RETAIN only with Retain As Published
//!   [MQTT-3.3.1-12] [MQTT-3.3.1-13], identifiers, shared group), and
//!   [`Router::reassign`] of every shared target (another member, a
//!   connected one if any, or none when the group has no other member);
//! - retained messages: replacement and removal by an empty payload
//!   [MQTT-3.3.1-6] [MQTT-3.3.1-7], message expiry as time steps pass, and
//!   the store's count, bytes and per-topic content after every step.
//!
//! What is not: the round-robin order among a group's members (only that
//! one allowed member is chosen), SUBSCRIBE packets with several filters,
//! session state (queues, in-flight messages), wills, protocol versions,
//! [`Target::delivery`], the locking a server wraps these structures in.
//! No Local is never set on a shared subscription (a protocol error the
//! session layer refuses [MQTT-3.8.3-4]). The ACL is fixed: the last
//! client may not subscribe to `$` filters nor read the topic `a/b`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_codec::{
    MqttString, PacketId, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties,
    Subscription as CodecSubscription, SubscriptionId, SubscriptionOptions,
};
use mqtt_router::{Registry, RetainedStore, Router, SubscribeOutcome, SubscribeRules, Target};
use mqtt_session::{Delivery, Message};
use mqtt_topic::{TopicFilter, TopicName};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---- The universe -----------------------------------------------------------

/// Client identifiers are `client-0` .. `client-2`.
const CLIENTS: usize = 3;

static TOPICS: [&str; 6] = ["a", "b", "a/b", "b/a", "a/b/c", "$s/a"];

static PLAIN_FILTERS: [&str; 8] = ["#", "+", "+/a", "a", "a/b", "a/#", "a/b/#", "$s/#"];

static SHARED_FILTERS: [&str; 4] = ["$share/g/a/#", "$share/g/#", "$share/h/+/a", "$share/g/a"];

static INVALID_FILTERS: [&str; 3] = ["a/#/b", "a+", "$share/g"];

fn client_id(c: usize) -> MqttString {
    MqttString::try_from(format!("client-{c}")).unwrap()
}

fn mqtt(s: &str) -> MqttString {
    MqttString::try_from(s).unwrap()
}

/// The ACL on filters: the last client may not subscribe to `$` filters.
fn permitted(client: usize, filter: &str) -> bool {
    !(client == CLIENTS - 1 && filter.starts_with('$'))
}

/// The ACL on topics: the last client may not read `a/b`.
fn readable(client: usize, topic: &str) -> bool {
    !(client == CLIENTS - 1 && topic == "a/b")
}

// ---- The naive model ---------------------------------------------------------

/// A subscription as the client wrote it: `filter`, shared by `group` if
/// it was `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    group: Option<&'static str>,
    filter: &'static str,
}

/// Parses a subscription, level by level; `None` if it is invalid.
fn parse(subscription: &'static str) -> Option<Parsed> {
    let (group, filter) = match subscription.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) {
                return None;
            }
            (Some(group), filter)
        }
        None => (None, subscription),
    };
    let levels: Vec<&str> = filter.split('/').collect();
    let valid = !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i + 1 == levels.len(),
            "+" => true,
            level => !level.contains(['+', '#']),
        });
    valid.then_some(Parsed { group, filter })
}

/// Whether `filter` (valid, not shared) matches `topic` (MQTT 4.7): `+`
/// one level, `#` any number including none, and no wildcard-first filter
/// for a `$` topic [MQTT-4.7.2-1].
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let topic: Vec<&str> = topic.split('/').collect();
    let filter: Vec<&str> = filter.split('/').collect();
    for (i, level) in filter.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" if i < topic.len() => {}
            level if topic.get(i) == Some(&level) => {}
            _ => return false,
        }
    }
    filter.len() == topic.len()
}

fn expired(message: &Message, now: Instant) -> bool {
    message.expires_at.is_some_and(|t| t <= now)
}

/// A subscription as the model keeps it: the options granted (QoS already
/// capped) and the packet's subscription identifier.
#[derive(Debug, Clone, Copy)]
struct Sub {
    options: SubscriptionOptions,
    id: Option<SubscriptionId>,
}

/// A client identifier's session.
#[derive(Debug)]
struct Session {
    /// The session key given to the router.
    id: u32,
    /// The connection that owns it; `None` while offline.
    owner: Option<u64>,
    /// Subscription as written (`$share/...` included) → subscription.
    subs: BTreeMap<&'static str, Sub>,
}

/// What one session's matching subscriptions make of a message.
#[derive(Debug, Clone, Default)]
struct Expected {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<SubscriptionId>,
    /// Whether a plain subscription matched.
    plain: bool,
    /// The shared subscriptions the session was chosen for.
    shares: BTreeSet<&'static str>,
}

impl Expected {
    fn add(&mut self, sub: &Sub, share: Option<&'static str>) {
        self.qos = self.qos.max(sub.options.qos);
        self.retain_as_published |= sub.options.retain_as_published;
        self.ids.extend(sub.id);
        match share {
            None => self.plain = true,
            Some(share) => {
                self.shares.insert(share);
            }
        }
    }

    /// Whether `target` is what this expects.
    fn fits(&self, target: &Target<u32>) -> bool {
        let mut ids = target.subscription_ids.to_vec();
        ids.sort();
        let mut expected = self.ids.clone();
        expected.sort();
        target.qos == self.qos
            && target.retain_as_published == self.retain_as_published
            && ids == expected
            && match &target.shared {
                None => self.plain,
                Some(share) => !self.plain && self.shares.contains(share.as_str()),
            }
    }
}

/// A shared group that matches a topic, and its members.
#[derive(Debug)]
struct Group {
    share: &'static str,
    members: Vec<(u32, Sub)>,
}

// ---- Operations --------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// A CONNECT: a new connection claims the client's session.
    Connect {
        client: usize,
        clean_start: bool,
    },
    /// A connection ends: the owner, or (`stale`) the last connection that
    /// was taken over.
    Disconnect {
        client: usize,
        stale: bool,
    },
    /// Session expiry.
    Expire {
        client: usize,
    },
    /// An offline session restored from a store, with one subscription.
    Restore {
        client: usize,
        filter: &'static str,
        qos: QoS,
    },
    Subscribe {
        client: usize,
        filter: &'static str,
        options: SubscriptionOptions,
        id: Option<u32>,
    },
    Unsubscribe {
        client: usize,
        filter: &'static str,
    },
    /// A PUBLISH by a client (if connected) or by the server.
    Publish {
        publisher: Option<usize>,
        topic: &'static str,
        qos: QoS,
        retain: bool,
        empty: bool,
        expiry_secs: Option<u64>,
    },
    /// Time passes; `purge` removes expired retained messages.
    Advance {
        secs: u64,
        purge: bool,
    },
}

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn filter() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        5 => prop::sample::select(&PLAIN_FILTERS[..]),
        4 => prop::sample::select(&SHARED_FILTERS[..]),
        1 => prop::sample::select(&INVALID_FILTERS[..]),
    ]
}

fn retain_handling() -> impl Strategy<Value = RetainHandling> {
    prop::sample::select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendIfNew,
        RetainHandling::DoNotSend,
    ])
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        3 => (client.clone(), any::<bool>())
            .prop_map(|(client, clean_start)| Op::Connect { client, clean_start }),
        1 => (client.clone(), prop::bool::weighted(0.25))
            .prop_map(|(client, stale)| Op::Disconnect { client, stale }),
        1 => client.clone().prop_map(|client| Op::Expire { client }),
        1 => (client.clone(), filter(), qos())
            .prop_map(|(client, filter, qos)| Op::Restore { client, filter, qos }),
        8 => (
            client.clone(),
            filter(),
            qos(),
            any::<bool>(),
            any::<bool>(),
            retain_handling(),
            prop::option::of(1u32..4),
        )
            .prop_map(|(client, filter, qos, no_local, rap, retain_handling, id)| {
                Op::Subscribe {
                    client,
                    filter,
                    options: SubscriptionOptions {
                        qos,
                        // A protocol error on a shared subscription [MQTT-3.8.3-4].
                        no_local: no_local && !filter.starts_with("$share/"),
                        retain_as_published: rap,
                        retain_handling,
                    },
                    id,
                }
            }),
        2 => (client.clone(), filter())
            .prop_map(|(client, filter)| Op::Unsubscribe { client, filter }),
        6 => (
            prop::option::of(client),
            prop::sample::select(&TOPICS[..]),
            qos(),
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::option::of(1u64..4),
        )
            .prop_map(|(publisher, topic, qos, retain, empty, expiry_secs)| Op::Publish {
                publisher,
                topic,
                qos,
                retain,
                empty,
                expiry_secs,
            }),
        1 => (1u64..3, any::<bool>()).prop_map(|(secs, purge)| Op::Advance { secs, purge }),
    ]
}

fn rules() -> impl Strategy<Value = SubscribeRules> {
    (
        qos(),
        prop::sample::select(vec![2usize, usize::MAX]),
        prop_oneof![1 => Just(2usize), 1 => Just(4), 3 => Just(usize::MAX)],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(maximum_qos, max_topic_levels, max_subscriptions, wildcard, shared)| SubscribeRules {
                maximum_qos,
                max_topic_levels,
                max_subscriptions,
                // Not modelled: the byte budget (tests/router.rs has it).
                max_subscription_bytes: usize::MAX,
                wildcard_available: wildcard,
                shared_available: shared,
            },
        )
}

// ---- The broker core and its model, side by side ---------------------------------

struct World {
    // The broker core.
    router: Router<u32>,
    registry: Registry<u32, ()>,
    store: RetainedStore,
    rules: SubscribeRules,
    // The model.
    sessions: [Option<Session>; CLIENTS],
    /// Per client, the last connection that was taken over.
    displaced: [Option<u64>; CLIENTS],
    retained: BTreeMap<&'static str, Arc<Message>>,
    now: Instant,
    next_connection: u64,
    next_session: u32,
    next_payload: u64,
}

type Checked = Result<(), TestCaseError>;

impl World {
    fn new(rules: SubscribeRules) -> Self {
        Self {
            router: Router::new(),
            registry: Registry::new(),
            store: RetainedStore::new(),
            rules,
            sessions: Default::default(),
            displaced: Default::default(),
            retained: BTreeMap::new(),
            now: Instant::now(),
            next_connection: 1,
            next_session: 0,
            next_payload: 0,
        }
    }

    fn apply(&mut self, op: Op) -> Checked {
        match op {
            Op::Connect {
                client,
                clean_start,
            } => self.connect(client, clean_start),
            Op::Disconnect { client, stale } => self.disconnect(client, stale),
            Op::Expire { client } => self.expire(client),
            Op::Restore {
                client,
                filter,
                qos,
            } => self.restore(client, filter, qos),
            Op::Subscribe {
                client,
                filter,
                options,
                id,
            } => self.subscribe(client, filter, options, id.and_then(SubscriptionId::new)),
            Op::Unsubscribe { client, filter } => self.unsubscribe(client, filter),
            Op::Publish {
                publisher,
                topic,
                qos,
                retain,
                empty,
                expiry_secs,
            } => self.publish(publisher, topic, qos, retain, empty, expiry_secs),
            Op::Advance { secs, purge } => self.advance(secs, purge),
        }
    }

    /// The session of `client` if a connection owns it.
    fn connected_session(&mut self, client: usize) -> Option<&mut Session> {
        self.sessions[client].as_mut().filter(|s| s.owner.is_some())
    }

    fn connected(&self) -> BTreeSet<u32> {
        self.sessions
            .iter()
            .flatten()
            .filter(|s| s.owner.is_some())
            .map(|s| s.id)
            .collect()
    }

    /// What a broker does when a session ends: its subscriptions go.
    fn drop_subscriptions(&mut self, session: &Session) -> Checked {
        for filter in session.subs.keys() {
            prop_assert!(
                self.router.unsubscribe(&session.id, &mqtt(filter)),
                "session {} had {filter}",
                session.id
            );
        }
        Ok(())
    }

    fn connect(&mut self, client: usize, clean_start: bool) -> Checked {
        let connection = self.next_connection;
        self.next_connection += 1;
        let mut next = self.next_session;
        let mut made = None;
        let claim = self
            .registry
            .claim(&client_id(client), connection, (), clean_start, |_| {
                next += 1;
                made = Some(next);
                next
            });
        self.next_session = next;
        let previous = claim.previous.map(|(c, ())| c);
        match self.sessions[client].take() {
            None => {
                prop_assert_eq!(previous, None);
                prop_assert_eq!(claim.replaced, None);
                prop_assert_eq!(Some(claim.session), made, "a new session");
                self.sessions[client] = Some(Session {
                    id: claim.session,
                    owner: Some(connection),
                    subs: BTreeMap::new(),
                });
            }
            Some(mut old) => {
                prop_assert_eq!(previous, old.owner, "the connection taken over");
                if old.owner.is_some() {
                    self.displaced[client] = old.owner;
                }
                if clean_start {
                    prop_assert_eq!(claim.replaced, Some(old.id));
                    prop_assert_eq!(Some(claim.session), made, "a new session");
                    prop_assert_ne!(claim.session, old.id);
                    self.drop_subscriptions(&old)?;
                    self.sessions[client] = Some(Session {
                        id: claim.session,
                        owner: Some(connection),
                        subs: BTreeMap::new(),
                    });
                } else {
                    prop_assert_eq!(claim.replaced, None);
                    prop_assert_eq!(made, None, "no new session when resuming");
                    prop_assert_eq!(claim.session, old.id);
                    old.owner = Some(connection);
                    self.sessions[client] = Some(old);
                }
            }
        }
        Ok(())
    }

    fn disconnect(&mut self, client: usize, stale: bool) -> Checked {
        let owner = self.sessions[client].as_ref().and_then(|s| s.owner);
        let connection = if stale { self.displaced[client] } else { owner };
        let released = self
            .registry
            .release(&client_id(client), connection.unwrap_or(0));
        let expected = connection.is_some() && connection == owner;
        prop_assert_eq!(released, expected);
        if let (true, Some(session)) = (expected, self.sessions[client].as_mut()) {
            session.owner = None;
        }
        Ok(())
    }

    fn expire(&mut self, client: usize) -> Checked {
        let id = self.sessions[client].as_ref().map(|s| s.id);
        let offline = self.sessions[client]
            .as_ref()
            .filter(|s| s.owner.is_none())
            .map(|s| s.id);
        let removed = self
            .registry
            .remove_offline(&client_id(client), |s| Some(*s) == id);
        prop_assert_eq!(removed, offline, "only an offline session expires");
        if offline.is_some() {
            let session = self.sessions[client].take().unwrap();
            self.drop_subscriptions(&session)?;
        }
        Ok(())
    }

    /// A broker starting: an offline session from its store, if the
    /// client has none, with one subscription (through
    /// [`Router::subscribe`]).
    fn restore(&mut self, client: usize, filter: &'static str, qos: QoS) -> Checked {
        if self.sessions[client].is_some() {
            return Ok(());
        }
        self.next_session += 1;
        let id = self.next_session;
        prop_assert_eq!(self.registry.insert_offline(client_id(client), id), None);
        let mut session = Session {
            id,
            owner: None,
            subs: BTreeMap::new(),
        };
        let options = SubscriptionOptions::qos(qos);
        let outcome = self.router.subscribe(id, &mqtt(filter), options, None);
        match parse(filter) {
            Some(_) => {
                prop_assert_eq!(outcome, Ok(SubscribeOutcome::New));
                session.subs.insert(filter, Sub { options, id: None });
            }
            None => prop_assert!(outcome.is_err(), "{filter} is invalid"),
        }
        self.sessions[client] = Some(session);
        Ok(())
    }

    fn subscribe(
        &mut self,
        client: usize,
        filter: &'static str,
        options: SubscriptionOptions,
        id: Option<SubscriptionId>,
    ) -> Checked {
        let rules = self.rules;
        let Some(session) = self.sessions[client].as_mut().filter(|s| s.owner.is_some()) else {
            return Ok(());
        };
        let request = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: SubscribeProperties {
                subscription_identifier: id,
                ..Default::default()
            },
            subscriptions: vec![CodecSubscription {
                filter: mqtt(filter),
                options,
            }],
        };
        let mut held = mqtt_router::Held::of(session.subs.keys());
        let subs = &session.subs;
        let granted = self.router.subscribe_packet(
            &session.id,
            &request,
            &mut held,
            |f| subs.contains_key(f.as_str()),
            &rules,
            |f| permitted(client, f.as_str()),
        );
        prop_assert_eq!(granted.len(), 1, "one reason code per filter");
        let granted = &granted[0];

        let is_new = !session.subs.contains_key(filter);
        let decided = match parse(filter) {
            None => Err(ReasonCode::TopicFilterInvalid),
            Some(p) if p.filter.split('/').count() > rules.max_topic_levels => {
                Err(ReasonCode::TopicFilterInvalid)
            }
            Some(p) if p.group.is_some() && !rules.shared_available => {
                Err(ReasonCode::SharedSubscriptionsNotSupported)
            }
            Some(p) if p.filter.contains(['+', '#']) && !rules.wildcard_available => {
                Err(ReasonCode::WildcardSubscriptionsNotSupported)
            }
            Some(p) if !permitted(client, p.filter) => Err(ReasonCode::NotAuthorized),
            Some(_) if is_new && session.subs.len() >= rules.max_subscriptions => {
                Err(ReasonCode::QuotaExceeded)
            }
            Some(p) => Ok(p),
        };
        let p = match decided {
            Err(code) => {
                prop_assert_eq!(granted.code, code);
                prop_assert_eq!(&granted.retained, &None);
                prop_assert_eq!(held.subscriptions, session.subs.len());
                return Ok(());
            }
            Ok(p) => p,
        };
        let qos = options.qos.min(rules.maximum_qos);
        prop_assert_eq!(
            granted.code,
            match qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            }
        );
        session.subs.insert(
            filter,
            Sub {
                options: SubscriptionOptions { qos, ..options },
                id,
            },
        );
        prop_assert_eq!(held.subscriptions, session.subs.len());

        let send = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => is_new,
            RetainHandling::DoNotSend => false,
        } && p.group.is_none();
        let due = send.then(|| (TopicFilter::new(p.filter).unwrap(), qos));
        prop_assert_eq!(&granted.retained, &due, "retained messages due");
        if let Some((filter, qos)) = &granted.retained {
            self.check_retained_for(client, filter, *qos, id)?;
        }
        Ok(())
    }

    /// The retained messages a new subscription receives.
    fn check_retained_for(
        &self,
        client: usize,
        filter: &TopicFilter,
        qos: QoS,
        id: Option<SubscriptionId>,
    ) -> Checked {
        let mut out = Vec::new();
        self.store
            .deliveries_for(filter, qos, id, self.now, |t| readable(client, t), &mut out);
        let show = |d: &Delivery| {
            (
                d.message.topic.to_string(),
                d.message.payload.clone(),
                d.qos,
                d.retain,
                d.subscription_ids.to_vec(),
                d.shared_group.clone(),
            )
        };
        let mut got: Vec<_> = out.iter().map(show).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let expected: Vec<_> = self
            .retained
            .iter()
            .filter(|(topic, m)| {
                matches(filter.as_str(), topic) && readable(client, topic) && !expired(m, self.now)
            })
            .map(|(_, m)| {
                show(&Delivery {
                    message: Arc::clone(m),
                    qos: qos.min(m.qos),
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                    shared_group: None,
                    tag: 0,
                })
            })
            .collect();
        prop_assert_eq!(got, expected, "retained messages for {}", filter.as_str());
        Ok(())
    }

    fn unsubscribe(&mut self, client: usize, filter: &'static str) -> Checked {
        let Some(session) = self.connected_session(client) else {
            return Ok(());
        };
        let existed = session.subs.remove(filter).is_some();
        let id = session.id;
        prop_assert_eq!(self.router.unsubscribe(&id, &mqtt(filter)), existed);
        Ok(())
    }

    /// The model's plain matches of `topic` per session, No Local applied.
    fn plain_matches(&self, topic: &str, publisher: Option<u32>) -> BTreeMap<u32, Expected> {
        let mut plain: BTreeMap<u32, Expected> = BTreeMap::new();
        for session in self.sessions.iter().flatten() {
            for (f, sub) in &session.subs {
                let Some(p) = parse(f) else { continue };
                if p.group.is_none()
                    && matches(p.filter, topic)
                    && !(sub.options.no_local && publisher == Some(session.id))
                {
                    plain.entry(session.id).or_default().add(sub, None);
                }
            }
        }
        plain
    }

    /// The model's shared groups that match `topic`.
    fn groups_matching(&self, topic: &str) -> Vec<Group> {
        let mut groups: BTreeMap<&'static str, Vec<(u32, Sub)>> = BTreeMap::new();
        for session in self.sessions.iter().flatten() {
            for (f, sub) in &session.subs {
                let Some(p) = parse(f) else { continue };
                if p.group.is_some() && matches(p.filter, topic) {
                    groups.entry(f).or_default().push((session.id, *sub));
                }
            }
        }
        groups
            .into_iter()
            .map(|(share, members)| Group { share, members })
            .collect()
    }

    fn publish(
        &mut self,
        publisher: Option<usize>,
        topic: &'static str,
        qos: QoS,
        retain: bool,
        empty: bool,
        expiry_secs: Option<u64>,
    ) -> Checked {
        let from = publisher.and_then(|c| self.connected_session(c).map(|s| s.id));
        self.next_payload += 1;
        let payload = if empty {
            Bytes::new()
        } else {
            Bytes::from(format!("m{}", self.next_payload))
        };
        let mut m = Message::new(mqtt(topic), payload, qos, retain);
        m.expires_at = expiry_secs.map(|s| self.now + Duration::from_secs(s));
        let message = Arc::new(m);

        let connected = self.connected();
        let mut out = Vec::new();
        let shared_matched = self.router.route(
            &TopicName::new(topic).unwrap(),
            from.as_ref(),
            |k| connected.contains(k),
            &mut out,
        );
        let targets: Vec<Target<u32>> = out.into_iter().map(Target::cloned).collect();

        let plain = self.plain_matches(topic, from);
        let groups = self.groups_matching(topic);
        prop_assert_eq!(
            shared_matched,
            !groups.is_empty(),
            "whether a group matched"
        );
        let sessions: BTreeSet<u32> = targets.iter().map(|t| t.session).collect();
        prop_assert_eq!(
            sessions.len(),
            targets.len(),
            "one target per session: {:?}",
            targets
        );
        check_targets(&targets, &plain, &groups, &connected)?;

        // Each target's delivery; the last takes the message.
        let mut slot = Some(Arc::clone(&message));
        let n = targets.len();
        for (i, t) in targets.iter().enumerate() {
            let Some((session, d)) = t.clone().into_delivery(&mut slot, i + 1 == n) else {
                return Err(TestCaseError::fail(format!("no delivery for {t:?}")));
            };
            prop_assert_eq!(session, t.session);
            prop_assert!(Arc::ptr_eq(&d.message, &message));
            prop_assert_eq!(d.qos, t.qos.min(qos), "delivery QoS [MQTT-3.3.4-2]");
            prop_assert_eq!(d.retain, retain && t.retain_as_published, "RETAIN flag");
            prop_assert_eq!(&d.subscription_ids, &t.subscription_ids);
            prop_assert_eq!(&d.shared_group, &t.shared);
        }
        prop_assert_eq!(slot.is_none(), n > 0);

        // A shared target leaving: its message goes to another member.
        for t in &targets {
            let Some(share) = &t.shared else { continue };
            let Some(group) = groups.iter().find(|g| g.share == share.as_str()) else {
                return Err(TestCaseError::fail(format!("no group {share}")));
            };
            let others: Vec<(u32, Sub)> = group
                .members
                .iter()
                .filter(|(k, _)| *k != t.session)
                .copied()
                .collect();
            let reassigned = self
                .router
                .reassign(share, &t.session, |k| connected.contains(k));
            let Some(r) = reassigned else {
                prop_assert!(others.is_empty(), "{share} has other members {others:?}");
                continue;
            };
            let allowed = prefer_connected(&others, &connected);
            let Some((_, sub)) = allowed.iter().find(|(k, _)| *k == r.session) else {
                return Err(TestCaseError::fail(format!(
                    "{share} reassigned from {} to {r:?}, not one of {allowed:?}",
                    t.session
                )));
            };
            prop_assert_eq!(r.qos, sub.options.qos);
            prop_assert_eq!(r.retain_as_published, sub.options.retain_as_published);
            prop_assert_eq!(
                r.subscription_ids.to_vec(),
                sub.id.into_iter().collect::<Vec<_>>()
            );
            prop_assert_eq!(r.shared.as_ref(), Some(share));
        }

        if retain {
            let old = self
                .store
                .set(TopicName::new(topic).unwrap(), Arc::clone(&message));
            let expected = if empty {
                self.retained.remove(topic)
            } else {
                self.retained.insert(topic, message)
            };
            prop_assert!(
                match (&old, &expected) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                },
                "set replaced {old:?}, expected {expected:?}"
            );
        }
        Ok(())
    }

    fn advance(&mut self, secs: u64, purge: bool) -> Checked {
        self.now += Duration::from_secs(secs);
        if purge {
            let now = self.now;
            let gone: Vec<&str> = self
                .retained
                .iter()
                .filter(|(_, m)| expired(m, now))
                .map(|(t, _)| *t)
                .collect();
            prop_assert_eq!(self.store.purge_expired(now), gone.len());
            for t in gone {
                self.retained.remove(t);
            }
        }
        Ok(())
    }

    /// After every step: the registry, the router's subscriptions, the
    /// retained store.
    fn check_invariants(&self) -> Checked {
        for (c, session) in self.sessions.iter().enumerate() {
            let id = client_id(c);
            prop_assert_eq!(
                self.registry.get(&id).copied(),
                session.as_ref().map(|s| s.id),
                "session of {}",
                id.as_str()
            );
            prop_assert_eq!(
                self.registry.owner(&id),
                session.as_ref().and_then(|s| s.owner),
                "owner of {}",
                id.as_str()
            );
        }
        prop_assert_eq!(self.registry.len(), self.sessions.iter().flatten().count());

        let held: usize = self.sessions.iter().flatten().map(|s| s.subs.len()).sum();
        prop_assert_eq!(self.router.len(), held, "subscriptions held");
        let mut plain: Vec<(u32, String, QoS)> = self
            .router
            .subscriptions()
            .map(|(k, f, q)| (*k, f.as_str().to_owned(), q))
            .collect();
        plain.sort();
        let mut expected: Vec<(u32, String, QoS)> = self
            .sessions
            .iter()
            .flatten()
            .flat_map(|s| {
                s.subs
                    .iter()
                    .filter(|(f, _)| !f.starts_with("$share/"))
                    .map(|(f, sub)| (s.id, (*f).to_owned(), sub.options.qos))
            })
            .collect();
        expected.sort();
        prop_assert_eq!(plain, expected, "plain subscriptions");

        prop_assert_eq!(self.store.len(), self.retained.len());
        let bytes: usize = self
            .retained
            .iter()
            .map(|(t, m)| t.len() + m.payload.len())
            .sum();
        prop_assert_eq!(self.store.bytes(), bytes, "retained bytes");
        for topic in TOPICS {
            let got = self.store.get(&TopicName::new(topic).unwrap());
            let expected = self.retained.get(topic);
            prop_assert!(
                match (got, expected) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                },
                "retained on {topic}: {got:?}, expected {expected:?}"
            );
        }
        Ok(())
    }
}

/// The members a group may choose: the connected ones, or all if none is.
fn prefer_connected(members: &[(u32, Sub)], connected: &BTreeSet<u32>) -> Vec<(u32, Sub)> {
    let available: Vec<(u32, Sub)> = members
        .iter()
        .filter(|(k, _)| connected.contains(k))
        .copied()
        .collect();
    if available.is_empty() {
        members.to_vec()
    } else {
        available
    }
}

/// Whether some choice of one allowed member per matching group, merged
/// with the plain matches, gives exactly `targets`.
fn check_targets(
    targets: &[Target<u32>],
    plain: &BTreeMap<u32, Expected>,
    groups: &[Group],
    connected: &BTreeSet<u32>,
) -> Checked {
    let allowed: Vec<Vec<(u32, Sub)>> = groups
        .iter()
        .map(|g| prefer_connected(&g.members, connected))
        .collect();
    let choices: usize = allowed.iter().map(Vec::len).product();
    for choice in 0..choices {
        let mut expected = plain.clone();
        let mut rest = choice;
        for (group, members) in groups.iter().zip(&allowed) {
            let (session, sub) = &members[rest % members.len()];
            rest /= members.len();
            expected
                .entry(*session)
                .or_default()
                .add(sub, Some(group.share));
        }
        let fits = targets.len() == expected.len()
            && targets
                .iter()
                .all(|t| expected.get(&t.session).is_some_and(|e| e.fits(t)));
        if fits {
            return Ok(());
        }
    }
    Err(TestCaseError::fail(format!(
        "targets {targets:#?}\nfit no choice of one member per group:\nplain matches {plain:#?}\ngroups {groups:#?}\nconnected {connected:?}"
    )))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random CONNECT / takeover / disconnect / expiry / SUBSCRIBE /
    /// UNSUBSCRIBE / PUBLISH / time steps: the router, the registry and the
    /// retained store agree with the model after each.
    #[test]
    fn broker_core_agrees_with_a_naive_model(
        rules in rules(),
        ops in prop::collection::vec(op(), 1..100),
    ) {
        let mut world = World::new(rules);
        for op in ops {
            world.apply(op)?;
            world.check_invariants()?;
        }
    }
}

/// The model's matcher on the spec's examples (MQTT 4.7), so that the
/// property above rests on a matcher known to be right.
#[test]
fn the_naive_matcher_follows_the_spec_examples() {
    assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
    assert!(matches(
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking"
    ));
    assert!(matches("sport/#", "sport"));
    assert!(matches("#", "a/b"));
    assert!(matches("sport/tennis/+", "sport/tennis/player1"));
    assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert!(!matches("sport/+", "sport"));
    assert!(matches("sport/+", "sport/"));
    assert!(matches("+/+", "/finance"));
    assert!(matches("/+", "/finance"));
    assert!(!matches("+", "/finance"));
    assert!(!matches("#", "$SYS/x"));
    assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(matches("$SYS/#", "$SYS/x"));
    assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert!(parse("$share/g").is_none());
    assert!(parse("a/#/b").is_none());
    assert!(parse("a+").is_none());
    assert!(parse("$share/h/+/a").is_some_and(|p| p.group == Some("h") && p.filter == "+/a"));
}
