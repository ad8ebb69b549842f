//! A socket with the stdlib's timeout model, shared safely between threads.
//!
//! CPython keeps a socket's fd in a plain field that `close()` sets to -1, and implements
//! timeouts by putting the fd in non-blocking mode and polling before each retry
//! (`sock_call_ex` in `socketmodule.c`). [`Sock`] does the same with atomics, so every method
//! takes `&self`: one thread may block in `recv` while another sends, shuts down or closes.
//!
//! Blocking calls here never touch Python. A call interrupted by a signal returns the `EINTR`
//! error; the binding layer runs the signal handlers and calls again with the same [`Wait`],
//! so the deadline of a timed call survives the retry.
//!
//! Unlike CPython, a call in progress keeps its fd number allocated: `close()` from another
//! thread gives the number back only when the last call using it returns. CPython closes at
//! once, and a timed `sendall` that re-reads the fd between polls can find the number already
//! reused by the next `accept` and write the rest of its data into an unrelated connection.
//! Here every retry checks that the socket is still open and fails with `EBADF` otherwise, and
//! the number it checks cannot have changed owner meanwhile.

use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Type};

use crate::error::{Error, Result};
use crate::registry::Membership;

/// The stdlib's three socket modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// `settimeout(None)`: calls block until done.
    Blocking,
    /// `settimeout(0)`: calls fail at once with `EAGAIN` instead of waiting.
    NonBlocking,
    /// `settimeout(t)`: calls wait at most `t`, then fail with [`Error::Timeout`].
    After(Duration),
}

impl Timeout {
    fn to_nanos(self) -> i64 {
        match self {
            Timeout::Blocking => -1,
            Timeout::NonBlocking => 0,
            Timeout::After(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).max(1),
        }
    }

    fn from_nanos(ns: i64) -> Self {
        match ns {
            n if n < 0 => Timeout::Blocking,
            0 => Timeout::NonBlocking,
            n => Timeout::After(Duration::from_nanos(n as u64)),
        }
    }

    /// Starts the clock for one call.
    pub fn start(self) -> Wait {
        match self {
            Timeout::Blocking => Wait::Blocking,
            Timeout::NonBlocking => Wait::NonBlocking,
            Timeout::After(d) => Wait::Until(Instant::now() + d),
        }
    }
}

/// How one call waits, fixed when the call starts so that retries share its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Blocking,
    NonBlocking,
    Until(Instant),
}

/// Runs `op` until it stops failing with `EINTR`, calling `on_signal` after each interruption:
/// the binding layer runs Python's signal handlers there, and an error from it (a
/// `KeyboardInterrupt`) ends the call. `op` keeps its own progress, so each retry resumes.
pub fn retry<T, E: From<Error>>(
    mut op: impl FnMut() -> Result<T>,
    on_signal: &mut impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<T, E> {
    loop {
        match op() {
            Err(e) if e.is_interrupted() => on_signal()?,
            r => return r.map_err(E::from),
        }
    }
}

/// What a socket may be waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    Read,
    Write,
}

/// An owned socket file descriptor plus the stdlib's per-socket state.
#[derive(Debug)]
pub struct Sock {
    fd: AtomicI32,
    /// Calls using the fd right now, plus [`CLOSED`] once `close()` has given it up.
    users: AtomicU32,
    /// The fd `close()` gave up while calls were still using it; the last of them closes it.
    orphan: AtomicI32,
    timeout_ns: AtomicI64,
    family: i32,
    ty: i32,
    proto: i32,
    /// The client groups this socket is registered in, left when the socket closes. A socket
    /// may be in several (the listener's, and a chat room's, say); each counts it.
    memberships: Mutex<Vec<Membership>>,
}

/// The bit of `Sock::users` that says `close()` was called.
const CLOSED: u32 = 1 << 31;

/// One call's use of the fd: while it lives, the fd number stays this socket's.
struct InUse<'a> {
    sock: &'a Sock,
    fd: RawFd,
}

impl InUse<'_> {
    /// `EBADF` once the socket was closed or detached since this use began (CPython re-reads
    /// its fd before every retry and fails the same way).
    fn still_open(&self) -> Result<()> {
        if self.sock.fd.load(Ordering::SeqCst) == self.fd {
            Ok(())
        } else {
            Err(Error::os(libc::EBADF))
        }
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.sock.leave();
    }
}

impl Sock {
    /// Opens a new socket (close-on-exec, like every socket CPython creates).
    pub fn open(family: i32, ty: i32, proto: i32) -> Result<Sock> {
        let protocol = (proto != 0).then(|| Protocol::from(proto));
        let s = socket2::Socket::new(Domain::from(family), Type::from(ty), protocol)?;
        // SAFETY: the fd was just created and is owned by nobody else.
        Ok(unsafe { Sock::from_raw(s.into_raw_fd(), family, ty, proto) })
    }

    /// Wraps an fd this `Sock` will own and close.
    ///
    /// # Safety
    /// `fd` must be an open socket that nothing else will close.
    pub unsafe fn from_raw(fd: RawFd, family: i32, ty: i32, proto: i32) -> Sock {
        Sock {
            fd: AtomicI32::new(fd),
            users: AtomicU32::new(0),
            orphan: AtomicI32::new(-1),
            timeout_ns: AtomicI64::new(-1),
            family,
            // The creation flags are not part of the type, as in CPython's `socket.type`.
            ty: ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC),
            proto,
            memberships: Mutex::new(Vec::new()),
        }
    }

    /// Reads an fd's family, type and protocol from the kernel (`SO_DOMAIN`, `SO_TYPE`,
    /// `SO_PROTOCOL`), for `Socket(fileno=fd)`.
    pub fn probe(fd: RawFd) -> Result<(i32, i32, i32)> {
        Ok((
            getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?,
            getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?,
            getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?,
        ))
    }

    /// The fd, or -1 once closed or detached.
    pub fn fileno(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }

    pub fn family(&self) -> i32 {
        self.family
    }

    pub fn ty(&self) -> i32 {
        self.ty
    }

    pub fn proto(&self) -> i32 {
        self.proto
    }

    /// Starts a use of the fd (`EBADF` if closed). Every system call on the fd goes through one.
    fn enter(&self) -> Result<InUse<'_>> {
        let users = self.users.fetch_add(1, Ordering::SeqCst);
        let fd = self.fd.load(Ordering::SeqCst);
        let in_use = InUse { sock: self, fd };
        if users & CLOSED != 0 || fd < 0 {
            return Err(Error::os(libc::EBADF)); // dropping `in_use` leaves again
        }
        Ok(in_use)
    }

    /// Ends a use; the last use after `close()` closes the fd `close()` left behind.
    fn leave(&self) {
        if self.users.fetch_sub(1, Ordering::SeqCst) == CLOSED | 1 {
            close_fd(self.orphan.swap(-1, Ordering::SeqCst));
        }
    }

    pub fn timeout(&self) -> Timeout {
        Timeout::from_nanos(self.timeout_ns.load(Ordering::Acquire))
    }

    /// Sets the mode, switching the fd's `O_NONBLOCK` to match (non-blocking for any timeout,
    /// as CPython does).
    pub fn set_timeout(&self, timeout: Timeout) -> Result<()> {
        // CPython records the timeout before touching the fd, so even on a closed socket
        // (EBADF) `gettimeout()` afterwards reports the new value; keep that order.
        self.timeout_ns.store(timeout.to_nanos(), Ordering::Release);
        set_nonblocking(self.enter()?.fd, timeout != Timeout::Blocking)
    }

    /// Starts the clock for one call in the current mode.
    pub fn start(&self) -> Wait {
        self.timeout().start()
    }

    /// Runs `op` until it succeeds, fails, or (in timed mode) the deadline passes, polling for
    /// readiness whenever it would block. `EINTR` is returned to the caller.
    fn io<T>(
        &self,
        ready: Ready,
        wait: Wait,
        mut op: impl FnMut(&socket2::Socket) -> io::Result<T>,
    ) -> Result<T> {
        let fd = self.enter()?;
        // SAFETY: `fd` keeps the fd open and owned by `self`; ManuallyDrop keeps this view from
        // closing it.
        let sock = ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(fd.fd) });
        loop {
            match op(&sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match wait {
                    Wait::Until(deadline) => {
                        let polled = poll_ready(fd.fd, ready, Some(deadline));
                        // Closed meanwhile: EBADF, even if the deadline passed too (as CPython).
                        fd.still_open()?;
                        polled?;
                    }
                    _ => return Err(e.into()),
                },
                r => return r.map_err(Error::from),
            }
        }
    }

    pub fn bind(&self, addr: &SocketAddr) -> Result<()> {
        self.io(Ready::Read, Wait::NonBlocking, |s| {
            s.bind(&SockAddr::from(*addr))
        })
    }

    pub fn listen(&self, backlog: i32) -> Result<()> {
        self.io(Ready::Read, Wait::NonBlocking, |s| s.listen(backlog))
    }

    /// Accepts one connection. The new fd is blocking and close-on-exec.
    pub fn accept(&self, wait: Wait) -> Result<(RawFd, SocketAddr)> {
        let (conn, addr) = self.io(Ready::Read, wait, |s| s.accept())?;
        let fd = conn.into_raw_fd();
        match addr.as_socket() {
            Some(addr) => Ok((fd, addr)),
            None => {
                // SAFETY: `fd` was just accepted and is owned here.
                drop(unsafe { socket2::Socket::from_raw_fd(fd) });
                Err(Error::os(libc::EAFNOSUPPORT))
            }
        }
    }

    /// The `connect()` system call itself. On a non-blocking fd it usually fails with
    /// `EINPROGRESS`; [`Sock::finish_connect`] then waits for the outcome.
    pub fn start_connect(&self, addr: &SocketAddr) -> Result<()> {
        self.io(Ready::Write, Wait::NonBlocking, |s| {
            s.connect(&SockAddr::from(*addr))
        })
    }

    /// Waits until a connection in progress completes or fails, and reports which.
    pub fn finish_connect(&self, wait: Wait) -> Result<()> {
        let fd = self.enter()?;
        let polled = match wait {
            Wait::Until(deadline) => poll_ready(fd.fd, Ready::Write, Some(deadline)),
            Wait::Blocking => poll_ready(fd.fd, Ready::Write, None),
            Wait::NonBlocking => Ok(()),
        };
        fd.still_open()?;
        polled?;
        match getsockopt_int(fd.fd, libc::SOL_SOCKET, libc::SO_ERROR)? {
            0 | libc::EISCONN => Ok(()),
            errno => Err(Error::os(errno)),
        }
    }

    /// Receives at most `buf.len()` bytes; `Ok(0)` is end of stream.
    pub fn recv(&self, buf: &mut [MaybeUninit<u8>], flags: i32, wait: Wait) -> Result<usize> {
        let flags = flags | dontwait(wait);
        self.io(Ready::Read, wait, |s| s.recv_with_flags(buf, flags))
    }

    /// Receives into initialised memory.
    pub fn recv_into(&self, buf: &mut [u8], flags: i32, wait: Wait) -> Result<usize> {
        // SAFETY: recv only ever writes initialised bytes, so viewing `buf` as maybe-uninit and
        // writing through it keeps every byte initialised.
        let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        self.recv(buf, flags, wait)
    }

    /// Sends what the kernel accepts now (at least one byte unless it fails).
    pub fn send(&self, buf: &[u8], flags: i32, wait: Wait) -> Result<usize> {
        // MSG_NOSIGNAL: a closed peer is an EPIPE error (BrokenPipeError), never a SIGPIPE,
        // even if the embedding program restored SIGPIPE's default action.
        let flags = flags | libc::MSG_NOSIGNAL | dontwait(wait);
        self.io(Ready::Write, wait, |s| s.send_with_flags(buf, flags))
    }

    /// Sends all of `buf`, resuming at `*sent` and advancing it, so that a call interrupted by
    /// a signal can be resumed without resending anything. One deadline covers the whole call.
    /// Like CPython, it makes at least one `send` call, so an empty `sendall` on a closed or
    /// unconnected socket fails as the stdlib's does.
    ///
    /// A blocking `send` that a signal interrupts after some bytes went out returns their
    /// count rather than `EINTR`; CPython runs the signal handlers between sends, so this
    /// returns `EINTR` after any short blocking send (on Linux a blocking TCP send is short
    /// only when interrupted) and the caller resumes after running them.
    pub fn sendall(&self, buf: &[u8], flags: i32, wait: Wait, sent: &mut usize) -> Result<()> {
        loop {
            *sent += self.send(&buf[*sent..], flags, wait)?;
            if *sent >= buf.len() {
                return Ok(());
            }
            if wait == Wait::Blocking {
                return Err(Error::os(libc::EINTR));
            }
        }
    }

    /// `shutdown(how)` with the raw value, so an invalid `how` is the kernel's `EINVAL`.
    pub fn shutdown(&self, how: i32) -> Result<()> {
        let fd = self.enter()?;
        // SAFETY: plain system call on an fd we own.
        if unsafe { libc::shutdown(fd.fd, how) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        let addr = self.io(Ready::Read, Wait::NonBlocking, |s| s.local_addr())?;
        sockaddr_of(&addr, self.family)
    }

    pub fn peer_addr(&self) -> Result<SocketAddr> {
        let addr = self.io(Ready::Read, Wait::NonBlocking, |s| s.peer_addr())?;
        sockaddr_of(&addr, self.family)
    }

    pub fn setsockopt_int(&self, level: i32, name: i32, value: i32) -> Result<()> {
        self.setsockopt_bytes(level, name, &value.to_ne_bytes())
    }

    pub fn setsockopt_bytes(&self, level: i32, name: i32, value: &[u8]) -> Result<()> {
        let fd = self.enter()?;
        // SAFETY: `value` is valid for `value.len()` bytes.
        let rc = unsafe {
            libc::setsockopt(
                fd.fd,
                level,
                name,
                value.as_ptr().cast(),
                value.len() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// `setsockopt(level, name, None, optlen)`: a NULL value with a length.
    pub fn setsockopt_null(&self, level: i32, name: i32, optlen: u32) -> Result<()> {
        let fd = self.enter()?;
        // SAFETY: a NULL option value is what the caller asked for; the kernel validates it.
        let rc = unsafe { libc::setsockopt(fd.fd, level, name, std::ptr::null(), optlen) };
        if rc < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    pub fn getsockopt_int(&self, level: i32, name: i32) -> Result<i32> {
        getsockopt_int(self.enter()?.fd, level, name)
    }

    /// Reads an option as at most `buflen` raw bytes.
    pub fn getsockopt_bytes(&self, level: i32, name: i32, buflen: usize) -> Result<Vec<u8>> {
        let fd = self.enter()?;
        let mut buf = vec![0u8; buflen];
        let mut len = buflen as libc::socklen_t;
        // SAFETY: `buf` is valid for `len` bytes and the kernel writes at most that many.
        let rc = unsafe { libc::getsockopt(fd.fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
        if rc < 0 {
            return Err(io::Error::last_os_error().into());
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// Records a group this socket is registered in; closing it will leave the group. Joining
    /// a group again replaces the earlier registration there.
    pub fn join(&self, membership: Membership) {
        let mut memberships = self.lock_memberships();
        memberships.retain(|m| !Arc::ptr_eq(&m.registry, &membership.registry));
        memberships.push(membership);
    }

    fn lock_memberships(&self) -> std::sync::MutexGuard<'_, Vec<Membership>> {
        self.memberships.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave_group(&self) {
        for m in std::mem::take(&mut *self.lock_memberships()) {
            m.leave();
        }
    }

    /// Gives up the fd without closing it; returns -1 if already closed.
    pub fn detach(&self) -> RawFd {
        self.leave_group();
        self.fd.swap(-1, Ordering::AcqRel)
    }

    /// Closes the fd. Calling it again is harmless. `ECONNRESET` from close is ignored, as in
    /// CPython: the socket is gone either way. While other threads' calls still use the fd
    /// (a blocked `recv`, say), the socket reads as closed at once and the last of those calls
    /// closes the fd when it returns: the kernel, too, keeps a socket open until the system
    /// calls using it return.
    pub fn close(&self) -> Result<()> {
        // Leave the group before the fd number can be reused by another accept.
        self.leave_group();
        let fd = self.fd.swap(-1, Ordering::SeqCst);
        if fd < 0 {
            return Ok(());
        }
        self.orphan.store(fd, Ordering::SeqCst);
        if self.users.fetch_or(CLOSED, Ordering::SeqCst) & !CLOSED != 0 {
            return Ok(()); // the last call using it closes it
        }
        let fd = self.orphan.swap(-1, Ordering::SeqCst);
        // SAFETY: the swap made this the only owner of `fd` (-1 if a leaving call took it).
        if fd >= 0 && unsafe { libc::close(fd) } < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ECONNRESET) {
                return Err(err.into());
            }
        }
        Ok(())
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        // Errors cannot be reported from a destructor; the fd is released either way.
        let _ = self.close();
    }
}

/// `MSG_DONTWAIT` for a call that must not block in the system call itself: a timed or
/// non-blocking call then works even on an fd left in blocking mode (a `Connection.recv` with
/// its own timeout on a blocking socket).
fn dontwait(wait: Wait) -> i32 {
    match wait {
        Wait::Blocking => 0,
        Wait::NonBlocking | Wait::Until(_) => libc::MSG_DONTWAIT,
    }
}

/// Converts a kernel address, giving the unbound wildcard of the socket's family for an
/// unnamed socket (the kernel reports family 0 before `bind` in some cases).
fn sockaddr_of(addr: &SockAddr, family: i32) -> Result<SocketAddr> {
    if let Some(a) = addr.as_socket() {
        return Ok(a);
    }
    match family {
        libc::AF_INET => Ok(SocketAddr::from(([0u8; 4], 0))),
        libc::AF_INET6 => Ok(SocketAddr::from(([0u16; 8], 0))),
        _ => Err(Error::os(libc::EAFNOSUPPORT)),
    }
}

/// Closes an fd nobody else owns (-1: nothing to do); errors have nowhere to go.
fn close_fd(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: the caller took sole ownership of `fd`.
        unsafe { libc::close(fd) };
    }
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a c_int and `len` says so.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(value)
}

fn set_nonblocking(fd: RawFd, on: bool) -> Result<()> {
    let mut flag: libc::c_int = on.into();
    // SAFETY: FIONBIO takes a pointer to an int flag (CPython uses the same ioctl on Linux).
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &mut flag) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(())
}

/// Waits until `fd` is ready or `deadline` passes. As in CPython, the wait is rounded up to
/// whole milliseconds, and an expired deadline is a timeout even if the fd might be ready.
fn poll_ready(fd: RawFd, ready: Ready, deadline: Option<Instant>) -> Result<()> {
    let timeout_ms = match deadline {
        None => -1,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            let ms = left.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    let mut pfd = libc::pollfd {
        fd,
        events: match ready {
            Ready::Read => libc::POLLIN,
            Ready::Write => libc::POLLOUT,
        },
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, timeout_ms) } {
        n if n < 0 => Err(io::Error::last_os_error().into()),
        0 => Err(Error::Timeout),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (Sock, SocketAddr) {
        let l = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        l.bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        l.listen(16).unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    fn connected_pair() -> (Sock, Sock) {
        let (l, addr) = listener();
        let c = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        c.start_connect(&addr).unwrap();
        let (fd, _) = l.accept(Wait::Blocking).unwrap();
        // SAFETY: freshly accepted fd.
        let s = unsafe { Sock::from_raw(fd, libc::AF_INET, libc::SOCK_STREAM, 0) };
        (c, s)
    }

    #[test]
    fn send_and_receive() {
        let (c, s) = connected_pair();
        let mut sent = 0;
        c.sendall(b"hello", 0, Wait::Blocking, &mut sent).unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let n = s.recv_into(&mut buf, 0, Wait::Blocking).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[test]
    fn timed_recv_expires() {
        let (c, _s) = connected_pair();
        c.set_timeout(Timeout::After(Duration::from_millis(50)))
            .unwrap();
        let start = Instant::now();
        let err = c.recv_into(&mut [0u8; 4], 0, c.start()).unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn timed_recv_on_a_blocking_fd_expires() {
        let (c, _s) = connected_pair();
        let wait = Timeout::After(Duration::from_millis(30)).start();
        let err = c.recv_into(&mut [0u8; 4], 0, wait).unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
    }

    #[test]
    fn nonblocking_recv_is_eagain() {
        let (c, _s) = connected_pair();
        c.set_timeout(Timeout::NonBlocking).unwrap();
        let err = c.recv_into(&mut [0u8; 4], 0, c.start()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EAGAIN));
    }

    #[test]
    fn closed_socket_is_ebadf_and_close_is_idempotent() {
        let (c, _s) = connected_pair();
        c.close().unwrap();
        c.close().unwrap();
        assert_eq!(c.fileno(), -1);
        let err = c.recv_into(&mut [0u8; 4], 0, Wait::Blocking).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EBADF));
    }

    #[test]
    fn close_keeps_the_fd_number_until_the_call_using_it_returns() {
        let (c, _s) = connected_pair();
        let c = std::sync::Arc::new(c);
        let fd = c.fileno();
        let reader = {
            let c = c.clone();
            std::thread::spawn(move || {
                let wait = Timeout::After(Duration::from_millis(300)).start();
                c.recv_into(&mut [0u8; 4], 0, wait)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        c.close().unwrap();
        assert_eq!(c.fileno(), -1);
        // The number still names the same open socket: nobody else can be given it.
        // SAFETY: F_GETFD only reads the fd's flags.
        assert!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
        let (family, ..) = Sock::probe(fd).unwrap();
        assert_eq!(family, libc::AF_INET);
        let err = reader.join().unwrap().unwrap_err();
        assert_eq!(err.errno(), Some(libc::EBADF), "{err:?}");
        assert!(matches!(
            c.recv_into(&mut [0u8; 4], 0, Wait::NonBlocking),
            Err(e) if e.errno() == Some(libc::EBADF)
        ));
    }

    #[test]
    fn refused_connection_reports_econnrefused() {
        let (l, addr) = listener();
        drop(l);
        let c = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let err = c.start_connect(&addr).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn timed_connect_finishes_through_poll() {
        let (_l, addr) = listener();
        let c = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        c.set_timeout(Timeout::After(Duration::from_secs(5)))
            .unwrap();
        match c.start_connect(&addr) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EINPROGRESS) => c.finish_connect(c.start()).unwrap(),
            Err(e) => panic!("{e:?}"),
        }
        assert_eq!(c.peer_addr().unwrap(), addr);
    }

    #[test]
    fn probe_reads_family_and_type() {
        let s = Sock::open(libc::AF_INET6, libc::SOCK_STREAM, 0).unwrap();
        let (family, ty, proto) = Sock::probe(s.fileno()).unwrap();
        assert_eq!(
            (family, ty, proto),
            (libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP)
        );
    }

    #[test]
    fn unbound_socket_name_is_the_wildcard() {
        let s = Sock::open(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        assert_eq!(s.local_addr().unwrap(), "0.0.0.0:0".parse().unwrap());
    }
}
