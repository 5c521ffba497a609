//! Retained messages (MQTT 5.0 §3.3.1.3).

use std::sync::Arc;
use std::time::Instant;

use mqtt_session::Message;
use mqtt_topic::{RetainedIndex, TopicFilter, TopicName};

/// The last retained message of every topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    index: RetainedIndex<Arc<Message>>,
    bytes: usize,
    /// Topics of the server's own (`$SYS/...`), which the limit of
    /// [`RetainedStore::retain`] does not count.
    system: usize,
}

/// Whether `topic` is one of the server's own (`$SYS/...`).
fn is_system(topic: &TopicName) -> bool {
    topic.as_str().starts_with("$SYS/")
}

impl RetainedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no message is retained.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of topic and payload held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores a retained message, replacing the topic's previous one; an
    /// empty payload removes it instead [MQTT-3.3.1-6] [MQTT-3.3.1-7].
    /// Returns the message that was replaced or removed.
    pub fn set(&mut self, topic: TopicName, message: Arc<Message>) -> Option<Arc<Message>> {
        let system = is_system(&topic);
        let added = !message.payload.is_empty();
        let old = if added {
            self.bytes += message.size();
            self.index.insert(topic, message)
        } else {
            self.index.remove(&topic)
        };
        if let Some(old) = &old {
            self.bytes -= old.size();
        }
        if system {
            match (old.is_some(), added) {
                (false, true) => self.system += 1,
                (true, false) => self.system -= 1,
                _ => {}
            }
        }
        old
    }

    /// Keeps a PUBLISH with RETAIN set as its topic's retained message
    /// [MQTT-3.3.1-5], or removes the topic's one if the payload is empty
    /// [MQTT-3.3.1-6], within a limit of `max` topics: a message for a new
    /// topic beyond it is not kept (it is still delivered). The server's
    /// own `$SYS/` topics neither count nor are refused. Returns whether
    /// the store changed.
    pub fn retain(&mut self, topic: &TopicName, message: &Arc<Message>, max: usize) -> bool {
        let fits = message.payload.is_empty()
            || is_system(topic)
            || self.len() - self.system < max
            || self.get(topic).is_some();
        if fits {
            self.set(topic.clone(), message.clone());
        }
        fits
    }

    /// The retained message of `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&Arc<Message>> {
        self.index.get(topic)
    }

    /// Calls `visit` with every unexpired retained message whose topic
    /// matches `filter` (what a new subscription receives, [MQTT-3.3.1-9]).
    pub fn matching(
        &self,
        filter: &TopicFilter,
        now: Instant,
        mut visit: impl FnMut(&Arc<Message>),
    ) {
        self.index.match_filter(filter, |_, m| {
            if !m.is_expired(now) {
                visit(m);
            }
        });
    }

    /// Removes expired messages; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let expired: Vec<TopicName> = self
            .index
            .iter()
            .filter(|(_, m)| m.is_expired(now))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &expired {
            if let Some(old) = self.index.remove(t) {
                self.bytes -= old.size();
                self.system -= usize::from(is_system(t));
            }
        }
        expired.len()
    }

    /// Every retained message.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicName, &Arc<Message>)> + '_ {
        self.index.iter()
    }
}
