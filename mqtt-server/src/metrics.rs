//! Prometheus metrics over HTTP (`metrics_listen`), in the text exposition
//! format 0.0.4.
//!
//! The responder is deliberately minimal: HTTP/1.0 or 1.1, one request a
//! connection (`Connection: close`), `GET /metrics` (or `HEAD`) only,
//! request head at most [`MAX_REQUEST_HEAD`] bytes read within
//! [`REQUEST_TIMEOUT`], at most [`MAX_SCRAPES`] requests served at once.
//! With `metrics_token` set, a request must carry `Authorization: Bearer
//! <token>` (compared in constant time) or gets 401; without it there is no
//! authentication, so put the listener on a loopback or private address.

use std::fmt::{Display, Write as _};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::handle::lock;
use crate::stats::Stats;

/// Longest request head read.
const MAX_REQUEST_HEAD: usize = 8192;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once; more wait for the accept loop.
const MAX_SCRAPES: usize = 16;

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
    }
    let permits = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &broker).await {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
            drop(permit);
        });
    }
}

async fn respond(mut stream: TcpStream, broker: &Broker) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() >= MAX_REQUEST_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too large",
                ));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await;
    let (status, body) = match read {
        Ok(Ok(())) => route(&head, broker),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            ("431 Request Header Fields Too Large", String::new())
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => ("408 Request Timeout", String::new()),
    };
    let head_only = head.starts_with(b"HEAD ");
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    // A 401 names the scheme it wants [RFC 9110 §11.6.1].
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{challenge}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route(head: &[u8], broker: &Broker) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if let Some(token) = &broker.config.metrics_token
        && !bearer_matches(head, token)
    {
        return ("401 Unauthorized", "a bearer token is required\n".into());
    }
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", render(broker)),
        ("GET" | "HEAD", _) => ("404 Not Found", "try /metrics\n".into()),
        _ => ("405 Method Not Allowed", String::new()),
    }
}

/// Whether the request head has `Authorization: Bearer <token>` (header
/// name and scheme in any case), the token compared in constant time.
fn bearer_matches(head: &[u8], token: &str) -> bool {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n").skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.trim();
        name.trim().eq_ignore_ascii_case("authorization")
            && value.len() > 7
            && value.is_char_boundary(7)
            && value[..7].eq_ignore_ascii_case("bearer ")
            && constant_time_eq(value[7..].trim().as_bytes(), token.as_bytes())
    })
}

/// Compares without returning early at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes the exposition format.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn by_qos(&mut self, name: &str, help: &str, counters: &[AtomicU64; 3]) {
        self.family(name, "counter", help);
        for (q, c) in ["0", "1", "2"].iter().zip(counters) {
            self.sample(name, &[("qos", q)], Stats::get(c));
        }
    }
}

/// The metrics page.
pub(crate) fn render(broker: &Broker) -> String {
    let s = &broker.stats;
    let get = Stats::get;
    let mut out = Exposition(String::with_capacity(4096));

    out.family(
        "mqtt_build_info",
        "gauge",
        "The broker's version, as a label (always 1).",
    );
    out.sample(
        "mqtt_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.single(
        "mqtt_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        broker.started.elapsed().as_secs(),
    );

    out.single(
        "mqtt_connections_current",
        "gauge",
        "Clients connected now.",
        get(&s.clients_connected),
    );
    out.single(
        "mqtt_connections_total",
        "counter",
        "Connections accepted since start.",
        get(&s.connections_total),
    );
    out.family(
        "mqtt_connections_refused_total",
        "counter",
        "Connections closed at once, by reason: max_connections reached, or a listener's max_connection_rate exceeded.",
    );
    out.sample(
        "mqtt_connections_refused_total",
        &[("reason", "max_connections")],
        get(&s.connections_refused),
    );
    out.sample(
        "mqtt_connections_refused_total",
        &[("reason", "connection_rate")],
        get(&s.connections_rate_limited),
    );
    out.family(
        "mqtt_handshake_failures_total",
        "counter",
        "Connections closed before MQTT: a transport handshake (PROXY header, TLS, WebSocket upgrade) failed, or was not done within connect_timeout.",
    );
    out.sample(
        "mqtt_handshake_failures_total",
        &[("reason", "error")],
        get(&s.handshake_failures),
    );
    out.sample(
        "mqtt_handshake_failures_total",
        &[("reason", "timeout")],
        get(&s.handshake_timeouts),
    );
    out.family(
        "mqtt_auth_failures_total",
        "counter",
        "CONNECTs refused, by reason: bad user name or password (0x86), not authorized (0x87), or address blocked after too many failures.",
    );
    for (reason, c) in [
        ("bad_credentials", &s.auth_bad_credentials),
        ("not_authorized", &s.auth_not_authorized),
        ("blocked", &s.auth_blocked),
    ] {
        out.sample("mqtt_auth_failures_total", &[("reason", reason)], get(c));
    }

    out.by_qos(
        "mqtt_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        &s.messages_received_by_qos,
    );
    out.by_qos(
        "mqtt_messages_sent_total",
        "PUBLISH packets sent to clients (resends included), by QoS.",
        &s.messages_sent_by_qos,
    );
    out.by_qos(
        "mqtt_publish_bytes_received_total",
        "Topic and payload bytes of PUBLISH packets received, by QoS.",
        &s.publish_bytes_received_by_qos,
    );
    out.by_qos(
        "mqtt_publish_bytes_sent_total",
        "Topic and payload bytes of PUBLISH packets sent, by QoS.",
        &s.publish_bytes_sent_by_qos,
    );
    out.single(
        "mqtt_messages_routed_total",
        "counter",
        "Deliveries queued to sessions.",
        get(&s.messages_routed),
    );
    out.family(
        "mqtt_messages_dropped_total",
        "counter",
        "Messages not delivered, by reason: a session's queue full, the ACL denying the publisher, the ACL denying the subscriber.",
    );
    for (reason, c) in [
        ("queue_full", &s.dropped_queue_full),
        ("acl_publish", &s.dropped_acl_publish),
        ("acl_read", &s.dropped_acl_read),
        ("publish_wait_timeout", &s.dropped_publish_wait),
    ] {
        out.sample("mqtt_messages_dropped_total", &[("reason", reason)], get(c));
    }
    out.single(
        "mqtt_publish_waits_total",
        "counter",
        "Times a publisher's acknowledgement waited for room in a connected subscriber's full queue (backpressure).",
        get(&s.publish_waits),
    );
    out.single(
        "mqtt_publish_throttled_total",
        "counter",
        "Times a connection stopped reading because its client exceeded max_publish_rate or max_publish_bytes_rate.",
        get(&s.publish_throttled),
    );
    out.single(
        "mqtt_receive_window_waits_total",
        "counter",
        "Times a connection stopped reading because its client sent beyond receive_maximum unacknowledged QoS 1/2 publications.",
        get(&s.receive_window_waits),
    );
    out.single(
        "mqtt_bytes_received_total",
        "counter",
        "Bytes read from client sockets.",
        get(&s.bytes_received),
    );
    out.single(
        "mqtt_bytes_sent_total",
        "counter",
        "Bytes written to client sockets.",
        get(&s.bytes_sent),
    );
    out.single(
        "mqtt_protocol_errors_total",
        "counter",
        "Connections closed for a protocol error.",
        get(&s.protocol_errors),
    );

    let sessions: Vec<_> = lock(&broker.sessions)
        .sessions()
        .map(|(h, _)| h.clone())
        .collect();
    let (mut queued, mut queued_bytes) = (0usize, 0usize);
    for h in &sessions {
        let mailbox = lock(&h.mailbox);
        queued += mailbox.len();
        queued_bytes += mailbox.bytes();
    }
    out.single(
        "mqtt_sessions",
        "gauge",
        "Sessions held, connected or not.",
        sessions.len(),
    );
    out.single(
        "mqtt_queued_messages",
        "gauge",
        "Messages waiting in session mailboxes (sum over sessions).",
        queued,
    );
    out.single(
        "mqtt_queued_bytes",
        "gauge",
        "Topic and payload bytes waiting in session mailboxes (sum over sessions).",
        queued_bytes,
    );
    let subscriptions = broker
        .router
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    out.single(
        "mqtt_subscriptions",
        "gauge",
        "Subscriptions in the routing index.",
        subscriptions,
    );
    let retained = broker
        .retained
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    out.single(
        "mqtt_retained_messages",
        "gauge",
        "Retained messages held.",
        retained,
    );

    let name = "mqtt_store_commit_seconds";
    out.family(
        name,
        "histogram",
        "Latency of store commits, from submission to durable (group commit: about 1 ms window plus one fsync). Empty without persistence.",
    );
    let empty = crate::persist::CommitStats::default();
    let commits = broker.persist.as_ref().map_or(&empty, |p| &*p.stats);
    let mut cumulative = 0;
    for (i, (_, le)) in crate::persist::LATENCY_BUCKETS.iter().enumerate() {
        cumulative += get(&commits.buckets[i]);
        out.sample(&format!("{name}_bucket"), &[("le", le)], cumulative);
    }
    out.sample(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        get(&commits.count),
    );
    out.sample(
        &format!("{name}_sum"),
        &[],
        get(&commits.sum_micros) as f64 / 1e6,
    );
    out.sample(&format!("{name}_count"), &[], get(&commits.count));
    out.single(
        "mqtt_store_commit_errors_total",
        "counter",
        "Store commits that failed (disk full, I/O error).",
        get(&commits.errors),
    );
    out.single(
        "mqtt_store_refused_total",
        "counter",
        "QoS 1/2 messages refused (0x97/0x80, or MQTT 3.1.1 connection closed) because the store could not commit them.",
        get(&s.store_refused),
    );
    bridges(broker, &mut out);
    out.0
}

/// The metrics of each `[[bridge]]`, labelled with its name.
fn bridges(broker: &Broker, out: &mut Exposition) {
    if broker.bridges.0.is_empty() {
        return;
    }
    let families = [
        (
            "mqtt_bridge_up",
            "gauge",
            "1 while the bridge is connected to its remote broker, else 0.",
        ),
        (
            "mqtt_bridge_messages_sent_total",
            "counter",
            "PUBLISH packets the bridge sent to its remote broker (first sends).",
        ),
        (
            "mqtt_bridge_messages_received_total",
            "counter",
            "Messages the bridge received from its remote broker.",
        ),
        (
            "mqtt_bridge_queued_messages",
            "gauge",
            "Messages waiting for the remote broker: queued, or in flight.",
        ),
        (
            "mqtt_bridge_messages_dropped_total",
            "counter",
            "Messages for the remote broker dropped: the queue full (by queue_overflow) or expired, or no rule mapping the topic.",
        ),
        (
            "mqtt_bridge_reconnects_total",
            "counter",
            "Connection attempts after the first (after a failure or a lost connection).",
        ),
    ];
    for (i, (name, kind, help)) in families.into_iter().enumerate() {
        out.family(name, kind, help);
        for b in broker.bridges.stats() {
            out.sample(name, &[("bridge", &b.name)], b.values()[i].1);
        }
    }
}

/// Binds the metrics listener.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr}: {e}"),
        )
    })
}
