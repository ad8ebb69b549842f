//! A plain tokio echo server for bench/bench_swarm.py: every byte back as it came (a framed
//! echo for any length-prefixed format), one task per connection, nothing else, so that the
//! server is not what a load benchmark measures.
//!
//! `cargo run --release --manifest-path bench/rust/Cargo.toml --bin bench_echo_server [PORT]
//! [THREADS] [DELAY_MS]` prints `listening on PORT`. With DELAY_MS, every read is echoed that
//! many milliseconds later (a server with a known delay, for bench_locust.py).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let delay_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let delay = std::time::Duration::from_millis(delay_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?.port());
        loop {
            let (mut stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}
