//! The broker's configuration: a TOML file whose keys follow mosquitto's
//! names where the concept is the same. Every key is optional; the defaults
//! are safe and useful (see `example.toml` at the repository root).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt_codec::QoS;
use mqtt_session::{Overflow, QueueLimits, ServerConfig};
use serde::Deserialize;

use crate::bridge::BridgeConfig;
use crate::cluster::ClusterConfig;
use crate::listener::ListenerConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown, or a value has the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of its range.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// What a full session queue drops (`queue_overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueOverflow {
    /// Refuse the new message (after QoS 0 messages are gone).
    #[default]
    DropNewest,
    /// Drop the oldest queued message.
    DropOldest,
}

/// A `[[client_limits]]` table: subscription limits for some clients (a
/// backend application that subscribes one filter per device, say), in
/// place of the top-level ones. A table matches a client when every
/// matcher it has matches; at least one is needed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientLimits {
    /// Matches clients that authenticated with this user name.
    pub username: Option<String>,
    /// Matches clients whose client identifier starts with this.
    pub client_id_prefix: Option<String>,
    /// Replaces `max_subscriptions_per_client` for them.
    pub max_subscriptions_per_client: Option<usize>,
    /// Replaces `max_subscription_bytes_per_client` for them.
    pub max_subscription_bytes_per_client: Option<usize>,
}

impl ClientLimits {
    /// Whether this table is for the client with `client_id` and
    /// `username`.
    pub fn matches(&self, client_id: &str, username: Option<&str>) -> bool {
        self.username.as_deref().is_none_or(|u| username == Some(u))
            && self
                .client_id_prefix
                .as_deref()
                .is_none_or(|p| client_id.starts_with(p))
    }
}

/// The broker configuration. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to accept MQTT over TCP on: the shorthand for plain
    /// `[[listener]]` tables. Default: `["127.0.0.1:1883"]`.
    pub listen: Vec<SocketAddr>,
    /// The `[[listener]]` tables: listeners of every kind (TCP, TLS,
    /// WebSocket, secure WebSocket) with their settings, besides those of
    /// `listen`. Default: none.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Most simultaneous client connections; further ones are closed at
    /// once. Default: 10000.
    pub max_connections: usize,
    /// Threads serving the connections, for the `mqtt broker` command,
    /// which starts the runtime; 0 = one per core. An application that
    /// embeds [`Server`](crate::Server) runs it on its own runtime, and
    /// this key is not used. Default: 0.
    pub workers: usize,
    /// Largest packet accepted from a client, in bytes. Default: 1048576 (1 MiB).
    pub max_packet_size: u32,
    /// Largest keep alive a client may use, in seconds. Default: 65535 (no limit).
    pub max_keepalive: u16,
    /// QoS 1/2 messages in flight to one client at once. Default: 1024.
    pub max_inflight_messages: u16,
    /// QoS 1/2 messages one client may have unacknowledged towards the
    /// broker (Receive Maximum): beyond it, the connection stops reading
    /// until acknowledgements leave. Default: 1024.
    pub receive_maximum: u16,
    /// Messages queued per session beyond those in flight. Default: 1000.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session. Default: 16777216 (16 MiB).
    pub max_queued_bytes: usize,
    /// Which message a full queue drops once no QoS 0 message is left to
    /// drop: `"drop_newest"` (default) or `"drop_oldest"`.
    pub queue_overflow: QueueOverflow,
    /// Highest topic alias in either direction. Default: 64.
    pub topic_alias_maximum: u16,
    /// Most subscriptions one client may hold. Default: 100000.
    pub max_subscriptions_per_client: usize,
    /// Most bytes of subscriptions one client may hold, each counting its
    /// filter's length plus 430 (what the index takes per subscription,
    /// measured). Default: 16777216 (16 MiB: about 35,000 filters of 50
    /// bytes).
    pub max_subscription_bytes_per_client: usize,
    /// `[[client_limits]]` tables: other subscription limits for the
    /// clients they match (the first that matches). Default: none.
    pub client_limits: Vec<ClientLimits>,
    /// Most levels in a topic name or filter. Default: 64.
    pub max_topic_levels: usize,
    /// Seconds a new connection has to send CONNECT. Default: 10.
    pub connect_timeout: u64,
    /// Highest QoS clients may use (0, 1 or 2). Default: 2.
    pub max_qos: u8,
    /// Whether retained messages are supported. Default: true.
    pub retain_available: bool,
    /// Most retained messages kept. Default: 100000.
    pub max_retained_messages: usize,
    /// Longest session expiry granted, in seconds; sessions of 3.1.1
    /// clients without clean session use it. Default: 4294967295 (never).
    pub max_session_expiry: u32,
    /// Whether clients without a user name may connect. Default: true.
    pub allow_anonymous: bool,
    /// A mosquitto_passwd file checking clients with a user name
    /// (`mqtt passwd` writes one). Default: none (any user name accepted).
    pub password_file: Option<PathBuf>,
    /// A mosquitto-format ACL file. Default: none (everything allowed).
    pub acl_file: Option<PathBuf>,
    /// Failed logins from one address within `auth_failure_window` after
    /// which it is refused for `auth_failure_window`; 0 = no limit.
    /// Default: 5.
    pub max_auth_failures: u32,
    /// Seconds of the failed-login window and of the refusal. Default: 60.
    pub auth_failure_window: u64,
    /// PUBLISH packets per second one client may send; faster clients are
    /// throttled; 0 = unlimited. Default: 0.
    pub max_publish_rate: u32,
    /// PUBLISH bytes (topic + payload) per second one client may send;
    /// 0 = unlimited. Default: 0.
    pub max_publish_bytes_rate: u64,
    /// New connections per second a listener accepts; more are closed at
    /// once; 0 = unlimited. Default: 0.
    pub max_connection_rate: u32,
    /// Address of the HTTP listener serving Prometheus metrics on
    /// `GET /metrics`. Default: none (off).
    pub metrics_listen: Option<SocketAddr>,
    /// A token scrapers must send as `Authorization: Bearer <token>`; others
    /// get 401. Default: none (no authentication: keep the listener on a
    /// loopback or private address).
    pub metrics_token: Option<String>,
    /// Address of the operator's console: the admin HTTP API (`/api/v1/`)
    /// and the live dashboard (`/`). Keep it on a loopback address, e.g.
    /// `"127.0.0.1:8088"`, or behind TLS (`admin_certfile`). Needs
    /// `admin_token`, `admin_token_file` or `admin_users`. Default: none
    /// (off).
    pub admin_listen: Option<SocketAddr>,
    /// A token the console accepts as `Authorization: Bearer <token>`:
    /// printable ASCII without spaces, at least 16 characters. Default: none.
    pub admin_token: Option<String>,
    /// A file whose first line is the admin token (so that the token is not
    /// in the configuration file). Default: none.
    pub admin_token_file: Option<PathBuf>,
    /// Users who may log in to the console (`POST /api/v1/login`) with
    /// their password, checked by `password_file` (or the authenticator an
    /// embedding application installs): the admin role. Default: none.
    pub admin_users: Vec<String>,
    /// TLS for the console (HTTPS): the certificate chain, PEM, as a
    /// listener's `certfile`. Default: none (plain HTTP).
    pub admin_certfile: Option<PathBuf>,
    /// TLS: the private key, PEM, as a listener's `keyfile`. Default: none.
    pub admin_keyfile: Option<PathBuf>,
    /// TLS: CA certificates client certificates are checked against, as a
    /// listener's `cafile`. Default: none.
    pub admin_cafile: Option<PathBuf>,
    /// TLS: refuse clients without a certificate signed by `admin_cafile`.
    /// Default: false.
    pub admin_require_certificate: bool,
    /// Most connections to the console at once (each open dashboard keeps
    /// one for its live updates); more wait to be accepted. Default: 64.
    pub admin_max_connections: usize,
    /// Largest request body the console reads, in bytes; larger requests
    /// get 413. Default: 1048576 (1 MiB).
    pub admin_max_body_bytes: usize,
    /// Most items one page of a list may ask for (`limit`); a page has
    /// 100 unless asked. Default: 1000.
    pub admin_max_page_size: usize,
    /// Seconds a console login lasts. Default: 3600.
    pub admin_session_timeout: u64,
    /// Seconds between `$SYS/broker/...` updates; 0 = off. Default: 10.
    pub sys_interval: u64,
    /// Milliseconds a publisher may wait for room in a connected
    /// subscriber's full queue (it is not read meanwhile, and a QoS 1/2
    /// acknowledgement is held: its Receive Maximum throttles it). After that the
    /// delivery is dropped and counted, and the subscriber is marked
    /// congested so that publishers stop waiting for it until it reads
    /// again. 0 = never wait (drop by `queue_overflow`). Default: 2000.
    pub max_publish_wait_ms: u64,
    /// Whether sessions, queued and in-flight messages, retained messages
    /// and wills are kept on disk, in `data_dir`, and restored at startup.
    /// Default: false (in memory). `--data-dir DIR` turns it on.
    pub persistence: bool,
    /// The store's directory (created if missing), with `persistence`.
    /// Default: `"mqtt-data"`.
    pub data_dir: PathBuf,
    /// The `[[bridge]]` tables: connections to other MQTT brokers, and the
    /// topics they carry each way (see the crate's `bridge` module).
    /// Default: none.
    #[serde(rename = "bridge")]
    pub bridges: Vec<BridgeConfig>,
    /// The `[cluster]` table: this broker as one node of a cluster on
    /// NATS JetStream (see the crate's `cluster` module). Default: none (a
    /// single node, no NATS).
    pub cluster: Option<ClusterConfig>,
}

/// Most threads `workers` may ask for.
const MAX_WORKERS: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        let session = ServerConfig::default();
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            listeners: Vec::new(),
            max_connections: 10_000,
            workers: 0,
            max_packet_size: session.max_packet_size,
            max_keepalive: session.max_keepalive,
            max_inflight_messages: session.max_inflight,
            receive_maximum: session.receive_maximum,
            max_queued_messages: session.queue.max_messages,
            max_queued_bytes: session.queue.max_bytes,
            queue_overflow: QueueOverflow::DropNewest,
            topic_alias_maximum: session.topic_alias_maximum,
            max_subscriptions_per_client: 100_000,
            max_subscription_bytes_per_client: 16 * 1024 * 1024,
            client_limits: Vec::new(),
            max_topic_levels: 64,
            connect_timeout: 10,
            max_qos: 2,
            retain_available: true,
            max_retained_messages: 100_000,
            max_session_expiry: u32::MAX,
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            max_auth_failures: 5,
            auth_failure_window: 60,
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
            max_connection_rate: 0,
            metrics_listen: None,
            metrics_token: None,
            admin_listen: None,
            admin_token: None,
            admin_token_file: None,
            admin_users: Vec::new(),
            admin_certfile: None,
            admin_keyfile: None,
            admin_cafile: None,
            admin_require_certificate: false,
            admin_max_connections: 64,
            admin_max_body_bytes: 1024 * 1024,
            admin_max_page_size: 1000,
            admin_session_timeout: 3600,
            sys_interval: 10,
            max_publish_wait_ms: 2000,
            persistence: false,
            data_dir: PathBuf::from("mqtt-data"),
            bridges: Vec::new(),
            cluster: None,
        }
    }
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_string(),
            })
        };
        if self.listen.is_empty() && self.listeners.is_empty() {
            return invalid(
                "listen",
                "at least one address (or one [[listener]] table) is needed",
            );
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            listener.validate(i + 1)?;
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if let Some(token) = &self.metrics_token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return invalid(
                "metrics_token",
                "must be non-empty and printable ASCII without spaces (it is sent in an HTTP header)",
            );
        }
        crate::admin::validate(self)?;
        if self.workers > MAX_WORKERS {
            return invalid("workers", "must be at most 1024 (0 = one per core)");
        }
        if self.max_packet_size < 16 {
            return invalid("max_packet_size", "must be at least 16 bytes");
        }
        if self.max_packet_size > mqtt_codec::DecodeLimits::PROTOCOL_MAX_PACKET_SIZE {
            return invalid(
                "max_packet_size",
                "must be at most 268435460 bytes, MQTT's own limit",
            );
        }
        for (key, v) in [
            ("max_keepalive", u32::from(self.max_keepalive)),
            (
                "max_inflight_messages",
                u32::from(self.max_inflight_messages),
            ),
            ("receive_maximum", u32::from(self.receive_maximum)),
        ] {
            if v == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.max_queued_messages == 0 {
            return invalid("max_queued_messages", "must be at least 1");
        }
        if self.max_queued_bytes == 0 {
            return invalid("max_queued_bytes", "must be at least 1");
        }
        if self.max_subscriptions_per_client == 0 {
            return invalid("max_subscriptions_per_client", "must be at least 1");
        }
        if self.max_subscription_bytes_per_client == 0 {
            return invalid("max_subscription_bytes_per_client", "must be at least 1");
        }
        for (i, limits) in self.client_limits.iter().enumerate() {
            let problem = if limits.username.is_none() && limits.client_id_prefix.is_none() {
                Some("needs `username` or `client_id_prefix` to match clients by")
            } else if limits.max_subscriptions_per_client == Some(0)
                || limits.max_subscription_bytes_per_client == Some(0)
            {
                Some("limits must be at least 1")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::Invalid {
                    key: "client_limits",
                    problem: format!("table {}: {problem}", i + 1),
                });
            }
        }
        if self.max_topic_levels == 0 {
            return invalid("max_topic_levels", "must be at least 1");
        }
        if self.connect_timeout == 0 {
            return invalid("connect_timeout", "must be at least 1 second");
        }
        if self.max_qos > 2 {
            return invalid("max_qos", "must be 0, 1 or 2");
        }
        if self.max_auth_failures > 0 && self.auth_failure_window == 0 {
            return invalid("auth_failure_window", "must be at least 1 second");
        }
        if self.max_publish_wait_ms > 3_600_000 {
            return invalid("max_publish_wait_ms", "must be at most 3600000 (one hour)");
        }
        if self.persistence && self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must name a directory when persistence is on");
        }
        crate::bridge::validate_all(&self.bridges, &self.queue_limits())?;
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        Ok(())
    }

    /// The per-connection protocol settings.
    pub fn session_config(&self) -> ServerConfig {
        ServerConfig {
            receive_maximum: self.receive_maximum,
            max_inflight: self.max_inflight_messages,
            max_packet_size: self.max_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
            max_keepalive: self.max_keepalive,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            maximum_qos: QoS::from_u8(self.max_qos).unwrap_or(QoS::ExactlyOnce),
            retain_available: self.retain_available,
            max_session_expiry: self.max_session_expiry,
            queue: self.queue_limits(),
            ..ServerConfig::default()
        }
    }

    /// How long a publisher may wait for room in a subscriber's queue.
    pub fn max_publish_wait(&self) -> Duration {
        Duration::from_millis(self.max_publish_wait_ms)
    }

    /// The per-session queue limits.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_messages: self.max_queued_messages,
            max_bytes: self.max_queued_bytes,
            overflow: match self.queue_overflow {
                QueueOverflow::DropNewest => Overflow::DropNewest,
                QueueOverflow::DropOldest => Overflow::DropOldest,
            },
        }
    }
}

/// The commented examples of the tables `headers` (e.g. `"[[listener]]"`)
/// in example.toml, uncommented: each header line and the `key = value`
/// lines right after it. For the tests that check the examples.
#[cfg(test)]
pub(crate) fn example_tables(headers: &[&str]) -> String {
    let text = include_str!("../../example.toml");
    let mut examples = String::new();
    let mut in_table = false;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# ").filter(|h| headers.contains(h)) {
            in_table = true;
            examples.push_str(header);
            examples.push('\n');
            continue;
        }
        let setting = line
            .strip_prefix("# ")
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')));
        match setting {
            Some(l) if in_table => {
                examples.push_str(l);
                examples.push('\n');
            }
            _ => in_table = false,
        }
    }
    examples
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The example file documents every key with its default value.
    #[test]
    fn example_toml_is_the_defaults() {
        let text = include_str!("../../example.toml");
        let parsed = Config::from_toml(text).expect("example.toml parses");
        assert_eq!(parsed, Config::default());
        let table: toml::Table = toml::from_str(text).expect("valid TOML");
        for key in [
            "listen",
            "max_connections",
            "workers",
            "max_packet_size",
            "max_keepalive",
            "max_inflight_messages",
            "receive_maximum",
            "max_queued_messages",
            "max_queued_bytes",
            "queue_overflow",
            "topic_alias_maximum",
            "max_subscriptions_per_client",
            "max_subscription_bytes_per_client",
            "max_topic_levels",
            "connect_timeout",
            "max_qos",
            "retain_available",
            "max_retained_messages",
            "max_session_expiry",
            "allow_anonymous",
            "max_auth_failures",
            "auth_failure_window",
            "max_publish_rate",
            "max_publish_bytes_rate",
            "max_connection_rate",
            "sys_interval",
            "admin_users",
            "admin_require_certificate",
            "admin_max_connections",
            "admin_max_body_bytes",
            "admin_max_page_size",
            "admin_session_timeout",
            "max_publish_wait_ms",
            "persistence",
            "data_dir",
        ] {
            assert!(table.contains_key(key), "example.toml lacks `{key}`");
        }
        assert_eq!(
            table.len(),
            35,
            "a key in example.toml is not listed in this test"
        );
        // Keys off by default are shown commented out, with an example value.
        for key in [
            "password_file",
            "acl_file",
            "metrics_listen",
            "metrics_token",
            "admin_listen",
            "admin_token",
            "admin_token_file",
            "admin_certfile",
            "admin_keyfile",
            "admin_cafile",
        ] {
            assert!(
                text.contains(&format!("\n# {key} = ")),
                "example.toml lacks `# {key} = ...`"
            );
        }
    }

    /// The commented `[[listener]]` examples of example.toml, uncommented,
    /// are a valid configuration, and together they show every key of a
    /// listener table.
    #[test]
    fn example_toml_listener_examples_use_every_key() {
        use crate::listener::{ListenerConfig, ListenerKind};

        let examples = format!("listen = []\n{}", example_tables(&["[[listener]]"]));
        let parsed = Config::from_toml(&examples).expect("the [[listener]] examples parse");
        for kind in ["mqtt", "mqtts", "ws", "wss"] {
            assert!(
                parsed.listeners.iter().any(|l| l.kind.as_str() == kind),
                "example.toml has no [[listener]] example of kind {kind}"
            );
        }
        let table: toml::Table = toml::from_str(&examples).expect("valid TOML");
        let used: std::collections::BTreeSet<&str> = table["listener"]
            .as_array()
            .expect("an array of tables")
            .iter()
            .flat_map(|t| t.as_table().expect("a table").keys())
            .map(String::as_str)
            .collect();
        // Naming every field: a new one fails to compile here until it is
        // added to this list (and to example.toml).
        let ListenerConfig {
            kind: _,
            address: _,
            certfile: _,
            keyfile: _,
            cafile: _,
            require_certificate: _,
            use_identity_as_username: _,
            path: _,
            proxy_protocol: _,
            allow_anonymous: _,
            password_file: _,
            acl_file: _,
            max_subscriptions_per_client: _,
            max_subscription_bytes_per_client: _,
        } = ListenerConfig::new(ListenerKind::Mqtt, SocketAddr::from(([127, 0, 0, 1], 1883)));
        let every: std::collections::BTreeSet<&str> = [
            "kind",
            "address",
            "certfile",
            "keyfile",
            "cafile",
            "require_certificate",
            "use_identity_as_username",
            "path",
            "proxy_protocol",
            "allow_anonymous",
            "password_file",
            "acl_file",
            "max_subscriptions_per_client",
            "max_subscription_bytes_per_client",
        ]
        .into();
        assert_eq!(used, every, "the [[listener]] examples of example.toml");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_toml("max_conections = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let err = Config::from_toml("max_packet_size = \"big\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_packet_size"), "{err}");
    }

    #[test]
    fn out_of_range_value_is_an_error_naming_the_key() {
        let err = Config::from_toml("max_qos = 3").unwrap_err().to_string();
        assert!(err.contains("max_qos"), "{err}");
        let err = Config::from_toml("receive_maximum = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("receive_maximum"), "{err}");
        let err = Config::from_toml("workers = 1025").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        assert_eq!(Config::from_toml("workers = 1024").unwrap().workers, 1024);
    }
}
