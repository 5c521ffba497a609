//! The subscriptions and topics of the benchmarks and of the memory example:
//! a fleet of devices grouped in sites, each publishing a few metrics, and
//! clients subscribing in a realistic mix.
//!
//! For `n` subscriptions there are `n / 4` devices in `n / 500` sites, and
//! the subscriptions are:
//!
//! | share | filter                                   | who                 |
//! |-------|------------------------------------------|---------------------|
//! | 60 %  | `site/{s}/device/{d}/telemetry/{metric}` | one metric          |
//! | 15 %  | `site/+/device/{d}/telemetry/+`          | one device          |
//! | 10 %  | `site/{s}/device/{d}/#`                  | one device, all     |
//! | 10 %  | `site/{s}/device/+/telemetry/{metric}`   | a site's dashboard  |
//! |  5 %  | `$share/g{k}/site/{s}/device/+/alarm`    | shared workers      |
//!
//! so a telemetry topic matches about a dozen subscriptions whatever `n`.

use mqtt_topic::{Subscription, TopicFilter, TopicName};

const METRICS: [&str; 4] = ["temp", "hum", "co2", "power"];

/// splitmix64: deterministic, so every run measures the same data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn shape(n: usize) -> (usize, usize) {
    ((n / 4).max(1), (n / 500).max(1))
}

/// `n` subscriptions: (filter, client index, QoS). Shared subscriptions are
/// stored under their inner filter, as a broker would.
pub(crate) fn subscriptions(n: usize) -> Vec<(TopicFilter, u32, u8)> {
    let (devices, sites) = shape(n);
    let mut rng = Rng::new(1);
    (0..n)
        .map(|i| {
            let d = rng.below(devices);
            let s = d % sites;
            let m = METRICS[rng.below(METRICS.len())];
            let text = match rng.below(100) {
                0..60 => format!("site/{s}/device/{d}/telemetry/{m}"),
                60..75 => format!("site/+/device/{d}/telemetry/+"),
                75..85 => format!("site/{s}/device/{d}/#"),
                85..95 => format!("site/{s}/device/+/telemetry/{m}"),
                _ => format!("$share/g{}/site/{s}/device/+/alarm", i % 8),
            };
            let filter = Subscription::new(&text)
                .expect("valid filter")
                .filter()
                .clone();
            (filter, i as u32, (i % 3) as u8)
        })
        .collect()
}

/// `count` telemetry topics of the fleet that [`subscriptions`]`(n)` makes.
pub(crate) fn topics(n: usize, count: usize) -> Vec<TopicName> {
    let (devices, sites) = shape(n);
    let mut rng = Rng::new(2);
    (0..count)
        .map(|_| {
            let d = rng.below(devices);
            let m = METRICS[rng.below(METRICS.len())];
            TopicName::new(&format!("site/{}/device/{d}/telemetry/{m}", d % sites))
                .expect("valid topic")
        })
        .collect()
}

/// The retained topics of a fleet: every metric of `devices` devices in
/// `sites` sites (`4 * devices` topics).
pub(crate) fn retained_topics(devices: usize, sites: usize) -> Vec<TopicName> {
    (0..devices)
        .flat_map(|d| {
            METRICS.iter().map(move |m| {
                TopicName::new(&format!("site/{}/device/{d}/telemetry/{m}", d % sites))
                    .expect("valid topic")
            })
        })
        .collect()
}
