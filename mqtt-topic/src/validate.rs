//! The checks behind the constructors, one pass over the bytes each.

use crate::{MAX_TOPIC_LEN, TopicError};

/// Checks the rules shared by topic names and filters, and returns the bytes
/// as `&str` when they are UTF-8.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, TopicError> {
    std::str::from_utf8(bytes).map_err(|e| TopicError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

fn length(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    Ok(())
}

/// A topic name: [MQTT-4.7.3-1], [MQTT-4.7.3-2], [MQTT-4.7.3-3] and no
/// wildcard [MQTT-3.3.2-2].
pub(crate) fn name(s: &str) -> Result<(), TopicError> {
    length(s)?;
    let mut level = 0;
    // Bytes, not chars: '/', '+', '#' and U+0000 are ASCII, and an ASCII byte
    // never occurs inside a multi-byte UTF-8 sequence.
    for (offset, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'/' => level += 1,
            b'+' | b'#' => {
                return Err(TopicError::WildcardInName {
                    wildcard: char::from(b),
                    offset,
                    level,
                });
            }
            0 => return Err(TopicError::NullCharacter { offset, level }),
            _ => {}
        }
    }
    Ok(())
}

/// A topic filter: the rules of a name, except that `+` may be a whole level
/// [MQTT-4.7.1-3] and `#` may be the whole last level [MQTT-4.7.1-2].
pub(crate) fn filter(s: &str) -> Result<(), TopicError> {
    length(s)?;
    let bytes = s.as_bytes();
    let mut level = 0;
    let mut level_start = 0;
    for (offset, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                level += 1;
                level_start = offset + 1;
            }
            b'+' | b'#' => {
                let level_end = bytes[offset..]
                    .iter()
                    .position(|&c| c == b'/')
                    .map_or(bytes.len(), |p| offset + p);
                let alone = level_start == offset && level_end == offset + 1;
                if b == b'+' && !alone {
                    return Err(TopicError::SingleLevelWildcardNotAlone { offset, level });
                }
                if b == b'#' {
                    if !alone {
                        return Err(TopicError::MultiLevelWildcardNotAlone { offset, level });
                    }
                    if level_end != bytes.len() {
                        return Err(TopicError::MultiLevelWildcardNotLast { offset, level });
                    }
                }
            }
            0 => return Err(TopicError::NullCharacter { offset, level }),
            _ => {}
        }
    }
    Ok(())
}
