//! A scripted MQTT peer on a raw socket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{
    ConnAck, Connect, DecodeError, DecodeLimits, Packet, ProtocolVersion, QoS, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::TIMEOUT;

/// What [`RawClient::next`] saw.
#[derive(Debug, PartialEq)]
// Returned once per packet in tests, and matched on: boxing would cost
// more in readability than the bytes it saves.
#[allow(clippy::large_enum_variant)]
pub enum Received {
    /// A whole packet.
    Packet(Packet),
    /// The peer closed the connection (or reset it).
    Closed,
    /// Nothing within the wait.
    TimedOut,
    /// Bytes that are not a valid packet of the connection's version.
    Malformed(DecodeError),
}

/// An MQTT peer that does exactly what the test says, over a plain TCP
/// socket: send any packet or any bytes, read packets one at a time, or
/// read nothing at all.
///
/// Packets are encoded and decoded with [`RawClient::version`], which
/// [`RawClient::connect`] sets from the CONNECT it sends.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    rbuf: BytesMut,
    /// The protocol version packets are encoded and decoded with.
    pub version: ProtocolVersion,
    /// How long [`RawClient::recv`] and [`RawClient::expect_closed`] wait.
    pub timeout: Duration,
}

impl RawClient {
    /// Opens a TCP connection and sends nothing.
    pub async fn open(addr: SocketAddr) -> io::Result<RawClient> {
        Ok(Self::from_stream(TcpStream::connect(addr).await?))
    }

    /// Opens a TCP connection whose receive buffer is `bytes` (as far as the
    /// OS allows): a peer that does not read then stops the sender quickly.
    pub async fn open_with_recv_buffer(addr: SocketAddr, bytes: u32) -> io::Result<RawClient> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        Ok(Self::from_stream(socket.connect(addr).await?))
    }

    fn from_stream(stream: TcpStream) -> RawClient {
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            rbuf: BytesMut::new(),
            version: ProtocolVersion::V5,
            timeout: TIMEOUT,
        }
    }

    /// Opens a connection, sends `connect` and waits for CONNACK.
    ///
    /// # Panics
    /// If the connection fails or the answer is not a CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = Self::open(addr)
            .await
            .expect("TCP connection to the broker");
        let ack = c.handshake(connect).await;
        (c, ack)
    }

    /// A subscriber that will not read: a connection with a 4 KiB receive
    /// buffer, connected with `connect`, subscribed to `filter` at `qos`
    /// (SUBACK received). What the broker sends it soon fills the socket,
    /// and then its session's queue.
    ///
    /// # Panics
    /// If the connection, CONNACK or SUBACK fails.
    pub async fn slow_subscriber(
        addr: SocketAddr,
        connect: Connect,
        filter: &str,
        qos: QoS,
    ) -> RawClient {
        let mut c = Self::open_with_recv_buffer(addr, 4096)
            .await
            .expect("TCP connection to the broker");
        c.handshake(connect).await;
        c.send(&Packet::Subscribe(crate::packets::subscribe(
            1,
            &[(filter, qos)],
        )))
        .await
        .expect("SUBSCRIBE sent");
        match c.next(c.timeout).await {
            Received::Packet(Packet::SubAck(_)) => c,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends `connect` on this connection and waits for CONNACK.
    ///
    /// # Panics
    /// If the answer is not a CONNACK.
    pub async fn handshake(&mut self, connect: Connect) -> ConnAck {
        self.version = connect.protocol;
        self.send(&Packet::Connect(Box::new(connect)))
            .await
            .expect("CONNECT sent");
        match self.next(self.timeout).await {
            Received::Packet(Packet::ConnAck(ack)) => *ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Encodes `packet` with [`RawClient::version`] and writes it.
    ///
    /// # Panics
    /// If the packet cannot be encoded in that version (a bug in the test).
    pub async fn send(&mut self, packet: &Packet) -> io::Result<()> {
        let mut buf = BytesMut::new();
        packet
            .encode(self.version, &mut buf)
            .expect("the test's packet encodes");
        self.send_bytes(&buf).await
    }

    /// Writes arbitrary bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next packet, decoded with [`RawClient::version`]; `None` if the
    /// connection closed, nothing came within [`RawClient::timeout`], or
    /// the bytes were malformed.
    pub async fn recv(&mut self) -> Option<Packet> {
        let version = self.version;
        self.recv_as(version).await
    }

    /// [`RawClient::recv`], decoding with `version`.
    pub async fn recv_as(&mut self, version: ProtocolVersion) -> Option<Packet> {
        let saved = std::mem::replace(&mut self.version, version);
        let r = self.next(self.timeout).await;
        self.version = saved;
        match r {
            Received::Packet(p) => Some(p),
            _ => None,
        }
    }

    /// The next thing that happens on the connection within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Packet::decode(&mut self.rbuf, self.version, &DecodeLimits::UNLIMITED) {
                Ok(Some(p)) => return Received::Packet(p),
                Ok(None) => {}
                Err(e) => return Received::Malformed(e),
            }
            self.rbuf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Received::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return Received::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits, at most [`RawClient::timeout`], for the broker to close the
    /// connection, and returns the packets received before the close.
    ///
    /// # Panics
    /// If the connection is still open after the timeout.
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Received::Packet(p) => before.push(p),
                Received::Closed => return before,
                // Not ours to judge here: drop what cannot be decoded.
                Received::Malformed(_) => self.rbuf.clear(),
                Received::TimedOut => panic!(
                    "the broker did not close the connection within {:?} (received {before:?})",
                    self.timeout
                ),
            }
        }
    }

    /// Waits for the broker to send DISCONNECT with `code` and close.
    ///
    /// # Panics
    /// If the connection is not closed in time, or the last packet before
    /// the close is not that DISCONNECT.
    pub async fn expect_disconnect(&mut self, code: ReasonCode) {
        let before = self.expect_closed().await;
        match before.last() {
            Some(Packet::Disconnect(d)) if d.reason_code == code => {}
            _ => panic!("expected DISCONNECT {code:?} before the close, got {before:?}"),
        }
    }

    /// Asserts that no packet arrives (and the connection stays open) for
    /// `wait`.
    ///
    /// # Panics
    /// If something arrives or the connection closes.
    pub async fn expect_silence(&mut self, wait: Duration) {
        match self.next(wait).await {
            Received::TimedOut => {}
            other => panic!("expected nothing for {wait:?}, got {other:?}"),
        }
    }
}
