//! `$SYS/broker/...` topics, named as mosquitto names them, published as
//! retained QoS 0 messages every `sys_interval` seconds. As in mosquitto,
//! a value is published again only when it changed (the uptime always
//! changes). Subscribe with `$SYS/#`: filters starting with a wildcard do
//! not match `$` topics.
//!
//! | topic | value |
//! |---|---|
//! | `version` | `mqtt-rs version X.Y.Z` |
//! | `uptime` | `N seconds` |
//! | `clients/connected`, `clients/disconnected`, `clients/total` | connected clients, offline sessions, all sessions |
//! | `clients/maximum` | most clients connected at once, as seen at each update |
//! | `messages/received`, `messages/sent` | PUBLISH packets (mosquitto counts every packet here) |
//! | `publish/messages/received`, `publish/messages/sent`, `publish/messages/dropped` | PUBLISH packets; deliveries dropped |
//! | `bytes/received`, `bytes/sent` | socket bytes |
//! | `retained messages/count`, `subscriptions/count` | |
//! | `load/{messages,publish,bytes}/{received,sent}/{1min,5min,15min}`, `load/connections/{1min,5min,15min}` | per-minute rates, exponentially averaged over 1, 5 and 15 minutes |
//! | `connection/NAME/messages/{sent,received,queued,dropped}`, `connection/NAME/reconnects` | each `[[bridge]]`'s counters (its `connection/NAME/state`, `1` or `0`, is published by the bridge as it changes, as mosquitto does) |
//! | `cluster/node`, `cluster/nodes`, `cluster/nodes/count` | as one node of a cluster: its name; the other nodes alive (names, space-separated; how many) |
//! | `cluster/messages/{sent,received}` | messages to other nodes (once per node) and from them |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_codec::{MqttString, QoS};
use mqtt_session::Message;
use mqtt_topic::TopicName;

use crate::broker::{Broker, Publishing};
use crate::handle::lock;
use crate::stats::Stats;

/// The averaging periods of the `load/...` topics.
const PERIODS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

/// One exponentially averaged rate, per minute.
#[derive(Debug, Default)]
struct Load {
    last: u64,
    averages: [f64; 3],
}

impl Load {
    fn update(&mut self, value: u64, elapsed: f64) {
        let per_minute = value.saturating_sub(self.last) as f64 * 60.0 / elapsed;
        self.last = value;
        for (avg, (_, period)) in self.averages.iter_mut().zip(PERIODS) {
            let decay = (-elapsed / period).exp();
            *avg = per_minute + decay * (*avg - per_minute);
        }
    }
}

/// Publishes `$SYS` topics every `interval`; never returns.
pub(crate) async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: HashMap<String, String> = HashMap::new();
    let mut loads: HashMap<&'static str, Load> = HashMap::new();
    let mut maximum = 0u64;
    let mut last_tick: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let now = tokio::time::Instant::now().into_std();
        let elapsed = last_tick.map(|t| (now - t).as_secs_f64());
        last_tick = Some(now);
        let values = collect(&broker, now, &mut maximum, &mut loads, elapsed);
        for (topic, value) in values {
            if published.get(&topic) == Some(&value) {
                continue;
            }
            publish(&broker, &topic, &value, now);
            published.insert(topic, value);
        }
    }
}

fn collect(
    broker: &Broker,
    now: Instant,
    maximum: &mut u64,
    loads: &mut HashMap<&'static str, Load>,
    elapsed: Option<f64>,
) -> Vec<(String, String)> {
    let s = &broker.stats;
    let get = Stats::get;
    let sum = |c: &[std::sync::atomic::AtomicU64; 3]| c.iter().map(get).sum::<u64>();
    let connected = get(&s.clients_connected);
    *maximum = (*maximum).max(connected);
    let sessions = lock(&broker.sessions).len() as u64;
    let retained = broker
        .retained
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let subscriptions = broker
        .router
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let received = get(&s.messages_received);
    let sent = sum(&s.messages_sent_by_qos);
    let dropped = get(&s.dropped_queue_full) + get(&s.dropped_acl_read);
    let uptime = now.saturating_duration_since(broker.started).as_secs();

    let mut v: Vec<(String, String)> = vec![
        (
            "version".into(),
            format!("mqtt-rs version {}", env!("CARGO_PKG_VERSION")),
        ),
        ("uptime".into(), format!("{uptime} seconds")),
        ("clients/connected".into(), connected.to_string()),
        (
            "clients/disconnected".into(),
            sessions.saturating_sub(connected).to_string(),
        ),
        ("clients/total".into(), sessions.to_string()),
        ("clients/maximum".into(), maximum.to_string()),
        ("messages/received".into(), received.to_string()),
        ("messages/sent".into(), sent.to_string()),
        ("publish/messages/received".into(), received.to_string()),
        ("publish/messages/sent".into(), sent.to_string()),
        ("publish/messages/dropped".into(), dropped.to_string()),
        ("bytes/received".into(), get(&s.bytes_received).to_string()),
        ("bytes/sent".into(), get(&s.bytes_sent).to_string()),
        ("retained messages/count".into(), retained.to_string()),
        ("subscriptions/count".into(), subscriptions.to_string()),
    ];
    let counters: [(&'static str, u64); 7] = [
        ("messages/received", received),
        ("messages/sent", sent),
        ("publish/received", received),
        ("publish/sent", sent),
        ("bytes/received", get(&s.bytes_received)),
        ("bytes/sent", get(&s.bytes_sent)),
        ("connections", get(&s.connections_total)),
    ];
    for (name, value) in counters {
        let load = loads.entry(name).or_default();
        match elapsed {
            Some(e) if e > 0.0 => load.update(value, e),
            // The first update has no interval to measure a rate over.
            _ => load.last = value,
        }
        for (avg, (period, _)) in load.averages.iter().zip(PERIODS) {
            v.push((format!("load/{name}/{period}"), format!("{avg:.2}")));
        }
    }
    // Each bridge's counters beside its `state`, which the bridge
    // publishes itself as it changes.
    for b in broker.bridges.stats() {
        for (name, value) in b.values().into_iter().skip(1) {
            v.push((format!("connection/{}/{name}", b.name), value.to_string()));
        }
    }
    #[cfg(feature = "cluster")]
    if let Some(c) = &broker.cluster {
        let mut seen = c.nodes_seen();
        seen.sort();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        v.push(("cluster/node".into(), c.node.to_string()));
        v.push(("cluster/nodes/count".into(), seen.len().to_string()));
        v.push(("cluster/nodes".into(), seen.join(" ")));
        v.push((
            "cluster/messages/sent".into(),
            get(&c.stats.messages_out).to_string(),
        ));
        v.push((
            "cluster/messages/received".into(),
            get(&c.stats.messages_in).to_string(),
        ));
    }
    for (topic, _) in &mut v {
        topic.insert_str(0, "$SYS/broker/");
    }
    v
}

fn publish(broker: &Broker, topic: &str, value: &str, now: Instant) {
    let (Ok(name), Ok(string)) = (
        TopicName::new(topic),
        MqttString::try_from(topic.to_owned()),
    ) else {
        return;
    };
    let message = Message {
        topic: string,
        payload: Bytes::copy_from_slice(value.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
        expires_at: None,
    };
    broker.publish(&name, Arc::new(message), Publishing::default(), now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_converges_to_its_per_minute_value() {
        let mut load = Load::default();
        let mut total = 0;
        for _ in 0..2000 {
            total += 10; // 10 per 10 s = 60 per minute
            load.update(total, 10.0);
        }
        for avg in load.averages {
            assert!((avg - 60.0).abs() < 0.01, "{avg}");
        }
    }

    #[test]
    fn the_short_average_reacts_faster() {
        let mut load = Load::default();
        load.update(600, 10.0);
        assert!(load.averages[0] > load.averages[1] && load.averages[1] > load.averages[2]);
    }
}
