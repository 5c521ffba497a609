//! Benchmarks of the subscription trie and the retained index.
//!
//! `cargo bench -p mqtt-topic`. The data is described in `workload/mod.rs`.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mqtt_topic::{RetainedIndex, SubscriptionTrie, TopicFilter, TopicName};

mod workload;

fn build(subscriptions: &[(TopicFilter, u32, u8)]) -> SubscriptionTrie<u32, u8> {
    let mut trie = SubscriptionTrie::new();
    for (filter, key, qos) in subscriptions {
        trie.insert(filter, *key, *qos);
    }
    trie
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert");
    for n in [10_000, 100_000] {
        let subscriptions = workload::subscriptions(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_with_large_drop(|| build(&subscriptions))
        });
    }
    group.finish();
}

fn match_topic(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_topic");
    for n in [10_000, 100_000, 1_000_000] {
        // Built once per size: building the 1M trie takes about a second.
        let trie = build(&workload::subscriptions(n));
        let topics = workload::topics(n, 4096);
        let mut visited = 0;
        for topic in &topics {
            trie.match_topic(topic, |_, _| visited += 1);
        }
        println!(
            "match_topic/{n}: {} entries, {} nodes, {:.1} matches per topic",
            trie.len(),
            trie.node_count(),
            visited as f64 / topics.len() as f64
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0;
            b.iter(|| {
                let topic = &topics[i % topics.len()];
                i += 1;
                let mut qos_sum = 0u32;
                trie.match_topic(black_box(topic), |_, qos| qos_sum += u32::from(*qos));
                qos_sum
            })
        });
    }
    group.finish();
}

/// What the trie saves: every filter tried against the topic, one by one.
fn naive_scan(c: &mut Criterion) {
    let n = 10_000;
    let subscriptions = workload::subscriptions(n);
    let topics = workload::topics(n, 4096);
    c.bench_function("naive_scan/10000", |b| {
        let mut i = 0;
        b.iter(|| {
            let topic = &topics[i % topics.len()];
            i += 1;
            subscriptions
                .iter()
                .filter(|(filter, _, _)| filter.matches(black_box(topic)))
                .count()
        })
    });
}

/// A topic to get, and four filters of growing reach over the same device
/// (in the order of the cases below).
struct Query {
    topic: TopicName,
    filters: [TopicFilter; 4],
}

fn retained(c: &mut Criterion) {
    let (devices, sites) = (25_000, 100);
    let index: RetainedIndex<u32> = workload::retained_topics(devices, sites)
        .into_iter()
        .zip(0..)
        .collect();
    assert_eq!(index.len(), 100_000);
    let filter = |s: String| TopicFilter::new(&s).expect("valid filter");
    let mut rng = workload::Rng::new(3);
    let queries: Vec<Query> = (0..1024)
        .map(|_| {
            let d = rng.below(devices);
            let s = d % sites;
            Query {
                topic: TopicName::new(&format!("site/{s}/device/{d}/telemetry/temp"))
                    .expect("valid"),
                filters: [
                    filter(format!("site/{s}/device/{d}/#")),
                    filter(format!("site/+/device/{d}/telemetry/+")),
                    filter(format!("site/{s}/device/+/telemetry/temp")),
                    filter(format!("site/{s}/#")),
                ],
            }
        })
        .collect();

    let mut group = c.benchmark_group("retained_100k");
    group.bench_function("get", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            index
                .get(black_box(&queries[i % queries.len()].topic))
                .copied()
        })
    });
    let cases = [
        "device_hash_4_topics",
        "plus_site_and_metric_4_topics",
        "site_plus_device_250_topics",
        "site_hash_1000_topics",
    ];
    for (case, name) in cases.into_iter().enumerate() {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                let mut n = 0u32;
                index.match_filter(
                    black_box(&queries[i % queries.len()].filters[case]),
                    |_, v| n = n.wrapping_add(*v),
                );
                n
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = insert, match_topic, naive_scan, retained
}
criterion_main!(benches);
