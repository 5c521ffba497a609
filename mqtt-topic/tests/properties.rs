//! Random filters, topics and operation sequences: the trie and the retained
//! index must agree with the naive matcher, and give back every node.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use mqtt_topic::{RetainedIndex, Subscription, SubscriptionTrie, TopicFilter, TopicName, matches};
use proptest::prelude::*;
use proptest::sample::select;

/// Levels from a small alphabet so that filters and topics often meet:
/// empty levels and `$` levels included.
fn name_level() -> impl Strategy<Value = &'static str> {
    select(vec!["a", "b", "", "$s"])
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(name_level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("at least one character", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => name_level(), 1 => Just("+")];
    (prop::collection::vec(level, 0..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("at least one character", |f| !f.is_empty())
}

#[derive(Debug, Clone)]
enum Op {
    /// Insert filter `pool[i]` with a key and a value.
    Insert(usize, u8, u16),
    /// Remove filter `pool[i]` with a key.
    Remove(usize, u8),
}

fn ops(pool_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..pool_len, 0..4u8, any::<u16>()).prop_map(|(i, k, v)| Op::Insert(i, k, v)),
        2 => (0..pool_len, 0..4u8).prop_map(|(i, k)| Op::Remove(i, k)),
    ];
    prop::collection::vec(op, 0..60)
}

fn trie_matches(trie: &SubscriptionTrie<u8, u16>, topic: &str) -> Vec<(u8, u16)> {
    let mut got = Vec::new();
    trie.match_topic(&TopicName::new(topic).unwrap(), |k, v| got.push((*k, *v)));
    got.sort();
    got
}

fn model_matches(model: &BTreeMap<(String, u8), u16>, topic: &str) -> Vec<(u8, u16)> {
    let mut want: Vec<(u8, u16)> = model
        .iter()
        .filter(|((f, _), _)| matches(f, topic))
        .map(|((_, k), v)| (*k, *v))
        .collect();
    want.sort();
    want
}

/// The reference rules of MQTT 4.7, written level by level.
fn valid_filter(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    !s.is_empty()
        && s.len() <= 65_535
        && !s.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            (!l.contains('+') || *l == "+")
                && (!l.contains('#') || (*l == "#" && i == levels.len() - 1))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_naive_matcher(
        (pool, ops) in prop::collection::vec(filter(), 1..12)
            .prop_flat_map(|pool| { let n = pool.len(); (Just(pool), ops(n)) }),
        topics in prop::collection::vec(topic(), 1..12),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut model: BTreeMap<(String, u8), u16> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(i, k, v) => {
                    let f = TopicFilter::new(&pool[i]).unwrap();
                    prop_assert_eq!(trie.insert(&f, k, v), model.insert((pool[i].clone(), k), v));
                }
                Op::Remove(i, k) => {
                    let f = TopicFilter::new(&pool[i]).unwrap();
                    prop_assert_eq!(trie.remove(&f, &k), model.remove(&(pool[i].clone(), k)));
                }
            }
            prop_assert_eq!(trie.len(), model.len());
            for t in &topics {
                prop_assert_eq!(trie_matches(&trie, t), model_matches(&model, t), "topic {:?}", t);
            }
        }

        let mut listed: Vec<((String, u8), u16)> =
            trie.iter().map(|(f, k, v)| ((f.to_string(), *k), *v)).collect();
        listed.sort();
        let expected: Vec<((String, u8), u16)> = model.clone().into_iter().collect();
        prop_assert_eq!(listed, expected);

        for ((f, k), v) in &model {
            let f = TopicFilter::new(f).unwrap();
            prop_assert_eq!(trie.get(&f, k), Some(v));
        }
        for ((f, k), v) in model {
            prop_assert_eq!(trie.remove(&TopicFilter::new(&f).unwrap(), &k), Some(v));
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retained_index_agrees_with_naive_matcher(
        ops in prop::collection::vec((topic(), any::<bool>(), any::<u16>()), 0..60),
        filters in prop::collection::vec(filter(), 1..12),
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
        prop_assert_eq!(TopicFilter::new(&s).is_ok(), valid_filter(&s));
        prop_assert_eq!(
            TopicName::new(&s).is_ok(),
            valid_filter(&s) && !s.contains(['+', '#'])
        );
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
    fn shared_subscriptions_round_trip(group in "[a-z$]{1,5}", f in filter()) {
        let whole = format!("$share/{group}/{f}");
        let sub = Subscription::new(&whole).unwrap();
        prop_assert_eq!(sub.group(), Some(group.as_str()));
        prop_assert_eq!(sub.filter().as_str(), f.as_str());
        prop_assert_eq!(sub.to_string(), whole);
    }

    /// `level_count` counts what `levels` yields, empty levels included.
    #[test]
    fn level_count_is_the_number_of_levels(t in topic(), lead in any::<bool>(), trail in any::<bool>()) {
        let t = format!("{}{t}{}", if lead { "/" } else { "" }, if trail { "/" } else { "" });
        let name = TopicName::new(&t).unwrap();
        prop_assert_eq!(name.level_count(), name.levels().count());
    }
}
