//! The PROXY protocol, versions 1 (text) and 2 (binary), on listeners with
//! `proxy_protocol = true`: a load balancer in front of the broker (HAProxy,
//! AWS NLB, nginx `proxy_protocol on`) sends a header naming the real
//! client before any other byte, and the broker logs, rate-limits and
//! counts failed logins by that address instead of the balancer's.
//!
//! On such a listener the header is required: a connection without one is
//! closed, so that a client reaching the port directly cannot pass for
//! someone else by being trusted without a header. `LOCAL` (v2) and
//! `UNKNOWN` (v1) headers, sent by health checks, keep the socket's
//! address.
//!
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The 12 bytes that open a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Largest version 2 header accepted: the fixed part, the addresses and
/// room for TLVs (which the broker skips).
const V2_MAX: usize = 16 + 4096;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProxyError {
    /// Neither signature: the peer did not send a PROXY header.
    #[error("no PROXY protocol header (the listener requires one)")]
    Missing,
    /// The header is malformed.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

impl From<ProxyError> for io::Error {
    fn from(e: ProxyError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A parsed header: the client's address, if the header names one.
type Parsed = (Option<SocketAddr>, usize);

/// Parses the header at the start of `buf`: `Ok(None)` if more bytes are
/// needed, else the client's address (`None` for LOCAL/UNKNOWN) and the
/// header's length.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 { Ok(None) } else { parse_v1(buf) };
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 header longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| ProxyError::Malformed("v1 header is not ASCII"))?;
    let mut fields = line.split(' ').skip(1);
    let family = fields.next();
    if family == Some("UNKNOWN") {
        return Ok(Some((None, end + 2)));
    }
    let (Some(family), Some(src), Some(_dst), Some(sport), Some(_dport), None) = (
        family,
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::Malformed("v1 header needs 6 fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("v1 source is not an IPv4 address"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("v1 source is not an IPv6 address"))?,
        _ => {
            return Err(ProxyError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let port: u16 = sport
        .parse()
        .map_err(|_| ProxyError::Malformed("v1 source port is not a number"))?;
    Ok(Some((Some(SocketAddr::new(ip, port)), end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    if 16 + len > V2_MAX {
        return Err(ProxyError::Malformed("v2 header too long"));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let total = 16 + len;
    match version_command & 0x0F {
        // LOCAL: the balancer's own connection (a health check).
        0x0 => return Ok(Some((None, total))),
        0x1 => {}
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    }
    let addr = match family >> 4 {
        // AF_INET: source, destination addresses, then ports.
        0x1 => {
            if body.len() < 12 {
                return Err(ProxyError::Malformed("v2 IPv4 addresses truncated"));
            }
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // AF_INET6.
        0x2 => {
            if body.len() < 36 {
                return Err(ProxyError::Malformed("v2 IPv6 addresses truncated"));
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // AF_UNSPEC, AF_UNIX: no IP address to use.
        _ => None,
    };
    Ok(Some((addr, total)))
}

/// Reads the PROXY header from `stream`. Returns the client's address
/// (`None` if the header names none) and the bytes read after the header,
/// which belong to the next layer (TLS, WebSocket or MQTT).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<(Option<SocketAddr>, Bytes)> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some((addr, len)) = parse(&buf)? {
            buf.advance(len);
            return Ok((addr, buf.freeze()));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the PROXY protocol header",
            ));
        }
    }
}

/// A stream whose first bytes were already read (past a PROXY header):
/// they are read again first, then the stream itself.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\nMQTT";
        assert_eq!(parse(h), Ok(Some((addr("192.0.2.7:56324"), h.len() - 4))));
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 1883\r\n";
        assert_eq!(parse(h), Ok(Some((addr("[2001:db8::1]:4000"), h.len()))));
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(h), Ok(Some((None, h.len()))));
    }

    #[test]
    fn v1_partial_needs_more() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\n";
        for n in 0..h.len() - 1 {
            assert_eq!(parse(&h[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn v1_malformed() {
        assert!(parse(b"PROXY TCP4 192.0.2.7 56324 1883\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 192.0.2.7 192.0.2.8 x 2\r\n").is_err());
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20)).is_err());
    }

    #[test]
    fn no_header_is_refused() {
        // A CONNECT packet where the header should be.
        assert_eq!(parse(&[0x10, 0x10, 0, 4]), Err(ProxyError::Missing));
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_ipv4_with_tlv_and_trailing_bytes() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x07, 0x5B];
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0xFF]); // a TLV, skipped
        let mut h = v2(1, 0x11, &body);
        let len = h.len();
        h.extend_from_slice(&[0x10, 0x00]);
        assert_eq!(parse(&h), Ok(Some((addr("192.0.2.7:56324"), len))));
        for n in 0..len {
            assert_eq!(parse(&h[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn v2_ipv6_and_local() {
        let mut body = vec![0u8; 36];
        body[0] = 0x20;
        body[1] = 0x01;
        body[15] = 1;
        body[32..34].copy_from_slice(&4000u16.to_be_bytes());
        let h = v2(1, 0x21, &body);
        assert_eq!(parse(&h), Ok(Some((addr("[2001::1]:4000"), h.len()))));
        let h = v2(0, 0x00, &[]);
        assert_eq!(parse(&h), Ok(Some((None, h.len()))));
    }

    #[tokio::test]
    async fn bytes_after_the_header_are_read_next() {
        let (mut client, server) = tokio::io::duplex(256);
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 1883\r\nhello",
        )
        .await
        .unwrap();
        drop(client);
        let mut server = server;
        let (peer, rest) = read_header(&mut server).await.unwrap();
        assert_eq!(peer, addr("192.0.2.7:56324"));
        let mut stream = Prefixed::new(rest, server);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"hello");
    }
}
