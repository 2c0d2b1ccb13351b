//! Prometheus metrics: a registry each long-running role fills, and the HTTP endpoint serving it.
//!
//! Roles define their own metric families with `prometheus-client` (which does the exposition
//! format), register them in a [`Registry`], and call [`serve`] when METRICS_ADDR is set. With
//! METRICS_ADDR unset nothing listens.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// A registry shared between the role that fills it and the endpoint that serves it.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// A fresh registry whose metric names start with `superhero_<role>_`.
pub fn registry(role: &str) -> SharedRegistry {
    Arc::new(Mutex::new(Registry::with_prefix(format!(
        "superhero_{role}"
    ))))
}

/// Latency buckets from 100 µs to about 26 s, in seconds.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

/// The registry in Prometheus text exposition format.
pub fn render(registry: &SharedRegistry) -> String {
    let mut text = String::new();
    let guard = registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &guard);
    text
}

/// Binds `addr` and serves `GET /metrics` until shutdown. Returns the bound address, so
/// `127.0.0.1:0` works in tests.
pub async fn serve(
    addr: SocketAddr,
    registry: SharedRegistry,
    shutdown: Shutdown,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the metrics endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("metrics at http://{bound}/metrics");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.recv() => return,
            };
            let Ok((mut socket, _)) = accepted else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                // One small request per connection; anything longer than a request line is ignored.
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    socket.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, content_type, body) = if path == "/metrics" || path == "/" {
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        render(&registry),
                    )
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "not found: try /metrics\n".to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}

/// Starts the endpoint when an address is configured; with none, opens no port.
pub async fn maybe_serve(
    addr: Option<SocketAddr>,
    registry: &SharedRegistry,
    shutdown: &Shutdown,
) -> Result<Option<SocketAddr>> {
    match addr {
        Some(addr) => Ok(Some(serve(addr, registry.clone(), shutdown.clone()).await?)),
        None => Ok(None),
    }
}
