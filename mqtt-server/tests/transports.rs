//! The broker's transports seen from real clients: MQTT over TLS and
//! mutual TLS, over WebSocket and secure WebSocket (rumqttc, and raw
//! tokio-rustls / tokio-tungstenite clients speaking packets from
//! `mqtt-codec` where rumqttc cannot show what is on the wire), and the
//! PROXY protocol. Certificates are made by rcgen at test time, in a
//! temporary directory: no key is ever committed.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::{DecodeLimits, Packet, ProtocolVersion, ReasonCode};
use mqtt_server::{Config, ListenerConfig, ListenerKind, Server};
use mqtt_testkit::{RawClient, TIMEOUT, TestBroker, packets, v5};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rumqttc::Transport;
use rumqttc::v5::mqttbytes::QoS;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

// ---- certificates -------------------------------------------------------

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mqtt-transports-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A test CA, a server certificate for `localhost` and 127.0.0.1 signed
/// by it, and the files a broker needs.
struct Pki {
    dir: TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
    certfile: PathBuf,
    keyfile: PathBuf,
    cafile: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mqtt test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let ca = Issuer::new(params, key);
        let dir = TempDir::new();
        let server = Self::issue(&ca, "localhost", &["localhost", "127.0.0.1"]);
        Pki {
            certfile: dir.write("server.crt", &server.cert),
            keyfile: dir.write("server.key", &server.key),
            cafile: dir.write("ca.crt", &ca_pem),
            dir,
            ca,
            ca_pem,
        }
    }

    fn issue(ca: &Issuer<'static, KeyPair>, cn: &str, names: &[&str]) -> Pem {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client certificate whose Common Name is `cn`.
    fn client(&self, cn: &str) -> Pem {
        Self::issue(&self.ca, cn, &[cn])
    }

    /// A listener of a TLS `kind` with the server certificate.
    fn listener(&self, kind: ListenerKind) -> ListenerConfig {
        ListenerConfig {
            certfile: Some(self.certfile.clone()),
            keyfile: Some(self.keyfile.clone()),
            ..ListenerConfig::new(kind, localhost())
        }
    }

    /// A TLS listener of `kind` that requires a client certificate.
    fn mutual(&self, kind: ListenerKind) -> ListenerConfig {
        ListenerConfig {
            cafile: Some(self.cafile.clone()),
            require_certificate: true,
            ..self.listener(kind)
        }
    }

    /// A tokio-rustls client trusting the CA, with `client` as its
    /// certificate if given.
    fn connector(&self, client: Option<&Pem>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(pem) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn tls_connect(
        &self,
        addr: SocketAddr,
        client: Option<&Pem>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        self.connector(client)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake")
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn with_listeners(listeners: Vec<ListenerConfig>) -> Config {
    let mut config = TestBroker::config();
    config.listeners = listeners;
    config
}

// ---- a raw MQTT peer over any stream -------------------------------------

/// Sends and receives packets over any byte stream (here, TLS).
struct StreamPeer<S> {
    stream: S,
    rbuf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamPeer<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
        }
    }

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        let mut buf = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut buf).unwrap();
        self.stream.write_all(&buf).await?;
        self.stream.flush().await
    }

    /// The next packet; `None` if the connection closed or failed first.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let decoded = Packet::decode(
                    &mut self.rbuf,
                    ProtocolVersion::V5,
                    &DecodeLimits::UNLIMITED,
                );
                if let Some(p) = decoded.unwrap() {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the broker answered or closed in time")
    }

    async fn connack(&mut self, client_id: &str) -> Option<ReasonCode> {
        let connect = packets::connect(ProtocolVersion::V5, client_id);
        self.send(Packet::Connect(Box::new(connect))).await.ok()?;
        match self.recv().await? {
            Packet::ConnAck(a) => Some(a.reason_code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

// ---- TLS ----------------------------------------------------------------

/// rumqttc options for a TLS listener: the host name is the one in the
/// server certificate.
fn tls_options(
    addr: SocketAddr,
    id: &str,
    pki: &Pki,
    client: Option<&Pem>,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, "localhost", addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    // Room for the large payloads that take several TLS records and
    // WebSocket messages.
    o.set_max_packet_size(Some(1 << 20));
    let auth = client.map(|c| (c.cert.clone().into_bytes(), c.key.clone().into_bytes()));
    o.set_transport(Transport::tls(pki.ca_pem.clone().into_bytes(), auth, None));
    o
}

#[tokio::test]
async fn mqtts_round_trip_with_rumqttc() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.listener(ListenerKind::Mqtts)])).await;
    let addr = broker.addr_of(ListenerKind::Mqtts);
    let (mut sub, _) = v5::Peer::connect(tls_options(addr, "sub", &pki, None)).await;
    sub.subscribe("tls/t", QoS::AtLeastOnce).await;
    // A publisher over plain TCP: both listeners reach the same broker.
    let (mut publisher, _) = v5::Peer::connect(v5::options(broker.addr, "pub")).await;
    publisher
        .publish("tls/t", QoS::AtLeastOnce, false, b"over tls")
        .await;
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"over tls");
    // And back, from the TLS client.
    let mut o = v5::options(broker.addr, "plain");
    o.set_max_packet_size(Some(1 << 20));
    let (mut plain, _) = v5::Peer::connect(o).await;
    plain.subscribe("tls/back", QoS::ExactlyOnce).await;
    sub.publish("tls/back", QoS::ExactlyOnce, false, &[7; 100_000])
        .await;
    assert_eq!(plain.next_publish().await.payload.len(), 100_000);
}

#[tokio::test]
async fn mqtts_speaks_mqtt_only_after_the_tls_handshake() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.listener(ListenerKind::Mqtts)])).await;
    // Plain MQTT on the TLS port is not a ClientHello: closed, no CONNACK.
    let mut raw = RawClient::open(broker.addr_of(ListenerKind::Mqtts))
        .await
        .unwrap();
    let connect = packets::connect(ProtocolVersion::V5, "plain");
    let _ = raw.send(&Packet::Connect(Box::new(connect))).await;
    let received = raw.expect_closed().await;
    assert!(
        !received.iter().any(|p| matches!(p, Packet::ConnAck(_))),
        "{received:?}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.mutual(ListenerKind::Mqtts)])).await;
    let addr = broker.addr_of(ListenerKind::Mqtts);
    // Under TLS 1.3 the client finishes its side of the handshake before
    // the server has judged it: the refusal shows on the first read.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = match pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Err(_) => true,
        Ok(tls) => StreamPeer::new(tls).connack("anonymous").await.is_none(),
    };
    assert!(refused, "a client without a certificate got a CONNACK");
    // A certificate from another CA is refused too.
    let other = Pki::new();
    let stranger = other.client("stranger");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = match pki
        .connector(Some(&stranger))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Err(_) => true,
        Ok(tls) => StreamPeer::new(tls).connack("stranger").await.is_none(),
    };
    assert!(refused, "a certificate from an unknown CA was accepted");
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_with_a_certificate() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.mutual(ListenerKind::Mqtts)])).await;
    let addr = broker.addr_of(ListenerKind::Mqtts);
    let device = pki.client("device-1");
    // A raw client, then rumqttc.
    let tls = pki.tls_connect(addr, Some(&device)).await;
    assert_eq!(
        StreamPeer::new(tls).connack("raw").await,
        Some(ReasonCode::Success)
    );
    let (mut peer, _) = v5::Peer::connect(tls_options(addr, "dev", &pki, Some(&device))).await;
    peer.subscribe("m/t", QoS::AtLeastOnce).await;
    peer.publish("m/t", QoS::AtLeastOnce, false, b"mtls").await;
    assert_eq!(&peer.next_publish().await.payload[..], b"mtls");
}

#[tokio::test]
async fn use_identity_as_username_makes_the_common_name_the_user_name() {
    let pki = Pki::new();
    // The ACL lets user `device-1` use its own topics only, and nobody
    // may connect without a user name: both can only pass if the broker
    // takes the user name from the certificate.
    let acl = pki
        .dir
        .write("acl", "user device-1\ntopic readwrite devices/device-1/#\n");
    let identity = ListenerConfig {
        use_identity_as_username: true,
        allow_anonymous: Some(false),
        acl_file: Some(acl),
        ..pki.mutual(ListenerKind::Mqtts)
    };
    let without = ListenerConfig {
        allow_anonymous: Some(false),
        ..pki.mutual(ListenerKind::Mqtts)
    };
    let broker = TestBroker::start(with_listeners(vec![identity, without])).await;
    let device = pki.client("device-1");

    let tls = pki
        .tls_connect(broker.listeners[1].address, Some(&device))
        .await;
    let mut peer = StreamPeer::new(tls);
    assert_eq!(peer.connack("d1").await, Some(ReasonCode::Success));
    let subscribe = packets::subscribe(
        1,
        &[
            ("devices/device-1/cmd", mqtt_codec::QoS::AtMostOnce),
            ("devices/device-2/cmd", mqtt_codec::QoS::AtMostOnce),
        ],
    );
    peer.send(Packet::Subscribe(subscribe)).await.unwrap();
    match peer.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.reason_codes,
            vec![ReasonCode::Success, ReasonCode::NotAuthorized]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    // Control: the same certificate where the identity is not used is an
    // anonymous client, refused.
    let tls = pki
        .tls_connect(broker.listeners[2].address, Some(&device))
        .await;
    assert_eq!(
        StreamPeer::new(tls).connack("d1-again").await,
        Some(ReasonCode::NotAuthorized)
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_connect_timeout() {
    let pki = Pki::new();
    let mut config = with_listeners(vec![pki.listener(ListenerKind::Mqtts)]);
    config.connect_timeout = 1;
    let broker = TestBroker::start(config).await;
    let mut tcp = TcpStream::connect(broker.addr_of(ListenerKind::Mqtts))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "expected the broker to close the silent connection, got {r:?}"
    );
    assert_eq!(broker.stat(|s| &s.handshake_timeouts), 1);
    assert_eq!(broker.stat(|s| &s.handshake_failures), 0);
}

/// Bytes that are not a TLS ClientHello on a TLS listener: the connection
/// is closed and counted as a failed handshake.
#[tokio::test]
async fn a_failed_tls_handshake_is_closed_and_counted() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.listener(ListenerKind::Mqtts)])).await;
    let mut tcp = TcpStream::connect(broker.addr_of(ListenerKind::Mqtts))
        .await
        .unwrap();
    // An MQTT CONNECT where a TLS record should be.
    let mut connect = BytesMut::new();
    Packet::Connect(Box::new(packets::connect(ProtocolVersion::V3_1_1, "plain")))
        .encode(ProtocolVersion::V3_1_1, &mut connect)
        .unwrap();
    tcp.write_all(&connect).await.unwrap();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            // A TLS alert may come first.
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was not closed"),
        }
    }
    broker
        .wait_until("the failed handshake to be counted", |s| {
            s.handshake_failures.load(Ordering::Relaxed) == 1
        })
        .await;
    assert_eq!(broker.stat(|s| &s.handshake_timeouts), 0);
}

#[tokio::test]
async fn missing_certificate_files_are_startup_errors_naming_the_file() {
    let pki = Pki::new();
    let mut listener = pki.listener(ListenerKind::Mqtts);
    let missing = pki.dir.0.join("missing.key");
    listener.keyfile = Some(missing.clone());
    let err = Server::bind(with_listeners(vec![listener]))
        .await
        .err()
        .expect("binding fails")
        .to_string();
    assert!(
        err.contains("keyfile") && err.contains(&missing.display().to_string()),
        "{err}"
    );
    // A certificate file that holds no certificate.
    let mut listener = pki.listener(ListenerKind::Wss);
    listener.certfile = Some(pki.keyfile.clone());
    let err = Server::bind(with_listeners(vec![listener]))
        .await
        .err()
        .expect("binding fails")
        .to_string();
    assert!(err.contains("certfile"), "{err}");
}

// ---- WebSocket ------------------------------------------------------------

fn ws_options(url: &str, id: &str, transport: Transport) -> rumqttc::v5::MqttOptions {
    // For WebSocket, rumqttc takes host and port from the URL.
    let mut o = rumqttc::v5::MqttOptions::new(id, url, 0);
    o.set_keep_alive(Duration::from_secs(30));
    // Room for the large payloads that take several TLS records and
    // WebSocket messages.
    o.set_max_packet_size(Some(1 << 20));
    o.set_transport(transport);
    o
}

#[tokio::test]
async fn ws_round_trip_with_rumqttc() {
    let broker = TestBroker::start(with_listeners(vec![ListenerConfig::new(
        ListenerKind::Ws,
        localhost(),
    )]))
    .await;
    let url = format!("ws://{}/mqtt", broker.addr_of(ListenerKind::Ws));
    let (mut sub, _) = v5::Peer::connect(ws_options(&url, "ws-sub", Transport::ws())).await;
    sub.subscribe("ws/t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = v5::Peer::connect(ws_options(&url, "ws-pub", Transport::ws())).await;
    publisher
        .publish("ws/t", QoS::ExactlyOnce, false, &[1; 200_000])
        .await;
    let p = sub.next_publish().await;
    assert_eq!(p.payload.len(), 200_000);
}

/// A raw WebSocket client: connects to `url` offering `subprotocol`.
async fn ws_connect<S>(
    stream: S,
    url: &str,
    subprotocol: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    if subprotocol.is_some() {
        assert_eq!(
            response.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "mqtt",
            "the broker selects the mqtt subprotocol [MQTT-6.0.0-4]"
        );
    }
    Ok(ws)
}

fn encode(packet: Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut buf).unwrap();
    buf.to_vec()
}

/// The packets of the next binary messages, until `n` have arrived.
async fn ws_recv<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    n: usize,
) -> Vec<Packet> {
    let mut rbuf = BytesMut::new();
    let mut packets = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while packets.len() < n {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => rbuf.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a binary message, got {other:?}"),
            }
            while let Some(p) =
                Packet::decode(&mut rbuf, ProtocolVersion::V5, &DecodeLimits::UNLIMITED).unwrap()
            {
                packets.push(p);
            }
        }
    })
    .await
    .expect("packets in time");
    packets
}

/// CONNECT split over two messages, then SUBSCRIBE and PUBLISH in one:
/// MQTT packets need not line up with WebSocket messages [MQTT-6.0.0-2].
async fn ws_round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) {
    let connect = encode(Packet::Connect(Box::new(packets::connect(
        ProtocolVersion::V5,
        "raw-ws",
    ))));
    let (a, b) = connect.split_at(5);
    ws.send(Message::binary(a.to_vec())).await.unwrap();
    ws.send(Message::binary(b.to_vec())).await.unwrap();
    match &ws_recv(ws, 1).await[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut both = encode(Packet::Subscribe(packets::subscribe(
        1,
        &[("ws/raw", mqtt_codec::QoS::AtLeastOnce)],
    )));
    both.extend(encode(Packet::Publish(packets::publish(
        "ws/raw",
        b"hello over websocket",
        mqtt_codec::QoS::AtLeastOnce,
        2,
    ))));
    ws.send(Message::binary(both)).await.unwrap();
    let received = ws_recv(ws, 3).await;
    assert!(
        matches!(received[0], Packet::SubAck(_)),
        "SUBACK first: {received:?}"
    );
    let publish = received.iter().find_map(|p| match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    });
    assert_eq!(
        publish.map(|p| &p.payload[..]),
        Some(&b"hello over websocket"[..]),
        "{received:?}"
    );
    assert!(
        received.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{received:?}"
    );
}

#[tokio::test]
async fn ws_raw_client_round_trip_with_the_mqtt_subprotocol() {
    let broker = TestBroker::start(with_listeners(vec![ListenerConfig::new(
        ListenerKind::Ws,
        localhost(),
    )]))
    .await;
    let addr = broker.addr_of(ListenerKind::Ws);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut ws = ws_connect(tcp, &format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    ws_round_trip(&mut ws).await;
}

#[tokio::test]
async fn ws_refuses_another_path_and_a_missing_subprotocol() {
    let listener = ListenerConfig {
        path: Some("/broker".into()),
        ..ListenerConfig::new(ListenerKind::Ws, localhost())
    };
    let broker = TestBroker::start(with_listeners(vec![listener])).await;
    let addr = broker.addr_of(ListenerKind::Ws);
    let status = |e: WsError| match e {
        WsError::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };

    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = ws_connect(tcp, &format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .expect_err("the default path is not served when `path` is set");
    assert_eq!(status(err), 404);

    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = ws_connect(tcp, &format!("ws://{addr}/broker"), None)
        .await
        .expect_err("no subprotocol offered");
    assert_eq!(status(err), 400);

    // The configured path, and a list of subprotocols that includes mqtt.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut ws = ws_connect(tcp, &format!("ws://{addr}/broker?x=1"), Some("wamp, mqtt"))
        .await
        .unwrap();
    ws_round_trip(&mut ws).await;
}

#[tokio::test]
async fn ws_text_message_closes_the_connection() {
    let broker = TestBroker::start(with_listeners(vec![ListenerConfig::new(
        ListenerKind::Ws,
        localhost(),
    )]))
    .await;
    let addr = broker.addr_of(ListenerKind::Ws);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut ws = ws_connect(tcp, &format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    ws.send(Message::text("\u{10}\u{0}")).await.unwrap();
    let end = tokio::time::timeout(TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the connection stayed open after a text message [MQTT-6.0.0-1]"
    );
}

#[tokio::test]
async fn wss_round_trip_with_rumqttc_and_a_raw_client() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.listener(ListenerKind::Wss)])).await;
    let addr = broker.addr_of(ListenerKind::Wss);
    let url = format!("wss://localhost:{}/mqtt", addr.port());
    let transport = || Transport::wss(pki.ca_pem.clone().into_bytes(), None, None);
    let (mut sub, _) = v5::Peer::connect(ws_options(&url, "wss-sub", transport())).await;
    sub.subscribe("wss/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = v5::Peer::connect(ws_options(&url, "wss-pub", transport())).await;
    publisher
        .publish("wss/t", QoS::AtLeastOnce, false, b"secure websocket")
        .await;
    assert_eq!(&sub.next_publish().await.payload[..], b"secure websocket");

    let tls = pki.tls_connect(addr, None).await;
    let mut ws = ws_connect(tls, &url, Some("mqtt")).await.unwrap();
    ws_round_trip(&mut ws).await;

    let tls = pki.tls_connect(addr, None).await;
    let err = ws_connect(
        tls,
        &format!("wss://localhost:{}/other", addr.port()),
        Some("mqtt"),
    )
    .await
    .expect_err("a wrong path is refused");
    assert!(
        matches!(&err, WsError::Http(r) if r.status() == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn wss_with_mutual_tls() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![pki.mutual(ListenerKind::Wss)])).await;
    let addr = broker.addr_of(ListenerKind::Wss);
    let url = format!("wss://localhost:{}/mqtt", addr.port());
    let device = pki.client("browser-1");
    let tls = pki.tls_connect(addr, Some(&device)).await;
    let mut ws = ws_connect(tls, &url, Some("mqtt")).await.unwrap();
    ws_round_trip(&mut ws).await;

    let tcp = TcpStream::connect(addr).await.unwrap();
    if let Ok(tls) = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        assert!(
            ws_connect(tls, &url, Some("mqtt")).await.is_err(),
            "a client without a certificate was served"
        );
    }
}

// ---- PROXY protocol ----------------------------------------------------------

#[tokio::test]
async fn proxy_protocol_header_comes_first_and_is_required() {
    let listener = ListenerConfig {
        proxy_protocol: true,
        ..ListenerConfig::new(ListenerKind::Mqtt, localhost())
    };
    let broker = TestBroker::start(with_listeners(vec![listener])).await;
    // The `[[listener]]` (the `listen` one comes first).
    let addr = broker.listeners[1].address;

    // v1, with the CONNECT in the same segment.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut bytes = b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 1883\r\n".to_vec();
    bytes.extend(encode(Packet::Connect(Box::new(packets::connect(
        ProtocolVersion::V5,
        "proxied",
    )))));
    tcp.write_all(&bytes).await.unwrap();
    let mut peer = StreamPeer::new(tcp);
    match peer.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // v2 (LOCAL, as a health check sends), then MQTT.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
        .await
        .unwrap();
    let mut peer = StreamPeer::new(tcp);
    assert_eq!(peer.connack("health").await, Some(ReasonCode::Success));

    // No header: closed without an answer.
    let mut raw = RawClient::open(addr).await.unwrap();
    let connect = packets::connect(ProtocolVersion::V5, "direct");
    let _ = raw.send(&Packet::Connect(Box::new(connect))).await;
    assert_eq!(raw.expect_closed().await, vec![]);
}

/// The listeners are reported in configuration order, `listen` first.
#[tokio::test]
async fn listeners_are_reported_in_order() {
    let pki = Pki::new();
    let broker = TestBroker::start(with_listeners(vec![
        ListenerConfig::new(ListenerKind::Ws, localhost()),
        pki.listener(ListenerKind::Mqtts),
    ]))
    .await;
    let kinds: Vec<ListenerKind> = broker.listeners.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        vec![ListenerKind::Mqtt, ListenerKind::Ws, ListenerKind::Mqtts]
    );
    assert_eq!(broker.listeners[0].address, broker.addr);
    assert!(broker.listeners.iter().all(|l| l.address.port() != 0));
}
