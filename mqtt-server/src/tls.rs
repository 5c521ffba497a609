//! TLS for `mqtts` and `wss` listeners: the rustls server configuration
//! built from PEM files, and the client's identity from its certificate.
//!
//! rustls runs on the `ring` provider, chosen explicitly rather than
//! through the process-wide default, so that another crate in the same
//! program enabling a second provider cannot make the choice ambiguous.
//!
//! Client certificates, as mosquitto:
//!
//! | `cafile` | `require_certificate` | a client without a certificate | with one        |
//! |----------|-----------------------|--------------------------------|-----------------|
//! | absent   | false                 | accepted                       | not asked for   |
//! | set      | false                 | accepted                       | checked against `cafile` |
//! | set      | true                  | refused in the handshake       | checked against `cafile` |
//!
//! With `use_identity_as_username`, the Common Name of the verified
//! certificate is the client's user name.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A startup error that names the file and the key it was given by.
fn file_error(key: &str, path: &Path, problem: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{key} {}: {problem}", path.display()),
    )
}

fn read(key: &str, path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), file_error(key, path, e).to_string()))
}

fn certificates(key: &str, path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The rustls provider every configuration of the broker uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a TLS listener needs from its configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    /// The server's certificate chain (PEM), leaf first.
    pub(crate) certfile: &'a Path,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub(crate) keyfile: &'a Path,
    /// CA certificates (PEM) that client certificates are checked against.
    pub(crate) cafile: Option<&'a Path>,
    /// Whether a client without a valid certificate is refused.
    pub(crate) require_certificate: bool,
}

/// Builds the server configuration; every error names the file and key.
pub(crate) fn server_config(files: TlsFiles<'_>) -> io::Result<Arc<rustls::ServerConfig>> {
    let chain = certificates("certfile", files.certfile)?;
    let key_pem = read("keyfile", files.keyfile)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| file_error("keyfile", files.keyfile, format!("no PEM private key: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match files.cafile {
        None => builder.with_no_client_auth(),
        Some(cafile) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("cafile", cafile)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("cafile", cafile, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| file_error("cafile", cafile, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // No ALPN: a server list would make rustls refuse clients offering
    // other protocols (browsers offer `http/1.1` for wss).
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        file_error(
            "certfile",
            files.certfile,
            format!("does not go with keyfile {}: {e}", files.keyfile.display()),
        )
    })?;
    Ok(Arc::new(config))
}

/// The rustls client configuration of a bridge (see `bridge/`): the remote
/// broker's certificate checked against `cafile`, and the bridge's own
/// certificate (`certfile`, `keyfile`) for a broker that asks for one.
/// Every error names the file and the key.
pub(crate) fn client_config(
    cafile: &Path,
    identity: Option<(&Path, &Path)>,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("bridge.cafile", cafile)? {
        roots
            .add(cert)
            .map_err(|e| file_error("bridge.cafile", cafile, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((certfile, keyfile)) => {
            let chain = certificates("bridge.certfile", certfile)?;
            let key_pem = read("bridge.keyfile", keyfile)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                file_error(
                    "bridge.keyfile",
                    keyfile,
                    format!("no PEM private key: {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                file_error(
                    "bridge.certfile",
                    certfile,
                    format!("does not go with keyfile {}: {e}", keyfile.display()),
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The Common Name of the client's (verified) certificate: its user name
/// under `use_identity_as_username`. `None` if the client sent no
/// certificate, or it has no UTF-8 Common Name.
pub(crate) fn identity(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    common_name(leaf)
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sensor-17");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("sensor-17"));
    }

    #[test]
    fn missing_files_are_named() {
        let err = server_config(TlsFiles {
            certfile: Path::new("/nonexistent/server.crt"),
            keyfile: Path::new("/nonexistent/server.key"),
            cafile: None,
            require_certificate: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("certfile /nonexistent/server.crt"), "{err}");
    }
}
