//! The payloads publishers send: a [`Stamp`] then filler, cut from one
//! buffer, or rewritten in place in a message no one else holds.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use mqtt_session::Message;

use super::publisher::WRITE_HIGH_WATER;
use super::stamp::{STAMP_LEN, Stamp};

/// Writes the start of a payload: `stamp` (see [`Stamp`]), or as much of
/// its time as fits if `head` is shorter than [`STAMP_LEN`].
fn write_stamp(head: &mut [u8], stamp: &Stamp) {
    if head.len() >= STAMP_LEN {
        stamp.write(&mut &mut head[..STAMP_LEN]);
    } else {
        let n = head.len().min(8);
        head[..n].copy_from_slice(&stamp.at.to_be_bytes()[..n]);
    }
}

/// A payload of `size` bytes that starts with `stamp` (see
/// [`write_stamp`]), then filler. Payloads are cut from one buffer to
/// spare an allocation per message.
pub(super) fn payload(arena: &mut BytesMut, size: usize, stamp: &Stamp) -> bytes::Bytes {
    if arena.capacity() < size {
        arena.reserve(size.max(WRITE_HIGH_WATER));
    }
    arena.put_bytes(b'x', size);
    write_stamp(arena, stamp);
    arena.split().freeze()
}

/// A payload of `size` bytes in a buffer of its own, that [`restamp`] can
/// take back while no one else holds it.
pub(super) fn own_payload(size: usize, stamp: &Stamp) -> bytes::Bytes {
    let mut b = vec![b'x'; size];
    write_stamp(&mut b, stamp);
    bytes::Bytes::from(b)
}

/// Rewrites the stamp of `message` in place, if no one else holds the
/// message nor its payload (the session sent it at once, and queued no
/// reference); false otherwise, and then it is left as it was.
pub(super) fn restamp(message: &mut Arc<Message>, stamp: &Stamp) -> bool {
    let Some(m) = Arc::get_mut(message) else {
        return false;
    };
    match std::mem::take(&mut m.payload).try_into_mut() {
        Ok(mut b) => {
            write_stamp(&mut b, stamp);
            m.payload = b.freeze();
            true
        }
        Err(shared) => {
            m.payload = shared;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::{MqttString, QoS};

    use super::*;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            at: 5,
            run: 6,
            publisher: 7,
            seq,
        }
    }

    #[test]
    fn payloads_start_with_their_stamp() {
        let mut arena = BytesMut::new();
        let a = payload(&mut arena, 64, &stamp(1));
        let b = payload(&mut arena, 64, &stamp(2));
        assert_eq!((a.len(), b.len()), (64, 64));
        assert_eq!(Stamp::parse(&a), Some(stamp(1)));
        assert_eq!(Stamp::parse(&b), Some(stamp(2)));
        assert!(a[STAMP_LEN..].iter().all(|&c| c == b'x'));
        // Too short for a stamp: as much of the time as fits.
        let c = payload(&mut arena, 12, &stamp(3));
        assert_eq!(&c[..8], &5u64.to_be_bytes());
        assert_eq!(Stamp::parse(&c), None);
        assert_eq!(payload(&mut arena, 3, &stamp(3)).as_ref(), &[0, 0, 0]);
    }

    #[test]
    fn a_message_is_restamped_only_while_no_one_else_holds_it() {
        let topic = MqttString::try_from("t".to_owned()).expect("a topic");
        let payload = own_payload(32, &stamp(0));
        let mut m = Arc::new(Message::new(topic, payload, QoS::AtMostOnce, false));
        assert!(restamp(&mut m, &stamp(1)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(1)));
        // Queued by the session: left alone.
        let queued = m.clone();
        assert!(!restamp(&mut m, &stamp(2)));
        drop(queued);
        // Its payload held elsewhere: left alone too.
        let held = m.payload.clone();
        assert!(!restamp(&mut m, &stamp(2)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(1)));
        assert_eq!(Stamp::parse(&held), Some(stamp(1)));
        drop(held);
        assert!(restamp(&mut m, &stamp(3)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(3)));
        assert_eq!(m.payload.len(), 32);
    }
}
