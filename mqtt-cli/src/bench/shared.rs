//! What every client task of a run shares: where to connect and as whom,
//! the counters, the errors, the run id; and how a client's connection is
//! opened, lost or closed, with each outcome counted.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mqtt_codec::{Connect, MqttString};
use mqtt_session::ClientConfig;

use super::counters::Counters;
use super::errors::Errors;
use crate::client::{self, Client, ClientError};
use crate::transport::Endpoint;

/// What every client of a run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    /// A CONNECT template; the client id is replaced per client.
    pub(crate) connect: Connect,
    pub(crate) timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) errors: Errors,
    /// This process's run id, in every payload's [`Stamp`](super::stamp::Stamp).
    pub(crate) run: u32,
}

impl Shared {
    /// Opens the connection of client `id`, counting the outcome.
    pub(crate) async fn open(&self, id: String) -> Option<Client> {
        let mut connect = self.connect.clone();
        connect.client_id = match MqttString::try_from(id) {
            Ok(id) => id,
            Err(e) => {
                self.errors.push(format!("client id: {e}"));
                return None;
            }
        };
        match client::open(
            &self.endpoint,
            connect,
            ClientConfig::default(),
            self.timeout,
        )
        .await
        {
            Ok((c, _)) => {
                self.counters.connected.fetch_add(1, Relaxed);
                Some(c)
            }
            Err(e) => {
                self.counters.connect_failed.fetch_add(1, Relaxed);
                self.errors.push(e);
                None
            }
        }
    }

    /// A connection ended under us.
    pub(super) fn lost(&self, e: &ClientError) {
        self.counters.connected.fetch_sub(1, Relaxed);
        self.counters.disconnects.fetch_add(1, Relaxed);
        self.errors.push(e.to_string());
    }

    pub(super) async fn close(&self, client: Client) {
        self.counters.connected.fetch_sub(1, Relaxed);
        let _ = client.disconnect().await;
    }
}
