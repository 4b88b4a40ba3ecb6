//! A gRPC backend for `scripts/bench.sh` scenario (i): tonic serving
//! `grpc.health.v1.Health` (from tonic-health) over h2c, which answers
//! `Check` for the server ("") with SERVING.
//!
//! ```text
//! cargo run --release --example grpc_backend -- 127.0.0.1:50051
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("usage: grpc_backend ADDRESS");
        return ExitCode::from(2);
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    eprintln!("grpc_backend listening on {addr}");
    match tonic::transport::Server::builder()
        .add_service(health)
        .serve(addr)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_backend: {e}");
            ExitCode::from(1)
        }
    }
}
