//! HTTPS for `serve`: the rustls server configuration made from `--tls-cert` and `--tls-key`
//! (PEM files), with ring as the crypto provider, as for the upstream and S3 clients; and the
//! client configuration replicas relay downloads from each other with.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsConfig;

/// A TLS file that cannot be served with, named by its flag and path.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {path}: {reason}")]
pub struct TlsError {
    flag: &'static str,
    path: String,
    reason: String,
}

impl TlsError {
    fn new(flag: &'static str, path: &Path, reason: impl Into<String>) -> Self {
        TlsError { flag, path: path.display().to_string(), reason: reason.into() }
    }
}

/// What HTTPS needs: how to serve, and how to call the other replicas.
pub struct Https {
    pub server: rustls::ServerConfig,
    pub peers: rustls::ClientConfig,
}

/// The configurations when both files are set, `None` for plain HTTP. A file that cannot be
/// read, holds no PEM certificate or key, or a key that does not fit the certificate is an
/// error naming its flag and path.
pub fn load(tls: &TlsConfig) -> Result<Option<Https>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&tls.tls_cert, &tls.tls_key) else {
        return Ok(None);
    };
    let certs = certificates(cert_path)?;
    let key = private_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let own = certs[0].clone();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("--tls-cert", cert_path, e.to_string()))?
        .with_no_client_auth()
        // Checks that the key is the certificate's (rustls: `InconsistentKeys`).
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::new("--tls-key", key_path, format!("cannot serve with it and the certificate of --tls-cert {}: {e}", cert_path.display())))?;
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::new("--tls-cert", cert_path, e.to_string()))?;
    let peers = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("--tls-cert", cert_path, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnCertificate { own, webpki }))
        .with_no_client_auth();
    Ok(Some(Https { server, peers }))
}

/// Replicas of one installation serve the same `--tls-cert`, often from a private CA and at an
/// advertise URL with a bare address: a peer presenting exactly that certificate (and proving
/// it holds its key, through the handshake signature) is trusted; any other certificate must
/// pass the usual checks against the public roots.
#[derive(Debug)]
struct OwnCertificate {
    own: CertificateDer<'static>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(flag, path, format!("cannot read it: {e}")))
}

/// The certificate chain, leaf first, as the file lists it.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("--tls-cert", path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new("--tls-cert", path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new("--tls-cert", path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The first private key of the file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::new("--tls-key", path, "holds no PEM private key (-----BEGIN PRIVATE KEY-----)"),
        e => TlsError::new("--tls-key", path, format!("not a PEM private key: {e}")),
    })
}
