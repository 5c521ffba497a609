//! A bridge's side of this broker: its session `$bridge/NAME`, claimed in
//! the registry as a connection claims a client's, subscribed to the local
//! filters of the rules that send out, and stored with `--data-dir`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mqtt_codec::{MqttString, PacketId, QoS, RetainHandling, SubscriptionOptions};
use mqtt_session::{Delivery, Inflight, Message, QueueLimits, SessionState, SubscriptionRecord};
use mqtt_store::Batch;
use mqtt_topic::{TopicFilter, TopicName};

use super::RESERVED_PREFIX;
use super::config::BridgeConfig;
use crate::broker::{Broker, CommitDone, Publishing, Routed};
use crate::handle::{Control, ControlRx, Live, SessionHandle, SessionRef, control_channel, lock};
use crate::persist::Persist;

/// The client identifier of a bridge's local session.
fn client_id(name: &str) -> MqttString {
    // A valid bridge name makes a short, valid string.
    MqttString::try_from(format!("{RESERVED_PREFIX}{name}")).unwrap_or_default()
}

/// Ends the sessions (and what is stored for them) of bridges that are no
/// longer configured: nothing would ever take their queues.
pub(super) fn end_unconfigured(broker: &Broker) {
    let names: Vec<MqttString> = broker
        .config
        .bridges
        .iter()
        .map(|b| client_id(&b.name))
        .collect();
    let stale: Vec<Arc<SessionHandle>> = lock(&broker.sessions)
        .sessions()
        .filter(|(h, owned)| {
            !owned
                && h.client_id.as_str().starts_with(RESERVED_PREFIX)
                && !names.contains(&h.client_id)
        })
        .map(|(h, _)| h.clone())
        .collect();
    let now = tokio::time::Instant::now().into_std();
    for handle in stale {
        let removed = lock(&broker.sessions)
            .remove_offline(&handle.client_id, |h| h.id == handle.id)
            .is_some();
        let state = lock(&handle.offline).take();
        if let (true, Some(parked)) = (removed, state) {
            tracing::info!(client_id = %handle.client_id, "the session of a bridge no longer configured is ended, with what it held");
            // Not in the registry any more: `end_session` only finishes.
            broker.end_session(&handle, parked.state, now);
        }
    }
}

/// A bridge's local session, owned by the bridge's task for its whole
/// life (nothing can take it over: no network client may claim its
/// client identifier).
pub(super) struct Local {
    pub(super) broker: Arc<Broker>,
    pub(super) me: SessionRef,
    pub(super) client_id: MqttString,
    pub(super) persistent: bool,
    /// Requests to the session's owner, through the registry: an
    /// operator's (the admin API), answered by [`Local::answer`].
    pub(super) control: ControlRx,
}

impl Local {
    /// Claims the session (restored from the store, or new), puts the
    /// subscriptions of the configuration in place of the stored ones, and
    /// stores the session record. Returns what the store had queued or in
    /// flight for it.
    pub(super) fn claim(broker: &Arc<Broker>, config: &BridgeConfig) -> (Self, SessionState) {
        let client_id = client_id(&config.name);
        let (tx, rx) = control_channel();
        let connection = broker.next_id();
        let claim = lock(&broker.sessions).claim(&client_id, connection, tx, false, |_| {
            Arc::new(SessionHandle::new(broker.next_id(), client_id.clone()))
        });
        let handle = claim.session;
        let _ = handle
            .own_limits
            .set(Box::new(config.queue_limits(&broker.queue_limits)));
        let mut state = lock(&handle.offline)
            .take()
            .map(|p| p.state)
            .unwrap_or_else(|| SessionState::new(client_id.clone(), u32::MAX));
        state.expiry_interval = u32::MAX;
        let persistent = broker.persist.is_some();
        handle.persistent.store(persistent, Ordering::Release);
        let me = SessionRef(handle);
        let wanted = subscriptions(config);
        let old = std::mem::replace(&mut state.subscriptions, wanted);
        // Stored before any delivery can be appended for it: recovery drops
        // the queue of a session it does not know.
        if let Some(persist) = &broker.persist {
            let mut b = Persist::batch(tokio::time::Instant::now().into_std());
            b.save_session(&state, None);
            persist.submit_logged(b);
        }
        let mut router = broker.router_mut();
        for filter in old.keys() {
            if !state.subscriptions.contains_key(filter) {
                router.unsubscribe(&me, filter);
            }
        }
        for (filter, record) in &state.subscriptions {
            if let Err(e) = router.subscribe(me.clone(), filter, record.options, None) {
                tracing::error!(%filter, error = %e, "bridge subscription not made");
            }
        }
        drop(router);
        let local = Self {
            broker: broker.clone(),
            me,
            client_id,
            persistent,
            control: rx,
        };
        (local, state)
    }

    /// Answers a request of the control channel: `live` is what the
    /// bridge has in flight and queued beyond the mailbox. Returns whether
    /// an operator asked to disconnect (the bridge then reconnects).
    pub(super) fn answer(&self, request: Control, live: Live) -> bool {
        match request {
            // No client may claim a bridge's client identifier.
            Control::TakeOver(reply) => {
                let _ = reply.send(None);
                false
            }
            Control::Inspect(reply) => {
                let _ = reply.send(live);
                false
            }
            Control::Disconnect => {
                tracing::info!("bridge connection closed by an operator; it reconnects");
                true
            }
            // A bridge's session is not claimed in the cluster.
            #[cfg(feature = "cluster")]
            Control::TakenOverElsewhere => false,
        }
    }

    pub(super) fn handle(&self) -> &Arc<SessionHandle> {
        &self.me.0
    }

    fn limits(&self) -> &QueueLimits {
        self.handle().limits(&self.broker.queue_limits)
    }

    /// Whether the remote broker is connected: while not, the session is
    /// offline for publishers (a full queue drops by its policy; nobody
    /// waits for it).
    pub(super) fn set_connected(&self, connected: bool) {
        let h = self.handle();
        h.connected.store(connected, Ordering::Release);
        if !connected {
            // Publishers waiting for room stop waiting.
            h.space.notify_waiters();
        }
    }

    /// Takes up to `max` deliveries from the mailbox, in order, into `f`;
    /// expired ones are dropped (counted in the mailbox) and forgotten
    /// from the store.
    pub(super) fn pull(
        &self,
        max: usize,
        now: Instant,
        batch: &mut Option<Batch>,
        mut f: impl FnMut(Delivery),
    ) {
        if max == 0 {
            return;
        }
        let h = self.handle();
        let mut pulled = Vec::new();
        let mut expired = Vec::new();
        let mut mailbox = lock(&h.mailbox);
        while pulled.len() < max {
            let Some(d) = mailbox.pop_with(now, |d| expired.push(d.tag)) else {
                break;
            };
            pulled.push(d);
        }
        if !mailbox.is_empty() {
            // Come back for the rest.
            h.notify.notify_one();
        }
        if h.is_congested() && self.broker.delivery.relieved(mailbox.len(), self.limits()) {
            h.congested.store(false, Ordering::Relaxed);
        }
        drop(mailbox);
        if !pulled.is_empty() {
            h.space.notify_waiters();
        }
        for tag in expired {
            self.forget_queued(tag, batch);
        }
        pulled.into_iter().for_each(&mut f);
    }

    /// Removes a queued message from the store (0: not stored).
    pub(super) fn forget_queued(&self, tag: u64, batch: &mut Option<Batch>) {
        if tag != 0 && self.persistent {
            batch_of(batch).remove_queued(&self.client_id, tag);
        }
    }

    /// Stores that the remote broker may hold `packet_id` (a QoS 2
    /// message sent and not completed): after a restart it is released
    /// before being used again (see `link.rs`).
    pub(super) fn hold_id(&self, packet_id: PacketId, batch: &mut Option<Batch>) {
        batch_of(batch).set_inflight(
            &self.client_id,
            &Inflight {
                packet_id,
                stage: mqtt_session::InflightStage::Released,
            },
        );
    }

    /// Forgets a stored packet identifier.
    pub(super) fn release_id(&self, packet_id: PacketId, batch: &mut Option<Batch>) {
        batch_of(batch).remove_inflight(&self.client_id, packet_id);
    }

    /// Publishes a message from the remote broker here, as the bridge's
    /// session: No Local keeps it from the bridge's own subscriptions.
    /// `done` is called once what it needs stored is durable (then
    /// [`Routed::committing`]).
    pub(super) fn publish(
        &self,
        topic: &TopicName,
        message: Arc<Message>,
        done: Option<CommitDone>,
        now: Instant,
    ) -> Routed {
        let how = Publishing {
            publisher: Some(&self.me),
            // Not waiting for room: one connection carries the remote
            // broker's every publisher, and waiting for one slow subscriber
            // here would hold up every topic coming in. A full queue drops
            // by its policy (counted), as it does for a will or `$SYS`,
            // and as mosquitto's bridges do.
            publisher_may_wait: false,
            done,
            ..Publishing::default()
        };
        self.broker.publish(topic, message, how, now)
    }

    /// The retained messages of this broker that the rules send out, as
    /// deliveries of their topic: what a remote broker that has no session
    /// of the bridge (a new one, or one that lost its state) is sent.
    pub(super) fn retained(&self, config: &BridgeConfig, now: Instant) -> Vec<Delivery> {
        let store = self
            .broker
            .retained
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (filter, record) in subscriptions(config) {
            if let Ok(filter) = TopicFilter::new(filter.as_str()) {
                store.deliveries_for(&filter, record.options.qos, None, now, |_| true, &mut out);
            }
        }
        out
    }
}

/// The local subscriptions of the rules that send out: No Local (what the
/// bridge publishes here does not go back), Retain As Published (the
/// remote broker keeps retained messages retained), no retained messages
/// at subscription (the bridge sends them when the remote broker needs
/// them: [`Local::retained`]).
fn subscriptions(config: &BridgeConfig) -> BTreeMap<MqttString, SubscriptionRecord> {
    let mut out: BTreeMap<MqttString, SubscriptionRecord> = BTreeMap::new();
    for rule in config.topics.iter().filter(|r| r.direction.outgoing()) {
        let Ok(filter) = MqttString::try_from(rule.local_filter()) else {
            continue;
        };
        let qos = rule.qos();
        let record = out.entry(filter).or_insert(SubscriptionRecord {
            options: SubscriptionOptions {
                qos: QoS::AtMostOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
            id: None,
        });
        record.options.qos = record.options.qos.max(qos);
    }
    out
}

/// The batch of this turn, made when first needed.
pub(super) fn batch_of(batch: &mut Option<Batch>) -> &mut Batch {
    batch.get_or_insert_with(|| Persist::batch(tokio::time::Instant::now().into_std()))
}
