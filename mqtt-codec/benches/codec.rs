//! Decoding and encoding throughput of PUBLISH and CONNECT, against
//! `mqttbytes` 0.6 on the same bytes in the same run.
//!
//! ```text
//! cargo bench -p mqtt-codec --bench codec
//! ```
//!
//! Every case is one wire image, made by this crate's encoder and checked at
//! start-up to decode to the same packet with both crates, so both decoders
//! read identical bytes. Criterion reports bytes/s; the packet size and the
//! packets per iteration are printed before the runs, so packets/s is
//! bytes/s divided by the packet size.
//!
//! - `decode/*`: one iteration decodes every packet of a fresh ~64 KiB
//!   buffer of back-to-back copies of the packet, as a connection's read
//!   buffer holds them. The copy is made outside the timed section; dropping
//!   the decoded packets is inside it, as in a real reader.
//! - `encode/*`: one iteration encodes the packet into a reused `BytesMut`
//!   that already has the capacity, cleared first.
//!
//! What the two decoders check differs: `mqttbytes` validates UTF-8 (by
//! copying each string into a `String`) but not U+0000, wildcards in topic
//! names, non-minimal variable byte integers, duplicate properties or trailing
//! bytes, all of which this crate refuses.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group};
use mqtt_codec::{
    Connect, DecodeLimits, MqttString, Packet, PayloadFormat, ProtocolVersion, Publish, QoS,
    SubscriptionId, UserProperty, Will,
};
use mqttbytes::{v4, v5};

/// Size of the read buffer one decode iteration drains: a typical socket
/// read buffer, small enough to stay in cache for both crates alike.
const READ_BUFFER: usize = 64 * 1024;

/// Buffers cloned ahead per timed batch: enough to make the two timer reads
/// per batch negligible, few enough to keep the batch in cache.
const BATCH: u64 = 8;

const TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";
const PACKET_ID: u16 = 4242;
const CONTENT_TYPE: &str = "application/json";
const USER_KEY: &str = "trace-id";
const USER_VALUE: &str = "4bf92f3577b34da6";
const SUBSCRIPTION_ID: u32 = 17;
const EXPIRY: u32 = 3600;

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A QoS 1 PUBLISH, with a full set of properties under 5.0.
fn publish_ours(version: ProtocolVersion, payload: &Bytes) -> Packet {
    let mut p = Publish::new(MqttString::from_static(TOPIC), payload.clone());
    p.qos = QoS::AtLeastOnce;
    p.packet_id = NonZeroU16::new(PACKET_ID);
    if version.is_v5() {
        p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
        p.properties.message_expiry_interval = Some(EXPIRY);
        p.properties.extras_mut().content_type = Some(MqttString::from_static(CONTENT_TYPE));
        p.properties
            .subscription_identifiers
            .extend(SubscriptionId::new(SUBSCRIPTION_ID));
        p.properties
            .extras_mut()
            .user_properties
            .push(UserProperty::new(
                MqttString::from_static(USER_KEY),
                MqttString::from_static(USER_VALUE),
            ));
    }
    Packet::Publish(p)
}

fn publish_v4(payload: &Bytes) -> v4::Publish {
    let mut p = v4::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload.clone());
    p.pkid = PACKET_ID;
    p
}

fn publish_v5(payload: &Bytes) -> v5::Publish {
    let mut p = v5::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload.clone());
    p.pkid = PACKET_ID;
    p.properties = Some(v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(EXPIRY),
        topic_alias: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![(USER_KEY.into(), USER_VALUE.into())],
        subscription_identifiers: vec![SUBSCRIPTION_ID as usize],
        content_type: Some(CONTENT_TYPE.into()),
    });
    p
}

const CLIENT_ID: &str = "sensor-0042-7f3a9c";
const KEEP_ALIVE: u16 = 60;
const WILL_TOPIC: &str = "clients/sensor-0042/status";
const WILL_PAYLOAD: &[u8] = b"offline";
const USERNAME: &str = "sensor-0042";
const PASSWORD: &str = "s3cr3t-t0k3n-abcdef";

/// A typical device CONNECT: client id, keep alive, credentials and a
/// retained QoS 1 will; under 5.0 a session expiry, receive maximum,
/// maximum packet size and a will delay.
fn connect_ours(version: ProtocolVersion) -> Packet {
    let mut c = Connect::new(version, MqttString::from_static(CLIENT_ID));
    c.keep_alive = KEEP_ALIVE;
    c.username = Some(MqttString::from_static(USERNAME));
    c.password = Some(Bytes::from_static(PASSWORD.as_bytes()));
    let mut will = Will {
        topic: MqttString::from_static(WILL_TOPIC),
        payload: Bytes::from_static(WILL_PAYLOAD),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(EXPIRY);
        c.properties.receive_maximum = NonZeroU16::new(32);
        c.properties.maximum_packet_size = NonZeroU32::new(256 * 1024);
        will.properties.will_delay_interval = Some(30);
        will.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    }
    c.will = Some(will);
    Packet::Connect(Box::new(c))
}

fn connect_v4() -> v4::Connect {
    let mut c = v4::Connect::new(CLIENT_ID);
    c.keep_alive = KEEP_ALIVE;
    c.set_login(USERNAME, PASSWORD);
    c.last_will = Some(v4::LastWill::new(
        WILL_TOPIC,
        WILL_PAYLOAD,
        mqttbytes::QoS::AtLeastOnce,
        true,
    ));
    c
}

fn connect_v5() -> v5::Connect {
    let mut c = v5::Connect::new(CLIENT_ID);
    c.keep_alive = KEEP_ALIVE;
    c.set_login(USERNAME, PASSWORD);
    c.properties = Some(v5::ConnectProperties {
        session_expiry_interval: Some(EXPIRY),
        receive_maximum: Some(32),
        max_packet_size: Some(256 * 1024),
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: Default::default(),
        authentication_method: None,
        authentication_data: None,
    });
    let mut will = v5::LastWill::new(WILL_TOPIC, WILL_PAYLOAD, mqttbytes::QoS::AtLeastOnce, true);
    will.properties = Some(v5::WillProperties {
        delay_interval: Some(30),
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Default::default(),
    });
    c.last_will = Some(will);
    c
}

/// One benchmark case: a packet as both crates model it, and its wire image.
struct Case<T> {
    name: String,
    version: ProtocolVersion,
    ours: Packet,
    theirs: T,
    wire: Bytes,
}

impl<T: PartialEq + std::fmt::Debug> Case<T> {
    /// Encodes `ours` and checks that both crates agree on the bytes: each
    /// decodes them to its own model of the packet, and each encoding has
    /// the same length (property order may differ).
    fn new(
        name: String,
        version: ProtocolVersion,
        ours: Packet,
        theirs: T,
        their_decode: impl Fn(&mut BytesMut) -> T,
        their_encode: impl Fn(&T, &mut BytesMut),
    ) -> Self {
        let mut wire = BytesMut::new();
        ours.encode(version, &mut wire).expect("sample encodes");
        let limits = DecodeLimits::default();
        let decoded = Packet::decode(&mut wire.clone(), version, &limits).expect("sample decodes");
        assert_eq!(decoded.as_ref(), Some(&ours), "{name}: our round trip");
        assert_eq!(
            their_decode(&mut wire.clone()),
            theirs,
            "{name}: mqttbytes reads our bytes"
        );
        let mut their_wire = BytesMut::new();
        their_encode(&theirs, &mut their_wire);
        assert_eq!(
            their_wire.len(),
            wire.len(),
            "{name}: encodings differ in length"
        );
        let decoded =
            Packet::decode(&mut their_wire, version, &limits).expect("mqttbytes' bytes decode");
        assert_eq!(
            decoded.as_ref(),
            Some(&ours),
            "{name}: we read mqttbytes' bytes"
        );
        let copies = (READ_BUFFER / wire.len()).max(1);
        println!(
            "{name}: {} B per packet, {copies} packets per decode iteration",
            wire.len()
        );
        Self {
            name,
            version,
            ours,
            theirs,
            wire: wire.freeze(),
        }
    }

    /// The read buffer a decode iteration drains: back-to-back copies.
    fn read_buffer(&self) -> (BytesMut, u64) {
        let copies = (READ_BUFFER / self.wire.len()).max(1);
        let mut buf = BytesMut::with_capacity(copies * self.wire.len());
        for _ in 0..copies {
            buf.extend_from_slice(&self.wire);
        }
        (buf, copies as u64)
    }

    fn bench_decode<R>(
        &self,
        g: &mut BenchmarkGroup<'_, WallTime>,
        their_decode: impl Fn(&mut BytesMut) -> R,
    ) {
        let (input, copies) = self.read_buffer();
        g.throughput(Throughput::Bytes(input.len() as u64));
        let limits = DecodeLimits::default();
        let version = self.version;
        g.bench_function(format!("{}/ours", self.name), |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut n = 0;
                    // By reference: moving the packet out would time the
                    // harness's copies, not the decoder.
                    while let Some(p) = &Packet::decode(&mut buf, version, &limits).expect("valid")
                    {
                        black_box(p);
                        n += 1;
                    }
                    assert_eq!(n, copies);
                },
                BatchSize::NumIterations(BATCH),
            )
        });
        g.bench_function(format!("{}/mqttbytes", self.name), |b| {
            b.iter_batched(
                || input.clone(),
                |mut buf| {
                    let mut n = 0;
                    while !buf.is_empty() {
                        black_box(&their_decode(&mut buf));
                        n += 1;
                    }
                    assert_eq!(n, copies);
                },
                BatchSize::NumIterations(BATCH),
            )
        });
    }

    fn bench_encode(
        &self,
        g: &mut BenchmarkGroup<'_, WallTime>,
        their_encode: impl Fn(&T, &mut BytesMut),
    ) {
        g.throughput(Throughput::Bytes(self.wire.len() as u64));
        let mut buf = BytesMut::with_capacity(self.wire.len());
        g.bench_function(format!("{}/ours", self.name), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&self.ours)
                    .encode(self.version, &mut buf)
                    .expect("valid");
                black_box(&buf);
            })
        });
        g.bench_function(format!("{}/mqttbytes", self.name), |b| {
            b.iter(|| {
                buf.clear();
                their_encode(black_box(&self.theirs), &mut buf);
                black_box(&buf);
            })
        });
    }
}

fn read_v4_publish(buf: &mut BytesMut) -> v4::Publish {
    match v4::read(buf, READ_BUFFER).expect("valid") {
        v4::Packet::Publish(p) => p,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

fn read_v5_publish(buf: &mut BytesMut) -> v5::Publish {
    match v5::read(buf, READ_BUFFER).expect("valid") {
        v5::Packet::Publish(p) => p,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

fn read_v4_connect(buf: &mut BytesMut) -> v4::Connect {
    match v4::read(buf, READ_BUFFER).expect("valid") {
        v4::Packet::Connect(c) => c,
        other => panic!("not a CONNECT: {other:?}"),
    }
}

fn read_v5_connect(buf: &mut BytesMut) -> v5::Connect {
    match v5::read(buf, READ_BUFFER).expect("valid") {
        v5::Packet::Connect(c) => c,
        other => panic!("not a CONNECT: {other:?}"),
    }
}

fn write_v4_publish(p: &v4::Publish, buf: &mut BytesMut) {
    p.write(buf).expect("valid");
}

fn write_v5_publish(p: &v5::Publish, buf: &mut BytesMut) {
    p.write(buf).expect("valid");
}

fn write_v4_connect(c: &v4::Connect, buf: &mut BytesMut) {
    c.write(buf).expect("valid");
}

fn write_v5_connect(c: &v5::Connect, buf: &mut BytesMut) {
    c.write(buf).expect("valid");
}

/// Short runs: the whole file takes about two minutes.
fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

fn publish_cases() -> (Vec<Case<v4::Publish>>, Vec<Case<v5::Publish>>) {
    let mut v4_cases = Vec::new();
    let mut v5_cases = Vec::new();
    for (label, len) in [("64B", 64), ("4KiB", 4096)] {
        let payload = payload(len);
        v4_cases.push(Case::new(
            format!("v3.1.1-qos1-{label}"),
            ProtocolVersion::V3_1_1,
            publish_ours(ProtocolVersion::V3_1_1, &payload),
            publish_v4(&payload),
            read_v4_publish,
            write_v4_publish,
        ));
        v5_cases.push(Case::new(
            format!("v5-qos1-props-{label}"),
            ProtocolVersion::V5,
            publish_ours(ProtocolVersion::V5, &payload),
            publish_v5(&payload),
            read_v5_publish,
            write_v5_publish,
        ));
    }
    (v4_cases, v5_cases)
}

fn publish(c: &mut Criterion) {
    let (v4_cases, v5_cases) = publish_cases();

    let mut g = c.benchmark_group("decode/publish");
    configure(&mut g);
    for case in &v4_cases {
        case.bench_decode(&mut g, read_v4_publish);
    }
    for case in &v5_cases {
        case.bench_decode(&mut g, read_v5_publish);
    }
    g.finish();

    let mut g = c.benchmark_group("encode/publish");
    configure(&mut g);
    for case in &v4_cases {
        case.bench_encode(&mut g, write_v4_publish);
    }
    for case in &v5_cases {
        case.bench_encode(&mut g, write_v5_publish);
    }
    g.finish();
}

fn connect(c: &mut Criterion) {
    let v4_case = Case::new(
        "v3.1.1".to_owned(),
        ProtocolVersion::V3_1_1,
        connect_ours(ProtocolVersion::V3_1_1),
        connect_v4(),
        read_v4_connect,
        write_v4_connect,
    );
    let v5_case = Case::new(
        "v5".to_owned(),
        ProtocolVersion::V5,
        connect_ours(ProtocolVersion::V5),
        connect_v5(),
        read_v5_connect,
        write_v5_connect,
    );

    let mut g = c.benchmark_group("decode/connect");
    configure(&mut g);
    v4_case.bench_decode(&mut g, read_v4_connect);
    v5_case.bench_decode(&mut g, read_v5_connect);
    g.finish();

    let mut g = c.benchmark_group("encode/connect");
    configure(&mut g);
    v4_case.bench_encode(&mut g, write_v4_connect);
    v5_case.bench_encode(&mut g, write_v5_connect);
    g.finish();
}

criterion_group!(benches, publish, connect);

/// With `CODEC_INSTRUCTIONS=<case name>` the binary runs that PUBLISH case
/// a fixed number of times through four functions that do nothing else
/// (`instr_decode_ours`, `instr_decode_theirs`, `instr_encode_ours`,
/// `instr_encode_theirs`), for `valgrind --tool=callgrind
/// --toggle-collect=<function>` to count their instructions: a measure that
/// the other programs on a shared machine do not move (see
/// `benches/instructions.sh`). With `CODEC_AB=<rounds>` it times the same
/// four functions in alternation, ours then mqttbytes', for every PUBLISH
/// case, and keeps each one's fastest round: interference only ever adds
/// time, so the minimum is the least disturbed figure, and alternating
/// gives both crates the same machine. Otherwise it is the criterion
/// benchmark.
fn main() {
    if let Ok(name) = std::env::var("CODEC_INSTRUCTIONS") {
        instructions::run(instructions::Mode::Count(&name));
    } else if let Ok(rounds) = std::env::var("CODEC_AB") {
        let rounds = rounds.parse().expect("CODEC_AB: a number of rounds");
        instructions::run(instructions::Mode::Time(rounds));
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}

mod instructions {
    use std::time::Instant;

    use super::*;

    /// Read buffers decoded per function, and packets encoded.
    const DECODE_BUFFERS: usize = 20;
    const ENCODES: usize = 10_000;

    pub(super) enum Mode<'a> {
        /// Run the named case once, for callgrind.
        Count(&'a str),
        /// Time every case, this many rounds.
        Time(usize),
    }

    pub(super) fn run(mode: Mode<'_>) {
        let (v4_cases, v5_cases) = publish_cases();
        match mode {
            Mode::Count(name) => {
                if let Some(case) = v4_cases.iter().find(|c| c.name == name) {
                    count(case, read_v4_publish, write_v4_publish);
                } else if let Some(case) = v5_cases.iter().find(|c| c.name == name) {
                    count(case, read_v5_publish, write_v5_publish);
                } else {
                    panic!("no PUBLISH case named {name}");
                }
            }
            Mode::Time(rounds) => {
                println!(
                    "{:<22} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
                    "ns per packet",
                    "decode ours",
                    "mqttbytes",
                    "ratio",
                    "encode ours",
                    "mqttbytes",
                    "ratio"
                );
                for case in &v4_cases {
                    time(case, rounds, read_v4_publish, write_v4_publish);
                }
                for case in &v5_cases {
                    time(case, rounds, read_v5_publish, write_v5_publish);
                }
            }
        }
    }

    /// What one round of each function works on.
    fn buffers<T: PartialEq + std::fmt::Debug>(case: &Case<T>) -> (Vec<BytesMut>, usize) {
        let (input, copies) = case.read_buffer();
        let buffers = (0..DECODE_BUFFERS).map(|_| input.clone()).collect();
        (buffers, copies as usize * DECODE_BUFFERS)
    }

    fn count<T: PartialEq + std::fmt::Debug, R>(
        case: &Case<T>,
        their_decode: impl Fn(&mut BytesMut) -> R,
        their_encode: impl Fn(&T, &mut BytesMut),
    ) {
        let (bufs, packets) = buffers(case);
        assert_eq!(instr_decode_ours(bufs, case.version), packets);
        let (bufs, _) = buffers(case);
        assert_eq!(instr_decode_theirs(bufs, &their_decode), packets);
        let mut buf = BytesMut::with_capacity(case.wire.len());
        instr_encode_ours(&case.ours, case.version, &mut buf);
        instr_encode_theirs(&case.theirs, &their_encode, &mut buf);
        println!(
            "{}: {packets} packets decoded, {ENCODES} encoded by each",
            case.name
        );
    }

    fn time<T: PartialEq + std::fmt::Debug, R>(
        case: &Case<T>,
        rounds: usize,
        their_decode: impl Fn(&mut BytesMut) -> R,
        their_encode: impl Fn(&T, &mut BytesMut),
    ) {
        // Fastest round of: decode ours, decode theirs, encode ours, encode theirs.
        let mut best = [f64::MAX; 4];
        let mut buf = BytesMut::with_capacity(case.wire.len());
        let mut packets = 0;
        for _ in 0..rounds {
            let (bufs, n) = buffers(case);
            packets = n;
            let t = Instant::now();
            assert_eq!(instr_decode_ours(bufs, case.version), n);
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let (bufs, _) = buffers(case);
            let t = Instant::now();
            assert_eq!(instr_decode_theirs(bufs, &their_decode), n);
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            instr_encode_ours(&case.ours, case.version, &mut buf);
            best[2] = best[2].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            instr_encode_theirs(&case.theirs, &their_encode, &mut buf);
            best[3] = best[3].min(t.elapsed().as_secs_f64());
        }
        let per = |secs: f64, n: usize| secs * 1e9 / n as f64;
        let (d0, d1) = (per(best[0], packets), per(best[1], packets));
        let (e0, e1) = (per(best[2], ENCODES), per(best[3], ENCODES));
        println!(
            "{:<22} {d0:>12.1} {d1:>12.1} {:>6.2}x {e0:>12.1} {e1:>12.1} {:>6.2}x",
            case.name,
            d1 / d0,
            e1 / e0
        );
    }

    #[inline(never)]
    fn instr_decode_ours(buffers: Vec<BytesMut>, version: ProtocolVersion) -> usize {
        let limits = DecodeLimits::default();
        let mut n = 0;
        for mut buf in buffers {
            while let Some(p) = &Packet::decode(&mut buf, version, &limits).expect("valid") {
                black_box(p);
                n += 1;
            }
        }
        n
    }

    #[inline(never)]
    fn instr_decode_theirs<R>(
        buffers: Vec<BytesMut>,
        decode: impl Fn(&mut BytesMut) -> R,
    ) -> usize {
        let mut n = 0;
        for mut buf in buffers {
            while !buf.is_empty() {
                black_box(&decode(&mut buf));
                n += 1;
            }
        }
        n
    }

    #[inline(never)]
    fn instr_encode_ours(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) {
        for _ in 0..ENCODES {
            buf.clear();
            black_box(packet).encode(version, buf).expect("valid");
            black_box(&buf);
        }
    }

    #[inline(never)]
    fn instr_encode_theirs<T>(packet: &T, encode: impl Fn(&T, &mut BytesMut), buf: &mut BytesMut) {
        for _ in 0..ENCODES {
            buf.clear();
            encode(black_box(packet), buf);
            black_box(&buf);
        }
    }
}
