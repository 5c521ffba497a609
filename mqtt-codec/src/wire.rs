//! Primitive reading and writing: integers, variable byte integers, strings
//! and binary data, bounded by the packet they belong to.

use bytes::{BufMut, Bytes};

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
#[inline(always)]
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

/// Writes a fixed header, the first byte and the remaining length `len` (at
/// most [`VARINT_MAX`]), and the two bytes that follow it. Up to 16 KiB, in
/// one write of constant size: a write of run-time size is a `memcpy` call,
/// and each write checks the buffer's room.
#[inline(always)]
pub(crate) fn put_fixed_header(buf: &mut impl BufMut, first: u8, len: usize, next: [u8; 2]) {
    let [a, b] = next;
    if len < 0x80 {
        buf.put_slice(&[first, len as u8, a, b]);
    } else if len < 0x4000 {
        buf.put_slice(&[first, (len & 0x7f) as u8 | 0x80, (len >> 7) as u8, a, b]);
    } else {
        buf.put_u8(first);
        put_varint(buf, len);
        buf.put_slice(&next);
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
#[inline(always)]
pub(crate) fn put_prefixed(buf: &mut impl BufMut, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

/// A cursor over the body of one packet (or one length-prefixed part of it).
///
/// Every read names the field it is reading, so that a packet that ends too
/// early says which field was cut off.
///
/// It tracks a position in the packet's buffer and makes a `Bytes` handle
/// only for a field that keeps one (a string, binary data): each handle costs
/// an atomic reference count increment and, when dropped, a decrement, so a
/// sub-reader is a range of the same buffer rather than a handle of its own.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `buf` from `start` (past a packet's fixed header).
    #[inline(always)]
    pub(crate) fn new(buf: &'a Bytes, start: usize) -> Self {
        debug_assert!(start <= buf.len());
        Self {
            buf,
            pos: start,
            end: buf.len(),
        }
    }

    /// The bytes not read yet.
    #[inline(always)]
    pub(crate) fn remaining(&self) -> &'a [u8] {
        let buf: &'a [u8] = self.buf;
        &buf[self.pos..self.end]
    }

    /// How far into the buffer the reader is.
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    #[inline(always)]
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.end - self.pos < n {
            Err(DecodeError::Truncated { what })
        } else {
            Ok(())
        }
    }

    /// The next `n` bytes, skipped.
    #[inline(always)]
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        self.need(n, what)?;
        let buf: &'a [u8] = self.buf;
        let b = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, what)?[0])
    }

    #[inline(always)]
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        // The one-byte form first: property identifiers and most lengths.
        if let Some(&b) = self.remaining().first()
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u32::from(b));
        }
        match parse_varint(self.remaining())? {
            Varint::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            Varint::Incomplete => Err(DecodeError::Truncated { what }),
        }
    }

    /// A sub-reader over the next `n` bytes, which this reader skips.
    #[inline(always)]
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        self.need(n, what)?;
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + n,
        };
        self.pos += n;
        Ok(sub)
    }

    /// The range of binary data: a two-byte length and that many bytes
    /// (MQTT 5.0 §1.5.6), skipped.
    #[inline(always)]
    fn prefixed(&mut self, what: &'static str) -> Result<(usize, usize), DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.need(len, what)?;
        let start = self.pos;
        self.pos += len;
        Ok((start, self.pos))
    }

    /// Binary data, borrowed: for a field that is only looked at.
    #[inline(always)]
    pub(crate) fn binary_slice(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let (start, end) = self.prefixed(what)?;
        let buf: &'a [u8] = self.buf;
        Ok(&buf[start..end])
    }

    /// Binary data: a two-byte length and that many bytes (MQTT 5.0 §1.5.6).
    #[inline(always)]
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let (start, end) = self.prefixed(what)?;
        Ok(self.buf.slice(start..end))
    }

    /// The range of binary data in the buffer, skipped: for a field whose
    /// handle is made later.
    #[inline(always)]
    pub(crate) fn binary_range(
        &mut self,
        what: &'static str,
    ) -> Result<(usize, usize), DecodeError> {
        self.prefixed(what)
    }

    /// The range of a UTF-8 encoded string in the buffer, checked and
    /// skipped: for a field whose handle is made later.
    #[inline(always)]
    pub(crate) fn string_range(
        &mut self,
        what: &'static str,
    ) -> Result<(usize, usize), DecodeError> {
        let (start, end) = self.prefixed(what)?;
        MqttString::check(&self.buf[start..end])
            .map_err(|error| DecodeError::InvalidString { what, error })?;
        Ok((start, end))
    }

    /// A UTF-8 encoded string (MQTT 5.0 §1.5.4), checked before a handle
    /// to its bytes is made.
    #[inline(always)]
    pub(crate) fn string(&mut self, what: &'static str) -> Result<MqttString, DecodeError> {
        let (start, end) = self.prefixed(what)?;
        MqttString::check(&self.buf[start..end])
            .map_err(|error| DecodeError::InvalidString { what, error })?;
        Ok(MqttString::from_checked(self.buf.slice(start..end)))
    }

    /// A topic name: a string without wildcards [MQTT-3.3.2-2]. Both are
    /// checked in one pass over the bytes in the common case.
    #[inline(always)]
    pub(crate) fn topic_name(&mut self, what: &'static str) -> Result<MqttString, DecodeError> {
        let (start, end) = self.prefixed(what)?;
        let bytes = &self.buf[start..end];
        // One pass without early exit, so that it vectorises: bytes
        // 0x01..=0x7F are a valid string, and among them only `+` and `#`
        // are wildcards.
        let (plain, wildcard) = bytes.iter().fold((true, false), |(plain, wildcard), &b| {
            (
                plain & (b.wrapping_sub(1) < 0x7f),
                wildcard | (b == b'+') | (b == b'#'),
            )
        });
        if !plain {
            MqttString::check(bytes).map_err(|error| DecodeError::InvalidString { what, error })?;
        }
        if wildcard {
            return Err(DecodeError::WildcardInTopicName { what });
        }
        Ok(MqttString::from_checked(self.buf.slice(start..end)))
    }

    /// Fails if bytes are left over: a packet (or a length-prefixed part)
    /// must end exactly where its length says.
    #[inline(always)]
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.end - self.pos,
            })
        }
    }
}
