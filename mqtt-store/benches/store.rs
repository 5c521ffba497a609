//! Store throughput and recovery time.
//!
//! - `qos1_append_ack`: the persistent-session QoS 1 path — a message is
//!   appended to an offline queue and committed (the broker may then send
//!   PUBACK), then removed and committed when the subscriber acknowledges
//!   it. `memory` commits inline; `fjall_group_commit` sends both commits
//!   of 64 concurrent publishers through one `GroupCommit`, so each group
//!   costs one fsync; `fjall_sync_each` is the same path with one fsync per
//!   commit, for comparison.
//! - `recovery`: opening and recovering a store holding 300,000 queued
//!   messages (100-byte payloads) across 1,000 sessions.
//!
//! Run: `cargo bench -p mqtt-store --bench store`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mqtt_codec::{MqttString, QoS};
use mqtt_session::{Delivery, Message, SessionState};
use mqtt_store::{Batch, Clock, FjallStore, GroupCommit, GroupCommitConfig, MemoryStore, Store};

fn clock() -> Clock {
    Clock::new(Instant::now(), SystemTime::now())
}

fn id(i: usize) -> MqttString {
    MqttString::try_from(format!("client-{i:05}")).unwrap()
}

fn delivery(payload: &Bytes) -> Delivery {
    let message = Message {
        topic: MqttString::from_static("sensors/site-1/line-4/temperature"),
        payload: payload.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
    };
    Delivery::new(Arc::new(message), QoS::AtLeastOnce)
}

fn sessions<S: Store>(store: &S, n: usize) {
    let c = clock();
    let mut b = Batch::new(c);
    for i in 0..n {
        b.save_session(&SessionState::new(id(i), u32::MAX), None);
    }
    store.commit(&b).unwrap();
}

/// `count` append+ack pairs on `threads` threads, each thread its own
/// session, every commit through `commit`.
fn append_ack(
    threads: usize,
    count: u64,
    commit: &(dyn Fn(Batch) + Sync),
    payload: &Bytes,
) -> Duration {
    let per_thread = count.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let c = clock();
                let client = id(t);
                let d = delivery(payload);
                for seq in 0..per_thread {
                    let mut b = Batch::new(c);
                    b.append_queued(&client, seq, &d);
                    commit(b);
                    let mut b = Batch::new(c);
                    b.remove_queued(&client, seq);
                    commit(b);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_append_ack(c: &mut Criterion) {
    let payload = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group("qos1_append_ack");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));

    let memory = MemoryStore::new();
    sessions(&memory, 64);
    g.bench_function("memory", |b| {
        b.iter_custom(|n| append_ack(1, n, &|batch| memory.commit(&batch).unwrap(), &payload));
    });

    let dir = tempfile::tempdir().unwrap();
    let fjall = Arc::new(FjallStore::open(dir.path()).unwrap());
    fjall.recover(clock()).unwrap();
    sessions(&*fjall, 64);
    let group = GroupCommit::spawn(fjall.clone(), GroupCommitConfig::default()).unwrap();
    let syncs_before = fjall.stats().syncs;
    let mut pairs = 0;
    g.bench_function("fjall_group_commit", |b| {
        b.iter_custom(|n| {
            pairs += n;
            append_ack(64, n, &|batch| group.commit(batch).unwrap(), &payload)
        });
    });
    let syncs = fjall.stats().syncs - syncs_before;
    eprintln!(
        "fjall_group_commit: {} commits, {syncs} fsyncs ({:.1} commits per fsync)",
        pairs * 2,
        (pairs * 2) as f64 / syncs.max(1) as f64
    );

    g.bench_function("fjall_sync_each", |b| {
        b.iter_custom(|n| append_ack(1, n, &|batch| fjall.commit(&batch).unwrap(), &payload));
    });
    g.finish();
}

fn bench_recovery(c: &mut Criterion) {
    const SESSIONS: usize = 1_000;
    const PER_SESSION: u64 = 300;
    let payload = Bytes::from(vec![b'x'; 100]);
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.recover(clock()).unwrap();
        let start = Instant::now();
        let d = delivery(&payload);
        for i in 0..SESSIONS {
            let client = id(i);
            let mut b = Batch::new(clock());
            b.save_session(&SessionState::new(client.clone(), u32::MAX), None);
            for seq in 0..PER_SESSION {
                b.append_queued(&client, seq, &d);
            }
            store.write(&b).unwrap();
        }
        store.sync().unwrap();
        eprintln!(
            "recovery: wrote {} messages in {:?}, {} MiB on disk",
            SESSIONS as u64 * PER_SESSION,
            start.elapsed(),
            store.disk_space() / (1024 * 1024)
        );
    }
    let mut g = c.benchmark_group("recovery");
    // One recovery takes most of a second: ten of them, not 55.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(SESSIONS as u64 * PER_SESSION));
    g.bench_function("fjall_300k_messages_1k_sessions", |b| {
        b.iter(|| {
            let store = FjallStore::open(dir.path()).unwrap();
            let r = store.recover(clock()).unwrap();
            assert_eq!(r.report.queued, SESSIONS * PER_SESSION as usize);
            r
        });
    });
    g.finish();
}

criterion_group!(benches, bench_append_ack, bench_recovery);
criterion_main!(benches);
