//! The HTTP endpoints of a running stream stage: `/metrics` (Prometheus scrapes it, OpenMetrics
//! text from [`Telemetry::render`]), `/health/live` (the process serves: 200) and
//! `/health/ready` (200 once recovery finished and the source is open, 503 before and while
//! draining), for systemd or Kubernetes probes.
//!
//! The server is hyper's HTTP/1 connection loop on the run's tokio runtime; it only reads
//! atomics, so a scrape never waits for the engine. It is bound before recovery starts, so a
//! busy port fails the run at once (exit 2) and `/health/live` answers during a long
//! recovery.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::IngestError;
use crate::metrics::Telemetry;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running server; dropping it stops accepting connections.
pub struct MetricsServer {
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds `addr` (`HOST:PORT`) and serves the endpoints until the server is dropped.
pub async fn serve(addr: &str, telemetry: Arc<Telemetry>) -> Result<MetricsServer, IngestError> {
    let sock: SocketAddr = addr.parse().map_err(|e| {
        IngestError::Usage(format!(
            "metrics address `{addr}`: {e}; write HOST:PORT with an IP, e.g. 127.0.0.1:9464"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(sock).await.map_err(|e| {
        IngestError::Usage(format!(
            "cannot serve metrics on {addr}: {e}; is another process listening there? Choose another port with --metrics-addr or metrics.addr"
        ))
    })?;
    let addr = listener.local_addr().unwrap_or(sock);
    tracing::info!(%addr, "serving /metrics, /health/live and /health/ready");
    let accept = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                    continue;
                }
            };
            let telemetry = telemetry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let telemetry = telemetry.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &telemetry)) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended");
                }
            });
        }
    });
    Ok(MetricsServer { accept })
}

/// The answer to one request.
fn respond(req: &Request<Incoming>, telemetry: &Telemetry) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("a valid response")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => Response::builder()
            .header("content-type", OPENMETRICS)
            .body(Full::new(Bytes::from(telemetry.render())))
            .expect("a valid response"),
        "/health/live" => text(StatusCode::OK, "live\n"),
        "/health/ready" if telemetry.is_ready() => text(StatusCode::OK, "ready\n"),
        "/health/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /health/live or /health/ready\n",
        ),
    }
}
