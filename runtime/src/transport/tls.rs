//! TLS for the HTTP transport, with rustls: the server's certificate and, for mutual TLS, the
//! authority its clients' certificates must chain to; the client's trust roots and, for mutual
//! TLS, its own certificate.
//!
//! A server with TLS speaks only TLS on its port (ALPN `h2` and `http/1.1`, so gRPC clients,
//! micro clients and `curl --cacert` all reach it) and registers its nodes with `secure=true`;
//! clients use TLS for nodes that say so, and for every peer when they were given a CA
//! themselves. Without a CA of its own, a client trusts the Mozilla roots (`webpki-roots`).
//!
//! Files are PEM. Options: `--server_tls_cert`, `--server_tls_key`, `--server_tls_client_ca`
//! (mutual TLS), `--client_tls_ca`, `--client_tls_cert`, `--client_tls_key`, each with its
//! `MICRO_*` variable.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

use crate::Error;

use super::ID;

/// The node metadata key that marks a node served over TLS.
pub const SECURE: &str = "secure";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::bad_request(ID, format!("{what}: {e}"))
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad(what, e))?;
    if certs.is_empty() {
        return Err(bad(what, "no PEM certificate found"));
    }
    Ok(certs)
}

fn key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(what, format!("no usable PEM private key ({e})")))
}

fn roots(pem: &[u8], what: &str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for c in certs(pem, what)? {
        store.add(c).map_err(|e| bad(what, e))?;
    }
    Ok(store)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| bad(&format!("{what} {}", path.display()), e))
}

/// A server's TLS settings.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("mutual", &self.mutual).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM: the certificate chain, its key, and (mutual TLS) the CA clients must present a
    /// certificate from.
    pub fn from_pem(cert: &[u8], key_pem: &[u8], client_ca: Option<&[u8]>) -> Result<ServerTls, Error> {
        let chain = certs(cert, "the server certificate")?;
        let key = key(key_pem, "the server key")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", e))?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "the client CA")?),
                    provider(),
                )
                .build()
                .map_err(|e| bad("the client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| bad("the server certificate", e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls { config: Arc::new(config), mutual: client_ca.is_some() })
    }

    /// From PEM files.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, Error> {
        let ca = client_ca.map(|p| read(p, "the client CA")).transpose()?;
        ServerTls::from_pem(&read(cert, "the server certificate")?, &read(key, "the server key")?, ca.as_deref())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// A client's TLS settings.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    explicit: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("explicit", &self.explicit).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// From PEM: the CA that server certificates must chain to (the Mozilla roots when `None`),
    /// and for mutual TLS this client's certificate chain and key.
    pub fn from_pem(ca: Option<&[u8]>, identity: Option<(&[u8], &[u8])>) -> Result<ClientTls, Error> {
        let roots = match ca {
            Some(pem) => roots(pem, "the client CA file")?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", e))?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key_pem)) => builder
                .with_client_auth_cert(certs(cert, "the client certificate")?, key(key_pem, "the client key")?)
                .map_err(|e| bad("the client certificate", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ClientTls { config: Arc::new(config), explicit: ca.is_some() || identity.is_some() })
    }

    /// From PEM files.
    pub fn from_files(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<ClientTls, Error> {
        let ca = ca.map(|p| read(p, "the client CA file")).transpose()?;
        let identity = match identity {
            Some((c, k)) => Some((read(c, "the client certificate")?, read(k, "the client key")?)),
            None => None,
        };
        ClientTls::from_pem(ca.as_deref(), identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())))
    }

    /// Whether the user configured it (then every peer is reached over TLS).
    pub fn explicit(&self) -> bool {
        self.explicit
    }

    /// The rustls configuration (ALPN `h2`), for clients of other protocols to copy.
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

static DEFAULT_CLIENT: OnceLock<ClientTls> = OnceLock::new();

/// Sets the process's client TLS (the first call wins), used by clients and brokers made without
/// their own; [`Service`](crate::Service) sets it from the `client_tls_*` options.
pub fn set_default_client(tls: ClientTls) -> bool {
    DEFAULT_CLIENT.set(tls).is_ok()
}

/// The process's client TLS: what [`set_default_client`] set, else the Mozilla roots.
pub fn default_client() -> ClientTls {
    DEFAULT_CLIENT
        .get_or_init(|| ClientTls::from_pem(None, None).expect("the built-in roots make a valid configuration"))
        .clone()
}

/// Whether a node must be reached over TLS: it says so, or the client was given a CA.
pub fn node_is_secure(metadata: &std::collections::BTreeMap<String, String>, client: Option<&ClientTls>) -> bool {
    metadata.get(SECURE).is_some_and(|v| v == "true") || client.is_some_and(ClientTls::explicit)
}

/// The server name to verify for `addr` (`host:port`).
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
    ServerName::try_from(host.to_string()).map_err(|e| bad(&format!("the address {addr}"), e))
}
