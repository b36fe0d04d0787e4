//! `consumer summary`: a running statistical summary of every transaction the system has seen:
//! count, mean and population standard deviation of deposits and of withdrawals.
//!
//! State: per partition, the accumulators of both kinds, checkpointed with the partition's offset
//! after every batch (see [`crate::checkpoint`]; SQLite file by default, or PostgreSQL), so a
//! restart resumes where it stopped instead of replaying the topic, and memory does not grow
//! with the number of transactions. A transaction id is counted once, whichever partition or
//! batch repeats it. Several instances of a group share the partitions like the ledger's; each
//! prints and serves the global figures: every partition's stored state, merged exactly (counts
//! and integer sums add, deviations combine by Chan et al.'s pairwise form of Welford's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use bank_contract::pb::TransactionKind;
use bank_storage::checkpoint::StateEntry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use crate::checkpoint::{Book, PartitionState};
use crate::cli::SummaryArgs;
use crate::pipeline::{Decoded, Sink, WriteError};
use crate::source::PartitionKey;
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
    let book: Book<Totals> = Book::open(&args.database_url, &args.group).await?;
    let mut frame = crate::role::Analytics::new();
    let count: Family<KindLabel, Gauge> = Family::default();
    let mean: Family<KindLabel, FloatGauge> = Family::default();
    let stddev: Family<KindLabel, FloatGauge> = Family::default();
    let summary = frame.registry.sub_registry_with_prefix("bank_summary");
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
    // The group's global figures, refreshed after every batch and every second while idle.
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

    let offsets = Box::new(book.offsets());
    let sink = SummarySink {
        total: Totals::merged(book.stored_states().await?),
        book,
        every: args.every.max(1),
        every_ms: args.every_ms.map(Duration::from_millis),
        since_print: 0,
        last_print: Instant::now(),
        gauges: (count, mean, stddev),
        snapshot,
    };
    sink.publish(&[])?;
    frame
        .run(
            args.input,
            args.group,
            args.http_addr,
            routes,
            offsets,
            sink,
        )
        .await
}

/// The accumulators of one partition (or, combined, of several).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    deposits: RunningStats,
    withdrawals: RunningStats,
}

/// The one key of a partition's stored state.
const TOTALS_KEY: &str = "totals";

impl Totals {
    fn push(&mut self, kind: TransactionKind, cents: i64) -> bool {
        match kind {
            TransactionKind::Deposit => self.deposits.push(cents),
            TransactionKind::Withdrawal => self.withdrawals.push(cents),
            _ => return false,
        }
        true
    }

    /// Partitions' states combined.
    fn merged(mut parts: Vec<(PartitionKey, Totals)>) -> Totals {
        // In partition order: floating-point merges depend on their order, and every instance
        // must show the same figures.
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        parts
            .iter()
            .fold(Totals::default(), |all, (_, part)| all.merge(part))
    }

    fn merge(&self, other: &Totals) -> Totals {
        Totals {
            deposits: self.deposits.merge(&other.deposits),
            withdrawals: self.withdrawals.merge(&other.withdrawals),
        }
    }

    fn encode(&self) -> String {
        serde_json::json!({
            "deposits": self.deposits.encode(),
            "withdrawals": self.withdrawals.encode(),
        })
        .to_string()
    }
}

impl PartitionState for Totals {
    fn restore(entries: Vec<(String, String)>) -> anyhow::Result<Self> {
        let Some((_, value)) = entries.into_iter().find(|(key, _)| key == TOTALS_KEY) else {
            return Ok(Totals::default());
        };
        let value: serde_json::Value = serde_json::from_str(&value)?;
        let kind = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("missing {name:?}"))
                .and_then(RunningStats::decode)
        };
        Ok(Totals {
            deposits: kind("deposits")?,
            withdrawals: kind("withdrawals")?,
        })
    }
}

struct SummarySink {
    book: Book<Totals>,
    /// Every partition of the group combined, as stored after the last committed batch.
    total: Totals,
    snapshot: Arc<Mutex<Snapshot>>,
    every: u64,
    every_ms: Option<Duration>,
    since_print: u64,
    last_print: Instant,
    gauges: (
        Family<KindLabel, Gauge>,
        Family<KindLabel, FloatGauge>,
        Family<KindLabel, FloatGauge>,
    ),
}

impl SummarySink {
    fn current(total: &Totals) -> Snapshot {
        Snapshot {
            deposits: KindSummary::of(&total.deposits),
            withdrawals: KindSummary::of(&total.withdrawals),
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
    async fn apply(&mut self, batch: &Decoded) -> Result<(), WriteError> {
        let prepared = self.book.prepare(batch).await?;
        // Computed on copies; printed and kept only once the checkpoint is committed.
        let mut parts: HashMap<PartitionKey, Totals> = HashMap::new();
        let mut total = self.total;
        let mut lines = Vec::new();
        for ((tx, position), fresh) in batch.transactions().zip(&prepared.fresh) {
            if !fresh {
                continue;
            }
            let kind = if tx.signed_cents() < 0 {
                TransactionKind::Withdrawal
            } else {
                TransactionKind::Deposit
            };
            let key = position.key();
            let part = parts
                .entry(key)
                .or_insert_with_key(|key| self.book.state(key).copied().unwrap_or_default());
            if !part.push(kind, tx.amount_cents) {
                continue;
            }
            total.push(kind, tx.amount_cents);
            self.since_print += 1;
            if self.due() {
                lines.push(Self::current(&total).to_string());
                self.since_print = 0;
                self.last_print = Instant::now();
            }
        }
        let entries = parts
            .iter()
            .map(|((topic, partition), part)| StateEntry {
                topic: topic.clone(),
                partition: *partition,
                key: TOTALS_KEY.to_owned(),
                value: part.encode(),
            })
            .collect();
        self.book.commit(batch, prepared.counted, entries).await?;
        for (key, part) in parts {
            if let Some(held) = self.book.state_mut(&key) {
                *held = part;
            }
        }
        self.total = total;
        self.refresh().await;
        self.publish(&lines)?;
        Ok(())
    }

    /// Other instances of the group may go on while this one has nothing to do.
    fn idle_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    async fn idle(&mut self) {
        self.refresh().await;
        if let Err(error) = self.publish(&[]) {
            tracing::warn!(error = format!("{error:#}"), "publishing the summary");
        }
    }
}

impl SummarySink {
    /// The global figures: every partition as stored, this instance's just committed and those
    /// of the other instances of the group as of their last checkpoint.
    async fn refresh(&mut self) {
        match self.book.stored_states().await {
            Ok(parts) => self.total = Totals::merged(parts),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reading the other partitions' figures"
                );
            }
        }
    }
}

impl SummarySink {
    fn publish(&self, lines: &[String]) -> anyhow::Result<()> {
        use std::io::Write;
        // Served before printed: whoever read a line finds at least its figures on /summary.
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Self::current(&self.total);
        let mut out = std::io::stdout().lock();
        for line in lines {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        let (count, mean, stddev) = &self.gauges;
        for (kind, stats) in [
            ("deposit", &self.total.deposits),
            ("withdrawal", &self.total.withdrawals),
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
        Ok(())
    }
}
