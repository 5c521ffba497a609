//! The subscription trie: which subscriptions match a topic.

use std::collections::HashMap;
use std::collections::hash_map;
use std::fmt;
use std::hash::Hash;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::children::{Children, SplitLevels, split_level};
use crate::{TopicFilter, TopicName};

/// Every subscription, indexed by topic filter, for matching topics fast.
///
/// An entry is a `(filter, key, value)`: the key says who subscribed (a
/// client id, a session index, a shared-subscription group...), the value
/// what with (QoS, options, a subscription identifier...). Each
/// `(filter, key)` pair is one entry, so a key may hold several overlapping
/// filters and a filter may have any number of keys.
///
/// [`match_topic`](Self::match_topic) visits every entry whose filter matches
/// a topic name. Its cost grows with the number of levels of the topic and the
/// number of entries it visits, not with the number of filters stored: it
/// follows at most one exact child, the `+` child and the `#` entries at each
/// level. Nodes keep few children in a short vector and many in a hash map.
/// Removing the last entry of a branch frees the branch.
///
/// Every operation walks the tree with a loop, never by recursion, so a filter
/// with 32,768 levels cannot overflow the stack.
///
/// Shared subscriptions (`$share/{group}/{filter}`) are stored under their
/// filter with a key that names the group: see the crate example.
///
/// ```
/// use mqtt_topic::{SubscriptionTrie, TopicFilter, TopicName};
///
/// let mut trie = SubscriptionTrie::new();
/// trie.insert(&TopicFilter::new("sport/+/player1")?, "alice", 1u8);
/// trie.insert(&TopicFilter::new("sport/#")?, "bob", 0u8);
///
/// let mut got = Vec::new();
/// trie.match_topic(&TopicName::new("sport/tennis/player1")?, |client, qos| {
///     got.push((*client, *qos))
/// });
/// got.sort();
/// assert_eq!(got, [("alice", 1), ("bob", 0)]);
/// # Ok::<(), mqtt_topic::TopicError>(())
/// ```
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

/// A node: one level of some filters.
struct Node<K, V> {
    /// Children by exact level.
    children: Children<Node<K, V>>,
    /// The child for `+`, apart so that matching reaches it without a lookup.
    wild: Option<Box<Node<K, V>>>,
    /// Entries of filters that end here, boxed because most nodes (the inner
    /// levels) have none: this keeps every node at 40 bytes (see the
    /// `node_size` test).
    subs: Option<Box<Subs<K, V>>>,
}

/// The entries of the filters that end at a node.
struct Subs<K, V> {
    /// Filters whose last level is this node's, e.g. `sport/tennis` at the
    /// node `tennis`.
    exact: Entries<K, V>,
    /// Filters with `/#` after this node's level, e.g. `sport/tennis/#` at
    /// the node `tennis` (and `#` at the root). `#` is always a filter's last
    /// level, so it needs no node of its own.
    multi: Entries<K, V>,
}

/// Which entries of a node a filter ends in.
#[derive(Clone, Copy)]
enum Slot {
    Exact,
    Multi,
}

/// The levels that lead to a filter's node, and its slot there.
fn path(filter: &[u8]) -> (SplitLevels<'_>, Slot) {
    if filter == b"#" {
        (SplitLevels(None), Slot::Multi)
    } else if let Some(prefix) = filter.strip_suffix(b"/#") {
        (SplitLevels(Some(prefix)), Slot::Multi)
    } else {
        (SplitLevels(Some(filter)), Slot::Exact)
    }
}

/// Above this many keys a filter's entries move from a vector to a hash map,
/// so that inserting and removing stay O(1) for a filter with 100,000
/// subscribers.
const MAX_LIST: usize = 16;

/// The `(key, value)` entries of one filter.
enum Entries<K, V> {
    /// The usual case, one subscriber, lives inline.
    List(SmallVec<[(K, V); 1]>),
    /// Many subscribers of one filter. Boxed to keep the enum small, as in
    /// `Children`.
    #[allow(clippy::box_collection)]
    Map(Box<HashMap<K, V>>),
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self::List(SmallVec::new())
    }
}

impl<K, V> Entries<K, V> {
    fn len(&self) -> usize {
        match self {
            Self::List(l) => l.len(),
            Self::Map(m) => m.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn for_each<'a>(&'a self, visit: &mut impl FnMut(&'a K, &'a V)) {
        match self {
            Self::List(l) => l.iter().for_each(|(k, v)| visit(k, v)),
            Self::Map(m) => m.iter().for_each(|(k, v)| visit(k, v)),
        }
    }

    fn iter(&self) -> EntriesIter<'_, K, V> {
        match self {
            Self::List(l) => EntriesIter::List(l.iter()),
            Self::Map(m) => EntriesIter::Map(m.iter()),
        }
    }
}

impl<K: Eq + Hash, V> Entries<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        match self {
            Self::List(l) => l.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Self::Map(m) => m.get(key),
        }
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            Self::List(l) => l.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            Self::Map(m) => m.get_mut(key),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::List(l) => {
                if let Some((_, old)) = l.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if l.len() < MAX_LIST {
                    l.push((key, value));
                } else {
                    let mut map: HashMap<K, V> = l.drain(..).collect();
                    map.insert(key, value);
                    *self = Self::Map(Box::new(map));
                }
                None
            }
            Self::Map(m) => m.insert(key, value),
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Self::List(l) => {
                let i = l.iter().position(|(k, _)| k == key)?;
                let (_, value) = l.swap_remove(i);
                if l.len() * 4 <= l.capacity() {
                    l.shrink_to_fit();
                }
                Some(value)
            }
            Self::Map(m) => {
                let value = m.remove(key)?;
                if m.len() <= MAX_LIST / 2 {
                    *self = Self::List(m.drain().collect());
                } else if m.len() * 4 < m.capacity() {
                    m.shrink_to_fit();
                }
                Some(value)
            }
        }
    }
}

enum EntriesIter<'a, K, V> {
    List(std::slice::Iter<'a, (K, V)>),
    Map(hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for EntriesIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::List(it) => it.next().map(|(k, v)| (k, v)),
            Self::Map(it) => it.next(),
        }
    }
}

impl<K, V> Subs<K, V> {
    fn slot(&self, slot: Slot) -> &Entries<K, V> {
        match slot {
            Slot::Exact => &self.exact,
            Slot::Multi => &self.multi,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Entries<K, V> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Multi => &mut self.multi,
        }
    }
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            children: Children::default(),
            wild: None,
            subs: None,
        }
    }

    /// The child for a filter level (`+` included).
    fn child(&self, level: &[u8]) -> Option<&Self> {
        if level == b"+" {
            self.wild.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &[u8]) -> Option<&mut Self> {
        if level == b"+" {
            self.wild.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &[u8]) -> &mut Self {
        if level == b"+" {
            self.wild.get_or_insert_with(|| Box::new(Self::new()))
        } else {
            self.children.get_or_insert_with(level, Self::new)
        }
    }

    fn take_child(&mut self, level: &[u8]) -> Option<Self> {
        if level == b"+" {
            self.wild.take().map(|node| *node)
        } else {
            self.children.remove(level)
        }
    }

    /// How many children (`+` included) the node has.
    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.wild.is_some())
    }

    /// Moves the node's children out into `out`.
    fn detach_children(&mut self, out: &mut Vec<Self>) {
        self.children.drain_into(out);
        if let Some(wild) = self.wild.take() {
            out.push(*wild);
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        // The default drop recurses once per level, and a valid filter may
        // have 32,768 levels: enough to overflow a thread's stack. Children
        // are moved to a worklist instead, so each node drops childless.
        if self.branches() == 0 {
            return;
        }
        let mut work = Vec::new();
        self.detach_children(&mut work);
        while let Some(mut node) = work.pop() {
            node.detach_children(&mut work);
        }
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of `(filter, key)` entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.root = Node::new();
        self.len = 0;
    }

    /// The number of nodes, the root included: 1 when the trie is empty,
    /// which is how the tests check that removal frees every branch.
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            node.children.for_each(|_, child| stack.push(child));
            if let Some(wild) = &node.wild {
                stack.push(wild);
            }
        }
        count
    }

    /// Every `(filter, key, value)` entry, in no particular order.
    ///
    /// Filters are rebuilt from the tree as the iterator goes, one allocation
    /// per distinct filter.
    pub fn iter(&self) -> SubscriptionIter<'_, K, V> {
        SubscriptionIter {
            stack: vec![Frame {
                node: &self.root,
                parent_len: 0,
                label: b"",
                depth: 0,
            }],
            path: Vec::new(),
            entries: None,
            multi: None,
            remaining: self.len,
        }
    }
}

impl<K: Eq + Hash, V> SubscriptionTrie<K, V> {
    /// Adds the entry `(filter, key)` with `value`; if it was there already,
    /// replaces its value and returns the old one.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let (levels, slot) = path(filter.as_bytes());
        let mut node = &mut self.root;
        for level in levels {
            node = node.child_or_insert(level);
        }
        let subs = node.subs.get_or_insert_with(|| {
            Box::new(Subs {
                exact: Entries::default(),
                multi: Entries::default(),
            })
        });
        let old = subs.slot_mut(slot).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The entries of `filter`, if any.
    fn entries(&self, filter: &TopicFilter) -> Option<&Entries<K, V>> {
        let (levels, slot) = path(filter.as_bytes());
        let mut node = &self.root;
        for level in levels {
            node = node.child(level)?;
        }
        Some(node.subs.as_deref()?.slot(slot))
    }

    /// The value of the entry `(filter, key)`.
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        self.entries(filter)?.get(key)
    }

    /// Whether the entry `(filter, key)` exists.
    pub fn contains(&self, filter: &TopicFilter, key: &K) -> bool {
        self.get(filter, key).is_some()
    }

    /// The value of the entry `(filter, key)`, to update it in place.
    pub fn get_mut(&mut self, filter: &TopicFilter, key: &K) -> Option<&mut V> {
        let (levels, slot) = path(filter.as_bytes());
        let mut node = &mut self.root;
        for level in levels {
            node = node.child_mut(level)?;
        }
        node.subs.as_deref_mut()?.slot_mut(slot).get_mut(key)
    }

    /// Removes the entry `(filter, key)` and returns its value. Nodes left
    /// without entries or children are freed.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let (levels, slot) = path(filter.as_bytes());
        let levels_again = SplitLevels(levels.0);

        // First pass, read-only: is the entry there, and which is the deepest
        // node on the path that must stay (because it holds something besides
        // the branch being removed)? Two passes because a loop cannot keep
        // mutable references to every node of the path.
        let mut keep = 0;
        let mut depth = 0;
        let mut node = &self.root;
        for level in levels {
            if node.subs.is_some() || node.branches() > 1 {
                keep = depth;
            }
            node = node.child(level)?;
            depth += 1;
        }
        let subs = node.subs.as_deref()?;
        subs.slot(slot).get(key)?;
        if node.branches() > 0 || subs.exact.len() + subs.multi.len() > 1 {
            keep = depth;
        }

        // Second pass: walk to the node that stays and cut below it.
        let mut levels = levels_again;
        let mut node = &mut self.root;
        for _ in 0..keep {
            node = node.child_mut(levels.next()?)?;
        }
        let removed = if keep == depth {
            remove_entry(node, slot, key)
        } else {
            let mut branch = node.take_child(levels.next()?)?;
            let mut node = &mut branch;
            for level in levels {
                node = node.child_mut(level)?;
            }
            remove_entry(node, slot, key)
            // `branch` drops here, freeing the nodes that led to the entry.
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` with the key and value of every entry whose filter
    /// matches `topic`, in no particular order.
    ///
    /// A topic that starts with `$` is not matched by filters whose first
    /// level is `+` or `#` [MQTT-4.7.2-1]; `sport/#` matches `sport`.
    ///
    /// Nothing is allocated per match; the walk keeps its pending branches in
    /// a stack of 32 slots on the call stack, which only a topic with more
    /// levels than that can spill to the heap.
    pub fn match_topic<'a, F>(&'a self, topic: &TopicName, mut visit: F)
    where
        F: FnMut(&'a K, &'a V),
    {
        let topic = topic.as_bytes().as_ref();
        let root = &self.root;
        let mut stack: SmallVec<[Pending<'a, '_, K, V>; 32]> = SmallVec::new();

        // The first level is done here because of [MQTT-4.7.2-1]: at the
        // root, `+` and `#` do not match a level that starts with `$`.
        let (first, rest) = split_level(topic);
        if topic.first() != Some(&b'$') {
            if let Some(subs) = &root.subs {
                subs.multi.for_each(&mut visit);
            }
            if let Some(wild) = &root.wild {
                stack.push((wild, rest));
            }
        }
        if let Some(child) = root.children.get(first) {
            stack.push((child, rest));
        }

        while let Some((node, rest)) = stack.pop() {
            match rest {
                None => {
                    if let Some(subs) = &node.subs {
                        subs.exact.for_each(&mut visit);
                        // `#` also matches the parent level: `sport/#`
                        // matches `sport`.
                        subs.multi.for_each(&mut visit);
                    }
                }
                Some(rest) => {
                    if let Some(subs) = &node.subs {
                        subs.multi.for_each(&mut visit);
                    }
                    let (level, rest) = split_level(rest);
                    if let Some(child) = node.children.get(level) {
                        stack.push((child, rest));
                    }
                    if let Some(wild) = &node.wild {
                        stack.push((wild, rest));
                    }
                }
            }
        }
    }
}

/// A pending branch of [`SubscriptionTrie::match_topic`]: a node, and the
/// topic levels it has yet to match (`None` once every level is matched).
type Pending<'n, 't, K, V> = (&'n Node<K, V>, Option<&'t [u8]>);

/// Removes `key` from `node`'s `slot`, dropping the node's entries box once
/// it is empty.
fn remove_entry<K: Eq + Hash, V>(node: &mut Node<K, V>, slot: Slot, key: &K) -> Option<V> {
    let subs = node.subs.as_deref_mut()?;
    let removed = subs.slot_mut(slot).remove(key);
    if subs.exact.is_empty() && subs.multi.is_empty() {
        node.subs = None;
    }
    removed
}

impl<K: Eq + Hash, V> Extend<(TopicFilter, K, V)> for SubscriptionTrie<K, V> {
    fn extend<I: IntoIterator<Item = (TopicFilter, K, V)>>(&mut self, entries: I) {
        for (filter, key, value) in entries {
            self.insert(&filter, key, value);
        }
    }
}

impl<K: Eq + Hash, V> FromIterator<(TopicFilter, K, V)> for SubscriptionTrie<K, V> {
    fn from_iter<I: IntoIterator<Item = (TopicFilter, K, V)>>(entries: I) -> Self {
        let mut trie = Self::new();
        trie.extend(entries);
        trie
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, K, V> IntoIterator for &'a SubscriptionTrie<K, V> {
    type Item = (TopicFilter, &'a K, &'a V);
    type IntoIter = SubscriptionIter<'a, K, V>;

    fn into_iter(self) -> SubscriptionIter<'a, K, V> {
        self.iter()
    }
}

/// The iterator of [`SubscriptionTrie::iter`].
pub struct SubscriptionIter<'a, K, V> {
    /// Nodes still to visit.
    stack: Vec<Frame<'a, K, V>>,
    /// The filter of the node being visited, rebuilt from the labels.
    path: Vec<u8>,
    /// Entries being yielded, with their filter.
    entries: Option<(TopicFilter, EntriesIter<'a, K, V>)>,
    /// The `#` entries of the node being visited, yielded after `entries`,
    /// and whether that node is the root (whose `#` filter is just `#`).
    multi: Option<(&'a Entries<K, V>, bool)>,
    remaining: usize,
}

struct Frame<'a, K, V> {
    node: &'a Node<K, V>,
    /// Length of the parent's filter in `path`.
    parent_len: usize,
    label: &'a [u8],
    depth: usize,
}

impl<'a, K, V> Iterator for SubscriptionIter<'a, K, V> {
    type Item = (TopicFilter, &'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((filter, entries)) = &mut self.entries {
                if let Some((key, value)) = entries.next() {
                    self.remaining -= 1;
                    return Some((filter.clone(), key, value));
                }
                self.entries = None;
            }
            if let Some((multi, at_root)) = self.multi.take() {
                let filter = if at_root {
                    Bytes::from_static(b"#")
                } else {
                    let mut filter = Vec::with_capacity(self.path.len() + 2);
                    filter.extend_from_slice(&self.path);
                    filter.extend_from_slice(b"/#");
                    Bytes::from(filter)
                };
                self.entries = Some((TopicFilter::from_checked(filter), multi.iter()));
                continue;
            }
            let frame = self.stack.pop()?;
            self.path.truncate(frame.parent_len);
            if frame.depth > 1 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(frame.label);
            let node = frame.node;
            let parent_len = self.path.len();
            let depth = frame.depth + 1;
            node.children.for_each(|label, child| {
                self.stack.push(Frame {
                    node: child,
                    parent_len,
                    label,
                    depth,
                });
            });
            if let Some(wild) = &node.wild {
                self.stack.push(Frame {
                    node: wild,
                    parent_len,
                    label: b"+",
                    depth,
                });
            }
            if let Some(subs) = &node.subs {
                if !subs.exact.is_empty() {
                    let filter = TopicFilter::from_checked(Bytes::copy_from_slice(&self.path));
                    self.entries = Some((filter, subs.exact.iter()));
                }
                if !subs.multi.is_empty() {
                    self.multi = Some((&subs.multi, frame.depth == 0));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for SubscriptionIter<'_, K, V> {}

impl<K, V> std::iter::FusedIterator for SubscriptionIter<'_, K, V> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory figures in the README assume these sizes.
    #[test]
    fn node_size() {
        assert_eq!(std::mem::size_of::<Node<u64, u8>>(), 40);
        assert_eq!(
            std::mem::size_of::<(crate::children::Label, Node<u64, u8>)>(),
            64
        );
        assert_eq!(std::mem::size_of::<Entries<u64, u8>>(), 32);
    }
}
