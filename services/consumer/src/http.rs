//! The HTTP endpoint of every consumer role: `/healthz` (the process is alive), `/readyz`
//! (Kafka and the database answer, partitions are assigned) and `/metrics` (Prometheus).
//! Roles add their own JSON routes through `extra`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    registry: Arc<Registry>,
    metrics: Metrics,
}

/// Binds `addr` and serves until `stop` is requested. Returns the bound address (port 0 picks
/// a free port, for tests) and the server future.
pub async fn bind(
    addr: SocketAddr,
    health: Arc<Health>,
    registry: Registry,
    metrics: Metrics,
    extra: Router,
    stop: bank_plumbing::shutdown::Stop,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let state = AppState {
        health,
        registry: Arc::new(registry),
        metrics,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(extra);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving /healthz, /readyz, /metrics");
    let server = async move {
        let shutdown = async move { stop.requested().await };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "http server failed");
        }
    };
    Ok((bound, server))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join(", ")),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .ready
        .set(i64::from(state.health.readiness().is_ok()));
    state
        .metrics
        .assigned_partitions
        .set(i64::try_from(state.health.assigned()).unwrap_or(i64::MAX));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            error.to_string(),
        ),
    }
}

/// `consumer healthcheck`: GET the role's own endpoint on loopback; Ok when it answers 2xx.
pub async fn check(args: &crate::cli::HealthcheckArgs) -> anyhow::Result<()> {
    let mut addr = args.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}{}", args.path);
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(())
}
