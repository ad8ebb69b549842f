//! The load driver: many connections on the process's tokio runtime, each keeping a window of
//! framed requests in flight, checking the replies and recording each round trip's latency in
//! an HDR histogram.
//!
//! Requests are counted against a shared budget (a number of requests, or a deadline); a
//! connection answers each reply with its next request, so `in_flight` requests stay
//! outstanding per connection (closed loop). Latency runs from a request's write to its reply.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::decoder::{Decoder, Event};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::runtime;

/// What to run.
#[derive(Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub format: Arc<Format>,
    pub clients: usize,
    pub in_flight: usize,
    /// Total requests over all clients; else `duration`.
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub body: Vec<u8>,
    pub msg_id: i64,
    /// A reply whose body differs from the request's is a "mismatch" error.
    pub expect_echo: bool,
    pub connect_timeout: Duration,
    /// A request unanswered this long is a "timeout" error, and ends its connection.
    pub timeout: Duration,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    pub connected: u64,
    pub failed_connects: u64,
    pub sent: u64,
    pub received: u64,
    /// Errors by reason: "timeout", "mismatch", "closed", "connect", "protocol error".
    pub errors: Vec<(&'static str, u64)>,
    /// Round-trip latencies, in nanoseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

/// Shared by the connections of one run.
struct Run {
    plan: Plan,
    /// Requests not yet sent (`u64::MAX` when the run is bounded by time).
    budget: AtomicU64,
    deadline: Option<Instant>,
    sent: AtomicU64,
    received: AtomicU64,
    connected: AtomicU64,
    errors: Mutex<Vec<(&'static str, u64)>>,
    latency: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid bounds")
}

impl Run {
    /// Takes one request from the budget; false when the run is over.
    fn take_one(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    fn error(&self, reason: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match errors.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => errors.push((reason, 1)),
        }
    }
}

/// Runs `plan` to its end on the process's runtime, blocking the calling thread.
pub fn run(plan: Plan) -> Result<Report> {
    if plan.requests.is_some() == plan.duration.is_some() {
        return Err(Error::InvalidArgument(
            "give exactly one of requests and duration".into(),
        ));
    }
    let handle = runtime::handle(None)?;
    let start = Instant::now();
    let run = Arc::new(Run {
        budget: AtomicU64::new(plan.requests.unwrap_or(u64::MAX)),
        deadline: plan.duration.map(|d| start + d),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        latency: Mutex::new(histogram()),
        plan,
    });
    let tasks: Vec<_> = (0..run.plan.clients)
        .map(|_| handle.spawn(client(run.clone())))
        .collect();
    handle.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    let elapsed = start.elapsed();
    let run =
        Arc::try_unwrap(run).map_err(|_| Error::InvalidArgument("run still in use".into()))?;
    let errors = run.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed_connects = errors
        .iter()
        .find(|(r, _)| *r == "connect")
        .map_or(0, |(_, n)| *n);
    Ok(Report {
        connected: run.connected.into_inner(),
        failed_connects,
        sent: run.sent.into_inner(),
        received: run.received.into_inner(),
        errors,
        latency: run.latency.into_inner().unwrap_or_else(|p| p.into_inner()),
        elapsed,
    })
}

/// One connection of the run.
async fn client(run: Arc<Run>) {
    let plan = &run.plan;
    let stream =
        match tokio::time::timeout(plan.connect_timeout, TcpStream::connect(plan.addr)).await {
            Ok(Ok(stream)) => stream,
            _ => return run.error("connect"),
        };
    let _ = stream.set_nodelay(true);
    run.connected.fetch_add(1, Ordering::Relaxed);
    let mut frame = Vec::new();
    if plan
        .format
        .pack_into(&mut frame, &plan.body, plan.msg_id, 0, &[])
        .is_err()
    {
        return run.error("protocol error");
    }
    let (mut reader, mut writer) = stream.into_split();
    let mut latency = histogram();
    let mut decoder = Decoder::new(plan.format.clone());
    let mut outstanding: VecDeque<Instant> = VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    // Fill the window.
    while outstanding.len() < plan.in_flight && run.take_one() {
        out.extend_from_slice(&frame);
        outstanding.push_back(Instant::now());
    }
    let ended = loop {
        crate::runtime::wake_if_overdue();
        if !out.is_empty() {
            if writer.write_all(&out).await.is_err() {
                break Some("closed");
            }
            run.sent
                .fetch_add((out.len() / frame.len()) as u64, Ordering::Relaxed);
            out.clear();
        }
        if outstanding.is_empty() {
            break None;
        }
        let n = match tokio::time::timeout(plan.timeout, reader.read(&mut buf)).await {
            Err(_) => break Some("timeout"),
            Ok(Ok(0)) | Ok(Err(_)) => break Some("closed"),
            Ok(Ok(n)) => n,
        };
        let mut replies = 0usize;
        let mut bad = None;
        decoder.feed(&buf[..n], |event| match event {
            Event::Frame {
                frame: f,
                body_start,
            } => {
                if plan.expect_echo && f[body_start..] != frame[frame.len() - plan.body.len()..] {
                    bad.get_or_insert("mismatch");
                }
                replies += 1;
            }
            Event::Bad(_) => {
                bad.get_or_insert("protocol error");
            }
        });
        let now = Instant::now();
        for _ in 0..replies {
            if let Some(sent_at) = outstanding.pop_front() {
                let _ = latency.record(now.duration_since(sent_at).as_nanos().max(1) as u64);
            }
            if run.take_one() {
                out.extend_from_slice(&frame);
                outstanding.push_back(now);
            }
        }
        run.received.fetch_add(replies as u64, Ordering::Relaxed);
        if let Some(reason) = bad {
            break Some(reason);
        }
    };
    if let Some(reason) = ended {
        run.error(reason);
    }
    let _ = run
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .add(&latency);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_run_against_an_echo_server() {
        let format = Arc::new(Format::from_struct("!I", &["length"], false, 1 << 16, &[]).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    use std::io::{Read, Write};
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let report = run(Plan {
            addr,
            format,
            clients: 4,
            in_flight: 8,
            requests: Some(1000),
            duration: None,
            body: b"x".repeat(64),
            msg_id: 0,
            expect_echo: true,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        assert_eq!(
            (report.connected, report.sent, report.received),
            (4, 1000, 1000)
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.latency.len(), 1000);
    }
}
