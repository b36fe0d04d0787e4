//! What every consumer role does once it has its sink: connect to the registry and Kafka, run
//! the shared pipeline until a stop is requested, and leave the group cleanly. The ledger, the
//! summary and the limits watcher differ only in their sink and where their offsets come from.

use std::sync::Arc;
use std::time::Duration;

use bank_contract::{Decoder, Registry};
use bank_plumbing::shutdown::Stop;

use crate::cli::Input;
use crate::dead_letter::DeadLetters;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{BatchSettings, Pipeline, Sink};
use crate::source::{self, OffsetStore, Subscription};

pub struct Consumption<S: Sink> {
    pub input: Input,
    pub group: String,
    pub subscription: Subscription,
    pub offsets: Box<dyn OffsetStore>,
    /// One per writer task; see [`crate::pipeline`] for how partitions are shared out.
    pub sinks: Vec<S>,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub batch_linger: Duration,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub stop: Stop,
}

/// Consumes until `stop` is requested; returns the sinks.
pub async fn consume<S: Sink + 'static>(role: Consumption<S>) -> anyhow::Result<Vec<S>> {
    let registry = Registry::new(&role.input.registry.registry_config()?)?;
    // A wrong URL or refused credentials fail at once, naming the URL; a registry that is merely
    // not up yet is waited for by the decoder, which pauses on schema ids it has not seen.
    match registry.probe().await {
        Ok(()) => {}
        Err(error) if error.is_transient() => {
            tracing::warn!(%error, "schema registry not reachable yet; decoding waits for it");
        }
        Err(error) => return Err(anyhow::Error::new(error).context("checking the schema registry")),
    }
    let decoder = Arc::new(Decoder::new(Arc::new(registry)));
    let kafka_config =
        bank_plumbing::kafka::manual_commit_consumer_config(&role.input.kafka, &role.group)?;
    // Before consuming: a dead-letter topic that is missing and cannot be created is refused
    // now, not discovered at the first poison message.
    let dead_letters = DeadLetters::new(&role.input.kafka.client_config()?)?;
    dead_letters
        .ensure_topics(&role.subscription.topics)
        .await?;
    tracing::info!(group = role.group, topics = ?role.subscription.topics, "consuming");
    let mut source = source::start(
        kafka_config,
        role.subscription,
        role.offsets,
        role.health.clone(),
        role.metrics.clone(),
        role.stop.clone(),
    )?;
    let pipeline = Pipeline {
        settings: BatchSettings {
            max_records: role.batch_size,
            max_bytes: role.batch_bytes,
            linger: role.batch_linger,
            transactions_topic: role.input.transactions_topic.clone(),
            customers_topic: role.input.customers_topic.clone(),
        },
        decoder,
        dead_letters,
        sinks: role.sinks,
        health: role.health,
        metrics: role.metrics,
    };
    match pipeline.run(&mut source, role.stop.clone()).await {
        Ok((sinks, committed)) => {
            source.close(Some(committed)).await;
            Ok(sinks)
        }
        Err(error) => {
            // Leave the group at once so the partitions move on; the process exits non-zero.
            role.stop.request();
            source.close(None).await;
            Err(error)
        }
    }
}

/// The frame of the analytics roles (summary, limits): the transactions topic, resumed from the
/// role's checkpoint (see [`crate::checkpoint`]), one writer, and an HTTP endpoint with the
/// role's own JSON route beside /healthz, /readyz and /metrics.
pub struct Analytics {
    pub registry: prometheus_client::registry::Registry,
    pub metrics: Metrics,
    health: Arc<Health>,
    stop: Stop,
}

impl Analytics {
    /// Stops on SIGINT/SIGTERM; register role metrics in `registry` before [`Analytics::run`].
    pub fn new() -> Analytics {
        let stop = Stop::new();
        stop.on_signal();
        let health = Arc::new(Health::default());
        health.set_database(true);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        Analytics {
            registry,
            metrics,
            health,
            stop,
        }
    }

    /// Serves HTTP on `http_addr` and feeds the transactions, from the stored `offsets` on, to
    /// `sink` until stopped.
    pub async fn run<S: Sink + 'static>(
        self,
        input: Input,
        group: String,
        http_addr: std::net::SocketAddr,
        routes: axum::Router,
        offsets: Box<dyn OffsetStore>,
        sink: S,
    ) -> anyhow::Result<()> {
        let (_, server) = crate::http::bind(
            http_addr,
            self.health.clone(),
            self.registry,
            self.metrics.clone(),
            routes,
            self.stop.clone(),
        )
        .await?;
        let http = tokio::spawn(server);
        consume(Consumption {
            subscription: Subscription {
                topics: vec![input.transactions_topic.clone()],
                first: None,
                capacity: 10_000,
                in_flight_bytes: 64 << 20,
            },
            input,
            group,
            offsets,
            // One writer: the role's state spans every partition.
            sinks: vec![sink],
            batch_size: 5_000,
            batch_bytes: 16 << 20,
            batch_linger: Duration::ZERO,
            health: self.health,
            metrics: self.metrics,
            stop: self.stop,
        })
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
        Ok(())
    }
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics::new()
    }
}
