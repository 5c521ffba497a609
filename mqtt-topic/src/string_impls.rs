//! The trait implementations topic names and filters share: formatting,
//! comparison with strings, and conversions, each through the type's own
//! checks.

/// Implements the common traits for a `Bytes` newtype whose strings are
/// checked by `$validate` and built by `new`/`from_bytes`.
macro_rules! string_impls {
    ($ty:ident, $validate:path) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<[u8]> for $ty {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::TopicError;
            fn from_str(s: &str) -> Result<Self, $crate::TopicError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::TopicError;
            fn try_from(s: &str) -> Result<Self, $crate::TopicError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::TopicError;
            /// Checks `s` and takes its buffer without copying.
            fn try_from(s: String) -> Result<Self, $crate::TopicError> {
                $validate(&s)?;
                Ok(Self(bytes::Bytes::from(s)))
            }
        }

        impl TryFrom<bytes::Bytes> for $ty {
            type Error = $crate::TopicError;
            fn try_from(bytes: bytes::Bytes) -> Result<Self, $crate::TopicError> {
                Self::from_bytes(bytes)
            }
        }

        impl From<$ty> for bytes::Bytes {
            fn from(value: $ty) -> bytes::Bytes {
                value.0
            }
        }
    };
}
