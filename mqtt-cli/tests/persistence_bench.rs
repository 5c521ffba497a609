//! Benchmarks of persistence at broker level, against the real `mqtt
//! broker` binary: not run by `cargo test` (ignored). Run with
//!
//! ```text
//! cargo test --release -p mqtt-cli --test persistence_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - QoS 1 to a persistent session (expiry 3600): 4 publishers, 64 in
//!   flight each, one subscriber that acknowledges, for 5 s; delivered
//!   messages per second with the memory store and with `--data-dir`.
//! - A backlog of 300,000 QoS 1 messages queued for 1,000 offline
//!   persistent sessions: the publish rate, then the broker is killed
//!   (SIGKILL) and restarted; the recovery time, and the time to drain one
//!   session's 300 messages.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_testkit::{RawClient, Received, packets};

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");

struct Broker {
    child: Child,
    addr: SocketAddr,
}

impl Broker {
    fn start(dir: Option<&Path>, port: u16, log: &Path) -> Broker {
        let port = if port == 0 {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = log.with_extension("toml");
        std::fs::write(
            &config,
            "max_queued_messages = 100000\nmax_queued_bytes = 1073741824\nsys_interval = 0\n",
        )
        .unwrap();
        let mut cmd = Command::new(MQTT);
        cmd.args(["broker", "--log-level", "info", "--config"])
            .arg(&config)
            .arg("--listen")
            .arg(addr.to_string());
        if let Some(dir) = dir {
            cmd.arg("--data-dir").arg(dir);
        }
        let child = cmd
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(2));
        }
        Broker { child, addr }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn persistent(id: &str, clean_start: bool) -> Connect {
    let mut c = packets::connect(ProtocolVersion::V5, id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Publishes QoS 1 to `topic(n)` with `window` in flight until `stop` (or
/// `count` messages); counts acknowledgements in `acked`.
async fn publisher(
    addr: SocketAddr,
    id: String,
    window: u16,
    count: u64,
    topic: impl Fn(u64) -> String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let (mut raw, _) = RawClient::connect(addr, packets::connect(ProtocolVersion::V5, &id)).await;
    let payload = [7u8; 64];
    let mut free: Vec<u16> = (1..=window).rev().collect();
    let (mut sent, mut done) = (0u64, 0u64);
    while done < count {
        while sent < count
            && !stop.load(Ordering::Relaxed)
            && let Some(pid) = free.pop()
        {
            let p = packets::publish(&topic(sent), &payload, QoS::AtLeastOnce, pid);
            raw.send(&Packet::Publish(p)).await.unwrap();
            sent += 1;
        }
        if done == sent {
            return;
        }
        match raw.next(Duration::from_secs(30)).await {
            Received::Packet(Packet::PubAck(a)) => {
                assert!(!a.reason_code.is_error(), "{a:?}");
                free.push(a.packet_id.get());
                done += 1;
                acked.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("{id}: PUBACK expected, got {other:?}"),
        }
    }
}

async fn qos1_throughput(dir: Option<&Path>, log: &Path) -> f64 {
    let broker = Broker::start(dir, 0, log);
    let (mut sub, _) = RawClient::connect(broker.addr, persistent("tp-sub", true)).await;
    sub.send(&Packet::Subscribe(packets::subscribe(
        1,
        &[("tp/#", QoS::AtLeastOnce)],
    )))
    .await
    .unwrap();
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..4 {
        tasks.push(tokio::spawn(publisher(
            broker.addr,
            format!("tp-pub{p}"),
            64,
            u64::MAX,
            move |_| format!("tp/{p}"),
            stop.clone(),
            acked.clone(),
        )));
    }
    let run = Duration::from_secs(5);
    let started = Instant::now();
    let mut delivered = 0u64;
    while started.elapsed() < run {
        match sub.next(Duration::from_secs(5)).await {
            Received::Packet(Packet::Publish(p)) => {
                delivered += 1;
                sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                    .await
                    .unwrap();
            }
            other => panic!("subscriber: {other:?}"),
        }
    }
    let rate = delivered as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acks = acked.load(Ordering::Relaxed);
    eprintln!(
        "QoS 1 to a persistent session, {}: {rate:.0} delivered/s ({acks} acknowledged in total)",
        if dir.is_some() {
            "durable store (--data-dir)"
        } else {
            "memory store"
        }
    );
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn persistent_session_qos1_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    qos1_throughput(None, &tmp.path().join("memory.log")).await;
    qos1_throughput(
        Some(&tmp.path().join("data")),
        &tmp.path().join("durable.log"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn offline_backlog_of_300k_messages_in_1000_sessions() {
    const SESSIONS: u64 = 1000;
    const PER_SESSION: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("broker.log");
    let broker = Broker::start(Some(&dir), 0, &log);
    let port = broker.addr.port();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in 0..10 {
        let addr = broker.addr;
        tasks.push(tokio::spawn(async move {
            for i in (part..SESSIONS).step_by(10) {
                let (mut raw, _) =
                    RawClient::connect(addr, persistent(&format!("bl-{i}"), true)).await;
                let filter = format!("bl/{i}");
                raw.send(&Packet::Subscribe(packets::subscribe(
                    1,
                    &[(&filter, QoS::AtLeastOnce)],
                )))
                .await
                .unwrap();
                assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
                raw.send(&Packet::from(Disconnect::new(ReasonCode::Success)))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "{SESSIONS} persistent sessions created in {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let publishers = 4;
    for p in 0..publishers {
        tasks.push(tokio::spawn(publisher(
            broker.addr,
            format!("bl-pub{p}"),
            64,
            SESSIONS * PER_SESSION / publishers,
            move |n| format!("bl/{}", (n * publishers + p) % SESSIONS),
            stop.clone(),
            acked.clone(),
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    let total = acked.load(Ordering::Relaxed);
    eprintln!(
        "backlog: {total} QoS 1 messages stored for offline sessions in {took:?} ({:.0}/s)",
        total as f64 / took.as_secs_f64()
    );

    drop(broker); // SIGKILL
    let restarted = Instant::now();
    let log2 = tmp.path().join("broker2.log");
    let broker = Broker::start(Some(&dir), port, &log2);
    let listening = restarted.elapsed();
    let text = std::fs::read_to_string(&log2).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("persistent state restored"))
        .unwrap_or(&text);
    eprintln!("restart after SIGKILL: listening after {listening:?}; log: {line}");

    let started = Instant::now();
    let (mut raw, ack) = RawClient::connect(broker.addr, persistent("bl-0", false)).await;
    assert!(ack.session_present);
    for _ in 0..PER_SESSION {
        match raw.next(Duration::from_secs(10)).await {
            Received::Packet(Packet::Publish(p)) => raw
                .send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                .await
                .unwrap(),
            other => panic!("backlog: {other:?}"),
        }
    }
    eprintln!(
        "one session's {PER_SESSION} messages drained in {:?}",
        started.elapsed()
    );
}
