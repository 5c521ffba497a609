//! The timers that outlive connections — delayed wills and session expiry,
//! kept by mqtt-router's [`Timers`] — run by one janitor task.

use mqtt_router::{Due, Timers, will_message};

use super::*;

/// The broker's timers: sessions are named by their handle.
pub(super) type BrokerTimers = Timers<Arc<SessionHandle>>;

impl Broker {
    /// Publishes a will message.
    pub(crate) fn publish_will(&self, will: Will, now: Instant) {
        let Some((topic, message)) = will_message(will, now) else {
            return;
        };
        tracing::debug!(topic = %topic.as_str(), "publishing will");
        self.publish(&topic, Arc::new(message), Publishing::default(), now);
    }

    /// Forgets a session's stored will (published or cancelled).
    fn clear_stored_will(&self, client_id: &MqttString, now: Instant) {
        if let Some(persist) = &self.persist {
            let mut b = Persist::batch(now);
            b.clear_will(client_id);
            persist.submit_logged(b);
        }
    }

    /// Schedules a will for `at`; with persistence it is stored, so that
    /// it is still published after a restart.
    pub(crate) fn schedule_will(&self, client_id: MqttString, will: Will, at: Instant) {
        if let Some(persist) = &self.persist {
            let now = tokio::time::Instant::now().into_std();
            let mut b = Persist::batch(now);
            b.set_will(&client_id, &will, at);
            persist.submit_logged(b);
        }
        lock(&self.timers).schedule_will(client_id, will, at);
        self.timers_changed.notify_one();
    }

    /// A client reconnected: a will waiting for its delay is sent now if
    /// its session ends, and not at all if it goes on (see
    /// [`Timers::on_reconnect`]).
    pub(crate) fn on_reconnect_will(
        &self,
        client_id: &MqttString,
        session_ends: bool,
        now: Instant,
    ) {
        let wills = lock(&self.timers).on_reconnect(client_id, session_ends);
        if let Some(wills) = wills {
            for w in wills {
                self.publish_will(w, now);
            }
            self.clear_stored_will(client_id, now);
        }
    }

    pub(crate) fn schedule_expiry(&self, handle: Arc<SessionHandle>, at: Instant) {
        lock(&self.timers).schedule_expiry(handle, at);
        self.timers_changed.notify_one();
    }

    /// Ends a session whose expiry fell due at `now`, if no connection
    /// claimed it and it was not parked again since with a later deadline.
    fn expire(&self, handle: &Arc<SessionHandle>, now: Instant) {
        // Under the registry's lock: a CONNECT that claims the session
        // meanwhile keeps it.
        let state = {
            let mut sessions = lock(&self.sessions);
            sessions
                .remove_offline(&handle.client_id, |h| {
                    h.id == handle.id
                        && lock(&h.offline)
                            .as_ref()
                            .is_some_and(|p| p.expires_at.is_some_and(|at| at <= now))
                })
                .and_then(|_| lock(&handle.offline).take())
        };
        if let Some(state) = state.map(|p| p.state) {
            tracing::debug!(client_id = %handle.client_id, "session expired");
            self.end_session(handle, state, now);
        }
    }

    /// Runs the timers as they fall due; never returns.
    pub(crate) async fn run_janitor(self: Arc<Self>) {
        loop {
            let now = tokio::time::Instant::now().into_std();
            loop {
                // Taken one at a time: the lock is not held while a will
                // is published or a session ended.
                let due = lock(&self.timers).poll_due(now);
                match due {
                    Some(Due::Will { client_id, will }) => {
                        self.publish_will(*will, now);
                        self.clear_stored_will(&client_id, now);
                    }
                    Some(Due::Expire(handle)) => self.expire(&handle, now),
                    None => break,
                }
            }
            let next = lock(&self.timers).poll_timeout();
            match next {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.timers_changed.notified() => {}
                    }
                }
                None => self.timers_changed.notified().await,
            }
        }
    }
}
