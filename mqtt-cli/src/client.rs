//! An async driver for `mqtt_session::ClientConnection`: it owns the socket
//! (TCP or TLS), and moves bytes between it and the sans-IO state machine.
//!
//! The protocol — packet identifiers, acknowledgements, Receive Maximum,
//! keep-alive — is decided by the session; this module only reads, decodes,
//! encodes, writes and keeps time. Every outgoing packet is encoded into one
//! buffer, so whatever accumulated between two writes leaves in one syscall.
//!
//! The loop a tool runs:
//!
//! ```text
//! let (mut client, connack) = Client::connect(transport, connect, config).await?;
//! client.publish(message)?;                 // queue commands (sync)
//! loop {
//!     while let Some(ev) = client.poll_event() { ... }
//!     client.step().await?;                 // one read, one write or one timer
//! }
//! ```
//!
//! [`Client::step`] is cancel-safe, so a tool can `select!` it against its
//! own futures (stdin, a deadline, Ctrl-C).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, DecodeLimits, Disconnect, Packet, PacketType, ProtocolVersion, ReasonCode,
};
use mqtt_session::{
    ClientCloseReason, ClientConfig, ClientConnection, ClientEvent, DropReason, Message,
    ProtocolError, Transmit,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transport::{Endpoint, Transport};

/// Read buffer growth step: large enough to take many small packets per
/// read, small enough not to matter per connection in a benchmark.
const READ_CHUNK: usize = 16 * 1024;

/// Why a client stopped.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The server refused the CONNECT.
    Refused {
        /// The CONNACK reason code (3.1.1 return codes are mapped to it).
        reason: ReasonCode,
        /// The protocol version used, to show the 3.1.1 return code.
        version: ProtocolVersion,
    },
    /// The server sent DISCONNECT.
    ServerDisconnect(ReasonCode),
    /// The server broke the protocol, or stopped answering pings.
    Protocol(ProtocolError),
    /// The server closed the connection, or reading or writing failed.
    ConnectionLost(Option<io::Error>),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { reason, version } if !version.is_v5() => write!(
                f,
                "connection refused: {} (return code {})",
                reason.description(),
                reason.to_v3_connect_return_code()
            ),
            Self::Refused { reason, .. } => write!(f, "connection refused: {reason}"),
            Self::ServerDisconnect(r) => write!(f, "disconnected by the server: {r}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::ConnectionLost(Some(e)) => write!(f, "connection lost: {e}"),
            Self::ConnectionLost(None) => f.write_str("connection closed by the server"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One client connection and its socket.
pub(crate) struct Client {
    conn: ClientConnection,
    reader: Box<dyn AsyncRead + Send + Unpin>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    version: ProtocolVersion,
    limits: DecodeLimits,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Set when the socket reached end of file or failed: nothing more is
    /// read, and the error is what [`Client::step`] reports.
    io_error: Option<Option<io::Error>>,
    /// Why the session closed, once it has.
    closed: Option<ClientCloseReason>,
    /// When the bytes waiting in `read_buf` were read.
    read_at: Instant,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("version", &self.version)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sends CONNECT on `transport` and waits for CONNACK. Events that
    /// arrive with the CONNACK (none, normally) stay queued.
    pub(crate) async fn connect(
        transport: Transport,
        connect: Connect,
        config: ClientConfig,
    ) -> Result<(Self, ConnAck), ClientError> {
        let version = connect.protocol;
        let conn = ClientConnection::new(config, connect, None, Instant::now());
        let limits = conn.decode_limits();
        let (reader, writer) = transport.split();
        let mut client = Self {
            conn,
            reader,
            writer,
            version,
            limits,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            io_error: None,
            closed: None,
            read_at: Instant::now(),
        };
        loop {
            match client.poll_event() {
                Some(ClientEvent::Connected(ack)) => return Ok((client, ack)),
                Some(ClientEvent::Closed { reason, .. }) => {
                    client.closed = Some(reason.clone());
                    let _ = client.flush().await;
                    return Err(client.close_error(reason));
                }
                Some(_) => continue,
                None => client.step().await?,
            }
        }
    }

    /// [`Client::poll_event`], but messages are lent to `on_message`
    /// rather than returned: for a caller that only looks at them.
    pub(crate) fn poll_event_with(
        &mut self,
        mut on_message: impl FnMut(&Message),
    ) -> Option<ClientEvent> {
        loop {
            match self.poll_event()? {
                ClientEvent::Message(m) => on_message(&m),
                other => return Some(other),
            }
        }
    }

    /// The next event, if one is ready.
    pub(crate) fn poll_event(&mut self) -> Option<ClientEvent> {
        // Packets are decoded as events are asked for: what one read
        // brought is never turned into a queue of events first.
        let ev = loop {
            if let Some(ev) = self.conn.poll_event() {
                break ev;
            }
            if !self.decode_one() {
                return None;
            }
        };
        if let ClientEvent::Closed { reason, .. } = &ev {
            self.closed = Some(reason.clone());
        }
        Some(ev)
    }

    /// The session state machine, for commands this driver does not wrap
    /// (subscribe, unsubscribe).
    pub(crate) fn session(&mut self) -> &mut ClientConnection {
        &mut self.conn
    }

    /// Queues a message; it is encoded at once if the server's Receive
    /// Maximum allows, else when an acknowledgement frees a slot.
    pub(crate) fn publish(&mut self, message: Message) -> Result<(), DropReason> {
        self.publish_at(message, Instant::now())
    }

    /// [`Client::publish`] at `now`, for a caller that publishes many
    /// messages in one go and reads the clock once for them. A message the
    /// caller sends many times is given as one shared `Arc`.
    pub(crate) fn publish_at(
        &mut self,
        message: impl Into<Arc<Message>>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let message: Arc<Message> = message.into();
        self.conn.publish(message)?;
        self.encode_pending_at(now);
        Ok(())
    }

    /// QoS 1/2 messages not yet completed: in flight or waiting for the
    /// server's Receive Maximum.
    pub(crate) fn unacknowledged(&self) -> usize {
        self.conn.inflight() + self.conn.queued()
    }

    /// Bytes encoded and not yet written to the socket.
    pub(crate) fn buffered(&self) -> usize {
        self.write_buf.len()
    }

    /// The error a closed session ended with, if it ended otherwise than
    /// by our DISCONNECT.
    pub(crate) fn close_error(&mut self, reason: ClientCloseReason) -> ClientError {
        match reason {
            ClientCloseReason::Refused(reason) => ClientError::Refused {
                reason,
                version: self.version,
            },
            ClientCloseReason::ServerDisconnect(r) => ClientError::ServerDisconnect(r),
            ClientCloseReason::Protocol(e) => ClientError::Protocol(e),
            ClientCloseReason::ConnectionLost | ClientCloseReason::Disconnected => {
                ClientError::ConnectionLost(self.io_error.as_mut().and_then(Option::take))
            }
        }
    }

    /// Encodes every packet the session wants to send into the write buffer.
    fn encode_pending(&mut self) {
        self.encode_pending_at(Instant::now());
    }

    fn encode_pending_at(&mut self, now: Instant) {
        let (version, buf) = (self.version, &mut self.write_buf);
        self.conn.poll_transmit(now, |t| encode(&t, version, buf));
    }

    /// Waits for one thing to happen — bytes read, bytes written, or the
    /// keep-alive timer — and hands it to the session. Cancel-safe.
    ///
    /// Returns an error once the socket has failed or closed and nothing is
    /// left to write; session closure itself comes as
    /// [`ClientEvent::Closed`].
    pub(crate) async fn step(&mut self) -> Result<(), ClientError> {
        // For a caller that did not ask for every event: what was read is
        // handled before anything else is.
        self.decode_all();
        self.encode_pending();
        // The caller has seen the Closed event by now (it drains events
        // between steps); a failed socket has nothing more to give.
        if let Some(err) = &mut self.io_error {
            return Err(ClientError::ConnectionLost(err.take()));
        }
        let timeout = self.conn.poll_timeout();
        let sleep = async {
            match timeout {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let writing = !self.write_buf.is_empty();
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        // Unbiased: a socket that is always writable must not starve reads.
        tokio::select! {
            r = self.writer.write_buf(&mut self.write_buf), if writing => match r {
                Ok(0) => self.lost(None),
                Ok(_) => {}
                Err(e) => self.lost(Some(e)),
            },
            r = self.reader.read_buf(&mut self.read_buf) => match r {
                Ok(0) => self.lost(None),
                // Decoded by `poll_event` (or the next step): the clock
                // is read once for everything this read brought.
                Ok(_) => self.read_at = Instant::now(),
                Err(e) => self.lost(Some(e)),
            },
            () = sleep => self.conn.handle_timeout(Instant::now()),
        }
        self.encode_pending();
        Ok(())
    }

    /// Decodes what the reads brought and the caller has not asked for.
    fn decode_all(&mut self) {
        while self.decode_one() {}
    }

    /// Hands the next complete packet read to the session; false if there
    /// is none.
    fn decode_one(&mut self) -> bool {
        match Packet::decode(&mut self.read_buf, self.version, &self.limits) {
            // An error is acted on by the session (Closed event).
            Ok(Some(packet)) => {
                let _ = self.conn.handle_packet(self.read_at, packet);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.conn.handle_decode_error(e);
                self.read_buf.clear();
                true
            }
        }
    }

    fn lost(&mut self, error: Option<io::Error>) {
        self.conn.connection_lost();
        self.io_error = Some(error);
        self.write_buf.clear();
    }

    /// Writes everything encoded so far.
    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        self.encode_pending();
        while self.write_buf.has_remaining() {
            if self.io_error.is_some() {
                return Err(ClientError::ConnectionLost(None));
            }
            match self.writer.write_buf(&mut self.write_buf).await {
                Ok(0) => return Err(ClientError::ConnectionLost(None)),
                Ok(_) => {}
                Err(e) => return Err(ClientError::ConnectionLost(Some(e))),
            }
        }
        self.writer
            .flush()
            .await
            .map_err(|e| ClientError::ConnectionLost(Some(e)))
    }

    /// Sends DISCONNECT (normal disconnection), writes what is pending and
    /// closes the socket.
    pub(crate) async fn disconnect(mut self) -> Result<(), ClientError> {
        if !self.conn.is_closed() {
            self.conn
                .disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
        }
        let flushed = self.flush().await;
        let _ = self.writer.shutdown().await;
        flushed
    }

    /// Runs the connection until `done` says the work is finished, handing
    /// every event to `on_event`. Returns the error that ended the
    /// connection otherwise.
    pub(crate) async fn run_until(
        &mut self,
        mut on_event: impl FnMut(&mut Self, ClientEvent) -> Result<(), ClientError>,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), ClientError> {
        loop {
            while let Some(ev) = self.poll_event() {
                if let ClientEvent::Closed { reason, .. } = ev {
                    return Err(self.close_error(reason));
                }
                on_event(self, ev)?;
            }
            if done(self) {
                return Ok(());
            }
            self.step().await?;
        }
    }
}

/// Encodes a packet into the write buffer.
fn encode(t: &Transmit<'_>, version: ProtocolVersion, buf: &mut BytesMut) {
    if let Err(e) = t.encode(version, buf) {
        // Only a property too long for its length prefix can fail, and the
        // user typed it: report it rather than send garbage.
        let kind = match t {
            Transmit::Packet(p) => p.packet_type(),
            Transmit::Publish(_) => PacketType::Publish,
        };
        tracing::error!("cannot encode {kind}: {e}");
    }
}

/// Connects to `endpoint` and completes the MQTT handshake within `timeout`.
/// Errors are the words a user should read: the address for a connection
/// failure, the reason code for a refusal.
pub(crate) async fn open(
    endpoint: &Endpoint,
    connect: Connect,
    config: ClientConfig,
    timeout: Duration,
) -> Result<(Client, ConnAck), String> {
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let handshake = async {
        let transport = Transport::open(endpoint).await?;
        Client::connect(transport, connect, config)
            .await
            .map_err(|e| match e {
                ClientError::Refused { .. } => e.to_string(),
                e => format!("{addr}: {e}"),
            })
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {addr} within {} s",
            timeout.as_secs()
        )),
    }
}
