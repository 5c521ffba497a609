//! `mqtt pub`: publish one message, or one per line of standard input,
//! like mosquitto_pub.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{ArgAction, Args};
use mqtt_codec::{ConnAck, MqttString, QoS};
use mqtt_session::{ClientConfig, ClientEvent, Message};

use crate::client::{self, Client, ClientError};
use crate::options::{ConnectArgs, PropertyArgs, mqtt_string, parse_qos};

/// Options of `mqtt pub`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    connection: ConnectArgs,

    /// Topic to publish to.
    #[arg(short = 't', long)]
    topic: String,

    /// QoS to publish with: 0, 1 or 2. With 1 and 2 the command exits once
    /// every message is acknowledged.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,

    /// Retain the message on the server.
    #[arg(short = 'r', long)]
    retain: bool,

    #[command(flatten)]
    source: Source,

    #[command(flatten)]
    properties: PropertyArgs,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Where the message comes from: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// The message to publish.
    #[arg(short = 'm', long)]
    message: Option<String>,

    /// Publish the contents of FILE as one message.
    #[arg(short = 'f', long, value_name = "FILE")]
    file: Option<PathBuf>,

    /// Publish each line of standard input as a message, as it is read
    /// (blank lines are skipped).
    #[arg(short = 'l', long)]
    stdin_line: bool,

    /// Publish all of standard input as one message.
    #[arg(short = 's', long)]
    stdin_file: bool,

    /// Publish an empty message.
    #[arg(short = 'n', long)]
    null_message: bool,
}

/// Runs `mqtt pub`.
pub(crate) async fn run(args: PubArgs) -> Result<ExitCode, String> {
    let connect = args.connection.connect_packet("pub")?;
    if !connect.protocol.is_v5() && args.properties.any() {
        return Err("message properties need MQTT 5.0 (-V 5)".into());
    }
    let topic = mqtt_string("topic", &args.topic)?;
    if mqtt_topic::TopicName::new(&topic).is_err() {
        return Err(format!(
            "invalid topic {topic:?}: a topic name is not empty and has no + or #"
        ));
    }
    let template = Template {
        topic,
        qos: args.qos,
        retain: args.retain,
        properties: args.properties.publish_properties()?.into(),
        expiry: args.properties.message_expiry.map(u64::from),
    };
    let single = match &args.source {
        Source {
            message: Some(m), ..
        } => Some(Bytes::from(m.clone().into_bytes())),
        Source { file: Some(f), .. } => Some(Bytes::from(
            std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        )),
        Source {
            stdin_file: true, ..
        } => {
            let mut all = Vec::new();
            std::io::stdin()
                .read_to_end(&mut all)
                .map_err(|e| format!("reading standard input: {e}"))?;
            Some(Bytes::from(all))
        }
        Source {
            null_message: true, ..
        } => Some(Bytes::new()),
        _ => None,
    };

    let endpoint = args.connection.endpoint()?;
    let (mut client, connack) = client::open(
        &endpoint,
        connect,
        ClientConfig::default(),
        args.connection.timeout(),
    )
    .await?;
    template.check_server(&connack)?;
    let mut failures = 0u64;
    let result = match single {
        Some(payload) => {
            template.publish(&mut client, payload, &connack)?;
            wait_acks(&mut client, &mut failures).await
        }
        None => publish_lines(&mut client, &template, &connack, &mut failures).await,
    };
    result.map_err(|e| e.to_string())?;
    client.disconnect().await.map_err(|e| e.to_string())?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What every message of this run shares.
struct Template {
    topic: MqttString,
    qos: QoS,
    retain: bool,
    properties: mqtt_session::MessageProperties,
    expiry: Option<u64>,
}

impl Template {
    /// Refuses what the server said in CONNACK it does not support, rather
    /// than be disconnected for it.
    fn check_server(&self, connack: &ConnAck) -> Result<(), String> {
        let p = &connack.properties;
        if let Some(max) = p.maximum_qos
            && self.qos > max
        {
            return Err(format!(
                "the server accepts QoS up to {}, not {}",
                max as u8, self.qos as u8
            ));
        }
        if self.retain && p.retain_available == Some(false) {
            return Err("the server does not support retained messages".into());
        }
        Ok(())
    }

    fn publish(
        &self,
        client: &mut Client,
        payload: Bytes,
        connack: &ConnAck,
    ) -> Result<(), String> {
        if let Some(max) = connack.properties.maximum_packet_size {
            // Topic, payload, properties and the headers' few bytes.
            let size = self.topic.len() + payload.len() + 64;
            if size > max.get() as usize {
                return Err(format!(
                    "a {}-byte message is larger than the server accepts ({} bytes)",
                    payload.len(),
                    max
                ));
            }
        }
        let mut message = Message::new(self.topic.clone(), payload, self.qos, self.retain);
        message.properties = self.properties.clone();
        message.expires_at = self.expiry.map(|s| Instant::now() + Duration::from_secs(s));
        client
            .publish(message)
            .map_err(|e| format!("message not queued: {e:?}"))
    }
}

fn on_event(event: ClientEvent, failures: &mut u64) {
    if let ClientEvent::Published {
        packet_id,
        reason_code,
        ..
    } = event
        && reason_code.is_error()
    {
        *failures += 1;
        eprintln!("mqtt: publish {packet_id} failed: {reason_code}");
    }
}

/// Runs until every QoS 1/2 message is acknowledged.
async fn wait_acks(client: &mut Client, failures: &mut u64) -> Result<(), ClientError> {
    client
        .run_until(
            |_, ev| {
                on_event(ev, failures);
                Ok(())
            },
            |c| c.unacknowledged() == 0,
        )
        .await
}

/// `-l`: a message per line of standard input, sent as the line arrives.
async fn publish_lines(
    client: &mut Client,
    template: &Template,
    connack: &ConnAck,
    failures: &mut u64,
) -> Result<(), ClientError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(64);
    // Standard input blocks; a thread of its own keeps the connection
    // (keep-alive, acknowledgements) running meanwhile.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    loop {
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Closed { reason, .. } = ev {
                return Err(client.close_error(reason));
            }
            on_event(ev, failures);
        }
        tokio::select! {
            line = rx.recv() => match line {
                Some(Ok(line)) => {
                    let line = line.trim_end_matches('\r');
                    if line.is_empty() {
                        continue;
                    }
                    let payload = Bytes::from(line.to_owned().into_bytes());
                    if let Err(e) = template.publish(client, payload, connack) {
                        eprintln!("mqtt: {e}");
                        *failures += 1;
                    }
                }
                Some(Err(e)) => {
                    eprintln!("mqtt: reading standard input: {e}");
                    *failures += 1;
                    break;
                }
                None => break,
            },
            r = client.step() => r?,
        }
    }
    wait_acks(client, failures).await
}
