//! Measures the memory of a `SubscriptionTrie` with 1,000,000 subscriptions
//! and of a `RetainedIndex` with 100,000 topics, on the data of the
//! benchmarks (`benches/workload/mod.rs`).
//!
//! `cargo run --release -p mqtt-topic --example memory [subscriptions]`
//!
//! Two figures: the bytes the structure asked the allocator for (counted by a
//! wrapping global allocator, exact and the same on every machine), and the
//! growth of the process's resident memory (what the allocator really took,
//! its rounding and bookkeeping included; Linux only).

// A global allocator can only be written with `unsafe`; this one forwards
// every call to the system allocator unchanged and only counts bytes. The
// library itself forbids `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use mqtt_topic::{RetainedIndex, SubscriptionTrie, TopicName};

#[path = "../benches/workload/mod.rs"]
mod workload;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the counter has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident memory in bytes, from `/proc/self/statm` (0 elsewhere).
fn resident() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);

    // Printing first makes stdout allocate its buffer before counting starts.
    println!("{n} subscriptions");
    // The filters are the caller's: made before counting starts.
    let subscriptions = workload::subscriptions(n);
    let (live, rss) = (LIVE.load(Relaxed), resident());
    let mut trie = SubscriptionTrie::new();
    for (filter, key, qos) in &subscriptions {
        trie.insert(filter, *key, *qos);
    }
    let bytes = LIVE.load(Relaxed) - live;
    let rss_growth = resident().saturating_sub(rss);
    let distinct = {
        let mut filters: Vec<_> = subscriptions.iter().map(|(f, _, _)| f).collect();
        filters.sort();
        filters.dedup();
        filters.len()
    };
    println!(
        "SubscriptionTrie<u32, u8>: {} subscriptions ({distinct} distinct filters), {} nodes",
        trie.len(),
        trie.node_count()
    );
    println!(
        "  allocated: {bytes} bytes = {:.1} bytes per subscription, {:.1} per distinct filter",
        bytes as f64 / n as f64,
        bytes as f64 / distinct as f64
    );
    println!(
        "  resident growth: {rss_growth} bytes = {:.1} bytes per subscription",
        rss_growth as f64 / n as f64
    );
    let topics = workload::topics(n, 1000);
    let mut matched = 0;
    for topic in &topics {
        trie.match_topic(topic, |_, _| matched += 1);
    }
    println!(
        "  {:.1} matches per topic",
        matched as f64 / topics.len() as f64
    );
    drop(topics);

    // Freeing every entry gives the memory back.
    for (filter, key, _) in &subscriptions {
        trie.remove(filter, key);
    }
    println!(
        "  after removing all: {} nodes, {} bytes still allocated",
        trie.node_count(),
        LIVE.load(Relaxed) - live
    );
    drop(trie);
    drop(subscriptions);

    let topics = workload::retained_topics(25_000, 100);
    let count = topics.len();
    let live = LIVE.load(Relaxed);
    // Keeps its own copy of each name, as a broker storing retained
    // messages would (the names above are counted as the caller's).
    let index: RetainedIndex<u32> = topics.iter().cloned().zip(0..).collect();
    let bytes = LIVE.load(Relaxed) - live;
    // No resident figure here: the index reuses the memory the trie freed.
    println!(
        "RetainedIndex<u32>: {count} topics, {} nodes: {bytes} bytes allocated = {:.1} per topic \
         (topic names shared with the caller, not counted)",
        index.node_count(),
        bytes as f64 / count as f64,
    );
    let probe = TopicName::new("site/7/device/7/telemetry/temp").expect("valid topic");
    assert_eq!(index.get(&probe), Some(&28));
}
