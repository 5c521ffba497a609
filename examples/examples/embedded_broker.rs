//! Embed the broker in a program: bind it on a free port, talk to it over
//! TCP with `mqtt-codec` packets (CONNECT, SUBSCRIBE, then a PUBLISH the
//! client receives back through its own subscription), then shut it down.
//!
//! Run with `cargo run -p examples --example embedded_broker`.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, Connect, DecodeLimits, Disconnect, MqttString, Packet, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};
use mqtt_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

type Error = Box<dyn std::error::Error + Send + Sync>;

const VERSION: ProtocolVersion = ProtocolVersion::V5;
/// How long any one step may take before the example gives up.
const STEP: Duration = Duration::from_secs(5);

/// A client connection: a socket and the bytes read but not yet decoded.
struct Client {
    stream: TcpStream,
    input: BytesMut,
    limits: DecodeLimits,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream = timeout(STEP, TcpStream::connect(addr)).await??;
        Ok(Self {
            stream,
            input: BytesMut::with_capacity(4096),
            limits: DecodeLimits::default(),
        })
    }

    async fn send(&mut self, packet: Packet) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(packet.encoded_len(VERSION));
        packet.encode(VERSION, &mut buf)?;
        timeout(STEP, self.stream.write_all(&buf)).await??;
        Ok(())
    }

    /// The next packet from the broker, or an error after [`STEP`].
    async fn recv(&mut self) -> Result<Packet, Error> {
        loop {
            if let Some(packet) = Packet::decode(&mut self.input, VERSION, &self.limits)? {
                return Ok(packet);
            }
            let n = timeout(STEP, self.stream.read_buf(&mut self.input))
                .await
                .map_err(|_| "timed out waiting for a packet from the broker")??;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
        }
    }
}

async fn talk_to(addr: SocketAddr) -> Result<(), Error> {
    let mut client = Client::connect(addr).await?;

    let connect = Connect::new(VERSION, MqttString::try_from("embedded-example")?);
    client.send(Packet::Connect(Box::new(connect))).await?;
    match client.recv().await? {
        Packet::ConnAck(ack) if ack.reason_code == ReasonCode::Success => {
            println!(
                "CONNACK: accepted (session present: {})",
                ack.session_present
            );
        }
        other => return Err(format!("expected a successful CONNACK, got {other:?}").into()),
    }

    let subscribe = Subscribe {
        packet_id: NonZeroU16::new(1).ok_or("zero packet id")?,
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: MqttString::try_from("example/#")?,
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
    };
    client.send(Packet::Subscribe(subscribe)).await?;
    match client.recv().await? {
        Packet::SubAck(ack) => println!("SUBACK: {:?}", ack.reason_codes),
        other => return Err(format!("expected SUBACK, got {other:?}").into()),
    }

    let mut publish = Publish::new(
        MqttString::try_from("example/greeting")?,
        Bytes::from_static(b"hello from an embedded broker"),
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = NonZeroU16::new(2);
    client.send(Packet::Publish(publish)).await?;

    // The PUBACK for our PUBLISH and the PUBLISH routed back to us may come
    // in either order.
    let (mut acked, mut received) = (false, false);
    while !(acked && received) {
        match client.recv().await? {
            Packet::PubAck(ack) => {
                println!("PUBACK for packet {}: {}", ack.packet_id, ack.reason_code);
                acked = true;
            }
            Packet::Publish(p) => {
                println!(
                    "received PUBLISH on {:?} at {:?}: {:?}",
                    p.topic.as_str(),
                    p.qos,
                    String::from_utf8_lossy(&p.payload),
                );
                if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
                    client.send(Packet::PubAck(Ack::new(id))).await?;
                }
                received = true;
            }
            other => return Err(format!("unexpected {:?}", other.packet_type()).into()),
        }
    }

    client
        .send(Packet::from(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server = Server::bind(Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..Default::default()
    })
    .await?;
    let addr = *server.local_addrs().first().ok_or("no listener bound")?;
    println!("broker listening on {addr}");
    let shutdown = server.shutdown_handle();
    let broker = tokio::spawn(server.run());

    let outcome = talk_to(addr).await;

    shutdown.shutdown();
    // Shutdown waits for connections to close, within a grace period.
    match timeout(Duration::from_secs(10), broker).await {
        Ok(joined) => joined??,
        Err(_) => return Err("the broker did not stop within 10 s".into()),
    }
    println!("broker stopped");
    outcome
}
