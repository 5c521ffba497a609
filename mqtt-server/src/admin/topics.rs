//! `/api/v1/subscriptions` (from the router's index) and
//! `/api/v1/retained` (from the retained store).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use mqtt_session::Message;
use mqtt_topic::{TopicFilter, TopicName};

use super::AdminState;
use super::api::{ApiError, Params, paged, payload_json};

/// Bytes of each payload a list of retained messages shows; the message
/// itself (`GET /api/v1/retained/{topic}`) has all of it.
pub(crate) const PREVIEW_BYTES: usize = 256;

/// `GET /api/v1/subscriptions`'s parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionQuery {
    /// The subscriptions of this client.
    client_id: Option<String>,
    /// The subscriptions on this filter, as written
    /// (`$share/{group}/{filter}` for shared ones).
    filter: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/v1/retained`'s parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetainedQuery {
    /// The messages a subscription to this filter would get. Default: `#`.
    filter: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/v1/subscriptions`: sorted by filter, then client.
pub(crate) async fn subscriptions(
    State(state): State<Arc<AdminState>>,
    Params(q): Params<SubscriptionQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = state.page(q.offset, q.limit)?;
    let mut all = state.broker.subscriptions(|client, filter| {
        q.client_id.as_deref().is_none_or(|c| c == client)
            && q.filter.as_deref().is_none_or(|f| f == filter)
    });
    all.sort_by(|a, b| {
        a.filter
            .cmp(&b.filter)
            .then_with(|| a.client_id.as_str().cmp(b.client_id.as_str()))
    });
    Ok(axum::Json(paged(all, page, |s| {
        json!({
            "client_id": s.client_id.as_str(),
            "filter": s.filter,
            "qos": s.qos as u8,
            "shared": s.shared,
        })
    })))
}

fn message_json(m: &Message, preview: Option<usize>) -> Value {
    let now = tokio::time::Instant::now().into_std();
    let shown = preview.map_or(&m.payload[..], |n| &m.payload[..m.payload.len().min(n)]);
    // A cut may split a UTF-8 character: the preview then ends before it.
    let shown = match std::str::from_utf8(shown) {
        Err(e) if preview.is_some() && std::str::from_utf8(&m.payload).is_ok() => {
            &shown[..e.valid_up_to()]
        }
        _ => shown,
    };
    let (payload, encoding) = payload_json(shown);
    json!({
        "topic": m.topic.as_str(),
        "qos": m.qos as u8,
        "size": m.payload.len(),
        "payload": payload,
        "payload_encoding": encoding,
        "truncated": shown.len() < m.payload.len(),
        "expires_in": m.expires_at.map(|at| at.saturating_duration_since(now).as_secs()),
    })
}

/// `GET /api/v1/retained`: sorted by topic, payloads cut to
/// [`PREVIEW_BYTES`].
pub(crate) async fn list_retained(
    State(state): State<Arc<AdminState>>,
    Params(q): Params<RetainedQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = state.page(q.offset, q.limit)?;
    let text = q.filter.as_deref().unwrap_or("#");
    let filter = TopicFilter::new(text)
        .map_err(|e| ApiError::bad_request(format!("filter {text:?}: {e}")))?;
    let now = tokio::time::Instant::now().into_std();
    let mut found = state.broker.retained_matching(&filter, now);
    found.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    Ok(axum::Json(paged(found, page, |m| {
        message_json(&m, Some(PREVIEW_BYTES))
    })))
}

fn topic(text: &str) -> Result<TopicName, ApiError> {
    TopicName::new(text).map_err(|e| ApiError::bad_request(format!("topic {text:?}: {e}")))
}

/// `GET /api/v1/retained/{topic}`: one message, all of its payload.
pub(crate) async fn retained(
    State(state): State<Arc<AdminState>>,
    Path(text): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let name = topic(&text)?;
    let now = tokio::time::Instant::now().into_std();
    state
        .broker
        .retained_message(&name, now)
        .map(|m| axum::Json(message_json(&m, None)))
        .ok_or_else(|| ApiError::not_found(format!("no retained message on topic {text:?}")))
}

/// `DELETE /api/v1/retained/{topic}`: removes it (and its stored copy);
/// subscribers are sent nothing.
pub(crate) async fn clear_retained(
    State(state): State<Arc<AdminState>>,
    Path(text): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = topic(&text)?;
    let now = tokio::time::Instant::now().into_std();
    if state.broker.clear_retained(&name, now) {
        tracing::info!(topic = %text, "retained message deleted through the console");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no retained message on topic {text:?}"
        )))
    }
}
