//! The seed recipe's socket setups: client and server options, a listener sized by its client
//! limit, and the accept-and-register step.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Result;
use crate::registry::{ClientRecord, Membership, Registry};
use crate::socket::Sock;

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

/// Registers an accepted connection; closing `sock` later removes it again. On `ServerFull`
/// nothing is registered and the caller drops (closes) the connection.
pub fn register(registry: &Arc<Registry>, sock: &Sock, peer: SocketAddr) -> Result<ClientRecord> {
    let record = registry.add(sock.fileno(), peer)?;
    sock.join(Membership {
        registry: registry.clone(),
        fd: record.fd,
        token: record.token,
    });
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::socket::Wait;

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
            match register(&registry, &conn, peer) {
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
