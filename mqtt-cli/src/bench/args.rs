//! The command line of `mqtt bench`: its modes and their options.

use clap::{ArgAction, Args, Subcommand};
use mqtt_codec::QoS;

use crate::options::{Version, parse_qos};

/// `mqtt bench` and its modes.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(super) mode: Mode,
}

#[derive(Debug, Subcommand)]
pub(super) enum Mode {
    /// Open N connections at a given rate; report the connect rate and
    /// failures.
    Conn(ConnArgs),
    /// Publish from N clients.
    Pub(PubArgs),
    /// Subscribe with N clients and count deliveries and latency.
    Sub(SubArgs),
    /// Publishers and subscribers in one process: delivered rate, latency
    /// and losses.
    Pubsub(PubSubArgs),
    /// One subscriber with many filters: the time to subscribe to them
    /// all, then the delivered rate of messages that each match one.
    Filters(FiltersArgs),
}

/// Where to connect and as whom; shared by every mode.
#[derive(Debug, Args)]
pub(super) struct Common {
    /// Host to connect to.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub(super) host: String,

    /// Port to connect to. Default: 1883, or 8883 with TLS.
    #[arg(short = 'p', long)]
    pub(super) port: Option<u16>,

    /// Protocol version: mqttv5 (5), mqttv311 (311) or mqttv31 (31).
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "mqttv5"
    )]
    pub(super) version: Version,

    /// Keep alive in seconds.
    #[arg(short = 'k', long, default_value_t = 60, value_name = "SECS")]
    pub(super) keepalive: u16,

    /// User name.
    #[arg(short = 'u', long)]
    pub(super) username: Option<String>,

    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub(super) password: Option<String>,

    /// Connect with TLS.
    #[arg(long)]
    pub(super) tls: bool,

    /// PEM file of CA certificates (implies --tls).
    #[arg(long, value_name = "FILE")]
    pub(super) cafile: Option<std::path::PathBuf>,

    /// Do not verify the server's certificate.
    #[arg(long)]
    pub(super) insecure: bool,

    /// Client identifier prefix; each client is PREFIX-PID-ROLE-INDEX.
    #[arg(long, default_value = "mqtt-bench")]
    pub(super) prefix: String,

    /// Seconds to wait for each connection and its CONNACK.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub(super) connect_timeout: u64,

    /// Print the final report as one JSON object on standard output.
    #[arg(long)]
    pub(super) json: bool,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub(super) help: Option<bool>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct ConnArgs {
    #[command(flatten)]
    pub(super) common: Common,

    /// Connections to open.
    #[arg(short = 'c', long = "count", default_value_t = 100, value_name = "N")]
    pub(super) clients: usize,

    /// Connections started per second (0: all at once).
    #[arg(short = 'R', long, default_value_t = 100.0)]
    pub(super) rate: f64,

    /// Connection attempts in progress at once, at most (0: no limit).
    /// A limit below the broker's listen backlog measures how fast it
    /// accepts, not how the kernel drops SYNs from a full backlog.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(super) concurrency: usize,

    /// Seconds to keep the connections open once all are attempted.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub(super) hold: u64,

    /// Process id of the broker (same machine): its resident memory
    /// (VmRSS) is read before the first connection and once all are open
    /// and idle (at the end of --hold), giving the memory per connection.
    #[arg(long, value_name = "PID")]
    pub(super) rss_pid: Option<u32>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct FiltersArgs {
    #[command(flatten)]
    pub(super) common: Common,

    /// Distinct filters to subscribe to: f/I/x, f/I/+ and f/I/# in turn,
    /// for I from 0.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(super) filters: usize,

    /// Filters per SUBSCRIBE packet.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(super) batch: usize,

    /// SUBSCRIBE packets sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub(super) window: usize,

    /// Seconds the subscription may take before the run gives up.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub(super) subscribe_timeout: u64,

    /// Publishing clients; each message goes to f/I/x for a random
    /// granted filter I, so it matches exactly one filter.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    pub(super) publishers: usize,

    /// Messages per second per publisher; 0 publishes as fast as the
    /// connection takes them (open loop). With a rate, latency counts from
    /// the time each message was due, so a stalled publisher's late
    /// messages show the stall.
    #[arg(short = 'R', long, default_value_t = 0.0)]
    pub(super) rate: f64,

    /// QoS of the subscriptions and of the messages.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub(super) qos: QoS,

    /// Payload size in bytes: at least 24 to carry the stamp (time,
    /// publisher, sequence number) that counts each message's loss,
    /// duplication or reordering; at least 8 for the latency alone.
    #[arg(short = 's', long = "size", default_value_t = 64)]
    pub(super) size: usize,

    /// Seconds to publish for once subscribed.
    #[arg(short = 'd', long, default_value_t = 10.0, value_name = "SECS")]
    pub(super) duration: f64,

    /// QoS 1/2 messages each publisher keeps unacknowledged at most.
    #[arg(long, default_value_t = 64)]
    pub(super) inflight: usize,

    /// Seconds to wait, after publishing ends, for the last
    /// acknowledgements and deliveries. QoS 1/2 messages still
    /// unacknowledged then are reported, and fail the run.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub(super) drain: f64,
}

/// What publishers do; shared by `pub` and `pubsub`.
#[derive(Debug, Args)]
pub(super) struct PublishOptions {
    /// Publishing clients.
    #[arg(
        short = 'c',
        long = "publishers",
        default_value_t = 1,
        value_name = "N"
    )]
    pub(super) publishers: usize,

    /// Messages per second per publisher; 0 publishes as fast as the
    /// connection takes them (open loop). With a rate, latency counts from
    /// the time each message was due, so a stalled publisher's late
    /// messages show the stall.
    #[arg(short = 'R', long, default_value_t = 0.0)]
    pub(super) rate: f64,

    /// QoS: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub(super) qos: QoS,

    /// Payload size in bytes: at least 24 to carry the stamp (time,
    /// publisher, sequence number) that counts each message's loss,
    /// duplication or reordering; at least 8 for the latency alone.
    #[arg(short = 's', long = "size", default_value_t = 64)]
    pub(super) size: usize,

    /// Topic to publish to; %i is replaced by the publisher's index.
    #[arg(short = 't', long, default_value = "bench/%i")]
    pub(super) topic: String,

    /// Messages per publisher, then stop.
    #[arg(short = 'n', long)]
    pub(super) count: Option<u64>,

    /// Seconds to publish for, then stop. Without --count or --duration,
    /// publish until Ctrl-C.
    #[arg(short = 'd', long, value_name = "SECS")]
    pub(super) duration: Option<f64>,

    /// QoS 1/2 messages each publisher keeps unacknowledged at most.
    #[arg(long, default_value_t = 64)]
    pub(super) inflight: usize,

    /// Publishers connected per second while starting (0: all at once).
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub(super) conn_rate: f64,

    /// Seconds to wait, after publishing ends, for the last
    /// acknowledgements and deliveries. QoS 1/2 messages still
    /// unacknowledged then are reported, and fail the run.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub(super) drain: f64,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct PubArgs {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) publish: PublishOptions,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct SubArgs {
    #[command(flatten)]
    pub(super) common: Common,

    /// Subscribing clients.
    #[arg(
        short = 'c',
        long = "subscribers",
        default_value_t = 1,
        value_name = "N"
    )]
    pub(super) subscribers: usize,

    /// Topic filter; %i is replaced by the subscriber's index.
    #[arg(
        short = 't',
        long = "topic",
        default_value = "bench/#",
        value_name = "FILTER"
    )]
    pub(super) filter: String,

    /// QoS of the subscriptions.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub(super) qos: QoS,

    /// Stop after this many messages in all (default: until Ctrl-C or
    /// --duration).
    #[arg(short = 'n', long)]
    pub(super) count: Option<u64>,

    /// Seconds to run for.
    #[arg(short = 'd', long, value_name = "SECS")]
    pub(super) duration: Option<f64>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct PubSubArgs {
    #[command(flatten)]
    pub(super) common: Common,

    #[command(flatten)]
    pub(super) publish: PublishOptions,

    /// Subscribing clients.
    #[arg(
        short = 'S',
        long = "subscribers",
        default_value_t = 1,
        value_name = "M"
    )]
    pub(super) subscribers: usize,

    /// Subscribers' topic filter; %i is replaced by the subscriber's index.
    #[arg(short = 'f', long = "filter", default_value = "bench/#")]
    pub(super) filter: String,
}
