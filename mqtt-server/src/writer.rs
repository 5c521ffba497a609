//! The bytes waiting to be written to one client, batched.
//!
//! Small packets are encoded one after another into one buffer. A PUBLISH
//! with a large payload is written as its own header followed by the
//! payload `Bytes` shared with every other subscriber, so the payload is
//! never copied per subscriber; a vectored write sends them together.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use mqtt_codec::{EncodeError, OutgoingPublish, Packet, ProtocolVersion};
use mqtt_session::Transmit;
use tokio::io::AsyncWrite;

/// Payloads at least this large are referenced, not copied: below it one
/// copy is cheaper than an extra I/O vector.
const SHARE_PAYLOAD_MIN: usize = 1024;
/// Most I/O vectors given to one write.
const MAX_IOVECS: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Complete chunks, in order, before `tail`.
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl WriteQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// Appends one packet.
    pub(crate) fn push(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        match packet {
            Packet::Publish(p) => self.push_publish(p.as_borrowed(), version),
            _ => {
                let before = self.tail.len();
                packet.encode(version, &mut self.tail)?;
                self.len += self.tail.len() - before;
                Ok(())
            }
        }
    }

    /// Appends one packet the session lends or gives.
    pub(crate) fn push_transmit(
        &mut self,
        transmit: &Transmit<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        match transmit {
            Transmit::Publish(p) => self.push_publish(*p, version),
            Transmit::Packet(p) => self.push(p, version),
        }
    }

    #[inline]
    fn push_publish(
        &mut self,
        p: OutgoingPublish<'_>,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        let before = self.tail.len();
        if p.payload.len() >= SHARE_PAYLOAD_MIN {
            p.encode_header(version, &mut self.tail)?;
            self.len += self.tail.len() - before + p.payload.len();
            self.chunks.push_back(self.tail.split().freeze());
            self.chunks.push_back(p.payload.clone());
        } else {
            p.encode(version, &mut self.tail)?;
            self.len += self.tail.len() - before;
        }
        Ok(())
    }

    /// One write (vectored when there are several chunks); returns how many
    /// bytes went. Cancel-safe: if the future is dropped before it
    /// completes, nothing was written and nothing is lost.
    #[cfg(test)]
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write_to(w, cx)).await
    }

    /// [`WriteQueue::write_to`] as a poll: a connection waiting to write
    /// keeps no future for it.
    pub(crate) fn poll_write_to<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let w = Pin::new(w);
        let n = if self.chunks.is_empty() {
            ready!(w.poll_write(cx, &self.tail))?
        } else {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_IOVECS);
            slices.extend(
                self.chunks
                    .iter()
                    .take(MAX_IOVECS - 1)
                    .map(|c| IoSlice::new(c)),
            );
            if slices.len() < MAX_IOVECS - 1 || self.chunks.len() == slices.len() {
                slices.push(IoSlice::new(&self.tail));
            }
            ready!(w.poll_write_vectored(cx, &slices))?
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.advance(n);
        Poll::Ready(Ok(n))
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mqtt_codec::{MqttString, Publish};

    fn publish(size: usize) -> Packet {
        Packet::Publish(Publish::new(
            MqttString::from_static("t"),
            Bytes::from(vec![7u8; size]),
        ))
    }

    /// What goes out is exactly the packets' encodings, in order, however
    /// the writes are split.
    #[tokio::test]
    async fn writes_the_encoded_packets_in_order() {
        let v = ProtocolVersion::V5;
        let packets = [
            publish(10),
            publish(5000),
            Packet::PingResp,
            publish(2000),
            publish(3),
        ];
        let mut expected = BytesMut::new();
        let mut q = WriteQueue::default();
        for p in &packets {
            p.encode(v, &mut expected).unwrap();
            q.push(p, v).unwrap();
        }
        assert_eq!(q.len(), expected.len());
        // A writer that accepts at most 700 bytes per call.
        let (mut a, mut b) = tokio::io::duplex(700);
        let total = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < total {
                let mut buf = [0u8; 512];
                let n = tokio::io::AsyncReadExt::read(&mut b, &mut buf)
                    .await
                    .unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        while !q.is_empty() {
            q.write_to(&mut a).await.unwrap();
        }
        assert_eq!(reader.await.unwrap(), expected.to_vec());
    }
}
