//! MQTT topic names, topic filters, shared subscriptions, and the two indexes
//! a broker matches them with.
//!
//! - [`TopicName`] and [`TopicFilter`]: strings checked against the rules of
//!   MQTT 3.1.1 and 5.0 (§4.7), cheap to clone (they wrap [`bytes::Bytes`]).
//!   Invalid input is a [`TopicError`] that says where the problem is and
//!   which normative statement it breaks.
//! - [`Subscription`]: a SUBSCRIBE filter read by MQTT 5.0 rules, either
//!   plain or a shared subscription `$share/{group}/{filter}` ([`SharedFilter`]).
//! - [`SubscriptionTrie`]: every `(filter, key, value)` subscription, and the
//!   entries that match a topic, in time that grows with the topic's levels and
//!   the number of matches, not with the number of filters.
//! - [`RetainedIndex`]: values stored by topic name, and the topics that
//!   match a filter: the retained messages a new subscription receives.
//! - [`matches()`]: one filter against one topic, level by level: the
//!   reference the indexes are tested against.
//! - With the `proptest` feature, `mqtt_topic::testing`: proptest strategies
//!   for topic names, filters, shared subscriptions and trie operations, next
//!   to the reference matcher and a naive model of the trie, to property-test
//!   code that uses the trie.
//!
//! The crate has no `unsafe` code, no async runtime and no I/O.
//!
//! # Example
//!
//! A broker keeps one trie of subscriptions. Keys say who subscribed; shared
//! subscriptions are stored under their filter with a key naming the group,
//! and the broker picks one member of the group per message.
//!
//! ```
//! use mqtt_topic::{RetainedIndex, Subscription, SubscriptionTrie, TopicName};
//!
//! #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
//! enum Subscriber {
//!     Client(String),
//!     Group(String),
//! }
//!
//! let mut trie: SubscriptionTrie<Subscriber, u8> = SubscriptionTrie::new();
//! for (client, filter, qos) in [
//!     ("alice", "sport/tennis/player1/#", 1),
//!     ("bob", "sport/+/player1", 0),
//!     ("bob", "sport/#", 2), // overlaps bob's other filter: both match
//!     ("carol", "$share/scorers/sport/tennis/+", 1),
//!     ("dave", "#", 0),
//! ] {
//!     let key = match Subscription::new(filter)? {
//!         Subscription::Plain(f) => (f, Subscriber::Client(client.into())),
//!         Subscription::Shared(s) => (s.filter().clone(), Subscriber::Group(s.group().into())),
//!     };
//!     trie.insert(&key.0, key.1, qos);
//! }
//! assert_eq!(trie.len(), 5);
//!
//! let mut matched = Vec::new();
//! trie.match_topic(&TopicName::new("sport/tennis/player1")?, |who, qos| {
//!     matched.push((who.clone(), *qos))
//! });
//! matched.sort();
//! assert_eq!(matched, [
//!     (Subscriber::Client("alice".into()), 1), // `#` matches the parent level
//!     (Subscriber::Client("bob".into()), 0),
//!     (Subscriber::Client("bob".into()), 2),
//!     (Subscriber::Client("dave".into()), 0),
//!     (Subscriber::Group("scorers".into()), 1),
//! ]);
//!
//! // `$` topics are not matched by filters that start with a wildcard.
//! let mut count = 0;
//! trie.match_topic(&TopicName::new("$SYS/broker/uptime")?, |_, _| count += 1);
//! assert_eq!(count, 0);
//!
//! // Unsubscribing frees the branch.
//! let filter = "sport/tennis/player1/#".parse()?;
//! assert_eq!(trie.remove(&filter, &Subscriber::Client("alice".into())), Some(1));
//!
//! // Retained messages, looked up when a client subscribes.
//! let mut retained = RetainedIndex::new();
//! retained.insert(TopicName::new("sport/tennis/player1/score")?, "15-30");
//! retained.insert(TopicName::new("sport/golf/leader")?, "Rory");
//! let mut sent = Vec::new();
//! retained.match_filter(&"sport/tennis/#".parse()?, |topic, payload| {
//!     sent.push(format!("{topic}: {payload}"))
//! });
//! assert_eq!(sent, ["sport/tennis/player1/score: 15-30"]);
//! # Ok::<(), mqtt_topic::TopicError>(())
//! ```
#![forbid(unsafe_code)]

#[macro_use]
mod string_impls;
mod children;
mod error;
mod filter;
mod matching;
mod name;
mod retained;
mod shared;
#[cfg(feature = "proptest")]
pub mod testing;
mod trie;
mod validate;

pub use error::TopicError;
pub use filter::TopicFilter;
pub use matching::matches;
pub use name::{Levels, TopicName};
pub use retained::{RetainedIndex, RetainedIter};
pub use shared::{SHARE_PREFIX, SharedFilter, Subscription};
pub use trie::{SubscriptionIter, SubscriptionTrie};

/// Runs the examples of the README as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The longest topic name or filter, in bytes [MQTT-4.7.3-3]: a UTF-8 string
/// in MQTT has a two-byte length.
pub const MAX_TOPIC_LEN: usize = 65_535;
