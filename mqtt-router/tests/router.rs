//! The router against the behaviour the spec asks of a broker: overlapping
//! subscriptions, No Local, shared subscriptions, retained messages.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{
    MqttString, PacketId, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties,
    Subscription as CodecSubscription, SubscriptionId, SubscriptionOptions,
};
use mqtt_router::{Held, RetainedStore, Router, SubscribeOutcome, SubscribeRules, Target};
use mqtt_session::Message;
use mqtt_topic::{TopicFilter, TopicName};

fn s(x: &str) -> MqttString {
    MqttString::try_from(x).unwrap()
}

fn t(x: &str) -> TopicName {
    TopicName::new(x).unwrap()
}

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::qos(qos)
}

fn route(r: &Router<u32>, topic: &str, publisher: Option<u32>) -> Vec<Target<u32>> {
    let mut out = Vec::new();
    r.route(&t(topic), publisher.as_ref(), |_| true, &mut out);
    let mut out: Vec<Target<u32>> = out.into_iter().map(Target::cloned).collect();
    out.sort_by_key(|t| t.session);
    out
}

/// Overlapping subscriptions of one client give one delivery at the
/// highest granted QoS [MQTT-3.3.4-2] carrying every subscription
/// identifier [MQTT-3.3.4-3].
#[test]
fn mqtt_3_3_4_2_overlapping_subscriptions_merge_into_one_target() {
    let mut r = Router::new();
    r.subscribe(1, &s("a/+"), opts(QoS::AtMostOnce), SubscriptionId::new(7))
        .unwrap();
    r.subscribe(1, &s("a/#"), opts(QoS::ExactlyOnce), SubscriptionId::new(9))
        .unwrap();
    r.subscribe(1, &s("a/b"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    let out = route(&r, "a/b", None);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].qos, QoS::ExactlyOnce);
    let mut ids: Vec<u32> = out[0].subscription_ids.iter().map(|i| i.get()).collect();
    ids.sort();
    assert_eq!(ids, [7, 9]);
    assert_eq!(out[0].shared, None);
}

#[test]
fn resubscribing_replaces_the_subscription() {
    let mut r = Router::new();
    assert_eq!(
        r.subscribe(1, &s("a"), opts(QoS::AtMostOnce), None)
            .unwrap(),
        SubscribeOutcome::New
    );
    assert_eq!(
        r.subscribe(1, &s("a"), opts(QoS::AtLeastOnce), None)
            .unwrap(),
        SubscribeOutcome::Replaced
    );
    assert_eq!(r.len(), 1);
    assert_eq!(route(&r, "a", None)[0].qos, QoS::AtLeastOnce);
    assert!(r.unsubscribe(&1, &s("a")));
    assert!(!r.unsubscribe(&1, &s("a")));
    assert!(r.is_empty());
    assert!(route(&r, "a", None).is_empty());
}

/// No Local: the publisher's own subscription is skipped [MQTT-3.8.3-3].
#[test]
fn mqtt_3_8_3_3_no_local_skips_the_publisher() {
    let mut r = Router::new();
    let mut o = opts(QoS::AtLeastOnce);
    o.no_local = true;
    r.subscribe(1, &s("x"), o, None).unwrap();
    r.subscribe(2, &s("x"), o, None).unwrap();
    let out = route(&r, "x", Some(1));
    assert_eq!(out.iter().map(|t| t.session).collect::<Vec<_>>(), [2]);
    assert_eq!(route(&r, "x", Some(3)).len(), 2);
}

#[test]
fn invalid_filters_are_refused() {
    let mut r: Router<u32> = Router::new();
    for bad in ["a/#/b", "a+", "$share/g", "$share//x", ""] {
        assert!(
            r.subscribe(1, &s(bad), opts(QoS::AtMostOnce), None)
                .is_err(),
            "{bad}"
        );
    }
    assert!(r.is_empty());
}

/// Each message to a shared subscription goes to one member of each group,
/// round robin among available members.
#[test]
fn shared_subscription_delivers_to_one_member_per_group() {
    let mut r = Router::new();
    for member in [1, 2, 3] {
        r.subscribe(member, &s("$share/g/jobs/+"), opts(QoS::AtLeastOnce), None)
            .unwrap();
    }
    r.subscribe(4, &s("$share/h/jobs/+"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    r.subscribe(5, &s("jobs/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let out = route(&r, "jobs/1", None);
        let members: Vec<u32> = out.iter().map(|t| t.session).filter(|s| *s <= 3).collect();
        assert_eq!(members.len(), 1, "{out:?}");
        *seen.entry(members[0]).or_insert(0) += 1;
        assert!(
            out.iter().any(|t| t.session == 4),
            "group h gets every message"
        );
        assert!(out.iter().any(|t| t.session == 5 && t.shared.is_none()));
        let member = out.iter().find(|t| t.session == members[0]).unwrap();
        assert_eq!(member.shared.as_deref(), Some("$share/g/jobs/+"));
    }
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "round robin"
    );
}

#[test]
fn shared_subscription_prefers_available_members() {
    let mut r = Router::new();
    for member in [1, 2, 3] {
        r.subscribe(member, &s("$share/g/t"), opts(QoS::AtLeastOnce), None)
            .unwrap();
    }
    for _ in 0..10 {
        let mut out = Vec::new();
        r.route(&t("t"), None, |s| *s == 2, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(*out[0].session, 2);
    }
}

/// A member that leaves has its unacknowledged messages given to another
/// member (MQTT 5.0 §4.8.2).
#[test]
fn reassign_picks_another_member() {
    let mut r = Router::new();
    r.subscribe(1, &s("$share/g/t"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    r.subscribe(2, &s("$share/g/t"), opts(QoS::AtMostOnce), None)
        .unwrap();
    for _ in 0..5 {
        let target = r.reassign(&s("$share/g/t"), &1, |_| true).unwrap();
        assert_eq!(target.session, 2);
        assert_eq!(target.qos, QoS::AtMostOnce);
    }
    assert!(r.unsubscribe(&2, &s("$share/g/t")));
    assert!(r.reassign(&s("$share/g/t"), &1, |_| true).is_none());
    assert!(r.reassign(&s("plain/t"), &1, |_| true).is_none());
}

/// `$` topics are not matched by wildcard-first filters [MQTT-4.7.2-1].
#[test]
fn mqtt_4_7_2_1_dollar_topics_skip_leading_wildcards() {
    let mut r = Router::new();
    r.subscribe(1, &s("#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    r.subscribe(2, &s("$SYS/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    let out = route(&r, "$SYS/broker/uptime", None);
    assert_eq!(out.iter().map(|t| t.session).collect::<Vec<_>>(), [2]);
}

fn msg(topic: &str, payload: &'static [u8], expires_at: Option<Instant>) -> Arc<Message> {
    let mut m = Message::new(
        s(topic),
        bytes::Bytes::from_static(payload),
        QoS::AtLeastOnce,
        true,
    );
    m.expires_at = expires_at;
    Arc::new(m)
}

/// An empty retained payload removes the retained message [MQTT-3.3.1-6].
#[test]
fn retained_store_replaces_and_clears() {
    let mut store = RetainedStore::new();
    let now = Instant::now();
    assert!(store.set(t("a/b"), msg("a/b", b"1", None)).is_none());
    assert!(store.set(t("a/b"), msg("a/b", b"22", None)).is_some());
    assert_eq!(store.len(), 1);
    assert_eq!(store.bytes(), 3 + 2);
    store.set(t("a/c"), msg("a/c", b"3", None));
    let mut found = Vec::new();
    store.matching(&TopicFilter::new("a/+").unwrap(), now, |m| {
        found.push(m.payload.clone())
    });
    found.sort();
    assert_eq!(
        found,
        [
            bytes::Bytes::from_static(b"22"),
            bytes::Bytes::from_static(b"3")
        ]
    );
    assert!(store.set(t("a/b"), msg("a/b", b"", None)).is_some());
    assert_eq!(store.len(), 1);
    assert_eq!(store.bytes(), 3 + 1);
}

#[test]
fn expired_retained_messages_are_not_sent_and_can_be_purged() {
    let mut store = RetainedStore::new();
    let now = Instant::now();
    store.set(t("a"), msg("a", b"old", Some(now + Duration::from_secs(1))));
    store.set(t("b"), msg("b", b"new", None));
    let later = now + Duration::from_secs(2);
    let mut found = Vec::new();
    store.matching(&TopicFilter::new("#").unwrap(), later, |m| {
        found.push(m.topic.to_string())
    });
    assert_eq!(found, ["b"]);
    assert_eq!(store.purge_expired(later), 1);
    assert_eq!(store.len(), 1);
}

/// A session whose plain subscription matches too is not a shared-only
/// target: its delivery must not be moved to another group member.
#[test]
fn plain_and_shared_match_of_one_session_is_not_shared() {
    let mut r = Router::new();
    r.subscribe(1, &s("$share/g/t"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    r.subscribe(1, &s("t"), opts(QoS::AtMostOnce), None)
        .unwrap();
    let out = route(&r, "t", None);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shared, None);
    assert_eq!(out[0].qos, QoS::AtLeastOnce);
}

/// `route` tells whether a shared group matched: only then may the same
/// topic route elsewhere next time, with the subscriptions unchanged.
#[test]
fn route_tells_whether_a_shared_group_chose_a_member() {
    let mut r = Router::new();
    r.subscribe(1, &s("a/+"), opts(QoS::AtMostOnce), None)
        .unwrap();
    r.subscribe(2, &s("$share/g/b/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    r.subscribe(3, &s("$share/g/b/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    let mut out = Vec::new();
    assert!(!r.route(&t("a/1"), None, |_| true, &mut out));
    assert_eq!(out.len(), 1);
    assert!(r.route(&t("b/1"), None, |_| true, &mut out));
    let first = *out[0].session;
    assert!(r.route(&t("b/1"), None, |_| true, &mut out));
    assert_ne!(*out[0].session, first, "round robin");
    assert!(!r.route(&t("c"), None, |_| true, &mut out));
    assert!(out.is_empty());
}

// ---- SUBSCRIBE as the broker decides it ---------------------------------------

fn subscribe_packet(filters: &[(&str, SubscriptionOptions)], id: Option<u32>) -> Subscribe {
    Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: SubscribeProperties {
            subscription_identifier: id.and_then(SubscriptionId::new),
            ..Default::default()
        },
        subscriptions: filters
            .iter()
            .map(|(f, options)| CodecSubscription {
                filter: s(f),
                options: *options,
            })
            .collect(),
    }
}

/// Each filter gets its own reason code, in order [MQTT-3.9.3-1]; the
/// refusals come in the order invalid, too deep, feature not offered,
/// not permitted, over quota; a granted QoS is the lesser of the asked
/// and the server's maximum.
#[test]
fn subscribe_packet_decides_each_filter_in_order() {
    let mut r: Router<u32> = Router::new();
    let rules = SubscribeRules {
        maximum_qos: QoS::AtLeastOnce,
        max_topic_levels: 3,
        max_subscriptions: 3,
        max_subscription_bytes: usize::MAX,
        wildcard_available: false,
        shared_available: false,
    };
    let request = subscribe_packet(
        &[
            ("a/#/b", opts(QoS::AtMostOnce)),
            ("a/b/c/d", opts(QoS::AtMostOnce)),
            ("$share/g/a", opts(QoS::AtMostOnce)),
            ("a/+", opts(QoS::AtMostOnce)),
            ("secret", opts(QoS::AtMostOnce)),
            ("x", opts(QoS::ExactlyOnce)),
            ("y", opts(QoS::AtMostOnce)),
            ("z", opts(QoS::AtMostOnce)),
        ],
        Some(5),
    );
    let mut held = Held {
        subscriptions: 1,
        bytes: 0,
    };
    let codes: Vec<ReasonCode> = r
        .subscribe_packet(
            &7,
            &request,
            &mut held,
            |_| false,
            &rules,
            |f| f.as_str() != "secret",
        )
        .into_iter()
        .map(|g| g.code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ReasonCode::TopicFilterInvalid,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QuotaExceeded,
        ]
    );
    assert_eq!(held.subscriptions, 3);
    assert_eq!(r.len(), 2);
    let x = &route(&r, "x", None)[0];
    assert_eq!(x.qos, QoS::AtLeastOnce);
    assert_eq!(
        x.subscription_ids.to_vec(),
        vec![SubscriptionId::new(5).unwrap()]
    );
}

/// Replacing a held subscription adds none, so the quota does not refuse
/// it [MQTT-3.8.4-3].
#[test]
fn subscribe_packet_replacing_a_held_subscription_is_within_the_quota() {
    let mut r: Router<u32> = Router::new();
    let rules = SubscribeRules {
        max_subscriptions: 1,
        ..SubscribeRules::default()
    };
    let mut held = Held::default();
    let first = subscribe_packet(&[("a", opts(QoS::AtMostOnce))], None);
    r.subscribe_packet(&1, &first, &mut held, |_| false, &rules, |_| true);
    let again = subscribe_packet(&[("a", opts(QoS::ExactlyOnce))], None);
    let g = r.subscribe_packet(
        &1,
        &again,
        &mut held,
        |f| f.as_str() == "a",
        &rules,
        |_| true,
    );
    assert_eq!(g[0].code, ReasonCode::GrantedQoS2);
    assert_eq!(held.subscriptions, 1);
    assert_eq!(route(&r, "a", None)[0].qos, QoS::ExactlyOnce);
}

/// Retained messages follow a new subscription [MQTT-3.3.1-9], per Retain
/// Handling: 0 always, 1 only if it is new [MQTT-3.3.1-10], 2 never
/// [MQTT-3.3.1-11]; never for a shared subscription (MQTT 5.0 §4.8.2),
/// whatever the protocol version.
#[test]
fn subscribe_packet_says_when_retained_messages_follow() {
    let mut r: Router<u32> = Router::new();
    let rules = SubscribeRules::default();
    let with = |h: RetainHandling| SubscriptionOptions {
        retain_handling: h,
        ..opts(QoS::AtLeastOnce)
    };
    let mut held = Held::default();
    let request = subscribe_packet(
        &[
            ("r/0", with(RetainHandling::SendAtSubscribe)),
            ("r/1", with(RetainHandling::SendIfNew)),
            ("r/2", with(RetainHandling::DoNotSend)),
            ("$share/g/r/3", with(RetainHandling::SendAtSubscribe)),
        ],
        None,
    );
    let sends = |g: &[mqtt_router::Granted]| -> Vec<bool> {
        g.iter().map(|g| g.retained.is_some()).collect()
    };
    let first = r.subscribe_packet(&1, &request, &mut held, |_| false, &rules, |_| true);
    assert_eq!(sends(&first), vec![true, true, false, false]);
    assert_eq!(
        first[0].retained,
        Some((TopicFilter::new("r/0").unwrap(), QoS::AtLeastOnce))
    );
    let again = r.subscribe_packet(&1, &request, &mut held, |_| true, &rules, |_| true);
    assert_eq!(sends(&again), vec![true, false, false, false]);
}

/// The retained messages of a subscription: at the lesser QoS, RETAIN
/// set, with the subscription identifier, not those the ACL hides, not
/// expired ones.
#[test]
fn retained_deliveries_for_a_subscription() {
    let now = Instant::now();
    let mut store = RetainedStore::new();
    for (topic, qos) in [
        ("d/1", QoS::ExactlyOnce),
        ("d/2", QoS::AtMostOnce),
        ("d/hidden", QoS::AtLeastOnce),
    ] {
        let m = Message::new(s(topic), bytes::Bytes::from_static(b"v"), qos, true);
        store.set(t(topic), Arc::new(m));
    }
    let mut out = Vec::new();
    store.deliveries_for(
        &TopicFilter::new("d/+").unwrap(),
        QoS::AtLeastOnce,
        SubscriptionId::new(9),
        now,
        |topic| topic != "d/hidden",
        &mut out,
    );
    out.sort_by(|a, b| a.message.topic.as_str().cmp(b.message.topic.as_str()));
    let got: Vec<(&str, QoS, bool, Vec<SubscriptionId>)> = out
        .iter()
        .map(|d| {
            (
                d.message.topic.as_str(),
                d.qos,
                d.retain,
                d.subscription_ids.to_vec(),
            )
        })
        .collect();
    let nine = SubscriptionId::new(9).unwrap();
    assert_eq!(
        got,
        vec![
            ("d/1", QoS::AtLeastOnce, true, vec![nine]),
            ("d/2", QoS::AtMostOnce, true, vec![nine]),
        ]
    );
}

/// A delivery goes at the lesser of the message's QoS and the granted one
/// [MQTT-3.3.4-2]; RETAIN is kept only for Retain As Published
/// [MQTT-3.3.1-12] [MQTT-3.3.1-13]; the identifiers and the shared
/// subscription come along; the last delivery takes the message itself.
#[test]
fn a_target_makes_its_delivery() {
    let mut r: Router<u32> = Router::new();
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..opts(QoS::ExactlyOnce)
    };
    r.subscribe(1, &s("m/+"), rap, SubscriptionId::new(4))
        .unwrap();
    r.subscribe(2, &s("m/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    r.subscribe(3, &s("$share/g/m/1"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    let mut message = Some(msg("m/1", b"x", None)); // QoS 1, retained
    let targets = route(&r, "m/1", None);
    let n = targets.len();
    let deliveries: Vec<(u32, mqtt_session::Delivery)> = targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.into_delivery(&mut message, i + 1 == n).unwrap())
        .collect();
    assert!(message.is_none(), "the last delivery took the message");
    let d = |k: u32| &deliveries.iter().find(|(s, _)| *s == k).unwrap().1;
    assert_eq!((d(1).qos, d(1).retain), (QoS::AtLeastOnce, true));
    assert_eq!(
        d(1).subscription_ids.to_vec(),
        vec![SubscriptionId::new(4).unwrap()]
    );
    assert_eq!((d(2).qos, d(2).retain), (QoS::AtMostOnce, false));
    assert_eq!(d(3).shared_group, Some(s("$share/g/m/1")));
    assert_eq!(d(1).shared_group, None);
}

/// The retained store keeps at most `max` topics: a new topic beyond it
/// is refused, while replacing or clearing a kept one still works
/// [MQTT-3.3.1-5] [MQTT-3.3.1-6].
#[test]
fn retained_store_limit_refuses_new_topics_only() {
    let mut store = RetainedStore::new();
    assert!(store.retain(&t("l/1"), &msg("l/1", b"a", None), 1));
    assert!(!store.retain(&t("l/2"), &msg("l/2", b"b", None), 1));
    assert!(store.get(&t("l/2")).is_none());
    assert!(store.retain(&t("l/1"), &msg("l/1", b"c", None), 1));
    assert_eq!(&store.get(&t("l/1")).unwrap().payload[..], b"c");
    assert!(store.retain(&t("l/1"), &msg("l/1", b"", None), 1));
    assert!(store.is_empty());
    assert!(store.retain(&t("l/2"), &msg("l/2", b"b", None), 1));
}

/// Inspection lists plain and shared subscriptions apart, both complete.
#[test]
fn plain_and_shared_subscriptions_are_both_listed() {
    let mut r: Router<u32> = Router::new();
    r.subscribe(1, &s("a/+"), opts(QoS::AtLeastOnce), None)
        .unwrap();
    r.subscribe(2, &s("$share/g/a/#"), opts(QoS::ExactlyOnce), None)
        .unwrap();
    r.subscribe(3, &s("$share/g/a/#"), opts(QoS::AtMostOnce), None)
        .unwrap();
    let plain: Vec<(u32, String, QoS)> = r
        .subscriptions()
        .map(|(k, f, q)| (*k, f.as_str().to_owned(), q))
        .collect();
    assert_eq!(plain, vec![(1, "a/+".to_owned(), QoS::AtLeastOnce)]);
    let mut shared: Vec<(u32, &str, QoS)> = r
        .shared_subscriptions()
        .map(|(k, f, q)| (*k, f.as_str(), q))
        .collect();
    shared.sort();
    assert_eq!(
        shared,
        vec![
            (2, "$share/g/a/#", QoS::ExactlyOnce),
            (3, "$share/g/a/#", QoS::AtMostOnce)
        ]
    );
    assert_eq!(r.len(), 3);
}

/// The per-session byte budget refuses a subscription that would exceed
/// it (0x97) whatever the count, and a removed subscription gives its
/// bytes back.
#[test]
fn subscribe_packet_keeps_within_the_byte_budget() {
    let mut r: Router<u32> = Router::new();
    let rules = SubscribeRules {
        max_subscription_bytes: 2 * Held::bytes_of("aaaa"),
        ..SubscribeRules::default()
    };
    let mut held = Held::default();
    let request = subscribe_packet(
        &[
            ("aaaa", opts(QoS::AtMostOnce)),
            ("bbbb", opts(QoS::AtMostOnce)),
            ("c", opts(QoS::AtMostOnce)),
        ],
        None,
    );
    let codes: Vec<ReasonCode> = r
        .subscribe_packet(&1, &request, &mut held, |_| false, &rules, |_| true)
        .into_iter()
        .map(|g| g.code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QuotaExceeded
        ]
    );
    assert_eq!(held, Held::of(["aaaa", "bbbb"]));
    held.remove("bbbb");
    let again = subscribe_packet(&[("c", opts(QoS::AtMostOnce))], None);
    let g = r.subscribe_packet(&1, &again, &mut held, |_| false, &rules, |_| true);
    assert_eq!(g[0].code, ReasonCode::GRANTED_QOS_0);
}

/// The server's own `$SYS/` topics take no room from the limit, and are
/// never refused by it.
#[test]
fn retained_store_limit_does_not_count_sys_topics() {
    let mut store = RetainedStore::new();
    assert!(store.retain(
        &t("$SYS/broker/uptime"),
        &msg("$SYS/broker/uptime", b"1", None),
        1
    ));
    assert!(store.retain(&t("l/1"), &msg("l/1", b"a", None), 1));
    assert!(store.retain(
        &t("$SYS/broker/version"),
        &msg("$SYS/broker/version", b"v", None),
        1
    ));
    assert!(!store.retain(&t("l/2"), &msg("l/2", b"b", None), 1));
    // Cleared $SYS topics are no longer counted either way.
    assert!(store.retain(
        &t("$SYS/broker/uptime"),
        &msg("$SYS/broker/uptime", b"", None),
        1
    ));
    assert!(store.retain(&t("l/1"), &msg("l/1", b"", None), 1));
    assert!(store.retain(&t("l/2"), &msg("l/2", b"b", None), 1));
    assert_eq!(store.len(), 2);
}
