//! Property tests: arbitrary interleavings of publications both ways,
//! partial drives, broken connections with persistent-session reconnects,
//! and time, checked against the delivery guarantees of MQTT.
//!
//! - A QoS 2 message reaches the application at most once [MQTT-4.3.3-10].
//! - No QoS 1 or 2 message of a persistent session is lost: after a final
//!   reconnect and drive, each one has reached the application [MQTT-4.4.0-1].
//! - Neither side has more unacknowledged QoS 1/2 messages than the other's
//!   Receive Maximum [MQTT-3.3.4-7].
//! - A packet identifier is not reused while its flow is unfinished
//!   [MQTT-2.2.1-3].

#![allow(clippy::unwrap_used)]

pub mod harness;

use std::collections::HashMap;

use bytes::Bytes;
use harness::{Pair, Setup, Side, Trace, text};
use mqtt_codec::{Packet, QoS};
use proptest::prelude::*;

const CLIENT_RECEIVE_MAXIMUM: u16 = 3;
const SERVER_RECEIVE_MAXIMUM: u16 = 4;
const KEEP_ALIVE: u16 = 30;

#[derive(Debug, Clone)]
enum Op {
    /// The client publishes on `up/<topic>`.
    ClientPublish { topic: u8, qos: QoS },
    /// The server side delivers a message on `down/<topic>` to the client.
    ServerDeliver { topic: u8, qos: QoS },
    /// A partial drive: each action writes or reads one packet on one side.
    Step(Vec<u8>),
    /// Everything moves until both sides are quiet.
    Drive,
    /// The TCP connection breaks; the client reconnects without clean start.
    Reconnect,
    /// Time passes (keep alive may ping, or time a side out).
    Advance(u8),
}

fn qos_any() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn qos_acked() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, qos_any()).prop_map(|(topic, qos)| Op::ClientPublish { topic, qos }),
        4 => (0..3u8, qos_acked()).prop_map(|(topic, qos)| Op::ServerDeliver { topic, qos }),
        5 => prop::collection::vec(0..4u8, 1..12).prop_map(Op::Step),
        1 => Just(Op::Drive),
        2 => Just(Op::Reconnect),
        1 => (1..50u8).prop_map(Op::Advance),
    ]
}

/// Packet identifiers each side holds, as seen on the wire: taken by a
/// PUBLISH (or SUBSCRIBE) it writes, freed when it reads the acknowledgement
/// that ends the flow.
#[derive(Default)]
struct IdChecker {
    messages: [HashMap<u16, Bytes>; 2],
    controls: [Vec<u16>; 2],
    next: usize,
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl IdChecker {
    fn check(&mut self, trace: &[Trace]) -> Result<(), TestCaseError> {
        for t in &trace[self.next..] {
            match t {
                Trace::Wrote(side, Packet::Publish(p)) => {
                    let Some(id) = p.packet_id else { continue };
                    let i = index(*side);
                    prop_assert!(
                        !self.controls[i].contains(&id.get()),
                        "{side:?} reused id {id} of a SUBSCRIBE"
                    );
                    match self.messages[i].get(&id.get()) {
                        Some(held) => prop_assert!(
                            p.dup && *held == p.payload,
                            "{side:?} reused id {id} held by {held:?} for {p:?}"
                        ),
                        None => {
                            self.messages[i].insert(id.get(), p.payload.clone());
                        }
                    }
                }
                Trace::Wrote(side, Packet::Subscribe(s)) => {
                    let i = index(*side);
                    let id = s.packet_id.get();
                    prop_assert!(
                        !self.messages[i].contains_key(&id) && !self.controls[i].contains(&id)
                    );
                    self.controls[i].push(id);
                }
                Trace::Read(side, Packet::SubAck(a)) => {
                    self.controls[index(*side)].retain(|&id| id != a.packet_id.get());
                }
                Trace::Read(side, Packet::PubAck(a) | Packet::PubComp(a)) => {
                    self.messages[index(*side)].remove(&a.packet_id.get());
                }
                Trace::Read(side, Packet::PubRec(a)) if a.reason_code.is_error() => {
                    self.messages[index(*side)].remove(&a.packet_id.get());
                }
                Trace::Broken => {
                    // SUBSCRIBE and UNSUBSCRIBE end with the connection.
                    self.controls = Default::default();
                }
                _ => {}
            }
        }
        self.next = trace.len();
        Ok(())
    }
}

fn setup(v5: bool) -> Setup {
    let mut setup = if v5 { Setup::v5("c1") } else { Setup::v3("c1") };
    setup = setup.persistent(3600).keep_alive(KEEP_ALIVE);
    setup.connect.clean_start = false;
    setup.client.receive_maximum = CLIENT_RECEIVE_MAXIMUM;
    setup.server.receive_maximum = SERVER_RECEIVE_MAXIMUM;
    setup
}

fn run(v5: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut pair = Pair::connected(setup(v5));
    pair.subscribe(&[("down/#", QoS::ExactlyOnce)]);
    let mut ids = IdChecker::default();
    let mut sent_up: Vec<(String, QoS)> = Vec::new();
    let mut sent_down: Vec<(String, QoS)> = Vec::new();

    for (n, op) in ops.into_iter().enumerate() {
        // A side that closed (keep alive, ping timeout) closes the transport.
        if pair.client.is_closed() || pair.server.is_closed() {
            pair.reconnect(false);
        }
        match op {
            Op::ClientPublish { topic, qos } => {
                let payload = format!("up-{n}");
                if pair
                    .client_publish(&format!("up/{topic}"), &payload, qos)
                    .is_ok()
                {
                    sent_up.push((payload, qos));
                }
            }
            Op::ServerDeliver { topic, qos } => {
                let payload = format!("down-{n}");
                if pair
                    .server_publish(&format!("down/{topic}"), &payload, qos)
                    .is_ok()
                {
                    sent_down.push((payload, qos));
                }
            }
            Op::Step(actions) => {
                for a in actions {
                    match a {
                        0 => pair.write(Side::Client, 1),
                        1 => pair.write(Side::Server, 1),
                        2 => pair.read(Side::Server, 1),
                        _ => pair.read(Side::Client, 1),
                    };
                    check_windows(&pair)?;
                }
            }
            Op::Drive => pair.drive(),
            Op::Reconnect => pair.reconnect(false),
            Op::Advance(s) => pair.advance(harness::secs(u64::from(s))),
        }
        check_windows(&pair)?;
        ids.check(&pair.trace)?;
    }

    pair.reconnect(false);
    pair.drive();
    ids.check(&pair.trace)?;
    prop_assert!(
        pair.client.is_connected(),
        "{:?}",
        pair.client_events.last()
    );
    prop_assert!(pair.connack().session_present);

    let up = pair.server_payloads();
    let down = pair.client_payloads();
    exactly_once(
        &pair
            .server_messages()
            .iter()
            .map(|m| (text(&m.payload), m.qos))
            .collect::<Vec<_>>(),
    )?;
    exactly_once(
        &pair
            .client_messages()
            .iter()
            .map(|m| (text(&m.payload), m.qos))
            .collect::<Vec<_>>(),
    )?;
    for (payload, qos) in &sent_up {
        prop_assert!(
            *qos == QoS::AtMostOnce || up.contains(payload),
            "{payload} lost on the way up"
        );
    }
    for (payload, qos) in &sent_down {
        prop_assert!(
            *qos == QoS::AtMostOnce || down.contains(payload),
            "{payload} lost on the way down"
        );
    }
    prop_assert_eq!((pair.client.inflight(), pair.client.queued()), (0, 0));
    prop_assert_eq!(pair.server.inflight(), 0);
    Ok(())
}

/// Neither side has more QoS 1/2 messages unacknowledged than the other
/// side's Receive Maximum (5.0: announced; 3.1.1: the server's own limit).
fn check_windows(pair: &Pair) -> Result<(), TestCaseError> {
    if pair.setup.connect.protocol.is_v5() {
        prop_assert!(pair.server.inflight() <= usize::from(CLIENT_RECEIVE_MAXIMUM));
        prop_assert!(pair.client.inflight() <= usize::from(SERVER_RECEIVE_MAXIMUM));
    }
    Ok(())
}

/// No QoS 2 message reached the application twice.
fn exactly_once(got: &[(String, QoS)]) -> Result<(), TestCaseError> {
    let mut seen = HashMap::new();
    for (payload, qos) in got {
        if *qos == QoS::ExactlyOnce {
            let n = seen.entry(payload).or_insert(0);
            *n += 1;
            prop_assert!(*n == 1, "QoS 2 message {payload} delivered twice");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn delivery_guarantees_hold_under_any_interleaving_v5(ops in prop::collection::vec(op(), 1..40)) {
        run(true, ops)?;
    }

    #[test]
    fn delivery_guarantees_hold_under_any_interleaving_v3_1_1(ops in prop::collection::vec(op(), 1..40)) {
        run(false, ops)?;
    }
}
