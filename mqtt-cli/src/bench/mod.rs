//! `mqtt bench`: load generation in the spirit of emqtt-bench.
//!
//! Every client is a tokio task with its own connection, driven by the same
//! `ClientConnection` as `mqtt pub` and `mqtt sub`. Publishers start each
//! payload with a [`Stamp`](stats::Stamp): the send time (nanoseconds since
//! the UNIX epoch, big-endian; in rate mode the time the message was due),
//! the run id, the publisher's index and the message's sequence number.
//! Subscribers on the same machine turn the time into an end-to-end latency
//! and track, per publisher, which sequence numbers arrived: losses,
//! duplicates and reordering are counted message by message.

mod clients;
mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, Subcommand};
use mqtt_codec::{Connect, MqttString, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use self::clients::{FilterPlan, PubPlan, PubResult, Shared, SubResult};
use self::stats::{Counters, Errors, Latency, Report, STAMP_LEN, Tally, Tracker, new_histogram};
use crate::options::{Version, mqtt_string, parse_qos};
use crate::transport::{Endpoint, TlsOptions, TlsSettings};

/// `mqtt bench` and its modes.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
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
struct Common {
    /// Host to connect to.
    #[arg(short = 'h', long, default_value = "localhost")]
    host: String,

    /// Port to connect to. Default: 1883, or 8883 with TLS.
    #[arg(short = 'p', long)]
    port: Option<u16>,

    /// Protocol version: mqttv5 (5), mqttv311 (311) or mqttv31 (31).
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "mqttv5"
    )]
    version: Version,

    /// Keep alive in seconds.
    #[arg(short = 'k', long, default_value_t = 60, value_name = "SECS")]
    keepalive: u16,

    /// User name.
    #[arg(short = 'u', long)]
    username: Option<String>,

    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    password: Option<String>,

    /// Connect with TLS.
    #[arg(long)]
    tls: bool,

    /// PEM file of CA certificates (implies --tls).
    #[arg(long, value_name = "FILE")]
    cafile: Option<std::path::PathBuf>,

    /// Do not verify the server's certificate.
    #[arg(long)]
    insecure: bool,

    /// Client identifier prefix; each client is PREFIX-PID-ROLE-INDEX.
    #[arg(long, default_value = "mqtt-bench")]
    prefix: String,

    /// Seconds to wait for each connection and its CONNACK.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u64,

    /// Print the final report as one JSON object on standard output.
    #[arg(long)]
    json: bool,

    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct ConnArgs {
    #[command(flatten)]
    common: Common,

    /// Connections to open.
    #[arg(short = 'c', long = "count", default_value_t = 100, value_name = "N")]
    clients: usize,

    /// Connections started per second (0: all at once).
    #[arg(short = 'R', long, default_value_t = 100.0)]
    rate: f64,

    /// Connection attempts in progress at once, at most (0: no limit).
    /// A limit below the broker's listen backlog measures how fast it
    /// accepts, not how the kernel drops SYNs from a full backlog.
    #[arg(long, default_value_t = 0, value_name = "N")]
    concurrency: usize,

    /// Seconds to keep the connections open once all are attempted.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    hold: u64,

    /// Process id of the broker (same machine): its resident memory
    /// (VmRSS) is read before the first connection and once all are open
    /// and idle (at the end of --hold), giving the memory per connection.
    #[arg(long, value_name = "PID")]
    rss_pid: Option<u32>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct FiltersArgs {
    #[command(flatten)]
    common: Common,

    /// Distinct filters to subscribe to: f/I/x, f/I/+ and f/I/# in turn,
    /// for I from 0.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    filters: usize,

    /// Filters per SUBSCRIBE packet.
    #[arg(long, default_value_t = 100, value_name = "N")]
    batch: usize,

    /// SUBSCRIBE packets sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 16, value_name = "N")]
    window: usize,

    /// Seconds the subscription may take before the run gives up.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    subscribe_timeout: u64,

    /// Publishing clients; each message goes to f/I/x for a random
    /// granted filter I, so it matches exactly one filter.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    publishers: usize,

    /// Messages per second per publisher; 0 publishes as fast as the
    /// connection takes them (open loop). With a rate, latency counts from
    /// the time each message was due, so a stalled publisher's late
    /// messages show the stall.
    #[arg(short = 'R', long, default_value_t = 0.0)]
    rate: f64,

    /// QoS of the subscriptions and of the messages.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,

    /// Payload size in bytes: at least 24 to carry the stamp (time,
    /// publisher, sequence number) that counts each message's loss,
    /// duplication or reordering; at least 8 for the latency alone.
    #[arg(short = 's', long = "size", default_value_t = 64)]
    size: usize,

    /// Seconds to publish for once subscribed.
    #[arg(short = 'd', long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,

    /// QoS 1/2 messages each publisher keeps unacknowledged at most.
    #[arg(long, default_value_t = 64)]
    inflight: usize,

    /// Seconds to wait, after publishing ends, for the last
    /// acknowledgements and deliveries. QoS 1/2 messages still
    /// unacknowledged then are reported, and fail the run.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    drain: f64,
}

/// What publishers do; shared by `pub` and `pubsub`.
#[derive(Debug, Args)]
struct PublishOptions {
    /// Publishing clients.
    #[arg(
        short = 'c',
        long = "publishers",
        default_value_t = 1,
        value_name = "N"
    )]
    publishers: usize,

    /// Messages per second per publisher; 0 publishes as fast as the
    /// connection takes them (open loop). With a rate, latency counts from
    /// the time each message was due, so a stalled publisher's late
    /// messages show the stall.
    #[arg(short = 'R', long, default_value_t = 0.0)]
    rate: f64,

    /// QoS: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,

    /// Payload size in bytes: at least 24 to carry the stamp (time,
    /// publisher, sequence number) that counts each message's loss,
    /// duplication or reordering; at least 8 for the latency alone.
    #[arg(short = 's', long = "size", default_value_t = 64)]
    size: usize,

    /// Topic to publish to; %i is replaced by the publisher's index.
    #[arg(short = 't', long, default_value = "bench/%i")]
    topic: String,

    /// Messages per publisher, then stop.
    #[arg(short = 'n', long)]
    count: Option<u64>,

    /// Seconds to publish for, then stop. Without --count or --duration,
    /// publish until Ctrl-C.
    #[arg(short = 'd', long, value_name = "SECS")]
    duration: Option<f64>,

    /// QoS 1/2 messages each publisher keeps unacknowledged at most.
    #[arg(long, default_value_t = 64)]
    inflight: usize,

    /// Publishers connected per second while starting (0: all at once).
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    conn_rate: f64,

    /// Seconds to wait, after publishing ends, for the last
    /// acknowledgements and deliveries. QoS 1/2 messages still
    /// unacknowledged then are reported, and fail the run.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    drain: f64,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct PubArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    publish: PublishOptions,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct SubArgs {
    #[command(flatten)]
    common: Common,

    /// Subscribing clients.
    #[arg(
        short = 'c',
        long = "subscribers",
        default_value_t = 1,
        value_name = "N"
    )]
    subscribers: usize,

    /// Topic filter; %i is replaced by the subscriber's index.
    #[arg(
        short = 't',
        long = "topic",
        default_value = "bench/#",
        value_name = "FILTER"
    )]
    filter: String,

    /// QoS of the subscriptions.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,

    /// Stop after this many messages in all (default: until Ctrl-C or
    /// --duration).
    #[arg(short = 'n', long)]
    count: Option<u64>,

    /// Seconds to run for.
    #[arg(short = 'd', long, value_name = "SECS")]
    duration: Option<f64>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct PubSubArgs {
    #[command(flatten)]
    common: Common,

    #[command(flatten)]
    publish: PublishOptions,

    /// Subscribing clients.
    #[arg(
        short = 'S',
        long = "subscribers",
        default_value_t = 1,
        value_name = "M"
    )]
    subscribers: usize,

    /// Subscribers' topic filter; %i is replaced by the subscriber's index.
    #[arg(short = 'f', long = "filter", default_value = "bench/#")]
    filter: String,
}

/// Runs `mqtt bench`.
pub(crate) async fn run(args: BenchArgs) -> Result<ExitCode, String> {
    let report = match args.mode {
        Mode::Conn(a) => conn(a).await?,
        Mode::Pub(a) => pubsub(&a.common, &a.publish, None).await?,
        Mode::Sub(a) => sub(a).await?,
        Mode::Filters(a) => filters(a).await?,
        Mode::Pubsub(a) => {
            let subs = SubPlan {
                count: a.subscribers,
                filter: a.filter,
                qos: a.publish.qos,
                total: None,
                deadline: None,
                publishers: Some(a.publish.publishers),
            };
            pubsub(&a.common, &a.publish, Some(subs)).await?
        }
    };
    Ok(report)
}

fn shared(c: &Common) -> Result<Arc<Shared>, String> {
    let protocol = c.version.into();
    let mut connect = Connect::new(protocol, MqttString::new());
    connect.keep_alive = c.keepalive;
    if let Some(u) = &c.username {
        connect.username = Some(mqtt_string("user name", u)?);
    }
    if let Some(p) = &c.password {
        connect.password = Some(bytes::Bytes::from(p.clone().into_bytes()));
    }
    let tls = if c.tls || c.cafile.is_some() || c.port == Some(8883) {
        let options = TlsOptions {
            cafile: c.cafile.clone(),
            insecure: c.insecure,
            ..TlsOptions::default()
        };
        Some(Arc::new(TlsSettings::new(&c.host, &options)?))
    } else {
        None
    };
    let port = c.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 });
    Ok(Arc::new(Shared {
        endpoint: Endpoint {
            host: c.host.clone(),
            port,
            tls,
        },
        connect,
        timeout: Duration::from_secs(c.connect_timeout.max(1)),
        counters: Arc::new(Counters::default()),
        errors: Errors::default(),
        run: stats::new_run_id(),
    }))
}

fn client_id(c: &Common, role: &str, i: usize) -> String {
    format!("{}-{}-{role}-{i}", c.prefix, std::process::id())
}

/// Prints the report and gives the exit code: failure if anything failed.
fn finish(mut report: Report, json: bool) -> Result<ExitCode, String> {
    report.generator_cpu_s = self_cpu_s();
    if json {
        let text = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        report.print_text();
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A stop signal set by Ctrl-C (and by the orchestration itself).
fn stop_on_ctrl_c() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let ctrl = tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = ctrl.send(true);
        }
    });
    (tx, rx)
}

/// Sleeps so that client `i` of a ramp at `rate` per second starts on time.
async fn ramp(start: Instant, i: usize, rate: f64) {
    if rate > 0.0 {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
    }
}

async fn conn(a: ConnArgs) -> Result<ExitCode, String> {
    let shared = shared(&a.common)?;
    let counters = shared.counters.clone();
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(stats::progress(counters.clone(), progress_rx));
    let start = Instant::now();
    let rss_before = a.rss_pid.map(rss_kb).transpose()?;
    let mut tasks = JoinSet::new();
    let (opened_tx, mut opened_rx) = mpsc::channel(a.clients.max(1));
    let limit = (a.concurrency > 0).then(|| Arc::new(tokio::sync::Semaphore::new(a.concurrency)));
    let mut attempts = 0u64;
    for i in 0..a.clients {
        if *stop_rx.borrow() {
            break;
        }
        ramp(start, i, a.rate).await;
        let permit = match &limit {
            Some(l) => {
                let mut s = stop_rx.clone();
                tokio::select! {
                    p = l.clone().acquire_owned() => p.ok(),
                    _ = s.wait_for(|s| *s) => break,
                }
            }
            None => None,
        };
        tasks.spawn(clients::connection(
            shared.clone(),
            client_id(&a.common, "conn", i),
            opened_tx.clone(),
            permit,
            stop_rx.clone(),
        ));
        attempts += 1;
    }
    drop(opened_tx);
    // Every attempt reports once: connected (with its time) or failed.
    let mut hist = new_histogram();
    let mut last_open = start;
    for _ in 0..attempts {
        match opened_rx.recv().await {
            Some(Some(took)) => {
                last_open = Instant::now();
                let _ = hist.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
            }
            Some(None) => {}
            None => break,
        }
    }
    let elapsed = last_open.duration_since(start);
    if a.hold > 0 {
        let mut s = stop_rx.clone();
        let _ = tokio::time::timeout(Duration::from_secs(a.hold), s.wait_for(|s| *s)).await;
    }
    // Read while the connections are still open, and idle since --hold.
    let open_now = counters.connected.load(Relaxed);
    let rss_after = a.rss_pid.map(rss_kb).transpose()?;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = progress_tx.send(true);
    let _ = progress.await;
    let report = Report {
        mode: "conn",
        elapsed_s: elapsed.as_secs_f64(),
        connections: attempts,
        connect_failures: counters.connect_failed.load(Relaxed),
        connect_rate: Some(hist.len() as f64 / elapsed.as_secs_f64().max(1e-9)),
        connect_latency: Latency::from_histogram(&hist),
        disconnects: counters.disconnects.load(Relaxed),
        errors: shared.errors.take(),
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
        rss_per_conn_bytes: rss_before
            .zip(rss_after)
            .filter(|_| open_now > 0)
            .map(|(b, a)| (a as f64 - b as f64) * 1024.0 / open_now as f64),
        ..Report::default()
    };
    finish(report, a.common.json)
}

/// CPU time (user + system, all threads) this process has used, in
/// seconds; `None` where /proc is not there.
fn self_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / 100.0)
}

/// utime + stime of a /proc/PID/stat text, in clock ticks (USER_HZ, 100
/// on Linux).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ..., utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid` in KiB: VmRSS in /proc/PID/status.
fn rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_vm_rss(&text).ok_or_else(|| format!("no VmRSS line in {path}"))
}

/// The VmRSS value (KiB) of a /proc/PID/status text.
fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `bench filters`: one subscriber with many filters, then publishers to
/// topics that each match one of them.
async fn filters(a: FiltersArgs) -> Result<ExitCode, String> {
    if a.filters == 0 {
        return Err("--filters must be at least 1".into());
    }
    let shared = shared(&a.common)?;
    let counters = shared.counters.clone();
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(stats::progress(counters.clone(), progress_rx));

    let (sub_stop_tx, sub_stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let plan = FilterPlan {
        filters: a.filters,
        batch: a.batch,
        window: a.window,
        qos: a.qos,
        timeout: Duration::from_secs(a.subscribe_timeout.max(1)),
    };
    if a.size < STAMP_LEN {
        warn_small_payloads(a.size);
    }
    let subscriber = tokio::spawn(clients::filter_subscriber(
        shared.clone(),
        client_id(&a.common, "sub", 0),
        plan,
        Tracker::new(Some(shared.run), a.publishers),
        ready_tx,
        sub_stop_rx,
    ));
    let mut stop = stop_rx.clone();
    let subscribed = tokio::select! {
        s = ready_rx => s.unwrap_or_default(),
        _ = stop.wait_for(|s| *s) => clients::Subscribed::default(),
    };
    let granted: Vec<usize> = subscribed
        .granted
        .iter()
        .enumerate()
        .filter_map(|(i, g)| g.then_some(i))
        .collect();

    // Publish only once every SUBACK is in, to granted filters only: then
    // each message matches exactly one subscription.
    let plan = Arc::new(PubPlan {
        qos: a.qos,
        size: a.size,
        rate: a.rate.max(0.0),
        count: None,
        deadline: Some(Instant::now() + Duration::from_secs_f64(a.duration.max(0.0))),
        inflight: a.inflight,
        drain: Duration::from_secs_f64(a.drain.max(0.0)),
    });
    let start = Instant::now();
    let mut results = Vec::new();
    if subscribed.took.is_some() && !granted.is_empty() && !*stop_rx.borrow() {
        let topics: Arc<[MqttString]> = granted
            .iter()
            .map(|&i| mqtt_string("topic", &clients::topic_for(i)))
            .collect::<Result<Vec<_>, _>>()?
            .into();
        let mut pub_set = JoinSet::new();
        for i in 0..a.publishers {
            let publisher = clients::publisher(
                shared.clone(),
                client_id(&a.common, "pub", i),
                topics.clone(),
                i,
                plan.clone(),
                stop_rx.clone(),
            );
            pub_set.spawn(async move { (i, publisher.await) });
        }
        results = vec![PubResult::default(); a.publishers];
        while let Some(r) = pub_set.join_next().await {
            if let Ok((i, r)) = r {
                results[i] = r;
            }
        }
    }
    let pub_elapsed = start.elapsed();
    let _ = stop_tx.send(true);
    // Each message matches exactly one filter of the one subscriber.
    let expected: u64 = results.iter().map(|r| due(r, a.qos)).sum();
    let per_message = a.size >= STAMP_LEN;
    wait_for_deliveries(&counters, expected, a.drain, per_message).await;
    let _ = sub_stop_tx.send(true);
    let sub_result = subscriber.await.ok();
    let _ = progress_tx.send(true);
    let _ = progress.await;

    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let mut report = Report {
        mode: "filters",
        publishers: a.publishers,
        subscribers: 1,
        qos: a.qos as u8,
        payload_size: Some(a.size),
        elapsed_s: pub_elapsed.as_secs_f64(),
        connections: (a.publishers + 1) as u64,
        connect_failures: counters.connect_failed.load(Relaxed),
        sent,
        sent_rate: sent as f64 / pub_elapsed.as_secs_f64().max(1e-9),
        acked: results.iter().map(|r| r.acked).sum(),
        publish_failures: counters.publish_failed.load(Relaxed),
        filters: Some(a.filters as u64),
        filters_granted: Some(granted.len() as u64),
        filters_refused: Some(subscribed.refused),
        subscribe_s: subscribed.took.map(|d| d.as_secs_f64()),
        subscribe_rate: subscribed
            .took
            .map(|d| a.filters as f64 / d.as_secs_f64().max(1e-9)),
        ..Report::default()
    };
    if let Some(r) = &sub_result {
        fill_receipts(&mut report, [r], start);
    }
    report.unacknowledged = unacknowledged(&results, a.qos);
    if subscribed.took.is_some() {
        report.publish_rate = Some(report.received_rate);
        if per_message {
            let unit = Unit {
                filter: None,
                members: sub_result.iter().map(|r| &r.tracker).collect(),
            };
            account(&mut report, &[unit], &results, &[], a.qos);
        } else {
            account_totals(&mut report, expected);
        }
    }
    report.disconnects = counters.disconnects.load(Relaxed);
    report.errors = shared.errors.take();
    let incomplete = subscribed.took.is_none() || subscribed.refused > 0;
    let code = finish(report, a.common.json)?;
    Ok(if incomplete { ExitCode::FAILURE } else { code })
}

/// Waits for the deliveries still on their way: until `expected` have
/// arrived, or none arrived for `drain` seconds. With `per_message`,
/// duplicates and foreign messages do not count: a duplicate must not end
/// the wait before the last message arrived.
async fn wait_for_deliveries(counters: &Counters, expected: u64, drain: f64, per_message: bool) {
    let drain = Duration::from_secs_f64(drain.max(0.0));
    let count = || {
        if per_message {
            counters.fresh.load(Relaxed)
        } else {
            counters.received.load(Relaxed)
        }
    };
    let mut last_count = count();
    let mut last_change = Instant::now();
    loop {
        let now_count = count();
        if now_count >= expected {
            break;
        }
        if now_count != last_count {
            last_count = now_count;
            last_change = Instant::now();
        } else if last_change.elapsed() >= drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the subscribers of a run do.
struct SubPlan {
    count: usize,
    filter: String,
    qos: QoS,
    /// Stop once this many messages arrived in all (`bench sub`).
    total: Option<u64>,
    /// Stop at this time (`bench sub`).
    deadline: Option<Instant>,
    /// This run's publishers, whose messages are tracked from the first
    /// (`bench pubsub`); `None`: track any run's, each from the first
    /// message seen (`bench sub`).
    publishers: Option<usize>,
}

async fn sub(a: SubArgs) -> Result<ExitCode, String> {
    let shared = shared(&a.common)?;
    let plan = SubPlan {
        count: a.subscribers,
        filter: a.filter,
        qos: a.qos,
        total: a.count,
        deadline: a
            .duration
            .map(|d| Instant::now() + Duration::from_secs_f64(d)),
        publishers: None,
    };
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(stats::progress(shared.counters.clone(), progress_rx));
    let mut subs = start_subscribers(&shared, &a.common, &plan, &stop_rx).await;
    let start = Instant::now();
    let counters = shared.counters.clone();
    let mut stop = stop_rx.clone();
    loop {
        if plan
            .total
            .is_some_and(|t| counters.received.load(Relaxed) >= t)
            || plan.deadline.is_some_and(|d| Instant::now() >= d)
            || *stop.borrow()
            || counters.connected.load(Relaxed) == 0
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = stop.changed() => {}
        }
    }
    let _ = stop_tx.send(true);
    let results = collect_subscribers(&mut subs, plan.count).await;
    let _ = progress_tx.send(true);
    let _ = progress.await;
    let mut report = Report {
        mode: "sub",
        subscribers: plan.count,
        qos: plan.qos as u8,
        connections: plan.count as u64,
        ..Report::default()
    };
    fill_receipts(&mut report, results.iter().flatten(), start);
    // The publishers are elsewhere: what they sent is unknown, only what
    // is missing between the messages received.
    let mut seen = Tally::default();
    let mut foreign = 0;
    for r in results.iter().flatten() {
        seen += r.tracker.seen();
        foreign += r.tracker.foreign;
    }
    if seen.received > 0 {
        report.per_message = Some(true);
        report.losses = Some(seen.losses);
        report.duplicates = Some(seen.duplicates);
        report.reordered = Some(seen.reordered);
        report.foreign = Some(foreign);
    } else if report.received > 0 {
        report.per_message = Some(false);
    }
    report.elapsed_s = start.elapsed().as_secs_f64();
    report.connect_failures = counters.connect_failed.load(Relaxed);
    report.disconnects = counters.disconnects.load(Relaxed);
    report.errors = shared.errors.take();
    finish(report, a.common.json)
}

/// Starts the subscribers and waits until each has its SUBACK (or failed).
/// Each task gives its index with its result.
async fn start_subscribers(
    shared: &Arc<Shared>,
    common: &Common,
    plan: &SubPlan,
    stop: &watch::Receiver<bool>,
) -> JoinSet<(usize, SubResult)> {
    let mut set = JoinSet::new();
    let (ready_tx, mut ready_rx) = mpsc::channel(plan.count.max(1));
    for i in 0..plan.count {
        let filter = plan.filter.replace("%i", &i.to_string());
        let tracker = match plan.publishers {
            Some(n) => Tracker::new(Some(shared.run), n),
            None => Tracker::new(None, 0),
        };
        let subscriber = clients::subscriber(
            shared.clone(),
            client_id(common, "sub", i),
            filter,
            plan.qos,
            tracker,
            ready_tx.clone(),
            stop.clone(),
        );
        set.spawn(async move { (i, subscriber.await) });
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < plan.count && ready_rx.recv().await.is_some() {
        ready += 1;
    }
    set
}

/// The subscribers' results, by index (`None` for a task that failed).
async fn collect_subscribers(
    set: &mut JoinSet<(usize, SubResult)>,
    count: usize,
) -> Vec<Option<SubResult>> {
    let mut out: Vec<Option<SubResult>> = (0..count).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            out[i] = Some(r);
        }
    }
    out
}

fn fill_receipts<'a>(
    report: &mut Report,
    results: impl IntoIterator<Item = &'a SubResult>,
    start: Instant,
) {
    let mut hist = new_histogram();
    let mut last = None::<Instant>;
    for r in results {
        report.received += r.received;
        let _ = hist.add(&r.latency);
        last = last.max(r.last);
    }
    let span = last.map_or(0.0, |l| l.duration_since(start).as_secs_f64());
    report.received_rate = if span > 0.0 {
        report.received as f64 / span
    } else {
        0.0
    };
    report.latency = Latency::from_histogram(&hist);
}

/// The group and filter of a shared subscription's `$share/GROUP/FILTER`.
fn shared_subscription(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

/// Deliveries each message to `topic` makes: one per matching plain
/// subscription, one per shared-subscription group with a matching filter.
fn fan_out(topic: &str, filters: &[String]) -> u64 {
    let mut plain = 0;
    let mut groups = BTreeSet::new();
    for f in filters {
        match shared_subscription(f) {
            Some((group, filter)) => {
                if mqtt_topic::matches(filter, topic) {
                    groups.insert((group, filter));
                }
            }
            None => plain += u64::from(mqtt_topic::matches(f, topic)),
        }
    }
    plain + groups.len() as u64
}

/// One subscription that should receive each matching message once: a
/// subscriber, or the members of a shared-subscription group (each gets
/// some of the messages).
struct Unit<'a> {
    /// Its filter; `None`: every publisher's messages (`bench filters`).
    filter: Option<&'a str>,
    /// What each member received.
    members: Vec<&'a Tracker>,
}

/// The subscriptions of `filters` (by subscriber index), with what each
/// subscriber received (`None` if its task is gone).
fn units<'a>(filters: &'a [String], results: &'a [Option<SubResult>]) -> Vec<Unit<'a>> {
    let mut units = Vec::new();
    let mut groups: BTreeMap<(&str, &str), Vec<&Tracker>> = BTreeMap::new();
    for (f, r) in filters.iter().zip(results) {
        let tracker = r.as_ref().map(|r| &r.tracker);
        match shared_subscription(f) {
            Some(key) => groups.entry(key).or_default().extend(tracker),
            None => units.push(Unit {
                filter: Some(f),
                members: tracker.into_iter().collect(),
            }),
        }
    }
    units.extend(groups.into_iter().map(|((_, filter), members)| Unit {
        filter: Some(filter),
        members,
    }));
    units
}

/// Messages of a publisher to be delivered: sent (QoS 0), or acknowledged
/// with success (QoS 1/2; the others are unacknowledged or refused).
fn due(r: &PubResult, qos: QoS) -> u64 {
    if qos == QoS::AtMostOnce {
        r.sent
    } else {
        r.acked
    }
}

/// QoS 1/2 messages sent and never acknowledged (`None` at QoS 0).
fn unacknowledged(results: &[PubResult], qos: QoS) -> Option<u64> {
    (qos != QoS::AtMostOnce).then(|| {
        results
            .iter()
            .map(|r| r.sent.saturating_sub(r.completed))
            .sum()
    })
}

/// Fills the report's per-message accounting: for each subscription and
/// each publisher whose topic (`topics`, by publisher index) its filter
/// matches, the messages due (`0..sent` at QoS 0; `0..completed` but the
/// refused at QoS 1/2: the never acknowledged are not losses, they are
/// counted as unacknowledged) against those received. What a subscription
/// received from a publisher it does not match is foreign.
fn account(
    report: &mut Report,
    units: &[Unit<'_>],
    results: &[PubResult],
    topics: &[String],
    qos: QoS,
) {
    let mut sum = Tally::default();
    let mut foreign = 0;
    for unit in units {
        foreign += unit.members.iter().map(|t| t.foreign).sum::<u64>();
        for (p, r) in results.iter().enumerate() {
            let tracks: Vec<_> = unit.members.iter().filter_map(|t| t.track(p)).collect();
            let matches = match (unit.filter, topics.get(p)) {
                (Some(f), Some(topic)) => mqtt_topic::matches(f, topic),
                (Some(_), None) => false,
                (None, _) => true,
            };
            if !matches {
                foreign += Tally::of(&tracks, 0, &[]).received;
                continue;
            }
            sum += if qos == QoS::AtMostOnce {
                Tally::of(&tracks, r.sent, &[])
            } else {
                Tally::of(&tracks, r.completed, &r.refused)
            };
        }
    }
    report.per_message = Some(true);
    report.expected = Some(sum.expected);
    report.losses = Some(sum.losses);
    report.duplicates = Some(sum.duplicates);
    report.reordered = Some(sum.reordered);
    report.foreign = Some(foreign);
}

/// Losses and duplicates as differences of totals, for payloads too short
/// to carry a sequence number: a duplicate hides a loss.
fn account_totals(report: &mut Report, expected: u64) {
    report.per_message = Some(false);
    report.expected = Some(expected);
    report.losses = Some(expected.saturating_sub(report.received));
    report.duplicates = Some(report.received.saturating_sub(expected));
}

fn warn_small_payloads(size: usize) {
    if size < 8 {
        eprintln!("mqtt: payloads under 8 bytes carry no timestamp: no latency measured");
    }
    eprintln!(
        "mqtt: payloads under {STAMP_LEN} bytes carry no sequence number: losses and duplicates are differences of totals"
    );
}

/// `bench pub`, and `bench pubsub` when `subs` is given.
async fn pubsub(
    common: &Common,
    options: &PublishOptions,
    subs: Option<SubPlan>,
) -> Result<ExitCode, String> {
    let shared = shared(common)?;
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(stats::progress(shared.counters.clone(), progress_rx));
    let counters = shared.counters.clone();
    let per_message = options.size >= STAMP_LEN;
    if !per_message && subs.is_some() {
        warn_small_payloads(options.size);
    }

    // Subscribers first, each with its SUBACK, so no message is missed.
    // They stop on their own signal, after the deliveries are drained.
    let (sub_stop_tx, sub_stop_rx) = watch::channel(false);
    let mut sub_set = JoinSet::new();
    if let Some(plan) = &subs {
        sub_set = start_subscribers(&shared, common, plan, &sub_stop_rx).await;
    }

    let plan = Arc::new(PubPlan {
        qos: options.qos,
        size: options.size,
        rate: options.rate.max(0.0),
        count: options.count,
        deadline: options
            .duration
            .map(|d| Instant::now() + Duration::from_secs_f64(d)),
        inflight: options.inflight,
        drain: Duration::from_secs_f64(options.drain.max(0.0)),
    });
    let start = Instant::now();
    let mut pub_set = JoinSet::new();
    let mut topics = Vec::new();
    for i in 0..options.publishers {
        let topic = options.topic.replace("%i", &i.to_string());
        let name = mqtt_string("topic", &topic)?;
        if mqtt_topic::TopicName::new(&topic).is_err() {
            return Err(format!("invalid topic {topic:?}"));
        }
        topics.push(topic);
        ramp(start, i, options.conn_rate).await;
        let publisher = clients::publisher(
            shared.clone(),
            client_id(common, "pub", i),
            Arc::from([name]),
            i,
            plan.clone(),
            stop_rx.clone(),
        );
        pub_set.spawn(async move { (i, publisher.await) });
    }
    let mut results = vec![PubResult::default(); options.publishers];
    while let Some(r) = pub_set.join_next().await {
        if let Ok((i, r)) = r {
            results[i] = r;
        }
    }
    let pub_elapsed = start.elapsed();
    let _ = stop_tx.send(true);

    let receipts = match &subs {
        Some(plan) => {
            let filters: Vec<String> = (0..plan.count)
                .map(|i| plan.filter.replace("%i", &i.to_string()))
                .collect();
            // Deliveries expected from what was sent (QoS 0) or acknowledged.
            let expected: u64 = results
                .iter()
                .zip(&topics)
                .map(|(r, t)| due(r, options.qos) * fan_out(t, &filters))
                .sum();
            wait_for_deliveries(&counters, expected, options.drain, per_message).await;
            let _ = sub_stop_tx.send(true);
            let received = collect_subscribers(&mut sub_set, plan.count).await;
            Some((received, filters, expected))
        }
        None => None,
    };
    let _ = progress_tx.send(true);
    let _ = progress.await;

    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let subscribers = subs.as_ref().map_or(0, |s| s.count);
    let mut report = Report {
        mode: if subs.is_some() { "pubsub" } else { "pub" },
        publishers: options.publishers,
        subscribers,
        qos: options.qos as u8,
        payload_size: Some(options.size),
        elapsed_s: pub_elapsed.as_secs_f64(),
        connections: (options.publishers + subscribers) as u64,
        connect_failures: counters.connect_failed.load(Relaxed),
        sent,
        sent_rate: sent as f64 / pub_elapsed.as_secs_f64().max(1e-9),
        acked: results.iter().map(|r| r.acked).sum(),
        publish_failures: counters.publish_failed.load(Relaxed),
        unacknowledged: unacknowledged(&results, options.qos),
        ..Report::default()
    };
    if let Some((sub_results, filters, expected)) = &receipts {
        fill_receipts(&mut report, sub_results.iter().flatten(), start);
        if per_message {
            let units = units(filters, sub_results);
            account(&mut report, &units, &results, &topics, options.qos);
        } else {
            account_totals(&mut report, *expected);
        }
    }
    report.disconnects = counters.disconnects.load(Relaxed);
    report.errors = shared.errors.take();
    finish(report, common.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status = "Name:\tmqtt\nVmPeak:\t  999 kB\nVmRSS:\t   46672 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(46672));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(267));
        assert!(self_cpu_s().is_some_and(|s| s >= 0.0) || !std::path::Path::new("/proc").exists());
    }

    #[test]
    fn filters_are_distinct_and_each_matched_by_its_own_topic_only() {
        let n = 30;
        let filters: Vec<String> = (0..n).map(clients::filter_for).collect();
        let distinct: BTreeSet<&String> = filters.iter().collect();
        assert_eq!(distinct.len(), n);
        for i in 0..n {
            let topic = clients::topic_for(i);
            assert!(mqtt_topic::TopicName::new(&topic).is_ok());
            assert_eq!(fan_out(&topic, &filters), 1, "{topic}");
            assert!(mqtt_topic::matches(&filters[i], &topic));
        }
    }

    #[test]
    fn each_subscription_expects_the_publishers_it_matches() {
        let run = 42;
        let payload = |publisher: u32, seq: u64| {
            let mut b = Vec::new();
            stats::Stamp {
                at: 0,
                run,
                publisher,
                seq,
            }
            .write(&mut b);
            b
        };
        let topics = ["bench/0".to_owned(), "bench/1".to_owned()];
        let pubs = [
            PubResult {
                sent: 4,
                acked: 4,
                completed: 4,
                ..PubResult::default()
            },
            PubResult {
                sent: 3,
                acked: 2,
                completed: 2,
                ..PubResult::default()
            },
        ];
        // Subscriber 0, on bench/0, also got a message of publisher 1.
        let mut only_0 = Tracker::new(Some(run), 2);
        for seq in [0, 1, 3] {
            only_0.arrive(&payload(0, seq));
        }
        only_0.arrive(&payload(1, 0));
        // Subscriber 1, on bench/#, got everything but publisher 0's 1.
        let mut all = Tracker::new(Some(run), 2);
        for (p, seq) in [(0, 0), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)] {
            all.arrive(&payload(p, seq));
        }
        let units = [
            Unit {
                filter: Some("bench/0"),
                members: vec![&only_0],
            },
            Unit {
                filter: Some("bench/#"),
                members: vec![&all],
            },
        ];
        let mut report = Report {
            qos: 1,
            ..Report::default()
        };
        account(&mut report, &units, &pubs, &topics, QoS::AtLeastOnce);
        // 4 + (4 + 2) due; publisher 1's message 2 was never acknowledged.
        assert_eq!(report.expected, Some(10));
        assert_eq!(report.losses, Some(2));
        assert_eq!(report.foreign, Some(1));
        assert_eq!(report.duplicates, Some(0));
        assert_eq!(unacknowledged(&pubs, QoS::AtLeastOnce), Some(1));
        assert!(report.failed());
    }

    #[test]
    fn random_picks_stay_in_range_and_spread() {
        let mut rng = clients::XorShift::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
