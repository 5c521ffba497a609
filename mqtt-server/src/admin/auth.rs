//! Who may use the console: a request to `/api/v1/` carries
//! `Authorization: Bearer <token>`, the token being `admin_token` (or the
//! first line of `admin_token_file`) or one that `POST /api/v1/login` gave
//! a user of `admin_users` for their password. Tokens are compared in
//! constant time. A refusal says nothing of why: 401 with
//! `WWW-Authenticate: Bearer` and `{"error":"unauthorized"}`, or, for a
//! user whose password is right but who is not in `admin_users`, 403
//! `{"error":"forbidden"}`. Failed logins count against the client's
//! address as failed MQTT logins do (`max_auth_failures`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use super::api::{ApiError, JsonBody};
use crate::auth::{AuthDecision, AuthRequest};
use crate::handle::lock;
use crate::http::{bearer, constant_time_eq};

/// Most logins held at once: beyond it, a new login replaces the one that
/// expires first.
pub(crate) const MAX_LOGINS: usize = 1024;

/// The console's credentials and the logins it gave.
#[derive(Debug)]
pub(crate) struct Credentials {
    token: Option<String>,
    users: HashSet<String>,
    lifetime: Duration,
    /// Login tokens and when each expires.
    logins: Mutex<HashMap<String, Instant>>,
}

impl Credentials {
    pub(crate) fn new(token: Option<String>, users: &[String], lifetime: Duration) -> Self {
        Self {
            token,
            users: users.iter().cloned().collect(),
            lifetime,
            logins: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `presented` is the admin token or a live login's.
    fn accepts(&self, presented: &str, now: Instant) -> bool {
        if self
            .token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
        {
            return true;
        }
        let mut logins = lock(&self.logins);
        logins.retain(|_, expires| *expires > now);
        // Every live login is compared, so that the time taken does not
        // tell which prefix matched.
        logins.keys().fold(false, |found, t| {
            found | constant_time_eq(t.as_bytes(), presented.as_bytes())
        })
    }

    /// A new login token, valid for the configured lifetime.
    fn issue(&self, now: Instant) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut logins = lock(&self.logins);
        logins.retain(|_, expires| *expires > now);
        if logins.len() >= MAX_LOGINS
            && let Some(oldest) = logins
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, _)| t.clone())
        {
            logins.remove(&oldest);
        }
        logins.insert(token.clone(), now + self.lifetime);
        Some(token)
    }

    /// Ends a login; returns whether it was one.
    fn revoke(&self, presented: &str) -> bool {
        lock(&self.logins).remove(presented).is_some()
    }
}

/// 401, the same whatever was wrong.
pub(crate) fn unauthorized() -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Lets through requests bearing a token the console accepts.
pub(crate) async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let now = tokio::time::Instant::now().into_std();
    match bearer(request.headers()) {
        Some(token) if state.credentials.accepts(token, now) => next.run(request).await,
        _ => unauthorized(),
    }
}

/// `POST /api/v1/login`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: String,
}

/// `POST /api/v1/login`: a token for a user of `admin_users` whose
/// password the password file (or the installed authenticator) accepts.
pub(crate) async fn login(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, Response> {
    let broker = &state.broker;
    let now = tokio::time::Instant::now().into_std();
    let failures = &broker.security.failures;
    if failures.is_blocked(peer.ip(), now) {
        tracing::info!(%peer, "console login refused: too many failed logins from this address");
        return Err(unauthorized());
    }
    let decision = match broker.security.default_auth().authenticator.clone() {
        // Without a password file no password can be checked: nobody
        // logs in.
        None => AuthDecision::BadCredentials,
        Some(authenticator) => {
            authenticator
                .authenticate(AuthRequest {
                    client_id: "",
                    username: Some(&login.username),
                    password: Some(login.password.as_bytes()),
                    peer,
                })
                .await
        }
    };
    if decision != AuthDecision::Allow {
        failures.record_failure(peer.ip(), now);
        tracing::info!(%peer, username = %login.username, "console login refused");
        return Err(unauthorized());
    }
    if !state.credentials.users.contains(&login.username) {
        tracing::info!(%peer, username = %login.username, "console login refused: not in admin_users");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden").into_response());
    }
    let Some(token) = state.credentials.issue(now) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random token could be made",
        )
        .into_response());
    };
    tracing::info!(%peer, username = %login.username, "console login");
    Ok(axum::Json(serde_json::json!({
        "token": token,
        "expires_in": state.credentials.lifetime.as_secs(),
    }))
    .into_response())
}

/// `POST /api/v1/logout`: ends the login whose token the request bears
/// (the admin token itself cannot be logged out).
pub(crate) async fn logout(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> StatusCode {
    match bearer(&headers) {
        Some(token) if state.credentials.revoke(token) => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn logins_expire_and_are_bounded() {
        let c = Credentials::new(Some("t".repeat(16)), &[], Duration::from_secs(10));
        let now = Instant::now();
        assert!(c.accepts(&"t".repeat(16), now));
        assert!(!c.accepts(&"t".repeat(15), now));
        let token = c.issue(now).unwrap();
        assert!(c.accepts(&token, now));
        assert!(!c.accepts(&token, now + Duration::from_secs(11)));
        for i in 0..MAX_LOGINS + 10 {
            c.issue(now + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(lock(&c.logins).len(), MAX_LOGINS);
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bEaReR  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
