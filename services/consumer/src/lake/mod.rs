//! `consumer lake`: the data-lake sink Kafka Connect's S3 or HDFS connectors would be. Customers
//! and transactions become Parquet files ([`parquet`]), partitioned Hive-style by event date
//! (and optionally branch), in a local directory or S3-compatible storage ([`store`]).
//!
//! Exactly once, without a transaction log: a span of files covers a contiguous range of one
//! Kafka partition's offsets, one file per Hive partition its rows fall in, and each name says
//! which range and which part of the span it is ([`layout`]). Every file is made visible
//! atomically, and the lake's own listing is where the sink resumes: one past the last offset of
//! each partition's complete spans. So a crash at any instant leaves every offset either in
//! exactly one visible file or not yet read. Kafka's committed offsets are written after the
//! fact, for lag monitoring only.
//!
//! Before its first file, a span is claimed: a small object named by its first offset, created
//! only if absent ([`layout::Claim`]). An instance paused past its session (a zombie) and the
//! instance that took its partitions over start their spans at the same offset, so one of them
//! finds the other's claim and writes nothing; a span whose writer died between its parts is
//! resumed from its claim and written again exactly as claimed.
//!
//! A partition's span is cut when it has gathered `--flush-records` rows or `--flush-bytes`,
//! when its oldest row has waited `--flush-interval-ms`, before a row would open one file more
//! than `--max-open-files`, and before partitions move to another
//! instance or the sink stops. Rows of several dates interleaved in one partition (a backfill, a
//! stream crossing midnight) share the span, a file per date, rather than a file per change of
//! date.

pub mod layout;
pub mod parquet;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bank_plumbing::shutdown::Stop;
use prometheus_client::metrics::counter::Counter;

use crate::cli::LakeArgs;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Decoded, Sink, WriteError};
use crate::source::{PartitionKey, Subscription};
use layout::{Claim, Span, Table};
use parquet::{CustomerColumns, Rows, TransactionColumns};
use store::{LakeOffsets, Store};

pub async fn run(args: LakeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.lake)?;
    tracing::info!(lake = %store.describe(), group = args.group, "lake ready");
    let stop = Stop::new();
    stop.on_signal();
    tokio::select! {
        checked = store.check_create_once() => checked?,
        () = stop.requested() => return Ok(()),
    }
    let health = std::sync::Arc::new(Health::default());
    health.set_database(true);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let counters = LakeCounters::register(&mut registry);
    let (_, server) = crate::http::bind(
        args.http_addr,
        health.clone(),
        registry,
        metrics.clone(),
        axum::Router::new(),
        stop.clone(),
    )
    .await?;
    let http = tokio::spawn(server);
    let input = args.input.clone();
    let tables = vec![
        (input.transactions_topic.clone(), Table::Transactions),
        (input.customers_topic.clone(), Table::Customers),
    ];
    let offsets = Box::new(LakeOffsets {
        store: store.clone(),
        tables: tables.clone(),
        runtime: tokio::runtime::Handle::current(),
    });
    let sink = LakeSink {
        store,
        tables: tables.into_iter().collect(),
        by_branch: args.partition_by_branch,
        limits: Limits {
            records: args.flush_records,
            bytes: args.flush_bytes,
            files: args.max_open_files,
            interval: Duration::from_millis(args.flush_interval_ms),
        },
        partitions: HashMap::new(),
        generation: 0,
        fenced_at: None,
        counters,
    };
    crate::role::consume(crate::role::Consumption {
        subscription: Subscription {
            topics: vec![
                input.transactions_topic.clone(),
                input.customers_topic.clone(),
            ],
            first: None,
            capacity: 40_000,
            in_flight_bytes: 3 * (16 << 20),
        },
        input,
        group: args.group,
        offsets,
        // One writer: Parquet encoding is fast, and one writer keeps every partition's files
        // in one place in memory.
        sinks: vec![sink],
        batch_size: 20_000,
        batch_bytes: 16 << 20,
        batch_linger: Duration::ZERO,
        health,
        metrics,
        stop,
    })
    .await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    Ok(())
}

#[derive(Clone)]
struct LakeCounters {
    files: Counter,
    rows: Counter,
    bytes: Counter,
    taken: Counter,
}

impl LakeCounters {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let counters = LakeCounters {
            files: Counter::default(),
            rows: Counter::default(),
            bytes: Counter::default(),
            taken: Counter::default(),
        };
        let lake = registry.sub_registry_with_prefix("bank_lake");
        lake.register(
            "files_written",
            "Parquet files made visible in the lake",
            counters.files.clone(),
        );
        lake.register(
            "rows_written",
            "Rows in the files made visible",
            counters.rows.clone(),
        );
        lake.register(
            "bytes_written",
            "Bytes of the files made visible",
            counters.bytes.clone(),
        );
        lake.register(
            "spans_taken",
            "Spans (or poison-only tails) not claimed because another writer had claimed their first offset (a paused instance after a rebalance)",
            counters.taken.clone(),
        );
        counters
    }
}

struct Limits {
    records: usize,
    bytes: usize,
    /// Files (Hive partitions) one span may hold open.
    files: usize,
    interval: Duration,
}

/// The span being gathered for one Kafka partition: its rows by Hive partition, one file each
/// when it is cut.
struct Open {
    files: BTreeMap<DirKey, Rows>,
    /// The rows' size plus what each file's column builders reserve: what `--flush-bytes` bounds.
    bytes: usize,
    since: Instant,
}

impl Open {
    fn rows(&self) -> usize {
        self.files.values().map(Rows::len).sum()
    }
}

/// About what a new file's column builders reserve ([`parquet::INITIAL_ROWS`] per column),
/// counted against `--flush-bytes`.
const OPEN_FILE_BYTES: usize = 8 << 10;

/// A file cut and encoded, waiting for its turn to be written.
struct Sealed {
    path: String,
    bytes: bytes::Bytes,
    rows: usize,
    /// Its span's claim, shared by the span's parts (which may be written in any order):
    /// created before the first of them is written.
    claim: Arc<SpanClaim>,
}

/// A span's claim and where it goes.
#[derive(Debug, PartialEq, Eq)]
struct SpanClaim {
    path: String,
    claim: Claim,
}

/// One Kafka partition: `start` is the first offset neither a file nor `sealed` covers, `next`
/// the next offset to read; the rows between are in `open` (or were poison, dead-lettered).
/// `sealed` files are written span by span: the lake resumes one past a partition's last
/// complete span, so no part of a later span may appear before every part of an earlier one.
struct Partition {
    table: Table,
    start: i64,
    next: i64,
    open: Option<Open>,
    sealed: Vec<Sealed>,
    /// A span claimed at `start` by an earlier owner that did not finish writing it: the span
    /// being gathered must end where it ends and be made of the same files.
    claimed: Option<Claim>,
}

impl Partition {
    /// The claim of the open span if it ends before `end`: its files in part order. A span
    /// claimed earlier must come out the same.
    fn claim_until(&self, key: &PartitionKey, end: i64) -> anyhow::Result<SpanClaim> {
        let files = self.open.as_ref().map_or(0, |o| o.files.len());
        let parts = u32::try_from(files).context("a span of over 2^32 files")?;
        let span_of = |part| Span {
            topic: key.0.clone(),
            partition: key.1,
            first: self.start,
            last: end - 1,
            part,
            parts,
        };
        let dirs = self.open.iter().flat_map(|o| o.files.keys());
        let paths: Vec<String> = (1..)
            .zip(dirs)
            .map(|(part, dir)| {
                let dir = layout::partition_dir(dir.0, dir.1);
                layout::file_path(self.table, &dir, &span_of(part))
            })
            .collect();
        let claim = Claim {
            last: end - 1,
            paths,
        };
        let path = layout::claim_path(self.table, &key.0, key.1, self.start);
        if let Some(claimed) = self.claimed.as_ref().filter(|c| **c != claim) {
            anyhow::bail!(
                "{}[{}]: the span at offset {} was claimed as {claimed:?}, but its events now make {claim:?} \
                 (was --partition-by-branch changed, or some of its events deleted by retention?); \
                 run with the settings that claimed it, or delete {path} and its files",
                key.0,
                key.1,
                self.start,
            );
        }
        Ok(SpanClaim { path, claim })
    }

    /// Closes an open span without rows (every event of it was poison, or none is left).
    fn close_empty(&mut self, key: &PartitionKey, end: i64) {
        self.open = None;
        let Some(claim) = self.claimed.take() else {
            return;
        };
        let first = std::mem::replace(&mut self.start, end);
        if !claim.paths.is_empty() {
            // None of the events the claim was made of is left (deleted by retention): there
            // is nothing to complete it with. (A claim without files was poison only.)
            tracing::error!(
                topic = key.0,
                partition = key.1,
                first,
                last = claim.last,
                "a claimed span has no rows left to write; its missing parts stay missing"
            );
        }
    }

    fn gather(&mut self, dir: DirKey, row: &RowRef<'_>) {
        let table = self.table;
        let open = self.open.get_or_insert_with(|| Open {
            files: BTreeMap::new(),
            bytes: 0,
            since: Instant::now(),
        });
        let file = open.files.entry(dir).or_insert_with(|| {
            open.bytes += OPEN_FILE_BYTES;
            match table {
                Table::Transactions => Rows::Transactions(TransactionColumns::new()),
                Table::Customers => Rows::Customers(CustomerColumns::new()),
            }
        });
        open.bytes += match (file, row) {
            (Rows::Transactions(c), RowRef::Transaction(r)) => c.push(r),
            (Rows::Customers(c), RowRef::Customer(r, at)) => c.push(r, *at),
            _ => 0,
        };
        self.next = row.offset() + 1;
    }
}

pub struct LakeSink {
    store: Store,
    tables: HashMap<String, Table>,
    by_branch: bool,
    limits: Limits,
    partitions: HashMap<PartitionKey, Partition>,
    /// The generation of the last batch taken.
    generation: u64,
    /// Set when a partition's state was dropped (its span claimed by another writer, a gap, a
    /// partition met neither held nor just sought):
    /// every batch up to this generation is refused as fenced, since batches of the same
    /// generation keep coming until the partitions are sought again to the lake's position.
    fenced_at: Option<u64>,
    counters: LakeCounters,
}

/// A row of either table, with where it goes.
enum RowRef<'a> {
    Transaction(&'a bank_storage::ledger::TransactionRow),
    /// With the Kafka timestamp of its record.
    Customer(&'a bank_storage::ledger::CustomerRow, Option<i64>),
}

impl RowRef<'_> {
    fn offset(&self) -> i64 {
        match self {
            RowRef::Transaction(r) => r.source_offset,
            RowRef::Customer(r, _) => r.source_offset,
        }
    }

    /// The Hive partition, as a cheap key: formatting a path per row showed in profiles.
    fn dir(&self, by_branch: bool) -> DirKey {
        let (at, branch) = match self {
            RowRef::Transaction(r) => (r.transaction_datetime, r.branch_id),
            // A customer event is a snapshot, not a dated business event: it is filed under the
            // date it was published (Kafka's timestamp), as Connect's time-based partitioner
            // does by default. Its own dates can span decades, a file per customer.
            RowRef::Customer(r, at) => {
                let published = at.and_then(chrono::DateTime::from_timestamp_millis);
                (published.or(r.updated_at).or(r.created_at), r.branch_id)
            }
        };
        (at.map(|at| at.date_naive()), by_branch.then_some(branch))
    }
}

/// The date and (when partitioned by it) branch of a Hive partition.
type DirKey = (Option<chrono::NaiveDate>, Option<i64>);

impl Sink for LakeSink {
    async fn apply(&mut self, batch: &Decoded) -> Result<(), WriteError> {
        // Keyed by borrowed names: an owned key per row cost a fifth of the apply.
        let mut rows: HashMap<(&str, i32), Vec<RowRef<'_>>> = HashMap::new();
        for (row, position) in batch.transactions() {
            rows.entry((position.topic(), position.partition))
                .or_default()
                .push(RowRef::Transaction(row));
        }
        for (row, position) in batch.events.customers.iter().zip(&batch.customer_positions) {
            let at = position.timestamp_ms;
            rows.entry((position.topic(), position.partition))
                .or_default()
                .push(RowRef::Customer(row, at));
        }
        self.generation = batch.generation;
        self.refuse_while_fenced()?;
        for (key, span) in &batch.events.offsets {
            let Some(table) = self.tables.get(&key.0).copied() else {
                continue;
            };
            let mine = rows.remove(&(key.0.as_str(), key.1)).unwrap_or_default();
            let sought = batch
                .sought
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, at)| *at);
            self.take(key, table, span, sought, &mine).await?;
        }
        self.cut_due(false).await.map_err(WriteError::Transient)?;
        self.refuse_while_fenced()
    }

    fn idle_interval(&self) -> Option<Duration> {
        Some(
            self.limits
                .interval
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
        )
    }

    async fn idle(&mut self) {
        if let Err(error) = self.cut_due(false).await {
            tracing::warn!(error = %format!("{error:#}"), "writing a lake file failed; retrying at the next batch");
        }
    }

    fn distrusted_generation(&self) -> Option<u64> {
        self.fenced_at
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        // A claimed span not gathered to its end cannot be written: the next owner completes it.
        self.partitions.retain(|_, p| p.claimed.is_none());
        let mut attempt = 0;
        while let Err(error) = self.cut_due(true).await {
            attempt += 1;
            if attempt == 3 {
                return Err(error.context("writing the lake's open files"));
            }
            tracing::warn!(error = %format!("{error:#}"), attempt, "writing the lake's open files failed; retrying");
            tokio::time::sleep(Duration::from_secs(attempt)).await;
        }
        self.claim_poison_tails().await;
        // Partitions may be moving to another instance: the next batch of each starts afresh
        // from what the lake holds.
        self.partitions.clear();
        self.fenced_at = None;
        Ok(())
    }
}

impl LakeSink {
    /// Claims, without files, what each partition read past its last span when all of it was
    /// poison: the next owner would otherwise read those records again and dead-letter them a
    /// second time. Best effort: a failure here only means the dead letters may repeat.
    /// All at once and bounded in time: this runs inside a rebalance, which waits on it.
    async fn claim_poison_tails(&mut self) {
        let tails = self.partitions.iter().filter(|(_, p)| {
            p.next > p.start && p.open.is_none() && p.sealed.is_empty() && p.claimed.is_none()
        });
        let claims = tails.map(|(key, p)| {
            let claim = Claim {
                last: p.next - 1,
                paths: Vec::new(),
            };
            let path = layout::claim_path(p.table, &key.0, key.1, p.start);
            let store = self.store.clone();
            async move {
                let created =
                    tokio::time::timeout(TAIL_CLAIM, store.create_once(&path, claim.encode().into()))
                        .await;
                match created {
                    Ok(Ok(None)) => true,
                    Ok(Ok(Some(theirs))) => {
                        let same = Claim::parse(&theirs).as_ref() == Some(&claim);
                        if !same {
                            tracing::warn!(claim = path, "another writer claimed these offsets first");
                        }
                        same
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(claim = path, error = %format!("{error:#}"), "claiming a poison-only tail failed; its dead letters may repeat");
                        true
                    }
                    Err(_) => {
                        tracing::warn!(claim = path, "claiming a poison-only tail timed out; its dead letters may repeat");
                        true
                    }
                }
            }
        });
        let outcomes = futures::future::join_all(claims).await;
        let lost = outcomes.iter().filter(|mine| !**mine).count();
        self.counters.taken.inc_by(lost as u64);
    }

    /// Drops what is held of `key` and refuses every batch until the partitions are sought
    /// again: the writer drops the batch and asks for that. `key` then resumes at the lake's
    /// position (see [`store::LakeOffsets`]); partitions still held go on from what they hold.
    fn fence(&mut self, key: &PartitionKey, why: String) -> WriteError {
        self.partitions.remove(key);
        self.fenced_at = Some(self.generation);
        WriteError::Fenced(why)
    }

    /// Refuses a batch of a generation read before the last fence; a later one lifts it.
    fn refuse_while_fenced(&mut self) -> Result<(), WriteError> {
        match self.fenced_at {
            Some(at) if self.generation <= at => Err(WriteError::Fenced(
                "a partition's state was dropped; waiting for the partitions to be sought again"
                    .into(),
            )),
            Some(_) => {
                self.fenced_at = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Starts gathering a partition at `start`, taking over the span claimed there if an
    /// earlier owner did not finish it.
    async fn open_partition(
        &mut self,
        key: &PartitionKey,
        table: Table,
        start: i64,
    ) -> anyhow::Result<()> {
        let at = layout::claim_path(table, &key.0, key.1, start);
        let claimed = match self.store.read(&at).await? {
            None => None,
            Some(bytes) => Some(
                Claim::parse(&bytes)
                    .with_context(|| format!("{at} is not a claim of this lake"))?,
            ),
        };
        let partition = Partition {
            table,
            start,
            next: start,
            open: None,
            sealed: Vec::new(),
            claimed,
        };
        self.partitions.insert(key.clone(), partition);
        Ok(())
    }

    /// Whether `offset` lies in a span claimed without files (all poison, see [`Claim`]).
    fn claimed_as_poison(&self, key: &PartitionKey, offset: i64) -> bool {
        self.partitions
            .get(key)
            .and_then(|p| p.claimed.as_ref())
            .is_some_and(|c| c.paths.is_empty() && offset <= c.last)
    }

    /// Where the open span must be cut before the row at `offset` (of Hive partition `dir`)
    /// joins it, if it must: at the end of a claimed span, or before one file too many.
    fn cut_before(&self, key: &PartitionKey, offset: i64, dir: &DirKey) -> Option<i64> {
        let partition = self.partitions.get(key)?;
        if let Some(claim) = &partition.claimed {
            return (offset > claim.last).then_some(claim.last + 1);
        }
        let open = partition.open.as_ref()?;
        (open.files.len() >= self.limits.files && !open.files.contains_key(dir)).then_some(offset)
    }

    /// Gathers one partition's rows of a batch, cutting a file wherever the Hive partition
    /// changes. `sought` is the offset of the partition's first record since it was sought, if
    /// that record is in this batch: only there may a partition not held be started, at the
    /// lake's position (or, with none, that first record, poison or not), so that every writer
    /// of the partition starts its spans at the same offsets.
    async fn take(
        &mut self,
        key: &PartitionKey,
        table: Table,
        span: &bank_storage::ledger::OffsetSpan,
        sought: Option<i64>,
        rows: &[RowRef<'_>],
    ) -> Result<(), WriteError> {
        let held = self.partitions.get(key).map(|p| p.next);
        let entry = match (held, span.expected, sought) {
            (Some(next), Some(expected), _) if expected > next => {
                // A gap: what we hold no longer continues this partition.
                let why = format!(
                    "{}[{}] continues at {expected}, not at {next}",
                    key.0, key.1
                );
                return Err(self.fence(key, why));
            }
            (Some(next), _, _) => next,
            (None, expected, Some(first)) => {
                let start = expected.unwrap_or(first);
                self.open_partition(key, table, start).await?;
                start
            }
            (None, _, None) => {
                // Its state was dropped since it was sought (a batch given up during a
                // rebalance, a fence): starting here would skip what that state held.
                let why = format!("{}[{}] is not held and was not just sought", key.0, key.1);
                return Err(self.fence(key, why));
            }
        };
        // Rows before `entry` are already gathered or written (a batch retried after a failure).
        let mut overruled = 0_usize;
        for row in rows.iter().filter(|r| r.offset() >= entry) {
            if self.claimed_as_poison(key, row.offset()) {
                overruled += 1;
                continue;
            }
            let dir = row.dir(self.by_branch);
            if let Some(end) = self.cut_before(key, row.offset(), &dir) {
                self.seal(key, end)?;
            }
            let Some(partition) = self.partitions.get_mut(key) else {
                break;
            };
            partition.gather(dir, row);
        }
        if overruled > 0 {
            // Another build or registry state found them poison and dead-lettered them: the
            // claim is the lake's record, and gathering them would make the span disagree.
            tracing::error!(
                topic = key.0,
                partition = key.1,
                rows = overruled,
                "rows claimed as poison by an earlier writer are left out; they are in the dead-letter topic"
            );
        }
        let Some(partition) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        partition.next = partition.next.max(span.next);
        // The claimed span's last offset read (its last rows may have been poison).
        let claimed_end = partition.claimed.as_ref().map(|c| c.last + 1);
        if let Some(end) = claimed_end.filter(|end| partition.next >= *end) {
            self.seal(key, end)?;
        }
        Ok(())
    }

    /// Closes the partition's open span, covering its offsets up to `end` (exclusive), and
    /// queues its files for writing, in the order of their part numbers.
    fn seal(&mut self, key: &PartitionKey, end: i64) -> anyhow::Result<()> {
        let Some(partition) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let Some(open) = partition.open.as_ref().filter(|o| o.rows() > 0) else {
            partition.close_empty(key, end);
            return Ok(());
        };
        let claim = Arc::new(partition.claim_until(key, end)?);
        let mut sealed = Vec::with_capacity(open.files.len());
        for (path, rows) in claim.claim.paths.iter().zip(open.files.values()) {
            // Encoded before the rows are let go: a failure keeps them open.
            let bytes = rows.encode().with_context(|| format!("encoding {path}"))?;
            sealed.push(Sealed {
                path: path.clone(),
                bytes: bytes.into(),
                rows: rows.len(),
                claim: claim.clone(),
            });
        }
        partition.sealed.extend(sealed);
        partition.open = None;
        partition.claimed = None;
        partition.start = end;
        Ok(())
    }

    /// Writes every sealed file: each partition's span after span, the parts of a span and the
    /// partitions at once (each file is created and fsynced: done one by one, that wait was
    /// most of the run). What fails stays sealed, to be written again.
    async fn write_sealed(&mut self) -> anyhow::Result<()> {
        let queues: Vec<(PartitionKey, Vec<Sealed>)> = self
            .partitions
            .iter_mut()
            .filter(|(_, p)| !p.sealed.is_empty())
            .map(|(key, p)| (key.clone(), std::mem::take(&mut p.sealed)))
            .collect();
        let writes = queues.into_iter().map(|(key, files)| {
            let store = self.store.clone();
            async move {
                let (written, left, failure) = write_spans(&store, files).await;
                (key, written, left, failure)
            }
        });
        let mut first_failure = None;
        for (key, written, left, failure) in futures::future::join_all(writes).await {
            for file in written {
                self.counters.files.inc();
                self.counters.rows.inc_by(file.rows as u64);
                self.counters.bytes.inc_by(file.bytes.len() as u64);
                tracing::debug!(path = file.path, rows = file.rows, "lake file written");
            }
            match failure {
                Some(SpanError::Taken(why)) => {
                    tracing::warn!(
                        why,
                        "another writer claimed this span; dropping the partition's rows to read them again"
                    );
                    self.counters.taken.inc();
                    let _ = self.fence(&key, why);
                }
                failure => {
                    if let Some(partition) = self.partitions.get_mut(&key) {
                        partition.sealed = left;
                    }
                    if let Some(SpanError::Failed(error)) = failure {
                        first_failure.get_or_insert(error);
                    }
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Seals every open file that is due (or all of them, with `all`), then writes what is sealed.
    async fn cut_due(&mut self, all: bool) -> anyhow::Result<()> {
        let due: Vec<(PartitionKey, i64)> = self
            .partitions
            .iter()
            // A claimed span ends where its claim says, not where the limits would cut it.
            .filter(|(_, p)| p.claimed.is_none())
            .filter_map(|(key, p)| {
                let open = p.open.as_ref()?;
                let full = open.rows() >= self.limits.records || open.bytes >= self.limits.bytes;
                (all || full || open.since.elapsed() >= self.limits.interval)
                    .then(|| (key.clone(), p.next))
            })
            .collect();
        for (key, end) in due {
            self.seal(&key, end)?;
        }
        self.write_sealed().await
    }
}

/// How long one poison-only tail's claim may take at a rebalance or stop.
const TAIL_CLAIM: Duration = Duration::from_secs(3);

/// Files of one span written at once, at most this many per partition: enough for the disk to
/// merge their fsyncs (or for object storage to take several PUTs). With every partition
/// writing at once that is up to 16 blocking threads per partition, far below tokio's 512.
const PARTS_AT_ONCE: usize = 16;

/// Why a partition's spans were not all written.
#[derive(Debug)]
enum SpanError {
    /// Try again: the files not written are kept.
    Failed(anyhow::Error),
    /// Another writer claimed a span at the same offset differently: this writer's rows of the
    /// partition are stale.
    Taken(String),
}

/// Claims the span of `first` (its first part), unless the same claim is already there.
async fn claim(store: &Store, first: &Sealed) -> Result<(), SpanError> {
    let ours = &first.claim;
    let theirs = store
        .create_once(&ours.path, ours.claim.encode().into())
        .await
        .map_err(SpanError::Failed)?;
    let Some(bytes) = theirs else {
        return Ok(());
    };
    match Claim::parse(&bytes) {
        Some(theirs) if theirs == ours.claim => Ok(()),
        Some(theirs) => Err(SpanError::Taken(format!(
            "{} claims offsets up to {}, this writer's span ends at {}",
            ours.path, theirs.last, ours.claim.last
        ))),
        None => Err(SpanError::Taken(format!(
            "{} is there and is not a claim",
            ours.path
        ))),
    }
}

/// Writes a partition's sealed `files` span by span: the span claimed, then its parts at once.
/// Returns the files written, those left to write (the failed ones and every later span) and
/// the first failure.
async fn write_spans(
    store: &Store,
    files: Vec<Sealed>,
) -> (Vec<Sealed>, Vec<Sealed>, Option<SpanError>) {
    use futures::StreamExt;
    let mut written = Vec::with_capacity(files.len());
    let mut files = files.into_iter().peekable();
    while let Some(first) = files.next() {
        if let Err(error) = claim(store, &first).await {
            let left = std::iter::once(first).chain(files).collect();
            return (written, left, Some(error));
        }
        let mut span = vec![first];
        while let Some(part) = files.next_if(|f| f.claim.path == span[0].claim.path) {
            span.push(part);
        }
        let results: Vec<(Sealed, anyhow::Result<()>)> = futures::stream::iter(span)
            .map(|file| async move {
                let result = store.put(&file.path, file.bytes.clone()).await;
                (file, result)
            })
            .buffer_unordered(PARTS_AT_ONCE)
            .collect()
            .await;
        let mut left = Vec::new();
        let mut failure = None;
        for (file, result) in results {
            match result {
                Ok(()) => written.push(file),
                Err(error) => {
                    failure.get_or_insert(error);
                    left.push(file);
                }
            }
        }
        if failure.is_some() {
            // The span is incomplete: nothing later may be written before it is.
            left.extend(files);
            return (written, left, failure.map(SpanError::Failed));
        }
    }
    (written, Vec::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(path: &str, span: (i64, i64)) -> Sealed {
        Sealed {
            path: path.to_owned(),
            bytes: bytes::Bytes::from_static(b"parquet"),
            rows: 1,
            claim: Arc::new(SpanClaim {
                path: format!("_spans/{}", span.0),
                claim: Claim {
                    last: span.1,
                    paths: vec!["any".into()],
                },
            }),
        }
    }

    /// A part that cannot be written leaves its span incomplete, so the next span is not
    /// written at all (the lake would resume past the incomplete one); once the failure is
    /// gone, what is left completes both.
    #[tokio::test]
    async fn a_failed_part_holds_back_every_later_span() {
        let root = bank_test_support::scratch_dir("lake-spans");
        let store = Store::open(root.to_str().expect("a UTF-8 temporary directory"))
            .expect("a local store");
        // A regular file where the second part's directory must go.
        std::fs::write(root.join("b"), b"in the way").expect("the blocker");
        let files = vec![
            sealed("a/1of3", (0, 9)),
            sealed("b/2of3", (0, 9)),
            sealed("c/3of3", (0, 9)),
            sealed("d/next", (10, 19)),
        ];
        let (written, left, failure) = write_spans(&store, files).await;
        assert!(failure.is_some());
        let mut written: Vec<&str> = written.iter().map(|f| f.path.as_str()).collect();
        written.sort_unstable();
        assert_eq!(written, ["a/1of3", "c/3of3"]);
        let left_paths: Vec<&str> = left.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(left_paths, ["b/2of3", "d/next"]);
        assert!(!root.join("d/next").exists(), "a later span went ahead");

        std::fs::remove_file(root.join("b")).expect("the blocker removed");
        let (written, left, failure) = write_spans(&store, left).await;
        assert!(failure.is_none() && left.is_empty());
        assert_eq!(written.len(), 2);
        for path in ["a/1of3", "b/2of3", "c/3of3", "d/next"] {
            assert!(root.join(path).exists(), "{path} is missing");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    fn sink(root: &std::path::Path) -> LakeSink {
        let store = Store::open(root.to_str().expect("a UTF-8 temporary directory"))
            .expect("a local store");
        LakeSink {
            store,
            tables: HashMap::new(),
            by_branch: false,
            limits: Limits {
                records: 100,
                bytes: 1 << 20,
                files: 4,
                interval: Duration::from_secs(60),
            },
            partitions: HashMap::new(),
            generation: 1,
            fenced_at: None,
            counters: LakeCounters::register(&mut prometheus_client::registry::Registry::default()),
        }
    }

    /// A partition not held is started only at its first record since it was sought, and
    /// there at the lake's position or, with none, at that record even if it was poison. Met
    /// anywhere else (its state dropped within the generation), it fences every batch of the
    /// generation, and a later generation lifts that.
    #[tokio::test]
    async fn a_partition_is_started_only_where_it_was_sought() {
        let root = bank_test_support::scratch_dir("lake-sought");
        let mut sink = sink(&root);
        let key: PartitionKey = ("t".into(), 0);
        let span = |expected, next| bank_storage::ledger::OffsetSpan { expected, next };
        let taken = sink
            .take(&key, Table::Transactions, &span(Some(5), 8), None, &[])
            .await;
        assert!(matches!(taken, Err(WriteError::Fenced(_))), "{taken:?}");
        assert!(sink.refuse_while_fenced().is_err(), "the same generation");
        sink.generation = 2;
        assert!(sink.refuse_while_fenced().is_ok(), "a later generation");
        assert!(sink.refuse_while_fenced().is_ok(), "lifted");

        // Offsets 3 and 4 were poison: the span still starts at 3, where any writer starts.
        sink.take(&key, Table::Transactions, &span(None, 5), Some(3), &[])
            .await
            .expect("started");
        assert_eq!(sink.partitions[&key].start, 3);
        assert_eq!(sink.partitions[&key].next, 5);
        let other: PartitionKey = ("t".into(), 1);
        sink.take(
            &other,
            Table::Transactions,
            &span(Some(40), 42),
            Some(40),
            &[],
        )
        .await
        .expect("started at the lake's position");
        assert_eq!(sink.partitions[&other].start, 40);

        // Started where an earlier writer claimed a poison-only tail: the claim is followed.
        let third: PartitionKey = ("t".into(), 2);
        let poison = Claim {
            last: 9,
            paths: Vec::new(),
        };
        let at = layout::claim_path(Table::Transactions, "t", 2, 7);
        sink.store
            .create_once(&at, poison.encode().into())
            .await
            .expect("the claim");
        sink.take(&third, Table::Transactions, &span(Some(7), 8), Some(7), &[])
            .await
            .expect("started at the claim");
        assert!(sink.claimed_as_poison(&third, 9) && !sink.claimed_as_poison(&third, 10));
        sink.take(&third, Table::Transactions, &span(Some(8), 11), None, &[])
            .await
            .expect("past the claim");
        let partition = &sink.partitions[&third];
        assert!(partition.claimed.is_none() && partition.sealed.is_empty());
        assert_eq!((partition.start, partition.next), (10, 11));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A span whose first offset another writer claimed differently is not written, nor is
    /// anything after it; one claimed identically (a retry, or the same span written by two
    /// writers) is.
    #[tokio::test]
    async fn a_span_claimed_by_another_writer_is_not_written() {
        let root = bank_test_support::scratch_dir("lake-claims");
        let store = Store::open(root.to_str().expect("a UTF-8 temporary directory"))
            .expect("a local store");
        let same = sealed("a/same", (0, 9));
        store
            .create_once(&same.claim.path, same.claim.claim.encode().into())
            .await
            .expect("the first claim");
        let theirs = Claim {
            last: 14,
            paths: vec!["z/theirs".into()],
        };
        let next = sealed("b/mine", (10, 19));
        let created = store
            .create_once(&next.claim.path, theirs.encode().into())
            .await
            .expect("another writer's claim");
        assert!(created.is_none());
        let files = vec![same, next, sealed("c/later", (20, 29))];
        let (written, left, failure) = write_spans(&store, files).await;
        assert!(matches!(failure, Some(SpanError::Taken(_))), "{failure:?}");
        let written: Vec<&str> = written.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(written, ["a/same"]);
        assert_eq!(left.len(), 2);
        assert!(!root.join("b/mine").exists() && !root.join("c/later").exists());
        let kept = store.read("_spans/10").await.expect("the claim");
        assert_eq!(kept.as_deref(), Some(theirs.encode().as_bytes()));
        let _ = std::fs::remove_dir_all(&root);
    }
}
