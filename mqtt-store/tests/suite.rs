//! One suite, run against every store: each test is a generic function,
//! instantiated for `MemoryStore` and for `FjallStore` on a temporary
//! directory by `suite!` at the bottom.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use mqtt_codec::QoS;
use mqtt_session::{Inflight, InflightStage};
use mqtt_store::{Batch, GroupCommit, GroupCommitConfig, Store, StoreError};

fn session_round_trips<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let st = session("alice", 3600);
    let deadline = c.instant() + Duration::from_secs(3600);
    f.store()
        .commit(Batch::new(c).save_session(&st, Some(deadline)))
        .unwrap();
    let loaded = f.store().load_session("alice", c).unwrap().unwrap();
    assert_eq!(loaded.state, st);
    assert!(same_ms(loaded.expires_at, Some(deadline), &c));
    assert_eq!(loaded.next_seq, 0);
    assert!(f.store().load_session("bob", c).unwrap().is_none());
    // Saving again replaces.
    let mut st2 = st.clone();
    st2.subscriptions.clear();
    st2.expiry_interval = u32::MAX;
    f.store()
        .commit(Batch::new(c).save_session(&st2, None))
        .unwrap();
    let loaded = f.store().load_session("alice", c).unwrap().unwrap();
    assert_eq!(loaded.state, st2);
    assert_eq!(loaded.expires_at, None);
}

fn delete_session_removes_all_it_owns_but_not_its_will<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("alice");
    let mut b = Batch::new(c);
    b.save_session(&session("alice", 60), None)
        .append_queued(
            &id,
            0,
            &delivery(message("t", "a", QoS::AtLeastOnce), QoS::AtLeastOnce),
        )
        .set_inflight(
            &id,
            &Inflight {
                packet_id: pid(1),
                stage: InflightStage::Released,
            },
        )
        .add_incoming_qos2(&id, pid(9))
        .set_will(&id, &will("w"), c.instant());
    // A session whose name extends alice's must not be touched.
    let other = s("alice2");
    b.save_session(&session("alice2", 60), None).append_queued(
        &other,
        0,
        &delivery(message("t", "b", QoS::AtMostOnce), QoS::AtMostOnce),
    );
    f.store().commit(&b).unwrap();
    f.store().commit(Batch::new(c).delete_session(&id)).unwrap();
    assert!(f.store().load_session("alice", c).unwrap().is_none());
    assert_eq!(f.store().load_wills(c).unwrap().len(), 1);
    let other = f.store().load_session("alice2", c).unwrap().unwrap();
    assert_eq!(other.state.queued.len(), 1);
    // Recreated under the same name, it starts empty.
    f.store()
        .commit(Batch::new(c).save_session(&session("alice", 60), None))
        .unwrap();
    let again = f.store().load_session("alice", c).unwrap().unwrap();
    assert!(again.state.queued.is_empty());
    assert!(again.state.inflight.is_empty());
    assert!(again.state.incoming_qos2.is_empty());
}

fn queue_appends_removes_and_loads_in_sequence_order<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("q");
    let mut b = Batch::new(c);
    b.save_session(&session("q", 60), None);
    // Out of order, and across the byte boundary at 256.
    for seq in [300u64, 2, 1, 255, 256, 0] {
        let m = message("t", &format!("m{seq}"), QoS::AtLeastOnce);
        b.append_queued(&id, seq, &delivery(m, QoS::AtLeastOnce));
    }
    f.store().commit(&b).unwrap();
    f.store()
        .commit(Batch::new(c).remove_queued(&id, 2).remove_queued(&id, 99))
        .unwrap();
    let loaded = f.store().load_session("q", c).unwrap().unwrap();
    assert_eq!(loaded.queue_seqs, vec![0, 1, 255, 256, 300]);
    let payloads: Vec<_> = loaded
        .state
        .queued
        .iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, ["m0", "m1", "m255", "m256", "m300"]);
    assert_eq!(loaded.next_seq, 301);
    let bytes: usize = loaded.state.queued.iter().map(|d| d.message.size()).sum();
    assert_eq!(loaded.state.queued_bytes, bytes);
}

fn queued_delivery_keeps_every_field<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("rich");
    let d = rich_delivery(&c);
    let mut b = Batch::new(c);
    b.save_session(&session("rich", 60), None)
        .append_queued(&id, 7, &d);
    f.store().commit(&b).unwrap();
    let loaded = f.store().load_session("rich", c).unwrap().unwrap();
    let got = &loaded.state.queued[0];
    assert!(same_ms(got.message.expires_at, d.message.expires_at, &c));
    let mut got = got.clone();
    Arc::make_mut(&mut got.message).expires_at = d.message.expires_at;
    assert_eq!(got, d);
}

fn append_under_a_used_sequence_replaces<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("r");
    let mut b = Batch::new(c);
    b.save_session(&session("r", 60), None)
        .append_queued(
            &id,
            1,
            &delivery(message("t", "old", QoS::AtLeastOnce), QoS::AtLeastOnce),
        )
        .append_queued(
            &id,
            1,
            &delivery(message("t", "new!", QoS::AtLeastOnce), QoS::AtLeastOnce),
        );
    f.store().commit(&b).unwrap();
    let loaded = f.store().load_session("r", c).unwrap().unwrap();
    assert_eq!(loaded.state.queued.len(), 1);
    assert_eq!(&loaded.state.queued[0].message.payload[..], b"new!");
    assert_eq!(loaded.state.queued_bytes, 5);
}

fn inflight_keeps_send_order_and_stage<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("inf");
    let d = rich_delivery(&c);
    let published = |p| Inflight {
        packet_id: pid(p),
        stage: InflightStage::Published(d.clone()),
    };
    let mut b = Batch::new(c);
    b.save_session(&session("inf", 60), None)
        .set_inflight(&id, &published(500))
        .set_inflight(&id, &published(3))
        .set_inflight(&id, &published(70));
    f.store().commit(&b).unwrap();
    // 500 moves on to PUBREL: it keeps its place; 3 is acknowledged.
    let mut b = Batch::new(c);
    b.set_inflight(
        &id,
        &Inflight {
            packet_id: pid(500),
            stage: InflightStage::Released,
        },
    )
    .remove_inflight(&id, pid(3))
    .set_inflight(&id, &published(1));
    f.store().commit(&b).unwrap();
    let loaded = f.store().load_session("inf", c).unwrap().unwrap();
    let ids: Vec<u16> = loaded
        .state
        .inflight
        .iter()
        .map(|i| i.packet_id.get())
        .collect();
    assert_eq!(ids, [500, 70, 1]);
    assert_eq!(loaded.state.inflight[0].stage, InflightStage::Released);
    match &loaded.state.inflight[1].stage {
        InflightStage::Published(got) => {
            assert_eq!(got.message.payload, d.message.payload);
            assert_eq!(got.subscription_ids, d.subscription_ids);
        }
        other => panic!("unexpected stage {other:?}"),
    }
    // The order also survives a full recovery (indexes rebuilt).
    let r = f.store().recover(c).unwrap();
    let ids: Vec<u16> = r.sessions[0]
        .state
        .inflight
        .iter()
        .map(|i| i.packet_id.get())
        .collect();
    assert_eq!(ids, [500, 70, 1]);
    f.store()
        .commit(Batch::new(c).set_inflight(&id, &published(2)))
        .unwrap();
    let loaded = f.store().load_session("inf", c).unwrap().unwrap();
    let ids: Vec<u16> = loaded
        .state
        .inflight
        .iter()
        .map(|i| i.packet_id.get())
        .collect();
    assert_eq!(ids, [500, 70, 1, 2]);
}

fn incoming_qos2_ids_are_added_and_removed<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("in");
    let mut b = Batch::new(c);
    b.save_session(&session("in", 60), None)
        .add_incoming_qos2(&id, pid(9))
        .add_incoming_qos2(&id, pid(2))
        .add_incoming_qos2(&id, pid(65535));
    f.store().commit(&b).unwrap();
    f.store()
        .commit(Batch::new(c).remove_incoming_qos2(&id, pid(9)))
        .unwrap();
    let loaded = f.store().load_session("in", c).unwrap().unwrap();
    assert_eq!(loaded.state.incoming_qos2, vec![pid(2), pid(65535)]);
}

fn retained_messages_are_set_cleared_and_loaded<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let rich = rich_message(&c);
    let mut b = Batch::new(c);
    b.set_retained(&rich)
        .set_retained(&message("a/b", "1", QoS::AtMostOnce))
        .set_retained(&message("a/c", "2", QoS::AtLeastOnce));
    f.store().commit(&b).unwrap();
    f.store()
        .commit(
            Batch::new(c)
                .clear_retained(&s("a/b"))
                .set_retained(&message("a/c", "3", QoS::AtLeastOnce)),
        )
        .unwrap();
    let mut all = f.store().load_retained(c).unwrap();
    all.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(all.len(), 2);
    assert_eq!(&all[0].payload[..], b"3");
    assert!(same_ms(all[1].expires_at, rich.expires_at, &c));
    let mut got = all[1].clone();
    got.expires_at = rich.expires_at;
    assert_eq!(got, rich);
}

fn wills_are_set_cleared_and_loaded<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let at = c.instant() + Duration::from_secs(30);
    let mut b = Batch::new(c);
    b.set_will(&s("a"), &will("a/will"), at)
        .set_will(&s("b"), &will("b/will"), at)
        .set_will(&s("a"), &will("a/will2"), at);
    f.store().commit(&b).unwrap();
    f.store().commit(Batch::new(c).clear_will(&s("b"))).unwrap();
    let wills = f.store().load_wills(c).unwrap();
    assert_eq!(wills.len(), 1);
    assert_eq!(wills[0].client_id, "a");
    assert_eq!(wills[0].will.will, will("a/will2"));
    assert!(same_ms(Some(wills[0].will.publish_at), Some(at), &c));
}

fn recover_returns_everything<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let mut b = Batch::new(c);
    for i in 0..5 {
        let id = s(&format!("c{i}"));
        b.save_session(
            &session(&format!("c{i}"), 60),
            Some(c.instant() + Duration::from_secs(60)),
        );
        for seq in 0..i {
            b.append_queued(
                &id,
                seq,
                &delivery(message("t", "x", QoS::AtLeastOnce), QoS::AtLeastOnce),
            );
        }
    }
    b.set_retained(&message("r", "x", QoS::AtMostOnce))
        .set_will(&s("c1"), &will("w"), c.instant());
    f.store().commit(&b).unwrap();
    let r = f.store().recover(c).unwrap();
    assert_eq!(r.sessions.len(), 5);
    assert_eq!(r.report.sessions, 5);
    assert_eq!(r.report.queued, 10);
    assert_eq!(r.retained.len(), 1);
    assert_eq!(r.wills.len(), 1);
    assert_eq!(r.report.corrupt, 0);
    assert_eq!(r.sessions[3].state.client_id, "c3");
    assert_eq!(r.sessions[3].queue_seqs, [0, 1, 2]);
}

fn expired_messages_are_removed_at_recovery<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("e");
    let soon = |secs| {
        let mut m = message("t", "x", QoS::AtLeastOnce);
        m.expires_at = Some(c.instant() + Duration::from_secs(secs));
        m
    };
    let mut b = Batch::new(c);
    b.save_session(&session("e", u32::MAX), None)
        .append_queued(&id, 0, &delivery(soon(10), QoS::AtLeastOnce))
        .append_queued(&id, 1, &delivery(soon(1000), QoS::AtLeastOnce))
        .append_queued(
            &id,
            2,
            &delivery(message("t", "forever", QoS::AtLeastOnce), QoS::AtLeastOnce),
        )
        .set_inflight(
            &id,
            &Inflight {
                packet_id: pid(1),
                stage: InflightStage::Published(delivery(soon(10), QoS::AtLeastOnce)),
            },
        );
    let mut r1 = soon(10);
    r1.topic = s("r/1");
    let mut r2 = soon(1000);
    r2.topic = s("r/2");
    b.set_retained(&r1).set_retained(&r2);
    f.store().commit(&b).unwrap();

    // 100 s later on the wall clock, say after a restart.
    let later = c.advance(Duration::from_secs(100));
    let r = f.store().recover(later).unwrap();
    assert_eq!(r.report.expired_messages, 2);
    let st = &r.sessions[0];
    assert_eq!(st.queue_seqs, [1, 2]);
    assert_eq!(st.state.drops.expired, 3 + 1);
    // In flight: delivery had started, so it stays.
    assert_eq!(st.state.inflight.len(), 1);
    assert_eq!(r.retained.len(), 1);
    assert_eq!(r.retained[0].topic, "r/2");
    // The remaining lifetime is what was left: 900 s.
    let left = r.retained[0].expires_at.unwrap() - later.instant();
    assert_eq!(left.as_secs(), 900);
    // Gone for good.
    let r = f.store().recover(later).unwrap();
    assert_eq!(r.report.expired_messages, 0);
    assert_eq!(r.report.queued, 2);
}

fn expired_sessions_are_removed_at_recovery<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let mut b = Batch::new(c);
    for (name, secs) in [("short", 10u64), ("long", 1000)] {
        let id = s(name);
        b.save_session(
            &session(name, 60),
            Some(c.instant() + Duration::from_secs(secs)),
        )
        .append_queued(
            &id,
            0,
            &delivery(message("t", "x", QoS::AtLeastOnce), QoS::AtLeastOnce),
        )
        .add_incoming_qos2(&id, pid(1))
        .set_will(&id, &will("w"), c.instant() + Duration::from_secs(secs));
    }
    f.store().commit(&b).unwrap();
    let later = c.advance(Duration::from_secs(100));
    let r = f.store().recover(later).unwrap();
    assert_eq!(r.report.expired_sessions, 1);
    assert_eq!(r.report.orphans, 0);
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].state.client_id, "long");
    assert_eq!(r.report.queued, 1);
    // Both wills remain: the expired session's is due now.
    assert_eq!(r.wills.len(), 2);
    assert!(f.store().load_session("short", later).unwrap().is_none());
    // A new session of the same name does not inherit anything.
    f.store()
        .commit(Batch::new(later).save_session(&session("short", 60), None))
        .unwrap();
    let fresh = f.store().load_session("short", later).unwrap().unwrap();
    assert!(fresh.state.queued.is_empty() && fresh.state.incoming_qos2.is_empty());
}

fn a_session_saved_while_connected_expires_counted_from_recovery<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let mut b = Batch::new(c);
    b.save_session(&session("online", 60), None)
        .save_session(&session("zero", 0), None)
        .save_session(&session("forever", u32::MAX), None);
    f.store().commit(&b).unwrap();
    let later = c.advance(Duration::from_secs(3600));
    let r = f.store().recover(later).unwrap();
    let names: Vec<_> = r
        .sessions
        .iter()
        .map(|s| s.state.client_id.to_string())
        .collect();
    assert_eq!(names, ["forever", "online"]);
    assert_eq!(r.sessions[0].expires_at, None);
    let left = r.sessions[1].expires_at.unwrap() - later.instant();
    assert_eq!(left, Duration::from_secs(60));
    // The deadline was written: a second restart does not move it.
    let r = f
        .store()
        .recover(later.advance(Duration::from_secs(61)))
        .unwrap();
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.report.expired_sessions, 1);
}

fn load_session_leaves_out_expired_messages<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("l");
    let mut m = message("t", "x", QoS::AtLeastOnce);
    m.expires_at = Some(c.instant() + Duration::from_secs(5));
    let mut b = Batch::new(c);
    b.save_session(
        &session("l", 60),
        Some(c.instant() + Duration::from_secs(60)),
    )
    .append_queued(&id, 0, &delivery(m, QoS::AtLeastOnce))
    .append_queued(
        &id,
        1,
        &delivery(message("t", "y", QoS::AtLeastOnce), QoS::AtLeastOnce),
    );
    f.store().commit(&b).unwrap();
    let later = c.advance(Duration::from_secs(10));
    let loaded = f.store().load_session("l", later).unwrap().unwrap();
    assert_eq!(loaded.queue_seqs, [1]);
    // Past its own deadline, the session is gone.
    let much_later = c.advance(Duration::from_secs(61));
    assert!(f.store().load_session("l", much_later).unwrap().is_none());
    assert!(f.store().recover(much_later).unwrap().sessions.is_empty());
}

fn batches_are_atomic_and_later_writes_win<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("clean");
    let mut b = Batch::new(c);
    b.save_session(&session("clean", 60), None).append_queued(
        &id,
        0,
        &delivery(message("t", "old", QoS::AtLeastOnce), QoS::AtLeastOnce),
    );
    f.store().commit(&b).unwrap();
    // Clean start: delete and recreate in one batch, with a new message.
    let mut b = Batch::new(c);
    b.delete_session(&id)
        .save_session(&session("clean", 30), None)
        .append_queued(
            &id,
            0,
            &delivery(message("t", "new", QoS::AtLeastOnce), QoS::AtLeastOnce),
        );
    f.store().commit(&b).unwrap();
    let loaded = f.store().load_session("clean", c).unwrap().unwrap();
    assert_eq!(loaded.state.expiry_interval, 30);
    assert_eq!(loaded.state.queued.len(), 1);
    assert_eq!(&loaded.state.queued[0].message.payload[..], b"new");
}

fn the_queue_backstop_refuses_a_whole_batch<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let id = s("full");
    let m = || {
        delivery(
            message("t", "0123456789", QoS::AtLeastOnce),
            QoS::AtLeastOnce,
        )
    };
    let mut b = Batch::new(c);
    b.save_session(&session("full", 60), None);
    for seq in 0..100_000 {
        b.append_queued(&id, seq, &m());
    }
    f.store().commit(&b).unwrap();
    let mut b = Batch::new(c);
    b.set_retained(&message("r", "x", QoS::AtMostOnce))
        .append_queued(&id, 100_000, &m());
    let err = f.store().commit(&b).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::QueueFull {
                messages: 100_001,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason_code(), mqtt_codec::ReasonCode::QuotaExceeded);
    // Nothing of the refused batch was applied.
    assert!(f.store().load_retained(c).unwrap().is_empty());
    // Removing one in the same batch makes room.
    let mut b = Batch::new(c);
    b.remove_queued(&id, 0).append_queued(&id, 100_000, &m());
    f.store().commit(&b).unwrap();
    let loaded = f.store().load_session("full", c).unwrap().unwrap();
    assert_eq!(loaded.state.queued.len(), 100_000);
    assert_eq!(loaded.next_seq, 100_001);
}

fn write_then_sync_and_stats<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let before = f.store().stats();
    f.store()
        .write(Batch::new(c).set_retained(&message("a", "1", QoS::AtMostOnce)))
        .unwrap();
    f.store()
        .write(Batch::new(c).set_retained(&message("b", "2", QoS::AtMostOnce)))
        .unwrap();
    // Visible before the sync.
    assert_eq!(f.store().load_retained(c).unwrap().len(), 2);
    f.store().sync().unwrap();
    let after = f.store().stats();
    assert_eq!(after.writes - before.writes, 2);
    assert_eq!(after.syncs - before.syncs, 1);
}

fn group_commit_shares_syncs<F: Fixture>() {
    let f = F::new();
    let c = clock();
    let group = Arc::new(GroupCommit::spawn(f.store_arc(), GroupCommitConfig::default()).unwrap());
    let before = f.store().stats().syncs;
    const N: usize = 64;
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let group = group.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut b = Batch::new(c);
                b.set_retained(&message(&format!("t/{i}"), "x", QoS::AtLeastOnce));
                barrier.wait();
                group.commit(b)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let syncs = f.store().stats().syncs - before;
    assert!(
        syncs >= 1 && syncs <= (N / 4) as u64,
        "{syncs} syncs for {N} commits"
    );
    assert_eq!(f.store().load_retained(c).unwrap().len(), N);

    // A refused batch fails its own request only.
    let (tx, rx) = std::sync::mpsc::channel();
    let limits_hit = {
        // 300 appends of 1 MiB pass the 256 MiB backstop.
        let mut b = Batch::new(c);
        for seq in 0..300 {
            b.append_queued(
                &s("x"),
                seq,
                &delivery(
                    message("t", &"x".repeat(1 << 20), QoS::AtLeastOnce),
                    QoS::AtLeastOnce,
                ),
            );
        }
        b
    };
    let tx2 = tx.clone();
    group.submit(limits_hit, move |r| tx2.send(("big", r.is_ok())).unwrap());
    let mut small = Batch::new(c);
    small.set_retained(&message("ok", "x", QoS::AtMostOnce));
    group.submit(small, move |r| tx.send(("small", r.is_ok())).unwrap());
    let mut results: Vec<_> = rx.iter().take(2).collect();
    results.sort();
    assert_eq!(results, [("big", false), ("small", true)]);
    match Arc::try_unwrap(group) {
        Ok(g) => g.shutdown(),
        Err(_) => panic!("group commit still shared"),
    }
}

macro_rules! suite {
    ($fixture:ty: $($test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            super::$test::<$fixture>();
        }
    )*};
}

macro_rules! all_tests {
    ($fixture:ty) => {
        suite!($fixture:
            session_round_trips,
            delete_session_removes_all_it_owns_but_not_its_will,
            queue_appends_removes_and_loads_in_sequence_order,
            queued_delivery_keeps_every_field,
            append_under_a_used_sequence_replaces,
            inflight_keeps_send_order_and_stage,
            incoming_qos2_ids_are_added_and_removed,
            retained_messages_are_set_cleared_and_loaded,
            wills_are_set_cleared_and_loaded,
            recover_returns_everything,
            expired_messages_are_removed_at_recovery,
            expired_sessions_are_removed_at_recovery,
            a_session_saved_while_connected_expires_counted_from_recovery,
            load_session_leaves_out_expired_messages,
            batches_are_atomic_and_later_writes_win,
            the_queue_backstop_refuses_a_whole_batch,
            write_then_sync_and_stats,
            group_commit_shares_syncs,
        );
    };
}

mod memory {
    all_tests!(crate::common::Memory);
}

mod fjall {
    all_tests!(crate::common::Fjall);
}
