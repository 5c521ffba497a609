//! What only a durable store does: survive a close, a crash, corruption,
//! and refuse a format it does not know.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fjall::{Config, PartitionCreateOptions, PersistMode};
use mqtt_codec::QoS;
use mqtt_store::{Batch, FjallStore, Store, StoreError};

/// Writes directly into a partition of a closed store, as a disk might.
fn poke(dir: &Path, partition: &str, f: impl FnOnce(&fjall::PartitionHandle)) {
    let ks = Config::new(dir).open().unwrap();
    let p = ks
        .open_partition(partition, PartitionCreateOptions::default())
        .unwrap();
    f(&p);
    ks.persist(PersistMode::SyncAll).unwrap();
}

fn queue_key(client: &str, seq: u64) -> Vec<u8> {
    let mut k = (client.len() as u16).to_be_bytes().to_vec();
    k.extend_from_slice(client.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn fill(store: &FjallStore) {
    let c = clock();
    let id = s("alice");
    let mut b = Batch::new(c);
    b.save_session(
        &session("alice", 3600),
        Some(c.instant() + Duration::from_secs(3600)),
    );
    for seq in 0..10 {
        b.append_queued(
            &id,
            seq,
            &delivery(
                message("t", &format!("m{seq}"), QoS::AtLeastOnce),
                QoS::AtLeastOnce,
            ),
        );
    }
    b.set_retained(&rich_message(&c))
        .set_retained(&message("plain", "p", QoS::AtMostOnce))
        .add_incoming_qos2(&id, pid(4))
        .set_will(&id, &will("w"), c.instant());
    store.commit(&b).unwrap();
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.recover(clock()).unwrap();
        fill(&store);
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let r = store.recover(clock()).unwrap();
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].state, {
        let mut st = session("alice", 3600);
        st.incoming_qos2 = vec![pid(4)];
        st.queued = r.sessions[0].state.queued.clone();
        st.queued_bytes = r.sessions[0].state.queued_bytes;
        st
    });
    assert_eq!(r.sessions[0].queue_seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(&r.sessions[0].state.queued[9].message.payload[..], b"m9");
    assert_eq!(r.retained.len(), 2);
    assert_eq!(r.wills.len(), 1);
    // And writes go on after recovery, with the indexes rebuilt.
    store
        .commit(Batch::new(clock()).remove_queued(&s("alice"), 0))
        .unwrap();
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.recover(clock()).unwrap().report.queued, 9);
}

#[test]
fn writes_before_recovery_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let err = store
        .commit(Batch::new(clock()).clear_will(&s("x")))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotRecovered), "{err}");
    assert!(matches!(
        store.load_session("x", clock()),
        Err(StoreError::NotRecovered)
    ));
}

#[test]
fn corrupt_and_truncated_records_are_skipped_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.recover(clock()).unwrap();
        fill(&store);
    }
    // Garbage in place of a queued message; a retained message cut short;
    // a key that is not a key; a flipped bit in a session record of
    // another client.
    poke(dir.path(), "queues", |p| {
        p.insert(queue_key("alice", 3), b"\x01\x02garbage".to_vec())
            .unwrap();
        p.insert(b"\xff".to_vec(), b"x".to_vec()).unwrap();
    });
    poke(dir.path(), "retained", |p| {
        let v = p.get("plain").unwrap().unwrap();
        p.insert("plain", v[..v.len() - 3].to_vec()).unwrap();
    });
    poke(dir.path(), "sessions", |p| {
        let mut v = p
            .get(&queue_key("alice", 0)[..7])
            .unwrap()
            .unwrap()
            .to_vec();
        v[6] ^= 0x10;
        p.insert(b"\x00\x03bob".to_vec(), v).unwrap();
    });

    let store = FjallStore::open(dir.path()).unwrap();
    let r = store.recover(clock()).unwrap();
    assert_eq!(r.report.corrupt, 4, "{:?}", r.report);
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].queue_seqs, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    assert_eq!(r.retained.len(), 1);
    drop(store);
    // The space was reclaimed: a second start finds nothing to skip.
    let store = FjallStore::open(dir.path()).unwrap();
    let r = store.recover(clock()).unwrap();
    assert_eq!(r.report.corrupt, 0);
    assert_eq!(r.report.queued, 9);
}

#[test]
fn a_store_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(FjallStore::open(dir.path()).unwrap());
    poke(dir.path(), "meta", |p| {
        // Version byte 2, kind 7 (meta), magic, format version 2, CRC.
        let mut v = vec![2, 7];
        v.extend_from_slice(b"mqtt-store");
        v.extend_from_slice(&2u32.to_be_bytes());
        let crc = crc32(&v);
        v.extend_from_slice(&crc.to_be_bytes());
        p.insert("format", v).unwrap();
    });
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::IncompatibleVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to open"), "{err}");
}

#[test]
fn a_store_with_an_unreadable_format_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(FjallStore::open(dir.path()).unwrap());
    poke(dir.path(), "meta", |p| {
        p.insert("format", b"\x01\x07mqtt-st".to_vec()).unwrap();
    });
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnknownFormat { .. }), "{err}");
}

#[test]
fn data_without_a_format_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    poke(dir.path(), "retained", |p| p.insert("a", "b").unwrap());
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnknownFormat { .. }), "{err}");
}

/// CRC-32 (IEEE), bitwise: the tests do not lean on the crate's own.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const CRASH_DIR: &str = "MQTT_STORE_CRASH_DIR";

/// The child half of `committed_data_survives_a_crash`: commits, writes
/// more without syncing, and dies without running any destructor.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let store = FjallStore::open(&dir).unwrap();
    store.recover(clock()).unwrap();
    let c = clock();
    let id = s("crashy");
    let mut b = Batch::new(c);
    b.save_session(&session("crashy", u32::MAX), None);
    for seq in 0..100 {
        b.append_queued(
            &id,
            seq,
            &delivery(message("t", "x", QoS::AtLeastOnce), QoS::AtLeastOnce),
        );
    }
    store.commit(&b).unwrap();
    for seq in 100..200 {
        store
            .commit(Batch::new(c).append_queued(
                &id,
                seq,
                &delivery(message("t", "y", QoS::AtLeastOnce), QoS::AtLeastOnce),
            ))
            .unwrap();
    }
    // Written, never synced: may or may not survive.
    store
        .write(Batch::new(c).append_queued(
            &id,
            200,
            &delivery(message("t", "z", QoS::AtLeastOnce), QoS::AtLeastOnce),
        ))
        .unwrap();
    std::process::abort();
}

#[test]
fn committed_data_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    let store = FjallStore::open(dir.path()).unwrap();
    let r = store.recover(clock()).unwrap();
    assert_eq!(r.sessions.len(), 1);
    let seqs = &r.sessions[0].queue_seqs;
    assert!(seqs.len() >= 200, "{} queued", seqs.len());
    assert_eq!(seqs[..200], (0..200).collect::<Vec<_>>()[..]);
}
