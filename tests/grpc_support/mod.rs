//! A real gRPC backend for the gateway's tests: tonic, with a small echo
//! service written against tonic's server API (no protoc), and
//! `grpc.health.v1` from tonic-health, over h2c or over TLS (ALPN h2).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

pub fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.to_string(),
        n,
    }
}

pub const SERVICE: &str = "sluice.test.Echo";

/// The test service:
/// - `Unary(text, n)` answers `(NAME:text, n)`, and `Unary("te")` the
///   request's `te` field;
/// - `List(text, n)` streams `n` messages `text#i`, each only after the test
///   releases it (so a gateway that buffered the stream would stall it), then
///   ends with status DATA_LOSS "end of list" in the trailers;
/// - `Sum` (client streaming) answers the sum of the `n`s it was sent;
/// - `Chat` (bidirectional) answers each message as it comes, upper-cased.
#[derive(Clone)]
pub struct EchoService {
    pub name: String,
    /// Permits for `List`'s messages.
    pub release: Arc<Semaphore>,
}

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = SERVICE;
}

type Stream2 = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send + 'static>>;

struct Unary(String);
impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            // gRPC requires `te: trailers` on requests (it detects proxies
            // that would drop trailers); `te` asks what arrived.
            let te = req
                .metadata()
                .get("te")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let m = req.into_inner();
            if m.text == "te" {
                return Ok(Response::new(msg(&te, 0)));
            }
            if m.text == "slow" {
                tokio::time::sleep(Duration::from_millis(u64::from(m.n))).await;
            }
            Ok(Response::new(msg(&format!("{name}:{}", m.text), m.n)))
        })
    }
}

struct List(Arc<Semaphore>);
impl tonic::server::ServerStreamingService<Msg> for List {
    type Response = Msg;
    type ResponseStream = Stream2;
    type Future = BoxFuture<Response<Stream2>, Status>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let release = self.0.clone();
        Box::pin(async move {
            let m = req.into_inner();
            let items = tokio_stream::iter(0..m.n)
                .then(move |i| {
                    let release = release.clone();
                    let text = m.text.clone();
                    async move {
                        if let Ok(p) = release.acquire().await {
                            p.forget();
                        }
                        Ok(msg(&format!("{text}#{i}"), i))
                    }
                })
                .chain(tokio_stream::once(Err(Status::data_loss("end of list"))));
            Ok(Response::new(Box::pin(items) as Stream2))
        })
    }
}

struct Sum;
impl tonic::server::ClientStreamingService<Msg> for Sum {
    type Response = Msg;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut sum, mut count) = (0, 0);
            while let Some(m) = stream.message().await? {
                sum += m.n;
                count += 1;
            }
            Ok(Response::new(msg(&format!("{count} messages"), sum)))
        })
    }
}

struct Chat;
impl tonic::server::StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = Stream2;
    type Future = BoxFuture<Response<Stream2>, Status>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let stream = req.into_inner();
            let out = stream.map(|m| m.map(|m| msg(&m.text.to_uppercase(), m.n)));
            Ok(Response::new(Box::pin(out) as Stream2))
        })
    }
}

impl<B> Service<http::Request<B>> for EchoService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            let path = req.uri().path().to_string();
            let method = path.strip_prefix(&format!("/{SERVICE}/")).unwrap_or("");
            Ok(match method {
                "Unary" => grpc.unary(Unary(me.name), req).await,
                "List" => grpc.server_streaming(List(me.release), req).await,
                "Sum" => grpc.client_streaming(Sum, req).await,
                "Chat" => grpc.streaming(Chat, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A running backend: its address, its health reporter, and the permits of
/// its `List` streams.
pub struct Backend {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    pub health: HealthReporter,
    pub release: Arc<Semaphore>,
}

impl Backend {
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.health.set_service_status("", status).await;
    }
}

/// A certificate for `localhost`, as (cert PEM, key PEM).
pub fn localhost_cert() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

/// Starts a backend named `name` on an ephemeral port: h2c, or TLS with the
/// given (cert, key) PEMs.
pub async fn backend(name: &str, tls: Option<&(String, String)>) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = tonic_health::server::health_reporter();
    let release = Arc::new(Semaphore::new(0));
    let echo = EchoService {
        name: name.to_string(),
        release: release.clone(),
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    let router = builder.add_service(health_service).add_service(echo);
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |conn| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        conn
    });
    tokio::spawn(router.serve_with_incoming(incoming));
    Backend {
        addr,
        connections,
        health,
        release,
    }
}

/// A client channel to the gateway: h2c to `http://127.0.0.1:PORT`, or TLS
/// (ALPN h2) to `https://localhost:PORT` trusting `ca_pem`.
pub async fn channel(port: u16, ca_pem: Option<&str>) -> tonic::transport::Channel {
    let endpoint = match ca_pem {
        None => {
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap()
        }
        Some(ca) => tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .unwrap(),
    };
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the gateway")
}

/// A client of the test service.
pub struct EchoClient(tonic::client::Grpc<tonic::transport::Channel>);

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/{SERVICE}/{method}").parse().unwrap()
}

impl EchoClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        EchoClient(tonic::client::Grpc::new(channel))
    }

    pub async fn unary(&mut self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.0
            .unary(req, path("Unary"), ProstCodec::<Msg, Msg>::default())
            .await
    }

    pub async fn list(&mut self, m: Msg) -> Result<Response<Streaming<Msg>>, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.0
            .server_streaming(
                Request::new(m),
                path("List"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
    }

    pub async fn sum(&mut self, items: Vec<Msg>) -> Result<Response<Msg>, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.0
            .client_streaming(
                Request::new(tokio_stream::iter(items)),
                path("Sum"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
    }

    pub async fn chat(
        &mut self,
        outbound: impl Stream<Item = Msg> + Send + 'static,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.0
            .streaming(
                Request::new(outbound),
                path("Chat"),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
    }
}
