//! Reaching the remote broker: each address in turn (`address`, then
//! `fallback_addresses`), each name's resolved addresses in turn, over TCP
//! and, with `cafile`, TLS; the whole attempt within `connect_timeout`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::config::{BridgeConfig, RemoteAddr};

/// A byte stream to the remote broker.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects to the first address of `config` that answers; the error of
/// the last one otherwise.
pub(super) async fn connect(
    config: &BridgeConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<(Box<dyn Io>, RemoteAddr)> {
    let timeout = Duration::from_secs(config.connect_timeout);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in config.addresses() {
        match tokio::time::timeout(timeout, connect_one(config, tls, &addr)).await {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "remote broker address not reachable");
                last = io::Error::new(e.kind(), format!("{addr}: {e}"));
            }
            Err(_) => {
                tracing::debug!(%addr, "remote broker address timed out");
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr}: no connection within connect_timeout"),
                );
            }
        }
    }
    Err(last)
}

async fn connect_one(
    config: &BridgeConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    addr: &RemoteAddr,
) -> io::Result<Box<dyn Io>> {
    let mut error = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    let mut tcp = None;
    for socket in tokio::net::lookup_host((addr.host.as_str(), addr.port)).await? {
        match TcpStream::connect(socket).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => error = e,
        }
    }
    let tcp = tcp.ok_or(error)?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = config.server_name.as_deref().unwrap_or(&addr.host);
    let name = ServerName::try_from(name.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a TLS server name: {e}"),
        )
    })?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}
