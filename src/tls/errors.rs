//! rustls failures as the `ssl` errors a Python user catches: which exception, with OpenSSL's
//! reason code and the text `ssl` would show.

use crate::error::{Error, TlsError, TlsFailure};

/// Maps a rustls error to the failure a Python `ssl` user expects.
pub fn from_rustls(err: rustls::Error) -> Error {
    use rustls::{CertificateError, Error as E};
    let tls = match &err {
        E::InvalidCertificate(cert) => {
            let detail = match cert {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "Hostname mismatch, certificate is not valid for the requested name".to_owned()
                }
                CertificateError::UnknownIssuer => {
                    "unable to get local issuer certificate".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "certificate has expired".to_owned()
                }
                other => format!("{other:?}"),
            };
            TlsError::cert_verify(format!("{detail} ({err})"))
        }
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => TlsError::new(
            TlsFailure::Protocol,
            "WRONG_VERSION_NUMBER",
            format!("the peer does not speak TLS ({err})"),
        ),
        E::AlertReceived(alert) => TlsError::new(
            TlsFailure::Protocol,
            "TLSV1_ALERT",
            format!("the peer sent the TLS alert {alert:?}"),
        ),
        E::NoCertificatesPresented => TlsError::new(
            TlsFailure::Protocol,
            "PEER_DID_NOT_RETURN_A_CERTIFICATE",
            "the client sent no certificate",
        ),
        _ => TlsError::new(TlsFailure::Protocol, "", err.to_string()),
    };
    Error::Tls(Box::new(tls))
}

/// The peer closed in the middle of the handshake.
pub fn eof_in_handshake() -> Error {
    Error::Tls(Box::new(TlsError::new(
        TlsFailure::Eof,
        "UNEXPECTED_EOF_WHILE_READING",
        "EOF occurred in violation of protocol (the peer closed during the handshake)",
    )))
}
