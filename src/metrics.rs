//! Prometheus metrics: a registry each long-running role fills, and the HTTP endpoint serving it.
//!
//! Roles define their own metric families with `prometheus-client` (which does the exposition
//! format), register them in a [`Registry`], and call [`serve`] when METRICS_ADDR is set. With
//! METRICS_ADDR unset nothing listens.
//!
//! HTTP is hyper's (HTTP/1.1, one request per connection), under the same connection limits as
//! the game server ([`crate::connections`]): a small fixed cap, a short idle timeout, an idle
//! connection making room at the cap, and accept errors backing off.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::{Metric, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::connections::{self, AcceptErrors, Limits, Slot, Throttle};
use crate::shutdown::Shutdown;

/// Scrapers are few: a handful of connections is plenty, and bounds what a flood can hold.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the exposition format `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry shared between the role that fills it and the endpoint that serves it.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// A fresh registry whose metric names start with `superhero_<role>_`.
pub fn registry(role: &str) -> SharedRegistry {
    Arc::new(Mutex::new(Registry::with_prefix(format!(
        "superhero_{role}"
    ))))
}

/// A metric handle that registers a clone of itself: what [`register_all`] takes, so one list
/// can hold counters, gauges, histograms and families.
pub trait Registrable {
    fn register_in(&self, registry: &mut Registry, name: &str, help: &str);
}

impl<M: Metric + Clone> Registrable for M {
    fn register_in(&self, registry: &mut Registry, name: &str, help: &str) {
        registry.register(name, help, self.clone());
    }
}

/// Registers each `(name, help, handle)` in `registry`, in order, under one lock. A role's
/// metrics struct calls it once with all of its handles.
pub fn register_all(registry: &SharedRegistry, metrics: &[(&str, &str, &dyn Registrable)]) {
    let mut r = registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (name, help, metric) in metrics {
        metric.register_in(&mut r, name, help);
    }
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

/// Binds `addr` and serves `GET /metrics` (and `/`) until shutdown; other paths get 404.
/// Returns the bound address, so `127.0.0.1:0` works in tests.
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
    // In the role's span: its accept errors say whose endpoint it is.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let limits = Limits::new(MAX_CONNECTIONS, IDLE_TIMEOUT);
        let mut errors = AcceptErrors::new("metrics endpoint");
        let mut refusals = Throttle::default();
        while let Some(stream) = connections::accept(&listener, &mut errors, &shutdown).await {
            match limits.admit().await {
                Some(slot) => {
                    tokio::spawn(serve_connection(stream, slot, registry.clone()));
                }
                None => connections::log_refusal(&mut refusals, "metrics endpoint", &limits),
            }
        }
    }));
    Ok(bound)
}

/// Serves one HTTP connection. It counts as idle until its request has arrived: it is dropped
/// after [`IDLE_TIMEOUT`] or when its slot is wanted by a newcomer.
async fn serve_connection(stream: TcpStream, slot: Slot, registry: SharedRegistry) {
    let (arrived, request_in) = oneshot::channel::<()>();
    let arrived = Mutex::new(Some(arrived));
    let service = service_fn(move |request: Request<Incoming>| {
        if let Some(tx) = arrived.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(());
        }
        let response = respond(&request, &registry);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let idle = slot.idle();
    tokio::select! {
        _ = connection.as_mut() => return,
        Ok(()) = request_in => {}
        // Dropping the connection closes the socket; no request was being served.
        _ = idle.ended() => return,
    }
    drop(idle);
    if let Err(e) = connection.await {
        tracing::debug!("metrics connection failed: {e}");
    }
}

/// The answer to one request: the exposition text for `GET /metrics` (or `/`), else 404/405.
fn respond(request: &Request<Incoming>, registry: &SharedRegistry) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let (status, content_type, body) = if path != "/metrics" && path != "/" {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".to_string(),
        )
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".to_string(),
        )
    } else {
        (StatusCode::OK, OPENMETRICS, render(registry))
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
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

/// Estimates quantile `q` (0..1) of histogram `name` from exposition text, interpolating
/// linearly inside the bucket the quantile falls in (as Prometheus' `histogram_quantile` does).
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let fraction = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    None
}

/// The value of counter or gauge `name` (summing over labels) from exposition text.
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Fetches `/metrics` from an endpoint (for `bench` and tests).
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the metrics endpoint at {addr}"))?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .context("malformed metrics response")?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text = "x_bucket{le=\"1.0\"} 50\nx_bucket{le=\"2.0\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_sum 120\nx_count 100\n";
        assert_eq!(histogram_quantile(text, "x", 0.5), Some(1.0));
        assert_eq!(histogram_quantile(text, "x", 0.75), Some(1.5));
        assert_eq!(histogram_quantile(text, "y", 0.5), None);
        assert_eq!(
            sample_value("c_total 3\nc_total{a=\"b\"} 4\n", "c_total"),
            Some(7.0)
        );
    }
}
