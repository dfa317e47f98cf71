//! Certificates made at test time with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate from the same CA, and a client certificate from a CA nobody
//! trusts. Written as PEM files in a temp dir, as users would pass them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The PEM files of one test's PKI.
pub struct Certs {
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).expect("a CA certificate");
    (Issuer::new(params, key), cert.pem())
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str], cn: &str) -> (String, String) {
    let key = KeyPair::generate().expect("a key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer).expect("a signed certificate");
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    /// Makes every file.
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (issuer, ca_pem) = ca("micro test CA");
        let (server, server_key) = leaf(&issuer, &["127.0.0.1", "localhost"], "micro test server");
        let (client, client_key) = leaf(&issuer, &["client"], "micro test client");
        let (stranger_issuer, stranger_ca) = ca("a CA nobody trusts");
        let (stranger, stranger_key) = leaf(&stranger_issuer, &["stranger"], "stranger");
        for (name, pem) in [
            ("ca.pem", ca_pem),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
            ("stranger-ca.pem", stranger_ca),
            ("stranger.pem", stranger),
            ("stranger.key", stranger_key),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("a PEM file written");
        }
        Certs { dir }
    }

    /// The path of one file: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`,
    /// `stranger-ca.pem`, `stranger.pem`, `stranger.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as a string, for options and flags.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
