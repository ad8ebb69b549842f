//! `Compression` and `Cipher`: the per-packet pipeline's Python objects.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::convert::{usize_arg, BytesArg};
use crate::cipher::{Algorithm as CipherAlgorithm, Cipher as CoreCipher};
use crate::compress::{Algorithm, Compression as CoreCompression};

#[doc = pydoc!("Compression")]
#[pyclass(module = "sockwire", name = "Compression", frozen)]
pub struct Compression {
    pub(crate) inner: CoreCompression,
}

#[pymethods]
impl Compression {
    #[new]
    #[pyo3(signature = (name, level=None, min_size=0))]
    fn new(name: &str, level: Option<i32>, min_size: i128) -> PyResult<Self> {
        let min_size = usize_arg(min_size, "min_size")?;
        Ok(Compression {
            inner: CoreCompression::new(Algorithm::from_name(name)?, level, min_size)?,
        })
    }

    #[doc = pydoc!("Compression.name")]
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.algorithm.name()
    }

    #[doc = pydoc!("Compression.level")]
    #[getter]
    fn level(&self) -> Option<i32> {
        self.inner.level
    }

    #[doc = pydoc!("Compression.min_size")]
    #[getter]
    fn min_size(&self) -> usize {
        self.inner.min_size
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Compression>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    pub(crate) fn __repr__(&self) -> String {
        let level = self
            .inner
            .level
            .map_or_else(|| "None".to_owned(), |l| l.to_string());
        format!(
            "Compression('{}', level={level}, min_size={})",
            self.name(),
            self.inner.min_size
        )
    }
}

#[doc = pydoc!("Cipher")]
#[pyclass(module = "sockwire", name = "Cipher", frozen)]
pub struct Cipher {
    pub(crate) inner: Arc<CoreCipher>,
}

#[pymethods]
impl Cipher {
    #[new]
    fn new(name: &str, key: &Bound<'_, PyAny>) -> PyResult<Self> {
        let key = BytesArg::extract(key)?;
        Ok(Cipher {
            inner: Arc::new(CoreCipher::new(
                CipherAlgorithm::from_name(name)?,
                key.as_slice(),
            )?),
        })
    }

    #[doc = pydoc!("Cipher.name")]
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.algorithm.name()
    }

    #[doc = pydoc!("Cipher.key_size")]
    #[getter]
    fn key_size(&self) -> usize {
        self.inner.algorithm.key_len()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Cipher>()
            .is_ok_and(|o| *o.get().inner == *self.inner)
    }

    pub(crate) fn __repr__(&self) -> String {
        // The key stays out of reprs and logs.
        format!("Cipher('{}', key=<{} bytes>)", self.name(), self.key_size())
    }
}

/// `compress=` as given: a `Compression`, an algorithm name, or None.
pub fn compression_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<CoreCompression>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(name) = value.cast::<PyString>() {
        return Ok(Some(CoreCompression::new(
            Algorithm::from_name(name.to_str()?)?,
            None,
            0,
        )?));
    }
    Ok(Some(value.cast::<Compression>()?.get().inner.clone()))
}

/// `cipher=` as given: a `Cipher` or None.
pub fn cipher_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<CoreCipher>>> {
    match value.filter(|v| !v.is_none()) {
        None => Ok(None),
        Some(v) => Ok(Some(v.cast::<Cipher>()?.get().inner.clone())),
    }
}
