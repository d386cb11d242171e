//! TLS: loading a PEM certificate chain and key, generating the in-memory
//! development certificate, and accepting connections with them.
//!
//! The crypto provider is ring, passed explicitly, so that no process-wide
//! default provider has to be installed by whoever embeds the library.

use std::{fmt, path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio_rustls::rustls::{self, crypto::CryptoProvider, sign::CertifiedKey};

pub(crate) use stream::{Socket, TlsStream};

mod stream;

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or holds no certificate.
    #[error("cannot read certificate chain from {path}: {reason}")]
    Certificate {
        /// The configured path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The key file is missing, unreadable or holds no supported key.
    #[error(
        "cannot read private key from {path}: {reason} (PKCS#8, PKCS#1 and SEC1 PEM keys are supported)"
    )]
    Key {
        /// The configured path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The key does not belong to the leaf certificate, or rustls refused it.
    #[error("the private key does not match the certificate: {0}")]
    Mismatch(rustls::Error),
    /// The development certificate could not be generated.
    #[error("cannot generate the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused to build a server configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A certificate chain with its matching private key, ready to serve.
#[derive(Clone)]
pub struct Identity(Arc<CertifiedKey>);

impl Identity {
    /// Loads a PEM chain (leaf first) and a PEM private key, and checks that
    /// the key matches the leaf.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_error = |reason: String| TlsError::Certificate {
            path: cert.display().to_string(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| cert_error(pem_reason(e)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(pem_reason(e)))?;
        if chain.is_empty() {
            return Err(cert_error("no CERTIFICATE section found".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            reason: pem_reason(e),
        })?;
        Self::from_der(chain, key)
    }

    /// Generates a self-signed certificate for `names` (DNS names or IP
    /// addresses). For development only: clients must be told to trust it.
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names.to_vec())?;
        let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
        Self::from_der(vec![cert.der().clone()], key.into())
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        CertifiedKey::from_der(chain, key, &provider())
            .map(|certified| Self(Arc::new(certified)))
            .map_err(TlsError::Mismatch)
    }

    /// The leaf certificate in DER form, for clients that pin it.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.0.cert[0]
    }

    /// The SHA-256 fingerprint of the leaf certificate, as colon-separated hex.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.leaf());
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// An acceptor that serves this identity.
    pub(crate) fn acceptor(&self) -> Result<Acceptor, TlsError> {
        self.server_config().map(Acceptor)
    }

    /// The server configuration for this identity, offering only HTTP/1.1
    /// over ALPN (WebSocket over HTTP/2 is not supported).
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                self.0.clone(),
            )));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Runs the server side of TLS handshakes for one identity.
#[derive(Clone)]
pub(crate) struct Acceptor(Arc<rustls::ServerConfig>);

impl Acceptor {
    /// Runs the handshake on an accepted connection; the caller bounds it in
    /// time.
    pub(crate) async fn accept<S: Socket>(&self, io: S) -> std::io::Result<TlsStream<S>> {
        stream::accept(io, self.0.clone()).await
    }
}

impl fmt::Debug for Identity {
    /// Shows the fingerprint, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Identity")
            .field(&self.fingerprint())
            .finish()
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn pem_reason(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no matching PEM section found".into(),
        other => format!("malformed PEM ({other:?})"),
    }
}
