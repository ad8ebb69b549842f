//! Socket setup, as the seed recipe does it: client and server options, a listener sized by
//! its client limit, connecting to the first address a name resolves to that answers, and the
//! accept policy (register, TCP_NODELAY, the server's TLS handshake within a bound).
//!
//! Calls that wait take an `on_signal` hook, run after a signal interrupts them (see
//! [`crate::socket::retry`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::addr;
use crate::error::{Error, Result};
use crate::registry::{ClientData, ClientRecord, Membership, Registry};
use crate::socket::{retry, Sock, Timeout, Wait};
use crate::stream::Stream;
use crate::tls::{ClientSettings, TlsSession};

/// How long a server waits for a client's TLS handshake when the listener has no timeout of
/// its own: a client that connects and says nothing must not stall the accept loop forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP client socket: `TCP_NODELAY` on by default (as asyncio and Go do for every TCP
/// connection), so small request packets leave at once instead of waiting for Nagle.
pub fn client_options(
    family: i32,
    nodelay: bool,
    sndbuf: Option<i32>,
    rcvbuf: Option<i32>,
) -> Result<Sock> {
    let sock = Sock::open(family, libc::SOCK_STREAM, 0)?;
    if nodelay {
        sock.setsockopt_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    set_buffers(&sock, sndbuf, rcvbuf)?;
    Ok(sock)
}

/// A TCP server socket, not yet bound: `SO_REUSEADDR` by default so a restarted server can
/// bind its port while old connections sit in TIME_WAIT.
pub fn server_options(
    family: i32,
    reuse_addr: bool,
    sndbuf: Option<i32>,
    rcvbuf: Option<i32>,
) -> Result<Sock> {
    let sock = Sock::open(family, libc::SOCK_STREAM, 0)?;
    if reuse_addr {
        sock.setsockopt_int(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    set_buffers(&sock, sndbuf, rcvbuf)?;
    Ok(sock)
}

fn set_buffers(sock: &Sock, sndbuf: Option<i32>, rcvbuf: Option<i32>) -> Result<()> {
    if let Some(size) = sndbuf {
        sock.setsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUF, size)?;
    }
    if let Some(size) = rcvbuf {
        sock.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
    }
    Ok(())
}

/// A listening socket on `addr` whose backlog is the client limit `max` (the kernel caps it
/// at `net.core.somaxconn`).
pub fn listen(addr: &SocketAddr, max: usize, reuse_port: bool) -> Result<Sock> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let sock = server_options(family, true, None, None)?;
    if reuse_port {
        sock.setsockopt_int(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    sock.bind(addr)?;
    sock.listen(i32::try_from(max).unwrap_or(i32::MAX))?;
    Ok(sock)
}

/// Registers an accepted connection, with its owner's `data`; closing `sock` later removes it
/// again. On `ServerFull` nothing is registered and the caller drops (closes) the connection.
pub fn register(
    registry: &Arc<Registry>,
    sock: &Sock,
    peer: SocketAddr,
    data: Option<ClientData>,
) -> Result<ClientRecord> {
    let record = registry.add_with(sock.fileno(), peer, data)?;
    sock.join(Membership {
        registry: registry.clone(),
        fd: record.fd,
        token: record.token,
    });
    Ok(record)
}

/// `connect()` with CPython's handling of interrupted and in-progress connects: the system
/// call is made once; if a signal interrupts it or (with a timeout) it is in progress, the
/// outcome is awaited with one deadline across signal retries. A non-blocking socket reports
/// an interruption (`InterruptedError`) and leaves the waiting to its caller, as CPython does.
///
/// The outer `Err` is the hook's (a Python exception); the inner result is the connection's
/// outcome, which `connect_ex` returns as an errno.
pub fn connect<E: From<Error>>(
    sock: &Sock,
    addr: &SocketAddr,
    wait: Wait,
    on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<Result<()>, E> {
    match sock.start_connect(addr) {
        Ok(()) => return Ok(Ok(())),
        Err(e) if e.is_interrupted() => {
            on_signal()?;
            if wait == Wait::NonBlocking {
                return Ok(Err(e));
            }
        }
        Err(e) if matches!(wait, Wait::Until(_)) && e.errno() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Ok(Err(e)),
    }
    loop {
        match sock.finish_connect(wait) {
            Err(e) if e.is_interrupted() => on_signal()?,
            outcome => return Ok(outcome),
        }
    }
}

/// `create_client`: every address `host` resolves to is tried in turn (as
/// `socket.create_connection` does) with the client options and `timeout`; the first that
/// connects is handed out, after its TLS handshake when `tls` is given. The handshake shares
/// the timeout: a silent or plaintext server ends in a timeout or an ssl error, never a hang.
pub fn create_client<E: From<Error>>(
    host: &str,
    port: u16,
    timeout: Timeout,
    tls: Option<&ClientSettings>,
    on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<Stream, E> {
    let candidates = retry(
        || addr::getaddrinfo(Some(host), port, libc::AF_UNSPEC, 0),
        on_signal,
    )?;
    let mut last = Error::os(libc::ECONNREFUSED);
    for candidate in candidates {
        let family = if candidate.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let sock = client_options(family, true, None, None)?;
        if timeout != Timeout::Blocking {
            sock.set_timeout(timeout)?;
        }
        match connect(&sock, &candidate, sock.start(), on_signal)? {
            Ok(()) => {
                let stream = Stream::new(sock);
                if let Some(settings) = tls {
                    let session = TlsSession::client(settings, host)?;
                    let wait = stream.sock.start();
                    retry(|| stream.handshake(&session, wait), on_signal)?;
                    stream.set_tls(session);
                }
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

/// `accept_client_connect`: accepts one client and registers it in `registry`; past the
/// registry's maximum the new connection is closed at once (the peer reads EOF) and this fails
/// with `ServerFull`. The client gets `TCP_NODELAY` and, with `tls`, the server handshake within
/// the listener's timeout, or [`HANDSHAKE_TIMEOUT`] when it has none. A failed handshake closes
/// the connection, which leaves the registry.
pub fn accept_client<E: From<Error>>(
    listener: &Sock,
    registry: &Arc<Registry>,
    data: Option<ClientData>,
    tls: Option<&Arc<rustls::ServerConfig>>,
    on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<Stream, E> {
    let wait = listener.start();
    let (fd, peer) = retry(|| listener.accept(wait), on_signal)?;
    // SAFETY: a freshly accepted fd; dropping `sock` (on any error below) closes it.
    let sock = unsafe { Sock::from_raw(fd, listener.family(), listener.ty(), listener.proto()) };
    register(registry, &sock, peer, data)?;
    sock.setsockopt_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let stream = Stream::new(sock);
    if let Some(config) = tls {
        let wait = match listener.timeout() {
            Timeout::After(d) => Timeout::After(d),
            _ => Timeout::After(HANDSHAKE_TIMEOUT),
        }
        .start();
        let session = TlsSession::server(config)?;
        retry(|| stream.handshake(&session, wait), on_signal)?;
        stream.set_tls(session);
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_registers_until_full_and_close_unregisters() {
        let listener = listen(&"127.0.0.1:0".parse().unwrap(), 2, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new(Some(2));
        let clients: Vec<Sock> = (0..3)
            .map(|_| {
                let c = client_options(libc::AF_INET, true, None, None).unwrap();
                c.start_connect(&addr).unwrap();
                c
            })
            .collect();
        let mut accepted = Vec::new();
        for i in 0..3 {
            let (fd, peer) = listener.accept(Wait::Blocking).unwrap();
            // SAFETY: freshly accepted fd.
            let conn = unsafe { Sock::from_raw(fd, libc::AF_INET, libc::SOCK_STREAM, 0) };
            match register(&registry, &conn, peer, None) {
                Ok(rec) => {
                    assert!(i < 2);
                    assert_eq!(rec.addr, peer);
                    accepted.push(conn);
                }
                Err(Error::ServerFull { max }) => assert_eq!((i, max), (2, 2)),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(registry.len(), 2);
        let fd = accepted[0].fileno();
        accepted[0].close().unwrap();
        assert!(!registry.contains(fd));
        drop(accepted);
        assert!(registry.is_empty());
        drop(clients);
    }

    #[test]
    fn server_options_set_reuse_addr_and_buffers() {
        let s = server_options(libc::AF_INET, true, Some(16384), None).unwrap();
        assert_eq!(
            s.getsockopt_int(libc::SOL_SOCKET, libc::SO_REUSEADDR)
                .unwrap(),
            1
        );
        // Linux doubles the requested size to leave room for bookkeeping.
        assert_eq!(
            s.getsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap(),
            32768
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn no_signals() -> Result<()> {
        Ok(())
    }

    #[test]
    fn create_client_tries_each_address_and_accept_registers() {
        let listener = listen(&"127.0.0.1:0".parse().unwrap(), 1, false).unwrap();
        let port = listener.local_addr().unwrap().port();
        let registry = Registry::new(Some(1));
        let timeout = Timeout::After(Duration::from_secs(5));
        // "localhost" may resolve to ::1 first, where nothing listens: the next one answers.
        let client = create_client("localhost", port, timeout, None, &mut no_signals).unwrap();
        let server = accept_client(&listener, &registry, None, None, &mut no_signals).unwrap();
        assert!(registry.contains(server.sock.fileno()));
        assert_eq!(
            server
                .sock
                .getsockopt_int(libc::IPPROTO_TCP, libc::TCP_NODELAY)
                .unwrap(),
            1
        );
        // Past the maximum: ServerFull, and the newcomer reads EOF.
        let extra = create_client("127.0.0.1", port, timeout, None, &mut no_signals).unwrap();
        let err = accept_client(&listener, &registry, None, None, &mut no_signals).unwrap_err();
        assert!(matches!(err, Error::ServerFull { max: 1 }), "{err:?}");
        let mut buf = [0u8; 1];
        assert_eq!(extra.read(&mut buf, 0, extra.sock.start()).unwrap(), 0);
        drop(client);
    }

    #[test]
    fn create_client_reports_the_last_failure() {
        let listener = listen(&"127.0.0.1:0".parse().unwrap(), 1, false).unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err =
            create_client("127.0.0.1", port, Timeout::Blocking, None, &mut no_signals).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ECONNREFUSED));
    }
}
