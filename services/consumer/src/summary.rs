//! `consumer summary`: a running statistical summary of every transaction the system has seen:
//! count, mean and population standard deviation of deposits and of withdrawals.
//!
//! State choice: the role reads the transactions topic from the beginning at every start and
//! keeps its state in memory. It needs no database, so it can run beside any ledger (or none),
//! and Kafka is already the system of record; replaying a million transactions takes seconds.
//! Its consumer group only serves lag monitoring. Run one instance: each instance summarises the
//! partitions it owns.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use bank_contract::pb::TransactionKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use crate::cli::SummaryArgs;
use crate::pipeline::{Decoded, Sink};
use crate::seen::SeenTransactions;
use crate::statistics::{RunningStats, format_units};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The latest summary, as served on `/summary`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub deposits: KindSummary,
    pub withdrawals: KindSummary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindSummary {
    pub count: u64,
    /// Currency units, two decimals.
    pub mean: String,
    /// Population standard deviation, currency units, two decimals.
    pub stddev: String,
}

impl KindSummary {
    fn of(stats: &RunningStats) -> Self {
        KindSummary {
            count: stats.count(),
            mean: format_units(stats.mean_cents()),
            stddev: format_units(stats.stddev_cents()),
        }
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deposits count={} mean={} sd={} | withdrawals count={} mean={} sd={}",
            self.deposits.count,
            self.deposits.mean,
            self.deposits.stddev,
            self.withdrawals.count,
            self.withdrawals.mean,
            self.withdrawals.stddev
        )
    }
}

pub async fn run(args: SummaryArgs) -> anyhow::Result<()> {
    let mut replay = crate::role::Replay::new();
    let count: Family<KindLabel, Gauge> = Family::default();
    let mean: Family<KindLabel, FloatGauge> = Family::default();
    let stddev: Family<KindLabel, FloatGauge> = Family::default();
    let summary = replay.registry.sub_registry_with_prefix("bank_summary");
    summary.register("count", "Transactions summarised, by kind", count.clone());
    summary.register(
        "mean",
        "Mean amount in currency units, by kind",
        mean.clone(),
    );
    summary.register(
        "stddev",
        "Population standard deviation of amounts in currency units, by kind",
        stddev.clone(),
    );
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let routes = {
        let snapshot = snapshot.clone();
        axum::Router::new().route(
            "/summary",
            get(move || {
                let current = snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                async move { axum::Json(current) }
            }),
        )
    };

    let sink = SummarySink {
        deposits: RunningStats::default(),
        withdrawals: RunningStats::default(),
        seen: SeenTransactions::default(),
        every: args.every.max(1),
        every_ms: args.every_ms.map(Duration::from_millis),
        since_print: 0,
        last_print: Instant::now(),
        snapshot,
        gauges: (count, mean, stddev),
    };
    replay
        .run(args.source, args.group, args.http_addr, routes, sink)
        .await
}

struct SummarySink {
    deposits: RunningStats,
    withdrawals: RunningStats,
    seen: SeenTransactions,
    every: u64,
    every_ms: Option<Duration>,
    since_print: u64,
    last_print: Instant,
    snapshot: Arc<Mutex<Snapshot>>,
    gauges: (
        Family<KindLabel, Gauge>,
        Family<KindLabel, FloatGauge>,
        Family<KindLabel, FloatGauge>,
    ),
}

impl SummarySink {
    fn current(&self) -> Snapshot {
        Snapshot {
            deposits: KindSummary::of(&self.deposits),
            withdrawals: KindSummary::of(&self.withdrawals),
        }
    }

    fn due(&self) -> bool {
        match self.every_ms {
            Some(interval) => self.last_print.elapsed() >= interval,
            None => self.since_print >= self.every,
        }
    }
}

impl Sink for SummarySink {
    async fn apply(&mut self, batch: &Decoded) -> Result<(), crate::pipeline::WriteError> {
        Ok(self.apply_batch(batch).await?)
    }
}

impl SummarySink {
    async fn apply_batch(&mut self, batch: &Decoded) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (tx, _) in &batch.transactions {
            if !self.seen.first_time(&tx.transaction_id) {
                continue;
            }
            match TransactionKind::try_from(tx.kind) {
                Ok(TransactionKind::Deposit) => self.deposits.push(tx.amount_cents),
                Ok(TransactionKind::Withdrawal) => self.withdrawals.push(tx.amount_cents),
                _ => continue,
            }
            self.since_print += 1;
            if self.due() {
                writeln!(out, "{}", self.current())?;
                self.since_print = 0;
                self.last_print = Instant::now();
            }
        }
        out.flush()?;
        let current = self.current();
        let (count, mean, stddev) = &self.gauges;
        for (kind, stats) in [
            ("deposit", &self.deposits),
            ("withdrawal", &self.withdrawals),
        ] {
            let label = KindLabel {
                kind: kind.to_owned(),
            };
            count.get_or_create(&label).set(stats.count() as i64);
            mean.get_or_create(&label).set(stats.mean_cents() / 100.0);
            stddev
                .get_or_create(&label)
                .set(stats.stddev_cents() / 100.0);
        }
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = current;
        Ok(())
    }
}
