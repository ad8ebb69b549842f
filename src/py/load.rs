//! `_Swarm`, the load driver ([`crate::load`]) under `sockwire.swarm`, and `_load`, the same for
//! the benchmarks' load processes in one blocking call.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::format::{dict_fields, PacketFormat};
use super::packet::Packet;
use super::setup::listen_address;
use super::tls::TlsConfig;
use crate::format::{Format, Role};
use crate::load::{run, start, Expect, Plan, Report, Running, Snapshot};

/// Replies handed to the `expect` callable per GIL acquisition at most.
const CHECK_BATCH: usize = 1024;

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a number of seconds >= 0")))
}

#[doc = pydoc!("_Swarm")]
#[pyclass(module = "sockwire._core", name = "_Swarm", frozen)]
pub struct Swarm {
    running: Mutex<Option<Running>>,
    checker: Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl Swarm {
    #[new]
    #[pyo3(signature = (addr, format, *, clients, in_flight, requests, duration, rate, ramp_up, msg_id, bodies, fields, hello, expect, correlate, timeout, connect_timeout, tls, threads))]
    #[allow(clippy::too_many_arguments)] // DESIGN's keywords
    fn new(
        py: Python<'_>,
        addr: &Bound<'_, PyAny>,
        format: Option<Bound<'_, PacketFormat>>,
        clients: usize,
        in_flight: usize,
        requests: Option<u64>,
        duration: Option<f64>,
        rate: Option<f64>,
        ramp_up: f64,
        msg_id: i64,
        bodies: Vec<Vec<u8>>,
        fields: Option<Bound<'_, PyDict>>,
        hello: Vec<(i64, Vec<u8>)>,
        expect: Bound<'_, PyAny>,
        correlate: Option<String>,
        timeout: f64,
        connect_timeout: f64,
        tls: Option<Bound<'_, TlsConfig>>,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let format = match format {
            Some(f) => f,
            None => Bound::new(py, PacketFormat::default_format())?,
        };
        let core_format: Arc<Format> = format.get().inner.clone();
        let target = listen_address(py, addr, "swarm")?;
        let mut values = format
            .get()
            .header_args(dict_fields(fields.as_ref()))?
            .values;
        // One slot per user field (header_args leaves it empty when none was given): the
        // correlation field is written into its slot per request.
        values.resize(core_format.user_names.len(), None);
        let correlate = match correlate {
            None => None,
            Some(name) => Some(correlated_field(&core_format, &name)?),
        };
        if let Some((field, _)) = correlate {
            values[field] = None; // numbered per request
        }
        let tls = match tls {
            None => None,
            Some(config) => {
                let settings = config.get().client_settings()?;
                let host = addr.get_item(0)?.extract::<String>()?;
                let name = settings.server_name.clone().unwrap_or(host);
                let name = crate::tls::server_name(&name)?;
                Some((settings.config.clone(), name))
            }
        };
        let (expect_core, check) = if let Ok(kind) = expect.extract::<String>() {
            match kind.as_str() {
                "any" => (Expect::Any, None),
                "echo" => (Expect::Echo, None),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "expect is 'any', 'echo' or a callable, not {other:?}"
                    )))
                }
            }
        } else if expect.is_callable() {
            let (sender, receiver) = tokio::sync::mpsc::channel(CHECK_BATCH * 4);
            (
                Expect::Check(Mutex::new(Some(sender))),
                Some((receiver, expect.unbind())),
            )
        } else {
            return Err(PyTypeError::new_err(
                "expect is 'any', 'echo' or a callable (request_body, reply) -> bool",
            ));
        };
        // A body the format cannot carry (too large, say) is the caller's error, found now.
        let mut scratch = Vec::new();
        for body in bodies.iter().chain(hello.iter().map(|(_, b)| b)) {
            scratch.clear();
            core_format.pack_into(&mut scratch, body, msg_id, 0, &values)?;
        }
        let py_bodies: Vec<Py<PyBytes>> = bodies
            .iter()
            .map(|b| PyBytes::new(py, b).unbind())
            .collect();
        let plan = Plan {
            addr: target,
            format: core_format.clone(),
            clients,
            in_flight: in_flight.max(1),
            requests,
            duration: duration.map(|d| seconds(d, "duration")).transpose()?,
            rate,
            ramp_up: seconds(ramp_up, "ramp_up")?,
            msg_id,
            bodies,
            values,
            hello,
            expect: expect_core,
            correlate,
            timeout: seconds(timeout, "timeout")?,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            tls,
            threads,
        };
        let running = py.detach(|| start(plan))?;
        let checker = match check {
            None => None,
            Some((receiver, callable)) => {
                let sink = running.error_sink();
                let spawned = std::thread::Builder::new()
                    .name("sockwire-swarm-check".into())
                    .spawn(move || check_replies(receiver, callable, py_bodies, core_format, sink));
                match spawned {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        running.stop();
                        return Err(crate::error::Error::from(e).into());
                    }
                }
            }
        };
        Ok(Swarm {
            running: Mutex::new(Some(running)),
            checker: Mutex::new(checker),
        })
    }

    #[doc = pydoc!("_Swarm.wait")]
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let Some(running) = slot.as_ref() else {
            return Ok(true);
        };
        let timeout = seconds(timeout, "timeout")?;
        Ok(py.detach(|| running.wait(timeout)))
    }

    #[doc = pydoc!("_Swarm.stop")]
    fn stop(&self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            running.stop();
        }
    }

    #[doc = pydoc!("_Swarm.snapshot")]
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let running = slot
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the swarm has finished"))?;
        snapshot_dict(py, &running.snapshot())
    }

    #[doc = pydoc!("_Swarm.finish")]
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the swarm has finished"))?;
        let checker = self
            .checker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Once the runtime is gone, and with it the checker's senders, the checker ends when it
        // has checked what was sent to it: its mismatches are in the report.
        let report = py.detach(|| {
            running.finish_with(|| {
                if let Some(checker) = checker {
                    let _ = checker.join();
                }
            })
        });
        report_dict(py, &report)
    }
}

/// The user field `name` names, and the largest number it holds.
fn correlated_field(format: &Format, name: &str) -> PyResult<(usize, u64)> {
    let Some((i, field)) = format.field_named(name) else {
        return Err(format.no_such_field(name).into());
    };
    let Role::User(user) = format.roles[i] else {
        return Err(PyValueError::new_err(format!(
            "correlate names a header field of the application, not {name:?}"
        )));
    };
    let bits = match field.code {
        crate::format::Code::UInt(n) => 8 * n as u32,
        crate::format::Code::Int(n) => 8 * n as u32 - 1,
        crate::format::Code::Bytes(_) => {
            return Err(PyValueError::new_err(format!(
                "correlate needs an integer field; {name:?} holds bytes"
            )))
        }
    };
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    Ok((user, max.min(i64::MAX as u64)))
}

/// The checker thread: hands replies to the `expect` callable in batches, one GIL acquisition
/// each, and counts the replies it rejects (or raises on) as "mismatch".
fn check_replies(
    mut replies: tokio::sync::mpsc::Receiver<(usize, crate::framed::Packet)>,
    check: Py<PyAny>,
    bodies: Vec<Py<PyBytes>>,
    format: Arc<Format>,
    sink: crate::load::ErrorSink,
) {
    let mut batch = Vec::with_capacity(CHECK_BATCH);
    let mut logged = false;
    while let Some(first) = replies.blocking_recv() {
        batch.push(first);
        while batch.len() < CHECK_BATCH {
            match replies.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let rejected = Python::attach(|py| {
            let mut rejected = 0u64;
            for (body, reply) in batch.drain(..) {
                let verdict = Packet::from_core(py, &format, reply)
                    .and_then(|p| check.bind(py).call1((bodies[body].bind(py), p)))
                    .and_then(|v| v.is_truthy());
                match verdict {
                    Ok(true) => {}
                    Ok(false) => rejected += 1,
                    Err(err) => {
                        rejected += 1;
                        if !logged {
                            logged = true;
                            log_check_error(py, err);
                        }
                    }
                }
            }
            rejected
        });
        sink.add("mismatch", rejected);
    }
}

/// Logs the first exception the `expect` callable raised, on `sockwire.swarm`.
fn log_check_error(py: Python<'_>, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("sockwire.swarm",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(
            "exc_info",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        logger.call_method(
            "error",
            ("the expect callable raised (counted as a mismatch; later ones are not logged)",),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}

fn snapshot_dict<'py>(py: Python<'py>, s: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("elapsed", s.elapsed.as_secs_f64())?;
    d.set_item("connected", s.connected)?;
    d.set_item("sent", s.sent)?;
    d.set_item("received", s.received)?;
    d.set_item("errors", s.errors)?;
    d.set_item("rate", s.last_second_received)?;
    d.set_item("p99", s.last_second_p99 as f64 / 1e9)?;
    Ok(d)
}

fn latency_dict<'py>(
    py: Python<'py>,
    h: &hdrhistogram::Histogram<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let latency = PyDict::new(py);
    let empty = h.is_empty();
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        let v = if empty {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e9
        };
        latency.set_item(name, v)?;
    }
    latency.set_item("max", if empty { 0.0 } else { h.max() as f64 / 1e9 })?;
    latency.set_item("mean", if empty { 0.0 } else { h.mean() / 1e9 })?;
    Ok(latency)
}

fn report_dict<'py>(py: Python<'py>, report: &Report) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("connected", report.connected)?;
    out.set_item("failed_connects", report.failed_connects)?;
    out.set_item("sent", report.sent)?;
    out.set_item("received", report.received)?;
    out.set_item("pushed", report.pushed)?;
    let errors = PyDict::new(py);
    for (reason, n) in &report.errors {
        errors.set_item(reason, n)?;
    }
    out.set_item("errors", errors)?;
    let seconds = report.elapsed.as_secs_f64();
    out.set_item("duration", seconds)?;
    out.set_item("throughput", report.received as f64 / seconds.max(1e-9))?;
    out.set_item("latency", latency_dict(py, &report.latency)?)?;
    let timeline = PyList::empty(py);
    for (t, second) in report.timeline.iter().enumerate() {
        let entry = PyDict::new(py);
        entry.set_item("t", t)?;
        entry.set_item("sent", second.sent)?;
        entry.set_item("received", second.received)?;
        entry.set_item("errors", second.errors)?;
        let p99 = if second.latency.is_empty() {
            0.0
        } else {
            second.latency.value_at_quantile(0.99) as f64 / 1e9
        };
        entry.set_item("p99", p99)?;
        entry.set_item(
            "p50",
            if second.latency.is_empty() {
                0.0
            } else {
                second.latency.value_at_quantile(0.5) as f64 / 1e9
            },
        )?;
        timeline.append(entry)?;
    }
    out.set_item("timeline", timeline)?;
    out.set_item("interrupted", report.interrupted)?;
    // The latency histogram for plotting: (upper bound in seconds, count) per recorded bucket.
    let buckets = PyList::empty(py);
    for v in report.latency.iter_recorded() {
        buckets.append((v.value_iterated_to() as f64 / 1e9, v.count_at_value()))?;
    }
    out.set_item("histogram", buckets)?;
    Ok(out)
}

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
    let values = vec![None; format.user_names.len()];
    let plan = Plan {
        addr: listen_address(py, addr, "_load")?,
        format,
        clients,
        in_flight: in_flight.max(1),
        requests,
        duration: duration.map(|d| seconds(d, "duration")).transpose()?,
        rate: None,
        ramp_up: Duration::ZERO,
        msg_id,
        bodies: vec![vec![b'x'; body_size]],
        values,
        hello: Vec::new(),
        expect: if expect_echo {
            Expect::Echo
        } else {
            Expect::Any
        },
        correlate: None,
        timeout: seconds(timeout, "timeout")?,
        connect_timeout: seconds(connect_timeout, "connect_timeout")?,
        tls: None,
        threads: None,
    };
    let report = py.detach(|| run(plan))?;
    report_dict(py, &report)
}
