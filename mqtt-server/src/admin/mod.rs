//! The operator's console (`admin_listen`): a JSON API under `/api/v1/`
//! and, at `/`, a dashboard whose files are compiled into the binary,
//! with live graphs fed by server-sent events and an MQTT client of its
//! own over the broker's WebSocket listener.
//!
//! Served by axum on hyper (`http.rs`, shared with the metrics
//! listener), HTTP/1.1, with HTTPS when
//! `admin_certfile` and `admin_keyfile` are set (the same rustls setup as
//! the MQTT listeners). Bounded: `admin_max_connections` connections at
//! once, request heads of [`MAX_REQUEST_HEAD`] bytes read within
//! [`REQUEST_TIMEOUT`], bodies of `admin_max_body_bytes`, pages of
//! `admin_max_page_size` items, [`auth::MAX_LOGINS`] logins.
//!
//! Every endpoint but the login needs a token ([`auth`]). The data comes
//! from the broker's own structures through read-only views and the
//! actions of `broker/admin.rs`; no MQTT rule is decided here.

mod api;
mod assets;
mod auth;
mod clients;
mod sse;
mod topics;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::http;
use crate::listener::ListenerKind;
use crate::tls::{self, TlsFiles};

/// Longest request head (request line and headers) read.
pub(crate) const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Time a client has for the TLS handshake, then for each request head.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest admin token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// An MQTT listener, as the console shows it (the dashboard's MQTT client
/// connects to a WebSocket one).
#[derive(Debug, Clone)]
pub(crate) struct ListenerInfo {
    pub(crate) kind: ListenerKind,
    pub(crate) address: SocketAddr,
    pub(crate) websocket_path: Option<String>,
}

/// What the console's handlers share.
pub(crate) struct AdminState {
    pub(crate) broker: Arc<Broker>,
    credentials: auth::Credentials,
    samples: sse::Samples,
    listeners: Vec<ListenerInfo>,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Why `token` cannot be an admin token, if it cannot.
fn token_problem(token: &str) -> Option<String> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some("must be printable ASCII without spaces (it is sent in an HTTP header)".into())
    } else if token.len() < MIN_TOKEN_LEN {
        Some(format!("must be at least {MIN_TOKEN_LEN} characters long"))
    } else {
        None
    }
}

/// Checks the `admin_*` keys (called by `Config::validate`).
pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    if let Some(problem) = c.admin_token.as_deref().and_then(token_problem) {
        return Err(invalid("admin_token", problem));
    }
    if c.admin_token.is_some() && c.admin_token_file.is_some() {
        return Err(invalid(
            "admin_token_file",
            "set admin_token or admin_token_file, not both",
        ));
    }
    if c.admin_users.iter().any(|u| u.is_empty()) {
        return Err(invalid("admin_users", "a user name is empty"));
    }
    if c.admin_listen.is_some()
        && c.admin_token.is_none()
        && c.admin_token_file.is_none()
        && c.admin_users.is_empty()
    {
        return Err(invalid(
            "admin_listen",
            "the console needs admin_token, admin_token_file or admin_users to let anyone in",
        ));
    }
    if c.admin_certfile.is_some() != c.admin_keyfile.is_some() {
        return Err(invalid(
            "admin_keyfile",
            "admin_certfile and admin_keyfile go together",
        ));
    }
    if c.admin_cafile.is_some() && c.admin_certfile.is_none() {
        return Err(invalid(
            "admin_cafile",
            "needs admin_certfile and admin_keyfile (HTTPS)",
        ));
    }
    if c.admin_require_certificate && c.admin_cafile.is_none() {
        return Err(invalid(
            "admin_cafile",
            "required by admin_require_certificate = true",
        ));
    }
    for (key, value) in [
        ("admin_max_connections", c.admin_max_connections),
        ("admin_max_body_bytes", c.admin_max_body_bytes),
        ("admin_max_page_size", c.admin_max_page_size),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    if c.admin_max_connections > 65_536 {
        return Err(invalid("admin_max_connections", "must be at most 65536"));
    }
    if c.admin_session_timeout == 0 {
        return Err(invalid(
            "admin_session_timeout",
            "must be at least 1 second",
        ));
    }
    Ok(())
}

/// The console's listener, bound, with what it read at startup.
pub(crate) struct Bound {
    listener: TcpListener,
    token: Option<String>,
    tls: Option<TlsAcceptor>,
}

impl Bound {
    /// The address bound.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// The first line of `admin_token_file`.
fn read_token(path: &Path) -> io::Result<String> {
    let error = |problem: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("admin_token_file {}: {problem}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    match token_problem(&token) {
        Some(problem) => Err(error(format!("the token on its first line {problem}"))),
        None => Ok(token),
    }
}

/// Reads the token file and the TLS files, then binds `admin_listen`;
/// `None` when it is not set. Errors name the key at fault.
pub(crate) async fn bind(config: &Config) -> io::Result<Option<Bound>> {
    let Some(addr) = config.admin_listen else {
        return Ok(None);
    };
    let token = match &config.admin_token_file {
        Some(path) => Some(read_token(path)?),
        None => config.admin_token.clone(),
    };
    let tls = match (&config.admin_certfile, &config.admin_keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let server = tls::server_config(TlsFiles {
                certfile,
                keyfile,
                cafile: config.admin_cafile.as_deref(),
                require_certificate: config.admin_require_certificate,
            })
            .map_err(|e| io::Error::new(e.kind(), format!("admin console TLS: admin_{e}")))?;
            Some(TlsAcceptor::from(server))
        }
        _ => None,
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for the admin console (admin_listen) on {addr}: {e}"),
        )
    })?;
    Ok(Some(Bound {
        listener,
        token,
        tls,
    }))
}

/// Serves the console until the task is aborted.
pub(crate) async fn serve(bound: Bound, broker: Arc<Broker>, listeners: Vec<ListenerInfo>) {
    let config = &broker.config;
    let scheme = if bound.tls.is_some() { "https" } else { "http" };
    if let Some(addr) = bound.local_addr() {
        tracing::info!(%addr, "operator's console on {scheme}://{addr}/");
    }
    let limits = http::HttpLimits {
        what: "admin",
        max_connections: config.admin_max_connections,
        header_timeout: REQUEST_TIMEOUT,
        keep_alive: true,
        max_head: MAX_REQUEST_HEAD,
        tls: bound.tls,
    };
    let body_limit = DefaultBodyLimit::max(config.admin_max_body_bytes);
    let state = Arc::new(AdminState {
        credentials: auth::Credentials::new(
            bound.token,
            &config.admin_users,
            Duration::from_secs(config.admin_session_timeout),
        ),
        samples: sse::Samples::new(),
        listeners,
        broker: broker.clone(),
    });
    let app = api::routes(state.clone())
        .fallback(assets::serve)
        .layer(body_limit);
    tokio::join!(
        sse::run_sampler(state),
        http::serve(bound.listener, app, limits)
    );
}
