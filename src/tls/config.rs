//! TLS settings: client and server configurations, certificates and keys from PEM files or
//! bytes, and the server name a client verifies.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{ServerConfig, SignatureScheme};

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(what: &str, err: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {err}"))
}

/// PEM material: a file, or the PEM text itself (as `ssl`'s `cadata`; trustme and most test
/// fixtures hand certificates out as bytes).
#[derive(Clone, Debug)]
pub enum Pem {
    File(String),
    Bytes(Vec<u8>),
}

impl Pem {
    fn read(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Pem::File(path) => std::fs::read(path)
                .map(std::borrow::Cow::Owned)
                .map_err(|source| Error::File {
                    path: path.clone(),
                    source,
                }),
            Pem::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
        }
    }

    /// How messages name it.
    fn describe(&self) -> String {
        match self {
            Pem::File(path) => format!("{path:?}"),
            Pem::Bytes(_) => "the PEM data given (bytes are PEM text; a path is a str)".to_owned(),
        }
    }
}

fn load_certs(pem: &Pem) -> Result<Vec<CertificateDer<'static>>> {
    let data = pem.read()?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| config_error(&format!("bad certificate in {}", pem.describe()), e))?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no PEM certificate in {}",
            pem.describe()
        )));
    }
    Ok(certs)
}

fn load_key(pem: &Pem) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&pem.read()?).map_err(|e| {
        config_error(
            &format!("cannot read a private key from {}", pem.describe()),
            e,
        )
    })
}

fn roots(ca: Option<&Pem>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in load_certs(pem)? {
                store.add(cert).map_err(|e| {
                    config_error(&format!("bad CA certificate in {}", pem.describe()), e)
                })?;
            }
        }
        None => {
            // The operating system's trust store, as ssl.create_default_context() uses.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
        }
    }
    Ok(store)
}

/// Client settings: the rustls configuration and the name to verify the server against.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub config: Arc<ClientConfig>,
    /// The name checked against the server's certificate (`None`: the host connected to).
    pub server_name: Option<String>,
    pub insecure: bool,
}

impl ClientSettings {
    /// `ca`: trusted CAs (`None`: the system's). `insecure`: no verification at all.
    /// `cert`/`key`: a client certificate for mutual TLS.
    pub fn new(
        ca: Option<&Pem>,
        server_name: Option<String>,
        insecure: bool,
        cert: Option<&Pem>,
        key: Option<&Pem>,
    ) -> Result<Self> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("TLS client", e))?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            builder.with_root_certificates(roots(ca)?)
        };
        let config = match (cert, key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| config_error("client certificate", e))?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(Error::InvalidArgument(
                    "a client certificate needs both cert and key".into(),
                ))
            }
        };
        Ok(ClientSettings {
            config: Arc::new(config),
            server_name,
            insecure,
        })
    }
}

/// A server configuration: certificate chain and key, and (for mutual TLS) the CAs client
/// certificates must chain to.
pub fn server_config(cert: &Pem, key: &Pem, client_ca: Option<&Pem>) -> Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("TLS server", e))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(Some(ca))?),
                provider(),
            )
            .build()
            .map_err(|e| config_error("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| config_error("server certificate", e))?;
    Ok(Arc::new(config))
}

/// `insecure=True`: accepts any certificate (signatures are still checked, so the handshake
/// itself stays sound).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

/// The name a client verifies: a DNS name, or an IP address literal.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|_| Error::InvalidArgument(format!("invalid TLS server name {host:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name!").is_err());
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let missing = |p: &str| Pem::File(p.to_owned());
        let err = server_config(
            &missing("/nonexistent/cert.pem"),
            &missing("/x/key.pem"),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        assert!(
            matches!(err, Error::File { ref source, .. } if source.raw_os_error() == Some(libc::ENOENT))
        );
        let err =
            server_config(&Pem::Bytes(b"not pem".to_vec()), &missing("/x"), None).unwrap_err();
        assert!(err.to_string().contains("PEM data"), "{err}");
    }
}
