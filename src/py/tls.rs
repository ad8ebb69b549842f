//! `TlsConfig`: TLS settings for `connect`, `create_client` and listeners.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::convert::{type_name, BytesArg};
use crate::tls::{server_config, ClientSettings, Pem};

/// Client or server TLS settings.
pub enum Settings {
    Client(ClientSettings),
    Server(Arc<rustls::ServerConfig>),
}

#[doc = pydoc!("TlsConfig")]
#[pyclass(module = "sockwire", name = "TlsConfig", frozen)]
pub struct TlsConfig {
    pub(crate) inner: Settings,
    /// What the repr shows: the side and the files, never key material.
    describe: String,
}

/// A PEM argument: bytes-like is the PEM text itself, anything else a path (str or
/// `os.PathLike`).
fn pem_arg(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<Pem>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(data) = BytesArg::extract(value) {
        return Ok(Some(Pem::Bytes(data.as_slice().to_vec())));
    }
    match value.extract::<PathBuf>() {
        Ok(p) => Ok(Some(Pem::File(p.to_string_lossy().into_owned()))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be a path or PEM bytes, not {}",
            type_name(value)
        ))),
    }
}

/// How a repr shows a PEM argument: the path, never key material.
fn describe(pem: Option<&Pem>) -> String {
    match pem {
        None => "None".to_owned(),
        Some(Pem::File(path)) => format!("'{path}'"),
        Some(Pem::Bytes(_)) => "<PEM bytes>".to_owned(),
    }
}

impl TlsConfig {
    pub(crate) fn client_settings(&self) -> PyResult<&ClientSettings> {
        match &self.inner {
            Settings::Client(c) => Ok(c),
            Settings::Server(_) => Err(PyTypeError::new_err(
                "a client connection needs TlsConfig.client(...), not TlsConfig.server(...)",
            )),
        }
    }

    pub(crate) fn server_settings(&self) -> PyResult<Arc<rustls::ServerConfig>> {
        match &self.inner {
            Settings::Server(s) => Ok(s.clone()),
            Settings::Client(_) => Err(PyTypeError::new_err(
                "a listener needs TlsConfig.server(...), not TlsConfig.client(...)",
            )),
        }
    }
}

#[pymethods]
impl TlsConfig {
    #[doc = pydoc!("TlsConfig.client")]
    #[staticmethod]
    #[pyo3(signature = (ca=None, server_name=None, insecure=false, cert=None, key=None))]
    fn client(
        ca: Option<&Bound<'_, PyAny>>,
        server_name: Option<String>,
        insecure: bool,
        cert: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (ca, cert, key) = (
            pem_arg(ca, "ca")?,
            pem_arg(cert, "cert")?,
            pem_arg(key, "key")?,
        );
        let settings = ClientSettings::new(
            ca.as_ref(),
            server_name.clone(),
            insecure,
            cert.as_ref(),
            key.as_ref(),
        )?;
        let describe = format!(
            "TlsConfig.client(ca={}, server_name={}, insecure={}, cert={})",
            describe(ca.as_ref()),
            server_name.map_or("None".into(), |n| format!("'{n}'")),
            if insecure { "True" } else { "False" },
            describe(cert.as_ref()),
        );
        Ok(TlsConfig {
            inner: Settings::Client(settings),
            describe,
        })
    }

    #[doc = pydoc!("TlsConfig.server")]
    #[staticmethod]
    #[pyo3(signature = (cert, key, client_ca=None))]
    fn server(
        cert: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        client_ca: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let required = |value, name| {
            pem_arg(Some(value), name)?
                .ok_or_else(|| PyTypeError::new_err(format!("{name} is required")))
        };
        let (cert, key) = (required(cert, "cert")?, required(key, "key")?);
        let client_ca = pem_arg(client_ca, "client_ca")?;
        let config = server_config(&cert, &key, client_ca.as_ref())?;
        Ok(TlsConfig {
            inner: Settings::Server(config),
            describe: format!(
                "TlsConfig.server(cert={}, client_ca={})",
                describe(Some(&cert)),
                describe(client_ca.as_ref())
            ),
        })
    }

    #[doc = pydoc!("TlsConfig.side")]
    #[getter]
    fn side(&self) -> &'static str {
        match self.inner {
            Settings::Client(_) => "client",
            Settings::Server(_) => "server",
        }
    }

    fn __repr__(&self) -> String {
        self.describe.clone()
    }
}
