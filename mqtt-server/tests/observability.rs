//! Prometheus metrics over HTTP and `$SYS/broker/...` topics, seen from
//! outside: an HTTP client on a real socket and rumqttc subscribers.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;

use mqtt_server::{Config, Server, ShutdownHandle};
use mqtt_testkit::{TIMEOUT, v5};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Broker {
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    shutdown: ShutdownHandle,
}

impl Broker {
    async fn start(mut config: Config) -> Broker {
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let server = Server::bind(config).await.expect("the broker binds");
        let broker = Broker {
            addr: server.local_addrs()[0],
            metrics: server.metrics_addr(),
            shutdown: server.shutdown_handle(),
        };
        tokio::spawn(server.run());
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

fn with_metrics() -> Config {
    Config {
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::default()
    }
}

/// One HTTP request; the status line and the body.
async fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut response))
        .await
        .expect("the response within the timeout")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let status = head.lines().next().unwrap().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            // Header names are case-insensitive [RFC 9110 §5.1].
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then_some(value.trim())
        })
        .expect("Content-Length")
        .parse()
        .unwrap();
    if !request.starts_with("HEAD ") {
        assert_eq!(length, body.len(), "Content-Length is the body's length");
    }
    (status, body.to_owned())
}

/// Scrapes `/metrics` and parses every sample line, `name{labels} value`,
/// into a map from `name{labels}` to value.
async fn scrape(broker: &Broker) -> HashMap<String, f64> {
    let (status, body) = http(
        broker.metrics.unwrap(),
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut samples = HashMap::new();
    for line in body.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, Some(rest.strip_suffix('}').expect("labels end with }"))),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "metric name in {line:?}"
        );
        for label in labels.into_iter().flat_map(|l| l.split(',')) {
            let (k, v) = label.split_once('=').expect("label=value");
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            assert!(
                v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                "{line:?}"
            );
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} appears twice"
        );
    }
    samples
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} not in the metrics"))
}

#[tokio::test]
async fn metrics_are_served_and_counters_increase_after_a_publish() {
    let broker = Broker::start(with_metrics()).await;
    let before = scrape(&broker).await;
    for series in [
        "mqtt_connections_current",
        "mqtt_connections_total",
        "mqtt_connections_refused_total{reason=\"max_connections\"}",
        "mqtt_auth_failures_total{reason=\"bad_credentials\"}",
        "mqtt_handshake_failures_total{reason=\"error\"}",
        "mqtt_handshake_failures_total{reason=\"timeout\"}",
        "mqtt_messages_dropped_total{reason=\"queue_full\"}",
        "mqtt_queued_messages",
        "mqtt_store_commit_seconds_count",
        "mqtt_uptime_seconds",
    ] {
        get(&before, series);
    }
    assert_eq!(get(&before, "mqtt_connections_current"), 0.0);

    let (mut sub, _) = v5::Peer::connect(v5::options(broker.addr, "sub")).await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = v5::Peer::connect(v5::options(broker.addr, "pub")).await;
    publisher
        .publish("m/1", QoS::AtLeastOnce, false, b"hello")
        .await;
    sub.next_publish().await;

    let after = scrape(&broker).await;
    assert_eq!(get(&after, "mqtt_connections_current"), 2.0);
    assert!(get(&after, "mqtt_connections_total") >= 2.0);
    let increased = |series: &str| {
        assert!(
            get(&after, series) > get(&before, series),
            "{series} did not increase"
        );
    };
    increased("mqtt_messages_received_total{qos=\"1\"}");
    increased("mqtt_messages_sent_total{qos=\"1\"}");
    increased("mqtt_publish_bytes_received_total{qos=\"1\"}");
    increased("mqtt_messages_routed_total");
    increased("mqtt_bytes_received_total");
    assert_eq!(
        get(&after, "mqtt_publish_bytes_received_total{qos=\"1\"}")
            - get(&before, "mqtt_publish_bytes_received_total{qos=\"1\"}"),
        (b"m/1".len() + b"hello".len()) as f64
    );
    assert_eq!(
        get(&after, "mqtt_messages_received_total{qos=\"0\"}"),
        get(&before, "mqtt_messages_received_total{qos=\"0\"}")
    );
}

#[tokio::test]
async fn the_metrics_listener_answers_only_get_metrics() {
    let broker = Broker::start(with_metrics()).await;
    let addr = broker.metrics.unwrap();
    let (status, _) = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // An HTTP/1.0 request is answered in HTTP/1.0.
    let (status, body) = http(addr, "HEAD /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(body.is_empty());
}

/// With `metrics_token`, only a request bearing it is served; others get
/// 401 with the scheme named, whatever the path.
#[tokio::test]
async fn metrics_token_is_required_when_set() {
    let broker = Broker::start(Config {
        metrics_token: Some("s3cret-Token".into()),
        ..with_metrics()
    })
    .await;
    let addr = broker.metrics.unwrap();
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret-Toke\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nAuthorization: Basic s3cret-Token\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ] {
        let (status, _) = http(addr, request).await;
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{request:?}");
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(
        raw.to_ascii_lowercase()
            .contains("\r\nwww-authenticate: bearer\r\n"),
        "{raw}"
    );
    let (status, body) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization:  bearer s3cret-Token\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("mqtt_connections_current"));
    // A token with a space could not be sent: refused at startup.
    let bad = Config {
        metrics_token: Some("two words".into()),
        ..with_metrics()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("metrics_token")
    );
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let broker = Broker::start(Config::default()).await;
    assert_eq!(broker.metrics, None);
}

#[tokio::test]
async fn sys_topics_report_connected_clients() {
    let broker = Broker::start(Config {
        sys_interval: 1,
        ..Config::default()
    })
    .await;
    let (mut sub, _) = v5::Peer::connect(v5::options(broker.addr, "watcher")).await;
    sub.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    // The retained value from before this client connected may come
    // first; the next update counts it.
    loop {
        let p = sub.next_publish().await;
        assert_eq!(&p.topic[..], b"$SYS/broker/clients/connected");
        if &p.payload[..] == b"1" {
            break;
        }
    }
    sub.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"$SYS/broker/version");
    assert!(p.retain, "$SYS values are retained");
    assert!(
        std::str::from_utf8(&p.payload)
            .unwrap()
            .starts_with("mqtt-rs version "),
        "{:?}",
        p.payload
    );
}

#[tokio::test]
async fn sys_topics_include_mosquittos_load_averages() {
    let broker = Broker::start(Config {
        sys_interval: 1,
        ..Config::default()
    })
    .await;
    let (mut sub, _) = v5::Peer::connect(v5::options(broker.addr, "watcher")).await;
    sub.subscribe("$SYS/broker/load/messages/received/+", QoS::AtMostOnce)
        .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let p = sub.next_publish().await;
        let topic = String::from_utf8(p.topic.to_vec()).unwrap();
        std::str::from_utf8(&p.payload)
            .unwrap()
            .parse::<f64>()
            .expect("a number");
        if !seen.contains(&topic) {
            seen.push(topic);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "$SYS/broker/load/messages/received/15min",
            "$SYS/broker/load/messages/received/1min",
            "$SYS/broker/load/messages/received/5min",
        ]
    );
}

#[tokio::test]
async fn sys_interval_zero_publishes_nothing() {
    let broker = Broker::start(Config {
        sys_interval: 0,
        ..Config::default()
    })
    .await;
    let (mut sub, _) = v5::Peer::connect(v5::options(broker.addr, "watcher")).await;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await;
    sub.expect_no_publish(std::time::Duration::from_millis(300))
        .await;
}
