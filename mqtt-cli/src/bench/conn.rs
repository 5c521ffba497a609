//! `bench conn`: opens many connections at a given rate, and holds them
//! open; reports the connect rate, the time to CONNACK and, with
//! `--rss-pid`, the broker's memory per connection.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mqtt_session::ClientEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::args::ConnArgs;
use super::latency::{Latency, new_histogram};
use super::procfs::rss_kb;
use super::report::Report;
use super::shared::Shared;
use super::{client_id, counters, finish, ramp, shared, stop_on_ctrl_c};

pub(super) async fn conn(a: ConnArgs) -> Result<ExitCode, String> {
    let shared = shared(&a.common)?;
    let counters = shared.counters.clone();
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(counters::progress(counters.clone(), progress_rx));
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
        tasks.spawn(connection(
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

/// Connects, reports the time to CONNACK (`None` on failure) on
/// `opened`, and holds the connection (answering keep-alive) until `stop`.
/// `permit`, if any, is released once the attempt is over (`--concurrency`).
pub(crate) async fn connection(
    shared: Arc<Shared>,
    id: String,
    opened: tokio::sync::mpsc::Sender<Option<Duration>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    mut stop: watch::Receiver<bool>,
) {
    let began = Instant::now();
    let client = shared.open(id).await;
    drop(permit);
    let _ = opened.send(client.as_ref().map(|_| began.elapsed())).await;
    let Some(mut client) = client else {
        return;
    };
    loop {
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Closed { reason, .. } = ev {
                shared.lost(&client.close_error(reason));
                return;
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = client.step() => if let Err(e) = r {
                shared.lost(&e);
                return;
            },
            _ = stop.changed() => break,
        }
    }
    shared.close(client).await;
}
