//! `consumer ledger`: the exactly-once ledger. Reads both topics in one group, persists every
//! customer and transaction through SeaORM (see `bank_storage::ledger` for the one-transaction
//! write that makes it exactly-once), and logs the running `(account_number, sum(amount))`.
//!
//! parse config -> build clients (database, registry, Kafka, HTTP) -> run the pipeline until a
//! signal -> commit what is held, leave the group, stop the HTTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bank_plumbing::shutdown::Stop;
use bank_storage::ledger::{Applied, Ledger, parked_count};
use sea_orm::{DatabaseConnection, DbBackend};

use crate::cli::LedgerArgs;
use crate::health::Health;
use crate::metrics::{Metrics, TopicLabel};
use crate::pipeline::{Decoded, Sink, WriteError};
use crate::source::Subscription;
use crate::stored_offsets::DatabaseOffsets;
use crate::tuple_log::TupleLog;

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let stop = Stop::new();
    // Before the database is reached: a SIGTERM while connecting or migrating (a rolling
    // restart while PostgreSQL is slow) then ends the process cleanly, not with status 143.
    stop.on_signal();
    let app = tokio::select! {
        app = Application::build_with(args, stop.clone()) => app?,
        () = stop.requested() => {
            tracing::info!("stop requested before the ledger was ready");
            return Ok(());
        }
    };
    app.run_until_stopped().await
}

/// A built ledger, ready to run: tests start it in-process.
pub struct Application {
    args: LedgerArgs,
    db: DatabaseConnection,
    http_addr: std::net::SocketAddr,
    http: tokio::task::JoinHandle<()>,
    health: Arc<Health>,
    metrics: Metrics,
    stop: Stop,
}

impl Application {
    pub async fn build(args: LedgerArgs) -> anyhow::Result<Application> {
        Application::build_with(args, Stop::new()).await
    }

    /// [`Application::build`] with the stop it will obey.
    pub async fn build_with(args: LedgerArgs, stop: Stop) -> anyhow::Result<Application> {
        let database = bank_storage::connect::redact(&args.database.url);
        tracing::info!(%database, "connecting to the ledger database");
        // One connection per writer, plus one for offsets at assignment and the parked gauge.
        let db = bank_storage::connect(&args.database.url, args.writers as u32 + 1).await?;
        bank_storage::migration::run(&db)
            .await
            .with_context(|| format!("migrating {database}"))?;
        tracing::info!(%database, group = args.group, "ledger database ready");

        let health = Arc::new(Health::default());
        health.set_database(true);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.parked.set(parked_count(&db).await? as i64);
        let (http_addr, server) = crate::http::bind(
            args.http_addr,
            health.clone(),
            registry,
            metrics.clone(),
            axum::Router::new(),
            stop.clone(),
        )
        .await?;
        let http = tokio::spawn(server);
        Ok(Application {
            args,
            db,
            http_addr,
            http,
            health,
            metrics,
            stop,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.http_addr
    }

    /// A handle that stops the application when requested (signals do the same).
    pub fn stop_handle(&self) -> Stop {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let args = &self.args;
        self.stop.on_signal();
        let input = &args.input;
        let offsets = Box::new(DatabaseOffsets::new(self.db.clone(), &args.group));
        let tuples = Arc::new(Mutex::new(TupleLog::open(if args.no_tuple_log {
            None
        } else {
            Some(&args.tuple_log)
        })?));
        let writers = match self.db.get_database_backend() {
            DbBackend::Sqlite => 1,
            _ => args.writers,
        };
        tracing::info!(writers, "database writers");
        let sinks = (0..writers)
            .map(|_| LedgerSink {
                db: self.db.clone(),
                ledger: Ledger::new(&args.group),
                tuples: tuples.clone(),
                metrics: self.metrics.clone(),
                transactions_topic: input.transactions_topic.clone(),
                customers_topic: input.customers_topic.clone(),
            })
            .collect();
        crate::role::consume(crate::role::Consumption {
            input: input.clone(),
            group: args.group.clone(),
            subscription: Subscription {
                topics: vec![
                    input.transactions_topic.clone(),
                    input.customers_topic.clone(),
                ],
                first: Some(input.customers_topic.clone()),
                capacity: args.batch_size * 2,
                // Records in flight, from the poll to their commit, weighed with their decoded
                // rows: the batch the writers are committing and the next one, gathered and
                // decoded meanwhile. A third batch's worth (gathering while the next waits)
                // held 12 MiB more at the peak for no measurable rows/s once librdkafka's own
                // queue was capped by count (source.rs): five interleaved pairs in
                // bench-consumer, 77,100 against 78,400 rows/s (noise), 100-105 against
                // 112-119 MiB (README, memory).
                in_flight_bytes: args.max_batch_bytes.saturating_mul(2),
            },
            offsets,
            sinks,
            batch_size: args.batch_size,
            batch_bytes: args.max_batch_bytes,
            batch_linger: Duration::from_millis(args.batch_linger_ms),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            stop: self.stop.clone(),
        })
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        self.db.close().await?;
        tracing::info!("ledger stopped");
        Ok(())
    }
}

struct LedgerSink {
    db: DatabaseConnection,
    ledger: Ledger,
    /// Shared by the writers: one file, and accounts never span writers.
    tuples: Arc<Mutex<TupleLog>>,
    metrics: Metrics,
    transactions_topic: String,
    customers_topic: String,
}

impl Sink for LedgerSink {
    async fn apply(&mut self, decoded: &Decoded) -> Result<(), WriteError> {
        crate::fault::writer_panic_point();
        let applied = self.ledger.apply(&self.db, &decoded.events).await?;
        self.account(&applied).await;
        Ok(())
    }

    fn idle_interval(&self) -> Option<Duration> {
        Some(self.ledger.sweep_interval())
    }

    /// Posts parked transactions whose customer arrived through another writer, even when no
    /// traffic comes (the sweep also runs inside `apply` when busy).
    async fn idle(&mut self) {
        match self.ledger.sweep(&self.db).await {
            Ok(applied) if !applied.posted.is_empty() => self.account(&applied).await,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sweeping parked transactions failed; next time"),
        }
    }
}

impl LedgerSink {
    /// Metrics, the parked gauge and the tuple log for what a write did.
    async fn account(&self, applied: &Applied) {
        let unparked = applied.posted.iter().filter(|p| p.was_parked).count();
        if applied.parked > 0 || unparked > 0 {
            if let Ok(count) = parked_count(&self.db).await {
                self.metrics.parked.set(count as i64);
            }
            tracing::info!(
                parked = applied.parked,
                posted_from_parking = unparked,
                "transactions waiting for their customer changed"
            );
        }
        self.metrics
            .persisted
            .get_or_create(&TopicLabel {
                topic: self.customers_topic.clone(),
            })
            .inc_by(applied.customers);
        self.metrics
            .persisted
            .get_or_create(&TopicLabel {
                topic: self.transactions_topic.clone(),
            })
            .inc_by(applied.posted.len() as u64);
        self.metrics.duplicates.inc_by(applied.duplicates);
        let mut tuples = self.tuples.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = tuples.record(&applied.posted) {
            tracing::warn!(%error, "cannot write the tuple log");
        }
    }
}
