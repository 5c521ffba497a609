//! `/api/v1/clients` (connected clients) and `/api/v1/sessions` (every
//! session, offline ones included), read from the session registry.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use mqtt_codec::ProtocolVersion;

use super::AdminState;
use super::api::{ApiError, Params, paged};
use crate::broker::{Refused, SessionSummary};
use crate::handle::{ClientInfo, SessionHandle};

/// `GET /api/v1/clients`'s parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientQuery {
    /// Clients whose identifier starts with this.
    client_id_prefix: Option<String>,
    /// Clients that authenticated with this user name.
    username: Option<String>,
    /// Clients whose address (`ip:port`) starts with this.
    address: Option<String>,
    /// `client_id` (default), `username`, `address`, `connected_at` or
    /// `protocol`.
    sort: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/v1/sessions`'s parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionQuery {
    client_id_prefix: Option<String>,
    /// Only connected (`true`) or offline (`false`) sessions.
    connected: Option<bool>,
    offset: Option<usize>,
    limit: Option<usize>,
}

fn protocol(p: ProtocolVersion) -> &'static str {
    match p {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

fn info_json(state: &AdminState, info: Option<&ClientInfo>) -> Value {
    match info {
        Some(i) => json!({
            "username": i.username,
            "address": i.address.to_string(),
            "listener": state
                .listeners
                .get(usize::from(i.listener))
                .map(|l| format!("{} {}", l.kind, l.address)),
            "protocol": protocol(i.protocol),
            "keep_alive": i.keep_alive,
            "clean_start": i.clean_start,
            "connected_at": i.connected_at,
        }),
        None => json!({}),
    }
}

/// A session as lists show it.
fn session_json(state: &AdminState, s: &SessionSummary) -> Value {
    let now = tokio::time::Instant::now().into_std();
    let mut v = json!({
        "client_id": s.client_id.as_str(),
        "connected": s.connected,
        "persistent": s.persistent,
        "congested": s.congested,
        "mailbox": s.mailbox,
        "mailbox_bytes": s.mailbox_bytes,
    });
    if let (Value::Object(map), Value::Object(info)) = (&mut v, info_json(state, s.info.as_deref()))
    {
        map.extend(info);
        if let Some(p) = &s.parked {
            map.insert("expiry_interval".into(), p.expiry_interval.into());
            map.insert(
                "expires_in".into(),
                p.expires_at
                    .map(|at| at.saturating_duration_since(now).as_secs())
                    .into(),
            );
            map.insert("queued".into(), (s.mailbox + p.queued).into());
            map.insert("inflight".into(), p.inflight.into());
        }
    }
    v
}

fn refused(client_id: &str, r: Refused) -> ApiError {
    match r {
        Refused::NoSession => {
            ApiError::not_found(format!("no session has client id {client_id:?}"))
        }
        Refused::NotConnected => {
            ApiError::not_found(format!("client {client_id:?} is not connected"))
        }
        Refused::Connected => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "client {client_id:?} is connected: disconnect it first (DELETE /api/v1/clients/...)"
            ),
        ),
        Refused::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("client {client_id:?} has requests waiting: try again"),
        ),
    }
}

/// `GET /api/v1/clients`: connected clients, filtered, sorted, paged.
pub(crate) async fn list_clients(
    State(state): State<Arc<AdminState>>,
    Params(q): Params<ClientQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = state.page(q.offset, q.limit)?;
    let desc = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order {other:?}: must be asc or desc"
            )));
        }
    };
    let broker = &state.broker;
    let mut clients: Vec<(Arc<SessionHandle>, Arc<ClientInfo>)> = broker
        .session_handles()
        .into_iter()
        .filter(|(_, connected)| *connected)
        .filter_map(|(h, _)| {
            let info = crate::handle::lock(&h.info).clone()?;
            Some((h, info))
        })
        .filter(|(h, i)| {
            q.client_id_prefix
                .as_deref()
                .is_none_or(|p| h.client_id.as_str().starts_with(p))
                && q.username
                    .as_deref()
                    .is_none_or(|u| i.username.as_deref() == Some(u))
                && q.address
                    .as_deref()
                    .is_none_or(|a| i.address.to_string().starts_with(a))
        })
        .collect();
    type Key = fn(
        &(Arc<SessionHandle>, Arc<ClientInfo>),
        &(Arc<SessionHandle>, Arc<ClientInfo>),
    ) -> std::cmp::Ordering;
    let by: Key = match q.sort.as_deref() {
        None | Some("client_id") => |a, b| a.0.client_id.as_str().cmp(b.0.client_id.as_str()),
        Some("username") => |a, b| a.1.username.cmp(&b.1.username),
        Some("address") => |a, b| a.1.address.cmp(&b.1.address),
        Some("connected_at") => |a, b| a.1.connected_at.cmp(&b.1.connected_at),
        Some("protocol") => |a, b| (a.1.protocol as u8).cmp(&(b.1.protocol as u8)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort {other:?}: must be client_id, username, address, connected_at or protocol"
            )));
        }
    };
    clients.sort_by(|a, b| {
        let o = by(a, b).then_with(|| a.0.client_id.as_str().cmp(b.0.client_id.as_str()));
        if desc { o.reverse() } else { o }
    });
    Ok(axum::Json(paged(clients, page, |(h, _)| {
        session_json(&state, &broker.summary(&h, true))
    })))
}

/// One session in full: what lists show, its subscriptions, and what its
/// connection reports (in flight, its own queue).
async fn detail(state: &AdminState, handle: &SessionHandle, connected: bool) -> Value {
    let broker = &state.broker;
    let summary = broker.summary(handle, connected);
    let mut v = session_json(state, &summary);
    let id = handle.client_id.as_str();
    let mut subs = broker.subscriptions(|client, _| client == id);
    subs.sort_by(|a, b| a.filter.cmp(&b.filter));
    let subs: Vec<Value> = subs
        .iter()
        .map(|s| json!({ "filter": s.filter, "qos": s.qos as u8, "shared": s.shared }))
        .collect();
    if let Value::Object(map) = &mut v {
        map.insert("subscriptions".into(), subs.into());
        if connected {
            let live = broker.inspect(id).await;
            map.insert("inflight".into(), live.map(|l| l.inflight).into());
            map.insert(
                "queued".into(),
                live.map(|l| l.queued + summary.mailbox).into(),
            );
        }
    }
    v
}

/// `GET /api/v1/clients/{client_id}`: a connected client.
pub(crate) async fn client(
    State(state): State<Arc<AdminState>>,
    Path(client_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    match state.broker.session_handle(&client_id) {
        Some((h, true)) => Ok(axum::Json(detail(&state, &h, true).await)),
        Some((_, false)) => Err(refused(&client_id, Refused::NotConnected)),
        None => Err(refused(&client_id, Refused::NoSession)),
    }
}

/// `DELETE /api/v1/clients/{client_id}`: closes the client's connection
/// (DISCONNECT 0x98 Administrative action to an MQTT 5.0 client); its
/// session stays or ends as its expiry says.
pub(crate) async fn disconnect(
    State(state): State<Arc<AdminState>>,
    Path(client_id): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    state
        .broker
        .disconnect(&client_id)
        .map_err(|r| refused(&client_id, r))?;
    tracing::info!(client_id = %client_id, "disconnect asked through the console");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "client_id": client_id, "disconnecting": true })),
    ))
}

/// `GET /api/v1/sessions`: every session, connected or not.
pub(crate) async fn list_sessions(
    State(state): State<Arc<AdminState>>,
    Params(q): Params<SessionQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = state.page(q.offset, q.limit)?;
    let broker = &state.broker;
    let mut sessions: Vec<(Arc<SessionHandle>, bool)> = broker
        .session_handles()
        .into_iter()
        .filter(|(h, connected)| {
            q.connected.is_none_or(|c| c == *connected)
                && q.client_id_prefix
                    .as_deref()
                    .is_none_or(|p| h.client_id.as_str().starts_with(p))
        })
        .collect();
    sessions.sort_by(|a, b| a.0.client_id.as_str().cmp(b.0.client_id.as_str()));
    Ok(axum::Json(paged(sessions, page, |(h, connected)| {
        session_json(&state, &broker.summary(&h, connected))
    })))
}

/// `GET /api/v1/sessions/{client_id}`: a session, connected or not.
pub(crate) async fn session(
    State(state): State<Arc<AdminState>>,
    Path(client_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (h, connected) = state
        .broker
        .session_handle(&client_id)
        .ok_or_else(|| refused(&client_id, Refused::NoSession))?;
    Ok(axum::Json(detail(&state, &h, connected).await))
}

/// `DELETE /api/v1/sessions/{client_id}`: ends an offline session now.
pub(crate) async fn discard(
    State(state): State<Arc<AdminState>>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = tokio::time::Instant::now().into_std();
    state
        .broker
        .discard_session(&client_id, now)
        .map_err(|r| refused(&client_id, r))?;
    Ok(StatusCode::NO_CONTENT)
}
