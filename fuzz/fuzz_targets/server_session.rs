//! Drives the server role of `mqtt-session` (`ServerConnection`, one client
//! connection) with arbitrary packet sequences, time steps and application
//! commands, and checks that it never panics and that its invariants hold.
//!
//! # Input
//!
//! The first three bytes choose the server's configuration: small windows
//! (`receive_maximum`, `max_inflight`), queue and early-packet limits,
//! maximum QoS, retain support, topic alias maximum, incoming maximum
//! packet size. Then each byte
//! starts an operation, which reads its arguments from the bytes after it
//! (zeros once the input is exhausted); at most `MAX_OPS` of them run.
//!
//! - What the client sends: raw bytes, or a CONNECT, PUBLISH (packet
//!   identifiers 1 to 4, so that they collide), acknowledgement, SUBSCRIBE,
//!   UNSUBSCRIBE, PINGREQ, DISCONNECT or AUTH made from a byte or two and
//!   encoded with the connection's protocol version. Both go into a buffer
//!   standing for the socket, which is decoded packet by packet as a server
//!   reads: an incomplete packet waits for more bytes, a decode error goes
//!   to `handle_decode_error`, and reading stops while the receive window
//!   is full if the configuration says so.
//! - Time: the clock moves on (up to 255 s, or to `poll_timeout`) and
//!   `handle_timeout` runs.
//! - The application: polls events; accepts (with a fresh session) or
//!   rejects the CONNECT; acknowledges a publication it was handed (with a
//!   success or an error code); answers a SUBSCRIBE; completes a release;
//!   sends AUTH; delivers a message (`deliver`); closes
//!   the connection or loses the transport.
//! - The transport: takes what `poll_transmit` gives and writes some of
//!   it, or all.
//!
//! # Checks
//!
//! - Nothing panics.
//! - Window: `inflight()` never exceeds the client's Receive Maximum
//!   (capped by `max_inflight`), and equals the number of QoS 1/2 PUBLISH
//!   packets written whose flow the client has not completed, counted from
//!   the wire: PUBACK ends a QoS 1 flow; PUBREC moves a QoS 2 flow on, or
//!   ends it with an error code; PUBCOMP ends it after PUBREC.
//! - Packet identifiers: a QoS 1/2 PUBLISH written never carries the
//!   identifier of a flow still in flight, nor DUP (the session is new:
//!   there is nothing to resend).
//! - QoS 2 at most once: the application is handed a QoS 2 message with a
//!   given packet identifier at most once until `Released` for that
//!   identifier (or until it refused the message with an error code, which
//!   ends the flow).
//! - Receive window: the application never holds more unacknowledged
//!   QoS 1/2 publications than the server's Receive Maximum (5.0), and
//!   `acknowledge` takes each of them while the connection is up.
//! - Every packet written is one a server sends, encodes under the
//!   connection's version (a lent PUBLISH as its owned copy does), and is
//!   written only once the CONNECT is accepted if it is a PUBLISH; a
//!   PUBLISH fits the client's Maximum Packet Size, uses topic aliases
//!   within the client's Topic Alias Maximum, and leaves its topic out only
//!   for an alias bound by an earlier PUBLISH.
//! - A message handed to the application has a topic (aliases resolved).
//! - `Closed` is the last event.

#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{
    Ack, Auth, AuthProperties, Connect, Disconnect, MqttString, Packet, PacketId, ProtocolVersion,
    Publish, QoS, ReasonCode, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, Unsubscribe, Will,
};
use mqtt_session::{
    Accept, Delivery, Message, Overflow, QueueLimits, ServerConfig, ServerConnection, ServerEvent,
};

/// Operations run per input, at most.
const MAX_OPS: usize = 1024;

const TOPICS: [&str; 4] = ["a", "a/b", "c", "$SYS/x"];
const FILTERS: [&str; 4] = ["a", "a/+", "#", "$share/g/a"];

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut fuzz = Fuzz::new(&mut input);
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        fuzz.step(op, &mut input);
        fuzz.read();
        fuzz.check();
    }
    // Whatever is left: the events, then everything to write.
    fuzz.events();
    fuzz.write_all();
    fuzz.events();
    fuzz.check();
}

/// The fuzz input, read from the front.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    /// The next byte; 0 once the input is exhausted.
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes, or what is left.
    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fn qos(bits: u8) -> QoS {
    match bits & 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Packet identifier `n`, or 1 for 0.
fn packet_id(n: u16) -> PacketId {
    PacketId::new(n).unwrap_or(PacketId::MIN)
}

fn pid(n: u8) -> PacketId {
    packet_id(u16::from(n))
}

fn topic(n: u8) -> MqttString {
    MqttString::from_static(TOPICS[usize::from(n) % TOPICS.len()])
}

/// Where an outgoing QoS 1/2 flow is, as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 PUBLISH written; PUBACK ends it.
    Qos1,
    /// QoS 2 PUBLISH written; PUBREC moves it on.
    Qos2,
    /// QoS 2 PUBREC received; PUBCOMP ends it.
    Released,
}

/// What the accepted CONNECT allows the server to send.
#[derive(Debug)]
struct ClientLimits {
    /// Its Receive Maximum, capped by the server's `max_inflight`.
    window: usize,
    max_packet_size: usize,
    topic_alias_maximum: u16,
}

struct Fuzz {
    server: ServerConnection,
    config: ServerConfig,
    /// Stop reading while the receive window is full, as a server does.
    respect_window: bool,
    now: Instant,
    /// Bytes the client wrote that the server has not read.
    wire: BytesMut,
    /// Packets the server gave out and the transport has not written yet.
    unwritten: VecDeque<(Packet, BytesMut)>,
    /// The CONNECT awaiting the application's decision, and whether it
    /// needs a client identifier.
    connect: Option<(Box<Connect>, bool)>,
    /// Set when the CONNECT is accepted.
    client: Option<ClientLimits>,
    /// Outgoing QoS 1/2 flows in flight, by packet identifier.
    outgoing: BTreeMap<u16, Stage>,
    /// Topic aliases the server bound in PUBLISH packets it wrote.
    aliases: HashMap<u16, MqttString>,
    /// QoS 1/2 publications handed to the application, not acknowledged.
    unacknowledged: Vec<PacketId>,
    /// Identifiers of QoS 2 messages handed to the application and not
    /// released since.
    qos2: HashSet<u16>,
    /// SUBSCRIBE packets awaiting SUBACK: identifier and filter count.
    subscribes: Vec<(PacketId, usize)>,
    /// Released identifiers, for `complete_release`.
    releases: Vec<PacketId>,
    /// An AUTH packet arrived.
    auth: bool,
    /// The `Closed` event was seen.
    closed: bool,
}

impl Fuzz {
    fn new(input: &mut Input<'_>) -> Self {
        let (a, b, c) = (input.byte(), input.byte(), input.byte());
        let config = ServerConfig {
            max_inflight: if a & 8 == 0 {
                1 + u16::from(a & 7)
            } else {
                1024
            },
            receive_maximum: 1 + u16::from((a >> 4) & 3),
            topic_alias_maximum: u16::from(b & 3),
            maximum_qos: [
                QoS::ExactlyOnce,
                QoS::ExactlyOnce,
                QoS::AtLeastOnce,
                QoS::AtMostOnce,
            ][usize::from((b >> 2) & 3)],
            retain_available: b & 0x10 == 0,
            max_keepalive: if b & 0x20 == 0 { u16::MAX } else { 30 },
            subscription_identifiers_available: b & 0x40 == 0,
            max_packet_size: if b & 0x80 == 0 { 1024 * 1024 } else { 96 },
            queue: QueueLimits {
                max_messages: 1 + usize::from(c & 7),
                max_bytes: 1024,
                overflow: if c & 8 == 0 {
                    Overflow::DropNewest
                } else {
                    Overflow::DropOldest
                },
            },
            max_early_packets: 1 + usize::from((c >> 4) & 3),
            ..ServerConfig::default()
        };
        let now = Instant::now();
        let mut server = ServerConnection::new(config.clone(), now);
        server.set_confirm_releases(a & 0x40 != 0);
        server.set_report_deliveries(a & 0x80 == 0);
        Self {
            server,
            config,
            respect_window: a & 0x20 != 0,
            now,
            wire: BytesMut::new(),
            unwritten: VecDeque::new(),
            connect: None,
            client: None,
            outgoing: BTreeMap::new(),
            aliases: HashMap::new(),
            unacknowledged: Vec::new(),
            qos2: HashSet::new(),
            subscribes: Vec::new(),
            releases: Vec::new(),
            auth: false,
            closed: false,
        }
    }

    fn connected(&self) -> bool {
        self.server.session().is_some()
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) {
        match op % 12 {
            0 => {
                let n = usize::from(input.byte() % 64);
                self.wire.extend_from_slice(input.take(n));
            }
            1 => self.send_connect(input),
            2 => self.send_publish(input),
            3 => self.send_ack(input),
            4 => self.send_other(input),
            5 => self.advance(input.byte()),
            6 => self.events(),
            7 => self.decide(input.byte()),
            8 => self.acknowledge(input),
            9 => self.deliver(input),
            10 => self.write(input.byte()),
            _ => self.command(input),
        }
    }

    // ------------------------------------------------------------ client

    /// Writes `packet` on the wire as the client would.
    fn send(&mut self, packet: Packet) {
        let version = self.server.version();
        // What cannot be encoded cannot be sent (AUTH under 3.1.1).
        let _ = packet.encode(version, &mut self.wire);
    }

    fn send_connect(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        let version = match b & 3 {
            0 | 1 => ProtocolVersion::V5,
            2 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V3_1,
        };
        let id = if b & 4 == 0 {
            MqttString::from_static("c")
        } else {
            MqttString::new()
        };
        let mut connect = Connect::new(version, id);
        connect.clean_start = b & 8 == 0;
        connect.keep_alive = [0, 1, 5, 60][usize::from((b >> 4) & 3)];
        if b & 0x40 != 0 {
            connect.will = Some(Will {
                topic: topic(c),
                payload: Bytes::from_static(b"gone"),
                qos: qos(c >> 2),
                retain: false,
                properties: Default::default(),
            });
        }
        if version.is_v5() {
            let p = &mut connect.properties;
            p.receive_maximum = NonZeroU16::new(u16::from(c & 7));
            p.topic_alias_maximum = Some(u16::from((c >> 3) & 3));
            p.maximum_packet_size = if c & 0x20 == 0 {
                None
            } else {
                NonZeroU32::new(40)
            };
            p.session_expiry_interval = (c & 0x40 != 0).then_some(60);
        }
        self.send(Packet::Connect(Box::new(connect)));
    }

    fn send_publish(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        let payload = Bytes::from(vec![b'x'; [0, 2, 50, 200][usize::from(b >> 6)]]);
        let mut p = Publish::new(topic(b >> 2), payload);
        p.qos = qos(b);
        if p.qos != QoS::AtMostOnce {
            p.packet_id = Some(pid(1 + (c & 3)));
            p.dup = c & 4 != 0;
        }
        p.retain = c & 8 != 0;
        if c & 0x10 != 0 {
            p.properties.topic_alias = NonZeroU16::new(1 + u16::from((c >> 5) & 1));
            if c & 0x40 != 0 {
                p.topic = MqttString::new();
            }
        }
        if c & 0x80 != 0 {
            p.properties.message_expiry_interval = Some(5);
        }
        self.send(Packet::Publish(p));
    }

    fn send_ack(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        // Half of them for a flow in flight, if any.
        let id = match self
            .outgoing
            .keys()
            .nth(usize::from(c) % self.outgoing.len().max(1))
        {
            Some(&id) if b & 0x80 != 0 => packet_id(id),
            _ => pid(1 + (c & 7)),
        };
        let error = b & 4 != 0;
        let ack = |failure| Ack::with_reason(id, if error { failure } else { ReasonCode::Success });
        self.send(match b & 3 {
            0 => Packet::PubAck(ack(ReasonCode::UnspecifiedError)),
            1 => Packet::PubRec(ack(ReasonCode::UnspecifiedError)),
            2 => Packet::PubRel(ack(ReasonCode::PacketIdentifierNotFound)),
            _ => Packet::PubComp(ack(ReasonCode::PacketIdentifierNotFound)),
        });
    }

    fn send_other(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        let filter = MqttString::from_static(FILTERS[usize::from(c) % FILTERS.len()]);
        let packet = match b % 6 {
            0 => Packet::PingReq,
            1 => Packet::Subscribe(Subscribe {
                packet_id: pid(1 + (b >> 6)),
                properties: SubscribeProperties {
                    subscription_identifier: if c & 4 == 0 {
                        None
                    } else {
                        SubscriptionId::new(7)
                    },
                    user_properties: Default::default(),
                },
                subscriptions: vec![Subscription {
                    filter,
                    options: SubscriptionOptions {
                        no_local: c & 8 != 0,
                        ..SubscriptionOptions::qos(qos(c >> 4))
                    },
                }],
            }),
            2 => Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(1 + (b >> 6)),
                properties: Default::default(),
                filters: vec![filter],
            }),
            3 => {
                let code = if c & 1 == 0 {
                    ReasonCode::Success
                } else {
                    ReasonCode::DisconnectWithWillMessage
                };
                let mut d = Disconnect::new(code);
                d.properties.session_expiry_interval = (c & 2 != 0).then_some(u32::from(c >> 2));
                Packet::from(d)
            }
            4 => Packet::from(Auth {
                reason_code: if c & 1 == 0 {
                    ReasonCode::ContinueAuthentication
                } else {
                    ReasonCode::ReAuthenticate
                },
                properties: AuthProperties {
                    authentication_method: Some(MqttString::from_static("M")),
                    ..Default::default()
                },
            }),
            // PUBREL for a QoS 2 message the application was handed.
            _ => {
                let id = self
                    .qos2
                    .iter()
                    .nth(usize::from(c) % self.qos2.len().max(1));
                Packet::PubRel(Ack::new(id.map_or(pid(1), |&id| packet_id(id))))
            }
        };
        self.send(packet);
    }

    /// Decodes and hands in what the client wrote, packet by packet.
    fn read(&mut self) {
        // Each packet takes at least two bytes.
        for _ in 0..=self.wire.len() {
            if self.server.is_closed() {
                // The transport is closed: nothing more is read.
                self.wire.clear();
                return;
            }
            if self.respect_window && self.server.receive_window_full() {
                return;
            }
            let version = self.server.version();
            let limits = self.server.decode_limits();
            match Packet::decode(&mut self.wire, version, &limits) {
                Ok(Some(packet)) => self.receive(packet),
                Ok(None) => return,
                Err(e) => {
                    self.server.handle_decode_error(self.now, e);
                    self.wire.clear();
                    return;
                }
            }
        }
    }

    fn receive(&mut self, packet: Packet) {
        if self.connected() {
            self.client_acknowledged(&packet);
        }
        let _ = self.server.handle_packet(self.now, packet);
    }

    /// The outgoing flows, as the client's acknowledgement leaves them.
    fn client_acknowledged(&mut self, packet: &Packet) {
        let (id, stage) = match packet {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => {
                (a.packet_id.get(), self.outgoing.get(&a.packet_id.get()))
            }
            _ => return,
        };
        match (packet, stage) {
            (Packet::PubAck(_), Some(Stage::Qos1))
            | (Packet::PubComp(_), Some(Stage::Released)) => {
                self.outgoing.remove(&id);
            }
            (Packet::PubRec(a), Some(Stage::Qos2)) => {
                if a.reason_code.is_error() {
                    self.outgoing.remove(&id);
                } else {
                    self.outgoing.insert(id, Stage::Released);
                }
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------- time

    fn advance(&mut self, b: u8) {
        let step = match b {
            0xFF => self
                .server
                .poll_timeout()
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(self.now)),
            0x80.. => Duration::from_millis(u64::from(b & 0x7F) * 10),
            _ => Duration::from_secs(u64::from(b)),
        };
        self.now += step;
        self.server.handle_timeout(self.now);
    }

    // ------------------------------------------------------- application

    /// Polls every event.
    fn events(&mut self) {
        while let Some(event) = self.server.poll_event() {
            assert!(!self.closed, "an event after Closed: {event:?}");
            match event {
                ServerEvent::Connect {
                    connect,
                    needs_client_id,
                } => {
                    assert!(self.connect.is_none(), "a second CONNECT event");
                    self.connect = Some((connect, needs_client_id));
                }
                ServerEvent::Publish { message, packet_id } => self.handed(&message, packet_id),
                ServerEvent::Subscribe(s) => {
                    self.subscribes.push((s.packet_id, s.subscriptions.len()));
                }
                ServerEvent::Unsubscribed(_) => {}
                ServerEvent::Delivered { qos, .. } => {
                    assert_ne!(qos, QoS::AtMostOnce, "a QoS 0 delivery acknowledged");
                }
                ServerEvent::Released { packet_id } => {
                    self.qos2.remove(&packet_id.get());
                    self.releases.push(packet_id);
                }
                ServerEvent::Auth(_) => self.auth = true,
                ServerEvent::Closed(_) => {
                    self.closed = true;
                    self.unacknowledged.clear();
                    self.subscribes.clear();
                    self.releases.clear();
                }
            }
        }
    }

    /// A publication handed to the application.
    fn handed(&mut self, message: &Message, packet_id: Option<PacketId>) {
        assert!(!message.topic.is_empty(), "a message without a topic");
        assert_eq!(
            message.qos == QoS::AtMostOnce,
            packet_id.is_none(),
            "packet identifier {packet_id:?} of a QoS {:?} message",
            message.qos
        );
        let Some(id) = packet_id else {
            return;
        };
        if message.qos == QoS::ExactlyOnce {
            assert!(
                self.qos2.insert(id.get()),
                "QoS 2 message {id} handed to the application again before its PUBREL"
            );
        }
        self.unacknowledged.push(id);
        let max = if self.server.version().is_v5() {
            self.config.receive_maximum.max(1)
        } else {
            u16::MAX
        };
        assert!(
            self.unacknowledged.len() <= usize::from(max),
            "{} publications unacknowledged, Receive Maximum {max}",
            self.unacknowledged.len()
        );
    }

    /// Accepts or rejects the CONNECT.
    fn decide(&mut self, b: u8) {
        let Some((connect, needs_client_id)) = self.connect.take() else {
            return;
        };
        if b % 8 == 7 {
            self.server
                .reject(self.now, ReasonCode::NotAuthorized, Default::default());
            return;
        }
        let accept = Accept {
            session: None,
            assigned_client_id: needs_client_id.then(|| MqttString::from_static("assigned")),
            properties: Default::default(),
        };
        self.server.accept(self.now, accept);
        let p = &connect.properties;
        let receive_maximum = p.receive_maximum.map_or(u16::MAX, NonZeroU16::get);
        self.client = Some(ClientLimits {
            window: usize::from(receive_maximum.min(self.config.max_inflight).max(1)),
            max_packet_size: p
                .maximum_packet_size
                .map_or(usize::MAX, |m| m.get() as usize),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
        });
    }

    fn acknowledge(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        if self.unacknowledged.is_empty() {
            return;
        }
        let id = self
            .unacknowledged
            .remove(usize::from(b) % self.unacknowledged.len());
        let reason = match c % 4 {
            0 => ReasonCode::UnspecifiedError,
            1 => ReasonCode::NoMatchingSubscribers,
            _ => ReasonCode::Success,
        };
        let connected = self.connected();
        let taken = self.server.acknowledge(id, reason);
        assert!(
            taken || !connected,
            "acknowledge({id}) refused for a publication handed out"
        );
        if reason.is_error() {
            // A refused QoS 2 message's flow ends: its identifier may
            // carry a new message.
            self.qos2.remove(&id.get());
        }
    }

    fn deliver(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        let message = Message {
            topic: topic(b >> 2),
            payload: Bytes::from(vec![b'y'; [0, 3, 30, 300][usize::from(b >> 6)]]),
            qos: qos(b),
            retain: c & 0x40 != 0,
            properties: Default::default(),
            expires_at: (c & 0x80 != 0).then(|| self.now + Duration::from_secs(u64::from(c & 7))),
        };
        let mut delivery = Delivery::new(Arc::new(message), qos(c >> 3));
        if c & 0x20 != 0 {
            delivery.subscription_ids.extend(SubscriptionId::new(3));
        }
        let _ = self.server.deliver(delivery);
    }

    fn command(&mut self, input: &mut Input<'_>) {
        let (b, c) = (input.byte(), input.byte());
        match b % 8 {
            0 | 1 => {
                if !self.subscribes.is_empty() {
                    let (id, n) = self.subscribes.remove(0);
                    let code = match c % 4 {
                        0 => ReasonCode::GRANTED_QOS_0,
                        1 => ReasonCode::GrantedQoS1,
                        2 => ReasonCode::GrantedQoS2,
                        _ => ReasonCode::NotAuthorized,
                    };
                    self.server.acknowledge_subscribe(id, vec![code; n]);
                }
            }
            2 | 3 => {
                if let Some(id) = self.releases.pop() {
                    self.server.complete_release(id);
                }
            }
            4 => {
                if std::mem::take(&mut self.auth) {
                    self.server.send_auth(Auth {
                        reason_code: ReasonCode::ContinueAuthentication,
                        properties: AuthProperties {
                            authentication_method: Some(MqttString::from_static("M")),
                            ..Default::default()
                        },
                    });
                }
            }
            5 => self.server.close(self.now, ReasonCode::ServerShuttingDown),
            6 => self.server.connection_lost(self.now),
            _ => self.server.set_confirm_releases(c & 1 != 0),
        }
    }

    // --------------------------------------------------------- transport

    fn write(&mut self, b: u8) {
        if b & 0x80 != 0 {
            self.write_all();
            return;
        }
        self.take_transmit();
        for _ in 0..=(b & 0x0F) {
            match self.unwritten.pop_front() {
                Some((packet, wire)) => self.wrote(packet, Some(wire)),
                None => break,
            }
        }
    }

    fn write_all(&mut self) {
        self.take_transmit();
        while let Some((packet, wire)) = self.unwritten.pop_front() {
            self.wrote(packet, Some(wire));
        }
    }

    /// Takes what the server gives to write, behind what it gave before.
    fn take_transmit(&mut self) {
        let version = self.server.version();
        let unwritten = &mut self.unwritten;
        self.server
            .poll_transmit(self.now, |t| unwritten.push_back(lent(&t, version)));
    }

    /// A packet the server wrote, with its encoding as lent if it was.
    fn wrote(&mut self, packet: Packet, lent: Option<BytesMut>) {
        let version = self.server.version();
        let mut wire = BytesMut::new();
        if let Err(e) = packet.encode(version, &mut wire) {
            panic!("the server wrote {packet:?}, which does not encode under {version}: {e}");
        }
        if let Some(lent) = lent {
            assert_eq!(lent, wire, "a lent packet encodes otherwise than its copy");
        }
        match &packet {
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => {
                panic!("the server wrote a client's packet: {packet:?}")
            }
            Packet::Disconnect(_) => assert!(version.is_v5(), "DISCONNECT written under {version}"),
            Packet::Publish(p) => self.wrote_publish(p, wire.len()),
            _ => {}
        }
    }

    fn wrote_publish(&mut self, p: &Publish, len: usize) {
        let Some(client) = &self.client else {
            panic!("PUBLISH written before the CONNECT was accepted: {p:?}");
        };
        assert!(
            len <= client.max_packet_size,
            "a PUBLISH of {len} bytes, over the client's Maximum Packet Size {}",
            client.max_packet_size
        );
        match p.properties.topic_alias {
            Some(alias) => {
                assert!(
                    alias.get() <= client.topic_alias_maximum,
                    "topic alias {alias} over the client's maximum {}",
                    client.topic_alias_maximum
                );
                if p.topic.is_empty() {
                    assert!(
                        self.aliases.contains_key(&alias.get()),
                        "topic alias {alias} used before it was bound"
                    );
                } else {
                    self.aliases.insert(alias.get(), p.topic.clone());
                }
            }
            None => assert!(!p.topic.is_empty(), "a PUBLISH without topic nor alias"),
        }
        let Some(id) = p.packet_id else {
            return;
        };
        assert!(!p.dup, "DUP on {id}, with nothing to resend");
        let stage = if p.qos == QoS::AtLeastOnce {
            Stage::Qos1
        } else {
            Stage::Qos2
        };
        assert!(
            self.outgoing.insert(id.get(), stage).is_none(),
            "PUBLISH with packet identifier {id}, already in flight"
        );
        assert!(
            self.outgoing.len() <= client.window,
            "{} PUBLISH in flight, client's Receive Maximum {}",
            self.outgoing.len(),
            client.window
        );
    }

    // ----------------------------------------------------------- checks

    fn check(&self) {
        if !self.connected() {
            return;
        }
        let Some(client) = &self.client else {
            panic!("connected without an accepted CONNECT");
        };
        let inflight = self.server.inflight();
        assert!(
            inflight <= client.window,
            "inflight() {inflight}, client's Receive Maximum {}",
            client.window
        );
        assert_eq!(
            inflight,
            self.outgoing.len(),
            "inflight() against the flows on the wire: {:?}",
            self.outgoing
        );
    }
}

/// A lent packet, owned, with its encoding from the lent form.
fn lent(t: &mqtt_session::Transmit<'_>, version: ProtocolVersion) -> (Packet, BytesMut) {
    let mut wire = BytesMut::new();
    if let Err(e) = t.encode(version, &mut wire) {
        panic!("the server lent {t:?}, which does not encode under {version}: {e}");
    }
    (t.to_packet(), wire)
}
