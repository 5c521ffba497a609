//! The core of an MQTT broker, as plain data structures and rules: what a
//! broker does between the connections, without tasks, sockets, clocks or
//! locks. Time is passed in; a server wraps each structure in the
//! synchronisation it wants (the `mqtt-server` crate: a read-write lock
//! around the [`Router`], so that publishers route concurrently, and
//! mutexes around the [`Registry`] and the [`Timers`]; the [`Blocked`]
//! deliveries of a waiting publisher are its connection's own).
//!
//! What a broker does, and where:
//!
//! - **Who is connected.** [`Registry`]: each client identifier's session
//!   and the one connection that owns it. A CONNECT claims the identifier
//!   in one step ([`Registry::claim`]), taking the session over from the
//!   connection that had it, which must close with 0x8E [MQTT-3.1.4-3];
//!   a clean start replaces the session at once. Offline sessions are
//!   removed only while no connection owns them
//!   ([`Registry::remove_offline`]).
//! - **What each session subscribed to.** [`Router::subscribe_packet`]
//!   decides a SUBSCRIBE: each filter parsed once into `mqtt-topic` types
//!   (shared subscriptions `$share/{group}/{filter}` under every protocol
//!   version), refused with the reason code of the first rule it breaks
//!   (invalid or too deep 0x8F, shared or wildcard not offered 0x9E /
//!   0xA2, not permitted 0x87, over the quota 0x97), otherwise granted at
//!   the lesser of the QoS asked and the server's maximum, with its No
//!   Local, Retain As Published and subscription identifier; one reason
//!   code per filter, in order [MQTT-3.9.3-1]; a subscription on a held
//!   filter replaces it [MQTT-3.8.4-3]. [`Router::unsubscribe`] removes one.
//! - **Who gets a message.** [`Router::route`] plans the fan-out of one
//!   message: one [`Target`] per session, carrying the highest granted QoS
//!   and every matching subscription identifier when a client's
//!   subscriptions overlap [MQTT-3.3.4-2] [MQTT-3.3.4-3], honouring No Local
//!   [MQTT-3.8.3-3], and choosing one member per shared-subscription group,
//!   in turn, preferring connected members (MQTT 5.0 §4.8.2).
//!   [`Target::into_delivery`] makes the delivery: at the lesser of the
//!   message's QoS and the granted one, RETAIN kept only for Retain As
//!   Published [MQTT-3.3.1-12] [MQTT-3.3.1-13]. When a member of a shared
//!   group leaves with messages unacknowledged, [`Router::reassign`] picks
//!   another member for them.
//! - **Retained messages.** [`RetainedStore`]: the last retained message
//!   per topic [MQTT-3.3.1-5], cleared by an empty payload [MQTT-3.3.1-6],
//!   within a limit of topics ([`RetainedStore::retain`]); those a new
//!   subscription receives, per its Retain Handling [MQTT-3.3.1-9]
//!   [MQTT-3.3.1-10] [MQTT-3.3.1-11] and never for a shared subscription
//!   ([`Granted::retained`], [`RetainedStore::deliveries_for`]); message
//!   expiry.
//! - **Into the subscribers' queues.** [`DeliveryPolicy`]: a delivery that
//!   does not fit a connected subscriber's queue makes its publisher wait
//!   for room ([`DeliveryPolicy::placement`]) rather than losing it, so
//!   that the message reaches every matching session [MQTT-4.5.0-1]; the
//!   deliveries that wait, in a [`Blocked`], enter in the order they were
//!   made, a later one to a session waiting behind an earlier one
//!   [MQTT-4.6.0-6]. A wait ends ([`DeliveryPolicy::after_wait`]) in a drop,
//!   counted, that marks the subscriber congested when the publisher has
//!   waited `max_publish_wait` or the subscriber is congested already;
//!   by the queue's overflow policy when the publisher or the subscriber
//!   has gone. A congested subscriber holds up no publisher until it has
//!   read its queue down to half ([`DeliveryPolicy::relieved`]). The time
//!   limit and the congested mark are this broker's policy: nothing is
//!   thrown away silently, and no subscriber stalls publishers for long.
//!   [`Blocked::retry`] applies it to the server's queues, which it reaches
//!   through [`Mailboxes`].
//! - **Later.** [`Timers`]: delayed wills (published at the earlier of the
//!   Will Delay Interval and the session's end, not at all if the client
//!   returns within the delay [MQTT-3.1.3-9]) and the expiry of offline
//!   sessions; [`will_message`] makes a will's PUBLISH.
//!
//! One connection's protocol (packet identifiers, QoS flows, Receive
//! Maximum, topic aliases, keep alive) is `mqtt-session`'s; the queue each
//! session's deliveries wait in, with its limits and overflow policy, is
//! `mqtt_session::MessageQueue`; whether a publisher waits for room in
//! it is the [`DeliveryPolicy`]'s.
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

pub mod cluster;
mod delivery;
mod registry;
mod retained;
mod router;
mod subscribe;
mod timers;

pub use delivery::{Blocked, DeliveryPolicy, Mailboxes, Placement, Subscriber, Verdict};
pub use registry::{Claim, Registry};
pub use retained::RetainedStore;
pub use router::{Router, SubscribeError, SubscribeOutcome, Target};
pub use subscribe::{Granted, Held, SubscribeRules};
pub use timers::{Due, Timers, will_message};
