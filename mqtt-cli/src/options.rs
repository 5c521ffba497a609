//! Options shared by `mqtt pub` and `mqtt sub`, named as mosquitto_pub and
//! mosquitto_sub name them, and the CONNECT they make.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use mqtt_codec::{
    Connect, MqttString, PayloadFormat, ProtocolVersion, PublishProperties, QoS, UserProperty, Will,
};

use crate::transport::{Endpoint, TlsOptions, TlsSettings};

/// The protocol version, as `-V` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Version {
    /// MQTT 5.0.
    #[value(name = "mqttv5", alias = "5")]
    V5,
    /// MQTT 3.1.1.
    #[value(name = "mqttv311", alias = "311")]
    V311,
    /// MQTT 3.1.
    #[value(name = "mqttv31", alias = "31")]
    V31,
}

impl From<Version> for ProtocolVersion {
    fn from(v: Version) -> Self {
        match v {
            Version::V5 => Self::V5,
            Version::V311 => Self::V3_1_1,
            Version::V31 => Self::V3_1,
        }
    }
}

/// Parses a QoS: 0, 1 or 2.
pub(crate) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("QoS must be 0, 1 or 2, not {s:?}"))
}

/// Parses a session expiry: seconds, or -1 / ∞ for never.
fn parse_expiry(s: &str) -> Result<u32, String> {
    match s {
        "-1" | "∞" | "inf" | "never" => Ok(u32::MAX),
        _ => s
            .parse::<u32>()
            .map_err(|_| format!("session expiry must be seconds or -1, not {s:?}")),
    }
}

/// Where to connect, who to be, and the session to use.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Host to connect to.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub(crate) host: String,

    /// Port to connect to. Default: 1883, or 8883 with TLS.
    #[arg(short = 'p', long)]
    pub(crate) port: Option<u16>,

    /// Client identifier. Default: "mqtt-TOOL-PID-N"; required with -c.
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub(crate) id: Option<String>,

    /// Protocol version: mqttv5 (5), mqttv311 (311) or mqttv31 (31).
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "mqttv5"
    )]
    pub(crate) version: Version,

    /// Keep alive in seconds: a PINGREQ is sent after this long without
    /// traffic. 0 disables it.
    #[arg(short = 'k', long, default_value_t = 60, value_name = "SECS")]
    pub(crate) keepalive: u16,

    /// Disable clean session (3.1.1) / clean start (5.0): resume the session
    /// the server kept for this client id, and ask it to keep this one.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub(crate) disable_clean_session: bool,

    /// Session expiry interval (MQTT 5.0) in seconds; -1 for never.
    /// Default: -1 with -c, else 0.
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS", value_parser = parse_expiry, allow_hyphen_values = true)]
    pub(crate) session_expiry: Option<u32>,

    /// User name.
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,

    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub(crate) password: Option<String>,

    /// Connect with TLS (implied by --cafile, --cert, or port 8883).
    #[arg(long)]
    pub(crate) tls: bool,

    /// PEM file of CA certificates to verify the server with. Default: the
    /// Mozilla root certificates built in.
    #[arg(long, value_name = "FILE")]
    pub(crate) cafile: Option<PathBuf>,

    /// PEM client certificate (chain) for mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    /// Do not verify the server's certificate (test brokers only).
    #[arg(long)]
    pub(crate) insecure: bool,

    /// Topic of the will message, published by the server if this client
    /// goes away without DISCONNECT.
    #[arg(long, value_name = "TOPIC")]
    pub(crate) will_topic: Option<String>,

    /// Payload of the will message. Default: empty.
    #[arg(long, value_name = "PAYLOAD", requires = "will_topic")]
    pub(crate) will_payload: Option<String>,

    /// QoS of the will message.
    #[arg(long, value_name = "QOS", default_value = "0", value_parser = parse_qos, requires = "will_topic")]
    pub(crate) will_qos: QoS,

    /// Retain the will message.
    #[arg(long, requires = "will_topic")]
    pub(crate) will_retain: bool,

    /// Seconds to wait for the TCP connection and the CONNACK.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub(crate) connect_timeout: u64,
}

/// MQTT 5.0 properties of a message (of a publication, or of the will).
#[derive(Debug, Args)]
pub(crate) struct PropertyArgs {
    /// User property (MQTT 5.0); repeat for several.
    #[arg(long = "user-property", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append)]
    pub(crate) user_property: Vec<String>,

    /// Message expiry interval in seconds (MQTT 5.0).
    #[arg(long, value_name = "SECS")]
    pub(crate) message_expiry: Option<u32>,

    /// Content type (MQTT 5.0).
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,

    /// Response topic (MQTT 5.0).
    #[arg(long, value_name = "TOPIC")]
    pub(crate) response_topic: Option<String>,

    /// Correlation data (MQTT 5.0), taken as UTF-8 text.
    #[arg(long, value_name = "DATA")]
    pub(crate) correlation_data: Option<String>,

    /// Mark the payload as UTF-8 text (payload format indicator 1, MQTT 5.0).
    #[arg(long)]
    pub(crate) utf8_payload: bool,
}

/// A user-typed string as an MQTT string, with the option named on error.
pub(crate) fn mqtt_string(what: &str, s: &str) -> Result<MqttString, String> {
    MqttString::try_from(s.to_owned()).map_err(|e| format!("invalid {what} {s:?}: {e}"))
}

impl PropertyArgs {
    /// The PUBLISH properties these options give (expiry apart: the
    /// session carries it as a deadline).
    pub(crate) fn publish_properties(&self) -> Result<PublishProperties, String> {
        let mut p = PublishProperties::default();
        for pair in self.user_property.chunks(2) {
            if let [k, v] = pair {
                p.extras_mut().user_properties.push(UserProperty::new(
                    mqtt_string("user property name", k)?,
                    mqtt_string("user property value", v)?,
                ));
            }
        }
        if let Some(t) = &self.content_type {
            p.extras_mut().content_type = Some(mqtt_string("content type", t)?);
        }
        if let Some(t) = &self.response_topic {
            p.extras_mut().response_topic = Some(mqtt_string("response topic", t)?);
        }
        if let Some(d) = &self.correlation_data {
            if d.len() > usize::from(u16::MAX) {
                return Err("correlation data longer than 65,535 bytes".into());
            }
            p.extras_mut().correlation_data = Some(Bytes::from(d.clone().into_bytes()));
        }
        if self.utf8_payload {
            p.payload_format_indicator = Some(PayloadFormat::Utf8);
        }
        Ok(p)
    }

    /// Whether any MQTT 5.0-only property was given.
    pub(crate) fn any(&self) -> bool {
        !self.user_property.is_empty()
            || self.message_expiry.is_some()
            || self.content_type.is_some()
            || self.response_topic.is_some()
            || self.correlation_data.is_some()
            || self.utf8_payload
    }
}

/// A client id unlikely to clash with another instance's.
pub(crate) fn default_client_id(tool: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("mqtt-{tool}-{}-{:x}", std::process::id(), nanos & 0xffff)
}

impl ConnectArgs {
    /// The protocol version to use.
    pub(crate) fn protocol(&self) -> ProtocolVersion {
        self.version.into()
    }

    /// Whether to use TLS.
    pub(crate) fn use_tls(&self) -> bool {
        self.tls || self.cafile.is_some() || self.cert.is_some() || self.port == Some(8883)
    }

    /// The endpoint, with its TLS configuration built.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, String> {
        let tls = if self.use_tls() {
            let options = TlsOptions {
                cafile: self.cafile.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                insecure: self.insecure,
            };
            Some(Arc::new(TlsSettings::new(&self.host, &options)?))
        } else {
            None
        };
        let port = self.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 });
        Ok(Endpoint {
            host: self.host.clone(),
            port,
            tls,
        })
    }

    /// The connect timeout.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.max(1))
    }

    /// The CONNECT packet these options describe.
    pub(crate) fn connect_packet(&self, tool: &str) -> Result<Connect, String> {
        let protocol = self.protocol();
        let id = match &self.id {
            Some(id) => id.clone(),
            None if self.disable_clean_session => {
                return Err("-c (disable clean session) needs a client id (-i)".into());
            }
            None => default_client_id(tool),
        };
        let mut connect = Connect::new(protocol, mqtt_string("client id", &id)?);
        connect.keep_alive = self.keepalive;
        connect.clean_start = !self.disable_clean_session;
        if protocol.is_v5() {
            let expiry = self
                .session_expiry
                .unwrap_or(if self.disable_clean_session {
                    u32::MAX
                } else {
                    0
                });
            if expiry > 0 {
                connect.properties.session_expiry_interval = Some(expiry);
            }
        } else if self.session_expiry.is_some() {
            return Err("-x (session expiry) needs MQTT 5.0 (-V 5)".into());
        }
        if let Some(u) = &self.username {
            connect.username = Some(mqtt_string("user name", u)?);
        }
        if let Some(p) = &self.password {
            if protocol != ProtocolVersion::V5 && self.username.is_none() {
                return Err("a password (-P) needs a user name (-u) before MQTT 5.0".into());
            }
            connect.password = Some(Bytes::from(p.clone().into_bytes()));
        }
        if let Some(topic) = &self.will_topic {
            let topic = mqtt_string("will topic", topic)?;
            if mqtt_topic::TopicName::new(&topic).is_err() {
                return Err(format!("invalid will topic {topic:?}"));
            }
            connect.will = Some(Will {
                topic,
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default().into_bytes()),
                qos: self.will_qos,
                retain: self.will_retain,
                properties: Default::default(),
            });
        }
        Ok(connect)
    }
}
