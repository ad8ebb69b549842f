//! `TlsConfig`: TLS settings for `connect`, `create_client` and listeners.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::tls::{server_config, ClientSettings};

/// Client or server TLS settings.
pub enum Settings {
    Client(ClientSettings),
    Server(Arc<rustls::ServerConfig>),
}

#[doc = pydoc!("TlsConfig")]
#[pyclass(module = "sockwire", name = "TlsConfig", frozen)]
pub struct TlsConfig {
    pub(crate) settings: Settings,
    /// What the repr shows: the side and the files, never key material.
    describe: String,
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl TlsConfig {
    pub(crate) fn client_settings(&self) -> PyResult<&ClientSettings> {
        match &self.settings {
            Settings::Client(c) => Ok(c),
            Settings::Server(_) => Err(PyTypeError::new_err(
                "a client connection needs TlsConfig.client(...), not TlsConfig.server(...)",
            )),
        }
    }

    pub(crate) fn server_settings(&self) -> PyResult<Arc<rustls::ServerConfig>> {
        match &self.settings {
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
        ca: Option<PathBuf>,
        server_name: Option<String>,
        insecure: bool,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> PyResult<Self> {
        let (ca, cert, key) = (
            ca.map(|p| path(&p)),
            cert.map(|p| path(&p)),
            key.map(|p| path(&p)),
        );
        let settings = ClientSettings::new(
            ca.as_deref(),
            server_name.clone(),
            insecure,
            cert.as_deref(),
            key.as_deref(),
        )?;
        let describe = format!(
            "TlsConfig.client(ca={}, server_name={}, insecure={}, cert={})",
            ca.map_or("None".into(), |c| format!("'{c}'")),
            server_name.map_or("None".into(), |n| format!("'{n}'")),
            if insecure { "True" } else { "False" },
            cert.map_or("None".into(), |c| format!("'{c}'")),
        );
        Ok(TlsConfig {
            settings: Settings::Client(settings),
            describe,
        })
    }

    #[doc = pydoc!("TlsConfig.server")]
    #[staticmethod]
    #[pyo3(signature = (cert, key, client_ca=None))]
    fn server(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> PyResult<Self> {
        let client_ca = client_ca.map(|p| path(&p));
        let config = server_config(&path(&cert), &path(&key), client_ca.as_deref())?;
        Ok(TlsConfig {
            settings: Settings::Server(config),
            describe: format!(
                "TlsConfig.server(cert='{}', client_ca={})",
                path(&cert),
                client_ca.map_or("None".into(), |c| format!("'{c}'"))
            ),
        })
    }

    #[doc = pydoc!("TlsConfig.side")]
    #[getter]
    fn side(&self) -> &'static str {
        match self.settings {
            Settings::Client(_) => "client",
            Settings::Server(_) => "server",
        }
    }

    fn __repr__(&self) -> String {
        self.describe.clone()
    }
}
