//! The routing tables of an MQTT broker, as plain data structures: who
//! subscribed to what, which retained messages exist, and which member of a
//! shared-subscription group gets the next message.
//!
//! No tasks, no sockets, no locks: a server wraps a [`Router`] in the
//! synchronisation it wants (e.g. a read-write lock: publishers route
//! concurrently under the read side, subscribers change it under the write
//! side).
//!
//! - [`Router::route`] plans the fan-out of one message: one [`Target`] per
//!   session, carrying the highest granted QoS and every matching
//!   subscription identifier when a client's subscriptions overlap
//!   [MQTT-3.3.4-2] [MQTT-3.3.4-3], honouring No Local [MQTT-3.8.3-3], and
//!   choosing one available member per shared-subscription group.
//! - [`RetainedStore`] keeps the last retained message per topic and finds
//!   those a new subscription must receive.
//! - [`Registry`] knows each client identifier's session and the one
//!   connection that owns it: a CONNECT claims it in one step, taking it
//!   over from the connection that had it [MQTT-3.1.4-3].
//!
//! ```
//! use mqtt_codec::{MqttString, QoS, SubscriptionOptions};
//! use mqtt_router::Router;
//! use mqtt_topic::TopicName;
//!
//! let mut router: Router<u32> = Router::new();
//! let filter = MqttString::from_static("sensors/+/temp");
//! router.subscribe(1, &filter, SubscriptionOptions::qos(QoS::AtLeastOnce), None).unwrap();
//! router.subscribe(2, &MqttString::from_static("sensors/#"), SubscriptionOptions::qos(QoS::AtMostOnce), None).unwrap();
//!
//! let mut targets = Vec::new();
//! router.route(&TopicName::new("sensors/7/temp").unwrap(), Some(&3), |_| true, &mut targets);
//! targets.sort_by_key(|t| t.session);
//! assert_eq!(targets.len(), 2);
//! assert_eq!((*targets[0].session, targets[0].qos), (1, QoS::AtLeastOnce));
//! assert_eq!((*targets[1].session, targets[1].qos), (2, QoS::AtMostOnce));
//! ```

mod registry;
mod retained;
mod router;
mod subscribe;
mod timers;

pub use registry::{Claim, Registry};
pub use retained::RetainedStore;
pub use router::{Router, SubscribeError, SubscribeOutcome, Target};
pub use subscribe::{Granted, SubscribeRules};
pub use timers::{Due, Timers, will_message};
