//! What a table source reports on `/metrics` (Prometheus text) beside `/healthz`: rows
//! published and rejected, polls, the id it has reached and how far behind the table it is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct SourceMetrics {
    pub published: Counter,
    pub rejected: Counter,
    pub polls: Counter,
    pub position_id: Gauge,
    /// Database time minus the timestamp of the last row published, once caught up 0 or the
    /// poll interval; in seconds.
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

impl SourceMetrics {
    fn register(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register(
            "bank_source_rows_published",
            "Rows of the table published and acknowledged",
            self.published.clone(),
        );
        registry.register(
            "bank_source_rows_rejected",
            "Rows that could not be mapped to an event (see the rejects log)",
            self.rejected.clone(),
        );
        registry.register(
            "bank_source_polls",
            "Queries of the table",
            self.polls.clone(),
        );
        registry.register(
            "bank_source_position_id",
            "Incrementing id of the last row published",
            self.position_id.clone(),
        );
        registry.register(
            "bank_source_lag_seconds",
            "Database time minus the timestamp of the last row published",
            self.lag_seconds.clone(),
        );
        registry
    }

    /// Serves `/metrics` and `/healthz` on `addr` until `stop`; returns the bound address.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        stop: bank_plumbing::shutdown::Stop,
    ) -> anyhow::Result<SocketAddr> {
        let registry = Arc::new(self.register());
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/metrics",
                get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut text = String::new();
                        let _ = encode(&mut text, &registry);
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(%bound, "serving /healthz, /metrics");
        tokio::spawn(async move {
            let shutdown = async move { stop.requested().await };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "http server failed");
            }
        });
        Ok(bound)
    }
}
