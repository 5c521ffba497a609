//! SUBSCRIBE as the broker decides it: each filter parsed once, checked
//! against the server's limits and the client's permissions, granted a
//! QoS, entered in the index, and told whether retained messages follow.

use std::hash::Hash;
use std::time::Instant;

use mqtt_codec::{MqttString, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionId};
use mqtt_session::Delivery;
use mqtt_topic::{Subscription, TopicFilter};

use crate::{RetainedStore, Router, SubscribeOutcome};

/// The server's rules for subscriptions that are not one connection's
/// protocol rules (those are the session's): limits, grants, features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeRules {
    /// The highest QoS granted; a subscription asking more gets this, and
    /// the SUBACK says what was granted.
    pub maximum_qos: QoS,
    /// Most levels a filter may have; more is refused as an invalid filter
    /// (0x8F).
    pub max_topic_levels: usize,
    /// Most subscriptions one session may hold; one more is refused with
    /// 0x97 (Quota exceeded). Replacing a held one adds none.
    pub max_subscriptions: usize,
    /// Most bytes of subscriptions one session may hold, each counting its
    /// filter's length and [`Held::COST`]; one more is refused with 0x97.
    pub max_subscription_bytes: usize,
    /// Whether filters with `+` or `#` are accepted; if not, 0xA2.
    pub wildcard_available: bool,
    /// Whether `$share/{group}/{filter}` is accepted; if not, 0x9E.
    pub shared_available: bool,
}

impl Default for SubscribeRules {
    fn default() -> Self {
        Self {
            maximum_qos: QoS::ExactlyOnce,
            max_topic_levels: usize::MAX,
            max_subscriptions: usize::MAX,
            max_subscription_bytes: usize::MAX,
            wildcard_available: true,
            shared_available: true,
        }
    }
}

/// What one session's subscriptions hold, against [`SubscribeRules`]'
/// per-session limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Subscriptions, shared ones included.
    pub subscriptions: usize,
    /// Their bytes: each filter's length plus [`Held::COST`].
    pub bytes: usize,
}

impl Held {
    /// What one subscription costs beyond its filter's text: the index's
    /// nodes and entries, measured at about 430 bytes per filter with
    /// 100,000 filters on one connection.
    pub const COST: usize = 430;

    /// What the subscriptions on `filters` hold (a resumed session's).
    pub fn of(filters: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut held = Self::default();
        for f in filters {
            held.add(f.as_ref());
        }
        held
    }

    /// The bytes a subscription on `filter` counts.
    pub fn bytes_of(filter: &str) -> usize {
        filter.len() + Self::COST
    }

    fn add(&mut self, filter: &str) {
        self.subscriptions += 1;
        self.bytes += Self::bytes_of(filter);
    }

    /// A subscription on `filter` was removed.
    pub fn remove(&mut self, filter: &str) {
        self.subscriptions = self.subscriptions.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(Self::bytes_of(filter));
    }
}

/// What [`Router::subscribe_packet`] decided for one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The SUBACK reason code: the QoS granted, or why it was refused.
    pub code: ReasonCode,
    /// For an accepted plain subscription whose Retain Handling asks for
    /// them: the retained messages matching this filter are sent at up to
    /// this QoS ([`RetainedStore::deliveries_for`]). Never for a shared
    /// subscription (MQTT 5.0 §4.8.2).
    pub retained: Option<(TopicFilter, QoS)>,
}

impl<K: Clone + Eq + Hash + Ord> Router<K> {
    /// The subscriptions of one SUBSCRIBE packet of `session`, in order,
    /// one [`Granted`] each (the SUBACK's reason codes, in the same order
    /// [MQTT-3.9.3-1]):
    ///
    /// - a filter that is not a valid topic filter or shared subscription
    ///   (`$share/{group}/{filter}`, under every protocol version, as
    ///   mosquitto offers it), or has more than `max_topic_levels` levels:
    ///   0x8F [MQTT-4.7.3-1];
    /// - a shared subscription or a wildcard the server does not offer:
    ///   0x9E, 0xA2;
    /// - a filter `permitted` refuses (an ACL): 0x87;
    /// - a new subscription beyond `max_subscriptions` or
    ///   `max_subscription_bytes`: 0x97;
    /// - otherwise the subscription is added, or replaces the session's
    ///   subscription on the same filter [MQTT-3.8.4-3], at the lesser of
    ///   the QoS asked and `maximum_qos`, with its options
    ///   (No Local, Retain As Published) and the packet's subscription
    ///   identifier.
    ///
    /// `held` is what the session's subscriptions hold (updated), and
    /// `holds` whether it holds one on a filter already.
    pub fn subscribe_packet(
        &mut self,
        session: &K,
        request: &Subscribe,
        held: &mut Held,
        holds: impl Fn(&MqttString) -> bool,
        rules: &SubscribeRules,
        permitted: impl Fn(&TopicFilter) -> bool,
    ) -> Vec<Granted> {
        let id = request.properties.subscription_identifier;
        request
            .subscriptions
            .iter()
            .map(|sub| {
                let refused = |code| Granted {
                    code,
                    retained: None,
                };
                let Ok(parsed) = Subscription::from_bytes(sub.filter.as_bytes().clone()) else {
                    return refused(ReasonCode::TopicFilterInvalid);
                };
                let filter = parsed.filter();
                if filter.levels().count() > rules.max_topic_levels {
                    return refused(ReasonCode::TopicFilterInvalid);
                }
                if parsed.is_shared() && !rules.shared_available {
                    return refused(ReasonCode::SharedSubscriptionsNotSupported);
                }
                if filter.has_wildcards() && !rules.wildcard_available {
                    return refused(ReasonCode::WildcardSubscriptionsNotSupported);
                }
                if !permitted(filter) {
                    return refused(ReasonCode::NotAuthorized);
                }
                if !holds(&sub.filter)
                    && (held.subscriptions >= rules.max_subscriptions
                        || held.bytes + Held::bytes_of(sub.filter.as_str())
                            > rules.max_subscription_bytes)
                {
                    return refused(ReasonCode::QuotaExceeded);
                }
                let granted = sub.options.qos.min(rules.maximum_qos);
                let mut options = sub.options;
                options.qos = granted;
                let Ok(outcome) = self.insert(session.clone(), &sub.filter, &parsed, options, id)
                else {
                    return refused(ReasonCode::TopicFilterInvalid);
                };
                if outcome == SubscribeOutcome::New {
                    held.add(sub.filter.as_str());
                }
                // Retained messages for the new subscription [MQTT-3.3.1-9],
                // per Retain Handling [MQTT-3.3.1-10] [MQTT-3.3.1-11]; none
                // for a shared one.
                let send = match sub.options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => outcome == SubscribeOutcome::New,
                    RetainHandling::DoNotSend => false,
                };
                Granted {
                    code: granted_code(granted),
                    retained: (send && !parsed.is_shared()).then(|| (filter.clone(), granted)),
                }
            })
            .collect()
    }
}

/// The SUBACK reason code of a granted QoS.
fn granted_code(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

impl RetainedStore {
    /// The retained messages a new subscription to `filter` receives
    /// [MQTT-3.3.1-9], appended to `out`: every unexpired one whose topic
    /// `readable` accepts (an ACL), at the lesser of its QoS and `qos`,
    /// with the RETAIN flag set (Retain As Published concerns forwarded
    /// messages, not these [MQTT-3.3.1-9]), carrying the subscription's
    /// identifier.
    pub fn deliveries_for(
        &self,
        filter: &TopicFilter,
        qos: QoS,
        id: Option<SubscriptionId>,
        now: Instant,
        readable: impl Fn(&str) -> bool,
        out: &mut Vec<Delivery>,
    ) {
        self.matching(filter, now, |m| {
            if !readable(m.topic.as_str()) {
                return;
            }
            out.push(Delivery {
                message: m.clone(),
                qos: qos.min(m.qos),
                retain: true,
                subscription_ids: id.into_iter().collect(),
                shared_group: None,
                tag: 0,
            });
        });
    }
}
