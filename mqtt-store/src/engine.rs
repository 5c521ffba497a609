//! What both stores share: batches turned into key/value writes, the
//! indexes that keep queue sizes and in-flight order, and recovery. A
//! store is this engine over a [`Kv`]: sorted maps in memory, or fjall.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mqtt_codec::MqttString;
use mqtt_session::{Delivery, Inflight, Message, ScheduledWill, SessionState};

use crate::batch::{Batch, Op};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::keys::{self, Part};
use crate::record;
use crate::store::{
    LoadedSession, PendingWill, Recovered, RecoveryReport, StoreLimits, StoreStats,
};

/// One key/value write.
#[derive(Debug)]
pub(crate) struct RawOp {
    pub(crate) part: Part,
    pub(crate) key: Vec<u8>,
    /// `None` deletes.
    pub(crate) value: Option<Vec<u8>>,
}

/// A sorted key/value space with one map per [`Part`].
pub(crate) trait Kv: Send + Sync {
    /// Applies writes atomically; each key appears at most once.
    fn apply(&self, ops: Vec<RawOp>) -> Result<(), StoreError>;
    /// Makes every applied write durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// Calls `f` on every entry of `part` whose key starts with `prefix`,
    /// in key order.
    fn scan(
        &self,
        part: Part,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError>;
}

/// What the store remembers of one session to check limits and keep the
/// in-flight order without reading the disk.
#[derive(Debug, Default)]
struct SessionIndex {
    /// Size (`Message::size`) of each queued entry, by sequence number.
    queue: HashMap<u64, usize>,
    queue_bytes: usize,
    /// Send order of each in-flight packet identifier.
    inflight: HashMap<u16, u64>,
    incoming: HashSet<u16>,
}

#[derive(Debug, Default)]
struct Index {
    /// Whether the indexes reflect the contents (after recovery).
    recovered: bool,
    sessions: HashMap<MqttString, SessionIndex>,
    /// The next in-flight order number, shared by all sessions.
    next_order: u64,
}

pub(crate) struct Engine<K> {
    pub(crate) kv: K,
    // A std mutex: held for the translation and the apply of one batch,
    // never across an await (the API is synchronous).
    index: Mutex<Index>,
    limits: StoreLimits,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl<K: Kv> Engine<K> {
    pub(crate) fn new(kv: K, limits: StoreLimits, recovered: bool) -> Self {
        Self {
            kv,
            index: Mutex::new(Index {
                recovered,
                ..Index::default()
            }),
            limits,
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index is rebuilt by recovery; a panic elsewhere while it was
        // held leaves nothing worse than what recovery fixes.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            writes: self.writes.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.kv.sync()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut index = self.lock();
        if !index.recovered {
            return Err(StoreError::NotRecovered);
        }
        self.check_limits(&index, batch)?;
        // Later writes to a key replace earlier ones: one entry per key.
        let mut raw = BTreeMap::new();
        for op in &batch.ops {
            self.translate(&mut index, op, &batch.clock, &mut raw)?;
        }
        let ops = raw
            .into_iter()
            .map(|((part, key), value)| RawOp { part, key, value })
            .collect();
        // If this fails the engine is broken (fjall refuses further writes),
        // so an index ahead of the contents does no harm.
        self.kv.apply(ops)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Refuses the batch if it takes a queue past the backstop limits,
    /// before anything is changed.
    fn check_limits(&self, index: &Index, batch: &Batch) -> Result<(), StoreError> {
        #[derive(Default)]
        struct Sim<'a> {
            base: Option<&'a SessionIndex>,
            count: usize,
            bytes: usize,
            added: HashMap<u64, usize>,
            removed: HashSet<u64>,
        }
        impl Sim<'_> {
            /// Takes `seq` out of the simulated queue, returning its size.
            fn take(&mut self, seq: u64) -> Option<usize> {
                let size = self.added.remove(&seq).or_else(|| {
                    let s = self.base?.queue.get(&seq).copied()?;
                    self.removed.insert(seq).then_some(s)
                })?;
                self.count -= 1;
                self.bytes -= size;
                Some(size)
            }
        }
        let mut sims: HashMap<&MqttString, Sim<'_>> = HashMap::new();
        let sim = |c: &'_ MqttString| -> Sim<'_> {
            let base = index.sessions.get(c);
            Sim {
                base,
                count: base.map_or(0, |b| b.queue.len()),
                bytes: base.map_or(0, |b| b.queue_bytes),
                ..Sim::default()
            }
        };
        for op in &batch.ops {
            match op {
                Op::Append {
                    client_id,
                    seq,
                    size,
                    ..
                } => {
                    let s = sims.entry(client_id).or_insert_with(|| sim(client_id));
                    s.take(*seq);
                    s.added.insert(*seq, *size);
                    s.count += 1;
                    s.bytes += size;
                    if s.count > self.limits.max_queued_messages
                        || s.bytes > self.limits.max_queued_bytes
                    {
                        return Err(StoreError::QueueFull {
                            client_id: client_id.clone(),
                            messages: s.count,
                            bytes: s.bytes,
                        });
                    }
                }
                Op::RemoveQueued { client_id, seq } => {
                    let s = sims.entry(client_id).or_insert_with(|| sim(client_id));
                    s.take(*seq);
                }
                Op::DeleteSession { client_id } => {
                    sims.insert(client_id, Sim::default());
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn translate(
        &self,
        index: &mut Index,
        op: &Op,
        clock: &Clock,
        raw: &mut BTreeMap<(Part, Vec<u8>), Option<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let Index {
            sessions,
            next_order,
            ..
        } = index;
        match op {
            Op::SaveSession { client_id, value } => {
                raw.insert(
                    (Part::Sessions, keys::session_prefix(client_id)),
                    Some(value.clone()),
                );
                sessions.entry(client_id.clone()).or_default();
            }
            Op::DeleteSession { client_id } => {
                let prefix = keys::session_prefix(client_id);
                // What is on disk, and what this batch added before.
                for part in [Part::Queues, Part::Inflight, Part::Incoming] {
                    self.kv.scan(part, &prefix, &mut |k, _| {
                        raw.insert((part, k.to_vec()), None);
                    })?;
                }
                if let Some(s) = sessions.remove(client_id) {
                    for seq in s.queue.keys() {
                        raw.insert((Part::Queues, keys::seq_key(client_id, *seq)), None);
                    }
                    for pid in s.inflight.keys() {
                        raw.insert((Part::Inflight, keys::packet_key(client_id, *pid)), None);
                    }
                    for pid in &s.incoming {
                        raw.insert((Part::Incoming, keys::packet_key(client_id, *pid)), None);
                    }
                }
                raw.insert((Part::Sessions, prefix), None);
            }
            Op::Append {
                client_id,
                seq,
                size,
                value,
            } => {
                raw.insert(
                    (Part::Queues, keys::seq_key(client_id, *seq)),
                    Some(value.clone()),
                );
                let s = sessions.entry(client_id.clone()).or_default();
                if let Some(old) = s.queue.insert(*seq, *size) {
                    s.queue_bytes -= old;
                }
                s.queue_bytes += size;
            }
            Op::RemoveQueued { client_id, seq } => {
                raw.insert((Part::Queues, keys::seq_key(client_id, *seq)), None);
                if let Some(s) = sessions.get_mut(client_id)
                    && let Some(old) = s.queue.remove(seq)
                {
                    s.queue_bytes -= old;
                }
            }
            Op::SetInflight {
                client_id,
                packet_id,
                stage,
            } => {
                let s = sessions.entry(client_id.clone()).or_default();
                let order = *s.inflight.entry(*packet_id).or_insert_with(|| {
                    *next_order += 1;
                    *next_order - 1
                });
                raw.insert(
                    (Part::Inflight, keys::packet_key(client_id, *packet_id)),
                    Some(record::encode_inflight(order, stage, clock)),
                );
            }
            Op::RemoveInflight {
                client_id,
                packet_id,
            } => {
                raw.insert(
                    (Part::Inflight, keys::packet_key(client_id, *packet_id)),
                    None,
                );
                if let Some(s) = sessions.get_mut(client_id) {
                    s.inflight.remove(packet_id);
                }
            }
            Op::AddIncoming {
                client_id,
                packet_id,
            } => {
                raw.insert(
                    (Part::Incoming, keys::packet_key(client_id, *packet_id)),
                    Some(record::encode_incoming()),
                );
                sessions
                    .entry(client_id.clone())
                    .or_default()
                    .incoming
                    .insert(*packet_id);
            }
            Op::RemoveIncoming {
                client_id,
                packet_id,
            } => {
                raw.insert(
                    (Part::Incoming, keys::packet_key(client_id, *packet_id)),
                    None,
                );
                if let Some(s) = sessions.get_mut(client_id) {
                    s.incoming.remove(packet_id);
                }
            }
            Op::SetRetained { topic, value } => {
                raw.insert(
                    (Part::Retained, topic.as_bytes().to_vec()),
                    Some(value.clone()),
                );
            }
            Op::ClearRetained { topic } => {
                raw.insert((Part::Retained, topic.as_bytes().to_vec()), None);
            }
            Op::SetWill { client_id, value } => {
                raw.insert(
                    (Part::Wills, keys::session_prefix(client_id)),
                    Some(value.clone()),
                );
            }
            Op::ClearWill { client_id } => {
                raw.insert((Part::Wills, keys::session_prefix(client_id)), None);
            }
        }
        Ok(())
    }

    pub(crate) fn recover(&self, clock: Clock) -> Result<Recovered, StoreError> {
        let mut index = self.lock();
        let mut loader = Loader::new(clock);
        self.load_into(&mut loader, &[])?;
        self.kv
            .scan(Part::Retained, &[], &mut |k, v| loader.retained(k, v))?;
        self.kv
            .scan(Part::Wills, &[], &mut |k, v| loader.will(k, v))?;
        let (recovered, raw, rebuilt) = loader.finish();
        if !raw.is_empty() {
            self.kv.apply(raw)?;
            self.sync()?;
        }
        *index = rebuilt;
        index.recovered = true;
        let r = &recovered.report;
        tracing::info!(
            sessions = r.sessions,
            queued = r.queued,
            inflight = r.inflight,
            incoming_qos2 = r.incoming_qos2,
            retained = r.retained,
            wills = r.wills,
            expired_sessions = r.expired_sessions,
            expired_messages = r.expired_messages,
            corrupt = r.corrupt,
            orphans = r.orphans,
            "store recovered"
        );
        Ok(recovered)
    }

    /// Feeds the per-session partitions under `prefix` (all of them for an
    /// empty prefix) to `loader`, sessions first.
    fn load_into(&self, loader: &mut Loader, prefix: &[u8]) -> Result<(), StoreError> {
        self.kv
            .scan(Part::Sessions, prefix, &mut |k, v| loader.session(k, v))?;
        self.kv
            .scan(Part::Queues, prefix, &mut |k, v| loader.queued(k, v))?;
        self.kv
            .scan(Part::Inflight, prefix, &mut |k, v| loader.inflight(k, v))?;
        self.kv
            .scan(Part::Incoming, prefix, &mut |k, v| loader.incoming(k, v))?;
        Ok(())
    }

    pub(crate) fn load_session(
        &self,
        client_id: &str,
        clock: Clock,
    ) -> Result<Option<LoadedSession>, StoreError> {
        let mut index = self.lock();
        if !index.recovered {
            return Err(StoreError::NotRecovered);
        }
        let mut loader = Loader::new(clock);
        self.load_into(&mut loader, &keys::session_prefix(client_id))?;
        let (recovered, raw, rebuilt) = loader.finish();
        if !raw.is_empty() {
            // Removals need not be durable: recovery would redo them.
            self.kv.apply(raw)?;
        }
        index.sessions.remove(client_id);
        index.next_order = index.next_order.max(rebuilt.next_order);
        index.sessions.extend(rebuilt.sessions);
        Ok(recovered.sessions.into_iter().next())
    }

    pub(crate) fn load_retained(&self, clock: Clock) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::new();
        self.kv.scan(
            Part::Retained,
            &[],
            &mut |k, v| match record::decode_retained(v, &clock) {
                Ok((_, Some(t))) if clock.has_passed(t) => {}
                Ok((m, _)) => out.push(m),
                Err(e) => warn_corrupt(Part::Retained, k, &e),
            },
        )?;
        Ok(out)
    }

    pub(crate) fn load_wills(&self, clock: Clock) -> Result<Vec<PendingWill>, StoreError> {
        let mut loader = Loader::new(clock);
        self.kv
            .scan(Part::Wills, &[], &mut |k, v| loader.will(k, v))?;
        Ok(loader.wills)
    }
}

fn warn_corrupt(part: Part, key: &[u8], error: &dyn Display) {
    tracing::warn!(
        partition = part.name(),
        key = %String::from_utf8_lossy(key).escape_debug(),
        %error,
        "skipping a corrupt record"
    );
}

/// A session being assembled from its records.
struct Building {
    state: SessionState,
    expires_at: Option<u64>,
    queue: Vec<(u64, Delivery)>,
    inflight: Vec<(u64, Inflight)>,
}

/// Turns scanned records into sessions, and what must be removed into
/// deletes.
struct Loader {
    clock: Clock,
    sessions: BTreeMap<MqttString, Building>,
    /// Sessions found expired: their entries go without a count of their own.
    expired: HashSet<MqttString>,
    retained: Vec<Message>,
    wills: Vec<PendingWill>,
    raw: Vec<RawOp>,
    report: RecoveryReport,
}

/// Corrupt records are logged one by one up to this many, then counted.
const MAX_CORRUPT_WARNINGS: usize = 100;

impl Loader {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            sessions: BTreeMap::new(),
            expired: HashSet::new(),
            retained: Vec::new(),
            wills: Vec::new(),
            raw: Vec::new(),
            report: RecoveryReport::default(),
        }
    }

    fn delete(&mut self, part: Part, key: &[u8]) {
        self.raw.push(RawOp {
            part,
            key: key.to_vec(),
            value: None,
        });
    }

    fn corrupt(&mut self, part: Part, key: &[u8], error: &dyn Display) {
        self.report.corrupt += 1;
        if self.report.corrupt <= MAX_CORRUPT_WARNINGS {
            warn_corrupt(part, key, error);
        }
        self.delete(part, key);
    }

    /// The session a per-session entry belongs to, or `None` after dealing
    /// with an entry of a removed or unknown session.
    fn owner(&mut self, part: Part, key: &[u8], id: &MqttString) -> Option<&mut Building> {
        if !self.sessions.contains_key(id) {
            if !self.expired.contains(id) {
                self.report.orphans += 1;
                tracing::debug!(partition = part.name(), client_id = %id, "removing an entry of an unknown session");
            }
            self.delete(part, key);
            return None;
        }
        self.sessions.get_mut(id)
    }

    fn session(&mut self, key: &[u8], value: &[u8]) {
        let Some((id, [])) = keys::split_key::<0>(key) else {
            return self.corrupt(Part::Sessions, key, &"malformed key");
        };
        let rec = match record::decode_session(id.clone(), value) {
            Ok(r) => r,
            Err(e) => return self.corrupt(Part::Sessions, key, &e),
        };
        let interval = rec.state.expiry_interval;
        // Saved while connected (no deadline): the session ended when the
        // broker stopped, which we take to be now. The deadline is written
        // so that another restart does not move it again.
        let (deadline, derived) = match rec.expires_at {
            Some(t) => (Some(t), false),
            None if interval == u32::MAX => (None, false),
            None => {
                let t = self
                    .clock
                    .unix_ms()
                    .saturating_add(u64::from(interval) * 1000);
                (Some(t), true)
            }
        };
        if deadline.is_some_and(|t| self.clock.has_passed(t)) {
            self.report.expired_sessions += 1;
            self.expired.insert(id);
            return self.delete(Part::Sessions, key);
        }
        if derived {
            self.raw.push(RawOp {
                part: Part::Sessions,
                key: key.to_vec(),
                value: Some(record::encode_session(&rec.state, deadline)),
            });
        }
        self.sessions.insert(
            id,
            Building {
                state: rec.state,
                expires_at: deadline,
                queue: Vec::new(),
                inflight: Vec::new(),
            },
        );
    }

    fn queued(&mut self, key: &[u8], value: &[u8]) {
        let Some((id, seq)) = keys::split_key::<8>(key) else {
            return self.corrupt(Part::Queues, key, &"malformed key");
        };
        let clock = self.clock;
        let decoded = record::decode_queued(value, &clock);
        let Some(session) = self.owner(Part::Queues, key, &id) else {
            return;
        };
        match decoded {
            Err(e) => self.corrupt(Part::Queues, key, &e),
            Ok((_, Some(t))) if clock.has_passed(t) => {
                session.state.drops.expired += 1;
                self.report.expired_messages += 1;
                self.delete(Part::Queues, key);
            }
            Ok((d, _)) => session.queue.push((u64::from_be_bytes(seq), d)),
        }
    }

    fn inflight(&mut self, key: &[u8], value: &[u8]) {
        let Some((id, pid)) = keys::split_key::<2>(key) else {
            return self.corrupt(Part::Inflight, key, &"malformed key");
        };
        let decoded = record::packet_id(u16::from_be_bytes(pid))
            .and_then(|p| record::decode_inflight(value, &self.clock).map(|r| (p, r)));
        let Some(session) = self.owner(Part::Inflight, key, &id) else {
            return;
        };
        match decoded {
            Ok((packet_id, (order, stage))) => {
                session
                    .inflight
                    .push((order, Inflight { packet_id, stage }));
            }
            Err(e) => self.corrupt(Part::Inflight, key, &e),
        }
    }

    fn incoming(&mut self, key: &[u8], value: &[u8]) {
        let Some((id, pid)) = keys::split_key::<2>(key) else {
            return self.corrupt(Part::Incoming, key, &"malformed key");
        };
        let decoded = record::packet_id(u16::from_be_bytes(pid))
            .and_then(|p| record::decode_incoming(value).map(|()| p));
        let Some(session) = self.owner(Part::Incoming, key, &id) else {
            return;
        };
        match decoded {
            Ok(p) => session.state.incoming_qos2.push(p),
            Err(e) => self.corrupt(Part::Incoming, key, &e),
        }
    }

    fn retained(&mut self, key: &[u8], value: &[u8]) {
        match record::decode_retained(value, &self.clock) {
            Err(e) => self.corrupt(Part::Retained, key, &e),
            Ok((m, _)) if m.topic.as_bytes()[..] != key[..] => {
                self.corrupt(Part::Retained, key, &"topic differs from key");
            }
            Ok((_, Some(t))) if self.clock.has_passed(t) => {
                self.report.expired_messages += 1;
                self.delete(Part::Retained, key);
            }
            Ok((m, _)) => self.retained.push(m),
        }
    }

    fn will(&mut self, key: &[u8], value: &[u8]) {
        let Some((client_id, [])) = keys::split_key::<0>(key) else {
            return self.corrupt(Part::Wills, key, &"malformed key");
        };
        match record::decode_will(value) {
            Err(e) => self.corrupt(Part::Wills, key, &e),
            Ok((will, t)) => self.wills.push(PendingWill {
                client_id,
                will: ScheduledWill {
                    will,
                    publish_at: self.clock.to_instant(t),
                },
            }),
        }
    }

    fn finish(self) -> (Recovered, Vec<RawOp>, Index) {
        let mut report = self.report;
        let mut index = Index::default();
        let mut sessions = Vec::with_capacity(self.sessions.len());
        for (id, b) in self.sessions {
            let Building {
                mut state,
                expires_at,
                mut queue,
                mut inflight,
            } = b;
            queue.sort_unstable_by_key(|(seq, _)| *seq);
            inflight.sort_unstable_by_key(|(order, _)| *order);
            state.incoming_qos2.sort_unstable();
            let mut si = SessionIndex::default();
            for (seq, d) in &queue {
                si.queue.insert(*seq, d.message.size());
                si.queue_bytes += d.message.size();
            }
            for (order, i) in &inflight {
                si.inflight.insert(i.packet_id.get(), *order);
                index.next_order = index.next_order.max(order + 1);
            }
            si.incoming = state.incoming_qos2.iter().map(|p| p.get()).collect();
            report.queued += queue.len();
            report.inflight += inflight.len();
            report.incoming_qos2 += state.incoming_qos2.len();
            let next_seq = queue.last().map_or(0, |(seq, _)| seq + 1);
            let (queue_seqs, queued): (Vec<u64>, _) = queue.into_iter().unzip();
            state.queued = queued;
            state.queued_bytes = si.queue_bytes;
            state.inflight = inflight.into_iter().map(|(_, i)| i).collect();
            index.sessions.insert(id, si);
            sessions.push(LoadedSession {
                state,
                queue_seqs,
                next_seq,
                expires_at: expires_at.map(|t| self.clock.to_instant(t)),
            });
        }
        report.sessions = sessions.len();
        report.retained = self.retained.len();
        report.wills = self.wills.len();
        let recovered = Recovered {
            sessions,
            retained: self.retained,
            wills: self.wills,
            report,
        };
        (recovered, self.raw, index)
    }
}

/// Implements [`crate::Store`] for a type with an `engine` field.
macro_rules! forward_store {
    ($ty:ty) => {
        impl $crate::Store for $ty {
            fn recover(&self, now: $crate::Clock) -> Result<$crate::Recovered, $crate::StoreError> {
                self.engine.recover(now)
            }
            fn write(&self, batch: &$crate::Batch) -> Result<(), $crate::StoreError> {
                self.engine.write(batch)
            }
            fn sync(&self) -> Result<(), $crate::StoreError> {
                self.engine.sync()
            }
            fn load_session(
                &self,
                client_id: &str,
                now: $crate::Clock,
            ) -> Result<Option<$crate::LoadedSession>, $crate::StoreError> {
                self.engine.load_session(client_id, now)
            }
            fn load_retained(
                &self,
                now: $crate::Clock,
            ) -> Result<Vec<mqtt_session::Message>, $crate::StoreError> {
                self.engine.load_retained(now)
            }
            fn load_wills(
                &self,
                now: $crate::Clock,
            ) -> Result<Vec<$crate::PendingWill>, $crate::StoreError> {
                self.engine.load_wills(now)
            }
            fn stats(&self) -> $crate::StoreStats {
                self.engine.stats()
            }
        }
    };
}
pub(crate) use forward_store;
