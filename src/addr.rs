//! Host names to socket addresses, the way CPython's `socket` module resolves them.
//!
//! The stdlib accepts `""` (any interface), `"<broadcast>"`, numeric addresses and host names;
//! numeric ones skip the resolver, names go through `getaddrinfo` restricted to the socket's
//! family, and resolver failures become `socket.gaierror(code, message)`.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::{Error, Result};

/// A host and port as the caller wrote them, before resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
    /// IPv6 only; zero for IPv4.
    pub flowinfo: u32,
    /// IPv6 only; zero for IPv4.
    pub scope_id: u32,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort {
            host: host.into(),
            port,
            flowinfo: 0,
            scope_id: 0,
        }
    }
}

/// Resolves `hp` for a socket of `family` (`AF_INET` or `AF_INET6`), as `socket.bind`/`connect` do.
pub fn resolve(family: i32, hp: &HostPort) -> Result<SocketAddr> {
    match resolve_literal(family, hp) {
        Some(r) => r,
        None => Ok(with_port(first_of_family(family, &hp.host)?, hp)),
    }
}

/// Resolves `hp` without the resolver when its host is `""`, `"<broadcast>"` or a numeric
/// address of `family`; `None` when a name lookup is needed.
pub fn resolve_literal(family: i32, hp: &HostPort) -> Option<Result<SocketAddr>> {
    let ip = match (family, hp.host.as_str()) {
        (libc::AF_INET, "") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (libc::AF_INET6, "") => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (libc::AF_INET, "<broadcast>") => IpAddr::V4(Ipv4Addr::BROADCAST),
        (libc::AF_INET6, "<broadcast>") => return Some(Err(gai_error(libc::EAI_FAMILY))),
        (libc::AF_INET, host) => IpAddr::V4(host.parse::<Ipv4Addr>().ok()?),
        (libc::AF_INET6, host) => IpAddr::V6(host.parse::<Ipv6Addr>().ok()?),
        _ => return Some(Err(Error::os(libc::EAFNOSUPPORT))),
    };
    Some(Ok(with_port(ip, hp)))
}

fn with_port(ip: IpAddr, hp: &HostPort) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, hp.port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, hp.port, hp.flowinfo, hp.scope_id)),
    }
}

fn first_of_family(family: i32, host: &str) -> Result<IpAddr> {
    let found = getaddrinfo(Some(host), 0, family, 0)?;
    // getaddrinfo never succeeds with an empty list, but an error beats an index panic.
    found
        .first()
        .map(SocketAddr::ip)
        .ok_or_else(|| gai_error(libc::EAI_NONAME))
}

/// Every stream address for `host` and `port`, in the resolver's order, without duplicates.
/// `host` of `None` with `AI_PASSIVE` in `flags` gives the wildcard addresses.
pub fn getaddrinfo(
    host: Option<&str>,
    port: u16,
    family: i32,
    flags: i32,
) -> Result<Vec<SocketAddr>> {
    let c_host = host
        .map(CString::new)
        .transpose()
        .map_err(|_| Error::InvalidArgument("host name contains a NUL byte".into()))?;
    let c_port = CString::new(port.to_string()).expect("digits have no NUL");
    // SAFETY: an all-zero addrinfo is the documented "no hints" value; we then set four fields.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = flags;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `res` is freed below with freeaddrinfo.
    let rc = unsafe {
        libc::getaddrinfo(
            c_host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
            c_port.as_ptr(),
            &hints,
            &mut res,
        )
    };
    if rc != 0 {
        return Err(if rc == libc::EAI_SYSTEM {
            Error::Io(std::io::Error::last_os_error())
        } else {
            gai_error(rc)
        });
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getaddrinfo returned, which stays valid until freed.
        let ai = unsafe { &*cur };
        // SAFETY: ai_addr points at a sockaddr of the family ai_family names.
        let addr = unsafe { sockaddr_to_std(ai.ai_family, ai.ai_addr) };
        if let Some(addr) = addr {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed exactly once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Reads an IPv4 or IPv6 `sockaddr`; other families give `None`.
///
/// # Safety
/// `sa` must point at a valid socket address of family `family`.
unsafe fn sockaddr_to_std(family: i32, sa: *const libc::sockaddr) -> Option<SocketAddr> {
    match family {
        libc::AF_INET => {
            // SAFETY: the caller guarantees `sa` is a sockaddr_in.
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the caller guarantees `sa` is a sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn gai_error(code: i32) -> Error {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated message.
    let message = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    Error::Resolve { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_host_is_the_wildcard() {
        let a = resolve(libc::AF_INET, &HostPort::new("", 80)).unwrap();
        assert_eq!(a, "0.0.0.0:80".parse().unwrap());
        let a = resolve(libc::AF_INET6, &HostPort::new("", 80)).unwrap();
        assert_eq!(a, "[::]:80".parse().unwrap());
    }

    #[test]
    fn broadcast_is_ipv4_only() {
        let a = resolve(libc::AF_INET, &HostPort::new("<broadcast>", 9)).unwrap();
        assert_eq!(a, "255.255.255.255:9".parse().unwrap());
        assert!(matches!(
            resolve(libc::AF_INET6, &HostPort::new("<broadcast>", 9)),
            Err(Error::Resolve { .. })
        ));
    }

    #[test]
    fn localhost_resolves_within_the_family() {
        let a = resolve(libc::AF_INET, &HostPort::new("localhost", 7)).unwrap();
        assert_eq!(a, "127.0.0.1:7".parse().unwrap());
    }

    #[test]
    fn ipv6_keeps_flowinfo_and_scope() {
        let hp = HostPort {
            host: "::1".into(),
            port: 5,
            flowinfo: 3,
            scope_id: 0,
        };
        match resolve(libc::AF_INET6, &hp).unwrap() {
            SocketAddr::V6(v6) => assert_eq!((v6.port(), v6.flowinfo()), (5, 3)),
            other => panic!("expected IPv6, got {other}"),
        }
    }

    #[test]
    fn unknown_names_are_resolver_errors() {
        let err = resolve(libc::AF_INET, &HostPort::new("no-such-host.invalid", 1)).unwrap_err();
        assert!(matches!(err, Error::Resolve { .. }), "{err:?}");
    }

    #[test]
    fn ipv4_literal_on_an_ipv6_socket_is_refused_by_the_resolver() {
        let err = resolve(libc::AF_INET6, &HostPort::new("127.0.0.1", 1)).unwrap_err();
        assert!(matches!(err, Error::Resolve { .. }), "{err:?}");
    }
}
