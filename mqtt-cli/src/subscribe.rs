//! `mqtt sub`: subscribe and print what arrives, like mosquitto_sub.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{ArgAction, Args};
use mqtt_codec::{
    PayloadFormat, QoS, RetainHandling, SubAck, SubscribeProperties, Subscription,
    SubscriptionOptions,
};
use mqtt_session::{ClientConfig, ClientEvent, Message};
use serde_json::{Map, Value, json};

use crate::client;
use crate::options::{ConnectArgs, mqtt_string, parse_qos};

/// The exit code of `-W` running out, as mosquitto_sub's.
const TIMED_OUT: u8 = 27;

/// Options of `mqtt sub`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    connection: ConnectArgs,

    /// Topic filter to subscribe to; repeat for several. `+` and `#` are
    /// wildcards; `$share/GROUP/FILTER` is a shared subscription.
    #[arg(short = 't', long = "topic", required = true, value_name = "FILTER")]
    topics: Vec<String>,

    /// Highest QoS to receive with: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,

    /// Print "TOPIC PAYLOAD" rather than the payload alone.
    #[arg(short = 'v', long)]
    verbose: bool,

    /// Print one JSON object per message and line: topic, qos, retain,
    /// payload (text if UTF-8, else base64, as payload_encoding says) and
    /// the MQTT 5.0 properties.
    #[arg(long, conflicts_with = "verbose")]
    json: bool,

    /// Exit after N messages.
    #[arg(short = 'C', long = "count", value_name = "N")]
    count: Option<u64>,

    /// Exit after SECS seconds: with code 27 ("timed out"), unless -C was
    /// satisfied first (code 0).
    #[arg(short = 'W', long = "timeout", value_name = "SECS")]
    timeout: Option<u64>,

    /// Do not print stale retained messages (those the server sends because
    /// they were retained before the subscription).
    #[arg(short = 'R', long = "no-retained")]
    no_stale: bool,

    /// Do not add a newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    no_newline: bool,

    /// MQTT 5.0: do not receive our own publications.
    #[arg(long)]
    no_local: bool,

    /// MQTT 5.0: keep the retain flag as the publisher set it.
    #[arg(long)]
    retain_as_published: bool,

    /// MQTT 5.0: retained messages on subscribe: 0 always, 1 only for a new
    /// subscription, 2 never.
    #[arg(long, value_name = "0|1|2", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    retain_handling: u8,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Runs `mqtt sub`.
pub(crate) async fn run(args: SubArgs) -> Result<ExitCode, String> {
    let connect = args.connection.connect_packet("sub")?;
    let v5 = connect.protocol.is_v5();
    if !v5 && (args.no_local || args.retain_as_published || args.retain_handling != 0) {
        return Err("--no-local, --retain-as-published and --retain-handling need MQTT 5.0".into());
    }
    let options = SubscriptionOptions {
        qos: args.qos,
        no_local: args.no_local,
        retain_as_published: args.retain_as_published,
        retain_handling: match args.retain_handling {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        },
    };
    let subscriptions = args
        .topics
        .iter()
        .map(|t| {
            Ok(Subscription {
                filter: mqtt_string("topic filter", t)?,
                options,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));

    let endpoint = args.connection.endpoint()?;
    let (mut client, _connack) = client::open(
        &endpoint,
        connect,
        ClientConfig::default(),
        args.connection.timeout(),
    )
    .await?;
    if client
        .session()
        .subscribe(subscriptions, SubscribeProperties::default())
        .is_none()
    {
        return Err("cannot send SUBSCRIBE".into());
    }

    let printer = Printer {
        verbose: args.verbose,
        json: args.json,
        newline: !args.no_newline,
    };
    let mut out = Vec::with_capacity(4096);
    let mut received = 0u64;
    let sleep = tokio::time::sleep_until(
        deadline
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400))
            .into(),
    );
    tokio::pin!(sleep);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let mut done = false;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Subscribed(ack) => check_suback(&args.topics, &ack)?,
                ClientEvent::Message(m) if args.no_stale && m.retain => {}
                ClientEvent::Message(m) => {
                    printer.print(&m, &mut out);
                    received += 1;
                    if args.count.is_some_and(|c| received >= c) {
                        done = true;
                        break;
                    }
                }
                ClientEvent::Closed { reason, .. } => {
                    write_out(&mut out)?;
                    return Err(client.close_error(reason).to_string());
                }
                _ => {}
            }
        }
        write_out(&mut out)?;
        if done {
            break;
        }
        tokio::select! {
            r = client.step() => r.map_err(|e| e.to_string())?,
            () = &mut sleep => {
                eprintln!("mqtt: timed out after {} s", args.timeout.unwrap_or(0));
                let _ = client.disconnect().await;
                return Ok(ExitCode::from(TIMED_OUT));
            }
            _ = &mut ctrl_c => break,
        }
    }
    client.disconnect().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn write_out(out: &mut Vec<u8>) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing standard output: {e}"))?;
    out.clear();
    Ok(())
}

/// Reports refused subscriptions; fails if every one was refused.
fn check_suback(filters: &[String], ack: &SubAck) -> Result<(), String> {
    let mut refused = 0;
    for (filter, code) in filters.iter().zip(&ack.reason_codes) {
        if code.is_error() {
            refused += 1;
            eprintln!("mqtt: subscription to {filter:?} refused: {code}");
        }
    }
    if refused == filters.len() {
        return Err("every subscription was refused".into());
    }
    Ok(())
}

/// How messages are printed.
struct Printer {
    verbose: bool,
    json: bool,
    newline: bool,
}

impl Printer {
    fn print(&self, m: &Message, out: &mut Vec<u8>) {
        if self.json {
            // Serialising a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &message_json(m, Instant::now()));
        } else {
            if self.verbose {
                out.extend_from_slice(m.topic.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&m.payload);
        }
        if self.newline || self.json {
            out.push(b'\n');
        }
    }
}

/// Text if the bytes are UTF-8, else base64; and which it is.
fn text_or_base64(b: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_owned(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(b),
            "base64",
        ),
    }
}

/// The JSON line of one message.
fn message_json(m: &Message, now: Instant) -> Value {
    let (payload, encoding) = text_or_base64(&m.payload);
    let mut obj = json!({
        "topic": m.topic.as_str(),
        "qos": m.qos as u8,
        "retain": m.retain,
        "payload": payload,
        "payload_encoding": encoding,
    });
    let p = &m.properties;
    let mut props = Map::new();
    if let Some(f) = p.payload_format_indicator {
        props.insert(
            "payload_format_indicator".into(),
            json!(u8::from(f == PayloadFormat::Utf8)),
        );
    }
    if let Some(at) = m.expires_at {
        let left = at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        props.insert("message_expiry_interval".into(), json!(secs));
    }
    if let Some(t) = p.content_type() {
        props.insert("content_type".into(), json!(t.as_str()));
    }
    if let Some(t) = p.response_topic() {
        props.insert("response_topic".into(), json!(t.as_str()));
    }
    if let Some(d) = p.correlation_data() {
        let (data, encoding) = text_or_base64(d);
        props.insert("correlation_data".into(), json!(data));
        props.insert("correlation_data_encoding".into(), json!(encoding));
    }
    if !p.user_properties().is_empty() {
        let list: Vec<Value> = p
            .user_properties()
            .iter()
            .map(|u| json!([u.name.as_str(), u.value.as_str()]))
            .collect();
        props.insert("user_properties".into(), Value::Array(list));
    }
    if !props.is_empty()
        && let Value::Object(o) = &mut obj
    {
        o.insert("properties".into(), Value::Object(props));
    }
    obj
}
