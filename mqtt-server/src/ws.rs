//! MQTT over WebSocket (`ws` and `wss` listeners), MQTT 5.0 §6.
//!
//! The handshake is accepted only on the listener's `path` and only when
//! the client offers the `mqtt` subprotocol (or `mqttv3.1`, which MQTT 3.1
//! clients send), which the answer names [MQTT-6.0.0-3] [MQTT-6.0.0-4];
//! anything else gets an HTTP error and is closed.
//!
//! [`WsStream`] then turns the WebSocket back into the byte stream
//! `connection::serve` reads and writes: binary messages carry the MQTT
//! bytes, and may split or join packets freely [MQTT-6.0.0-2]; a text
//! message closes the connection [MQTT-6.0.0-1]; pings are answered by
//! tungstenite.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The subprotocols accepted, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Largest WebSocket message the broker sends. MQTT packets may span
/// messages [MQTT-6.0.0-2], so a large batch is cut rather than sent as
/// one message that a client with a small message limit would refuse.
const MAX_OUTGOING_MESSAGE: usize = 64 * 1024;

/// Room, beyond the largest packet, in the largest message accepted: a
/// client may put several packets in one message.
const INCOMING_SLACK: usize = 64 * 1024;

/// Performs the server side of the WebSocket handshake on `stream`,
/// accepting only `path` and the MQTT subprotocol. Messages larger than
/// `max_packet_size` plus some slack are refused by tungstenite, so a
/// client cannot make the broker buffer more than MQTT itself would.
pub(crate) async fn accept<S>(
    stream: S,
    path: &str,
    max_packet_size: u32,
) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refusal = None;
    // The error type is tungstenite's, an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, response: Response| {
        check_request(req, response, path).map_err(|(status, why)| {
            refusal = Some(why.clone());
            let mut r = ErrorResponse::new(Some(why));
            *r.status_mut() = status;
            r
        })
    };
    let limit = (max_packet_size as usize).saturating_add(INCOMING_SLACK);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await {
        Ok(inner) => Ok(WsStream {
            inner,
            pending: Bytes::new(),
        }),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            match refusal {
                Some(why) => format!("WebSocket handshake refused: {why}"),
                None => format!("WebSocket handshake failed: {e}"),
            },
        )),
    }
}

fn check_request(
    req: &Request,
    mut response: Response,
    path: &str,
) -> Result<Response, (StatusCode, String)> {
    if req.uri().path() != path {
        return Err((
            StatusCode::NOT_FOUND,
            format!("path {} is not {path}", req.uri().path()),
        ));
    }
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(chosen) = SUBPROTOCOLS.into_iter().find(|p| offered.contains(p)) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("subprotocol `mqtt` not offered (offered: {offered:?})"),
        ));
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen),
    );
    Ok(response)
}

/// A WebSocket seen as the MQTT byte stream it carries.
#[derive(Debug)]
pub(crate) struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message: MQTT is carried in binary messages [MQTT-6.0.0-1]",
                    )));
                }
                // The end of the stream, as EOF.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                // Pings are answered by tungstenite; pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Sends `data` as one binary message once tungstenite has room.
    /// Written bytes sit in tungstenite's buffer until flushed; the
    /// connection task flushes whenever its own queue is empty.
    fn poll_send(&mut self, cx: &mut Context<'_>, data: Bytes) -> Poll<io::Result<usize>> {
        let n = data.len();
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.inner).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(data))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(MAX_OUTGOING_MESSAGE);
        self.poll_send(cx, Bytes::copy_from_slice(&buf[..n]))
    }

    /// Gathers the slices into one message (the copy into the message is
    /// needed anyway), up to [`MAX_OUTGOING_MESSAGE`] bytes.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut data = Vec::with_capacity(total.min(MAX_OUTGOING_MESSAGE));
        for b in bufs {
            let room = MAX_OUTGOING_MESSAGE - data.len();
            if room == 0 {
                break;
            }
            data.extend_from_slice(&b[..b.len().min(room)]);
        }
        self.poll_send(cx, Bytes::from(data))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(to_io)
    }

    /// Sends a Close frame.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.inner).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
