//! The operator's console's JSON API, every endpoint, against the real
//! broker on 127.0.0.1:0 with real MQTT clients (rumqttc) making the
//! clients, sessions, subscriptions and retained messages it shows.
//! Refusals, logins, HTTPS and the bounds are in `admin_security.rs`.
#![allow(clippy::unwrap_used)]

mod admin_http;

use std::time::Duration;

use admin_http::{Console, config, ids};
use hyper::StatusCode;
use mqtt_testkit::{TIMEOUT, v4, v5};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, DisconnectReasonCode};
use rumqttc::v5::{ConnectionError, MqttOptions, StateError};
use serde_json::Value;

fn with_expiry(console: &Console, id: &str, expiry: u32) -> MqttOptions {
    let mut o = v5::options(console.broker.addr, id);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(expiry);
    o.set_connect_properties(props);
    o.set_clean_start(false);
    o
}

#[tokio::test]
async fn the_console_is_off_by_default() {
    let broker = mqtt_testkit::TestBroker::start(mqtt_testkit::TestBroker::config()).await;
    assert_eq!(broker.admin, None);
}

#[tokio::test]
async fn broker_information_and_counters() {
    let console = Console::start(config()).await;
    let info = console.get("/api/v1/broker").await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["listeners"][0]["kind"], "mqtt");
    assert_eq!(
        info["listeners"][0]["address"],
        console.broker.addr.to_string()
    );
    assert_eq!(info["limits"]["admin_max_page_size"], 1000);

    let (mut sub, _) = v5::Peer::connect(v5::options(console.broker.addr, "s")).await;
    sub.subscribe("c/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = v5::Peer::connect(v5::options(console.broker.addr, "p")).await;
    publisher
        .publish("c/1", QoS::AtLeastOnce, false, b"x")
        .await;
    sub.next_publish().await;
    let stats = console.get("/api/v1/stats").await.json();
    assert_eq!(stats["clients_connected"], 2);
    assert_eq!(stats["messages_received"], 1);
    assert_eq!(stats["messages_sent_by_qos"][1], 1);
    assert_eq!(stats["subscriptions"], 1);
    assert_eq!(stats["sessions"], 2);
    assert_eq!(stats["dropped"]["queue_full"], 0);
    if cfg!(target_os = "linux") {
        assert!(stats["memory_bytes"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn clients_are_listed_filtered_sorted_and_paged() {
    let console = Console::start(config()).await;
    let addr = console.broker.addr;
    let mut peers = Vec::new();
    for id in ["sensor-2", "sensor-1", "gateway"] {
        let mut o = v5::options(addr, id);
        if id == "gateway" {
            o.set_credentials("gw-user", "pw");
        }
        peers.push(v5::Peer::connect(o).await.0);
    }
    let (old, _) = v4::Peer::connect(v4::options(addr, "legacy")).await;

    let all = console.get("/api/v1/clients").await.json();
    assert_eq!(all["total"], 4);
    assert_eq!(all["limit"], 100);
    assert_eq!(ids(&all), ["gateway", "legacy", "sensor-1", "sensor-2"]);
    let gw = &all["items"][0];
    assert_eq!(gw["username"], "gw-user");
    assert_eq!(gw["protocol"], "5.0");
    assert_eq!(gw["keep_alive"], 30);
    assert_eq!(gw["connected"], true);
    assert_eq!(gw["listener"], format!("mqtt {addr}"));
    assert!(gw["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(all["items"][1]["protocol"], "3.1.1");

    let page = console
        .get("/api/v1/clients?client_id_prefix=sensor-")
        .await
        .json();
    assert_eq!(ids(&page), ["sensor-1", "sensor-2"]);
    let page = console.get("/api/v1/clients?username=gw-user").await.json();
    assert_eq!(ids(&page), ["gateway"]);
    let page = console
        .get("/api/v1/clients?address=127.0.0.1:&sort=client_id&order=desc")
        .await
        .json();
    assert_eq!(ids(&page), ["sensor-2", "sensor-1", "legacy", "gateway"]);
    let page = console.get("/api/v1/clients?address=10.").await.json();
    assert_eq!(page["total"], 0);
    let page = console.get("/api/v1/clients?offset=1&limit=2").await.json();
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(ids(&page), ["legacy", "sensor-1"]);
    let page = console.get("/api/v1/clients?offset=10").await.json();
    assert_eq!(ids(&page), Vec::<String>::new());
    let page = console.get("/api/v1/clients?sort=protocol").await.json();
    assert_eq!(ids(&page)[0], "legacy");

    old.disconnect().await;
    drop(peers);
}

#[tokio::test]
async fn a_clients_detail_has_its_protocol_subscriptions_and_queues() {
    let console = Console::start(config()).await;
    let (mut c, _) = v5::Peer::connect(v5::options(console.broker.addr, "dev/7")).await;
    c.subscribe("cmd/7/#", QoS::AtLeastOnce).await;
    c.subscribe("$share/g/jobs", QoS::AtMostOnce).await;
    // Client IDs with a slash travel percent-encoded.
    let d = console.get("/api/v1/clients/dev%2F7").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text());
    let d = d.json();
    assert_eq!(d["client_id"], "dev/7");
    assert_eq!(d["protocol"], "5.0");
    assert_eq!(d["keep_alive"], 30);
    assert_eq!(d["inflight"], 0);
    assert_eq!(d["queued"], 0);
    let subs = d["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["filter"], "$share/g/jobs");
    assert_eq!(subs[0]["shared"], true);
    assert_eq!(subs[1]["filter"], "cmd/7/#");
    assert_eq!(subs[1]["qos"], 1);

    let missing = console.get("/api/v1/clients/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.error().contains("nobody"), "{}", missing.error());
}

#[tokio::test]
async fn disconnecting_a_v5_client_sends_administrative_action_and_keeps_its_session() {
    let console = Console::start(config()).await;
    let (mut c, _) = v5::Peer::connect(with_expiry(&console, "kick-me", 300)).await;
    c.subscribe("k/#", QoS::AtLeastOnce).await;
    let answer = console.delete("/api/v1/clients/kick-me").await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    // rumqttc reports the broker's DISCONNECT as the end of its loop.
    match c.wait_error().await {
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
            assert_eq!(reason_code, DisconnectReasonCode::AdministrativeAction)
        }
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    console
        .poll_until("the client gone from the list", "/api/v1/clients", |v| {
            v["total"] == 0
        })
        .await;
    // Its session stays, offline, with its subscription.
    let sessions = console.get("/api/v1/sessions?connected=false").await.json();
    assert_eq!(ids(&sessions), ["kick-me"]);
    let s = &sessions["items"][0];
    assert_eq!(s["connected"], false);
    assert_eq!(s["expiry_interval"], 300);
    assert!(s["expires_in"].as_u64().unwrap() <= 300);
    let subs = console
        .get("/api/v1/subscriptions?client_id=kick-me")
        .await
        .json();
    assert_eq!(subs["total"], 1);

    // Gone: 404 naming it.
    let again = console.delete("/api/v1/clients/kick-me").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.error().contains("not connected"), "{}", again.error());
}

#[tokio::test]
async fn disconnecting_a_v311_client_closes_its_connection() {
    let console = Console::start(config()).await;
    let (mut c, _) = v4::Peer::connect(v4::options(console.broker.addr, "old")).await;
    assert_eq!(
        console.delete("/api/v1/clients/old").await.status,
        StatusCode::ACCEPTED
    );
    c.wait_error().await;
    console
        .poll_until("the client gone", "/api/v1/clients", |v| v["total"] == 0)
        .await;
}

#[tokio::test]
async fn sessions_offline_ones_included_and_deleting_one() {
    let console = Console::start(config()).await;
    let (mut gone, _) = v5::Peer::connect(with_expiry(&console, "offline-1", 600)).await;
    gone.subscribe("o/#", QoS::AtLeastOnce).await;
    gone.disconnect().await;
    let (_here, _) = v5::Peer::connect(with_expiry(&console, "online-1", 600)).await;
    console
        .poll_until("offline-1 offline", "/api/v1/sessions/offline-1", |v| {
            v["connected"] == false
        })
        .await;
    // A message for the offline session waits in its queue.
    let (mut p, _) = v5::Peer::connect(v5::options(console.broker.addr, "p")).await;
    p.publish("o/1", QoS::AtLeastOnce, false, b"later").await;
    let d = console.get("/api/v1/sessions/offline-1").await.json();
    assert_eq!(d["queued"], 1);
    assert_eq!(d["subscriptions"][0]["filter"], "o/#");

    let all = console.get("/api/v1/sessions").await.json();
    assert_eq!(ids(&all), ["offline-1", "online-1", "p"]);
    let page = console
        .get("/api/v1/sessions?connected=true&client_id_prefix=on")
        .await
        .json();
    assert_eq!(ids(&page), ["online-1"]);

    let refused = console.delete("/api/v1/sessions/online-1").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.error().contains("connected"), "{}", refused.error());
    assert_eq!(
        console.delete("/api/v1/sessions/offline-1").await.status,
        StatusCode::NO_CONTENT
    );
    let all = console.get("/api/v1/sessions").await.json();
    assert_eq!(ids(&all), ["online-1", "p"]);
    let subs = console.get("/api/v1/subscriptions").await.json();
    assert_eq!(
        subs["total"], 0,
        "its subscriptions left the router: {subs}"
    );
    assert_eq!(
        console.delete("/api/v1/sessions/offline-1").await.status,
        StatusCode::NOT_FOUND
    );
    // Resuming finds no session.
    let (_back, ack) = v5::Peer::connect(with_expiry(&console, "offline-1", 600)).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn subscriptions_by_client_and_by_filter() {
    let console = Console::start(config()).await;
    let addr = console.broker.addr;
    let (mut a, _) = v5::Peer::connect(v5::options(addr, "a")).await;
    let (mut b, _) = v5::Peer::connect(v5::options(addr, "b")).await;
    a.subscribe("t/#", QoS::AtLeastOnce).await;
    a.subscribe("$share/grp/t/+", QoS::AtMostOnce).await;
    b.subscribe("t/#", QoS::ExactlyOnce).await;

    let all = console.get("/api/v1/subscriptions").await.json();
    assert_eq!(all["total"], 3);
    let by_filter = console
        .get("/api/v1/subscriptions?filter=t/%23")
        .await
        .json();
    let rows: Vec<(Value, Value)> = by_filter["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["client_id"].clone(), s["qos"].clone()))
        .collect();
    assert_eq!(
        rows,
        [("a".into(), 1.into()), ("b".into(), 2.into())] as [(Value, Value); 2]
    );
    let shared = console
        .get("/api/v1/subscriptions?filter=$share/grp/t/%2B")
        .await
        .json();
    assert_eq!(shared["items"][0]["shared"], true);
    assert_eq!(shared["items"][0]["client_id"], "a");
    let of_b = console
        .get("/api/v1/subscriptions?client_id=b")
        .await
        .json();
    assert_eq!(of_b["total"], 1);
    let page = console
        .get("/api/v1/subscriptions?limit=1&offset=2")
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn retained_messages_listed_read_and_deleted() {
    let console = Console::start(config()).await;
    let addr = console.broker.addr;
    let (mut p, _) = v5::Peer::connect(v5::options(addr, "p")).await;
    p.publish("home/kitchen/temp", QoS::AtLeastOnce, true, b"21.5")
        .await;
    p.publish("home/hall/temp", QoS::AtLeastOnce, true, &[0xff, 0x00])
        .await;
    p.publish("/leading", QoS::AtLeastOnce, true, b"slash")
        .await;
    p.publish("big", QoS::AtLeastOnce, true, &vec![b'x'; 1000])
        .await;

    let list = console
        .get("/api/v1/retained?filter=home/%2B/temp")
        .await
        .json();
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["topic"], "home/hall/temp");
    assert_eq!(list["items"][0]["payload_encoding"], "base64");
    assert_eq!(list["items"][0]["payload"], "/wA=");
    assert_eq!(list["items"][1]["payload"], "21.5");
    assert_eq!(list["items"][1]["qos"], 1);
    let all = console.get("/api/v1/retained").await.json();
    assert_eq!(all["total"], 4);
    let big = &all["items"][1];
    assert_eq!(
        (big["topic"].as_str(), big["size"].as_u64()),
        (Some("big"), Some(1000))
    );
    assert_eq!(big["truncated"], true);
    assert_eq!(big["payload"].as_str().unwrap().len(), 256);

    let one = console.get("/api/v1/retained/big").await.json();
    assert_eq!(one["payload"].as_str().unwrap().len(), 1000);
    assert_eq!(one["truncated"], false);
    let slash = console.get("/api/v1/retained//leading").await;
    assert_eq!(slash.status, StatusCode::OK, "{}", slash.text());
    assert_eq!(slash.json()["topic"], "/leading");

    // A subscriber sees nothing of the deletion, and gets no retained
    // message after it.
    let (mut sub, _) = v5::Peer::connect(v5::options(addr, "s")).await;
    sub.subscribe("home/kitchen/temp", QoS::AtLeastOnce).await;
    assert_eq!(&sub.next_publish().await.payload[..], b"21.5");
    assert_eq!(
        console
            .delete("/api/v1/retained/home/kitchen/temp")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    sub.expect_no_publish(Duration::from_millis(200)).await;
    let gone = console.get("/api/v1/retained/home/kitchen/temp").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.error().contains("home/kitchen/temp"));
    assert_eq!(
        console
            .delete("/api/v1/retained/home/kitchen/temp")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (mut late, _) = v5::Peer::connect(v5::options(addr, "late")).await;
    late.subscribe("home/#", QoS::AtLeastOnce).await;
    assert_eq!(&late.next_publish().await.topic[..], b"home/hall/temp");
    late.expect_no_publish(Duration::from_millis(200)).await;
    let stats = console.get("/api/v1/stats").await.json();
    assert_eq!(stats["retained_messages"], 3);
}

#[tokio::test]
async fn publishing_from_the_console_reaches_subscribers() {
    let console = Console::start(config()).await;
    let addr = console.broker.addr;
    let (mut sub, _) = v5::Peer::connect(v5::options(addr, "s")).await;
    sub.subscribe("ops/#", QoS::AtLeastOnce).await;
    let answer = console
        .post(
            "/api/v1/publish",
            r#"{"topic": "ops/hello", "payload": "hi there", "qos": 1}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["matched"], 1);
    let got = sub.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"ops/hello"[..], &b"hi there"[..])
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);

    let answer = console
        .post(
            "/api/v1/publish",
            r#"{"topic": "ops/bin", "payload": "/wE=", "payload_encoding": "base64", "retain": true}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(&sub.next_publish().await.payload[..], &[0xff, 1]);
    let kept = console.get("/api/v1/retained/ops/bin").await.json();
    assert_eq!(
        (kept["payload"].as_str(), kept["payload_encoding"].as_str()),
        (Some("/wE="), Some("base64"))
    );
}

#[tokio::test]
async fn server_sent_events_carry_history_then_samples() {
    use http_body_util::BodyExt;
    let console = Console::start(config()).await;
    let stream = tokio::net::TcpStream::connect(console.addr).await.unwrap();
    let (status, headers, mut body) = admin_http::send_on(
        stream,
        "GET",
        "/api/v1/events",
        Some(admin_http::TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let (_c, _) = v5::Peer::connect(v5::options(console.broker.addr, "watched")).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    // The first event is the history; samples follow, one a second, until
    // one counts the client.
    while !text
        .split("\n\n")
        .filter(|e| e.contains("event: sample"))
        .any(|e| e.contains("\"connections\":1"))
    {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("a sample counting the client within the timeout")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.starts_with("event: history\ndata: ["), "{text}");
    let sample = text
        .split("\n\n")
        .find(|e| e.starts_with("event: sample"))
        .unwrap();
    let json: Value = serde_json::from_str(sample.split_once("data: ").unwrap().1).unwrap();
    for key in [
        "t",
        "received",
        "sent",
        "queued",
        "sessions",
        "memory_bytes",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert!(json["dropped"]["queue_full"].is_u64());
}

#[tokio::test]
async fn reload_reads_the_password_and_acl_files_again() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\n").unwrap();
    let console = Console::start(mqtt_server::Config {
        acl_file: Some(acl.clone()),
        ..config()
    })
    .await;
    let ok = console.post("/api/v1/reload", "").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["reloaded"], true);
    std::fs::write(&acl, "topic bogus #\n").unwrap();
    let bad = console.post("/api/v1/reload", "").await.json();
    assert_eq!(bad["reloaded"], false);
    let error = bad["errors"][0].as_str().unwrap();
    assert!(error.contains(acl.to_str().unwrap()), "{error}");
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary() {
    let console = Console::start(config()).await;
    // No token needed for the page itself: it holds no data.
    let page = admin_http::request(console.addr, "GET", "/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(
        page.text().contains("<script src=\"app.js\""),
        "{}",
        page.text()
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/charts.js", "text/javascript"),
        ("/mqtt.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let a = admin_http::request(console.addr, "GET", path, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(a.body.len() > 100, "{path} is not empty");
        assert!(
            !a.text().contains("http://") && !a.text().contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let missing = admin_http::request(console.addr, "GET", "/nope.js", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let api = console.get("/api/v1/nope").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.error().contains("/api/v1/nope"));
}
