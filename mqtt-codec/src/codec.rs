//! `tokio_util::codec` support (feature `codec`).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{DecodeError, EncodeError};
use crate::limits::DecodeLimits;
use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// A `tokio_util` decoder and encoder of [`Packet`]s.
///
/// It tracks the protocol version: decoding or encoding a CONNECT switches
/// it to the CONNECT's version, so a server starts with any version and a
/// client with the one it connects with.
#[derive(Debug, Clone)]
pub struct MqttCodec {
    /// The version used for every packet but CONNECT.
    pub version: ProtocolVersion,
    /// Bounds on what is decoded.
    pub limits: DecodeLimits,
}

impl MqttCodec {
    /// A codec for `version` with these limits.
    pub fn new(version: ProtocolVersion, limits: DecodeLimits) -> Self {
        Self { version, limits }
    }
}

/// An I/O error or a corrupt stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer sent an invalid packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Decoder for MqttCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        let packet = Packet::decode(src, self.version, &self.limits)?;
        match &packet {
            Some(Packet::Connect(c)) => self.version = c.protocol,
            Some(_) => {}
            None => {
                // Make room for the whole packet at once rather than growing
                // the buffer read by read; its size was checked against the limit.
                if let Some(len) = Packet::frame_len(src, self.version, &self.limits)? {
                    src.reserve(len.saturating_sub(src.len()));
                }
            }
        }
        Ok(packet)
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        if let Packet::Connect(c) = item {
            self.version = c.protocol;
        }
        dst.reserve(item.encoded_len(self.version));
        item.encode(self.version, dst)?;
        Ok(())
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Encoder::<&Packet>::encode(self, &item, dst)
    }
}
