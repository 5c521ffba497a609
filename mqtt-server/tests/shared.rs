//! Shared subscriptions (`$share/{group}/{filter}`) whose members are not
//! all connected, end to end: persistent members that are offline, members
//! that leave with messages in flight, and members of both protocol
//! versions in one group. The real broker in-process; rumqttc clients, and
//! raw peers where a member must hold back its acknowledgements.
//!
//! MQTT 5.0 §4.8.2: each message matching a shared subscription goes to
//! one member of the group; a message a member received and did not
//! acknowledge before its session ended goes to another member.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU16;
use std::path::Path;
use std::time::Duration;

use mqtt_codec::{Disconnect, Packet, ProtocolVersion, ReasonCode};
use mqtt_server::{Config, Stats};
use mqtt_testkit::v5::{Peer, options};
use mqtt_testkit::{RawClient, Received, TIMEOUT, TestBroker, packets, v4};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet as Incoming, SubscribeReasonCode};
use rumqttc::v5::{Event, MqttOptions};
use tokio::time::Instant;

/// The shared subscription every test subscribes to, and its topic.
const SHARE: &str = "$share/g/s/t";
const TOPIC: &str = "s/t";

/// How long a member must stay silent for "nothing more" to hold.
const QUIET: Duration = Duration::from_millis(300);

/// The default configuration, without `$SYS` publications.
fn config() -> Config {
    let mut c = TestBroker::config();
    c.sys_interval = 0;
    c
}

/// [`config`] with persistence on `dir`.
fn config_persistent(dir: &Path) -> Config {
    let mut c = config();
    c.persistence = true;
    c.data_dir = dir.to_path_buf();
    c
}

/// Options of a session that outlives its connection by 60 s.
fn persistent(broker: &TestBroker, id: &str, clean_start: bool) -> MqttOptions {
    let mut o = options(broker.addr, id);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(60);
    o.set_connect_properties(props);
    o.set_clean_start(clean_start);
    o
}

/// Waits until the broker counts `n` connected clients: a member that
/// disconnected is offline for the broker too.
async fn wait_connected(broker: &TestBroker, n: u64) {
    broker
        .wait_until(&format!("{n} clients connected"), |s| {
            Stats::get(&s.clients_connected) == n
        })
        .await;
}

/// Joins the group at QoS 1.
async fn join(member: &mut Peer) {
    let ack = member.subscribe(SHARE, QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

/// Publishes `payloads` to [`TOPIC`] at `qos`, each flow complete.
async fn publish_all(publisher: &mut Peer, payloads: &[String], qos: QoS) {
    for p in payloads {
        publisher.publish(TOPIC, qos, false, p.as_bytes()).await;
    }
}

/// `n` payloads `{prefix}-{i}`.
fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// What a 5.0 member has received: its events until none comes for 5 ms.
async fn gather_now(member: &mut Peer) -> Vec<(String, QoS)> {
    let mut got = Vec::new();
    while let Some(e) = member.next_event(Duration::from_millis(5)).await {
        match e {
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                got.push((String::from_utf8(p.payload.to_vec()).unwrap(), p.qos));
            }
            Ok(_) => {}
            Err(e) => panic!("a member's connection failed: {e:?}"),
        }
    }
    got
}

/// What each member receives, as (payload, QoS), until the members have
/// `total` messages between them; then checks that no member gets another
/// for [`QUIET`] (a duplicate, or more than was published).
async fn gather(members: &mut [&mut Peer], total: usize) -> Vec<Vec<(String, QoS)>> {
    let mut got: Vec<Vec<(String, QoS)>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + TIMEOUT;
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "{total} messages expected within {TIMEOUT:?}, got {got:?}"
        );
        for (m, g) in members.iter_mut().zip(got.iter_mut()) {
            g.extend(gather_now(m).await);
        }
    }
    // The first check waits; the others find what arrived meanwhile.
    let mut wait = QUIET;
    for m in members.iter_mut() {
        m.expect_no_publish(wait).await;
        wait = Duration::from_millis(1);
    }
    got
}

/// Asserts that the members' messages together are `want`, each once.
fn assert_each_once(got: &[Vec<(String, QoS)>], want: &[String]) {
    let mut all: Vec<&str> = got.iter().flatten().map(|(p, _)| p.as_str()).collect();
    all.sort_unstable();
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(
        all, want,
        "every message exactly once across the group (per member: {got:?})"
    );
}

/// Payloads of a member's messages.
fn names(got: &[(String, QoS)]) -> Vec<&str> {
    got.iter().map(|(p, _)| p.as_str()).collect()
}

// --- Offline persistent members ------------------------------------------

/// MQTT 5.0 §4.8.2: each message goes to one member of the group. While
/// one member is offline (its session kept, Session Expiry Interval 60 s)
/// and another is connected, every message goes to the connected one,
/// once; the offline one, back with its session, gets none of them, and
/// then takes its turn again.
#[tokio::test]
async fn messages_published_while_a_member_is_offline_go_to_the_connected_member_only() {
    let broker = TestBroker::start(config()).await;
    let (mut offline, ack) = Peer::connect(persistent(&broker, "offline", true)).await;
    assert!(!ack.session_present);
    join(&mut offline).await;
    offline.disconnect().await;
    wait_connected(&broker, 0).await;

    let (mut online, _) = Peer::connect(options(broker.addr, "online")).await;
    join(&mut online).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let while_offline = payloads("offline", 10);
    publish_all(&mut publisher, &while_offline, QoS::AtLeastOnce).await;
    let got = gather(&mut [&mut online], while_offline.len()).await;
    assert_each_once(&got, &while_offline);
    assert!(
        got[0].iter().all(|(_, q)| *q == QoS::AtLeastOnce),
        "{got:?}"
    );

    let (mut offline, ack) = Peer::connect(persistent(&broker, "offline", false)).await;
    assert!(ack.session_present, "the offline member's session was kept");
    offline.expect_no_publish(QUIET).await;

    // Still a member: both take turns from now on.
    let both_online = payloads("online", 4);
    publish_all(&mut publisher, &both_online, QoS::AtLeastOnce).await;
    let got = gather(&mut [&mut online, &mut offline], both_online.len()).await;
    assert_each_once(&got, &both_online);
    assert!(
        !got[1].is_empty(),
        "the returned member takes its turn again: {got:?}"
    );
}

/// MQTT 5.0 §4.8.2 with every member offline: messages are not lost, each
/// is queued for exactly one member's session, and once both members are
/// back the union of what they receive is every message, once. QoS 0
/// messages are queued too: MQTT 5.0 §3.1.2.4 allows storing QoS 0 for an
/// offline session, and this broker does.
async fn every_member_offline(config: Config) {
    let broker = TestBroker::start(config).await;
    for id in ["a", "b"] {
        let (mut m, _) = Peer::connect(persistent(&broker, id, true)).await;
        join(&mut m).await;
        m.disconnect().await;
    }
    wait_connected(&broker, 0).await;

    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let qos0 = payloads("qos0", 10);
    let qos1 = payloads("qos1", 10);
    // QoS 0 then QoS 1, in turn: the last PUBACK comes once every message
    // before it is routed.
    for (p0, p1) in qos0.iter().zip(&qos1) {
        publisher
            .publish(TOPIC, QoS::AtMostOnce, false, p0.as_bytes())
            .await;
        publisher
            .publish(TOPIC, QoS::AtLeastOnce, false, p1.as_bytes())
            .await;
    }

    let (mut a, ack) = Peer::connect(persistent(&broker, "a", false)).await;
    assert!(ack.session_present);
    let (mut b, ack) = Peer::connect(persistent(&broker, "b", false)).await;
    assert!(ack.session_present);
    let got = gather(&mut [&mut a, &mut b], qos0.len() + qos1.len()).await;
    assert_each_once(&got, &[qos0.clone(), qos1].concat());
    for (payload, qos) in got.iter().flatten() {
        let want = if qos0.contains(payload) {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        assert_eq!(*qos, want, "{payload} at the lesser of the two QoS");
    }
}

#[tokio::test]
async fn messages_published_while_every_member_is_offline_are_each_queued_for_one_member() {
    every_member_offline(config()).await;
}

#[tokio::test]
async fn with_persistence_messages_published_while_every_member_is_offline_are_each_queued_for_one_member()
 {
    let dir = tempfile::tempdir().unwrap();
    every_member_offline(config_persistent(dir.path())).await;
}

// --- Members that leave with messages in flight ---------------------------

/// How a member leaves.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// The connection drops, without DISCONNECT.
    Drop,
    /// DISCONNECT (normal disconnection), then the close.
    Disconnect,
}

/// A raw member that never acknowledges: Receive Maximum 2, Session Expiry
/// Interval `expiry`, in the group at QoS 1.
async fn lazy_member(broker: &TestBroker, id: &str, expiry: u32, clean_start: bool) -> RawClient {
    let mut connect = packets::connect(ProtocolVersion::V5, id);
    connect.clean_start = clean_start;
    connect.properties.receive_maximum = NonZeroU16::new(2);
    connect.properties.session_expiry_interval = Some(expiry);
    let (mut raw, _) = RawClient::connect(broker.addr, connect).await;
    raw.send(&Packet::Subscribe(packets::subscribe(
        1,
        &[(SHARE, mqtt_codec::QoS::AtLeastOnce)],
    )))
    .await
    .unwrap();
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    raw
}

/// Publishes 4 QoS 1 messages that only `lazy` can get: it receives 2
/// (its Receive Maximum) and does not acknowledge them; the other 2 wait
/// in its session. Returns the payloads.
async fn load_lazy(lazy: &mut RawClient, publisher: &mut Peer) -> Vec<String> {
    let sent = payloads("held", 4);
    publish_all(publisher, &sent, QoS::AtLeastOnce).await;
    for _ in 0..2 {
        match lazy.next(TIMEOUT).await {
            Received::Packet(Packet::Publish(p)) => {
                assert_eq!(p.qos, mqtt_codec::QoS::AtLeastOnce);
                assert!(sent.iter().any(|s| s.as_bytes() == &p.payload[..]));
            }
            other => panic!("PUBLISH expected, got {other:?}"),
        }
    }
    match lazy.next(QUIET).await {
        Received::TimedOut => {}
        other => panic!("nothing beyond Receive Maximum 2 expected, got {other:?}"),
    }
    sent
}

async fn leave(mut lazy: RawClient, how: Leave) {
    match how {
        Leave::Drop => drop(lazy),
        Leave::Disconnect => {
            lazy.send(&Packet::from(Disconnect::new(ReasonCode::Success)))
                .await
                .unwrap();
            let _ = lazy.expect_closed().await;
        }
    }
}

/// MQTT 5.0 §4.8.2: "If the Client's Session terminates before the Client
/// reconnects, the Server SHOULD send the Application Message to another
/// Client that is subscribed to the same Shared Subscription." A member
/// whose session ends with its connection (Session Expiry Interval 0)
/// leaves 2 messages received and not acknowledged and 2 not yet sent: the
/// connected member gets all 4, once each.
async fn session_end_hands_messages_to_connected_member(how: Leave) {
    let broker = TestBroker::start(config()).await;
    let mut lazy = lazy_member(&broker, "lazy", 0, true).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = load_lazy(&mut lazy, &mut publisher).await;
    let (mut good, _) = Peer::connect(options(broker.addr, "good")).await;
    join(&mut good).await;
    leave(lazy, how).await;
    let got = gather(&mut [&mut good], sent.len()).await;
    assert_each_once(&got, &sent);
    assert!(
        got[0].iter().all(|(_, q)| *q == QoS::AtLeastOnce),
        "{got:?}"
    );
}

#[tokio::test]
async fn unacknowledged_messages_of_a_member_whose_connection_drops_go_to_a_connected_member() {
    session_end_hands_messages_to_connected_member(Leave::Drop).await;
}

#[tokio::test]
async fn unacknowledged_messages_of_a_member_that_disconnects_ending_its_session_go_to_a_connected_member()
 {
    session_end_hands_messages_to_connected_member(Leave::Disconnect).await;
}

/// MQTT 5.0 §4.8.2: with no other member connected, the messages a leaving
/// member did not acknowledge are queued for an offline member of the
/// group, which gets them when it is back: not lost with the session.
#[tokio::test]
async fn unacknowledged_messages_of_a_leaving_member_are_queued_for_an_offline_member() {
    let broker = TestBroker::start(config()).await;
    let (mut later, _) = Peer::connect(persistent(&broker, "later", true)).await;
    join(&mut later).await;
    later.disconnect().await;
    wait_connected(&broker, 0).await;

    let mut lazy = lazy_member(&broker, "lazy", 0, true).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = load_lazy(&mut lazy, &mut publisher).await;
    drop(lazy);
    wait_connected(&broker, 1).await;

    let (mut later, ack) = Peer::connect(persistent(&broker, "later", false)).await;
    assert!(ack.session_present);
    let got = gather(&mut [&mut later], sent.len()).await;
    assert_each_once(&got, &sent);
}

/// MQTT 5.0 §4.8.2 lets the Server "attempt to send the message to another
/// Client as soon as it loses its connection to the first Client", even
/// when the session lives on: this broker does. A persistent member
/// (Session Expiry Interval 60 s) whose connection drops leaves its
/// unacknowledged messages to the connected member, and, back with its
/// session, does not get them again.
#[tokio::test]
async fn unacknowledged_messages_of_a_persistent_member_whose_connection_drops_go_to_a_connected_member()
 {
    let broker = TestBroker::start(config()).await;
    let mut lazy = lazy_member(&broker, "lazy", 60, true).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = load_lazy(&mut lazy, &mut publisher).await;
    let (mut good, _) = Peer::connect(options(broker.addr, "good")).await;
    join(&mut good).await;
    drop(lazy);
    let got = gather(&mut [&mut good], sent.len()).await;
    assert_each_once(&got, &sent);

    let mut connect = packets::connect(ProtocolVersion::V5, "lazy");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut lazy, ack) = RawClient::connect(broker.addr, connect).await;
    assert!(ack.session_present, "the session lived on");
    match lazy.next(QUIET).await {
        Received::TimedOut => {}
        other => panic!("nothing to resend, the messages went on: got {other:?}"),
    }
}

/// MQTT 5.0 §4.8.2: "If the Client's Session terminates before the Client
/// reconnects, the Server SHOULD send the Application Message to another
/// Client that is subscribed to the same Shared Subscription." Both
/// members offline, the messages are queued for one or the other; member
/// `a` then comes back with a clean start, which ends its session
/// (MQTT 5.0 §3.1.2.4) with what was queued for it: those messages should
/// go to `b`, which gets every message once back.
#[tokio::test]
async fn messages_queued_for_a_member_whose_session_ends_offline_go_to_another_member() {
    let broker = TestBroker::start(config()).await;
    for id in ["a", "b"] {
        let (mut m, _) = Peer::connect(persistent(&broker, id, true)).await;
        join(&mut m).await;
        m.disconnect().await;
    }
    wait_connected(&broker, 0).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = payloads("queued", 6);
    publish_all(&mut publisher, &sent, QoS::AtLeastOnce).await;

    let (mut a, ack) = Peer::connect(persistent(&broker, "a", true)).await;
    assert!(!ack.session_present, "a clean start ends the session");
    a.expect_no_publish(QUIET).await;
    let (mut b, ack) = Peer::connect(persistent(&broker, "b", false)).await;
    assert!(ack.session_present);
    let got = gather(&mut [&mut b], sent.len()).await;
    assert_each_once(&got, &sent);
}

// --- Mixed protocol versions ------------------------------------------------

/// What a 3.1.1 member has received: its events until none comes for 5 ms.
async fn drain_v4(member: &mut v4::Peer, into: &mut Vec<(String, QoS)>) {
    while let Some(e) = member.next_event(Duration::from_millis(5)).await {
        match e {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                let qos = match p.qos {
                    rumqttc::QoS::AtMostOnce => QoS::AtMostOnce,
                    rumqttc::QoS::AtLeastOnce => QoS::AtLeastOnce,
                    rumqttc::QoS::ExactlyOnce => QoS::ExactlyOnce,
                };
                into.push((String::from_utf8(p.payload.to_vec()).unwrap(), qos));
            }
            Ok(_) => {}
            Err(e) => panic!("the 3.1.1 member's connection failed: {e:?}"),
        }
    }
}

/// What a 3.1.1 member and a 5.0 member receive until they have `total`
/// messages between them, then [`QUIET`] with nothing more.
async fn gather_mixed(v311: &mut v4::Peer, v5: &mut Peer, total: usize) -> [Vec<(String, QoS)>; 2] {
    let mut got = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + TIMEOUT;
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "{total} messages expected within {TIMEOUT:?}, got {got:?}"
        );
        drain_v4(v311, &mut got[0]).await;
        got[1].extend(gather_now(v5).await);
    }
    v5.expect_no_publish(QUIET).await;
    v311.expect_no_publish(Duration::from_millis(1)).await;
    got
}

/// Joins the group at QoS 1 over MQTT 3.1.1.
async fn join_v4(member: &mut v4::Peer) {
    let ack = member.subscribe(SHARE, rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
}

/// The broker offers `$share/` to MQTT 3.1.1 clients too (as mosquitto
/// does), in the same groups as MQTT 5.0 clients: each message goes to
/// exactly one member, whichever its version (MQTT 5.0 §4.8.2), and both
/// take turns.
#[tokio::test]
async fn a_v311_and_a_v5_member_of_one_group_each_get_a_message_exactly_once() {
    let broker = TestBroker::start(config()).await;
    let (mut m311, _) = v4::Peer::connect(v4::options(broker.addr, "m311")).await;
    join_v4(&mut m311).await;
    let (mut m5, _) = Peer::connect(options(broker.addr, "m5")).await;
    join(&mut m5).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let sent = payloads("mixed", 10);
    publish_all(&mut publisher, &sent, QoS::AtLeastOnce).await;
    let got = gather_mixed(&mut m311, &mut m5, sent.len()).await;
    assert_each_once(&got, &sent);
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "both members take turns: 3.1.1 {:?}, 5.0 {:?}",
        names(&got[0]),
        names(&got[1])
    );
    assert!(got.iter().flatten().all(|(_, q)| *q == QoS::AtLeastOnce));
}

/// A 3.1.1 member with a persistent session (Clean Session 0) that is
/// offline gets none of what the connected 5.0 member of its group got
/// meanwhile (MQTT 5.0 §4.8.2), and takes its turn again once back.
#[tokio::test]
async fn an_offline_v311_member_gets_nothing_its_connected_v5_peer_received() {
    let broker = TestBroker::start(config()).await;
    let v311_options = || {
        let mut o = v4::options(broker.addr, "m311");
        o.set_clean_session(false);
        o
    };
    let (mut m311, _) = v4::Peer::connect(v311_options()).await;
    join_v4(&mut m311).await;
    m311.disconnect().await;
    wait_connected(&broker, 0).await;

    let (mut m5, _) = Peer::connect(options(broker.addr, "m5")).await;
    join(&mut m5).await;
    let (mut publisher, _) = Peer::connect(options(broker.addr, "pub")).await;
    let while_offline = payloads("offline", 6);
    publish_all(&mut publisher, &while_offline, QoS::AtLeastOnce).await;
    let got = gather(&mut [&mut m5], while_offline.len()).await;
    assert_each_once(&got, &while_offline);

    let (mut m311, ack) = v4::Peer::connect(v311_options()).await;
    assert!(ack.session_present, "the 3.1.1 session was kept");
    m311.expect_no_publish(QUIET).await;

    let both = payloads("both", 4);
    publish_all(&mut publisher, &both, QoS::AtLeastOnce).await;
    let got = gather_mixed(&mut m311, &mut m5, both.len()).await;
    assert_each_once(&got, &both);
    assert!(
        !got[0].is_empty(),
        "the returned 3.1.1 member takes its turn again: {got:?}"
    );
}
