//! Listeners: where clients connect, and over what.
//!
//! A listener accepts TCP connections and, in each connection's own task,
//! turns the socket into the byte stream that carries MQTT, which
//! `connection::serve` then serves whatever it runs over:
//!
//! ```text
//! TCP ──▶ PROXY header ──▶ TLS ──▶ WebSocket ──▶ MQTT
//!         proxy_protocol   mqtts    ws           every kind
//!         = true           wss      wss
//! ```
//!
//! Every step before MQTT must be done within `connect_timeout`, like the
//! CONNECT itself, so a client that stalls a handshake holds its
//! connection slot for a bounded time; and it runs in the connection's
//! task, so a slow handshake never delays the accept loop.
//!
//! The configuration has two forms. The top-level `listen = [...]` is the
//! shorthand for plain TCP listeners; `[[listener]]` tables give every kind
//! with its settings ([`ListenerConfig`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_router::SubscribeRules;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::auth::{ConnAuth, ListenerAuth};
use crate::broker::Broker;
use crate::config::ConfigError;
use crate::connection;
use crate::proxy::{self, Prefixed};
use crate::stats::Stats;
use crate::tls::{self, TlsFiles};
use crate::ws::{self, WsStream};

/// The WebSocket path of `ws` and `wss` listeners unless `path` says
/// otherwise (mosquitto accepts any path; most clients use this one).
pub const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";

/// What a listener speaks (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over TCP (port 1883 by convention).
    Mqtt,
    /// MQTT over TLS (port 8883).
    Mqtts,
    /// MQTT over WebSocket (commonly port 8080 or 80).
    Ws,
    /// MQTT over WebSocket over TLS (commonly port 8081 or 443).
    Wss,
}

impl ListenerKind {
    /// Whether the kind runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Mqtts | Self::Wss)
    }

    /// Whether the kind runs over WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Mqtts => "mqtts",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[listener]]` table of the configuration. Field names are the TOML
/// keys; `kind` and `address` are required, the rest optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `"mqtt"`, `"mqtts"`, `"ws"` or `"wss"`.
    pub kind: ListenerKind,
    /// Address and port to listen on, e.g. `"0.0.0.0:8883"`.
    pub address: SocketAddr,
    /// TLS (`mqtts`, `wss`; required there): the server's certificate
    /// chain, PEM, leaf first.
    pub certfile: Option<PathBuf>,
    /// TLS (required): the server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub keyfile: Option<PathBuf>,
    /// TLS: CA certificates (PEM) that client certificates are checked
    /// against. Default: none (no client certificate asked for).
    pub cafile: Option<PathBuf>,
    /// TLS: refuse clients without a certificate signed by `cafile`.
    /// Default: false.
    #[serde(default)]
    pub require_certificate: bool,
    /// TLS: the Common Name of the client's certificate is its user name
    /// (needs `require_certificate`); no password is checked. Default: false.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// WebSocket (`ws`, `wss`): the HTTP path of the endpoint. Default: `"/mqtt"`.
    pub path: Option<String>,
    /// Expect a PROXY protocol v1 or v2 header (from a load balancer)
    /// before anything else, and take the client's address from it.
    /// Connections without one are closed. Default: false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Overrides the top-level `allow_anonymous` on this listener.
    pub allow_anonymous: Option<bool>,
    /// Overrides the top-level `password_file` on this listener.
    pub password_file: Option<PathBuf>,
    /// Overrides the top-level `acl_file` on this listener.
    pub acl_file: Option<PathBuf>,
    /// Overrides the top-level `max_subscriptions_per_client` for the
    /// clients of this listener (a `[[client_limits]]` table that matches
    /// a client still comes first).
    pub max_subscriptions_per_client: Option<usize>,
    /// Overrides the top-level `max_subscription_bytes_per_client` for the
    /// clients of this listener (likewise).
    pub max_subscription_bytes_per_client: Option<usize>,
}

impl ListenerConfig {
    /// A listener of `kind` on `address` with every optional key at its
    /// default (TLS kinds still need `certfile` and `keyfile`).
    pub fn new(kind: ListenerKind, address: SocketAddr) -> Self {
        Self {
            kind,
            address,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            path: None,
            proxy_protocol: false,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            max_subscriptions_per_client: None,
            max_subscription_bytes_per_client: None,
        }
    }

    /// The WebSocket path: `path`, or [`DEFAULT_WEBSOCKET_PATH`].
    pub fn websocket_path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_WEBSOCKET_PATH)
    }

    /// Checks what the types cannot: the keys a kind needs, and those it
    /// cannot use. `number` is the table's position (1-based), for the
    /// message. Files are read later, when the listener is bound.
    pub fn validate(&self, number: usize) -> Result<(), ConfigError> {
        let which = format!("[[listener]] #{number} ({} on {})", self.kind, self.address);
        let invalid = |key, problem: String| {
            Err(ConfigError::Invalid {
                key,
                problem: format!("{which}: {problem}"),
            })
        };
        if self.kind.is_tls() {
            if self.certfile.is_none() {
                return invalid(
                    "listener.certfile",
                    format!("required by kind {}", self.kind),
                );
            }
            if self.keyfile.is_none() {
                return invalid(
                    "listener.keyfile",
                    format!("required by kind {}", self.kind),
                );
            }
        } else {
            let tls_keys = [
                ("listener.certfile", self.certfile.is_some()),
                ("listener.keyfile", self.keyfile.is_some()),
                ("listener.cafile", self.cafile.is_some()),
                ("listener.require_certificate", self.require_certificate),
                (
                    "listener.use_identity_as_username",
                    self.use_identity_as_username,
                ),
            ];
            if let Some((key, _)) = tls_keys.into_iter().find(|(_, set)| *set) {
                return invalid(key, "only for kinds mqtts and wss".into());
            }
        }
        if self.require_certificate && self.cafile.is_none() {
            return invalid(
                "listener.cafile",
                "required by require_certificate = true".into(),
            );
        }
        if self.use_identity_as_username && !self.require_certificate {
            return invalid(
                "listener.use_identity_as_username",
                "needs require_certificate = true".into(),
            );
        }
        for (key, value) in [
            (
                "listener.max_subscriptions_per_client",
                self.max_subscriptions_per_client,
            ),
            (
                "listener.max_subscription_bytes_per_client",
                self.max_subscription_bytes_per_client,
            ),
        ] {
            if value == Some(0) {
                return invalid(key, "must be at least 1".into());
            }
        }
        if let Some(path) = &self.path {
            if !self.kind.is_websocket() {
                return invalid("listener.path", "only for kinds ws and wss".into());
            }
            if !path.starts_with('/') {
                return invalid("listener.path", format!("{path:?} does not start with /"));
            }
        }
        Ok(())
    }
}

/// A bound listener as the broker reports it ([`crate::Server::listeners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// What it speaks.
    pub kind: ListenerKind,
    /// The address bound (with the actual port when 0 was asked for).
    pub address: SocketAddr,
    /// Its own `allow_anonymous`; `None`: the top-level one applies.
    pub allow_anonymous: Option<bool>,
    /// Its own `password_file`; `None`: the top-level one applies.
    pub password_file: Option<PathBuf>,
    /// Its own `acl_file`; `None`: the top-level one applies.
    pub acl_file: Option<PathBuf>,
}

/// What every connection of one listener needs.
struct Endpoint {
    settings: ListenerSettings,
    /// `Some` for `mqtts` and `wss`.
    tls: Option<TlsAcceptor>,
    /// `Some` for `ws` and `wss`.
    websocket_path: Option<String>,
    proxy_protocol: bool,
    use_identity_as_username: bool,
    /// The listener's own authentication settings; `None`: the top-level ones.
    auth: Option<Arc<ListenerAuth>>,
    /// The listener's own subscription limits; `None`: the top-level ones.
    rules: Option<Arc<SubscribeRules>>,
    /// Its position among the listeners (`Server::listeners`).
    index: u16,
}

/// A bound listener, ready to accept.
pub(crate) struct Listener {
    tcp: TcpListener,
    endpoint: Arc<Endpoint>,
}

/// Binds every listener of the configuration: `listen` first, then the
/// `[[listener]]` tables in order. Errors name the listener and the file
/// or address at fault.
pub(crate) async fn bind_all(broker: &Broker) -> io::Result<Vec<Listener>> {
    let config = &broker.config;
    let shorthand = config
        .listen
        .iter()
        .map(|addr| ListenerConfig::new(ListenerKind::Mqtt, *addr));
    let mut listeners = Vec::new();
    for (i, l) in shorthand
        .chain(config.listeners.iter().cloned())
        .enumerate()
    {
        let index = u16::try_from(i).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "more than 65535 listeners")
        })?;
        listeners.push(Listener::bind(&l, broker, index).await?);
    }
    Ok(listeners)
}

impl Listener {
    async fn bind(config: &ListenerConfig, broker: &Broker, index: u16) -> io::Result<Listener> {
        let context =
            |e: &dyn fmt::Display| format!("{} listener on {}: {e}", config.kind, config.address);
        // Files first: a wrong path is the likelier mistake, and is
        // reported before any port is taken.
        let tls = match (config.kind.is_tls(), &config.certfile, &config.keyfile) {
            (true, Some(certfile), Some(keyfile)) => {
                let server = tls::server_config(TlsFiles {
                    certfile,
                    keyfile,
                    cafile: config.cafile.as_deref(),
                    require_certificate: config.require_certificate,
                })
                .map_err(|e| io::Error::new(e.kind(), context(&e)))?;
                Some(TlsAcceptor::from(server))
            }
            (true, _, _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    context(&"certfile and keyfile are required"),
                ));
            }
            (false, _, _) => None,
        };
        let own_auth = config.allow_anonymous.is_some()
            || config.password_file.is_some()
            || config.acl_file.is_some();
        let auth = if own_auth {
            let top = &broker.config;
            let auth = broker
                .security
                .listener_auth(
                    config.allow_anonymous.unwrap_or(top.allow_anonymous),
                    config
                        .password_file
                        .as_deref()
                        .or(top.password_file.as_deref()),
                    config.acl_file.as_deref().or(top.acl_file.as_deref()),
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, context(&e)))?;
            Some(auth)
        } else {
            None
        };
        let rules = (config.max_subscriptions_per_client.is_some()
            || config.max_subscription_bytes_per_client.is_some())
        .then(|| {
            crate::broker::limited_rules(
                &broker.subscribe_rules,
                config.max_subscriptions_per_client,
                config.max_subscription_bytes_per_client,
            )
        });
        let tcp = TcpListener::bind(config.address).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", config.address),
            )
        })?;
        let settings = ListenerSettings {
            kind: config.kind,
            address: tcp.local_addr()?,
            allow_anonymous: config.allow_anonymous,
            password_file: config.password_file.clone(),
            acl_file: config.acl_file.clone(),
        };
        Ok(Listener {
            tcp,
            endpoint: Arc::new(Endpoint {
                settings,
                tls,
                websocket_path: config
                    .kind
                    .is_websocket()
                    .then(|| config.websocket_path().to_owned()),
                proxy_protocol: config.proxy_protocol,
                use_identity_as_username: config.use_identity_as_username,
                auth,
                rules,
                index,
            }),
        })
    }

    /// The address bound.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.endpoint.settings.address)
    }

    /// What the listener is.
    pub(crate) fn settings(&self) -> &ListenerSettings {
        &self.endpoint.settings
    }

    /// The WebSocket path, for `ws` and `wss` listeners.
    pub(crate) fn websocket_path(&self) -> Option<&str> {
        self.endpoint.websocket_path.as_deref()
    }

    /// Accepts the next TCP connection.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.tcp.accept().await
    }

    /// What serves the connections this listener accepts.
    pub(crate) fn handler(&self) -> ConnectionHandler {
        ConnectionHandler(self.endpoint.clone())
    }
}

/// Serves connections accepted by one listener (cheap to clone).
#[derive(Clone)]
pub(crate) struct ConnectionHandler(Arc<Endpoint>);

/// A TCP stream, with the bytes read past a PROXY header put back.
type Tcp = Prefixed<TcpStream>;

/// The stream MQTT runs over, once every handshake is done.
enum Transport {
    Plain(Tcp),
    Tls(Box<TlsStream<Tcp>>),
    Ws(Box<WsStream<Tcp>>),
    Wss(Box<WsStream<TlsStream<Tcp>>>),
}

impl ConnectionHandler {
    /// Runs the connection's handshakes (PROXY, TLS, WebSocket, as the
    /// listener has them), then serves MQTT on it until it ends, then drops
    /// `guard` (what the connection holds, like its connection slot). A
    /// handshake that fails or takes longer than `connect_timeout` closes
    /// the connection, with a log line saying why.
    ///
    /// Not an `async fn`: the handshake is boxed and made here, so the
    /// future returned (which a spawned task holds for the connection's
    /// whole life) keeps a pointer to it, neither room for the largest
    /// handshake nor a second copy of its arguments.
    pub(crate) fn serve<G: Send + 'static>(
        self,
        broker: Arc<Broker>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        guard: G,
    ) -> impl Future<Output = ()> + Send + 'static {
        let endpoint = self.0;
        let limit = Duration::from_secs(broker.config.connect_timeout);
        let max_packet_size = broker.config.max_packet_size;
        let setup = Box::pin({
            let endpoint = endpoint.clone();
            async move { endpoint.establish(tcp, peer, max_packet_size).await }
        });
        async move {
            let (transport, client, cert_username) = match tokio::time::timeout(limit, setup).await
            {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    Stats::add(&broker.stats.handshake_failures, 1);
                    tracing::info!(%peer, kind = %endpoint.settings.kind, error = %e, "connection closed before MQTT");
                    return;
                }
                Err(_) => {
                    Stats::add(&broker.stats.handshake_timeouts, 1);
                    tracing::info!(%peer, kind = %endpoint.settings.kind, "connection closed: handshake not done within connect_timeout");
                    return;
                }
            };
            let auth = ConnAuth {
                listener: endpoint.auth.clone(),
                cert_username,
                rules: endpoint.rules.clone(),
                listener_index: endpoint.index,
            };
            // Behind a proxy, the lines about this connection name the client
            // (it is their `peer`); at debug level, the span also names both.
            let span = if client != peer {
                tracing::debug_span!("proxied", client = %client)
            } else {
                tracing::Span::none()
            };
            transport
                .serve(broker, client, shutdown, auth)
                .instrument(span)
                .await;
            drop(guard);
        }
    }
}

impl Transport {
    /// The MQTT connection over this transport, boxed: the task holding it
    /// keeps a pointer, not room for the largest transport's future.
    fn serve(
        self,
        broker: Arc<Broker>,
        client: SocketAddr,
        shutdown: watch::Receiver<bool>,
        auth: ConnAuth,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self {
            Self::Plain(s) => Box::pin(connection::serve(broker, s, client, shutdown, auth)),
            Self::Tls(s) => Box::pin(connection::serve(broker, s, client, shutdown, auth)),
            Self::Ws(s) => Box::pin(connection::serve(broker, s, client, shutdown, auth)),
            Self::Wss(s) => Box::pin(connection::serve(broker, s, client, shutdown, auth)),
        }
    }
}

impl Endpoint {
    /// The handshakes: returns the transport, the client's address (from
    /// the PROXY header if there is one) and the user name from its
    /// certificate (with `use_identity_as_username`).
    async fn establish(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
        max_packet_size: u32,
    ) -> io::Result<(Transport, SocketAddr, Option<String>)> {
        let (client, rest) = if self.proxy_protocol {
            let (client, rest) = proxy::read_header(&mut tcp).await?;
            (client.unwrap_or(peer), rest)
        } else {
            (peer, Bytes::new())
        };
        let stream = Prefixed::new(rest, tcp);
        let Some(acceptor) = &self.tls else {
            let transport = match &self.websocket_path {
                None => Transport::Plain(stream),
                Some(path) => {
                    Transport::Ws(Box::new(ws::accept(stream, path, max_packet_size).await?))
                }
            };
            return Ok((transport, client, None));
        };
        let tls = acceptor
            .accept(stream)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        let username = if self.use_identity_as_username {
            match tls::identity(tls.get_ref().1) {
                Some(cn) => Some(cn),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "the client certificate has no Common Name to use as user name",
                    ));
                }
            }
        } else {
            None
        };
        let transport = match &self.websocket_path {
            None => Transport::Tls(Box::new(tls)),
            Some(path) => Transport::Wss(Box::new(ws::accept(tls, path, max_packet_size).await?)),
        };
        Ok((transport, client, username))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Config;

    fn error(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn listener_tables_parse() {
        let config = Config::from_toml(
            r#"
            listen = []
            [[listener]]
            kind = "mqtts"
            address = "0.0.0.0:8883"
            certfile = "server.crt"
            keyfile = "server.key"
            cafile = "ca.crt"
            require_certificate = true
            use_identity_as_username = true
            allow_anonymous = false

            [[listener]]
            kind = "ws"
            address = "127.0.0.1:8080"
            proxy_protocol = true
            "#,
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 2);
        let tls = &config.listeners[0];
        assert_eq!(tls.kind, ListenerKind::Mqtts);
        assert_eq!(tls.cafile.as_deref(), Some(std::path::Path::new("ca.crt")));
        assert!(tls.use_identity_as_username);
        assert_eq!(tls.allow_anonymous, Some(false));
        assert_eq!(config.listeners[1].websocket_path(), "/mqtt");
        assert!(config.listeners[1].proxy_protocol);
    }

    #[test]
    fn unknown_listener_key_is_an_error_naming_it() {
        let err =
            error("[[listener]]\nkind = \"mqtt\"\naddress = \"127.0.0.1:1\"\ncertfil = \"x\"");
        assert!(err.contains("certfil"), "{err}");
    }

    #[test]
    fn bad_kind_is_an_error_naming_the_key() {
        let err = error("[[listener]]\nkind = \"quic\"\naddress = \"127.0.0.1:1\"");
        assert!(err.contains("kind") && err.contains("quic"), "{err}");
        let err = error("[[listener]]\nkind = \"mqtt\"\naddress = \"nowhere\"");
        assert!(err.contains("address"), "{err}");
    }

    #[test]
    fn tls_kinds_need_certificate_and_key() {
        let err = error("[[listener]]\nkind = \"mqtts\"\naddress = \"127.0.0.1:1\"");
        assert!(err.contains("listener.certfile"), "{err}");
        let err =
            error("[[listener]]\nkind = \"wss\"\naddress = \"127.0.0.1:1\"\ncertfile = \"c\"");
        assert!(err.contains("listener.keyfile"), "{err}");
    }

    #[test]
    fn keys_of_other_kinds_are_errors() {
        let err = error("[[listener]]\nkind = \"mqtt\"\naddress = \"127.0.0.1:1\"\ncafile = \"c\"");
        assert!(err.contains("listener.cafile"), "{err}");
        let err = error("[[listener]]\nkind = \"mqtt\"\naddress = \"127.0.0.1:1\"\npath = \"/x\"");
        assert!(err.contains("listener.path"), "{err}");
        let err = error("[[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:1\"\npath = \"x\"");
        assert!(err.contains("listener.path"), "{err}");
    }

    #[test]
    fn client_certificate_keys_go_together() {
        let tls = "[[listener]]\nkind = \"mqtts\"\naddress = \"127.0.0.1:1\"\ncertfile = \"c\"\nkeyfile = \"k\"\n";
        let err = error(&format!("{tls}require_certificate = true"));
        assert!(err.contains("listener.cafile"), "{err}");
        let err = error(&format!(
            "{tls}cafile = \"ca\"\nuse_identity_as_username = true"
        ));
        assert!(err.contains("listener.use_identity_as_username"), "{err}");
    }

    #[test]
    fn a_listener_subscription_limit_of_zero_is_an_error_naming_it() {
        for key in [
            "max_subscriptions_per_client",
            "max_subscription_bytes_per_client",
        ] {
            let err = error(&format!(
                "[[listener]]\nkind = \"mqtt\"\naddress = \"127.0.0.1:1\"\n{key} = 0"
            ));
            assert!(err.contains(&format!("listener.{key}")), "{err}");
            assert!(err.contains("at least 1"), "{err}");
        }
    }

    #[test]
    fn no_listener_at_all_is_an_error() {
        let err = error("listen = []");
        assert!(err.contains("listen"), "{err}");
    }
}
