//! TLS for a whole stream: rustls (ring provider) over a [`Sock`], with the stdlib's timeout
//! model, usable from a reading and a writing thread at once.
//!
//! What is shared, and how it is guarded:
//! - `state` (the rustls connection) is locked only to move bytes in or out of rustls;
//! - `outgoing` holds the records rustls produced and the socket has not taken yet, so a write
//!   that a signal or a timeout interrupts leaves them for whoever writes next and the peer never
//!   sees a cut record; one thread sends from it at a time, in order;
//! - `read_turn` lets one thread at a time read ciphertext from the socket; waiting for it can be
//!   interrupted (Ctrl-C).
//!
//! Keeping two writers' data apart is the caller's [`crate::stream::Stream`] write turn.
//! Nothing here waits for a blocked writer: a reader that owes the peer an alert, or a
//! `close_notify` from `close()`, skips sending when another thread is sending (that thread
//! sends what rustls queued, or the socket is closing anyway).
//!
//! Handshakes wait with the caller's deadline, so a silent or plaintext peer ends in a timeout
//! or an error, never a hang.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{Connection, ServerConfig, ServerConnection, SignatureScheme};

use crate::error::{Error, Result, TlsFailure};
use crate::socket::{Sock, Wait};
use crate::turn::Turn;

/// Plaintext handed to rustls at a time: records are produced and sent in pieces this size,
/// so a large `sendall` never holds more than one piece of ciphertext in memory.
const WRITE_CHUNK: usize = 64 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(failure: TlsFailure, message: impl Into<String>) -> Error {
    Error::Tls {
        failure,
        message: message.into(),
    }
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

/// Records produced by rustls and not yet fully sent.
#[derive(Debug, Default)]
struct Outgoing {
    records: Vec<u8>,
    sent: usize,
}

/// The reading side's buffers, owned by whoever holds the read turn.
struct ReadSide {
    /// Where ciphertext is read from the socket.
    buf: Vec<u8>,
    /// Ciphertext read but not yet taken by rustls (it takes no more while its plaintext
    /// buffer is full, until the reader drains it).
    pending: Vec<u8>,
    /// The socket reported end of stream.
    eof: bool,
}

/// A TLS session over a socket.
pub struct TlsSession {
    state: Mutex<Connection>,
    outgoing: Mutex<Outgoing>,
    /// Taken by the thread reading ciphertext from the socket, which then locks `read_side`.
    read_turn: Turn,
    read_side: Mutex<ReadSide>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession").finish_non_exhaustive()
    }
}

/// Maps a rustls error to the failure a Python `ssl` user expects.
fn from_rustls(err: rustls::Error) -> Error {
    use rustls::{CertificateError, Error as E};
    match &err {
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
            tls_error(
                TlsFailure::CertVerify,
                format!(
                    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {detail} ({err})"
                ),
            )
        }
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => tls_error(
            TlsFailure::Protocol,
            format!("[SSL: WRONG_VERSION_NUMBER] the peer does not speak TLS ({err})"),
        ),
        E::AlertReceived(alert) => tls_error(
            TlsFailure::Protocol,
            format!("[SSL: TLSV1_ALERT] the peer sent the TLS alert {alert:?}"),
        ),
        E::NoCertificatesPresented => tls_error(
            TlsFailure::Protocol,
            "[SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] the client sent no certificate".to_owned(),
        ),
        _ => tls_error(TlsFailure::Protocol, format!("[SSL] {err}")),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TlsSession {
    pub fn client(settings: &ClientSettings, host: &str) -> Result<Self> {
        let name = server_name(settings.server_name.as_deref().unwrap_or(host))?;
        let conn = ClientConnection::new(settings.config.clone(), name).map_err(from_rustls)?;
        Ok(Self::wrap(conn.into()))
    }

    pub fn server(config: &Arc<ServerConfig>) -> Result<Self> {
        let conn = ServerConnection::new(config.clone()).map_err(from_rustls)?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(conn: Connection) -> Self {
        TlsSession {
            state: Mutex::new(conn),
            outgoing: Mutex::default(),
            read_turn: Turn::default(),
            read_side: Mutex::new(ReadSide {
                buf: vec![0; 18 * 1024],
                pending: Vec::new(),
                eof: false,
            }),
        }
    }

    /// The negotiated protocol, e.g. `"TLSv1.3"`.
    pub fn version(&self) -> Option<&'static str> {
        lock(&self.state).protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// Sends every record queued: first what an earlier, interrupted write left, then what
    /// rustls has produced since. Resumable after `EINTR`: unsent bytes stay in `out`.
    fn send_records(&self, out: &mut Outgoing, sock: &Sock, wait: Wait) -> Result<()> {
        loop {
            if out.sent == out.records.len() {
                out.records.clear();
                out.sent = 0;
                let mut conn = lock(&self.state);
                while conn.wants_write() {
                    conn.write_tls(&mut out.records)?;
                }
                if out.records.is_empty() {
                    return Ok(());
                }
            }
            sock.sendall(&out.records, 0, wait, &mut out.sent)?;
        }
    }

    /// Sends the records rustls queued (handshake messages, alerts, a key update).
    fn flush(&self, sock: &Sock, wait: Wait) -> Result<()> {
        self.send_records(&mut lock(&self.outgoing), sock, wait)
    }

    /// [`TlsSession::flush`] unless another thread is sending: that thread sends what rustls
    /// queued along with its own records, and a reader must not wait for a blocked writer.
    fn flush_if_idle(&self, sock: &Sock, wait: Wait) -> Result<()> {
        match self.outgoing.try_lock() {
            Ok(mut out) => self.send_records(&mut out, sock, wait),
            Err(TryLockError::Poisoned(p)) => self.send_records(&mut p.into_inner(), sock, wait),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }

    /// Hands pending ciphertext to rustls as far as it takes it, processing as it goes, and
    /// records the end of stream once everything before it was taken.
    fn absorb(&self, sock: &Sock, wait: Wait, side: &mut ReadSide) -> Result<()> {
        let processed = {
            let mut conn = lock(&self.state);
            let mut rest = &side.pending[..];
            let mut result = Ok(());
            while !rest.is_empty() && conn.wants_read() {
                if conn.read_tls(&mut rest)? == 0 {
                    break;
                }
                result = conn.process_new_packets().map(|_| ());
                if result.is_err() {
                    break;
                }
            }
            let taken = side.pending.len() - rest.len();
            side.pending.drain(..taken);
            if result.is_ok() && side.eof && side.pending.is_empty() {
                conn.read_tls(&mut &[][..])?; // the end of stream
                result = conn.process_new_packets().map(|_| ());
            }
            result
        };
        if let Err(err) = processed {
            // rustls queued an alert for the peer: send it, then report.
            let _ = self.flush_if_idle(sock, wait);
            return Err(from_rustls(err));
        }
        Ok(())
    }

    /// Reads more ciphertext from the socket into `side.pending` (or notes the end).
    fn fill(&self, sock: &Sock, wait: Wait, side: &mut ReadSide) -> Result<()> {
        let ReadSide { buf, pending, eof } = side;
        let n = sock.recv_into(buf, 0, wait)?;
        if n == 0 {
            *eof = true;
        } else {
            pending.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Runs the handshake to completion. Restartable after `EINTR`.
    pub fn handshake(&self, sock: &Sock, wait: Wait) -> Result<()> {
        let _turn = self.read_turn.take(wait)?;
        let mut side = lock(&self.read_side);
        loop {
            self.flush(sock, wait)?;
            if !lock(&self.state).is_handshaking() {
                return Ok(());
            }
            if side.eof {
                return Err(tls_error(
                    TlsFailure::Eof,
                    "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol \
                     (the peer closed during the handshake)",
                ));
            }
            if side.pending.is_empty() {
                self.fill(sock, wait, &mut side)?;
            }
            self.absorb(sock, wait, &mut side)?;
        }
    }

    /// Reads plaintext; `Ok(0)` is the end of the stream (a peer that closes without
    /// `close_notify` also ends it, like Python's `suppress_ragged_eofs=True`).
    pub fn read(&self, sock: &Sock, out: &mut [u8], wait: Wait) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let _turn = self.read_turn.take(wait)?;
        let mut side = lock(&self.read_side);
        loop {
            let wants_write = {
                let mut conn = lock(&self.state);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e.into()),
                }
                conn.wants_write()
            };
            if wants_write {
                self.flush_if_idle(sock, wait)?; // a key update or alert the peer is owed
            }
            if side.eof && side.pending.is_empty() {
                return Ok(0);
            }
            if side.pending.is_empty() {
                self.fill(sock, wait, &mut side)?;
            }
            self.absorb(sock, wait, &mut side)?;
        }
    }

    /// Writes all of `data`, resuming after the `*consumed` bytes earlier calls handed to
    /// rustls: call it again after `EINTR` with the same `consumed`. Records of an earlier,
    /// interrupted write go out first. The caller holds its stream's write turn, so that two
    /// threads' data do not interleave.
    pub fn write_all(
        &self,
        sock: &Sock,
        data: &[u8],
        wait: Wait,
        consumed: &mut usize,
    ) -> Result<()> {
        let mut out = lock(&self.outgoing);
        loop {
            self.send_records(&mut out, sock, wait)?;
            if *consumed >= data.len() {
                return Ok(());
            }
            // A piece at a time: never more than one piece of ciphertext in memory.
            let end = (*consumed + WRITE_CHUNK).min(data.len());
            *consumed += lock(&self.state).writer().write(&data[*consumed..end])?;
        }
    }

    /// Sends the records an interrupted write left, if any.
    pub fn flush_pending(&self, sock: &Sock, wait: Wait) -> Result<()> {
        self.flush(sock, wait)
    }

    /// Sends `close_notify` (best effort, without waiting): the peer sees a clean end. Skipped
    /// while another thread is sending: a record cannot be cut into, and `close()` or
    /// `shutdown()` must not wait for a writer blocked on a peer that does not read (the
    /// socket's own shutdown then wakes that writer).
    pub fn close_notify(&self, sock: &Sock) {
        let mut out = match self.outgoing.try_lock() {
            Ok(out) => out,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        lock(&self.state).send_close_notify();
        let _ = self.send_records(&mut out, sock, Wait::NonBlocking);
    }
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
