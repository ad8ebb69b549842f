//! The exception hierarchy and the single conversion from core errors to Python exceptions.

use pyo3::exceptions::{
    PyException, PyOSError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::error::{strerror, Error as CoreError, TlsError, TlsFailure};

pyo3::create_exception!(sockwire, Error, PyException, pydoc!("Error"));
pyo3::create_exception!(sockwire, ProtocolError, Error, pydoc!("ProtocolError"));
pyo3::create_exception!(
    sockwire,
    FrameTooLarge,
    ProtocolError,
    pydoc!("FrameTooLarge")
);
pyo3::create_exception!(
    sockwire,
    IncompleteFrame,
    ProtocolError,
    pydoc!("IncompleteFrame")
);
pyo3::create_exception!(
    sockwire,
    AuthenticationError,
    ProtocolError,
    pydoc!("AuthenticationError")
);
pyo3::create_exception!(
    sockwire,
    ConnectionClosed,
    Error,
    pydoc!("ConnectionClosed")
);
pyo3::create_exception!(sockwire, ServerFull, Error, pydoc!("ServerFull"));
pyo3::import_exception!(socket, gaierror);
pyo3::import_exception!(ssl, SSLError);
pyo3::import_exception!(ssl, SSLCertVerificationError);
pyo3::import_exception!(ssl, SSLEOFError);

/// The `ssl` exception for a TLS failure, with the attributes `ssl` sets (`reason`, `library`,
/// and for certificates `verify_message`).
fn ssl_error(py: Python<'_>, tls: TlsError) -> PyErr {
    let args = (1, tls.to_string());
    let err = match tls.failure {
        TlsFailure::CertVerify => SSLCertVerificationError::new_err(args),
        TlsFailure::Eof => SSLEOFError::new_err(args),
        TlsFailure::Protocol => SSLError::new_err(args),
    };
    let mut attrs = vec![
        ("library", PyString::new(py, "SSL").into_any()),
        ("reason", PyString::new(py, tls.reason).into_any()),
    ];
    if let Some(why) = &tls.verify_message {
        attrs.push(("verify_message", PyString::new(py, why).into_any()));
        let Ok(code) = 1i32.into_pyobject(py);
        attrs.push(("verify_code", code.into_any()));
    }
    set_attrs(py, &err, &attrs);
    err
}

/// An `OSError` built the way CPython's `PyErr_SetFromErrno` builds it: `OSError(errno,
/// strerror)`, which Python turns into the matching subclass (`ConnectionRefusedError`, ...).
pub fn os_error(errno: i32) -> PyErr {
    PyOSError::new_err((errno, strerror(errno)))
}

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        match err {
            CoreError::Io(e) => match e.raw_os_error() {
                Some(errno) => os_error(errno),
                None => PyOSError::new_err(e.to_string()),
            },
            CoreError::Timeout => PyTimeoutError::new_err("timed out"),
            CoreError::File { path, source } => match source.raw_os_error() {
                // OSError(errno, strerror, filename) becomes FileNotFoundError and the like.
                Some(errno) => PyOSError::new_err((errno, strerror(errno), path)),
                None => PyOSError::new_err(format!("{source}: {path:?}")),
            },
            CoreError::Resolve { code, message } => gaierror::new_err((code, message)),
            e @ CoreError::ServerFull { .. } => ServerFull::new_err(e.to_string()),
            CoreError::InvalidArgument(msg) => PyValueError::new_err(msg),
            CoreError::NoSuchField(msg) => PyTypeError::new_err(msg),
            CoreError::Protocol(msg) => ProtocolError::new_err(msg),
            e @ CoreError::FrameTooLarge { length, limit, .. } => Python::attach(|py| {
                let Ok(length) = length.into_pyobject(py);
                let Ok(limit) = limit.into_pyobject(py);
                let err = FrameTooLarge::new_err(e.to_string());
                set_attrs(
                    py,
                    &err,
                    &[("length", length.into_any()), ("limit", limit.into_any())],
                );
                err
            }),
            e @ CoreError::IncompleteFrame { .. } => {
                let err = IncompleteFrame::new_err(e.to_string());
                let CoreError::IncompleteFrame { partial, expected } = e else {
                    unreachable!("matched above")
                };
                Python::attach(|py| {
                    let Ok(expected) = expected.into_pyobject(py);
                    let partial = PyBytes::new(py, &partial).into_any();
                    set_attrs(py, &err, &[("partial", partial), ("expected", expected)]);
                });
                err
            }
            e @ (CoreError::ConnectionClosed | CoreError::ClosedAfterBadFrame(_)) => {
                ConnectionClosed::new_err(e.to_string())
            }
            CoreError::Busy(msg) => PyRuntimeError::new_err(msg),
            CoreError::Authentication(msg) => AuthenticationError::new_err(msg),
            CoreError::Tls(tls) => Python::attach(|py| ssl_error(py, *tls)),
        }
    }
}

/// Sets attributes on the exception instance (`FrameTooLarge.length`, ...).
pub fn set_attrs<'py>(py: Python<'py>, err: &PyErr, attrs: &[(&str, Bound<'py, PyAny>)]) {
    let value = err.value(py);
    for (name, attr) in attrs {
        // Setting an attribute on a fresh exception instance cannot fail.
        let _ = value.setattr(*name, attr);
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("FrameTooLarge", py.get_type::<FrameTooLarge>())?;
    m.add("IncompleteFrame", py.get_type::<IncompleteFrame>())?;
    m.add("AuthenticationError", py.get_type::<AuthenticationError>())?;
    m.add("ConnectionClosed", py.get_type::<ConnectionClosed>())?;
    m.add("ServerFull", py.get_type::<ServerFull>())?;
    Ok(())
}
