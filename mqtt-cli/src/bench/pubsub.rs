//! `bench pub` and `bench pubsub`: publishers, and in `pubsub`
//! subscribers in the same process whose deliveries are counted message by
//! message against what was published.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::accounting::{
    account, account_totals, due, fill_receipts, unacknowledged, units, warn_small_payloads,
};
use super::args::{Common, PublishOptions};
use super::publisher::{self, PubPlan, PubResult};
use super::recipients::{fan_out, recipients};
use super::report::Report;
use super::stamp::STAMP_LEN;
use super::sub::{SubPlan, collect_subscribers, start_subscribers};
use super::{client_id, counters, finish, ramp, shared, stop_on_ctrl_c, wait_for_deliveries};
use crate::options::mqtt_string;

/// `bench pub`, and `bench pubsub` when `subs` is given.
pub(super) async fn pubsub(
    common: &Common,
    options: &PublishOptions,
    subs: Option<SubPlan>,
) -> Result<ExitCode, String> {
    let shared = shared(common)?;
    let (stop_tx, stop_rx) = stop_on_ctrl_c();
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(counters::progress(shared.counters.clone(), progress_rx));
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
        let publisher = publisher::publisher(
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

    let filters: Vec<String> = subs.as_ref().map_or_else(Vec::new, |plan| {
        (0..plan.count)
            .map(|i| plan.filter.replace("%i", &i.to_string()))
            .collect()
    });
    let recipients = recipients(&filters);
    let receipts = match &subs {
        Some(plan) => {
            // Deliveries expected from what was sent (QoS 0) or acknowledged.
            let expected: u64 = results
                .iter()
                .zip(&topics)
                .map(|(r, t)| due(r, options.qos) * fan_out(t, &recipients))
                .sum();
            wait_for_deliveries(&counters, expected, options.drain, per_message).await;
            let _ = sub_stop_tx.send(true);
            let received = collect_subscribers(&mut sub_set, plan.count).await;
            Some((received, expected))
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
    if let Some((sub_results, expected)) = &receipts {
        fill_receipts(&mut report, sub_results.iter().flatten(), start);
        if per_message {
            let units = units(&recipients, sub_results);
            account(&mut report, &units, &results, &topics, options.qos);
        } else {
            account_totals(&mut report, *expected);
        }
    }
    report.disconnects = counters.disconnects.load(Relaxed);
    report.errors = shared.errors.take();
    finish(report, common.json)
}
