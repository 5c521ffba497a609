//! What the operator's console (`crate::admin`) reads and does, through
//! the core's own structures: the session registry, the router's
//! subscriptions, the retained store.
//!
//! Views copy what they show out from under each lock, one lock at a
//! time, and never wait while holding one. Actions take the paths the
//! broker's own take: a disconnect is a request on the connection's
//! control channel, as a takeover is; a discarded session ends as an
//! expired one does; a retained message is cleared as an empty retained
//! PUBLISH clears it (and its stored copy with it), without delivering
//! anything; a publication is routed as a `$SYS` update is.

use std::time::Duration;

use mqtt_topic::TopicFilter;

use crate::handle::{ClientInfo, ControlTx, Live, Unsent};

use super::*;

/// How long an operator's question waits for a connection's answer.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an operator's request about a session was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No session has this client identifier.
    NoSession,
    /// The session has no connection (to disconnect).
    NotConnected,
    /// The session has a connection (so it cannot be discarded).
    Connected,
    /// The connection has as many requests waiting as its channel holds.
    Busy,
}

/// A session as the console shows it.
#[derive(Debug, Clone)]
pub(crate) struct SessionSummary {
    pub(crate) client_id: MqttString,
    pub(crate) connected: bool,
    /// Stored (persistence on, expiry above 0).
    pub(crate) persistent: bool,
    /// Publishers stopped waiting for it (see `SessionHandle::congested`).
    pub(crate) congested: bool,
    /// How its client last connected.
    pub(crate) info: Option<Arc<ClientInfo>>,
    /// Deliveries waiting in its mailbox, and their bytes.
    pub(crate) mailbox: usize,
    pub(crate) mailbox_bytes: usize,
    /// What a parked (offline) session holds.
    pub(crate) parked: Option<ParkedSummary>,
}

/// What an offline session holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParkedSummary {
    /// Its Session Expiry Interval, in seconds (`u32::MAX`: never).
    pub(crate) expiry_interval: u32,
    /// When it ends if no client resumes it.
    pub(crate) expires_at: Option<Instant>,
    /// Deliveries in its own queue.
    pub(crate) queued: usize,
    /// QoS 1/2 deliveries sent and not acknowledged before it went.
    pub(crate) inflight: usize,
}

/// One subscription, for the console.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionView {
    pub(crate) client_id: MqttString,
    /// As the client wrote it (`$share/{group}/{filter}` for a shared one).
    pub(crate) filter: String,
    pub(crate) qos: QoS,
    pub(crate) shared: bool,
}

/// The broker's gauges: what it holds now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    /// Sessions held, connected or not.
    pub(crate) sessions: usize,
    /// Deliveries waiting in session mailboxes, and their bytes.
    pub(crate) queued: usize,
    pub(crate) queued_bytes: usize,
    /// Subscriptions in the routing index.
    pub(crate) subscriptions: usize,
    /// Retained messages held, and their bytes.
    pub(crate) retained: usize,
    pub(crate) retained_bytes: usize,
}

impl Broker {
    /// Every session with whether a connection owns it, copied out of the
    /// registry (its lock is released before anything else is read).
    pub(crate) fn session_handles(&self) -> Vec<(Arc<SessionHandle>, bool)> {
        lock(&self.sessions)
            .sessions()
            .map(|(h, connected)| (h.clone(), connected))
            .collect()
    }

    /// The session of `client_id`, with whether a connection owns it.
    pub(crate) fn session_handle(&self, client_id: &str) -> Option<(Arc<SessionHandle>, bool)> {
        let id = MqttString::try_from(client_id.to_owned()).ok()?;
        let sessions = lock(&self.sessions);
        let handle = sessions.get(&id)?.clone();
        Some((handle, sessions.owner(&id).is_some()))
    }

    /// What the console shows of one session.
    pub(crate) fn summary(&self, handle: &SessionHandle, connected: bool) -> SessionSummary {
        let (mailbox, mailbox_bytes) = {
            let m = lock(&handle.mailbox);
            (m.len(), m.bytes())
        };
        let parked = lock(&handle.offline).as_ref().map(|p| ParkedSummary {
            expiry_interval: p.state.expiry_interval,
            expires_at: p.expires_at,
            queued: p.state.queued.len(),
            inflight: p.state.inflight.len(),
        });
        SessionSummary {
            client_id: handle.client_id.clone(),
            connected,
            persistent: handle.is_persistent(),
            congested: handle.is_congested(),
            info: lock(&handle.info).clone(),
            mailbox,
            mailbox_bytes,
            parked,
        }
    }

    /// The control channel of the connection owning `client_id`'s session.
    fn control_of(&self, client_id: &str) -> Result<ControlTx, Refused> {
        let id = MqttString::try_from(client_id.to_owned()).map_err(|_| Refused::NoSession)?;
        let sessions = lock(&self.sessions);
        if sessions.get(&id).is_none() {
            return Err(Refused::NoSession);
        }
        sessions
            .owning(&id)
            .map(|(_, control)| control.clone())
            .ok_or(Refused::NotConnected)
    }

    /// Asks the connection of `client_id` what only it knows; `None` if it
    /// has none, or did not answer within [`INSPECT_TIMEOUT`].
    pub(crate) async fn inspect(&self, client_id: &str) -> Option<Live> {
        let control = self.control_of(client_id).ok()?;
        let (tx, rx) = oneshot::channel();
        control.send(Control::Inspect(tx)).ok()?;
        tokio::time::timeout(INSPECT_TIMEOUT, rx).await.ok()?.ok()
    }

    /// Closes the connection of `client_id` as an operator asked: with
    /// DISCONNECT 0x98 (Administrative action) for an MQTT 5.0 client. The
    /// session is then kept or ended as when a client goes (its expiry
    /// decides), and its will is published.
    pub(crate) fn disconnect(&self, client_id: &str) -> Result<(), Refused> {
        let control = self.control_of(client_id)?;
        control.send(Control::Disconnect).map_err(|e| match e {
            Unsent::Full => Refused::Busy,
            Unsent::Gone => Refused::NotConnected,
        })
    }

    /// Ends the offline session of `client_id` now, as its expiry would:
    /// its subscriptions leave the router, its stored state goes, and a
    /// will waiting for its delay is published now (a will goes at the
    /// earlier of its delay and the session's end: `Timers::on_reconnect`
    /// with the session ending). A connected session is refused:
    /// disconnect its client first.
    pub(crate) fn discard_session(&self, client_id: &str, now: Instant) -> Result<(), Refused> {
        let id = MqttString::try_from(client_id.to_owned()).map_err(|_| Refused::NoSession)?;
        // Under the registry's lock, as expiry: a CONNECT that claims the
        // session first keeps it, one that comes after gets a new one.
        let (handle, parked) = {
            let mut sessions = lock(&self.sessions);
            if sessions.get(&id).is_none() {
                return Err(Refused::NoSession);
            }
            if sessions.owner(&id).is_some() {
                return Err(Refused::Connected);
            }
            let handle = sessions
                .remove_offline(&id, |_| true)
                .ok_or(Refused::Connected)?;
            let parked = lock(&handle.offline).take();
            (handle, parked)
        };
        tracing::info!(client_id = %id, "session discarded by an operator");
        self.on_reconnect_will(&id, true, now);
        let state = parked.map_or_else(|| SessionState::new(id, 0), |p| p.state);
        self.end_session(&handle, state, now);
        Ok(())
    }

    /// Every subscription that `keep` accepts (given the client
    /// identifier and the filter as written), in no particular order.
    pub(crate) fn subscriptions(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<SubscriptionView> {
        let router = self.router.read().unwrap_or_else(|p| p.into_inner());
        let plain = router
            .subscriptions()
            .filter(|(s, filter, _)| keep(s.0.client_id.as_str(), filter.as_str()))
            .map(|(s, filter, qos)| SubscriptionView {
                client_id: s.0.client_id.clone(),
                filter: filter.as_str().to_owned(),
                qos,
                shared: false,
            });
        let shared = router
            .shared_subscriptions()
            .filter(|(s, share, _)| keep(s.0.client_id.as_str(), share.as_str()))
            .map(|(s, share, qos)| SubscriptionView {
                client_id: s.0.client_id.clone(),
                filter: share.as_str().to_owned(),
                qos,
                shared: true,
            });
        plain.chain(shared).collect()
    }

    /// The unexpired retained messages whose topic matches `filter` (as a
    /// new subscription to it would receive them).
    pub(crate) fn retained_matching(
        &self,
        filter: &TopicFilter,
        now: Instant,
    ) -> Vec<Arc<Message>> {
        let mut found = Vec::new();
        self.retained
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .matching(filter, now, |m| found.push(m.clone()));
        found
    }

    /// The retained message of `topic`, unless it expired.
    pub(crate) fn retained_message(&self, topic: &TopicName, now: Instant) -> Option<Arc<Message>> {
        self.retained
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .filter(|m| !m.is_expired(now))
            .cloned()
    }

    /// Removes the retained message of `topic`, and its stored copy;
    /// returns whether there was one. Nothing is delivered.
    pub(crate) fn clear_retained(&self, topic: &TopicName, now: Instant) -> bool {
        let Ok(name) = MqttString::try_from(topic.as_str().to_owned()) else {
            return false;
        };
        let empty = Arc::new(Message {
            topic: name.clone(),
            payload: bytes::Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
        });
        let removed = self
            .retained
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set(topic.clone(), empty)
            .is_some();
        if removed
            && !topic.as_str().starts_with("$SYS/")
            && let Some(persist) = &self.persist
        {
            let mut b = Persist::batch(now);
            b.clear_retained(&name);
            persist.submit_logged(b);
        }
        removed
    }

    /// Publishes `message` as the broker itself does (`$SYS`, wills): no
    /// publisher, so no ACL of a publisher applies; subscribers' ACLs do.
    /// Returns how many sessions it matched.
    pub(crate) fn publish_as_operator(
        &self,
        topic: &TopicName,
        message: Message,
        now: Instant,
    ) -> usize {
        self.publish(topic, Arc::new(message), Publishing::default(), now)
            .matched
    }

    /// What the broker holds now. Sums over every session's mailbox,
    /// locking each in turn.
    pub(crate) fn gauges(&self) -> Gauges {
        let sessions = self.session_handles();
        let mut g = Gauges {
            sessions: sessions.len(),
            ..Gauges::default()
        };
        for (h, _) in &sessions {
            let mailbox = lock(&h.mailbox);
            g.queued += mailbox.len();
            g.queued_bytes += mailbox.bytes();
        }
        g.subscriptions = self.router.read().unwrap_or_else(|p| p.into_inner()).len();
        let retained = self.retained.read().unwrap_or_else(|p| p.into_inner());
        g.retained = retained.len();
        g.retained_bytes = retained.bytes();
        g
    }
}
