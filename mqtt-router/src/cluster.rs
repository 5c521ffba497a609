//! The seam between one broker and the other nodes of a cluster, sans-IO.
//!
//! A broker that is one node of several calls a [`Backplane`] at two
//! moments: when the set of topic filters its sessions subscribe to
//! changes (the [`Router`](crate::Router) calls
//! [`Backplane::interest_changed`] itself, from
//! [`Router::set_backplane`](crate::Router::set_backplane) on), and when a
//! message published on this node may be wanted elsewhere
//! ([`Backplane::forward`], called by the server's publish path). What the
//! backplane is (NATS, something else) is the server's business: this
//! crate names neither a network nor a runtime, so the rules stay testable
//! without either.
//!
//! [`RemoteInterest`] is what a backplane keeps of the other nodes: each
//! node's announced filters in one trie, so that a message goes once to
//! each node with a matching subscriber and to no other.

use std::collections::BTreeMap;
use std::sync::Arc;

use mqtt_codec::ReasonCode;
use mqtt_session::Message;
use mqtt_topic::{SubscriptionTrie, TopicFilter, TopicName};
use smallvec::SmallVec;

/// A node's name in the cluster.
pub type NodeName = Arc<str>;

/// Called once a forwarded message is stored by the backplane (or could
/// not be): the publisher's acknowledgement waits for it.
pub type ForwardDone = Box<dyn FnOnce(Result<(), ForwardError>) + Send>;

/// What [`Backplane::forward`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// No other node has a matching subscriber: nothing was sent, and
    /// `done` was dropped uncalled.
    Local,
    /// Sent without an acknowledgement to wait for (QoS 0, or no `done`
    /// given); `done` was dropped uncalled.
    Sent,
    /// On its way; `done` will be called exactly once.
    Pending,
}

/// Why a message could not be forwarded: the publisher's acknowledgement
/// refuses it ([`ForwardError::reason_code`]), since nothing acknowledged
/// may be lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The backplane is not reachable, or did not confirm that it stored
    /// the message.
    #[error("the cluster backplane is unavailable: {0}")]
    Unavailable(String),
    /// The queue of messages waiting for the backplane is full.
    #[error("the queue of messages waiting for the cluster backplane is full ({0} messages)")]
    Full(usize),
}

impl ForwardError {
    /// The reason code of the PUBACK/PUBREC refusing the message (MQTT
    /// 5.0): 0x97 Quota exceeded for a full queue, 0x80 Unspecified error
    /// otherwise. An MQTT 3.1.1 client cannot be refused: its connection
    /// is closed instead, so that it sends the message again.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Full(_) => ReasonCode::QuotaExceeded,
            Self::Unavailable(_) => ReasonCode::UnspecifiedError,
        }
    }
}

/// The other nodes of a cluster, as one broker calls them.
///
/// Both methods are called with the broker's locks held (the router's
/// write lock for [`Backplane::interest_changed`]): they must not block,
/// only record or queue (and bound what they queue).
pub trait Backplane: Send + Sync {
    /// `filter` gained its first subscription on this node (`present`),
    /// or lost its last one. A shared subscription counts as its filter.
    fn interest_changed(&self, filter: &TopicFilter, present: bool);

    /// A message published on this node, to be sent once to each other
    /// node with a matching subscriber. `done`, when given, is called once
    /// the message is stored by the backplane (a QoS 1/2 publication's
    /// acknowledgement waits for it), unless the result says it will not
    /// be ([`Forward`]).
    fn forward(
        &self,
        topic: &TopicName,
        message: &Arc<Message>,
        done: Option<ForwardDone>,
    ) -> Forward;
}

/// What one node announced.
#[derive(Debug, Default)]
struct Announced {
    filters: Vec<TopicFilter>,
    /// The node wants every topic (its set was too large to announce).
    everything: bool,
}

/// The topic filters the other nodes announced, indexed: which nodes a
/// topic goes to.
#[derive(Debug, Default)]
pub struct RemoteInterest {
    trie: SubscriptionTrie<NodeName, ()>,
    nodes: BTreeMap<NodeName, Announced>,
}

impl RemoteInterest {
    /// Nobody announced anything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what `node` announced: its filters, or every topic.
    pub fn replace(&mut self, node: &str, filters: Vec<TopicFilter>, everything: bool) {
        self.remove(node);
        let name: NodeName = Arc::from(node);
        for f in &filters {
            self.trie.insert(f, name.clone(), ());
        }
        self.nodes.insert(
            name,
            Announced {
                filters,
                everything,
            },
        );
    }

    /// Forgets `node` (it withdrew, or is gone).
    pub fn remove(&mut self, node: &str) {
        if let Some((name, old)) = self.nodes.remove_entry(node) {
            for f in &old.filters {
                self.trie.remove(f, &name);
            }
        }
    }

    /// The nodes with a filter matching `topic`, each once, in name order.
    pub fn nodes_for(&self, topic: &TopicName) -> SmallVec<[NodeName; 4]> {
        let mut out: SmallVec<[NodeName; 4]> = self
            .nodes
            .iter()
            .filter(|(_, a)| a.everything)
            .map(|(n, _)| n.clone())
            .collect();
        self.trie
            .match_topic(topic, |node, ()| out.push(node.clone()));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The nodes that announced anything (even an empty set).
    pub fn nodes(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes.keys().map(|n| &**n)
    }

    /// How many filters the other nodes announced, in all.
    pub fn len(&self) -> usize {
        self.nodes.values().map(|a| a.filters.len()).sum()
    }

    /// Whether no node announced a filter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && !self.nodes.values().any(|a| a.everything)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn names(v: SmallVec<[NodeName; 4]>) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    /// A topic goes once to each node with a matching filter, however
    /// many of its filters match, and to no other.
    #[test]
    fn a_topic_goes_once_to_each_node_with_a_matching_filter() {
        let mut r = RemoteInterest::new();
        r.replace("b", vec![f("a/+"), f("a/#"), f("x")], false);
        r.replace("c", vec![f("a/1")], false);
        r.replace("d", vec![f("z/#")], false);
        assert_eq!(names(r.nodes_for(&t("a/1"))), ["b", "c"]);
        assert_eq!(names(r.nodes_for(&t("x"))), ["b"]);
        assert!(r.nodes_for(&t("q")).is_empty());
    }

    /// A new announcement replaces the old one; a node removed gets
    /// nothing; a node wanting everything gets every topic.
    #[test]
    fn announcements_replace_and_removal_forgets() {
        let mut r = RemoteInterest::new();
        r.replace("b", vec![f("a")], false);
        r.replace("b", vec![f("c")], false);
        assert!(r.nodes_for(&t("a")).is_empty());
        assert_eq!(names(r.nodes_for(&t("c"))), ["b"]);
        r.remove("b");
        assert!(r.nodes_for(&t("c")).is_empty());
        assert!(r.is_empty());
        r.replace("e", Vec::new(), true);
        assert_eq!(names(r.nodes_for(&t("any/thing"))), ["e"]);
        assert_eq!(r.nodes().collect::<Vec<_>>(), ["e"]);
    }
}
