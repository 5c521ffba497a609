//! What happens later, without a connection: delayed wills and the end of
//! offline sessions. Time is passed in; a server sleeps until
//! [`Timers::poll_timeout`] and then takes what fell due with
//! [`Timers::poll_due`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use mqtt_codec::{MqttString, QoS, Will, WillProperties};
//! use mqtt_router::{Due, Timers};
//!
//! let mut timers: Timers<u32> = Timers::new();
//! let now = Instant::now();
//! let id = MqttString::from_static("sensor-7");
//! let will = Will {
//!     topic: MqttString::from_static("status/sensor-7"),
//!     payload: Bytes::from_static(b"gone"),
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     properties: WillProperties::default(),
//! };
//! timers.schedule_will(id.clone(), will, now + Duration::from_secs(30));
//! timers.schedule_expiry(7, now + Duration::from_secs(60));
//! assert_eq!(timers.poll_timeout(), Some(now + Duration::from_secs(30)));
//! assert!(timers.poll_due(now).is_none());
//! // The client comes back within the delay and its session goes on: the
//! // will is not sent [MQTT-3.1.3-9].
//! assert!(timers.on_reconnect(&id, false).is_some_and(|wills| wills.is_empty()));
//! assert!(matches!(timers.poll_due(now + Duration::from_secs(60)), Some(Due::Expire(7))));
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mqtt_codec::{MqttString, PublishExtras, PublishProperties, Will};
use mqtt_session::Message;
use mqtt_topic::TopicName;

/// Something that fell due.
#[derive(Debug, PartialEq, Eq)]
pub enum Due<S> {
    /// A will whose delay passed: publish it (see [`will_message`]).
    Will {
        /// The client whose will it is.
        client_id: MqttString,
        /// The will.
        will: Box<Will>,
    },
    /// A session whose expiry passed: end it if it is still offline and
    /// its deadline is still this one (a session resumed and parked again
    /// since has a later deadline and its own timer).
    Expire(S),
}

/// Delayed wills and session expiry, by deadline. `S` names a session.
#[derive(Debug)]
pub struct Timers<S> {
    /// By deadline; a sequence number keeps equal deadlines apart, in the
    /// order they were scheduled.
    jobs: BTreeMap<(Instant, u64), Due<S>>,
    next_seq: u64,
}

impl<S> Default for Timers<S> {
    fn default() -> Self {
        Self {
            jobs: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<S> Timers<S> {
    /// No timers.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, at: Instant, due: Due<S>) {
        self.next_seq += 1;
        self.jobs.insert((at, self.next_seq), due);
    }

    /// The will of `client_id` is published at `at`: the earlier of its
    /// Will Delay Interval and the end of its session, counted from the
    /// end of its connection (MQTT 5.0 §3.1.3.2.2).
    pub fn schedule_will(&mut self, client_id: MqttString, will: Will, at: Instant) {
        self.insert(
            at,
            Due::Will {
                client_id,
                will: Box::new(will),
            },
        );
    }

    /// The offline session `session` ends at `at` unless resumed.
    pub fn schedule_expiry(&mut self, session: S, at: Instant) {
        self.insert(at, Due::Expire(session));
    }

    /// `client_id` connected again. Its wills still waiting for their
    /// delay are taken out: if its session ends with the new connection
    /// (Clean Start), they are returned to publish now, the session's end
    /// having come first; if the session goes on, they are dropped: a
    /// client back within the delay sends no will [MQTT-3.1.3-9] (MQTT 5.0
    /// §3.1.2.5). `None` when no will was waiting.
    pub fn on_reconnect(
        &mut self,
        client_id: &MqttString,
        session_ends: bool,
    ) -> Option<Vec<Will>> {
        let keys: Vec<(Instant, u64)> = self
            .jobs
            .iter()
            .filter(|(_, due)| matches!(due, Due::Will { client_id: c, .. } if c == client_id))
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return None;
        }
        let wills = keys.iter().filter_map(|k| match self.jobs.remove(k) {
            Some(Due::Will { will, .. }) => Some(*will),
            _ => None,
        });
        Some(if session_ends {
            wills.collect()
        } else {
            wills.for_each(drop);
            Vec::new()
        })
    }

    /// When the next timer falls due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.jobs.keys().next().map(|(at, _)| *at)
    }

    /// The next timer due at `now`, in deadline order.
    pub fn poll_due(&mut self, now: Instant) -> Option<Due<S>> {
        let entry = self.jobs.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// The message a will becomes when it is published at `now`: its topic,
/// payload, QoS and RETAIN, and the properties a PUBLISH carries of it
/// (Payload Format Indicator, Content Type, Response Topic, Correlation
/// Data, User Properties; the Message Expiry Interval counted from `now`)
/// (MQTT 5.0 §3.1.3.2). `None` if its topic is not a valid topic name.
pub fn will_message(will: Will, now: Instant) -> Option<(TopicName, Message)> {
    let topic = TopicName::from_bytes(will.topic.as_bytes().clone()).ok()?;
    let p = will.properties;
    let message = Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties: PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            extras: PublishExtras {
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            }
            .shared(),
            ..PublishProperties::default()
        }
        .into(),
        expires_at: p
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(u64::from(s))),
    };
    Some((topic, message))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    fn will(topic: &'static str) -> Will {
        Will {
            topic: MqttString::from_static(topic),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    /// Timers fall due in deadline order, equal deadlines in the order
    /// they were scheduled, none before its time.
    #[test]
    fn timers_fall_due_in_order() {
        let now = Instant::now();
        let s = |n| now + Duration::from_secs(n);
        let mut t: Timers<u32> = Timers::new();
        t.schedule_expiry(3, s(3));
        t.schedule_will(MqttString::from_static("a"), will("w/a"), s(1));
        t.schedule_expiry(1, s(1));
        assert_eq!(t.poll_timeout(), Some(s(1)));
        assert!(t.poll_due(now).is_none());
        assert!(matches!(t.poll_due(s(2)), Some(Due::Will { .. })));
        assert_eq!(t.poll_due(s(2)), Some(Due::Expire(1)));
        assert_eq!(t.poll_due(s(2)), None);
        assert_eq!(t.poll_due(s(3)), Some(Due::Expire(3)));
        assert!(t.is_empty());
    }

    /// A reconnection takes the client's waiting wills out: published now
    /// if its session ends, dropped if it goes on; other clients' stay.
    #[test]
    fn a_reconnection_takes_the_clients_waiting_wills() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let (a, b) = (MqttString::from_static("a"), MqttString::from_static("b"));
        let mut t: Timers<u32> = Timers::new();
        t.schedule_will(a.clone(), will("w/a"), later);
        t.schedule_will(b.clone(), will("w/b"), later);
        assert_eq!(t.on_reconnect(&a, false), Some(Vec::new()));
        assert_eq!(t.on_reconnect(&a, true), None);
        let published = t.on_reconnect(&b, true).unwrap();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].topic.as_str(), "w/b");
        assert!(t.is_empty());
    }

    /// A will's message carries its properties, and its expiry counts
    /// from the moment it is published.
    #[test]
    fn a_will_becomes_its_message() {
        let now = Instant::now();
        let mut w = will("w/t");
        w.retain = true;
        w.properties.message_expiry_interval = Some(5);
        w.properties.content_type = Some(MqttString::from_static("text/plain"));
        let (topic, m) = will_message(w, now).unwrap();
        assert_eq!(topic.as_str(), "w/t");
        assert!(m.retain);
        assert_eq!(m.expires_at, Some(now + Duration::from_secs(5)));
        assert_eq!(
            m.properties.content_type().map(MqttString::as_str),
            Some("text/plain")
        );
    }
}
