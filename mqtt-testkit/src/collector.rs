//! A subscriber that outlives its broker's restarts: rumqttc (MQTT 3.1.1)
//! in a task that reconnects after every error and keeps every message it
//! receives, for tests that count what arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_codec::QoS;
use rumqttc::{AsyncClient, Event, Packet};
use tokio::task::JoinHandle;

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload, as text (lossy).
    pub payload: String,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Its RETAIN flag.
    pub retain: bool,
}

/// A subscriber collecting what it receives; its task stops when dropped.
#[derive(Debug)]
pub struct Collector {
    /// The client half, to publish or subscribe more.
    pub client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Connects client `id` to `addr` (a persistent session unless
    /// `clean_session`), subscribes to `filter` at `qos` and waits for the
    /// SUBACK. Then it reconnects on its own after every error.
    ///
    /// # Panics
    /// If no SUBACK arrives within [`TIMEOUT`](crate::TIMEOUT).
    pub async fn start(
        addr: SocketAddr,
        id: &str,
        clean_session: bool,
        filter: &str,
        qos: QoS,
    ) -> Collector {
        let mut options = crate::v4::options(addr, id);
        options.set_clean_session(clean_session);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let r = Received {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            qos: match p.qos {
                                rumqttc::QoS::AtMostOnce => QoS::AtMostOnce,
                                rumqttc::QoS::AtLeastOnce => QoS::AtLeastOnce,
                                rumqttc::QoS::ExactlyOnce => QoS::ExactlyOnce,
                            },
                            retain: p.retain,
                        };
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    // rumqttc reconnects at the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let qos = match qos {
            QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
            QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        };
        client
            .subscribe(filter, qos)
            .await
            .expect("the subscription is queued");
        tokio::time::timeout(crate::TIMEOUT, subscribed)
            .await
            .expect("SUBACK within the timeout")
            .expect("the collector runs");
        Collector {
            client,
            received,
            task,
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits, checking every 10 ms, until what was received satisfies
    /// `done`; returns it.
    ///
    /// # Panics
    /// If it does not within `within`; `what` names the expectation.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.received();
            if done(&now) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}; received {} messages: {:?}",
                now.len(),
                now.iter().rev().take(5).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
