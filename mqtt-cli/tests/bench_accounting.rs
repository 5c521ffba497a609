//! `mqtt bench` counts each message: losses, duplicates and reordering per
//! message, QoS 1/2 messages never acknowledged as failures, and latency
//! from the scheduled send time in rate mode.
//!
//! Faults are injected by a fake broker written here (just enough MQTT to
//! serve one publisher and one subscriber), and QoS 0 losses come from the
//! real broker with a queue too small for a burst. Each run is the built
//! `mqtt` binary, its report read from `--json`.

use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_codec::{
    Ack, AckProperties, ConnAck, DecodeLimits, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");

/// The longest a bench run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a bench run ended.
struct Run {
    code: Option<i32>,
    report: serde_json::Value,
    stderr: String,
}

impl Run {
    fn u64(&self, field: &str) -> u64 {
        self.report[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {}", self.report))
    }
}

/// `mqtt bench ARGS... -h 127.0.0.1 -p PORT --json`, waited for at most
/// [`RUN_TIMEOUT`].
fn bench(port: u16, args: &[&str]) -> Run {
    let mut child = Guard(
        Command::new(MQTT)
            .arg("bench")
            .args(args)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mqtt bench"),
    );
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let stdout = reader(child.0.stdout.take().map(|p| Box::new(p) as _));
    let stderr = reader(child.0.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll mqtt bench") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mqtt bench {args:?} still running after {RUN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout:?}\nstderr: {stderr}"));
    Run {
        code: status.code(),
        report,
        stderr,
    }
}

/// What the fake broker does wrong, by the index of the PUBLISH it
/// receives (from 0; with one publisher, the message's sequence number).
#[derive(Default)]
struct Faults {
    /// Acknowledged, never forwarded.
    drop: Vec<usize>,
    /// Forwarded twice.
    twice: Vec<usize>,
    /// Forwarded after the next one.
    swap: Vec<usize>,
    /// From this index on, neither acknowledged nor forwarded.
    silent_from: Option<usize>,
    /// The PUBACK of this index is sent that much later.
    late_ack: Option<(usize, Duration)>,
}

/// The fake broker's shared state: where PUBLISH packets go.
struct Router {
    faults: Faults,
    subscriber: Option<mpsc::UnboundedSender<Packet>>,
    received: usize,
    held: Option<Publish>,
    next_id: u16,
}

impl Router {
    /// Sends `p` to the subscriber at QoS 1 (its acknowledgement is
    /// ignored), with a packet identifier of its own.
    fn forward(&mut self, mut p: Publish) {
        self.next_id = self.next_id % u16::MAX + 1;
        p.qos = QoS::AtLeastOnce;
        p.dup = false;
        p.packet_id = std::num::NonZeroU16::new(self.next_id);
        if let Some(s) = &self.subscriber {
            let _ = s.send(Packet::Publish(p));
        }
    }

    /// Handles the `received`-th PUBLISH; whether to acknowledge it, and
    /// after how long.
    fn publish(&mut self, p: Publish) -> Option<Duration> {
        let k = self.received;
        self.received += 1;
        if self.faults.silent_from.is_some_and(|n| k >= n) {
            return None;
        }
        if self.faults.drop.contains(&k) {
            // Acknowledged and lost.
        } else if self.faults.swap.contains(&k) {
            self.held = Some(p);
        } else {
            if self.faults.twice.contains(&k) {
                self.forward(p.clone());
            }
            self.forward(p);
            if let Some(h) = self.held.take() {
                self.forward(h);
            }
        }
        Some(match self.faults.late_ack {
            Some((i, d)) if i == k => d,
            _ => Duration::ZERO,
        })
    }
}

/// A fake broker on 127.0.0.1: CONNECT, SUBSCRIBE, PUBLISH QoS 0/1 and
/// PINGREQ, with `faults`. It runs until the runtime is dropped.
fn fake_broker(rt: &tokio::runtime::Runtime, faults: Faults) -> u16 {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the fake broker");
    let port = listener.local_addr().expect("local address").port();
    let router = Arc::new(Mutex::new(Router {
        faults,
        subscriber: None,
        received: 0,
        held: None,
        next_id: 0,
    }));
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, router.clone()));
        }
    });
    port
}

/// The next packet on `stream`; `None` once it closed or sent garbage.
async fn read_packet(
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    version: ProtocolVersion,
) -> Option<Packet> {
    loop {
        if let Some(p) = Packet::decode(buf, version, &DecodeLimits::UNLIMITED).ok()? {
            return Some(p);
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// One client connection of the fake broker.
async fn serve(stream: TcpStream, router: Arc<Mutex<Router>>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::new();
    let Some(Packet::Connect(connect)) = read_packet(&mut rd, &mut buf, ProtocolVersion::V5).await
    else {
        return;
    };
    let version = connect.protocol;
    let (tx, mut rx) = mpsc::unbounded_channel::<Packet>();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let mut out = BytesMut::new();
            p.encode(version, &mut out).expect("encode");
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(Packet::from(ConnAck::new(ReasonCode::Success, false)));
    while let Some(packet) = read_packet(&mut rd, &mut buf, version).await {
        match packet {
            Packet::Subscribe(s) => {
                let reason_codes = s
                    .subscriptions
                    .iter()
                    .map(|s| match s.options.qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        _ => ReasonCode::GrantedQoS1,
                    })
                    .collect();
                // Registered before the SUBACK: the bench starts its
                // publishers once it has it.
                router.lock().expect("router").subscriber = Some(tx.clone());
                let _ = tx.send(Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    properties: AckProperties::default(),
                    reason_codes,
                }));
            }
            Packet::Publish(p) => {
                let id = p.packet_id;
                let ack = router.lock().expect("router").publish(p);
                if let (Some(id), Some(after)) = (id, ack) {
                    let ack = Packet::PubAck(Ack::new(id));
                    if after.is_zero() {
                        let _ = tx.send(ack);
                    } else {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send(ack);
                        });
                    }
                }
            }
            Packet::PingReq => {
                let _ = tx.send(Packet::PingResp);
            }
            Packet::Disconnect(_) => break,
            _ => {}
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One message lost, one duplicated, two swapped: 10 sent, 10 received.
/// The difference of totals saw 0 losses and 0 duplicates (the duplicate
/// hid the loss); each is now counted.
#[test]
fn a_loss_a_duplicate_and_a_reordering_are_each_counted() {
    let rt = runtime();
    let port = fake_broker(
        &rt,
        Faults {
            drop: vec![3],
            twice: vec![5],
            swap: vec![7],
            ..Faults::default()
        },
    );
    let run = bench(
        port,
        &[
            "pubsub", "-c", "1", "-S", "1", "-q", "1", "-n", "10", "--drain", "2",
        ],
    );
    let r = &run.report;
    assert_eq!(run.u64("sent"), 10, "{r}");
    assert_eq!(run.u64("acked"), 10, "{r}");
    assert_eq!(run.u64("received"), 10, "{r}");
    assert_eq!(run.u64("expected"), 10, "{r}");
    assert_eq!(run.u64("losses"), 1, "{r}");
    assert_eq!(run.u64("duplicates"), 1, "{r}");
    assert_eq!(run.u64("reordered"), 1, "{r}");
    assert_eq!(run.u64("foreign"), 0, "{r}");
    assert_eq!(run.u64("unacknowledged"), 0, "{r}");
    assert_eq!(r["per_message"], true, "{r}");
    // A QoS 1 message the broker acknowledged and lost fails the run.
    assert_eq!(run.code, Some(1), "{r}\n{}", run.stderr);
}

/// The broker stops acknowledging (and forwarding) after 5 of 20 QoS 1
/// messages: 15 unacknowledged, not losses, and the run fails. The
/// difference of totals saw 5 expected, 5 received, and exited 0.
#[test]
fn messages_never_acknowledged_fail_the_run() {
    let rt = runtime();
    let port = fake_broker(
        &rt,
        Faults {
            silent_from: Some(5),
            ..Faults::default()
        },
    );
    let run = bench(
        port,
        &[
            "pubsub", "-c", "1", "-S", "1", "-q", "1", "-n", "20", "--drain", "1",
        ],
    );
    let r = &run.report;
    assert_eq!(run.u64("sent"), 20, "{r}");
    assert_eq!(run.u64("acked"), 5, "{r}");
    assert_eq!(run.u64("unacknowledged"), 15, "{r}");
    assert_eq!(run.u64("expected"), 5, "{r}");
    assert_eq!(run.u64("received"), 5, "{r}");
    assert_eq!(run.u64("losses"), 0, "{r}");
    assert_eq!(run.code, Some(1), "{r}\n{}", run.stderr);
}

/// Rate mode, one message in flight: the broker holds one PUBACK for
/// 300 ms, so the publisher stalls and sends the messages due meanwhile
/// late. Their latency counts from when they were due: at least the
/// stall less one period (message 11 was due 110 ms in, and could leave
/// only after message 10's PUBACK, 300 ms after message 10 was due at
/// 100 ms). Measured from the actual send, it hid the stall.
#[test]
fn rate_mode_latency_counts_from_the_scheduled_time() {
    let rt = runtime();
    let stall = Duration::from_millis(300);
    let port = fake_broker(
        &rt,
        Faults {
            late_ack: Some((10, stall)),
            ..Faults::default()
        },
    );
    let run = bench(
        port,
        &[
            "pubsub",
            "-c",
            "1",
            "-S",
            "1",
            "-q",
            "1",
            "--inflight",
            "1",
            "-R",
            "100",
            "-n",
            "40",
            "--drain",
            "2",
        ],
    );
    let r = &run.report;
    assert_eq!(run.code, Some(0), "{r}\n{}", run.stderr);
    assert_eq!(run.u64("received"), 40, "{r}");
    assert_eq!(run.u64("losses"), 0, "{r}");
    let max = r["latency"]["max_us"].as_f64().expect("latency");
    assert!(max >= 250_000.0, "the stall is not in the latency: {r}");
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// The real broker (`mqtt broker`) on a free port with `config`, once it
/// accepts connections.
fn broker(config: &str) -> (Guard, u16) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("broker.toml");
    std::fs::write(
        &path,
        format!("listen = [\"127.0.0.1:{port}\"]\n{config}\n"),
    )
    .expect("write the config");
    let guard = Guard(
        Command::new(MQTT)
            .args(["broker", "--log-level", "error", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the broker"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while StdStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        assert!(Instant::now() < deadline, "the broker did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, port)
}

/// A QoS 0 burst from 4 publishers into queues of 10 messages that drop
/// at once when full: the broker drops messages, the bench counts each
/// one exactly once (received + losses = sent x subscribers), and QoS 0
/// losses do not fail the run.
#[test]
fn qos0_losses_at_a_full_queue_are_each_accounted_for() {
    let (_broker, port) =
        broker("max_queued_messages = 10\nmax_publish_wait_ms = 0\nsys_interval = 0");
    let run = bench(
        port,
        &[
            "pubsub", "-c", "4", "-S", "2", "-q", "0", "-n", "5000", "--drain", "1",
        ],
    );
    let r = &run.report;
    assert_eq!(run.code, Some(0), "{r}\n{}", run.stderr);
    let sent = run.u64("sent");
    assert_eq!(sent, 20_000, "{r}");
    assert_eq!(run.u64("expected"), sent * 2, "{r}");
    assert!(run.u64("losses") > 0, "no loss with a full queue: {r}");
    assert_eq!(run.u64("duplicates"), 0, "{r}");
    assert_eq!(run.u64("foreign"), 0, "{r}");
    assert_eq!(
        run.u64("received") + run.u64("losses"),
        sent * 2,
        "every delivery counted once: {r}"
    );
}
