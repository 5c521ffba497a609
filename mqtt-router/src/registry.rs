//! The session registry: which session each client identifier has, and
//! which connection owns it.
//!
//! One client identifier is connected at most once [MQTT-3.1.4-3]. What
//! makes that hold when several CONNECT packets with one identifier arrive
//! at the same moment is that a CONNECT decides everything in one step,
//! under whatever lock the server keeps the registry in:
//! [`Registry::claim`] makes the new connection the owner, says which
//! connection owned the session before (to be told to leave with 0x8E and
//! to hand its state over) and, on a clean start, puts the new session in
//! place of the old one. A second CONNECT that comes a moment later claims
//! from the first, never beside it.
//!
//! ```text
//!             claim (no entry)               claim (clean start: new session,
//!   (none) ────────────────────▶ owned ◀──┐     the old one returned to end)
//!     ▲                          │  ▲     └─ claim by another connection:
//!     │                 release  │  │        the previous owner returned
//!     │ remove_offline           ▼  │ claim
//!     └───────────────────────  offline
//! ```
//!
//! A connection that ends calls [`Registry::release`] naming itself: if
//! another connection claimed the session meanwhile, nothing changes (the
//! new owner is waiting for the state). Expiry removes a session only
//! while no connection owns it ([`Registry::remove_offline`]), so it never
//! races a CONNECT that resumes it.
//!
//! ```
//! use mqtt_codec::MqttString;
//! use mqtt_router::Registry;
//!
//! // Sessions are numbers here; owners carry what reaches their
//! // connection (a channel, in a server).
//! let mut registry: Registry<u32, &str> = Registry::new();
//! let id = MqttString::from_static("sensor-7");
//! let first = registry.claim(&id, 1, "conn 1", false, |_| 100);
//! assert_eq!((first.session, first.previous), (100, None));
//! // A second CONNECT with the same client id takes the session over.
//! let second = registry.claim(&id, 2, "conn 2", false, |_| 200);
//! assert_eq!((second.session, second.previous), (100, Some((1, "conn 1"))));
//! // What reaches the owner, for a request that changes nothing.
//! assert_eq!(registry.owning(&id), Some((2, &"conn 2")));
//! // The first connection ends: the session stays with the second.
//! assert!(!registry.release(&id, 1));
//! assert_eq!(registry.owner(&id), Some(2));
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use mqtt_codec::MqttString;

/// A connection's number (unique for the server's lifetime) and what the
/// server needs to reach it (e.g. a channel).
type Owner<O> = (u64, O);

#[derive(Debug)]
struct Entry<S, O> {
    session: S,
    owner: Option<Owner<O>>,
}

/// What a CONNECT's [`Registry::claim`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim<S, O> {
    /// The session the claimant now owns: the existing one, or a new one
    /// (no session before, or a clean start).
    pub session: S,
    /// The session a clean start replaced: the caller ends it, once its
    /// previous owner (if any) has handed its state over.
    pub replaced: Option<S>,
    /// The connection that owned the session until now: it must close
    /// with 0x8E (Session taken over) and hand the session's state to the
    /// claimant [MQTT-3.1.4-3].
    pub previous: Option<Owner<O>>,
}

/// Client identifier → session and owning connection. `S` is the
/// server's session handle (cheap to clone, e.g. an `Arc`); `O` is how a
/// server reaches the owning connection.
#[derive(Debug)]
pub struct Registry<S, O> {
    entries: HashMap<MqttString, Entry<S, O>>,
}

impl<S, O> Default for Registry<S, O> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<S: Clone, O> Registry<S, O> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A CONNECT with `client_id` was accepted by authentication:
    /// connection `connection` (reached through `control`) owns the
    /// session from now on, whoever owned it before. `new` makes a session
    /// when there is none, or, with `clean_start`, to replace the one
    /// there (it is given the old one, e.g. to carry a sequence on).
    pub fn claim(
        &mut self,
        client_id: &MqttString,
        connection: u64,
        control: O,
        clean_start: bool,
        new: impl FnOnce(Option<&S>) -> S,
    ) -> Claim<S, O> {
        match self.entries.entry(client_id.clone()) {
            MapEntry::Vacant(v) => {
                let session = new(None);
                v.insert(Entry {
                    session: session.clone(),
                    owner: Some((connection, control)),
                });
                Claim {
                    session,
                    replaced: None,
                    previous: None,
                }
            }
            MapEntry::Occupied(mut o) => {
                let entry = o.get_mut();
                let previous = entry.owner.replace((connection, control));
                let replaced = clean_start.then(|| {
                    let fresh = new(Some(&entry.session));
                    std::mem::replace(&mut entry.session, fresh)
                });
                Claim {
                    session: entry.session.clone(),
                    replaced,
                    previous,
                }
            }
        }
    }

    /// Connection `connection` ended. Returns whether it still owned its
    /// session, which stays registered, offline; false when another
    /// connection claimed it meanwhile (that one waits for the state), or
    /// when the session is gone.
    pub fn release(&mut self, client_id: &MqttString, connection: u64) -> bool {
        match self.entries.get_mut(client_id) {
            Some(e) if e.owner.as_ref().is_some_and(|(c, _)| *c == connection) => {
                e.owner = None;
                true
            }
            _ => false,
        }
    }

    /// Registers an offline session (restored from a store). Returns the
    /// session it replaced, if any.
    pub fn insert_offline(&mut self, client_id: MqttString, session: S) -> Option<S> {
        self.entries
            .insert(
                client_id,
                Entry {
                    session,
                    owner: None,
                },
            )
            .map(|e| e.session)
    }

    /// Removes the session of `client_id` if `is_it` recognises it and no
    /// connection owns it (session expiry, or a session that ended):
    /// returns it. A session claimed by a new connection is never removed.
    pub fn remove_offline(
        &mut self,
        client_id: &MqttString,
        is_it: impl FnOnce(&S) -> bool,
    ) -> Option<S> {
        match self.entries.entry(client_id.clone()) {
            MapEntry::Occupied(o) if o.get().owner.is_none() && is_it(&o.get().session) => {
                Some(o.remove().session)
            }
            _ => None,
        }
    }

    /// The session of `client_id`, connected or not.
    pub fn get(&self, client_id: &MqttString) -> Option<&S> {
        self.entries.get(client_id).map(|e| &e.session)
    }

    /// The connection owning the session of `client_id`, if connected.
    pub fn owner(&self, client_id: &MqttString) -> Option<u64> {
        self.entries
            .get(client_id)
            .and_then(|e| e.owner.as_ref().map(|(c, _)| *c))
    }

    /// The connection owning the session of `client_id`, if connected,
    /// with what reaches it (to ask it something, or to close it as an
    /// operator asked). Nothing changes: ownership moves only by
    /// [`Registry::claim`] and [`Registry::release`].
    pub fn owning(&self, client_id: &MqttString) -> Option<(u64, &O)> {
        self.entries
            .get(client_id)
            .and_then(|e| e.owner.as_ref().map(|(c, o)| (*c, o)))
    }

    /// Sessions registered, connected or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every session, with whether a connection owns it.
    pub fn sessions(&self) -> impl Iterator<Item = (&S, bool)> {
        self.entries
            .values()
            .map(|e| (&e.session, e.owner.is_some()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Connection number, client id index, clean start.
        Claim(u64, u8, bool),
        /// A connection ends: the one that owns client id `.0`, or the
        /// connection number `.1` if it does not.
        Release(u8, u64),
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..8, 0u8..3, any::<bool>()).prop_map(|(c, i, s)| Op::Claim(c, i, s)),
            (0u8..3, 1u64..8).prop_map(|(i, c)| Op::Release(i, c)),
            (0u8..3).prop_map(Op::Expire),
        ]
    }

    fn id(i: u8) -> MqttString {
        MqttString::try_from(format!("c{i}")).unwrap()
    }

    proptest! {
        /// Against a model: each client id has at most one owner, the
        /// last connection that claimed it and has not ended; a claim
        /// names the owner it displaced; a clean start makes a new
        /// session and hands back the old one; expiry never removes an
        /// owned session.
        #[test]
        fn registry_agrees_with_a_model(ops in proptest::collection::vec(op(), 0..60)) {
            let mut registry: Registry<u32, u64> = Registry::new();
            // client id → (session, owner)
            let mut model: HashMap<u8, (u32, Option<u64>)> = HashMap::new();
            let mut next_session = 0u32;
            for op in ops {
                match op {
                    Op::Claim(c, i, clean) => {
                        let claim = registry.claim(&id(i), c, c, clean, |_| {
                            next_session += 1;
                            next_session
                        });
                        match model.get_mut(&i) {
                            None => {
                                prop_assert_eq!(claim.previous, None);
                                prop_assert_eq!(claim.replaced, None);
                                model.insert(i, (claim.session, Some(c)));
                            }
                            Some((session, owner)) => {
                                prop_assert_eq!(claim.previous.map(|p| p.0), *owner);
                                if clean {
                                    prop_assert_eq!(claim.replaced, Some(*session));
                                    prop_assert_ne!(claim.session, *session);
                                } else {
                                    prop_assert_eq!(claim.replaced, None);
                                    prop_assert_eq!(claim.session, *session);
                                }
                                *session = claim.session;
                                *owner = Some(c);
                            }
                        }
                    }
                    Op::Release(i, c) => {
                        let owner = model.get(&i).and_then(|(_, o)| *o);
                        // The owner ending, or another connection.
                        let ending = owner.unwrap_or(c);
                        let released = registry.release(&id(i), ending);
                        prop_assert_eq!(released, owner == Some(ending));
                        if released {
                            model.get_mut(&i).unwrap().1 = None;
                        }
                        prop_assert!(!registry.release(&id(i), 100));
                    }
                    Op::Expire(i) => {
                        let removed = registry.remove_offline(&id(i), |_| true);
                        match model.get(&i) {
                            Some((s, None)) => {
                                prop_assert_eq!(removed, Some(*s));
                                model.remove(&i);
                            }
                            _ => prop_assert_eq!(removed, None),
                        }
                    }
                }
                for i in 0..3 {
                    let (session, owner) = model.get(&i).map_or((None, None), |(s, o)| (Some(*s), *o));
                    prop_assert_eq!(registry.get(&id(i)).copied(), session);
                    prop_assert_eq!(registry.owner(&id(i)), owner);
                }
                prop_assert_eq!(registry.len(), model.len());
            }
        }
    }

    #[test]
    fn remove_offline_spares_another_session_of_the_client_id() {
        let mut registry: Registry<u32, ()> = Registry::new();
        let c = id(0);
        registry.insert_offline(c.clone(), 1);
        assert_eq!(registry.remove_offline(&c, |s| *s == 2), None);
        assert_eq!(registry.remove_offline(&c, |s| *s == 1), Some(1));
        assert!(registry.is_empty());
    }
}
