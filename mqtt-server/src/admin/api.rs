//! The JSON API under `/api/v1/`: its errors, request parsing and paging,
//! the routes, and the broker-wide endpoints (information, counters,
//! publish, reload). Clients and sessions are in `clients.rs`,
//! subscriptions and retained messages in `topics.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use mqtt_codec::{MqttString, QoS};
use mqtt_session::Message;
use mqtt_topic::TopicName;

use super::{AdminState, auth, clients, sse, topics};
use crate::stats::Stats;

/// Items in a page unless `limit` asks otherwise (at most
/// `admin_max_page_size`).
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;

/// A refusal: its status, and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400, naming what is wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404, naming what was not found.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// A JSON request body; a malformed one is a 400 naming the problem (the
/// field, line and column), one over `admin_max_body_bytes` a 413.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
    }
}

/// Query parameters; an unknown or malformed one is a 400 naming it.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Which page of a list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

impl AdminState {
    /// The page `offset` and `limit` ask for, within `admin_max_page_size`.
    pub(crate) fn page(
        &self,
        offset: Option<usize>,
        limit: Option<usize>,
    ) -> Result<Page, ApiError> {
        let max = self.broker.config.admin_max_page_size;
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE.min(max));
        if limit == 0 || limit > max {
            return Err(ApiError::bad_request(format!(
                "limit must be from 1 to {max} (admin_max_page_size)"
            )));
        }
        Ok(Page {
            offset: offset.unwrap_or(0),
            limit,
        })
    }
}

/// One page of `items`: `{"total", "offset", "limit", "items"}`.
pub(crate) fn paged<T>(items: Vec<T>, page: Page, show: impl Fn(T) -> Value) -> Value {
    let total = items.len();
    let shown: Vec<Value> = items
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(show)
        .collect();
    json!({ "total": total, "offset": page.offset, "limit": page.limit, "items": shown })
}

/// `payload` as JSON: text if it is UTF-8, base64 otherwise.
pub(crate) fn payload_json(payload: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(payload) {
        Ok(text) => (Value::from(text), "utf8"),
        Err(_) => (
            Value::from(base64::engine::general_purpose::STANDARD.encode(payload)),
            "base64",
        ),
    }
}

/// The routes of `/api/v1/`, every one behind the token check but login.
pub(crate) fn routes(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/api/v1/broker", get(broker_info))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/events", get(sse::events))
        .route("/api/v1/clients", get(clients::list_clients))
        .route(
            "/api/v1/clients/{client_id}",
            get(clients::client).delete(clients::disconnect),
        )
        .route("/api/v1/sessions", get(clients::list_sessions))
        .route(
            "/api/v1/sessions/{client_id}",
            get(clients::session).delete(clients::discard),
        )
        .route("/api/v1/subscriptions", get(topics::subscriptions))
        .route("/api/v1/retained", get(topics::list_retained))
        .route(
            "/api/v1/retained/{*topic}",
            get(topics::retained).delete(topics::clear_retained),
        )
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/api/v1/login", post(auth::login))
        .merge(protected)
        .with_state(state)
}

/// `GET /api/v1/broker`: version, uptime, listeners, main limits.
async fn broker_info(State(state): State<Arc<AdminState>>) -> axum::Json<Value> {
    let b = &state.broker;
    let c = &b.config;
    let listeners: Vec<Value> = state
        .listeners
        .iter()
        .map(|l| {
            json!({
                "kind": l.kind.as_str(),
                "address": l.address.to_string(),
                "websocket_path": l.websocket_path,
            })
        })
        .collect();
    axum::Json(json!({
        "name": "mqtt-rs",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": b.started.elapsed().as_secs(),
        "listeners": listeners,
        "persistence": b.persist.is_some(),
        "limits": {
            "max_connections": c.max_connections,
            "max_packet_size": c.max_packet_size,
            "max_qos": c.max_qos,
            "retain_available": c.retain_available,
            "max_retained_messages": c.max_retained_messages,
            "max_queued_messages": c.max_queued_messages,
            "max_inflight_messages": c.max_inflight_messages,
            "max_subscriptions_per_client": c.max_subscriptions_per_client,
            "admin_max_page_size": c.admin_max_page_size,
        },
    }))
}

/// Every counter and gauge, as `/metrics` has them.
pub(crate) fn stats_json(state: &AdminState) -> Value {
    let b = &state.broker;
    let s = &b.stats;
    let get = Stats::get;
    let by_qos =
        |c: &[std::sync::atomic::AtomicU64; 3]| json!([get(&c[0]), get(&c[1]), get(&c[2])]);
    let g = b.gauges();
    json!({
        "uptime_secs": b.started.elapsed().as_secs(),
        "clients_connected": get(&s.clients_connected),
        "connections_total": get(&s.connections_total),
        "connections_refused": get(&s.connections_refused),
        "connections_rate_limited": get(&s.connections_rate_limited),
        "handshake_failures": get(&s.handshake_failures),
        "handshake_timeouts": get(&s.handshake_timeouts),
        "auth_bad_credentials": get(&s.auth_bad_credentials),
        "auth_not_authorized": get(&s.auth_not_authorized),
        "auth_blocked": get(&s.auth_blocked),
        "messages_received": get(&s.messages_received),
        "messages_received_by_qos": by_qos(&s.messages_received_by_qos),
        "messages_sent_by_qos": by_qos(&s.messages_sent_by_qos),
        "publish_bytes_received_by_qos": by_qos(&s.publish_bytes_received_by_qos),
        "publish_bytes_sent_by_qos": by_qos(&s.publish_bytes_sent_by_qos),
        "messages_routed": get(&s.messages_routed),
        "dropped": {
            "queue_full": get(&s.dropped_queue_full),
            "acl_publish": get(&s.dropped_acl_publish),
            "acl_read": get(&s.dropped_acl_read),
            "publish_wait_timeout": get(&s.dropped_publish_wait),
        },
        "publish_waits": get(&s.publish_waits),
        "publish_throttled": get(&s.publish_throttled),
        "receive_window_waits": get(&s.receive_window_waits),
        "bytes_received": get(&s.bytes_received),
        "bytes_sent": get(&s.bytes_sent),
        "protocol_errors": get(&s.protocol_errors),
        "store_refused": get(&s.store_refused),
        "sessions": g.sessions,
        "queued_messages": g.queued,
        "queued_bytes": g.queued_bytes,
        "subscriptions": g.subscriptions,
        "retained_messages": g.retained,
        "retained_bytes": g.retained_bytes,
        "memory_bytes": sse::resident_memory(),
    })
}

/// `GET /api/v1/stats`.
async fn stats(State(state): State<Arc<AdminState>>) -> axum::Json<Value> {
    axum::Json(stats_json(&state))
}

/// `POST /api/v1/publish`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    topic: String,
    #[serde(default)]
    payload: String,
    /// `"utf8"` (default) or `"base64"`.
    #[serde(default)]
    payload_encoding: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    /// Message Expiry Interval, in seconds.
    #[serde(default)]
    message_expiry: Option<u32>,
}

/// `POST /api/v1/publish`: routes a message as the broker's own
/// publications are; answers how many sessions it matched.
async fn publish(
    State(state): State<Arc<AdminState>>,
    JsonBody(p): JsonBody<Publish>,
) -> Result<axum::Json<Value>, ApiError> {
    let config = &state.broker.config;
    let topic = TopicName::new(&p.topic)
        .map_err(|e| ApiError::bad_request(format!("topic {:?}: {e}", p.topic)))?;
    let payload = match p.payload_encoding.as_deref() {
        None | Some("utf8") => Bytes::from(p.payload.into_bytes()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(p.payload.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request(format!("payload is not base64: {e}")))?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding {other:?}: must be \"utf8\" or \"base64\""
            )));
        }
    };
    let qos = QoS::from_u8(p.qos)
        .filter(|_| p.qos <= config.max_qos)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "qos must be from 0 to {} (max_qos)",
                config.max_qos
            ))
        })?;
    if p.retain && !config.retain_available {
        return Err(ApiError::bad_request(
            "retain: retained messages are off (retain_available)",
        ));
    }
    if topic.as_str().len() + payload.len() > config.max_packet_size as usize {
        return Err(ApiError::bad_request(
            "topic and payload exceed max_packet_size",
        ));
    }
    let name = MqttString::try_from(p.topic.clone())
        .map_err(|e| ApiError::bad_request(format!("topic: {e}")))?;
    let now = tokio::time::Instant::now().into_std();
    let message = Message {
        topic: name,
        payload,
        qos,
        retain: p.retain,
        properties: Default::default(),
        expires_at: p
            .message_expiry
            .map(|secs| now + Duration::from_secs(secs.into())),
    };
    let matched = state.broker.publish_as_operator(&topic, message, now);
    tracing::info!(topic = %p.topic, matched, "published by an operator");
    Ok(axum::Json(json!({ "matched": matched })))
}

/// `POST /api/v1/reload`: what SIGHUP does, reading the password and ACL
/// files again; a file that fails keeps its previous rules and is named.
async fn reload(State(state): State<Arc<AdminState>>) -> Result<axum::Json<Value>, ApiError> {
    let broker = state.broker.clone();
    tracing::info!("reloading the password and ACL files (asked through the console)");
    let errors = tokio::task::spawn_blocking(move || broker.security.reload())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Ok(axum::Json(
        json!({ "reloaded": errors.is_empty(), "errors": errors }),
    ))
}
