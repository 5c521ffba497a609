//! The retained-message index: which stored topics a new subscription matches.

use std::fmt;

use smallvec::SmallVec;

use crate::children::{Children, SplitLevels, split_level};
use crate::{TopicFilter, TopicName};

/// Values stored by topic name, such as retained messages, that can be looked
/// up with a topic filter.
///
/// When a client subscribes, the broker sends it the retained messages whose
/// topics match the new filter: [`match_filter`](Self::match_filter) walks
/// the topic tree along the filter (an exact level follows one child, `+`
/// every child, `#` the whole subtree), so its cost grows with the number of
/// topics it visits, not with the number stored. As for subscriptions, a
/// filter that starts with a wildcard does not match topics that start with
/// `$` [MQTT-4.7.2-1].
///
/// ```
/// use mqtt_topic::{RetainedIndex, TopicFilter, TopicName};
///
/// let mut retained = RetainedIndex::new();
/// retained.insert(TopicName::new("sport/tennis/score")?, "6-4");
/// retained.insert(TopicName::new("sport/golf/score")?, "-3");
/// retained.insert(TopicName::new("$SYS/uptime")?, "42");
///
/// let mut got = Vec::new();
/// retained.match_filter(&TopicFilter::new("sport/+/score")?, |topic, v| {
///     got.push((topic.to_string(), *v))
/// });
/// got.sort();
/// assert_eq!(got, [("sport/golf/score".to_string(), "-3"), ("sport/tennis/score".to_string(), "6-4")]);
///
/// let mut all = 0;
/// retained.match_filter(&TopicFilter::new("#")?, |_, _| all += 1);
/// assert_eq!(all, 2); // `#` does not reach $SYS
/// # Ok::<(), mqtt_topic::TopicError>(())
/// ```
pub struct RetainedIndex<V> {
    root: Node<V>,
    len: usize,
}

/// A node: one level of some topic names.
struct Node<V> {
    children: Children<Node<V>>,
    /// The name is kept so that a match can hand it out without rebuilding
    /// it from the levels.
    value: Option<(TopicName, V)>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Self {
            children: Children::default(),
            value: None,
        }
    }
}

impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        // As in the subscription trie: no recursion on deep trees.
        if self.children.is_empty() {
            return;
        }
        let mut work = Vec::new();
        self.children.drain_into(&mut work);
        while let Some(mut node) = work.pop() {
            node.children.drain_into(&mut work);
        }
    }
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of topics stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no topic is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every topic.
    pub fn clear(&mut self) {
        self.root = Node::new();
        self.len = 0;
    }

    /// Stores `value` under `topic` and returns the value it replaces.
    ///
    /// The index keeps `topic` itself: if it is a slice of a larger buffer,
    /// that buffer stays alive as long as the entry (copy it first with
    /// `TopicName::new(topic.as_str())` if that matters).
    pub fn insert(&mut self, topic: TopicName, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in SplitLevels(Some(topic.as_bytes())) {
            node = node.children.get_or_insert_with(level, Node::new);
        }
        let old = node.value.replace((topic, value)).map(|(_, v)| v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn node(&self, topic: &TopicName) -> Option<&Node<V>> {
        let mut node = &self.root;
        for level in SplitLevels(Some(topic.as_bytes())) {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// The value stored under `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        self.node(topic)?.value.as_ref().map(|(_, v)| v)
    }

    /// The value stored under `topic`, to update it in place.
    pub fn get_mut(&mut self, topic: &TopicName) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in SplitLevels(Some(topic.as_bytes())) {
            node = node.children.get_mut(level)?;
        }
        node.value.as_mut().map(|(_, v)| v)
    }

    /// Whether a value is stored under `topic`.
    pub fn contains(&self, topic: &TopicName) -> bool {
        self.get(topic).is_some()
    }

    /// Removes the value stored under `topic` and returns it. Nodes left
    /// without value or children are freed.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        // Two passes, as in `SubscriptionTrie::remove`: find the deepest
        // node on the path that must stay, then cut below it.
        let mut keep = 0;
        let mut depth = 0;
        let mut node = &self.root;
        for level in SplitLevels(Some(topic.as_bytes())) {
            if node.value.is_some() || node.children.len() > 1 {
                keep = depth;
            }
            node = node.children.get(level)?;
            depth += 1;
        }
        node.value.as_ref()?;
        if !node.children.is_empty() {
            keep = depth;
        }

        let mut levels = SplitLevels(Some(topic.as_bytes()));
        let mut node = &mut self.root;
        for _ in 0..keep {
            node = node.children.get_mut(levels.next()?)?;
        }
        let removed = if keep == depth {
            node.value.take()
        } else {
            let mut branch = node.children.remove(levels.next()?)?;
            let mut node = &mut branch;
            for level in levels {
                node = node.children.get_mut(level)?;
            }
            node.value.take()
        };
        let removed = removed.map(|(_, v)| v);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` with every stored topic that `filter` matches, and its
    /// value, in no particular order.
    ///
    /// A filter whose first level is `+` or `#` does not match topics that
    /// start with `$` [MQTT-4.7.2-1]; `sport/#` matches `sport`.
    ///
    /// Pending branches are kept in a stack of 32 slots on the call stack; a
    /// `+` or `#` over a level with more children than that spills it to the
    /// heap, once per call.
    pub fn match_filter<F>(&self, filter: &TopicFilter, mut visit: F)
    where
        F: FnMut(&TopicName, &V),
    {
        let mut stack: SmallVec<[Frame<'_, V>; 32]> = SmallVec::new();
        let (first, rest) = split_level(filter.as_bytes());
        match first {
            // At the root, wildcards skip `$` topics [MQTT-4.7.2-1]. The
            // root has no level of its own for `#` to match.
            b"#" | b"+" => self.root.children.for_each(|label, child| {
                if label.first() != Some(&b'$') {
                    stack.push(if first == b"#" {
                        Frame::All(child)
                    } else {
                        Frame::Follow(child, rest)
                    });
                }
            }),
            level => {
                if let Some(child) = self.root.children.get(level) {
                    stack.push(Frame::Follow(child, rest));
                }
            }
        }

        while let Some(frame) = stack.pop() {
            match frame {
                Frame::All(node) => {
                    if let Some((topic, value)) = &node.value {
                        visit(topic, value);
                    }
                    node.children
                        .for_each(|_, child| stack.push(Frame::All(child)));
                }
                Frame::Follow(node, None) => {
                    if let Some((topic, value)) = &node.value {
                        visit(topic, value);
                    }
                }
                Frame::Follow(node, Some(rest)) => {
                    let (level, rest) = split_level(rest);
                    match level {
                        b"#" => {
                            // `#` also matches the parent level.
                            if let Some((topic, value)) = &node.value {
                                visit(topic, value);
                            }
                            node.children
                                .for_each(|_, child| stack.push(Frame::All(child)));
                        }
                        b"+" => node
                            .children
                            .for_each(|_, child| stack.push(Frame::Follow(child, rest))),
                        level => {
                            if let Some(child) = node.children.get(level) {
                                stack.push(Frame::Follow(child, rest));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every stored topic and its value, in no particular order.
    pub fn iter(&self) -> RetainedIter<'_, V> {
        RetainedIter {
            stack: vec![&self.root],
            remaining: self.len,
        }
    }

    /// The number of nodes, the root included: 1 when the index is empty.
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            node.children.for_each(|_, child| stack.push(child));
        }
        count
    }
}

/// A pending branch of [`RetainedIndex::match_filter`].
enum Frame<'a, V> {
    /// A node, and the filter levels it has yet to match (`None` once all
    /// are matched).
    Follow(&'a Node<V>, Option<&'a [u8]>),
    /// A node under a `#`: it and its whole subtree match.
    All(&'a Node<V>),
}

impl<V> Extend<(TopicName, V)> for RetainedIndex<V> {
    fn extend<I: IntoIterator<Item = (TopicName, V)>>(&mut self, entries: I) {
        for (topic, value) in entries {
            self.insert(topic, value);
        }
    }
}

impl<V> FromIterator<(TopicName, V)> for RetainedIndex<V> {
    fn from_iter<I: IntoIterator<Item = (TopicName, V)>>(entries: I) -> Self {
        let mut index = Self::new();
        index.extend(entries);
        index
    }
}

impl<V: fmt::Debug> fmt::Debug for RetainedIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, V> IntoIterator for &'a RetainedIndex<V> {
    type Item = (&'a TopicName, &'a V);
    type IntoIter = RetainedIter<'a, V>;

    fn into_iter(self) -> RetainedIter<'a, V> {
        self.iter()
    }
}

/// The iterator of [`RetainedIndex::iter`].
pub struct RetainedIter<'a, V> {
    stack: Vec<&'a Node<V>>,
    remaining: usize,
}

impl<'a, V> Iterator for RetainedIter<'a, V> {
    type Item = (&'a TopicName, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(node) = self.stack.pop() {
            node.children.for_each(|_, child| self.stack.push(child));
            if let Some((topic, value)) = &node.value {
                self.remaining -= 1;
                return Some((topic, value));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> ExactSizeIterator for RetainedIter<'_, V> {}

impl<V> std::iter::FusedIterator for RetainedIter<'_, V> {}
