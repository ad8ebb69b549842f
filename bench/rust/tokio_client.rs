//! The physical reference for bench/bench_swarm.py: a plain tokio client with no Python,
//! `CONNECTIONS` connections each doing request/response (64-byte bodies behind a `!I` length,
//! one in flight) for `SECONDS`, on `THREADS` runtime threads; prints `requests N seconds S`.
//!
//! `cargo run --release --manifest-path bench/rust/Cargo.toml --bin bench_tokio_client PORT CONNECTIONS SECONDS [THREADS]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (port, connections, seconds) = (arg(0, 9000) as u16, arg(1, 1000), arg(2, 5));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.get(3).and_then(|a| a.parse().ok()) {
        builder.worker_threads(threads);
    }
    let runtime = builder.enable_all().build()?;
    let done = Arc::new(AtomicU64::new(0));
    let (total, took) = runtime.block_on(async move {
        let mut streams = Vec::new();
        for _ in 0..connections {
            let stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let done = done.clone();
                tokio::spawn(async move {
                    let mut frame = 64u32.to_be_bytes().to_vec();
                    frame.extend_from_slice(&[b'x'; 64]);
                    let mut reply = [0u8; 68];
                    while Instant::now() < deadline {
                        if stream.write_all(&frame).await.is_err()
                            || stream.read_exact(&mut reply).await.is_err()
                        {
                            return;
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        Ok::<_, std::io::Error>((done.load(Ordering::Relaxed), start.elapsed()))
    })?;
    println!("requests {total} seconds {:.3}", took.as_secs_f64());
    Ok(())
}
