//! How the broker is put together: the path of a message through the
//! crates, and which crate holds which rule. Documentation only.
//!
//! # Where each rule lives
//!
//! | crate | holds | sans-IO |
//! |---|---|---|
//! | `mqtt-codec` | every packet of MQTT 3.1.1 and 5.0, decoded and encoded strictly: the wire's rules | yes |
//! | `mqtt-topic` | topic names, filters, `$share/`, the subscription trie | yes |
//! | `mqtt-session` | one connection's protocol: CONNECT/CONNACK, QoS 1/2 flows both ways, packet identifiers, Receive Maximum, topic aliases, keep alive | yes |
//! | `mqtt-router` | the broker's rules: the session registry and takeover, SUBSCRIBE decisions, routing and deliveries, shared groups, retained messages, wills and session expiry, the delivery policy (publishers waiting for room, congested subscribers) | yes |
//! | `mqtt-store` | persistence of sessions, queues, in-flight state and retained messages | (a writer thread) |
//! | `mqtt-server` (this crate) | sockets and transports, the task per connection, authentication and ACLs, configuration, metrics, `$SYS`, the operator's console, the wiring of the store | no |
//!
//! # The path of one PUBLISH
//!
//! ```text
//!  publisher's socket
//!     │ bytes
//!     ▼
//!  connection::serve ─ read_into ─▶ read buffer (BytesMut)                        [this crate]
//!     │ connection/publish.rs: decode_packets, packet by packet
//!     │   • the client's window full (as many publications unacknowledged
//!     │     as our Receive Maximum)? stop reading until one is acknowledged
//!     ▼
//!  Packet::decode                      topic and payload are slices of the       [mqtt-codec]
//!     │                                read buffer: nothing copied
//!     ▼
//!  ServerConnection::handle_packet     packet identifier, QoS 2 duplicate        [mqtt-session]
//!     │                                [MQTT-4.3.3-10], topic alias, message
//!     │                                expiry → one Arc<Message>
//!     │ ServerConnection::poll_event   ServerEvent::Publish, handled at once
//!     │                                unless a stall or an event waits before it
//!     ▼
//!  Task::on_publish                    ACL, publish quota                        [this crate]
//!     ▼
//!  Broker::publish (broker/delivery.rs)
//!     │ RetainedStore::retain          RETAIN: kept, cleared, or over the limit  [mqtt-router]
//!     │ Router::route → Target         one per session: highest QoS, every       [mqtt-router]
//!     │   (or the publisher's            subscription identifier, No Local,
//!     │    RouteCache)                   one member per shared group
//!     │ Target::into_delivery          QoS downgrade, Retain As Published        [mqtt-router]
//!     │ with a store: a Batch          the message before its acknowledgement:   [mqtt-store]
//!     │                                PUBACK/PUBREC wait for the group commit
//!     ▼
//!  each subscriber's mailbox           bounded queue (count, bytes, QoS 0        [mqtt-session]
//!     │ (handle.rs)                    dropped first)
//!     │ DeliveryPolicy, Blocked        full for a connected subscriber → the     [mqtt-router]
//!     │                                publisher waits, in order (at most
//!     │                                max_publish_wait_ms), then drops, counted
//!     ▼
//!  subscriber's connection::serve: pull_mailbox
//!     │ ServerConnection::deliver      the session's queue                       [mqtt-session]
//!     │ ServerConnection::poll_transmit packet identifier, the client's Receive  [mqtt-session]
//!     │                                Maximum and Maximum Packet Size, alias;
//!     │                                each PUBLISH lent, not copied
//!     ▼
//!  WriteQueue (writer.rs)              every ready packet in one buffer, one     [this crate]
//!     │                                (vectored) write
//!     ▼
//!  subscriber's socket
//! ```
//!
//! # A CONNECT
//!
//! The listener authenticates the client (auth.rs). The connection then
//! claims its client identifier in the session registry
//! (`mqtt_router::Registry::claim`, under the registry's lock: one step, so
//! two connections never both own one identifier [MQTT-3.1.4-3]); a
//! previous owner is told to close with 0x8E and hands its session over.
//! `ServerConnection::accept` sends CONNACK and resends what was in flight.
//! When the connection ends, its session is parked offline (and stored, if
//! persistent) or ended; its will, if any, is published or scheduled with
//! `mqtt_router::Timers`, which the janitor (broker/jobs.rs) also uses for
//! session expiry.
//!
//! # The operator's console
//!
//! `admin/` serves the admin API and the dashboard (axum on hyper; the
//! metrics listener shares its accept loop, `http.rs`). It decides
//! no MQTT rule: what it shows, it reads through `broker/admin.rs`, which
//! copies views out of the [`Registry`](mqtt_router::Registry) (sessions,
//! and the connection owning each), the [`Router`](mqtt_router::Router)
//! (subscriptions) and the [`RetainedStore`](mqtt_router::RetainedStore);
//! what it does, it does as the broker does it. A disconnect is a request
//! on the connection's control channel (the one a takeover uses: the
//! connection closes with 0x98 instead of 0x8E, and its session is kept or
//! ended by its expiry); a connection's own counts (in flight, its
//! session's queue) are asked the same way. A discarded session ends as an
//! expired one; a deleted retained message is cleared as an empty retained
//! PUBLISH clears it, without a delivery; a publication is routed as a
//! `$SYS` update is.
//!
//! # A bridge
//!
//! A `[[bridge]]` (bridge/) is a session of this broker, `$bridge/NAME`,
//! claimed in the registry by the bridge's task instead of a connection
//! and subscribed (No Local) to what it sends out: publishers put
//! deliveries in its mailbox as in any session's, with the same policy,
//! and its task hands them to `mqtt_session::ClientConnection` (the client
//! role) towards the remote broker, removing each from the store once the
//! remote broker acknowledged it. What comes from the remote broker takes
//! the path of a client's PUBLISH from `Broker::publish` on, the bridge's
//! session as publisher, and is acknowledged to the remote broker once
//! committed (`ClientConnection::acknowledge`, manual acknowledgements).
