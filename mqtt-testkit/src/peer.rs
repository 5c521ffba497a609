// The part of `v4.rs` and `v5.rs` that is the same for both versions of
// rumqttc's API, included by each after its own `use` lines: rumqttc gives
// the two versions distinct types with the same names.

/// A rumqttc client whose event loop runs in its own task. The task stops
/// at the first error, so a broker-side close is observed once and is not
/// hidden by rumqttc's automatic reconnection.
#[derive(Debug)]
pub struct Peer {
    /// The client half: publish, subscribe, disconnect.
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    task: JoinHandle<()>,
}

impl Peer {
    /// Starts the event loop; it connects on its own.
    pub fn start(options: MqttOptions) -> Peer {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let r = eventloop.poll().await;
                let stop = r.is_err();
                if tx.send(r).is_err() || stop {
                    break;
                }
            }
        });
        Peer {
            client,
            events,
            task,
        }
    }

    /// Starts the event loop and waits for CONNACK.
    ///
    /// # Panics
    /// If no successful CONNACK arrives within [`TIMEOUT`].
    pub async fn connect(options: MqttOptions) -> (Peer, ConnAck) {
        let mut peer = Self::start(options);
        let ack = peer
            .wait_for("CONNACK", |e| match e {
                Event::Incoming(Packet::ConnAck(a)) => Some(a.clone()),
                _ => None,
            })
            .await;
        (peer, ack)
    }

    /// The next event within `wait`; `None` if there was none, or the
    /// event loop has ended.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Result<Event, ConnectionError>> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Skips events until `pick` returns something.
    ///
    /// # Panics
    /// If the event loop fails or nothing is picked within [`TIMEOUT`];
    /// `what` names the expectation in the message.
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(e)) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Some(Err(e)) => panic!("waiting for {what}: connection error {e:?}"),
                None => panic!("waiting for {what}: nothing within {TIMEOUT:?}"),
            }
        }
    }

    /// Skips events until the event loop fails, and returns the error.
    ///
    /// # Panics
    /// If it does not fail within [`TIMEOUT`].
    pub async fn wait_error(&mut self) -> ConnectionError {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return e,
                None => panic!("the connection did not fail within {TIMEOUT:?}"),
            }
        }
    }

    /// The next PUBLISH received.
    ///
    /// # Panics
    /// If none arrives within [`TIMEOUT`].
    pub async fn next_publish(&mut self) -> Publish {
        self.wait_for("PUBLISH", |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Asserts that no PUBLISH arrives for `wait` (other events are skipped).
    ///
    /// # Panics
    /// If a PUBLISH arrives or the connection fails.
    pub async fn expect_no_publish(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left).await {
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    panic!("expected no PUBLISH, got {p:?}")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("expected no PUBLISH, got connection error {e:?}"),
                None => return,
            }
        }
    }

    /// Subscribes to one filter and waits for SUBACK.
    ///
    /// # Panics
    /// If the request fails or no SUBACK arrives (rumqttc turns a failure
    /// code into a connection error).
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("SUBSCRIBE queued");
        self.wait_suback().await
    }

    /// Waits for the next SUBACK.
    ///
    /// # Panics
    /// If none arrives within [`TIMEOUT`].
    pub async fn wait_suback(&mut self) -> SubAck {
        self.wait_for("SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(a)) => Some(a.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes and waits until the flow is complete: sent (QoS 0),
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) received.
    ///
    /// # Panics
    /// If the request fails or the flow does not complete within [`TIMEOUT`].
    pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("PUBLISH queued");
        self.complete(qos).await;
    }

    /// Waits until the oldest publication of `qos` is complete (see
    /// [`Peer::publish`]).
    ///
    /// # Panics
    /// If it does not complete within [`TIMEOUT`].
    pub async fn complete(&mut self, qos: QoS) {
        match qos {
            QoS::AtMostOnce => {
                self.wait_for("PUBLISH sent", |e| {
                    matches!(e, Event::Outgoing(Outgoing::Publish(_))).then_some(())
                })
                .await
            }
            QoS::AtLeastOnce => {
                self.wait_for("PUBACK", |e| {
                    matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
                })
                .await
            }
            QoS::ExactlyOnce => {
                self.wait_for("PUBCOMP", |e| {
                    matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
                })
                .await
            }
        }
    }

    /// Sends DISCONNECT (normal disconnection), waits until it is written,
    /// then drops the connection.
    ///
    /// # Panics
    /// If DISCONNECT is not written within [`TIMEOUT`].
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("DISCONNECT queued");
        self.wait_for("DISCONNECT sent", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        self.kill().await;
    }

    /// Drops the connection without DISCONNECT, as a crashed client or a
    /// lost network would, and waits until the socket is closed.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
