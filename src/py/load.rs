//! `_load`: the core load driver, for the benchmarks' load processes (the swarm issue gives it
//! its public face).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::format::PacketFormat;
use super::setup::listen_address;
use crate::load::{run, Plan};

#[doc = pydoc!("_load")]
#[pyfunction]
#[pyo3(signature = (addr, format=None, *, clients=100, in_flight=1, requests=None, duration=None, body_size=64, msg_id=0, expect_echo=false, timeout=5.0, connect_timeout=5.0))]
#[allow(clippy::too_many_arguments)]
pub fn _load<'py>(
    py: Python<'py>,
    addr: &Bound<'py, PyAny>,
    format: Option<Bound<'py, PacketFormat>>,
    clients: usize,
    in_flight: usize,
    requests: Option<u64>,
    duration: Option<f64>,
    body_size: usize,
    msg_id: i64,
    expect_echo: bool,
    timeout: f64,
    connect_timeout: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let format = match format {
        Some(f) => f.get().inner.clone(),
        None => PacketFormat::default_format().inner,
    };
    let plan = Plan {
        addr: listen_address(py, addr, "_load")?,
        format,
        clients,
        in_flight: in_flight.max(1),
        requests,
        duration: duration.map(Duration::from_secs_f64),
        body: vec![b'x'; body_size],
        msg_id,
        expect_echo,
        connect_timeout: Duration::from_secs_f64(connect_timeout),
        timeout: Duration::from_secs_f64(timeout),
    };
    let report = py.detach(|| run(plan))?;
    let out = PyDict::new(py);
    out.set_item("connected", report.connected)?;
    out.set_item("failed_connects", report.failed_connects)?;
    out.set_item("sent", report.sent)?;
    out.set_item("received", report.received)?;
    let errors = PyDict::new(py);
    for (reason, n) in &report.errors {
        errors.set_item(reason, n)?;
    }
    out.set_item("errors", errors)?;
    let seconds = report.elapsed.as_secs_f64();
    out.set_item("duration", seconds)?;
    out.set_item("throughput", report.received as f64 / seconds.max(1e-9))?;
    let latency = PyDict::new(py);
    let h = &report.latency;
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        latency.set_item(name, h.value_at_quantile(q) as f64 / 1e9)?;
    }
    latency.set_item("max", h.max() as f64 / 1e9)?;
    latency.set_item("mean", h.mean() / 1e9)?;
    out.set_item("latency", latency)?;
    Ok(out)
}
