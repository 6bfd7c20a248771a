//! The HTTP side of the sensor, as Prometheus exporters lay it out:
//! `/metrics` (text exposition), `/-/healthy` (the process is up),
//! `/-/ready` (rules loaded and every capture open; 503 with the reason
//! otherwise) and a landing page at `/` linking to them.

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;

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

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve<F>(
    listener: std::net::TcpListener,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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
    use std::sync::atomic::{AtomicBool, Ordering};

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

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn endpoints_answer() {
        let metrics = Metrics::new();
        metrics.capture("eth9").received_packets.inc_by(7);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let app = router(metrics, flag.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            rt.block_on(serve(listener, app, async {
                let _ = rx.await;
            }))
        });
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(
            m.contains("egresswatch_capture_received_packets_total{interface=\"eth9\"} 7"),
            "{m}"
        );
        assert!(get(addr, "/-/healthy").starts_with("HTTP/1.1 200"));
        let r = get(addr, "/-/ready");
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("capture not open"),
            "{r}"
        );
        flag.0.store(true, Ordering::Relaxed);
        assert!(get(addr, "/-/ready").starts_with("HTTP/1.1 200"));
        let landing = get(addr, "/");
        assert!(landing.contains("href=\"metrics\""), "{landing}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        tx.send(()).unwrap();
        server.join().unwrap().unwrap();
    }
}
