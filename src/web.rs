//! The HTTP side of the sensor, as Prometheus exporters lay it out:
//! `/metrics` (text exposition), `/-/healthy` (the process is up),
//! `/-/ready` (rules loaded and every capture open; 503 with the reason
//! otherwise) and a landing page at `/` linking to them.
//!
//! Whoever can reach the port, with or without credentials, is bounded in
//! what it can hold of the server ([`Limits`]): connections at once (at
//! the limit a new one closes the connection whose last request is
//! oldest, so idle
//! connections can neither exhaust descriptors nor lock a scraper out),
//! the time to send a request head (which is also how long an idle
//! keep-alive connection lives), the time a response may stall because
//! the client stopped reading, the bytes of a request head and the
//! requests served on one connection.
//!
//! `--web.config.file` ([`config`]) adds TLS, basic authentication
//! ([`auth`]) and response headers; the server reads the current
//! [`WebConfig`] at each new connection, so a reload applies to the next
//! connection.

pub mod auth;
pub mod config;

pub use config::WebConfig;

use crate::metrics::{Metrics, PREFIX};
use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Registry};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;

/// The listen backlog of the web port (std's `bind` uses 128): a burst of
/// new connections, a reconnect storm or a flood of idle ones, waits in
/// the kernel's queue while the server accepts instead of losing SYNs to a
/// one-second retransmit.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds the web port at `addr` (`host:port` or `address:port`; the first
/// address that binds) with [`LISTEN_BACKLOG`].
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut failed = None;
    for a in addr.to_socket_addrs()? {
        match bind_one(a) {
            Ok(listener) => return Ok(listener),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's bind does: a restarted sensor rebinds despite TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Whether the sensor is ready to be scraped for real data.
pub trait Readiness: Send + Sync + 'static {
    /// `Err` says what is missing.
    fn ready(&self) -> Result<(), String>;
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Arc<dyn Readiness>,
}

/// The routes, served by [`serve`] (or by a test directly).
pub fn router(metrics: Metrics, readiness: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics_text))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(AppState { metrics, readiness })
}

/// What one client can hold of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once. At the limit a new connection closes the
    /// one whose last request is oldest (or that never sent one).
    pub max_connections: usize,
    /// Time to send a complete request head, counted from the opening of
    /// the connection or from its previous response: an idle keep-alive
    /// connection is closed after this long too.
    pub read_header_timeout: Duration,
    /// Time a response may wait for the client to read any of it.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            read_header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Requests answered on one connection; the last answer carries
/// `Connection: close`. Bounds what a pipelining client gets back for one
/// connection (about 100 metrics pages).
pub const REQUESTS_PER_CONNECTION: u64 = 100;

/// Bytes buffered per connection while reading a request head; a longer
/// head gets `431 Request Header Fields Too Large`.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The web config in force; swapped whole on reload.
pub type SharedWebConfig = Arc<ArcSwap<WebConfig>>;

/// Serves `router` on `listener` until `shutdown` completes, within
/// `limits` and as `web` says (TLS, users, headers); the server's own
/// metrics go to `registry`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    web: SharedWebConfig,
    registry: &Registry,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let metrics = HttpMetrics::register(registry, limits.max_connections);
    let mut conns = Connections::new(limits, router, web);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = conns.tasks.join_next_with_id() => {
                conns.ended(done, &metrics);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if conns.live.len() >= limits.max_connections.max(1) {
                        conns.close_least_recent(&metrics).await;
                    }
                    conns.open(stream);
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    // Out of descriptors or memory: the listener stays
                    // readable, so wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        metrics.open.set(conns.live.len() as i64);
    }
    conns.tasks.shutdown().await;
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

#[derive(Clone)]
struct HttpMetrics {
    open: IntGauge,
    evicted: IntCounter,
    timed_out: IntCounter,
}

impl HttpMetrics {
    fn register(reg: &Registry, max_connections: usize) -> HttpMetrics {
        let gauge =
            |n: &str, help: &str| registered(reg, IntGauge::new(format!("{PREFIX}_{n}"), help));
        let counter =
            |n: &str, help: &str| registered(reg, IntCounter::new(format!("{PREFIX}_{n}"), help));
        gauge(
            "http_connections_max",
            "HTTP connections served at once at most (--web.max-connections, within the descriptor limit).",
        )
        .set(max_connections as i64);
        HttpMetrics {
            open: gauge("http_connections_open", "HTTP connections open now."),
            evicted: counter(
                "http_connections_evicted_total",
                "HTTP connections closed at the connection limit to make room for a new one (the one whose last request was oldest).",
            ),
            timed_out: counter(
                "http_connections_timed_out_total",
                "HTTP connections closed because a request head, a TLS handshake or the reading of a response took too long (or an idle keep-alive connection expired).",
            ),
        }
    }
}

/// Registers `m` (a name taken twice is logged: the metric still counts,
/// unexported).
fn registered<M>(reg: &Registry, m: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let m = m.expect("valid metric name");
    if let Err(e) = reg.register(Box::new(m.clone())) {
        tracing::warn!(error = %e, "HTTP metric not exported");
    }
    m
}

/// How a connection ended badly.
#[derive(Debug)]
enum ConnError {
    Http(hyper::Error),
    /// The TLS handshake failed.
    Handshake(io::Error),
    /// The TLS handshake took longer than the request-head time.
    HandshakeTimeout,
}

/// A connection's socket, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The open connections, each a task of `tasks`.
struct Connections {
    limits: Limits,
    router: Router,
    web: SharedWebConfig,
    tasks: JoinSet<Result<(), ConnError>>,
    live: Vec<Conn>,
    epoch: Instant,
}

struct Conn {
    id: Id,
    abort: AbortHandle,
    /// Which connection goes first at the limit: the lowest; see [`ASKED`].
    last_request: Arc<AtomicU64>,
}

/// Set in `Conn::last_request` once a connection has sent a request: the
/// milliseconds from `epoch` to its opening, or to its last request with
/// this bit. Connections that never sent a whole request head go first,
/// oldest first, then those whose last request is oldest.
const ASKED: u64 = 1 << 63;

impl Connections {
    fn new(limits: Limits, router: Router, web: SharedWebConfig) -> Connections {
        Connections {
            limits,
            router,
            web,
            tasks: JoinSet::new(),
            live: Vec::new(),
            epoch: Instant::now(),
        }
    }

    fn open(&mut self, stream: tokio::net::TcpStream) {
        let epoch = self.epoch;
        let now = move || epoch.elapsed().as_millis() as u64;
        let last_request = Arc::new(AtomicU64::new(now()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.limits.read_header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let inner = TowerToHyperService::new(self.router.clone());
        let stamp = last_request.clone();
        let served = AtomicU64::new(0);
        let web = self.web.load_full();
        let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let service = hyper::service::service_fn(move |req: axum::extract::Request<_>| {
            stamp.store(ASKED | now(), Ordering::Relaxed);
            let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= REQUESTS_PER_CONNECTION;
            let (inner, web) = (inner.clone(), web.clone());
            async move {
                let mut response = match &web.auth {
                    Some(auth) if !auth.allows(req.headers().get(header::AUTHORIZATION)).await => {
                        unauthorized()
                    }
                    _ => inner.call(req).await?,
                };
                let headers = response.headers_mut();
                for (name, value) in &web.headers {
                    headers.insert(name.clone(), value.clone());
                }
                if last {
                    let close = HeaderValue::from_static("close");
                    headers.insert(header::CONNECTION, close);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let write_timeout = self.limits.write_timeout;
        let handshake_timeout = self.limits.read_header_timeout;
        let abort = self.tasks.spawn(async move {
            let socket: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => return Err(ConnError::Handshake(e)),
                        Err(_) => return Err(ConnError::HandshakeTimeout),
                    }
                }
            };
            let io = TokioIo::new(WriteStall {
                inner: socket,
                limit: write_timeout,
                stuck: None,
            });
            http.serve_connection(io, service)
                .await
                .map_err(ConnError::Http)
        });
        self.live.push(Conn {
            id: abort.id(),
            abort,
            last_request,
        });
    }

    /// Closes the connection that goes first (see [`ASKED`]), and waits
    /// until its socket is closed.
    async fn close_least_recent(&mut self, metrics: &HttpMetrics) {
        let Some(victim) = self
            .live
            .iter()
            .min_by_key(|c| c.last_request.load(Ordering::Relaxed))
        else {
            return;
        };
        let victim_id = victim.id;
        victim.abort.abort();
        metrics.evicted.inc();
        while let Some(done) = self.tasks.join_next_with_id().await {
            if self.ended(done, metrics) == victim_id {
                break;
            }
        }
    }

    /// Forgets a finished connection; returns its task id.
    fn ended(
        &mut self,
        done: Result<(Id, Result<(), ConnError>), JoinError>,
        metrics: &HttpMetrics,
    ) -> Id {
        let id = match done {
            Ok((id, Ok(()))) => id,
            Ok((id, Err(ConnError::Http(e)))) => {
                if timed_out(&e) {
                    metrics.timed_out.inc();
                } else {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                id
            }
            Ok((id, Err(ConnError::HandshakeTimeout))) => {
                metrics.timed_out.inc();
                id
            }
            Ok((id, Err(ConnError::Handshake(e)))) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                id
            }
            Err(e) => {
                if e.is_panic() {
                    tracing::error!("HTTP connection task panicked");
                }
                e.id()
            }
        };
        self.live.retain(|c| c.id != id);
        id
    }
}

/// A header timeout (hyper's) or a stalled write ([`WriteStall`]).
fn timed_out(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_timeout()
        || e.source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// A socket whose writes fail with `TimedOut` once they have made no
/// progress for `limit`: the client stopped reading.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is pending.
    stuck: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn guard<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stuck = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stuck
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, r)
    }
}

const LANDING: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>egresswatch</title></head>
<body>
<h1>egresswatch</h1>
<p>Network egress flow sensor: SSH reverse tunnels, mining, cluster allowlists.
Per-flow records go to the EVE output; this endpoint has the counters.</p>
<ul>
<li><a href="metrics">metrics</a> (Prometheus text format)</li>
<li><a href="-/healthy">-/healthy</a></li>
<li><a href="-/ready">-/ready</a> (rules loaded and every capture open)</li>
</ul>
<p>Version VERSION</p>
</body></html>
"#;

/// 401 with the challenge a browser or Prometheus answers.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"egresswatch\"")],
        "Unauthorized\n",
    )
        .into_response()
}

async fn landing() -> Html<String> {
    Html(LANDING.replace("VERSION", env!("CARGO_PKG_VERSION")))
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        s.metrics.encode(),
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "egresswatch is Healthy.\n"
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.readiness.ready() {
        Ok(()) => (StatusCode::OK, "egresswatch is Ready.\n".to_string()).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("egresswatch is not ready: {why}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::atomic::AtomicBool;
    use std::time::Instant as StdInstant;

    struct Flag(AtomicBool);

    impl Readiness for Flag {
        fn ready(&self) -> Result<(), String> {
            if self.0.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("capture not open".into())
            }
        }
    }

    /// A server on a loopback port, in a thread, stopped on drop.
    struct TestServer {
        addr: SocketAddr,
        flag: Arc<Flag>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    }

    impl TestServer {
        fn start(metrics: Metrics, limits: Limits) -> TestServer {
            TestServer::start_with(metrics, limits, SharedWebConfig::default())
        }

        fn start_with(metrics: Metrics, limits: Limits, web: SharedWebConfig) -> TestServer {
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            let app = router(metrics.clone(), flag.clone());
            let listener = bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let stopped = async {
                    let _ = rx.await;
                };
                rt.block_on(serve(
                    listener,
                    app,
                    limits,
                    web,
                    metrics.registry(),
                    stopped,
                ))
            });
            TestServer {
                addr,
                flag,
                stop: Some(tx),
                thread: Some(thread),
            }
        }

        fn connect(&self) -> TcpStream {
            let s = TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        }

        fn get(&self, path: &str) -> String {
            self.get_with(path, "")
        }

        /// GET with extra header lines (each ending in CRLF).
        fn get_with(&self, path: &str, headers: &str) -> String {
            let mut s = self.connect();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        }

        /// One sample of the server's own metrics.
        fn metric(&self, name: &str) -> f64 {
            let text = self.get("/metrics");
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(());
            }
            if let Some(t) = self.thread.take() {
                let r = t.join();
                if !std::thread::panicking() {
                    r.unwrap().unwrap();
                }
            }
        }
    }

    /// Reads until the server closes the connection; how long that took.
    fn until_closed(s: &mut TcpStream) -> Duration {
        let t0 = StdInstant::now();
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return t0.elapsed(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return t0.elapsed(),
                Err(e) => panic!("connection still open after {:?}: {e}", t0.elapsed()),
            }
        }
    }

    fn quick(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            read_header_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn a_burst_of_connections_queues_while_nobody_accepts() {
        // More than std's backlog of 128: each connect completes from the
        // kernel's queue instead of waiting for a SYN retransmit.
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_millis(500);
        let queued: Vec<TcpStream> = (0..300)
            .map(|i| {
                TcpStream::connect_timeout(&addr, timeout)
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"))
            })
            .collect();
        assert_eq!(queued.len(), 300);
        assert!(bind(&addr.to_string()).is_err(), "the port is taken");
    }

    #[test]
    fn endpoints_answer() {
        let metrics = Metrics::new();
        metrics.capture("eth9").received_packets.inc_by(7);
        let server = TestServer::start(metrics, Limits::default());
        let m = server.get("/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(
            m.contains("egresswatch_capture_received_packets_total{interface=\"eth9\"} 7"),
            "{m}"
        );
        assert!(m.contains("egresswatch_http_connections_max 64"), "{m}");
        assert!(server.get("/-/healthy").starts_with("HTTP/1.1 200"));
        let r = server.get("/-/ready");
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("capture not open"),
            "{r}"
        );
        server.flag.0.store(true, Ordering::Relaxed);
        assert!(server.get("/-/ready").starts_with("HTTP/1.1 200"));
        let landing = server.get("/");
        assert!(landing.contains("href=\"metrics\""), "{landing}");
        assert!(server.get("/nope").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn users_need_their_password_and_a_reload_applies_to_new_connections() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "basic_auth_users:\n  prom: {hash}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        );
        let config = config::parse(&text, std::path::Path::new(".")).unwrap();
        let web = SharedWebConfig::new(ArcSwap::from_pointee(config));
        let server = TestServer::start_with(Metrics::new(), Limits::default(), web.clone());
        let denied = server.get("/metrics");
        assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
        assert!(
            denied.contains("www-authenticate: Basic realm=\"egresswatch\""),
            "{denied}"
        );
        assert!(
            denied.contains("x-content-type-options: nosniff"),
            "{denied}"
        );
        assert!(
            !denied.contains("egresswatch_http_connections_max"),
            "{denied}"
        );
        // prom:pw and prom:no
        for (credentials, status) in [("cHJvbTpwdw==", "200"), ("cHJvbTpubw==", "401")] {
            let got = server.get_with(
                "/metrics",
                &format!("Authorization: Basic {credentials}\r\n"),
            );
            assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
        }
        web.store(Arc::new(WebConfig::default()));
        assert!(server.get("/metrics").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn https_with_a_client_that_checks_the_certificate() {
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        let dir = tempfile::tempdir().unwrap();
        if config::tests::certificate(dir.path()).is_none() {
            return;
        }
        let text = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let web = config::parse(text, dir.path()).unwrap();
        let web = SharedWebConfig::new(ArcSwap::from_pointee(web));
        let server = TestServer::start_with(Metrics::new(), Limits::default(), web);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.path().join("cert.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, server.connect());
        write!(
            tls,
            "GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = tls.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(tls.conn.alpn_protocol(), None, "no ALPN asked, none chosen");
        // Plain HTTP on the TLS port gets no HTTP answer. The server may
        // reset the connection while the request is still being written, so
        // an error on either side is also "no answer".
        let mut s = server.connect();
        let mut plain = String::new();
        let _ = s
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .and_then(|()| s.read_to_string(&mut plain));
        assert!(!plain.starts_with("HTTP/1.1"), "{plain}");
    }

    #[test]
    fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
        let server = TestServer::start(Metrics::new(), quick(32));
        let mut idle: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
        let mut half: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
        for s in &mut half {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        // A keep-alive connection after one answer.
        let mut kept = server.connect();
        kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(kept.read(&mut buf).unwrap() > 0);
        let t0 = StdInstant::now();
        for s in idle.iter_mut().chain(&mut half).chain([&mut kept]) {
            until_closed(s);
        }
        let waited = t0.elapsed();
        assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
        assert_eq!(
            server.metric("egresswatch_http_connections_timed_out_total"),
            9.0
        );
        // The scrape itself is the only connection left.
        assert_eq!(server.metric("egresswatch_http_connections_open"), 1.0);
    }

    #[test]
    fn at_the_limit_a_new_connection_closes_one_that_never_asked() {
        let limits = Limits {
            read_header_timeout: Duration::from_secs(30),
            ..quick(4)
        };
        let server = TestServer::start(Metrics::new(), limits);
        // A scraper's keep-alive connection, then idle connections filling
        // every slot, many times over.
        let mut scraper = server.connect();
        let scrape = |s: &mut TcpStream| {
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert!(scrape(&mut scraper).starts_with("HTTP/1.1 200"));
        let mut idle = Vec::new();
        for _ in 0..40 {
            let mut s = server.connect();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            idle.push(s);
        }
        assert!(server.get("/-/healthy").starts_with("HTTP/1.1 200"));
        assert!(server.get("/metrics").starts_with("HTTP/1.1 200"));
        assert!(scrape(&mut scraper).starts_with("HTTP/1.1 200"));
        assert!(server.metric("egresswatch_http_connections_open") <= 4.0);
        // Beyond the three free slots, each idle connection closed an older
        // one (never the scraper's, which asked): three are left.
        let evicted = server.metric("egresswatch_http_connections_evicted_total");
        assert!(evicted >= 37.0, "{evicted}");
        let closed = idle.iter().filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            match (&mut &**s).read(&mut [0u8; 16]) {
                Ok(n) => n == 0,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        });
        assert!(closed.count() >= 37);
    }

    #[test]
    fn pipelined_requests_are_bounded_per_connection() {
        let server = TestServer::start(Metrics::new(), Limits::default());
        let mut s = server.connect();
        let one = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";
        s.write_all(&one.repeat(150)).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text.matches("HTTP/1.1 200").count() as u64,
            REQUESTS_PER_CONNECTION
        );
        assert_eq!(text.matches("connection: close").count(), 1, "{text}");
    }

    #[test]
    fn a_client_that_stops_reading_is_closed() {
        // A large page, so 100 answers are more than the socket buffers.
        let metrics = Metrics::new();
        for i in 0..300 {
            metrics.capture(&format!("if{i}"));
        }
        let server = TestServer::start(metrics, quick(8));
        let mut s = server.connect();
        let one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        s.write_all(&one.repeat(200)).unwrap();
        // The socket buffers fill after some pages (slow on a loaded
        // machine), then the write stalls for 300 ms.
        let t0 = StdInstant::now();
        while server.metric("egresswatch_http_connections_timed_out_total") < 1.0
            && t0.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            server.metric("egresswatch_http_connections_timed_out_total"),
            1.0
        );
        assert_eq!(server.metric("egresswatch_http_connections_open"), 1.0);
        until_closed(&mut s);
    }
}
