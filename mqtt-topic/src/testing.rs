//! [`proptest`](mod@proptest) strategies for topic names, filters, shared
//! subscriptions and trie operations, and naive references to check the
//! indexes against (the `proptest` feature).
//!
//! - Strategies: [`name_level`], [`topic_name_string`], [`topic_name`],
//!   [`topic_filter_string`], [`topic_filter`], [`share_name`],
//!   [`shared_subscription_string`], [`subscription`], and [`ops`]: sequences
//!   of [`Op`] (insert, remove, match) for a [`SubscriptionTrie`].
//! - References: [`matches()`] (one filter against one topic),
//!   [`valid_topic_filter`] and [`valid_topic_name`] (the rules of §4.7),
//!   and [`NaiveIndex`], a map that answers what a [`SubscriptionTrie`]
//!   answers by trying every filter in turn.
//!
//! Levels come from a small alphabet (`a`, `b`, the empty level and `$s`) so
//! that random filters and topics often match, `$` topics included.
//!
//! Your own tests need `proptest = "1"` among their dev-dependencies: the
//! macros and the [`Strategy`] trait come from it.
//!
//! # Example
//!
//! A program that keeps subscriptions in a [`SubscriptionTrie`] can check
//! that every sequence of operations gives what the naive model gives:
//!
//! ```
//! use mqtt_topic::SubscriptionTrie;
//! use mqtt_topic::testing::{NaiveIndex, Op, ops, trie_matches};
//! use proptest::prelude::*;
//!
//! proptest! {
//!     // In a test file, put `#[test]` here and leave out the call below.
//!     fn trie_agrees_with_naive_index(ops in ops(0..4u8, any::<u16>(), 0..40)) {
//!         let mut trie = SubscriptionTrie::new();
//!         let mut model = NaiveIndex::new();
//!         for op in ops {
//!             match op {
//!                 Op::Insert(filter, key, value) => prop_assert_eq!(
//!                     trie.insert(&filter, key, value),
//!                     model.insert(&filter, key, value)
//!                 ),
//!                 Op::Remove(filter, key) => {
//!                     prop_assert_eq!(trie.remove(&filter, &key), model.remove(&filter, &key))
//!                 }
//!                 Op::Match(topic) => {
//!                     prop_assert_eq!(trie_matches(&trie, &topic), model.matches(&topic))
//!                 }
//!             }
//!             prop_assert_eq!(trie.len(), model.len());
//!         }
//!     }
//! }
//!
//! trie_agrees_with_naive_index();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;

use proptest::collection::{SizeRange, vec};
use proptest::prelude::*;
use proptest::sample::select;

/// The reference matcher, the one the crate's own indexes are tested against.
pub use crate::matches;
use crate::{MAX_TOPIC_LEN, SHARE_PREFIX, Subscription, SubscriptionTrie, TopicFilter, TopicName};

/// One level of a topic name: `a`, `b`, the empty level or `$s`.
pub fn name_level() -> impl Strategy<Value = &'static str> + Clone {
    select(vec!["a", "b", "", "$s"])
}

/// A valid topic name of 1 to 4 levels, such as `a//$s` or `$s/b`.
pub fn topic_name_string() -> impl Strategy<Value = String> + Clone {
    vec(name_level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        // A single empty level is the empty string, which is not a name.
        .prop_filter("at least one character", |t| !t.is_empty())
}

/// A [`TopicName`] made from [`topic_name_string`].
pub fn topic_name() -> impl Strategy<Value = TopicName> + Clone {
    topic_name_string().prop_map(|t| TopicName::new(&t).expect("a generated name is valid"))
}

/// A valid topic filter of up to 4 levels of names and `+`, often ending with
/// `#`, such as `a/+/#`, `+//b` or `#`.
pub fn topic_filter_string() -> impl Strategy<Value = String> + Clone {
    let level = prop_oneof![3 => name_level(), 1 => Just("+")];
    (vec(level, 0..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("at least one character", |f| !f.is_empty())
}

/// A [`TopicFilter`] made from [`topic_filter_string`].
pub fn topic_filter() -> impl Strategy<Value = TopicFilter> + Clone {
    topic_filter_string().prop_map(|f| TopicFilter::new(&f).expect("a generated filter is valid"))
}

/// A valid share name (group) of a shared subscription: 1 to 5 of `a`-`z`
/// and `$`.
pub fn share_name() -> impl Strategy<Value = String> + Clone {
    "[a-z$]{1,5}"
}

/// A valid shared subscription `$share/{group}/{filter}`, with a
/// [`share_name`] and a [`topic_filter_string`].
pub fn shared_subscription_string() -> impl Strategy<Value = String> + Clone {
    (share_name(), topic_filter_string())
        .prop_map(|(group, filter)| format!("{SHARE_PREFIX}{group}/{filter}"))
}

/// A [`Subscription`], plain or (one time in three) shared.
pub fn subscription() -> impl Strategy<Value = Subscription> + Clone {
    prop_oneof![2 => topic_filter_string(), 1 => shared_subscription_string()]
        .prop_map(|s| Subscription::new(&s).expect("a generated subscription is valid"))
}

/// One operation on a [`SubscriptionTrie`] with keys `K` and values `V`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<K, V> {
    /// [`SubscriptionTrie::insert`] of a filter, a key and a value.
    Insert(TopicFilter, K, V),
    /// [`SubscriptionTrie::remove`] of a filter and a key.
    Remove(TopicFilter, K),
    /// [`SubscriptionTrie::match_topic`] with a topic name.
    Match(TopicName),
}

/// Sequences of [`Op`]s, as many as `len` says (a number or a range), with
/// keys from `keys` and values from `values`.
///
/// The filters of a sequence come from a pool of 1 to 11 [`topic_filter`]s and
/// the topics from a pool of 1 to 11 [`topic_name`]s, so that removals often
/// find what an insertion added and updates happen. Keys from a small range,
/// such as `0..4u8`, make a filter shared by several keys.
pub fn ops<K, V>(
    keys: impl Strategy<Value = K> + Clone + 'static,
    values: impl Strategy<Value = V> + Clone + 'static,
    len: impl Into<SizeRange>,
) -> impl Strategy<Value = Vec<Op<K, V>>>
where
    K: fmt::Debug + Clone + 'static,
    V: fmt::Debug + Clone + 'static,
{
    let len = len.into();
    (vec(topic_filter(), 1..12), vec(topic_name(), 1..12)).prop_flat_map(
        move |(filters, topics)| {
            let op = prop_oneof![
                3 => (select(filters.clone()), keys.clone(), values.clone())
                    .prop_map(|(f, k, v)| Op::Insert(f, k, v)),
                2 => (select(filters), keys.clone()).prop_map(|(f, k)| Op::Remove(f, k)),
                1 => select(topics).prop_map(Op::Match),
            ];
            vec(op, len.clone())
        },
    )
}

/// Whether `s` is a valid topic filter, by the rules of MQTT 4.7 written level
/// by level: 1 to 65,535 bytes [MQTT-4.7.3-1] [MQTT-4.7.3-3], no U+0000
/// [MQTT-4.7.3-2], `+` only as a whole level [MQTT-4.7.1-3], `#` only as the
/// whole last level [MQTT-4.7.1-2].
///
/// [`TopicFilter::new`] accepts exactly these strings.
pub fn valid_topic_filter(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    !s.is_empty()
        && s.len() <= MAX_TOPIC_LEN
        && !s.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            (!l.contains('+') || *l == "+")
                && (!l.contains('#') || (*l == "#" && i == levels.len() - 1))
        })
}

/// Whether `s` is a valid topic name: a [valid filter](valid_topic_filter)
/// without wildcards [MQTT-3.3.2-2].
///
/// [`TopicName::new`] accepts exactly these strings.
pub fn valid_topic_name(s: &str) -> bool {
    valid_topic_filter(s) && !s.contains(['+', '#'])
}

/// What a [`SubscriptionTrie`] should hold and answer, kept in a sorted map
/// and matched by trying every filter with [`matches()`].
///
/// Its methods mirror those of the trie, so a test can apply each operation to
/// both and compare the results.
#[derive(Clone, PartialEq, Eq)]
pub struct NaiveIndex<K, V> {
    /// Filter, then key.
    entries: BTreeMap<String, BTreeMap<K, V>>,
}

impl<K, V> Default for NaiveIndex<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> NaiveIndex<K, V> {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }

    /// The number of `(filter, key)` entries.
    pub fn len(&self) -> usize {
        self.entries.values().map(BTreeMap::len).sum()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(filter, key, value)`, sorted by filter, then key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &K, &V)> {
        self.entries
            .iter()
            .flat_map(|(f, keys)| keys.iter().map(move |(k, v)| (f.as_str(), k, v)))
    }
}

impl<K: Ord, V> NaiveIndex<K, V> {
    /// Like [`SubscriptionTrie::insert`]: the previous value of
    /// `(filter, key)`, if any.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        self.entries
            .entry(filter.as_str().to_owned())
            .or_default()
            .insert(key, value)
    }

    /// Like [`SubscriptionTrie::get`].
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        self.entries.get(filter.as_str())?.get(key)
    }

    /// Like [`SubscriptionTrie::remove`].
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let keys = self.entries.get_mut(filter.as_str())?;
        let value = keys.remove(key);
        // An empty filter would otherwise count in `is_empty`.
        if keys.is_empty() {
            self.entries.remove(filter.as_str());
        }
        value
    }

    /// The `(key, value)` of every entry whose filter matches `topic`, sorted:
    /// what [`trie_matches`] gives for a trie with the same entries.
    pub fn matches(&self, topic: &TopicName) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone + Ord,
    {
        let mut found: Vec<(K, V)> = self
            .entries
            .iter()
            .filter(|(f, _)| matches(f, topic.as_str()))
            .flat_map(|(_, keys)| keys.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        found.sort();
        found
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for NaiveIndex<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The `(key, value)` of every entry of `trie` that matches `topic`, sorted,
/// to compare with [`NaiveIndex::matches`] (the trie visits in no set order).
pub fn trie_matches<K, V>(trie: &SubscriptionTrie<K, V>, topic: &TopicName) -> Vec<(K, V)>
where
    K: Eq + Hash + Ord + Clone,
    V: Ord + Clone,
{
    let mut found = Vec::new();
    trie.match_topic(topic, |k, v| found.push((k.clone(), v.clone())));
    found.sort();
    found
}
