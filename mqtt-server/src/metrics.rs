//! Prometheus metrics over HTTP (`metrics_listen`), in the text exposition
//! format 0.0.4.
//!
//! Served by axum on hyper, as the operator's console is (`http.rs`): HTTP/1.0 or 1.1, one request a connection
//! (`Connection: close`), `GET /metrics` (or `HEAD`) only, request head
//! at most [`MAX_REQUEST_HEAD`] bytes read within [`REQUEST_TIMEOUT`], at
//! most [`MAX_SCRAPES`] requests served at once. With `metrics_token`
//! set, a request must carry `Authorization: Bearer <token>` (compared in
//! constant time) or gets 401; without it there is no authentication, so
//! put the listener on a loopback or private address.

use std::fmt::{Display, Write as _};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::http::{self, HttpLimits, bearer, constant_time_eq};
use crate::stats::Stats;

/// Longest request head read (hyper's smallest read buffer).
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
    let app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(elsewhere)
        .layer(axum::middleware::from_fn_with_state(broker.clone(), token))
        .with_state(broker);
    let limits = HttpLimits {
        what: "metrics",
        max_connections: MAX_SCRAPES,
        header_timeout: REQUEST_TIMEOUT,
        keep_alive: false,
        max_head: MAX_REQUEST_HEAD,
        tls: None,
    };
    http::serve(listener, app, limits).await;
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(broker): State<Arc<Broker>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&broker),
    )
        .into_response()
}

/// Any other path: 404 for a GET or HEAD, 405 for another method.
async fn elsewhere(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        text(StatusCode::NOT_FOUND, "try /metrics\n")
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, "")
    }
}

/// With `metrics_token`, lets through only requests bearing it, whatever
/// the path; a 401 names the scheme it wants [RFC 9110 §11.6.1].
async fn token(State(broker): State<Arc<Broker>>, request: Request, next: Next) -> Response {
    if let Some(token) = &broker.config.metrics_token {
        let presented = bearer(request.headers());
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            let mut response = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        // axum's own 405 (POST /metrics) has no body type.
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
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
        "mqtt_takeover_timeouts_total",
        "counter",
        "CONNECTs refused as busy because the connection owning the session did not hand it over within 5 s.",
        get(&s.takeover_timeouts),
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

    let g = broker.gauges();
    out.single(
        "mqtt_sessions",
        "gauge",
        "Sessions held, connected or not.",
        g.sessions,
    );
    out.single(
        "mqtt_queued_messages",
        "gauge",
        "Messages waiting in session mailboxes (sum over sessions).",
        g.queued,
    );
    out.single(
        "mqtt_queued_bytes",
        "gauge",
        "Topic and payload bytes waiting in session mailboxes (sum over sessions).",
        g.queued_bytes,
    );
    out.single(
        "mqtt_subscriptions",
        "gauge",
        "Subscriptions in the routing index.",
        g.subscriptions,
    );
    out.single(
        "mqtt_retained_messages",
        "gauge",
        "Retained messages held.",
        g.retained,
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
    #[cfg(feature = "cluster")]
    cluster(broker, &mut out);
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

/// The cluster's figures, as one of a cluster.
#[cfg(feature = "cluster")]
fn cluster(broker: &Broker, out: &mut Exposition) {
    let Some(c) = &broker.cluster else {
        return;
    };
    let s = &c.stats;
    let get = |a: &AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    out.single(
        "mqtt_cluster_ready",
        "gauge",
        "1 while connected to NATS with the stream and buckets in place (QoS 1/2 accepted), else 0.",
        u8::from(c.is_ready()),
    );
    out.single(
        "mqtt_cluster_nodes_seen",
        "gauge",
        "Other nodes heard of within node_ttl.",
        c.nodes_seen().len(),
    );
    for (name, help, value) in [
        (
            "mqtt_cluster_messages_out_total",
            "Messages sent to other nodes (once per node), stored by JetStream for QoS 1/2.",
            &s.messages_out,
        ),
        (
            "mqtt_cluster_messages_in_total",
            "Messages received from other nodes.",
            &s.messages_in,
        ),
        (
            "mqtt_cluster_dropped_total",
            "QoS 0 messages for other nodes dropped: the queue for NATS (max_pending) was full.",
            &s.dropped_full,
        ),
        (
            "mqtt_cluster_refused_total",
            "QoS 1/2 publications refused: NATS unreachable, the queue for it full, or no confirmation from JetStream.",
            &s.refused,
        ),
        (
            "mqtt_cluster_jetstream_errors_total",
            "JetStream requests that failed (stores, setup, the node's consumer).",
            &s.jetstream_errors,
        ),
        (
            "mqtt_cluster_bad_messages_total",
            "Messages from NATS that were not a valid message; dropped.",
            &s.bad_messages,
        ),
        (
            "mqtt_cluster_taken_over_total",
            "Connections closed with 0x8E because their client identifier was claimed on another node later.",
            &s.taken_over,
        ),
        (
            "mqtt_cluster_claim_errors_total",
            "Client identifiers that could not be claimed in the cluster (queue full, too many concurrent claims).",
            &s.claim_errors,
        ),
    ] {
        out.single(name, "counter", help, get(value));
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
