//! Shared by the console's tests: the broker with its console on
//! 127.0.0.1:0, and an HTTP/1.1 client (hyper's) over a real socket,
//! plain or TLS.
// A module of each test binary that includes it, each using part of it:
// what one does not use would otherwise be reported as dead there.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use mqtt_server::Config;
use mqtt_testkit::{TIMEOUT, TestBroker};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The admin token of [`config`].
pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The test broker's configuration with the console on 127.0.0.1:0 and
/// [`TOKEN`].
pub fn config() -> Config {
    Config {
        admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        admin_token: Some(TOKEN.into()),
        sys_interval: 0,
        ..TestBroker::config()
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` of a JSON refusal.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text()))
            .to_owned()
    }
}

/// Sends one request on a new connection `io`; returns the status,
/// headers and the body still streaming.
pub async fn send_on<S>(
    io: S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, HeaderMap, Incoming)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("a valid request");
    let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
        .await
        .expect("an answer within the timeout")
        .expect("an HTTP answer");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body)
}

/// Reads what is left of a body.
pub async fn read_all(body: Incoming) -> Bytes {
    tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .expect("the body within the timeout")
        .expect("a whole body")
        .to_bytes()
}

/// One request over plain HTTP, read whole.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the console");
    let (status, headers, body) = send_on(stream, method, path, token, body).await;
    Answer {
        status,
        headers,
        body: read_all(body).await,
    }
}

/// The broker and its console.
pub struct Console {
    pub broker: TestBroker,
    pub addr: SocketAddr,
}

impl Console {
    pub async fn start(config: Config) -> Console {
        let broker = TestBroker::start(config).await;
        let addr = broker.admin.expect("the console listens");
        Console { broker, addr }
    }

    pub async fn get(&self, path: &str) -> Answer {
        request(self.addr, "GET", path, Some(TOKEN), None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        request(self.addr, "DELETE", path, Some(TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        request(self.addr, "POST", path, Some(TOKEN), Some(body)).await
    }

    /// GETs `path` until `done` accepts its JSON, within the testkit's
    /// timeout: for what the broker does after answering (a disconnect).
    ///
    /// # Panics
    /// If it does not within the timeout; `what` names it.
    pub async fn poll_until(&self, what: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let answer = self.get(path).await;
            let v = answer.json();
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {TIMEOUT:?}; last answer {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The client IDs of a page of `/api/v1/clients` or `/api/v1/sessions`.
pub fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|c| c["client_id"].as_str().expect("a client_id").to_owned())
        .collect()
}

/// A self-signed certificate for `localhost`, written to `dir`: (cert
/// path, key path, DER).
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    let (c, k) = (dir.join("admin.crt"), dir.join("admin.key"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k, cert.der().to_vec())
}

/// A TLS client trusting only `der`.
pub fn tls_connector(der: Vec<u8>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(der))
        .expect("a root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
