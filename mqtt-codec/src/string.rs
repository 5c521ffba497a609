//! A validated UTF-8 string that shares the packet's buffer.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// An MQTT UTF-8 encoded string (MQTT 5.0 §1.5.4): at most 65,535 bytes of
/// well-formed UTF-8 without U+0000.
///
/// It is a slice of the buffer it was decoded from, so decoding copies no
/// byte; it is checked once, when made, and derefs to `&str` for free.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttString(Bytes);

/// Why bytes are not an MQTT string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    /// The bytes are not well-formed UTF-8 [MQTT-1.5.4-1].
    #[error("not well-formed UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8,
    /// The string contains U+0000 [MQTT-1.5.4-2].
    #[error("contains the null character U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    /// The string is longer than 65,535 bytes (MQTT 5.0 §1.5.4).
    #[error("{len} bytes is longer than the 65,535 bytes a string can hold")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl MqttString {
    /// The empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from static text, checked.
    ///
    /// # Panics
    /// If `s` is not a valid MQTT string: a programming error in a literal.
    pub fn from_static(s: &'static str) -> Self {
        match Self::from_bytes(Bytes::from_static(s.as_bytes())) {
            Ok(v) => v,
            Err(e) => panic!("invalid MQTT string literal {s:?}: {e}"),
        }
    }

    /// Checks `bytes` and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StringError> {
        Self::check(&bytes)?;
        Ok(Self(bytes))
    }

    /// Checks that `bytes` are an MQTT string, before any handle to them is
    /// made.
    #[inline(always)]
    pub(crate) fn check(bytes: &[u8]) -> Result<(), StringError> {
        if bytes.len() > usize::from(u16::MAX) {
            return Err(StringError::TooLong { len: bytes.len() });
        }
        // Fast path for the common case, in one pass without early exit so
        // that it vectorises: bytes 0x01..=0x7F are ASCII, hence UTF-8, and
        // none is U+0000.
        if bytes
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(1) < 0x7f))
        {
            return Ok(());
        }
        Self::check_slow(bytes)
    }

    #[cold]
    fn check_slow(bytes: &[u8]) -> Result<(), StringError> {
        // memchr-style scan first: U+0000 is a single zero byte in UTF-8 and
        // never part of a multi-byte sequence.
        if bytes.contains(&0) {
            return Err(StringError::NullCharacter);
        }
        if std::str::from_utf8(bytes).is_err() {
            return Err(StringError::InvalidUtf8);
        }
        Ok(())
    }

    /// Wraps bytes that [`MqttString::check`] accepted.
    #[inline(always)]
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        debug_assert!(Self::check(&bytes).is_ok());
        Self(bytes)
    }

    /// The string as `&str`.
    pub fn as_str(&self) -> &str {
        // The bytes were checked to be UTF-8 when `self` was made and are
        // immutable since: `Bytes` never changes its contents.
        #[allow(unsafe_code)]
        // SAFETY: see above; every constructor runs `check` (whose fast path
        // accepts only ASCII) or takes a `&str`.
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes, shared with the packet buffer.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The same string in an allocation of its own. A decoded string
    /// shares the buffer it was read into, and keeps all of that buffer
    /// alive: copy what is kept for long (a client identifier) so the
    /// buffer can go.
    pub fn detached(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// Gives up the wrapper and returns the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, StringError> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(s: String) -> Result<Self, StringError> {
        Self::from_bytes(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for MqttString {
    type Error = StringError;
    fn try_from(b: Bytes) -> Result<Self, StringError> {
        Self::from_bytes(b)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A detached string is equal to the original but no longer points into
    /// the buffer it was decoded from.
    #[test]
    fn detached_does_not_share_the_buffer() {
        let buffer = Bytes::from_static(b"xxclient-7yy");
        let id = MqttString::from_bytes(buffer.slice(2..10)).unwrap();
        let copy = id.detached();
        assert_eq!(copy, id);
        let range = buffer.as_ptr_range();
        assert!(range.contains(&id.as_bytes().as_ptr()));
        assert!(!range.contains(&copy.as_bytes().as_ptr()));
    }
}
