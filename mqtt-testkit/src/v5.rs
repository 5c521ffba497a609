//! An MQTT 5.0 client: rumqttc's v5 API, driven by a task.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Filter, Packet, Publish, PublishProperties, SubAck, SubscribeProperties,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::TIMEOUT;

/// Options for client `id` of the broker at `addr`: clean start, keep
/// alive 30 s (no pings during a test).
pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

include!("peer.rs");

impl Peer {
    /// Publishes with properties and waits until the flow is complete (see
    /// [`Peer::publish`]).
    ///
    /// # Panics
    /// If the request fails or the flow does not complete within [`TIMEOUT`].
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        properties: PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, qos, retain, payload.to_vec(), properties)
            .await
            .expect("PUBLISH queued");
        self.complete(qos).await;
    }

    /// Subscribes to one filter with its options and properties, and waits
    /// for SUBACK.
    ///
    /// # Panics
    /// If the request fails or no SUBACK arrives.
    pub async fn subscribe_with(
        &mut self,
        filter: Filter,
        properties: Option<SubscribeProperties>,
    ) -> SubAck {
        match properties {
            Some(p) => {
                self.client
                    .subscribe_many_with_properties([filter], p)
                    .await
            }
            None => self.client.subscribe_many([filter]).await,
        }
        .expect("SUBSCRIBE queued");
        self.wait_suback().await
    }

    /// Subscribes with a subscription identifier and waits for SUBACK.
    ///
    /// # Panics
    /// If the request fails or no SUBACK arrives.
    pub async fn subscribe_id(&mut self, filter: &str, qos: QoS, id: usize) -> SubAck {
        let properties = SubscribeProperties {
            id: Some(id),
            user_properties: Default::default(),
        };
        self.subscribe_with(Filter::new(filter, qos), Some(properties))
            .await
    }
}
