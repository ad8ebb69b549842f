//! `sockwire.Socket`: the stdlib `socket.socket` API over [`crate::socket::Sock`].

use std::mem::MaybeUninit;

use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyBytes, PyTuple, PyType};

use super::convert::{
    address_arg, address_value, resolve, timeout_arg, timeout_value, type_name, writable_buffer,
    BytesArg,
};
use super::errors::os_error;
use super::gil::{blocking, detached, released};
use crate::error::Error;
use crate::setup;
use crate::socket::{Sock, Timeout, Wait};
use crate::stream::Stream;

#[doc = pydoc!("Socket")]
#[pyclass(module = "sockwire", name = "Socket", subclass, frozen, weakref)]
pub struct Socket {
    /// The socket, and its TLS session once a handshake is done.
    pub(crate) inner: Stream,
}

static SOCKET_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The stdlib `socket` module, imported once.
fn stdlib(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SOCKET_MODULE
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("socket")?.unbind()))
        .map(|m| m.bind(py))
}

/// The timeout new sockets start with: `socket.getdefaulttimeout()`, as in the stdlib.
pub(crate) fn default_timeout(py: Python<'_>) -> PyResult<Timeout> {
    timeout_arg(&stdlib(py)?.call_method0("getdefaulttimeout")?)
}

impl Socket {
    /// Wraps a core socket, giving it the stdlib's default timeout (`None` unless the program
    /// called `socket.setdefaulttimeout`).
    pub(crate) fn adopt(py: Python<'_>, sock: Sock) -> PyResult<Socket> {
        Socket::adopt_stream(py, Stream::new(sock))
    }

    /// [`Socket::adopt`] for a stream (connected, and perhaps under TLS).
    pub(crate) fn adopt_stream(py: Python<'_>, stream: Stream) -> PyResult<Socket> {
        let timeout = default_timeout(py)?;
        if timeout != Timeout::Blocking {
            stream.sock.set_timeout(timeout)?;
        }
        Ok(Socket { inner: stream })
    }

    pub(crate) fn plain(sock: Sock) -> Socket {
        Socket {
            inner: Stream::new(sock),
        }
    }

    pub(crate) fn sock(&self) -> &Sock {
        &self.inner.sock
    }

    /// Writes all of `data`: through TLS when on, holding the write lock so that two
    /// threads' records do not interleave; a plain socket behaves as the stdlib's `sendall`.
    pub(crate) fn write_all(
        &self,
        py: Python<'_>,
        data: &[u8],
        flags: i32,
        wait: Wait,
    ) -> PyResult<()> {
        let _lock = match self.inner.tls() {
            Some(_) => Some(blocking(py, || self.inner.write_lock().take(wait))?),
            None => None,
        };
        let mut progress = 0;
        blocking(py, || {
            self.inner.write_all(data, flags, wait, &mut progress)
        })
    }

    /// Connects, with CPython's handling of interrupted and in-progress connects: the
    /// `connect()` call is made once; if it is interrupted or (with a timeout) in progress,
    /// the outcome is awaited with one deadline across signal retries.
    pub(crate) fn connect_to(&self, py: Python<'_>, addr: &std::net::SocketAddr) -> PyResult<()> {
        let (sock, wait) = (self.sock(), self.sock().start());
        Ok(detached(py, |on_signal| {
            setup::connect(sock, addr, wait, on_signal)
        })??)
    }

    fn address_for(
        &self,
        py: Python<'_>,
        address: &Bound<'_, PyAny>,
        caller: &str,
    ) -> PyResult<std::net::SocketAddr> {
        let hp = address_arg(self.sock().family(), address, caller)?;
        resolve(py, self.sock().family(), &hp)
    }

    /// `from_stdlib`: everything is checked before the stdlib socket is detached, so a socket
    /// sockwire cannot take (AF_UNIX, UDP, closed, not a socket) stays the caller's, intact.
    pub(crate) fn adopt_stdlib<'py>(
        cls: &Bound<'py, PyType>,
        sock: &Bound<'py, PyAny>,
        caller: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        if !sock.is_instance(&stdlib(py)?.getattr("socket")?)? {
            return Err(PyTypeError::new_err(format!(
                "{caller} takes a sockwire.Socket or a socket.socket, not {}",
                type_name(sock)
            )));
        }
        let family: i32 = sock.getattr("family")?.extract()?;
        let ty: i32 = sock.getattr("type")?.extract()?;
        let proto: i32 = sock.getattr("proto")?.extract()?;
        if !matches!(family, libc::AF_INET | libc::AF_INET6) || ty != libc::SOCK_STREAM {
            return Err(PyValueError::new_err(format!(
                "{caller}: sockwire takes TCP sockets (AF_INET or AF_INET6, SOCK_STREAM), not {}",
                sock.repr()?
            )));
        }
        if sock.call_method0("fileno")?.extract::<i32>()? < 0 {
            return Err(os_error(libc::EBADF));
        }
        let timeout = sock.call_method0("gettimeout")?;
        let fd: i32 = sock.call_method0("detach")?.extract()?;
        let kwargs = [("fileno", fd)].into_py_dict(py)?;
        let adopted = cls.call((family, ty, proto), Some(&kwargs))?;
        adopted.call_method1("settimeout", (timeout,))?;
        Ok(adopted)
    }

    fn int_enum<'py>(py: Python<'py>, enum_name: &str, value: i32) -> PyResult<Bound<'py, PyAny>> {
        // The stdlib's _intenum_converter: the IntEnum member when there is one, else the int.
        match stdlib(py)?.getattr(enum_name)?.call1((value,)) {
            Ok(member) => Ok(member),
            Err(e) if e.is_instance_of::<PyValueError>(py) => {
                Ok(value.into_pyobject(py)?.into_any())
            }
            Err(e) => Err(e),
        }
    }
}

/// The most plaintext one `recv` on a TLS socket asks rustls for.
const TLS_RECV_MAX: usize = 1 << 20;

/// A new `bytes` of `len` bytes whose content is not yet written (no zero-filling: the
/// kernel writes it).
fn uninit_bytes(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: PyBytes_FromStringAndSize with NULL allocates `len` bytes plus a NUL and
    // returns a new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t),
        )
    }
}

/// Trims a `bytes` from [`uninit_bytes`] whose first `n` bytes were written.
fn shrink_bytes<'py>(bytes: Bound<'py, PyAny>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
    let py = bytes.py();
    // SAFETY: `bytes` is an exact bytes object; its first `n` bytes are initialised.
    let data = unsafe {
        std::slice::from_raw_parts(ffi::PyBytes_AsString(bytes.as_ptr()) as *const u8, n)
    };
    Ok(PyBytes::new(py, data))
}

#[pymethods]
impl Socket {
    #[new]
    #[pyo3(
        signature = (family=-1, r#type=-1, proto=-1, fileno=None),
        text_signature = "(family=-1, type=-1, proto=-1, fileno=None)"
    )]
    fn new(
        py: Python<'_>,
        family: i32,
        r#type: i32,
        proto: i32,
        fileno: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (sock, ty) = match fileno {
            None => {
                let family = if family == -1 { libc::AF_INET } else { family };
                let ty = if r#type == -1 {
                    libc::SOCK_STREAM
                } else {
                    r#type
                };
                check_family(family)?;
                (Sock::open(family, ty, proto.max(0))?, ty)
            }
            Some(obj) => {
                let fd: i32 = obj.extract()?;
                if fd < 0 {
                    return Err(PyValueError::new_err("negative file descriptor"));
                }
                let (kfamily, kty, kproto) = Sock::probe(fd)?;
                let family = if family == -1 { kfamily } else { family };
                let ty = if r#type == -1 { kty } else { r#type };
                let proto = if proto == -1 { kproto } else { proto };
                check_family(family)?;
                // SAFETY: the caller hands the fd over, as with socket.socket(fileno=...).
                (unsafe { Sock::from_raw(fd, family, ty, proto) }, ty)
            }
        };
        // As CPython's init_sockobject: SOCK_NONBLOCK in the type means non-blocking mode;
        // otherwise the default timeout applies and, when that is None, the fd's own flags are
        // left as they are (even a non-blocking fd then reports a timeout of None).
        if ty & libc::SOCK_NONBLOCK != 0 {
            sock.set_timeout(Timeout::NonBlocking)?;
            return Ok(Socket::plain(sock));
        }
        Socket::adopt(py, sock)
    }

    #[doc = pydoc!("Socket.fileno")]
    fn fileno(&self) -> i32 {
        self.sock().fileno()
    }

    #[doc = pydoc!("Socket.family")]
    #[getter]
    fn family<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Socket::int_enum(py, "AddressFamily", self.sock().family())
    }

    #[doc = pydoc!("Socket.type")]
    #[getter]
    fn r#type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Socket::int_enum(py, "SocketKind", self.sock().ty())
    }

    #[doc = pydoc!("Socket.proto")]
    #[getter]
    fn proto(&self) -> i32 {
        self.sock().proto()
    }

    #[doc = pydoc!("Socket.timeout")]
    #[getter]
    fn timeout(&self) -> Option<f64> {
        timeout_value(self.sock().timeout())
    }

    #[doc = pydoc!("Socket.gettimeout")]
    fn gettimeout(&self) -> Option<f64> {
        timeout_value(self.sock().timeout())
    }

    #[doc = pydoc!("Socket.settimeout")]
    #[pyo3(signature = (value, /))]
    fn settimeout(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(self.sock().set_timeout(timeout_arg(value)?)?)
    }

    #[doc = pydoc!("Socket.setblocking")]
    #[pyo3(signature = (flag, /))]
    fn setblocking(&self, flag: &Bound<'_, PyAny>) -> PyResult<()> {
        // An int, as in CPython: None or a float is a TypeError, not a truth value.
        let timeout = if flag.extract::<i64>()? != 0 {
            Timeout::Blocking
        } else {
            Timeout::NonBlocking
        };
        Ok(self.sock().set_timeout(timeout)?)
    }

    #[doc = pydoc!("Socket.getblocking")]
    fn getblocking(&self) -> bool {
        self.sock().timeout() != Timeout::NonBlocking
    }

    #[doc = pydoc!("Socket.bind")]
    #[pyo3(signature = (address, /))]
    fn bind(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<()> {
        let addr = self.address_for(py, address, "bind")?;
        Ok(self.sock().bind(&addr)?)
    }

    #[doc = pydoc!("Socket.listen")]
    #[pyo3(signature = (backlog=None, /))]
    fn listen(&self, backlog: Option<i32>) -> PyResult<()> {
        // CPython's default backlog is min(SOMAXCONN, 128); a negative one means 0.
        let backlog = backlog.unwrap_or(libc::SOMAXCONN.min(128)).max(0);
        Ok(self.sock().listen(backlog)?)
    }

    #[doc = pydoc!("Socket.accept")]
    fn accept<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, Socket>, Bound<'py, PyTuple>)> {
        let wait = self.sock().start();
        let (fd, addr) = blocking(py, || self.sock().accept(wait))?;
        // SAFETY: freshly accepted fd, owned by the new Sock.
        let sock = unsafe {
            Sock::from_raw(
                fd,
                self.sock().family(),
                self.sock().ty(),
                self.sock().proto(),
            )
        };
        let conn = Bound::new(py, Socket::adopt(py, sock)?)?;
        Ok((conn, address_value(py, &addr)?))
    }

    #[doc = pydoc!("Socket.connect")]
    #[pyo3(signature = (address, /))]
    fn connect(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<()> {
        let addr = self.address_for(py, address, "connect")?;
        self.connect_to(py, &addr)
    }

    #[doc = pydoc!("Socket.connect_ex")]
    #[pyo3(signature = (address, /))]
    fn connect_ex(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<i32> {
        let addr = self.address_for(py, address, "connect_ex")?;
        let (sock, wait) = (self.sock(), self.sock().start());
        match detached(py, |on_signal| setup::connect(sock, &addr, wait, on_signal))? {
            Ok(()) => Ok(0),
            // A timeout is EWOULDBLOCK in connect_ex, as in CPython.
            Err(Error::Timeout) => Ok(libc::EWOULDBLOCK),
            Err(e) => match e.errno() {
                Some(errno) => Ok(errno),
                None => Err(e.into()),
            },
        }
    }

    #[doc = pydoc!("Socket.send")]
    #[pyo3(signature = (data, flags=0, /))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<usize> {
        let data = BytesArg::extract(data)?;
        let buf = data.as_slice();
        let wait = self.sock().start();
        if self.inner.tls().is_some() {
            // As ssl.SSLSocket.send: the whole buffer goes out as records.
            self.write_all(py, buf, flags, wait)?;
            return Ok(buf.len());
        }
        blocking(py, || self.sock().send(buf, flags, wait))
    }

    #[doc = pydoc!("Socket.sendall")]
    #[pyo3(signature = (data, flags=0, /))]
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<()> {
        let data = BytesArg::extract(data)?;
        self.write_all(py, data.as_slice(), flags, self.sock().start())
    }

    #[doc = pydoc!("Socket.recv")]
    #[pyo3(signature = (bufsize, flags=0, /))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let len = usize::try_from(bufsize)
            .map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
        if len == 0 {
            // CPython returns at once without touching the socket, even a closed one.
            return Ok(PyBytes::new(py, b""));
        }
        let wait = self.sock().start();
        if self.inner.tls().is_some() {
            // Plaintext from rustls, into zeroed memory (rustls writes through a `&mut [u8]`).
            // A TLS read returns at most what one read of records decrypts, so the buffer need
            // not be larger than that: recv(2**40) must not try to allocate a terabyte.
            let mut buf = vec![0u8; len.min(TLS_RECV_MAX)];
            let n = blocking(py, || self.inner.read(&mut buf, flags, wait))?;
            return Ok(PyBytes::new(py, &buf[..n]));
        }
        let bytes = uninit_bytes(py, len)?;
        // SAFETY: `bytes` is a fresh, unshared bytes object of `len` bytes; the kernel fills
        // its prefix, and only that prefix is ever exposed.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                ffi::PyBytes_AsString(bytes.as_ptr()) as *mut MaybeUninit<u8>,
                len,
            )
        };
        let n = blocking(py, || self.sock().recv(buf, flags, wait))?;
        if n == len {
            // SAFETY: created as bytes above.
            return Ok(unsafe { bytes.cast_into_unchecked() });
        }
        shrink_bytes(bytes, n)
    }

    #[doc = pydoc!("Socket.recv_into")]
    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<usize> {
        let target = writable_buffer(buffer, "recv_into")?;
        let nbytes = usize::try_from(nbytes)
            .map_err(|_| PyValueError::new_err("negative buffersize in recv_into"))?;
        let len = match nbytes {
            0 => target.len_bytes(),
            n if n > target.len_bytes() => {
                return Err(PyValueError::new_err(
                    "buffer too small for requested bytes",
                ))
            }
            n => n,
        };
        if len == 0 {
            return Ok(0); // as CPython: no system call for an empty buffer
        }
        // SAFETY: a writable C-contiguous buffer of at least `len` bytes, pinned by `target`.
        let buf = unsafe { std::slice::from_raw_parts_mut(target.buf_ptr() as *mut u8, len) };
        let wait = self.sock().start();
        blocking(py, || self.inner.read(buf, flags, wait))
    }

    #[doc = pydoc!("Socket.shutdown")]
    #[pyo3(signature = (how, /))]
    fn shutdown(&self, py: Python<'_>, how: &Bound<'_, PyAny>) -> PyResult<()> {
        let how: i64 = how.extract()?;
        let how = i32::try_from(how)
            .map_err(|_| PyOverflowError::new_err("Python int too large to convert to C int"))?;
        Ok(released(py, || self.inner.shutdown(how))?)
    }

    #[doc = pydoc!("Socket.close")]
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        Ok(released(py, || self.inner.close())?)
    }

    #[doc = pydoc!("Socket.tls_version")]
    fn tls_version(&self) -> Option<&'static str> {
        self.inner.tls().and_then(|t| t.version())
    }

    #[doc = pydoc!("Socket.detach")]
    fn detach(&self) -> i32 {
        self.sock().detach()
    }

    #[doc = pydoc!("Socket.getsockname")]
    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address_value(py, &self.sock().local_addr()?)
    }

    #[doc = pydoc!("Socket.getpeername")]
    fn getpeername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address_value(py, &self.sock().peer_addr()?)
    }

    #[doc = pydoc!("Socket.setsockopt")]
    #[pyo3(signature = (level, optname, value, optlen=None, /))]
    fn setsockopt(
        &self,
        level: i32,
        optname: i32,
        value: &Bound<'_, PyAny>,
        optlen: Option<u32>,
    ) -> PyResult<()> {
        if let Some(optlen) = optlen {
            if !value.is_none() {
                return Err(PyTypeError::new_err(
                    "setsockopt() takes exactly 3 arguments (4 given)",
                ));
            }
            return Ok(self.sock().setsockopt_null(level, optname, optlen)?);
        }
        if value.is_instance_of::<pyo3::types::PyInt>() {
            // As CPython: an int that does not fit a C int falls through to the bytes-like
            // form, which refuses it with a TypeError.
            if let Ok(v) = value.extract::<i32>() {
                return Ok(self.sock().setsockopt_int(level, optname, v)?);
            }
        }
        let data = BytesArg::extract(value)?;
        Ok(self
            .sock()
            .setsockopt_bytes(level, optname, data.as_slice())?)
    }

    #[doc = pydoc!("Socket.getsockopt")]
    #[pyo3(signature = (level, optname, buflen=0, /))]
    fn getsockopt<'py>(
        &self,
        py: Python<'py>,
        level: i32,
        optname: i32,
        buflen: i32,
    ) -> PyResult<Bound<'py, PyAny>> {
        if buflen == 0 {
            return Ok(self
                .sock()
                .getsockopt_int(level, optname)?
                .into_pyobject(py)?
                .into_any());
        }
        if !(1..=1024).contains(&buflen) {
            return Err(PyOSError::new_err("getsockopt buflen out of range"));
        }
        let value = self
            .sock()
            .getsockopt_bytes(level, optname, buflen as usize)?;
        Ok(PyBytes::new(py, &value).into_any())
    }

    #[doc = pydoc!("Socket.to_stdlib")]
    fn to_stdlib<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fd = self.sock().fileno();
        if fd < 0 {
            return Err(os_error(libc::EBADF));
        }
        if self.inner.tls().is_some() {
            // A plain socket on this fd would read and write raw TLS records.
            return Err(PyValueError::new_err(
                "to_stdlib() of a TLS socket would bypass TLS: the session lives in sockwire",
            ));
        }
        // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd or -1.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Error::from(std::io::Error::last_os_error()).into());
        }
        let kwargs = [("fileno", dup)].into_py_dict(py)?;
        let sock = stdlib(py)?.getattr("socket")?.call(
            (self.sock().family(), self.sock().ty(), self.sock().proto()),
            Some(&kwargs),
        )?;
        sock.call_method1("settimeout", (self.gettimeout(),))?;
        Ok(sock)
    }

    #[doc = pydoc!("Socket.from_stdlib")]
    #[classmethod]
    fn from_stdlib<'py>(
        cls: &Bound<'py, PyType>,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Socket::adopt_stdlib(cls, sock, "Socket.from_stdlib()")
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let cls = slf.get_type();
        let mut out = format!(
            "<{}.{}{} fd={}, family={}, type={}, proto={}",
            cls.module()?,
            cls.qualname()?,
            if this.sock().fileno() < 0 {
                " [closed]"
            } else {
                ""
            },
            this.sock().fileno(),
            this.sock().family(),
            this.sock().ty(),
            this.sock().proto()
        );
        let py = slf.py();
        if this.sock().fileno() >= 0 {
            if let Ok(local) = this.sock().local_addr() {
                out.push_str(&format!(", laddr={}", address_value(py, &local)?.repr()?));
            }
            if let Ok(peer) = this.sock().peer_addr() {
                out.push_str(&format!(", raddr={}", address_value(py, &peer)?.repr()?));
            }
        }
        out.push('>');
        Ok(out)
    }
}

fn check_family(family: i32) -> PyResult<()> {
    match family {
        libc::AF_INET | libc::AF_INET6 => Ok(()),
        _ => Err(Error::os(libc::EAFNOSUPPORT).into()),
    }
}
