//! The timers that outlive connections: delayed wills and session expiry,
//! run by one janitor task.

use super::*;

/// A job for the janitor.
#[derive(Debug)]
pub(super) enum Job {
    /// Publish a will whose delay has passed.
    Will(MqttString, Box<Will>),
    /// End a session whose expiry has passed, if it is still offline.
    Expire(Arc<SessionHandle>),
}

impl Broker {
    /// Publishes a will message.
    pub(crate) fn publish_will(&self, will: Will, now: Instant) {
        let Ok(topic) = TopicName::from_bytes(will.topic.as_bytes().clone()) else {
            return;
        };
        let p = will.properties;
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..PublishProperties::default()
            }
            .into(),
            expires_at: p
                .message_expiry_interval
                .map(|s| now + std::time::Duration::from_secs(u64::from(s))),
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
        let seq = self.next_id();
        lock(&self.jobs).insert((at, seq), Job::Will(client_id, Box::new(will)));
        self.jobs_changed.notify_one();
    }

    /// A client reconnected: a will waiting for its delay is not sent if
    /// the session goes on (Clean Start 0), and is sent now if the session
    /// ends (Clean Start 1): the will waits for the earlier of its delay
    /// and the session's end [MQTT-3.1.3-9] (MQTT 5.0 §3.1.2.5, §3.1.3.2.2).
    pub(crate) fn on_reconnect_will(
        &self,
        client_id: &MqttString,
        session_ends: bool,
        now: Instant,
    ) {
        let wills: Vec<Will> = {
            let mut jobs = lock(&self.jobs);
            let keys: Vec<(Instant, u64)> = jobs
                .iter()
                .filter(|(_, job)| matches!(job, Job::Will(c, _) if c == client_id))
                .map(|(k, _)| *k)
                .collect();
            keys.iter()
                .filter_map(|k| match jobs.remove(k) {
                    Some(Job::Will(_, w)) => Some(*w),
                    _ => None,
                })
                .collect()
        };
        if !wills.is_empty() {
            if session_ends {
                for w in wills {
                    self.publish_will(w, now);
                }
            }
            self.clear_stored_will(client_id, now);
        }
    }

    pub(crate) fn schedule_expiry(&self, handle: Arc<SessionHandle>, at: Instant) {
        let seq = self.next_id();
        lock(&self.jobs).insert((at, seq), Job::Expire(handle));
        self.jobs_changed.notify_one();
    }

    /// Runs the timed jobs as they fall due; never returns.
    pub(crate) async fn run_janitor(self: Arc<Self>) {
        loop {
            let now = tokio::time::Instant::now().into_std();
            let mut due = Vec::new();
            let next = {
                let mut jobs = lock(&self.jobs);
                while let Some(entry) = jobs.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove());
                }
                jobs.keys().next().map(|(at, _)| *at)
            };
            for job in due {
                match job {
                    Job::Will(client_id, will) => {
                        self.publish_will(*will, now);
                        self.clear_stored_will(&client_id, now);
                    }
                    Job::Expire(handle) => {
                        // Under the registry's lock: a CONNECT that claims
                        // the session meanwhile keeps it, and so does a
                        // session resumed and parked again since this job
                        // was scheduled (its deadline is later).
                        let state = {
                            let mut sessions = lock(&self.sessions);
                            sessions
                                .remove_offline(&handle.client_id, |h| {
                                    h.id == handle.id
                                        && lock(&h.offline).as_ref().is_some_and(|p| {
                                            p.expires_at.is_some_and(|at| at <= now)
                                        })
                                })
                                .and_then(|_| lock(&handle.offline).take())
                        };
                        if let Some(state) = state.map(|p| p.state) {
                            tracing::debug!(client_id = %handle.client_id, "session expired");
                            self.end_session(&handle, state.subscriptions.into_keys());
                        }
                    }
                }
            }
            match next {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.jobs_changed.notified() => {}
                    }
                }
                None => self.jobs_changed.notified().await,
            }
        }
    }
}
