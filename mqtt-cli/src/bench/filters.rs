//! `bench filters`: one subscriber with many filters (the time to
//! subscribe to them all), then publishers whose messages each match one.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mqtt_codec::MqttString;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::accounting::{
    Unit, account, account_totals, due, fill_receipts, unacknowledged, warn_small_payloads,
};
use super::args::FiltersArgs;
use super::filter_subscriber::{self, FilterPlan};
use super::publisher::{self, PubPlan, PubResult};
use super::report::Report;
use super::stamp::STAMP_LEN;
use super::tracker::Tracker;
use super::{client_id, counters, finish, shared, stop_on_ctrl_c, wait_for_deliveries};
use crate::options::mqtt_string;

/// `bench filters`: one subscriber with many filters, then publishers to
/// topics that each match one of them.
pub(super) async fn filters(a: FiltersArgs) -> Result<ExitCode, String> {
    if a.filters == 0 {
        return Err("--filters must be at least 1".into());
    }
    let shared = shared(&a.common)?;
    let counters = shared.counters.clone();
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(counters::progress(counters.clone(), progress_rx));

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
    let subscriber = tokio::spawn(filter_subscriber::filter_subscriber(
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
        _ = stop.wait_for(|s| *s) => filter_subscriber::Subscribed::default(),
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
            .map(|&i| mqtt_string("topic", &filter_subscriber::topic_for(i)))
            .collect::<Result<Vec<_>, _>>()?
            .into();
        let mut pub_set = JoinSet::new();
        for i in 0..a.publishers {
            let publisher = publisher::publisher(
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
