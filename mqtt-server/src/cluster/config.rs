//! The `[cluster]` table: how this broker joins the others through NATS.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// The `[cluster]` table (or `mqtt broker --cluster URL`): this broker is
/// one node of a cluster whose nodes meet on a NATS server with JetStream.
/// Without it the broker is a single node and never connects to NATS.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs, `nats://HOST:PORT` (`tls://` for TLS). At least one.
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster: letters, digits, `-`, `_`.
    /// Default: the host name and a random suffix (set it for a name that
    /// stays the same across restarts).
    pub node: Option<String>,
    /// The prefix of every subject, stream and bucket of this cluster, so
    /// that several clusters can share one NATS: letters, digits, `-`,
    /// `_`. Default: `"mqtt"`.
    pub prefix: String,
    /// Replicas of the JetStream stream and buckets: 1 for a one-server
    /// NATS, 3 in production. Default: 1.
    pub replicas: usize,
    /// Seconds after its last heartbeat that a node is taken for dead; a
    /// node refreshes its own every third of it. Default: 10.
    pub node_ttl: u64,
    /// Messages waiting to be sent to NATS, at most; beyond, QoS 0 messages
    /// for other nodes are dropped (counted) and QoS 1/2 publications are
    /// refused (0x97). The same bound applies to the queue of client
    /// identifier claims (a claim that does not fit is counted, and that
    /// connection is not claimed in the cluster). Default: 10000.
    pub max_pending: usize,
    /// Bytes the stream of QoS 1/2 messages between nodes may hold; when
    /// full, new QoS 1/2 publications that need it are refused. Default:
    /// 1073741824 (1 GiB).
    pub stream_max_bytes: i64,
    /// Seconds to wait for JetStream to confirm that it stored a message
    /// before the publication is refused. Default: 5.
    pub ack_timeout: u64,
    /// User name and password at the NATS server. Default: none.
    pub username: Option<String>,
    /// See `username`.
    pub password: Option<String>,
    /// A token for the NATS server. Default: none.
    pub token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed). Default: none.
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) the NATS server's certificate is checked
    /// against; set, TLS is required. Default: none.
    pub cafile: Option<PathBuf>,
    /// This node's certificate chain (PEM), for a NATS server that asks
    /// for one (with `keyfile`). Default: none.
    pub certfile: Option<PathBuf>,
    /// The key of `certfile` (PEM). Default: none.
    pub keyfile: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            node: None,
            prefix: "mqtt".into(),
            replicas: 1,
            node_ttl: 10,
            max_pending: 10_000,
            stream_max_bytes: 1 << 30,
            ack_timeout: 5,
            username: None,
            password: None,
            token: None,
            credentials_file: None,
            cafile: None,
            certfile: None,
            keyfile: None,
        }
    }
}

/// Whether `s` may be a NATS subject token and part of a stream name.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    /// Checks ranges the types cannot express; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_string(),
            })
        };
        if self.urls.is_empty() {
            return invalid("cluster.urls", "at least one NATS URL is needed");
        }
        if let Some(u) = self.urls.iter().find(|u| {
            !["nats://", "tls://"].iter().any(|s| u.starts_with(s))
                || u.contains(char::is_whitespace)
        }) {
            return invalid(
                "cluster.urls",
                &format!("{u:?} is not a nats://HOST:PORT or tls://HOST:PORT URL"),
            );
        }
        if let Some(n) = &self.node
            && !is_name(n)
        {
            return invalid(
                "cluster.node",
                "1 to 64 letters, digits, '-' or '_' (it is a NATS subject token)",
            );
        }
        if !is_name(&self.prefix) {
            return invalid(
                "cluster.prefix",
                "1 to 64 letters, digits, '-' or '_' (it is a NATS subject token)",
            );
        }
        if !(1..=5).contains(&self.replicas) {
            return invalid("cluster.replicas", "must be 1 to 5 (JetStream's range)");
        }
        if !(1..=3600).contains(&self.node_ttl) {
            return invalid("cluster.node_ttl", "must be 1 to 3600 seconds");
        }
        if self.max_pending == 0 {
            return invalid("cluster.max_pending", "must be at least 1");
        }
        if self.stream_max_bytes < 1024 * 1024 {
            return invalid("cluster.stream_max_bytes", "must be at least 1048576");
        }
        if !(1..=600).contains(&self.ack_timeout) {
            return invalid("cluster.ack_timeout", "must be 1 to 600 seconds");
        }
        if self.password.is_some() != self.username.is_some() {
            return invalid("cluster.password", "username and password go together");
        }
        if self.certfile.is_some() != self.keyfile.is_some() {
            return invalid("cluster.keyfile", "certfile and keyfile go together");
        }
        if !cfg!(feature = "cluster") {
            return invalid(
                "cluster",
                "this build has no cluster support (mqtt-server's `cluster` feature)",
            );
        }
        Ok(())
    }

    /// The node name: `node`, or the host name and a random suffix.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node {
            return n.clone();
        }
        let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default()
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        let suffix: String = r.iter().map(|b| format!("{b:02x}")).collect();
        if host.is_empty() {
            format!("node-{suffix}")
        } else {
            format!("{host}-{suffix}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Config;

    /// The commented `[cluster]` example of example.toml, uncommented, is
    /// valid and shows every key.
    #[test]
    fn example_toml_cluster_example_uses_every_key() {
        let examples = crate::config::example_tables(&["[cluster]"]);
        let table: toml::Table = toml::from_str(&examples).expect("valid TOML");
        let used: std::collections::BTreeSet<&str> = table["cluster"]
            .as_table()
            .expect("a table")
            .keys()
            .map(String::as_str)
            .collect();
        let ClusterConfig {
            urls: _,
            node: _,
            prefix: _,
            replicas: _,
            node_ttl: _,
            max_pending: _,
            stream_max_bytes: _,
            ack_timeout: _,
            username: _,
            password: _,
            token: _,
            credentials_file: _,
            cafile: _,
            certfile: _,
            keyfile: _,
        } = ClusterConfig::default();
        let every: std::collections::BTreeSet<&str> = [
            "urls",
            "node",
            "prefix",
            "replicas",
            "node_ttl",
            "max_pending",
            "stream_max_bytes",
            "ack_timeout",
            "username",
            "password",
            "token",
            "credentials_file",
            "cafile",
            "certfile",
            "keyfile",
        ]
        .into();
        assert_eq!(used, every, "the [cluster] example of example.toml");
        let parsed: Config = toml::from_str(&examples).unwrap();
        let c = parsed.cluster.unwrap();
        // The example's values other than the credentials are the defaults.
        let d = ClusterConfig::default();
        assert_eq!(
            (c.prefix, c.replicas, c.node_ttl, c.max_pending),
            (d.prefix, d.replicas, d.node_ttl, d.max_pending)
        );
        assert_eq!(
            (c.stream_max_bytes, c.ack_timeout),
            (d.stream_max_bytes, d.ack_timeout)
        );
    }

    /// Errors name the key.
    #[test]
    fn invalid_cluster_values_name_their_key() {
        for (text, key) in [
            ("[cluster]\n", "cluster.urls"),
            ("[cluster]\nurls = [\"http://x\"]\n", "cluster.urls"),
            (
                "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnode = \"a.b\"\n",
                "cluster.node",
            ),
            (
                "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nreplicas = 0\n",
                "cluster.replicas",
            ),
            (
                "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnode_ttl = 0\n",
                "cluster.node_ttl",
            ),
            (
                "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nmax_pending = 0\n",
                "cluster.max_pending",
            ),
            (
                "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnods = 1\n",
                "nods",
            ),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    /// Without a name, a node gets a valid one, different each time.
    #[test]
    fn default_node_names_are_valid_and_distinct() {
        let c = ClusterConfig::default();
        let (a, b) = (c.node_name(), c.node_name());
        assert!(is_name(&a), "{a}");
        assert_ne!(a, b);
    }
}
