//! A demo backend: `sluice-echo 127.0.0.1:9001 [NAME]`. See `sluice::echo`.

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: sluice-echo ADDRESS [NAME]");
        return ExitCode::from(2);
    };
    let name = args.next().unwrap_or_else(|| addr.clone());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice-echo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("sluice-echo {name} listening on {addr}");
    sluice::echo::Echo::new(&name).serve(listener).await;
    ExitCode::SUCCESS
}
