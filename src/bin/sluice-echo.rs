//! A demo backend: `sluice-echo 127.0.0.1:9001 [NAME [DELAY_MS]]`. See
//! `sluice::echo`. `DELAY_MS` makes every answer that much slower, for
//! benchmarks of load-aware balancing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;
use std::sync::atomic::Ordering;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: sluice-echo ADDRESS [NAME [DELAY_MS]]");
        return ExitCode::from(2);
    };
    let name = args.next().unwrap_or_else(|| addr.clone());
    let delay_ms = match args.next().map(|d| d.parse::<u64>()) {
        None => 0,
        Some(Ok(d)) => d,
        Some(Err(_)) => {
            eprintln!("sluice-echo: DELAY_MS must be a whole number of milliseconds");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice-echo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("sluice-echo {name} listening on {addr}");
    let echo = sluice::echo::Echo::new(&name);
    echo.control.delay_ms.store(delay_ms, Ordering::Relaxed);
    echo.serve(listener).await;
    ExitCode::SUCCESS
}
