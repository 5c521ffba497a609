//! `mqtt bench`: load generation in the spirit of emqtt-bench.
//!
//! Every client is a tokio task with its own connection, driven by the same
//! `ClientConnection` as `mqtt pub` and `mqtt sub`. Publishers start each
//! payload with a [`Stamp`](stamp::Stamp): the send time (nanoseconds since
//! the UNIX epoch, big-endian; in rate mode the time the message was due),
//! the run id, the publisher's index and the message's sequence number.
//! Subscribers on the same machine turn the time into an end-to-end latency
//! and track, per publisher, which sequence numbers arrived: losses,
//! duplicates and reordering are counted message by message.
//!
//! The files of this folder, by concern:
//! - the modes: [`conn`], [`pubsub`] (`pub` and `pubsub`), [`sub`] and
//!   [`filters`], from the command line in [`args`], with the helpers they
//!   share here;
//! - the client tasks: [`publisher`], [`subscriber`], [`filter_subscriber`]
//!   and the one in [`conn`], with what they share in [`shared`](mod@shared), the
//!   payloads in [`payload`] and [`stamp`], the picks in [`rng`];
//! - the counting: [`counters`] (live, with the progress line), per
//!   message in [`track`], [`tracker`], [`tally`] and [`accounting`] (by
//!   [`recipients`]), and [`latency`];
//! - the output: [`report`], [`errors`], and [`procfs`] for the CPU and
//!   memory figures.

mod accounting;
mod args;
mod conn;
mod counters;
mod errors;
mod filter_subscriber;
mod filters;
mod latency;
mod payload;
mod procfs;
mod publisher;
mod pubsub;
mod recipients;
mod report;
mod rng;
mod shared;
mod stamp;
mod sub;
mod subscriber;
mod tally;
mod track;
mod tracker;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mqtt_codec::{Connect, MqttString};
use tokio::sync::watch;

pub(crate) use self::args::BenchArgs;
use self::args::{Common, Mode};
use self::counters::Counters;
use self::errors::Errors;
use self::procfs::self_cpu_s;
use self::report::Report;
use self::shared::Shared;
use self::sub::SubPlan;
use crate::options::mqtt_string;
use crate::transport::{Endpoint, TlsOptions, TlsSettings};

/// Runs `mqtt bench`.
pub(crate) async fn run(args: BenchArgs) -> Result<ExitCode, String> {
    let report = match args.mode {
        Mode::Conn(a) => conn::conn(a).await?,
        Mode::Pub(a) => pubsub::pubsub(&a.common, &a.publish, None).await?,
        Mode::Sub(a) => sub::sub(a).await?,
        Mode::Filters(a) => filters::filters(a).await?,
        Mode::Pubsub(a) => {
            let subs = SubPlan {
                count: a.subscribers,
                filter: a.filter,
                qos: a.publish.qos,
                total: None,
                deadline: None,
                publishers: Some(a.publish.publishers),
            };
            pubsub::pubsub(&a.common, &a.publish, Some(subs)).await?
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
        run: stamp::new_run_id(),
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
