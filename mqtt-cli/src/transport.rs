//! The byte stream under a client: TCP, or TLS over TCP (rustls).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// TLS settings; `None` for plain TCP.
    pub(crate) tls: Option<Arc<TlsSettings>>,
}

/// A TLS client configuration, built once and shared by every connection.
pub(crate) struct TlsSettings {
    connector: TlsConnector,
    /// The name to verify the certificate against (the host by default).
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// TLS options as typed on the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the built-in roots.
    pub(crate) cafile: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS).
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub(crate) key: Option<PathBuf>,
    /// Skip certificate verification (testing only).
    pub(crate) insecure: bool,
}

impl TlsSettings {
    /// Builds the rustls configuration for `host`.
    pub(crate) fn new(host: &str, options: &TlsOptions) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::NoVerification(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &options.cafile {
                Some(path) => {
                    for cert in read_certs(path)? {
                        roots
                            .add(cert)
                            .map_err(|e| format!("{}: bad CA certificate: {e}", path.display()))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("TLS client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("--cert and --key go together".into()),
        };
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// An open connection to the server.
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a transport.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a transport.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

impl Transport {
    /// Connects to `endpoint`; errors name the address.
    pub(crate) async fn open(endpoint: &Endpoint) -> Result<Self, String> {
        let addr = format!("{}:{}", endpoint.host, endpoint.port);
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        // Small packets (acks, pings) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        match &endpoint.tls {
            None => Ok(Self::Tcp(tcp)),
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
                Ok(Self::Tls(Box::new(stream)))
            }
        }
    }

    /// Separate halves, so reading and writing can wait at once.
    pub(crate) fn split(self) -> (Reader, Writer) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Self::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

mod insecure {
    //! `--insecure`: accept any server certificate. For test brokers with
    //! self-signed certificates only.

    use std::sync::Arc;

    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{
        CryptoProvider, verify_tls12_signature, verify_tls13_signature,
    };
    use tokio_rustls::rustls::{DigitallySignedStruct, Error, SignatureScheme};

    #[derive(Debug)]
    pub(super) struct NoVerification(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
