//! The `[[bridge]]` tables: defaults, errors naming the key, the rules'
//! remapping, and example.toml.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::Config;

fn error(toml: &str) -> String {
    Config::from_toml(toml).unwrap_err().to_string()
}

const MINIMAL: &str = "[[bridge]]\nname = \"cloud\"\naddress = \"broker.example:1884\"\n[[bridge.topic]]\npattern = \"#\"\n";

#[test]
fn a_minimal_bridge_has_mosquittos_defaults() {
    let config = Config::from_toml(MINIMAL).unwrap();
    let b = &config.bridges[0];
    assert_eq!(b.protocol, BridgeProtocol::V3_1_1);
    assert!(!b.clean_start && b.try_private);
    assert_eq!(b.topics[0].direction, Direction::Out);
    assert_eq!(b.topics[0].qos(), QoS::AtMostOnce);
    assert_eq!(
        b.addresses(),
        [RemoteAddr {
            host: "broker.example".into(),
            port: 1884
        }]
    );
    assert!(b.remote_client_id().ends_with(".cloud"));
}

#[test]
fn addresses_take_the_default_port_and_brackets() {
    assert_eq!(parse_addr("h", 1883).unwrap().port, 1883);
    assert_eq!(parse_addr("10.0.0.1:99", 1883).unwrap().host, "10.0.0.1");
    let v6 = parse_addr("[::1]:8883", 1883).unwrap();
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 8883));
    assert_eq!(v6.to_string(), "[::1]:8883");
    assert_eq!(parse_addr("[fe80::2]", 1883).unwrap().port, 1883);
    for bad in ["", ":1883", "h:0", "h:x", "::1:1883", "[::1", "[::1]x"] {
        assert!(parse_addr(bad, 1883).is_err(), "{bad:?} accepted");
    }
    let mut b = Config::from_toml(MINIMAL).unwrap().bridges.remove(0);
    b.cafile = Some("ca.pem".into());
    b.address = "h".into();
    assert_eq!(b.addresses()[0].port, 8883, "TLS's port by default");
}

#[test]
fn rules_remap_prefixes_both_ways() {
    let rule = TopicRule {
        pattern: "sensors/#".into(),
        direction: Direction::Both,
        qos: 1,
        local_prefix: "edge/".into(),
        remote_prefix: "site7/".into(),
    };
    assert_eq!(
        rule.to_remote("edge/sensors/t").as_deref(),
        Some("site7/sensors/t")
    );
    assert_eq!(
        rule.to_local("site7/sensors/t").as_deref(),
        Some("edge/sensors/t")
    );
    assert_eq!(rule.to_remote("other/sensors/t"), None);
    assert_eq!(rule.to_local("edge/sensors/t"), None);
    let out = TopicRule {
        direction: Direction::Out,
        ..rule.clone()
    };
    assert_eq!(
        out.to_local("site7/sensors/t"),
        None,
        "an out rule takes nothing in"
    );
    // `a/#` matches `a`, which does not start with `a/`: not carried.
    let hash = TopicRule {
        pattern: "#".into(),
        local_prefix: "a/".into(),
        ..rule
    };
    assert_eq!(hash.to_remote("a"), None);
    // An empty pattern renames one topic.
    let rename = TopicRule {
        pattern: String::new(),
        direction: Direction::Out,
        qos: 0,
        local_prefix: "here/t".into(),
        remote_prefix: "there/u".into(),
    };
    assert_eq!(rename.to_remote("here/t").as_deref(), Some("there/u"));
    assert_eq!(rename.to_remote("here/t/x"), None);
}

#[test]
fn every_bad_key_is_named() {
    let cases = [
        ("[[bridge]]\naddress = \"h\"\n", "bridge.name"),
        (
            "[[bridge]]\nname = \"a b\"\naddress = \"h\"\n",
            "bridge.name",
        ),
        ("[[bridge]]\nname = \"b\"\n", "bridge.address"),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h:99999\"\n",
            "bridge.address",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nfallback_addresses = [\"\"]\n",
            "bridge.fallback_addresses",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n",
            "bridge.topic",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nkeep_alive = 0\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.keep_alive",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\ncertfile = \"c\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.keyfile",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\ncertfile = \"c\"\nkeyfile = \"k\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.cafile",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\npassword = \"p\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.password",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"#\"\nqos = 3\n",
            "qos",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"#\"\nlocal_prefix = \"a/+/\"\n",
            "local_prefix",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"a/#/b\"\n",
            "not a topic filter",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"\"\n",
            "when `pattern` is empty",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"#\"\ndirection = \"sideways\"\n",
            "direction",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nprotocol = \"4\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "protocol",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nreconnect_delay_min_ms = 10\nreconnect_delay_max_ms = 5\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.reconnect_delay_max_ms",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nmax_queued_messages = 100000\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge.max_queued_messages",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\nbridge_cafile = \"x\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "bridge_cafile",
        ),
        (
            "[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"#\"\n[[bridge]]\nname = \"b\"\naddress = \"h\"\n[[bridge.topic]]\npattern = \"#\"\n",
            "used twice",
        ),
    ];
    for (toml, key) in cases {
        let err = error(toml);
        assert!(err.contains(key), "{toml:?}: {err:?} does not name {key}");
    }
}

#[test]
fn mosquitto_protocol_names_are_accepted() {
    let toml = MINIMAL.replace(
        "[[bridge.topic]]",
        "protocol = \"mqttv50\"\n[[bridge.topic]]",
    );
    let config = Config::from_toml(&toml).unwrap();
    assert_eq!(config.bridges[0].protocol, BridgeProtocol::V5);
}

#[test]
fn queue_limits_fall_back_to_the_top_level_ones() {
    let config = Config::from_toml(&format!("max_queued_messages = 7\n{MINIMAL}")).unwrap();
    let broker = config.queue_limits();
    assert_eq!(config.bridges[0].queue_limits(&broker).max_messages, 7);
    let toml = MINIMAL.replace(
        "[[bridge.topic]]",
        "max_queued_messages = 50000\nqueue_overflow = \"drop_oldest\"\n[[bridge.topic]]",
    );
    let config = Config::from_toml(&toml).unwrap();
    let limits = config.bridges[0].queue_limits(&config.queue_limits());
    assert_eq!(limits.max_messages, 50_000);
    assert_eq!(limits.overflow, Overflow::DropOldest);
}

/// The commented `[[bridge]]` examples of example.toml, uncommented,
/// are a valid configuration that uses every key of both tables.
#[test]
fn example_toml_bridge_examples_use_every_key() {
    let examples = crate::config::example_tables(&["[[bridge]]", "[[bridge.topic]]"]);
    let parsed = Config::from_toml(&examples).expect("the [[bridge]] examples parse");
    assert!(
        !parsed.bridges.is_empty(),
        "example.toml has no [[bridge]] example"
    );
    let table: toml::Table = toml::from_str(&examples).expect("valid TOML");
    let bridges = table["bridge"].as_array().expect("an array of tables");
    let used: std::collections::BTreeSet<&str> = bridges
        .iter()
        .flat_map(|t| t.as_table().expect("a table").keys())
        .map(String::as_str)
        .collect();
    let topic_keys: std::collections::BTreeSet<&str> = bridges
        .iter()
        .filter_map(|t| t.get("topic")?.as_array())
        .flatten()
        .flat_map(|t| t.as_table().expect("a table").keys())
        .map(String::as_str)
        .collect();
    // Naming every field: a new one fails to compile here until it is
    // added to these lists (and to example.toml).
    let BridgeConfig {
        name: _,
        address: _,
        fallback_addresses: _,
        protocol: _,
        client_id: _,
        clean_start: _,
        session_expiry: _,
        username: _,
        password: _,
        keep_alive: _,
        cafile: _,
        certfile: _,
        keyfile: _,
        server_name: _,
        try_private: _,
        topics: _,
        reconnect_delay_min_ms: _,
        reconnect_delay_max_ms: _,
        connect_timeout: _,
        max_inflight_messages: _,
        receive_maximum: _,
        max_queued_messages: _,
        max_queued_bytes: _,
        queue_overflow: _,
    } = BridgeConfig::default();
    let every: std::collections::BTreeSet<&str> = [
        "name",
        "address",
        "fallback_addresses",
        "protocol",
        "client_id",
        "clean_start",
        "session_expiry",
        "username",
        "password",
        "keep_alive",
        "cafile",
        "certfile",
        "keyfile",
        "server_name",
        "try_private",
        "topic",
        "reconnect_delay_min_ms",
        "reconnect_delay_max_ms",
        "connect_timeout",
        "max_inflight_messages",
        "receive_maximum",
        "max_queued_messages",
        "max_queued_bytes",
        "queue_overflow",
    ]
    .into();
    assert_eq!(used, every, "the [[bridge]] examples of example.toml");
    let TopicRule {
        pattern: _,
        direction: _,
        qos: _,
        local_prefix: _,
        remote_prefix: _,
    } = TopicRule::default();
    let every_topic: std::collections::BTreeSet<&str> = [
        "pattern",
        "direction",
        "qos",
        "local_prefix",
        "remote_prefix",
    ]
    .into();
    assert_eq!(topic_keys, every_topic, "the [[bridge.topic]] examples");
}
