//! The subscription index and shared-subscription groups.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mqtt_codec::{MqttString, QoS, SubscriptionId, SubscriptionOptions};
use mqtt_session::{Delivery, Message};
use mqtt_topic::{Subscription, SubscriptionTrie, TopicError, TopicFilter, TopicName};
use smallvec::SmallVec;

use crate::cluster::Backplane;

/// A subscription as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    options: SubscriptionOptions,
    id: Option<SubscriptionId>,
}

/// The members of one shared-subscription group on one filter.
#[derive(Debug)]
struct Group<K> {
    /// The subscription as clients write it: `$share/{group}/{filter}`.
    share: MqttString,
    members: Vec<(K, Entry)>,
    /// Where the next round-robin pick starts; atomic so that routing can
    /// advance it under a shared (read) borrow.
    next: AtomicUsize,
}

impl<K: PartialEq> Group<K> {
    fn new(share: MqttString) -> Self {
        Self {
            share,
            members: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next member in turn that `available` accepts and is not
    /// `exclude`; with none available, the next in turn that is not
    /// `exclude`, so the message waits in its queue rather than being lost.
    fn pick(&self, exclude: Option<&K>, available: impl Fn(&K) -> bool) -> Option<&(K, Entry)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let candidates = (0..n)
            .map(|i| &self.members[(start + i) % n])
            .filter(|(k, _)| Some(k) != exclude);
        let mut fallback = None;
        for m in candidates {
            if available(&m.0) {
                return Some(m);
            }
            fallback.get_or_insert(m);
        }
        fallback
    }
}

/// One session a message goes to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<K> {
    /// The session.
    pub session: K,
    /// The highest QoS granted among the session's matching subscriptions
    /// [MQTT-3.3.4-2]; the message goes at the lesser of this and its own.
    pub qos: QoS,
    /// Whether any matching subscription asked for Retain As Published.
    pub retain_as_published: bool,
    /// Identifiers of every matching subscription that has one [MQTT-3.3.4-3].
    pub subscription_ids: SmallVec<[SubscriptionId; 1]>,
    /// The shared subscription the session was chosen for, when no plain
    /// subscription of the session matched too.
    pub shared: Option<MqttString>,
}

impl<K> Target<K> {
    /// The delivery of `message` to this target, and the target's
    /// session: at the lesser of the message's QoS and the granted one
    /// [MQTT-3.3.4-2], with RETAIN kept only for a subscription that asked
    /// for Retain As Published [MQTT-3.3.1-12] [MQTT-3.3.1-13], carrying
    /// the matching subscriptions' identifiers [MQTT-3.3.4-3] and the
    /// shared subscription it was chosen for. The `last` delivery of a
    /// publication takes `message` itself (no reference count touched).
    #[inline(always)]
    pub fn into_delivery(
        self,
        message: &mut Option<Arc<Message>>,
        last: bool,
    ) -> Option<(K, Delivery)> {
        let d = delivery_of(self.qos, self.retain_as_published, message, last)?;
        Some((
            self.session,
            Delivery {
                subscription_ids: self.subscription_ids,
                shared_group: self.shared,
                ..d
            },
        ))
    }

    /// [`Target::into_delivery`] of a target kept for later publications
    /// (never a shared subscription's: its member changes).
    #[inline(always)]
    pub fn delivery(&self, message: &mut Option<Arc<Message>>, last: bool) -> Option<Delivery> {
        let d = delivery_of(self.qos, self.retain_as_published, message, last)?;
        Some(Delivery {
            subscription_ids: self.subscription_ids.clone(),
            ..d
        })
    }
}

/// A delivery of `message` at a subscription's `qos`, without
/// subscription identifiers; the `last` takes `message` itself.
#[inline(always)]
fn delivery_of(
    qos: QoS,
    retain_as_published: bool,
    message: &mut Option<Arc<Message>>,
    last: bool,
) -> Option<Delivery> {
    let message = if last {
        message.take()?
    } else {
        message.clone()?
    };
    Some(Delivery {
        qos: qos.min(message.qos),
        // Established subscriptions get RETAIN 0 unless they asked for
        // Retain As Published [MQTT-3.3.1-12] [MQTT-3.3.1-13].
        retain: message.retain && retain_as_published,
        subscription_ids: Default::default(),
        shared_group: None,
        message,
        tag: 0,
    })
}

impl<K: Clone> Target<&K> {
    /// The same target, owning its session.
    pub fn cloned(self) -> Target<K> {
        Target {
            session: self.session.clone(),
            qos: self.qos,
            retain_as_published: self.retain_as_published,
            subscription_ids: self.subscription_ids,
            shared: self.shared,
        }
    }
}

/// What [`Router::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// A new subscription.
    New,
    /// The session already had a subscription on this filter; it was
    /// replaced [MQTT-3.8.4-3].
    Replaced,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The filter is not a valid topic filter or shared subscription.
    #[error(transparent)]
    InvalidFilter(#[from] TopicError),
}

/// Every subscription of every session, indexed for matching.
///
/// `K` names a session: cheap to clone, ordered (targets are merged per
/// session by sorting).
#[derive(Debug)]
pub struct Router<K> {
    plain: SubscriptionTrie<K, Entry>,
    /// Keyed by group name.
    shared: SubscriptionTrie<MqttString, Group<K>>,
    len: usize,
    /// Only as one node of a cluster: see [`Router::set_backplane`].
    interest: Option<Box<Interest>>,
}

/// The subscriptions of each filter (a shared one counted as its filter),
/// so that the backplane hears when a filter gains its first or loses its
/// last. As many entries as distinct filters, which the subscription
/// limits bound.
struct Interest {
    backplane: Arc<dyn Backplane>,
    counts: HashMap<TopicFilter, usize>,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest")
            .field("filters", &self.counts.len())
            .finish_non_exhaustive()
    }
}

impl Interest {
    fn added(&mut self, filter: &TopicFilter) {
        let n = self.counts.entry(filter.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.backplane.interest_changed(filter, true);
        }
    }

    fn removed(&mut self, filter: &TopicFilter) {
        if let Some(n) = self.counts.get_mut(filter) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(filter);
                self.backplane.interest_changed(filter, false);
            }
        }
    }
}

impl<K> Default for Router<K> {
    fn default() -> Self {
        Self {
            plain: SubscriptionTrie::new(),
            shared: SubscriptionTrie::new(),
            len: 0,
            interest: None,
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Router<K> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this router one node's of a cluster: from now on `backplane`
    /// hears of every filter that gains its first subscription or loses
    /// its last ([`Backplane::interest_changed`]), starting with those
    /// already held.
    pub fn set_backplane(&mut self, backplane: Arc<dyn Backplane>) {
        let mut interest = Interest {
            backplane,
            counts: HashMap::new(),
        };
        for (filter, _, _) in self.plain.iter() {
            interest.added(&filter);
        }
        for (filter, _, group) in self.shared.iter() {
            for _ in &group.members {
                interest.added(&filter);
            }
        }
        self.interest = Some(Box::new(interest));
    }

    /// Number of subscriptions, shared ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `session`'s subscription to `filter`, which may be a
    /// shared subscription `$share/{group}/{filter}`.
    pub fn subscribe(
        &mut self,
        session: K,
        filter: &MqttString,
        options: SubscriptionOptions,
        id: Option<SubscriptionId>,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        let parsed = Subscription::from_bytes(filter.as_bytes().clone())?;
        self.insert(session, filter, &parsed, options, id)
    }

    /// Adds or replaces a subscription already parsed from `filter`.
    pub(crate) fn insert(
        &mut self,
        session: K,
        filter: &MqttString,
        parsed: &Subscription,
        options: SubscriptionOptions,
        id: Option<SubscriptionId>,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        let entry = Entry { options, id };
        let outcome = match parsed {
            Subscription::Plain(f) => match self.plain.insert(f, session, entry) {
                Some(_) => SubscribeOutcome::Replaced,
                None => SubscribeOutcome::New,
            },
            Subscription::Shared(s) => {
                let group_name = MqttString::try_from(s.group())
                    .map_err(|_| SubscribeError::InvalidFilter(TopicError::Empty))?;
                if self.shared.get(s.filter(), &group_name).is_none() {
                    self.shared
                        .insert(s.filter(), group_name.clone(), Group::new(filter.clone()));
                }
                let Some(group) = self.shared.get_mut(s.filter(), &group_name) else {
                    return Err(SubscribeError::InvalidFilter(TopicError::Empty));
                };
                match group.members.iter_mut().find(|(k, _)| *k == session) {
                    Some(member) => {
                        member.1 = entry;
                        SubscribeOutcome::Replaced
                    }
                    None => {
                        group.members.push((session, entry));
                        SubscribeOutcome::New
                    }
                }
            }
        };
        if outcome == SubscribeOutcome::New {
            self.len += 1;
            if let Some(i) = self.interest.as_deref_mut() {
                i.added(parsed.filter());
            }
        }
        Ok(outcome)
    }

    /// Removes `session`'s subscription to `filter`; returns whether it existed.
    pub fn unsubscribe(&mut self, session: &K, filter: &MqttString) -> bool {
        let Ok(sub) = Subscription::from_bytes(filter.as_bytes().clone()) else {
            return false;
        };
        let removed = match &sub {
            Subscription::Plain(f) => self.plain.remove(f, session).is_some(),
            Subscription::Shared(s) => {
                let Ok(group_name) = MqttString::try_from(s.group()) else {
                    return false;
                };
                let Some(group) = self.shared.get_mut(s.filter(), &group_name) else {
                    return false;
                };
                let before = group.members.len();
                group.members.retain(|(k, _)| k != session);
                let removed = group.members.len() < before;
                if group.members.is_empty() {
                    self.shared.remove(s.filter(), &group_name);
                }
                removed
            }
        };
        if removed {
            self.len -= 1;
            if let Some(i) = self.interest.as_deref_mut() {
                i.removed(sub.filter());
            }
        }
        removed
    }

    /// The sessions `topic` goes to, appended to `out` (which is cleared
    /// first): one [`Target`] per session, however many of its
    /// subscriptions match.
    ///
    /// `publisher` (the session that published, if any) is skipped by its
    /// own No Local subscriptions [MQTT-3.8.3-3]. For each shared-subscription group, one member is
    /// chosen, round robin, among those `available` accepts (e.g. connected
    /// ones); if none is, the next in turn is chosen anyway, so the message
    /// waits in its queue rather than being lost.
    ///
    /// Targets borrow their session from the router: routing touches no
    /// reference count (see [`Target::cloned`] to keep one).
    ///
    /// Returns whether a shared-subscription group matched: then a member
    /// was chosen in turn, and the same call may give other targets next
    /// time. Otherwise the targets stay the same for as long as the
    /// subscriptions do, and a caller may keep them.
    pub fn route<'a>(
        &'a self,
        topic: &TopicName,
        publisher: Option<&K>,
        available: impl Fn(&K) -> bool,
        out: &mut Vec<Target<&'a K>>,
    ) -> bool {
        out.clear();
        self.plain.match_topic(topic, |session, e| {
            if !(e.options.no_local && Some(session) == publisher) {
                out.push(target(session, e, None));
            }
        });
        let mut shared = false;
        self.shared.match_topic(topic, |_, group| {
            shared = true;
            if let Some((session, e)) = group.pick(None, &available) {
                out.push(target(session, e, Some(&group.share)));
            }
        });
        merge_by_session(out);
        shared
    }

    /// Another member of the shared subscription `share`
    /// (`$share/{group}/{filter}`) than `leaving`, for a message `leaving`
    /// did not acknowledge (MQTT 5.0 §4.8.2). `None` if there is no other.
    pub fn reassign(
        &self,
        share: &MqttString,
        leaving: &K,
        available: impl Fn(&K) -> bool,
    ) -> Option<Target<K>> {
        let Ok(Subscription::Shared(s)) = Subscription::from_bytes(share.as_bytes().clone()) else {
            return None;
        };
        let group_name = MqttString::try_from(s.group()).ok()?;
        let group = self.shared.get(s.filter(), &group_name)?;
        let (session, e) = group.pick(Some(leaving), available)?;
        Some(target(session.clone(), e, Some(&group.share)))
    }

    /// Every plain (not shared) subscription, for inspection: (session,
    /// filter, granted QoS). Shared ones: [`Router::shared_subscriptions`].
    pub fn subscriptions(&self) -> impl Iterator<Item = (&K, TopicFilter, QoS)> + '_ {
        self.plain.iter().map(|(f, k, e)| (k, f, e.options.qos))
    }

    /// Every member of every shared-subscription group, for inspection:
    /// (session, `$share/{group}/{filter}`, granted QoS).
    pub fn shared_subscriptions(&self) -> impl Iterator<Item = (&K, &MqttString, QoS)> + '_ {
        self.shared.iter().flat_map(|(_, _, group)| {
            group
                .members
                .iter()
                .map(move |(k, e)| (k, &group.share, e.options.qos))
        })
    }
}

fn target<S>(session: S, e: &Entry, shared: Option<&MqttString>) -> Target<S> {
    Target {
        session,
        qos: e.options.qos,
        retain_as_published: e.options.retain_as_published,
        subscription_ids: e.id.into_iter().collect(),
        shared: shared.cloned(),
    }
}

/// Merges targets of the same session: highest QoS, union of identifiers;
/// shared only if every merged target was.
fn merge_by_session<K: Ord>(out: &mut Vec<Target<K>>) {
    if out.len() < 2 {
        return;
    }
    out.sort_unstable_by(|a, b| a.session.cmp(&b.session));
    let mut w = 0;
    for r in 1..out.len() {
        if out[r].session == out[w].session {
            let (head, tail) = out.split_at_mut(r);
            let (into, from) = (&mut head[w], &mut tail[0]);
            into.qos = into.qos.max(from.qos);
            into.retain_as_published |= from.retain_as_published;
            into.subscription_ids
                .extend(from.subscription_ids.drain(..));
            if from.shared.is_none() {
                into.shared = None;
            }
        } else {
            w += 1;
            out.swap(w, r);
        }
    }
    out.truncate(w + 1);
}
