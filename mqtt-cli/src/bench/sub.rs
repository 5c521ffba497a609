//! `bench sub`: subscribers that count what arrives from publishers
//! elsewhere; and the start and collection of the subscribers of a run,
//! which `bench pubsub` shares.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mqtt_codec::QoS;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::accounting::fill_receipts;
use super::args::{Common, SubArgs};
use super::report::Report;
use super::shared::Shared;
use super::subscriber::{self, SubResult};
use super::tally::Tally;
use super::tracker::Tracker;
use super::{client_id, counters, finish, shared, stop_on_ctrl_c};

/// What the subscribers of a run do.
pub(super) struct SubPlan {
    pub(super) count: usize,
    pub(super) filter: String,
    pub(super) qos: QoS,
    /// Stop once this many messages arrived in all (`bench sub`).
    pub(super) total: Option<u64>,
    /// Stop at this time (`bench sub`).
    pub(super) deadline: Option<Instant>,
    /// This run's publishers, whose messages are tracked from the first
    /// (`bench pubsub`); `None`: track any run's, each from the first
    /// message seen (`bench sub`).
    pub(super) publishers: Option<usize>,
}

pub(super) async fn sub(a: SubArgs) -> Result<ExitCode, String> {
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
    let progress = tokio::spawn(counters::progress(shared.counters.clone(), progress_rx));
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
        report.note_gap_limit(&seen);
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
pub(super) async fn start_subscribers(
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
        let subscriber = subscriber::subscriber(
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
pub(super) async fn collect_subscribers(
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
