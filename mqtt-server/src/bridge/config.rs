//! The `[[bridge]]` tables of the configuration, in mosquitto's vocabulary,
//! and the topic rules' remapping.
//!
//! A `[[bridge.topic]]` rule is mosquitto's `topic pattern direction qos
//! local_prefix remote_prefix` line as a table. Its local filter is
//! `local_prefix + pattern`, its remote filter `remote_prefix + pattern`;
//! a message crossing the bridge has the one prefix replaced by the other.
//! With an empty pattern the prefixes are whole topics: one topic renamed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mqtt_codec::{ProtocolVersion, QoS};
use mqtt_session::{Overflow, QueueLimits};
use mqtt_topic::{TopicFilter, TopicName};
use serde::Deserialize;

use crate::config::{ConfigError, QueueOverflow};

/// Port of `address` when it names none: MQTT's, or MQTT over TLS's.
const DEFAULT_PORT: u16 = 1883;
const DEFAULT_TLS_PORT: u16 = 8883;
/// Longest bridge name: it is part of a client identifier, a `$SYS`
/// topic and a metric label.
const MAX_NAME: usize = 64;
/// What the store keeps of one session's queue at most (its backstop,
/// `mqtt_store::StoreLimits`): a bridge's queue and what it has in flight
/// stay within it, so that the store never refuses a message for it.
const STORE_MAX_MESSAGES: usize = 100_000;
const STORE_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The MQTT version a bridge speaks to its remote broker (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum BridgeProtocol {
    /// MQTT 3.1.1 (mosquitto's `mqttv311`), the default, as mosquitto's.
    #[default]
    #[serde(rename = "3.1.1", alias = "mqttv311")]
    V3_1_1,
    /// MQTT 5.0 (mosquitto's `mqttv50`).
    #[serde(rename = "5.0", alias = "mqttv50")]
    V5,
}

impl BridgeProtocol {
    /// The codec's version.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Self::V3_1_1 => ProtocolVersion::V3_1_1,
            Self::V5 => ProtocolVersion::V5,
        }
    }
}

/// Which way a topic rule carries messages (`direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From this broker to the remote one (the default, as mosquitto's).
    #[default]
    Out,
    /// From the remote broker to this one.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether messages go from here to the remote broker.
    pub fn outgoing(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }

    /// Whether messages come from the remote broker.
    pub fn incoming(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// A `[[bridge.topic]]` table: mosquitto's `topic` line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TopicRule {
    /// The topic filter, below the prefixes (`#`, `sensors/+/temp`...).
    /// May be empty when both prefixes are set: then they are whole topic
    /// names, one renamed to the other.
    pub pattern: String,
    /// `"out"` (default), `"in"` or `"both"`.
    pub direction: Direction,
    /// The QoS the bridge subscribes with, on each side it takes messages
    /// from: messages cross at the lesser of theirs and this. Default: 0.
    pub qos: u8,
    /// What local topics start with (no wildcards). Default: none.
    pub local_prefix: String,
    /// What remote topics start with instead (no wildcards). Default: none.
    pub remote_prefix: String,
}

impl TopicRule {
    /// The filter of local topics this rule takes (out) or makes (in).
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter of remote topics this rule makes (out) or takes (in).
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The QoS.
    pub fn qos(&self) -> QoS {
        QoS::from_u8(self.qos).unwrap_or(QoS::AtMostOnce)
    }

    fn validate(&self) -> Result<(), String> {
        if self.qos > 2 {
            return Err("`qos` must be 0, 1 or 2".into());
        }
        for (key, prefix) in [
            ("local_prefix", &self.local_prefix),
            ("remote_prefix", &self.remote_prefix),
        ] {
            if prefix.contains(['+', '#']) {
                return Err(format!("`{key}` {prefix:?} may not contain a wildcard"));
            }
            if self.pattern.is_empty() && TopicName::new(prefix).is_err() {
                return Err(format!(
                    "`{key}` {prefix:?} must be a topic name when `pattern` is empty"
                ));
            }
        }
        for (key, filter) in [
            ("local_prefix + pattern", self.local_filter()),
            ("remote_prefix + pattern", self.remote_filter()),
        ] {
            if let Err(e) = TopicFilter::new(&filter) {
                return Err(format!("{key} {filter:?} is not a topic filter: {e}"));
            }
            if filter.starts_with("$share/") {
                return Err(format!(
                    "{key} {filter:?}: shared subscriptions are not bridged"
                ));
            }
        }
        Ok(())
    }

    /// The local topic of a message received from the remote broker on
    /// `remote`, if this rule takes it in.
    pub fn to_local(&self, remote: &str) -> Option<String> {
        if !self.direction.incoming() {
            return None;
        }
        remap(
            remote,
            &self.remote_filter(),
            &self.remote_prefix,
            &self.local_prefix,
        )
    }

    /// The remote topic of a local message on `local`, if this rule sends
    /// it out.
    pub fn to_remote(&self, local: &str) -> Option<String> {
        if !self.direction.outgoing() {
            return None;
        }
        remap(
            local,
            &self.local_filter(),
            &self.local_prefix,
            &self.remote_prefix,
        )
    }
}

/// `topic` with `from` replaced by `to`, if `filter` matches it and it
/// starts with `from` (`a/#` matches `a` itself, which has no `a/`).
fn remap(topic: &str, filter: &str, from: &str, to: &str) -> Option<String> {
    if !mqtt_topic::matches(filter, topic) {
        return None;
    }
    let rest = topic.strip_prefix(from)?;
    let mapped = format!("{to}{rest}");
    // A rule whose prefixes make an empty topic of a message cannot
    // carry it.
    (!mapped.is_empty()).then_some(mapped)
}

/// A `[[bridge]]` table: a connection to another MQTT broker, mosquitto's
/// `connection` section. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// The bridge's name: letters, digits, `-`, `_` and `.`. It names the
    /// local session (`$bridge/NAME`), the `$SYS/broker/connection/NAME/`
    /// topics and the `bridge` label of the metrics. Required.
    pub name: String,
    /// The remote broker, `host:port` or `host` (port 1883, or 8883 with
    /// TLS); an IPv6 address in brackets. Required.
    pub address: String,
    /// Other addresses of the remote broker, tried in turn after `address`
    /// when it cannot be reached. Default: none.
    pub fallback_addresses: Vec<String>,
    /// `"3.1.1"` (default) or `"5.0"`.
    pub protocol: BridgeProtocol,
    /// The client identifier at the remote broker. Default:
    /// `HOSTNAME.NAME`, as mosquitto's.
    pub client_id: Option<String>,
    /// Whether each connection starts a new session at the remote broker.
    /// Default: false: the remote broker keeps the bridge's subscriptions,
    /// and the messages for it while it is away.
    pub clean_start: bool,
    /// Session Expiry Interval asked of the remote broker, in seconds
    /// (MQTT 5.0; a 3.1.1 remote keeps the session as long as it will).
    /// Default: 4294967295 (never).
    pub session_expiry: u32,
    /// The user name at the remote broker. Default: none.
    pub username: Option<String>,
    /// The password at the remote broker. Default: none.
    pub password: Option<String>,
    /// Keep alive towards the remote broker, in seconds (at least 1: a
    /// bridge must notice a remote broker that went away). Default: 60.
    pub keep_alive: u16,
    /// CA certificates (PEM) the remote broker's certificate is checked
    /// against: set, the bridge speaks TLS. Default: none (plain TCP).
    pub cafile: Option<PathBuf>,
    /// The bridge's certificate chain (PEM), for a remote broker that asks
    /// for one. Needs `keyfile` and `cafile`. Default: none.
    pub certfile: Option<PathBuf>,
    /// The private key of `certfile` (PEM). Default: none.
    pub keyfile: Option<PathBuf>,
    /// The name the remote broker's certificate must have. Default: the
    /// host of the address being tried.
    pub server_name: Option<String>,
    /// Whether CONNECT carries mosquitto's bridge bit (`try_private`), so
    /// that a remote broker that knows it (mosquitto, this one) does not
    /// send back what the bridge publishes. MQTT 3.1.1 only (5.0 uses No
    /// Local). A remote that refuses it is tried again without it.
    /// Default: true.
    pub try_private: bool,
    /// The topic rules (`[[bridge.topic]]`); at least one.
    #[serde(rename = "topic")]
    pub topics: Vec<TopicRule>,
    /// Milliseconds before the first reconnection attempt; each failure
    /// doubles it, up to `reconnect_delay_max_ms`, with jitter. Default: 1000.
    pub reconnect_delay_min_ms: u64,
    /// Longest wait between reconnection attempts, in milliseconds.
    /// Default: 60000.
    pub reconnect_delay_max_ms: u64,
    /// Seconds a connection attempt (TCP, TLS, CONNECT to CONNACK) may
    /// take. Default: 10.
    pub connect_timeout: u64,
    /// QoS 1 and 2 messages in flight to the remote broker at once (its
    /// Receive Maximum may lower it). Default: 20, mosquitto's: also what
    /// a mosquitto takes in flight from one client by default, beyond
    /// which it drops what an MQTT 3.1.1 client sends (quota exceeded,
    /// which 3.1.1 cannot tell). Raise both together.
    pub max_inflight_messages: u16,
    /// QoS 1 and 2 messages from the remote broker waiting for this broker
    /// to take them (store them) before their acknowledgement; beyond it
    /// the bridge stops reading. Told to a 5.0 remote as Receive Maximum.
    /// Default: 100.
    pub receive_maximum: u16,
    /// Messages queued for the remote broker (while it is away, or slower
    /// than this broker), in place of `max_queued_messages`. Default: the
    /// top-level `max_queued_messages`.
    pub max_queued_messages: Option<usize>,
    /// Bytes queued for the remote broker, in place of `max_queued_bytes`.
    /// Default: the top-level `max_queued_bytes`.
    pub max_queued_bytes: Option<usize>,
    /// What a full queue drops, in place of `queue_overflow`. Default: the
    /// top-level `queue_overflow`.
    pub queue_overflow: Option<QueueOverflow>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            address: String::new(),
            fallback_addresses: Vec::new(),
            protocol: BridgeProtocol::default(),
            client_id: None,
            clean_start: false,
            session_expiry: u32::MAX,
            username: None,
            password: None,
            keep_alive: 60,
            cafile: None,
            certfile: None,
            keyfile: None,
            server_name: None,
            try_private: true,
            topics: Vec::new(),
            reconnect_delay_min_ms: 1000,
            reconnect_delay_max_ms: 60_000,
            connect_timeout: 10,
            max_inflight_messages: 20,
            receive_maximum: 100,
            max_queued_messages: None,
            max_queued_bytes: None,
            queue_overflow: None,
        }
    }
}

/// A remote address: a host name or IP address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteAddr {
    /// As written, without brackets: what is resolved, and the default
    /// TLS server name.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl std::fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_addr(s: &str, default_port: u16) -> Result<RemoteAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(RemoteAddr {
            host: a.ip().to_string(),
            port: a.port(),
        });
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: `[` without `]`"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{s:?}: expected `:port`"))?,
                ),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "{s:?}: an IPv6 address with a port goes in brackets"
                ));
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?}: no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{s:?}: bad port {p:?}"))?,
    };
    Ok(RemoteAddr {
        host: host.to_owned(),
        port,
    })
}

/// This machine's name, for the default client identifier.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mqtt".to_owned())
}

impl BridgeConfig {
    /// Whether the bridge speaks TLS (`cafile` is set).
    pub fn tls(&self) -> bool {
        self.cafile.is_some()
    }

    /// The client identifier at the remote broker.
    pub fn remote_client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("{}.{}", hostname(), self.name))
    }

    /// `address` then `fallback_addresses`, parsed (checked by
    /// [`BridgeConfig::validate`]).
    pub(crate) fn addresses(&self) -> Vec<RemoteAddr> {
        let port = if self.tls() {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        std::iter::once(&self.address)
            .chain(&self.fallback_addresses)
            .filter_map(|a| parse_addr(a, port).ok())
            .collect()
    }

    /// The queue limits of the bridge's local session.
    pub fn queue_limits(&self, broker: &QueueLimits) -> QueueLimits {
        QueueLimits {
            max_messages: self.max_queued_messages.unwrap_or(broker.max_messages),
            max_bytes: self.max_queued_bytes.unwrap_or(broker.max_bytes),
            overflow: match self.queue_overflow {
                None => broker.overflow,
                Some(QueueOverflow::DropNewest) => Overflow::DropNewest,
                Some(QueueOverflow::DropOldest) => Overflow::DropOldest,
            },
        }
    }

    /// The reconnection delays (first, longest).
    pub fn reconnect_delays(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.reconnect_delay_min_ms),
            Duration::from_millis(self.reconnect_delay_max_ms),
        )
    }

    /// Checks what the types cannot. `number` is the table's position
    /// (1-based); `broker` the top-level queue limits a bridge may inherit.
    pub fn validate(&self, number: usize, broker: &QueueLimits) -> Result<(), ConfigError> {
        let which = if self.name.is_empty() {
            format!("[[bridge]] #{number}")
        } else {
            format!("[[bridge]] #{number} ({})", self.name)
        };
        let invalid = |key, problem: String| {
            Err(ConfigError::Invalid {
                key,
                problem: format!("{which}: {problem}"),
            })
        };
        if self.name.is_empty() {
            return invalid("bridge.name", "required".into());
        }
        if self.name.len() > MAX_NAME
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return invalid(
                "bridge.name",
                format!("at most {MAX_NAME} letters, digits, `-`, `_` and `.`"),
            );
        }
        if self.address.is_empty() {
            return invalid("bridge.address", "required".into());
        }
        if let Err(e) = parse_addr(&self.address, DEFAULT_PORT) {
            return invalid("bridge.address", e);
        }
        for a in &self.fallback_addresses {
            if let Err(e) = parse_addr(a, DEFAULT_PORT) {
                return invalid("bridge.fallback_addresses", e);
            }
        }
        if self.client_id.as_deref() == Some("") {
            return invalid(
                "bridge.client_id",
                "may not be empty (leave it out for HOSTNAME.NAME)".into(),
            );
        }
        if self.client_id.as_ref().is_some_and(|c| c.len() > 65_535) {
            return invalid("bridge.client_id", "longer than 65535 bytes".into());
        }
        if self.password.is_some()
            && self.username.is_none()
            && self.protocol == BridgeProtocol::V3_1_1
        {
            return invalid(
                "bridge.password",
                "MQTT 3.1.1 sends no password without a `username`".into(),
            );
        }
        if self.keep_alive == 0 {
            return invalid(
                "bridge.keep_alive",
                "must be at least 1 second: a bridge must notice a remote broker that went away"
                    .into(),
            );
        }
        if self.certfile.is_some() != self.keyfile.is_some() {
            let key = if self.certfile.is_some() {
                "bridge.keyfile"
            } else {
                "bridge.certfile"
            };
            return invalid(key, "`certfile` and `keyfile` go together".into());
        }
        if !self.tls() {
            if self.certfile.is_some() {
                return invalid("bridge.cafile", "required by `certfile` (TLS)".into());
            }
            if self.server_name.is_some() {
                return invalid("bridge.cafile", "required by `server_name` (TLS)".into());
            }
        }
        if let Some(name) = &self.server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return invalid(
                "bridge.server_name",
                format!("{name:?} is not a DNS name or IP address"),
            );
        }
        if self.topics.is_empty() {
            return invalid(
                "bridge.topic",
                "at least one [[bridge.topic]] table is needed".into(),
            );
        }
        for (i, rule) in self.topics.iter().enumerate() {
            if let Err(problem) = rule.validate() {
                return invalid("bridge.topic", format!("topic #{}: {problem}", i + 1));
            }
        }
        if self.reconnect_delay_min_ms == 0 {
            return invalid("bridge.reconnect_delay_min_ms", "must be at least 1".into());
        }
        if self.reconnect_delay_max_ms < self.reconnect_delay_min_ms {
            return invalid(
                "bridge.reconnect_delay_max_ms",
                "must be at least reconnect_delay_min_ms".into(),
            );
        }
        if self.reconnect_delay_max_ms > 3_600_000 {
            return invalid(
                "bridge.reconnect_delay_max_ms",
                "must be at most 3600000 (one hour)".into(),
            );
        }
        if self.connect_timeout == 0 || self.connect_timeout > 3600 {
            return invalid("bridge.connect_timeout", "must be 1 to 3600 seconds".into());
        }
        if self.max_inflight_messages == 0 {
            return invalid("bridge.max_inflight_messages", "must be at least 1".into());
        }
        if self.receive_maximum == 0 {
            return invalid("bridge.receive_maximum", "must be at least 1".into());
        }
        let limits = self.queue_limits(broker);
        if limits.max_messages == 0 {
            return invalid("bridge.max_queued_messages", "must be at least 1".into());
        }
        if limits.max_bytes == 0 {
            return invalid("bridge.max_queued_bytes", "must be at least 1".into());
        }
        let inflight = usize::from(self.max_inflight_messages);
        if limits.max_messages + inflight > STORE_MAX_MESSAGES {
            return invalid(
                "bridge.max_queued_messages",
                format!(
                    "with max_inflight_messages, at most {STORE_MAX_MESSAGES} (what the store keeps of one queue)"
                ),
            );
        }
        if limits.max_bytes > STORE_MAX_BYTES / 2 {
            return invalid(
                "bridge.max_queued_bytes",
                format!(
                    "at most {} (half what the store keeps of one queue, for the messages in flight)",
                    STORE_MAX_BYTES / 2
                ),
            );
        }
        Ok(())
    }
}

/// Checks the `[[bridge]]` tables together: each, and that names are unique.
pub(crate) fn validate_all(
    bridges: &[BridgeConfig],
    broker: &QueueLimits,
) -> Result<(), ConfigError> {
    for (i, b) in bridges.iter().enumerate() {
        b.validate(i + 1, broker)?;
        if bridges[..i].iter().any(|other| other.name == b.name) {
            return Err(ConfigError::Invalid {
                key: "bridge.name",
                problem: format!("[[bridge]] #{}: the name {:?} is used twice", i + 1, b.name),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
