//! Bridges against real brokers on 127.0.0.1: a mosquitto started by each
//! test (`/usr/sbin/mosquitto`; the tests are skipped, saying so, where it
//! is not installed), and brokers of ours. Independent clients: rumqttc
//! ([`Collector`]) and the scripted [`RawClient`].
//!
//! The crash test (this broker killed with SIGKILL in the middle of a
//! stream) runs the real `mqtt` binary: `mqtt-cli/tests/bridge_crash.rs`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use mqtt_codec::{ProtocolVersion, QoS};
use mqtt_testkit::mosquitto::{Mosquitto, free_port};
use mqtt_testkit::{Collected, Collector, RawClient, TestBroker, packets};

#[path = "bridge/support.rs"]
mod support;
use support::*;

/// Messages at QoS 0, 1 and 2 cross the bridge each way, with the local
/// prefix replaced by the remote one and back, each exactly once, at the
/// QoS they were published with; a retained message stays retained at the
/// remote broker.
async fn both_ways_remapped(protocol: &str, dir: &Path) {
    let mosquitto = Mosquitto::start(&dir.join("mosquitto"), "", &[]);
    let broker = TestBroker::start(config(&format!(
        r##"
        [[bridge]]
        name = "m"
        address = "{}"
        protocol = "{protocol}"
        client_id = "ours"
        keep_alive = 5
        reconnect_delay_min_ms = 50
        reconnect_delay_max_ms = 500
        [[bridge.topic]]
        pattern = "#"
        direction = "out"
        qos = 2
        local_prefix = "up/"
        remote_prefix = "edge/up/"
        [[bridge.topic]]
        pattern = "#"
        direction = "in"
        qos = 2
        local_prefix = "down/"
        remote_prefix = "edge/down/"
        "##,
        mosquitto.addr
    )))
    .await;
    wait_connected(broker.addr, "m").await;

    // Out: published here under up/, received there under edge/up/.
    let remote_sub = Collector::start(
        mosquitto.addr,
        "remote-sub",
        true,
        "edge/up/#",
        QoS::ExactlyOnce,
    )
    .await;
    let (mut local_pub, _) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "local-pub"),
    )
    .await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publish(
            &mut local_pub,
            &format!("up/q{i}"),
            &format!("out{i}"),
            qos,
            10 + i as u16,
        )
        .await;
    }
    let got = remote_sub
        .wait_until("3 messages out", LONG, |r| r.len() >= 3)
        .await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let m = got
            .iter()
            .find(|m| m.payload == format!("out{i}"))
            .unwrap_or_else(|| panic!("out{i} not received: {got:?}"));
        assert_eq!(m.topic, format!("edge/up/q{i}"));
        assert_eq!(m.qos, qos, "out{i} crossed at its QoS");
    }
    // A retained message is retained there: a new subscriber gets it.
    publish_retained(
        &mut local_pub,
        "up/kept",
        "retained",
        QoS::AtLeastOnce,
        20,
        true,
    )
    .await;
    let late = Collector::start(
        mosquitto.addr,
        "late",
        true,
        "edge/up/kept",
        QoS::AtLeastOnce,
    )
    .await;
    let got = late
        .wait_until("the retained message", LONG, |r| !r.is_empty())
        .await;
    assert!(got[0].retain && got[0].payload == "retained", "{got:?}");

    // In: published there under edge/down/, received here under down/.
    let local_sub =
        Collector::start(broker.addr, "local-sub", true, "down/#", QoS::ExactlyOnce).await;
    let (mut remote_pub, _) = RawClient::connect(
        mosquitto.addr,
        packets::connect(ProtocolVersion::V3_1_1, "remote-pub"),
    )
    .await;
    probe(&mut remote_pub, "edge/down/probe", &local_sub).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publish(
            &mut remote_pub,
            &format!("edge/down/q{i}"),
            &format!("in{i}"),
            qos,
            30 + i as u16,
        )
        .await;
    }
    let got = local_sub
        .wait_until("3 messages in", LONG, |r| {
            (0..3).all(|i| r.iter().any(|m| m.payload == format!("in{i}")))
        })
        .await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let m = got.iter().find(|m| m.payload == format!("in{i}")).unwrap();
        assert_eq!(m.topic, format!("down/q{i}"));
        assert_eq!(m.qos, qos, "in{i} crossed at its QoS");
    }
    // Exactly once each way (QoS 0 and 1 too, on a quiet loopback).
    let quiet = tokio::time::sleep(Duration::from_millis(300));
    quiet.await;
    let out = counts(&remote_sub.received());
    assert!(out.values().all(|&n| n == 1), "out: {out:?}");
    let inn = counts(&local_sub.received());
    assert!(
        inn.iter().all(|(p, &n)| n == 1 || p == "probe"),
        "in: {inn:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_both_ways_remapped_at_every_qos_over_mqtt_3_1_1() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    both_ways_remapped("3.1.1", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_both_ways_remapped_at_every_qos_over_mqtt_5() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    both_ways_remapped("5.0", dir.path()).await;
}

/// mosquitto stopped in the middle of a QoS 1 stream and started again a
/// moment later: every message our publisher got PUBACK for reaches the
/// remote subscriber (a persistent session there), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_stream_survives_the_remote_broker_restarting() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut mosquitto = Mosquitto::start(&dir.path().join("mosquitto"), "", &[]);
    let broker = TestBroker::start(config(&format!(
        r##"
        [[bridge]]
        name = "m"
        address = "{}"
        keep_alive = 5
        reconnect_delay_min_ms = 50
        reconnect_delay_max_ms = 300
        max_queued_messages = 10000
        [[bridge.topic]]
        pattern = "stream/#"
        qos = 1
        remote_prefix = "site/"
        "##,
        mosquitto.addr
    )))
    .await;
    wait_connected(broker.addr, "m").await;
    let sub = Collector::start(
        mosquitto.addr,
        "persistent-sub",
        false,
        "site/stream/#",
        QoS::AtLeastOnce,
    )
    .await;
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "pub")).await;
    let total = 600u16;
    for i in 1..=total {
        publish(
            &mut publisher,
            "stream/1",
            &format!("m{i}"),
            QoS::AtLeastOnce,
            i,
        )
        .await;
        if i == 200 {
            mosquitto.stop();
        }
        if i == 400 {
            mosquitto.restart();
        }
    }
    let got = sub
        .wait_until("every acknowledged message", LONG, |r| {
            let c = counts(r);
            (1..=total).all(|i| c.contains_key(&format!("m{i}")))
        })
        .await;
    // In order: the first arrival of each comes after the one before.
    let firsts: Vec<u16> = {
        let mut seen = std::collections::HashSet::new();
        got.iter()
            .filter(|m| seen.insert(m.payload.clone()))
            .map(|m| m.payload[1..].parse().unwrap())
            .collect()
    };
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "out of order");
}

/// Two brokers of ours, the first bridged to the second with one `both`
/// rule: a message published on either reaches the subscribers of both
/// exactly once, and never comes back (MQTT 3.1.1 with the bridge bit, and
/// 5.0 with No Local).
async fn no_loop(protocol: &str) {
    let metrics = free_port();
    let b = TestBroker::start(TestBroker::config()).await;
    let mut a_config = config(&format!(
        r##"
        metrics_listen = "127.0.0.1:{metrics}"
        [[bridge]]
        name = "ab"
        address = "{}"
        protocol = "{protocol}"
        keep_alive = 5
        reconnect_delay_min_ms = 50
        [[bridge.topic]]
        pattern = "loop/#"
        direction = "both"
        qos = 1
        "##,
        b.addr
    ));
    a_config.sys_interval = 0;
    let a = TestBroker::start(a_config).await;
    wait_connected(a.addr, "ab").await;
    let on_a = Collector::start(a.addr, "on-a", true, "loop/#", QoS::AtLeastOnce).await;
    let on_b = Collector::start(b.addr, "on-b", true, "loop/#", QoS::AtLeastOnce).await;
    let (mut pub_a, _) =
        RawClient::connect(a.addr, packets::connect(ProtocolVersion::V5, "pa")).await;
    let (mut pub_b, _) =
        RawClient::connect(b.addr, packets::connect(ProtocolVersion::V3_1_1, "pb")).await;
    // B's subscription of the bridge is in place once a probe crosses.
    probe(&mut pub_b, "loop/probe", &on_a).await;
    let n = 20;
    for i in 1..=n {
        publish(&mut pub_a, "loop/a", &format!("a{i}"), QoS::AtLeastOnce, i).await;
        publish(&mut pub_b, "loop/b", &format!("b{i}"), QoS::AtLeastOnce, i).await;
    }
    let all = |r: &[Collected]| {
        let c = counts(r);
        (1..=n).all(|i| c.contains_key(&format!("a{i}")) && c.contains_key(&format!("b{i}")))
    };
    on_a.wait_until("everything on A", LONG, all).await;
    on_b.wait_until("everything on B", LONG, all).await;
    // A loop would go on forever: what crossed is counted exactly, and
    // stays so.
    let sent = "mqtt_bridge_messages_sent_total{bridge=\"ab\"}";
    let received = "mqtt_bridge_messages_received_total{bridge=\"ab\"}";
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(metrics, sent).await, u64::from(n), "A to B");
    // The probes (one or more) crossed from B too.
    let probes = counts(&on_a.received())["probe"] as u64;
    assert_eq!(
        metric(metrics, received).await,
        u64::from(n) + probes,
        "B to A"
    );
    for (side, sub) in [("A", &on_a), ("B", &on_b)] {
        let c = counts(&sub.received());
        for i in 1..=n {
            for p in [format!("a{i}"), format!("b{i}")] {
                assert_eq!(c[&p], 1, "{p} on {side}: {c:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_bridged_both_ways_do_not_loop_over_mqtt_3_1_1() {
    no_loop("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_bridged_both_ways_do_not_loop_over_mqtt_5() {
    no_loop("5.0").await;
}

/// A bridge to mosquitto over TLS, mosquitto asking for the bridge's
/// certificate: the certificates are made here (rcgen), a CA signing both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_over_tls_with_a_client_certificate() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, sans: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("mosquitto", vec!["localhost".into()]);
    let (client_cert, client_key) = leaf("bridge", vec!["bridge".into()]);
    for (name, pem) in [
        ("ca.crt", ca.pem()),
        ("server.crt", server_cert),
        ("server.key", server_key),
        ("client.crt", client_cert),
        ("client.key", client_key),
    ] {
        std::fs::write(d.join(name), pem).unwrap();
    }
    let tls_port = free_port();
    let mosquitto = Mosquitto::start(
        &d.join("mosquitto"),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\nrequire_certificate true\n",
            ca = d.join("ca.crt").display(),
            crt = d.join("server.crt").display(),
            key = d.join("server.key").display(),
        ),
        &[tls_port],
    );
    let broker = TestBroker::start(config(&format!(
        r##"
        [[bridge]]
        name = "tls"
        address = "127.0.0.1:{tls_port}"
        protocol = "5.0"
        cafile = "{ca}"
        certfile = "{crt}"
        keyfile = "{key}"
        server_name = "localhost"
        reconnect_delay_min_ms = 50
        reconnect_delay_max_ms = 500
        [[bridge.topic]]
        pattern = "secure/#"
        direction = "both"
        qos = 1
        "##,
        ca = d.join("ca.crt").display(),
        crt = d.join("client.crt").display(),
        key = d.join("client.key").display(),
    )))
    .await;
    wait_connected(broker.addr, "tls").await;
    let remote_sub =
        Collector::start(mosquitto.addr, "rs", true, "secure/#", QoS::AtLeastOnce).await;
    let local_sub = Collector::start(broker.addr, "ls", true, "secure/#", QoS::AtLeastOnce).await;
    let (mut local_pub, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "lp")).await;
    publish(
        &mut local_pub,
        "secure/out",
        "over tls",
        QoS::AtLeastOnce,
        1,
    )
    .await;
    remote_sub
        .wait_until("the message over TLS", LONG, |r| {
            r.iter()
                .any(|m| m.payload == "over tls" && m.topic == "secure/out")
        })
        .await;
    let (mut remote_pub, _) =
        RawClient::connect(mosquitto.addr, packets::connect(ProtocolVersion::V5, "rp")).await;
    probe(&mut remote_pub, "secure/probe", &local_sub).await;
    publish(
        &mut remote_pub,
        "secure/in",
        "back over tls",
        QoS::AtLeastOnce,
        2,
    )
    .await;
    local_sub
        .wait_until("the message back over TLS", LONG, |r| {
            r.iter().any(|m| m.payload == "back over tls")
        })
        .await;
}

/// While the remote broker cannot be reached, messages for it wait in the
/// bridge's queue, within its own limit (the drops counted), and the state
/// is 0; once it listens they are all delivered, and the state is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_an_unreachable_remote_within_the_bridges_queue() {
    if !have_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    // A persistent subscriber there, then mosquitto stopped: nothing
    // listens on its port. (The subscriber reconnects by itself later.)
    let mut mosquitto = Mosquitto::start(&dir.path().join("mosquitto"), "", &[]);
    let sub = Collector::start(mosquitto.addr, "s", false, "q/#", QoS::AtLeastOnce).await;
    mosquitto.stop();
    let broker = TestBroker::start(config(&format!(
        r##"
        metrics_listen = "127.0.0.1:{metrics}"
        sys_interval = 1
        [[bridge]]
        name = "later"
        address = "{}"
        fallback_addresses = ["127.0.0.1:{}"]
        reconnect_delay_min_ms = 50
        reconnect_delay_max_ms = 200
        max_queued_messages = 5
        [[bridge.topic]]
        pattern = "q/#"
        qos = 1
        "##,
        mosquitto.addr,
        free_port()
    )))
    .await;
    let (mut publisher, _) =
        RawClient::connect(broker.addr, packets::connect(ProtocolVersion::V5, "p")).await;
    for i in 1..=8 {
        publish(&mut publisher, "q/t", &format!("m{i}"), QoS::AtLeastOnce, i).await;
    }
    let label = "{bridge=\"later\"}";
    assert_eq!(metric(metrics, &format!("mqtt_bridge_up{label}")).await, 0);
    assert_eq!(
        metric(metrics, &format!("mqtt_bridge_queued_messages{label}")).await,
        5
    );
    assert_eq!(
        metric(
            metrics,
            &format!("mqtt_bridge_messages_dropped_total{label}")
        )
        .await,
        3,
        "drop_newest: the last three"
    );
    let state = Collector::start(
        broker.addr,
        "st",
        true,
        "$SYS/broker/connection/later/state",
        QoS::AtMostOnce,
    )
    .await;
    state
        .wait_until("state 0", LONG, |r| {
            r.last().is_some_and(|m| m.payload == "0")
        })
        .await;
    wait_metric(
        metrics,
        &format!("mqtt_bridge_reconnects_total{label}"),
        |n| n >= 1,
    )
    .await;
    // The same counters in $SYS, beside the state.
    let sys = Collector::start(
        broker.addr,
        "sys",
        true,
        "$SYS/broker/connection/later/#",
        QoS::AtMostOnce,
    )
    .await;
    sys.wait_until("the bridge's $SYS counters", LONG, |r| {
        let has = |t: &str, v: &str| {
            r.iter()
                .any(|m| m.topic == format!("$SYS/broker/connection/later/{t}") && m.payload == v)
        };
        has("messages/queued", "5") && has("messages/dropped", "3") && has("messages/sent", "0")
    })
    .await;

    mosquitto.restart();
    state
        .wait_until("state 1", LONG, |r| {
            r.last().is_some_and(|m| m.payload == "1")
        })
        .await;
    let got = sub
        .wait_until("the queued messages", LONG, |r| counts(r).len() >= 5)
        .await;
    let c = counts(&got);
    assert_eq!(
        c.keys().cloned().collect::<Vec<_>>(),
        ["m1", "m2", "m3", "m4", "m5"],
        "the first five, kept"
    );
}

/// No client may take a bridge's session: client identifiers starting
/// with `$bridge/` are refused (0x85).
#[tokio::test]
async fn client_ids_of_bridges_are_refused() {
    let broker = TestBroker::start(TestBroker::config()).await;
    let (_, ack) = RawClient::connect(
        broker.addr,
        packets::connect(ProtocolVersion::V5, "$bridge/cloud"),
    )
    .await;
    assert_eq!(
        ack.reason_code,
        mqtt_codec::ReasonCode::ClientIdentifierNotValid
    );
}

/// A bridge removed from the configuration: at the next start, its stored
/// session, with the messages it held for its remote broker, is ended (no
/// one would ever send them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_of_a_bridge_no_longer_configured_is_ended() {
    use mqtt_store::Store;

    let store = std::sync::Arc::new(mqtt_store::MemoryStore::new());
    let clock = || mqtt_store::Clock::new(std::time::Instant::now(), std::time::SystemTime::now());
    let mut first = TestBroker::start_with_store(
        config(&format!(
            r##"
            [[bridge]]
            name = "old"
            address = "127.0.0.1:{}"
            [[bridge.topic]]
            pattern = "t/#"
            qos = 1
            "##,
            free_port()
        )),
        store.clone(),
    )
    .await;
    let (mut publisher, _) =
        RawClient::connect(first.addr, packets::connect(ProtocolVersion::V5, "p")).await;
    publish(&mut publisher, "t/x", "kept", QoS::AtLeastOnce, 1).await;
    first.stop(LONG).await;
    let stored = store.load_session("$bridge/old", clock()).unwrap();
    assert_eq!(
        stored.map(|s| s.state.queued.len()),
        Some(1),
        "queued for the bridge"
    );

    let _second = TestBroker::start_with_store(TestBroker::config(), store.clone()).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while store
        .load_session("$bridge/old", clock())
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old bridge's session stays"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An MQTT 3.1.1 broker that refuses mosquitto's bridge bit (CONNACK 1,
/// unacceptable protocol version) is tried again without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_refuses_the_bridge_bit_is_tried_without_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker = TestBroker::start(config(&format!(
        r##"
        [[bridge]]
        name = "plain"
        address = "{}"
        reconnect_delay_min_ms = 50
        [[bridge.topic]]
        pattern = "t/#"
        "##,
        listener.local_addr().unwrap()
    )))
    .await;
    let (mut first, connect) = accept_connect(&listener).await;
    assert!(connect.bridge, "try_private sets the bridge bit");
    connack(
        &mut first,
        mqtt_codec::ReasonCode::UnsupportedProtocolVersion,
    )
    .await;
    let (mut second, connect) = accept_connect(&listener).await;
    assert!(!connect.bridge, "tried again without the bridge bit");
    assert_eq!(connect.protocol, ProtocolVersion::V3_1_1);
    connack(&mut second, mqtt_codec::ReasonCode::Success).await;
    wait_connected(broker.addr, "plain").await;
    drop(first);
}

/// A TLS file a bridge names that cannot be read stops the start, with an
/// error naming the bridge, the key and the file.
#[tokio::test]
async fn a_missing_tls_file_is_an_error_naming_the_key() {
    let mut c = config(
        r##"
        [[bridge]]
        name = "secure"
        address = "127.0.0.1:8883"
        cafile = "/nonexistent/ca.crt"
        [[bridge.topic]]
        pattern = "#"
        "##,
    );
    c.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    let err = mqtt_server::Server::bind(c).await.err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("secure") && text.contains("bridge.cafile /nonexistent/ca.crt"),
        "{text}"
    );
}

#[path = "admin_http/mod.rs"]
mod admin_http;

/// The operator's console sees a bridge's session as a connected client:
/// the bridge answers what it has in flight, a disconnect makes it
/// reconnect, and its session cannot be discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sees_a_bridge_and_may_make_it_reconnect() {
    let remote = TestBroker::start(TestBroker::config()).await;
    let mut c = admin_http::config();
    c.bridges = config(&format!(
        r##"
        [[bridge]]
        name = "ops"
        address = "{}"
        reconnect_delay_min_ms = 50
        [[bridge.topic]]
        pattern = "t/#"
        "##,
        remote.addr
    ))
    .bridges;
    let console = admin_http::Console::start(c).await;
    wait_connected(console.broker.addr, "ops").await;
    let path = "/api/v1/clients/%24bridge%2Fops";
    let client = console.get(path).await;
    assert!(client.status.is_success(), "{}", client.text());
    assert_eq!(client.json()["inflight"], 0, "the bridge answered");
    let discard = console.delete("/api/v1/sessions/%24bridge%2Fops").await;
    assert!(discard.status.is_client_error(), "a connected session");
    let state = Collector::start(
        console.broker.addr,
        "state",
        true,
        "$SYS/broker/connection/ops/state",
        QoS::AtMostOnce,
    )
    .await;
    assert!(console.delete(path).await.status.is_success());
    state
        .wait_until("down, then up again", LONG, |r| {
            let p: Vec<&str> = r.iter().map(|m| m.payload.as_str()).collect();
            p.windows(2).any(|w| w == ["0", "1"])
        })
        .await;
}
