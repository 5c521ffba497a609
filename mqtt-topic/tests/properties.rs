//! Random filters, topics and operation sequences: the trie and the retained
//! index must agree with the naive matcher, and give back every node.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use mqtt_topic::testing::{
    NaiveIndex, Op, matches, ops, share_name, subscription, topic_filter_string, topic_name,
    topic_name_string, trie_matches, valid_topic_filter, valid_topic_name,
};
use mqtt_topic::{RetainedIndex, Subscription, SubscriptionTrie, TopicFilter, TopicName};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_naive_matcher(
        ops in ops(0..4u8, any::<u16>(), 0..60),
        topics in prop::collection::vec(topic_name(), 1..12),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut model = NaiveIndex::new();
        for op in ops {
            match op {
                Op::Insert(f, k, v) => {
                    prop_assert_eq!(trie.insert(&f, k, v), model.insert(&f, k, v));
                }
                Op::Remove(f, k) => {
                    prop_assert_eq!(trie.remove(&f, &k), model.remove(&f, &k));
                }
                Op::Match(t) => {
                    prop_assert_eq!(trie_matches(&trie, &t), model.matches(&t), "topic {:?}", t);
                }
            }
            prop_assert_eq!(trie.len(), model.len());
            for t in &topics {
                prop_assert_eq!(trie_matches(&trie, t), model.matches(t), "topic {:?}", t);
            }
        }

        let mut listed: Vec<(String, u8, u16)> =
            trie.iter().map(|(f, k, v)| (f.to_string(), *k, *v)).collect();
        listed.sort();
        let expected: Vec<(String, u8, u16)> =
            model.iter().map(|(f, k, v)| (f.to_owned(), *k, *v)).collect();
        prop_assert_eq!(&listed, &expected);

        for (f, k, v) in &expected {
            let f = TopicFilter::new(f).unwrap();
            prop_assert_eq!(trie.get(&f, k), Some(v));
        }
        for (f, k, v) in expected {
            prop_assert_eq!(trie.remove(&TopicFilter::new(&f).unwrap(), &k), Some(v));
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retained_index_agrees_with_naive_matcher(
        ops in prop::collection::vec((topic_name_string(), any::<bool>(), any::<u16>()), 0..60),
        filters in prop::collection::vec(topic_filter_string(), 1..12),
    ) {
        let mut index = RetainedIndex::new();
        let mut model: BTreeMap<String, u16> = BTreeMap::new();
        for (t, insert, v) in ops {
            let name = TopicName::new(&t).unwrap();
            if insert {
                prop_assert_eq!(index.insert(name, v), model.insert(t, v));
            } else {
                prop_assert_eq!(index.remove(&name), model.remove(&t));
            }
            prop_assert_eq!(index.len(), model.len());
            for f in &filters {
                let mut got = Vec::new();
                index.match_filter(&TopicFilter::new(f).unwrap(), |t, v| got.push((t.to_string(), *v)));
                got.sort();
                let want: Vec<(String, u16)> = model
                    .iter()
                    .filter(|(t, _)| matches(f, t))
                    .map(|(t, v)| (t.clone(), *v))
                    .collect();
                prop_assert_eq!(got, want, "filter {:?}", f);
            }
        }
        let mut listed: Vec<(String, u16)> = index.iter().map(|(t, v)| (t.to_string(), *v)).collect();
        listed.sort();
        prop_assert_eq!(&listed, &model.clone().into_iter().collect::<Vec<_>>());
        for (t, v) in model {
            prop_assert_eq!(index.remove(&TopicName::new(&t).unwrap()), Some(v));
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), 1);
    }

    /// Constructors accept exactly what the rules allow, and never panic.
    #[test]
    fn validation_follows_the_rules(s in "[ab/+#$\0]{0,8}") {
        prop_assert_eq!(TopicFilter::new(&s).is_ok(), valid_topic_filter(&s));
        prop_assert_eq!(TopicName::new(&s).is_ok(), valid_topic_name(&s));
        let _ = Subscription::new(&s);
    }

    #[test]
    fn constructors_never_panic(s in any::<String>(), b in any::<Vec<u8>>()) {
        let _ = TopicName::new(&s);
        let _ = TopicFilter::new(&s);
        let _ = Subscription::new(&s);
        let _ = TopicName::from_bytes(b.clone().into());
        let _ = TopicFilter::from_bytes(b.clone().into());
        let _ = Subscription::from_bytes(b.into());
        let _ = matches(&s, &s);
    }

    /// A shared subscription is `$share/`, a share name, `/` and a filter;
    /// its parts come back as they went in.
    #[test]
    fn shared_subscriptions_round_trip(group in share_name(), f in topic_filter_string()) {
        let whole = format!("$share/{group}/{f}");
        let sub = Subscription::new(&whole).unwrap();
        prop_assert_eq!(sub.group(), Some(group.as_str()));
        prop_assert_eq!(sub.filter().as_str(), f.as_str());
        prop_assert_eq!(sub.to_string(), whole);
    }

    /// What a subscription prints reads back as the same subscription.
    #[test]
    fn subscriptions_round_trip(sub in subscription()) {
        prop_assert_eq!(Subscription::new(&sub.to_string()).unwrap(), sub);
    }

    /// `level_count` counts what `levels` yields, empty levels included.
    #[test]
    fn level_count_is_the_number_of_levels(
        t in topic_name_string(),
        lead in any::<bool>(),
        trail in any::<bool>(),
    ) {
        let t = format!("{}{t}{}", if lead { "/" } else { "" }, if trail { "/" } else { "" });
        let name = TopicName::new(&t).unwrap();
        prop_assert_eq!(name.level_count(), name.levels().count());
    }
}
