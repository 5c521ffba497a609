//! An axum router served over HTTP/1.1 (or HTTPS) by hyper: the accept
//! loop of the operator's console (`admin/`) and of the metrics listener,
//! with their bounds, and the bearer-token check they share. Each connection is a task of the loop's own set, so aborting
//! the loop (at shutdown) ends every connection with it, the live ones
//! of open dashboards included.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// Compares without returning early at the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of `Authorization: Bearer <token>` (scheme in any case).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// How one HTTP listener serves.
#[derive(Clone)]
pub(crate) struct HttpLimits {
    /// What the listener is, for log lines.
    pub(crate) what: &'static str,
    /// Connections served at once; further ones wait in the listen backlog.
    pub(crate) max_connections: usize,
    /// Time a client has to finish the TLS handshake, and then to send
    /// each request's head.
    pub(crate) header_timeout: Duration,
    /// Whether a connection may carry more than one request.
    pub(crate) keep_alive: bool,
    /// Largest request head, in bytes (at least 8192): a larger one gets
    /// 431.
    pub(crate) max_head: usize,
    /// HTTPS.
    pub(crate) tls: Option<TlsAcceptor>,
}

/// Serves `app` on `listener` until the task is aborted. Handlers find
/// the client's address as `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(1);
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then retry.
                tracing::warn!(what = limits.what, error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let limits = limits.clone();
        connections.spawn(async move {
            let result = match &limits.tls {
                None => connection(stream, peer, app, &limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => connection(tls, peer, app, &limits).await,
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake not done in time",
                        )),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(what = limits.what, %peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
}

/// Serves the requests of one connection.
async fn connection<S>(io: S, peer: SocketAddr, app: Router, limits: &HttpLimits) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { Ok::<_, Infallible>(app.call(request).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(limits.keep_alive)
        .max_buf_size(limits.max_head.max(8192));
    builder
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(io::Error::other)
}
