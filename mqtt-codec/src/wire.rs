//! Primitive reading and writing: integers, variable byte integers, strings
//! and binary data, bounded by the packet they belong to.

use bytes::{Buf, BufMut, Bytes};

use crate::error::DecodeError;
use crate::string::MqttString;

/// The largest value a variable byte integer can carry (MQTT 5.0 §1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// The number of bytes the variable byte integer encoding of `v` takes.
pub(crate) const fn varint_len(v: usize) -> usize {
    if v < 0x80 {
        1
    } else if v < 0x4000 {
        2
    } else if v < 0x20_0000 {
        3
    } else {
        4
    }
}

/// Writes `v` (at most [`VARINT_MAX`]) as a variable byte integer.
pub(crate) fn put_varint(buf: &mut impl BufMut, v: usize) {
    debug_assert!(v <= VARINT_MAX as usize);
    let mut v = v;
    loop {
        let mut byte = (v & 0x7f) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

/// Result of parsing a variable byte integer at the start of a slice.
pub(crate) enum Varint {
    /// The value and the number of bytes it took.
    Value(u32, usize),
    /// The slice ends before the integer does.
    Incomplete,
}

/// Parses a variable byte integer at the start of `bytes`.
///
/// Rejects a fifth byte and, for one canonical form of every packet,
/// non-minimal encodings: MQTT 5.0 requires the minimum number of bytes
/// [MQTT-1.5.5-1]; MQTT 3.1.1 is silent and every known encoder writes the
/// minimum, so the same rule is applied to it.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Varint, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(4) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(DecodeError::NonMinimalVarint);
            }
            return Ok(Varint::Value(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::VarintTooLong)
    } else {
        Ok(Varint::Incomplete)
    }
}

/// Writes a two-byte length and the bytes (UTF-8 string or binary data).
/// The caller guarantees `b.len() <= 65535`.
pub(crate) fn put_prefixed(buf: &mut impl BufMut, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

/// A cursor over the body of one packet (or one length-prefixed part of it).
///
/// Every read names the field it is reading, so that a packet that ends too
/// early says which field was cut off.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated { what })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf)? {
            Varint::Value(v, n) => {
                self.buf.advance(n);
                Ok(v)
            }
            Varint::Incomplete => Err(DecodeError::Truncated { what }),
        }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// A sub-reader over the next `n` bytes, which this reader skips.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader, DecodeError> {
        self.take(n, what).map(Reader::new)
    }

    /// Binary data: a two-byte length and that many bytes (MQTT 5.0 §1.5.6).
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 encoded string (MQTT 5.0 §1.5.4).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<MqttString, DecodeError> {
        let b = self.binary(what)?;
        MqttString::decode(b, what)
    }

    /// Everything that is left.
    pub(crate) fn rest(self) -> Bytes {
        self.buf
    }

    /// Fails if bytes are left over: a packet (or a length-prefixed part)
    /// must end exactly where its length says.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }
}
