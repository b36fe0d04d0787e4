//! `producer table`: a relational source, what Kafka Connect's JDBC source does in
//! timestamp+incrementing mode. Every row of the table is published (the initial load), then
//! each new or changed row, ordered by (timestamp column, id column) and resuming strictly after
//! the last (timestamp, id) published.
//!
//! Rows are read in batches. A batch is published (announcing each account not seen before
//! with a placeholder `Customer`, as the CSV ingest does, so customers precede their
//! transactions), acknowledged by Kafka, and only then is its last (timestamp, id) stored
//! ([`position`]). Publishing is therefore at-least-once, bounded by the batch in flight when
//! the source died: the events carry stable ids (`transaction_id`, or one derived from the
//! table and the row id), which the ledger dedupes.
//!
//! Only rows whose timestamp is older than the database's clock minus `--timestamp-delay-ms` are
//! read: a transaction that commits late with an earlier timestamp (PostgreSQL's
//! `clock_timestamp()` is taken before commit) is still found if it commits within the delay.
//! That is the mode's known limit, as in Connect; rows with a NULL timestamp are never read.
//!
//! - [`mapping`]: columns to fields, cleaning, rejects; [`position`]: the durable position;
//!   [`metrics`]: `/metrics`.

pub mod mapping;
pub mod metrics;
pub mod position;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bank_plumbing::shutdown::Stop;
use bank_storage::connect::Backend;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement, Value};

use crate::cli::TableArgs;
use crate::output::Output;
use crate::publisher::Publisher;
use crate::source_tables::{placeholder, quoted};
use mapping::{Mapped, Mapping};
use metrics::SourceMetrics;
use position::{Mark, Position, PositionFile};

const FLUSH_LIMIT: Duration = Duration::from_secs(120);

/// The table, its columns and the query that reads it.
struct Table {
    db: DatabaseConnection,
    backend: Backend,
    name: String,
    mapping: Mapping,
    select: String,
    select_first: String,
    batch_size: usize,
    delay_ms: i64,
}

/// A row as read: its mapped values, its position, and what it became.
struct Read {
    mark: Mark,
    id: i64,
    event: Result<Mapped, String>,
    values: Vec<Option<String>>,
}

pub async fn run(args: TableArgs) -> anyhow::Result<()> {
    let table = Table::open(&args).await?;
    let file = PositionFile::new(
        args.state_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.position.json", args.table))),
    );
    let mut position = load_position(&args, &file)?;
    let stop = Stop::new();
    stop.on_signal();
    let metrics = SourceMetrics::default();
    metrics.serve(args.http_addr, stop.clone()).await?;
    let mut publisher = Publisher::connect(&args.destination, &args.layout).await?;
    let mut rejects = Rejects::new(&args);
    let mut output = Output::new(args.silent, None);
    let mut announced = std::collections::HashSet::new();
    let poll = Duration::from_millis(args.poll_interval_ms);

    while !stop.is_requested() {
        metrics.polls.inc();
        let rows = table.next_batch(position.as_ref()).await?;
        let full = rows.len() >= table.batch_size;
        if let Some(last) = rows.last() {
            let sent = publish(
                &mut publisher,
                &rows,
                &mut announced,
                &mut output,
                &mut rejects,
                &metrics,
            )?;
            tokio::task::block_in_place(|| publisher.flush(FLUSH_LIMIT))
                .context("delivering the batch")?;
            metrics.published.inc_by(sent);
            rejects.flush()?;
            let next = next_position(&args, position.as_ref(), last, sent);
            file.store(&next)?;
            metrics.position_id.set(next.id);
            position = Some(next);
        }
        metrics
            .lag_seconds
            .set(table.lag_seconds(position.as_ref()).await);
        if full {
            continue;
        }
        if args.stop_when_caught_up {
            break;
        }
        // Caught up: wait for the next poll, or a stop.
        tokio::select! {
            _ = stop.requested() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
    output.finish();
    eprintln!(
        "table {}: {} rows published, {} rejected{}; position in {}",
        args.table,
        metrics.published.get(),
        metrics.rejected.get(),
        rejects.note(),
        file.path().display()
    );
    crate::report::finish(&publisher, None)
}

/// The stored position to resume after, if any (none: the initial load of every row).
fn load_position(args: &TableArgs, file: &PositionFile) -> anyhow::Result<Option<Position>> {
    let position = file.load(
        &args.table,
        &args.timestamp_column,
        &args.incrementing_column,
    )?;
    match &position {
        Some(p) => {
            tracing::info!(table = %args.table, id = p.id, "resuming after the stored position")
        }
        None => {
            tracing::info!(table = %args.table, "no stored position: initial load of every row")
        }
    }
    Ok(position)
}

/// The position after a delivered batch whose last row is `last` and of which `sent` rows
/// were published.
fn next_position(
    args: &TableArgs,
    previous: Option<&Position>,
    last: &Read,
    sent: u64,
) -> Position {
    Position {
        table: args.table.clone(),
        timestamp_column: args.timestamp_column.clone(),
        incrementing_column: args.incrementing_column.clone(),
        timestamp: last.mark.clone(),
        id: last.id,
        published: previous.map_or(0, |p| p.published) + sent,
    }
}

/// Publishes a batch's events; rejected rows go to the rejects log. Returns rows sent.
fn publish(
    publisher: &mut Publisher,
    rows: &[Read],
    announced: &mut std::collections::HashSet<String>,
    output: &mut Output,
    rejects: &mut Rejects,
    metrics: &SourceMetrics,
) -> anyhow::Result<u64> {
    let newcomers: Vec<_> = rows
        .iter()
        .filter_map(|r| match &r.event {
            Ok(Mapped::Transaction(tx)) if announced.insert(tx.account_number.clone()) => {
                Some(crate::ingest::unknown_customer(tx))
            }
            _ => None,
        })
        .collect();
    if !newcomers.is_empty() {
        newcomers
            .iter()
            .try_for_each(|c| publisher.publish_customer(c))?;
        tokio::task::block_in_place(|| publisher.flush(FLUSH_LIMIT))
            .context("delivering the customers")?;
    }
    let mut sent = 0;
    for row in rows {
        match &row.event {
            Ok(Mapped::Transaction(tx)) => {
                publisher.publish_transaction(tx)?;
                output.transaction(tx);
            }
            Ok(Mapped::Customer(c)) => {
                publisher.publish_customer(c)?;
                output.customer(c);
            }
            Err(reason) => {
                rejects.write(row, reason)?;
                metrics.rejected.inc();
                continue;
            }
        }
        sent += 1;
    }
    Ok(sent)
}

impl Table {
    async fn open(args: &TableArgs) -> anyhow::Result<Table> {
        let backend = Backend::of_url(&args.database_url)?;
        let db = bank_storage::connect::connect(&args.database_url, 1).await?;
        let typed = table_columns(&db, backend, &args.table).await?;
        let columns: Vec<String> = typed.iter().map(|(name, _)| name.clone()).collect();
        for (flag, column) in [
            ("--timestamp-column", &args.timestamp_column),
            ("--incrementing-column", &args.incrementing_column),
        ] {
            if !columns.iter().any(|c| c == column) {
                anyhow::bail!(
                    "{flag}: table {} has no column {column:?} (its columns: {})",
                    args.table,
                    columns.join(", ")
                );
            }
        }
        let mapping = Mapping::new(
            args.events,
            &args.table,
            &columns,
            &args.columns,
            args.row_rules(),
        )
        .map_err(anyhow::Error::msg)?;
        let types: std::collections::HashMap<String, String> = typed.into_iter().collect();
        let (select, select_first) =
            select_sql(backend, args, &mapping, &types).map_err(anyhow::Error::msg)?;
        Ok(Table {
            db,
            backend,
            name: args.table.clone(),
            mapping,
            select,
            select_first,
            batch_size: args.batch_size,
            delay_ms: i64::try_from(args.timestamp_delay_ms).unwrap_or(i64::MAX),
        })
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.db.get_database_backend(), sql, values)
    }

    async fn next_batch(&self, after: Option<&Position>) -> anyhow::Result<Vec<Read>> {
        let statement = match after {
            Some(p) => self.statement(
                &self.select,
                vec![p.timestamp.value(), p.id.into(), self.delay_ms.into()],
            ),
            None => self.statement(&self.select_first, vec![self.delay_ms.into()]),
        };
        let rows = self
            .db
            .query_all_raw(statement)
            .await
            .with_context(|| format!("reading table {}", self.name))?;
        rows.iter().map(|row| self.read(row)).collect()
    }

    fn read(&self, row: &QueryResult) -> anyhow::Result<Read> {
        let width = self.mapping.selected().len();
        let mut values = Vec::with_capacity(width);
        let mut unreadable = None;
        for (i, selected) in self.mapping.selected().iter().enumerate() {
            let value = text(row, i);
            match value {
                Ok(value) => values.push(value),
                Err(why) => {
                    unreadable.get_or_insert_with(|| {
                        format!("column {} ({}): {why}", selected.column, selected.field)
                    });
                    values.push(None);
                }
            }
        }
        let mark = read_mark(row, width, self.backend)
            .with_context(|| format!("reading the timestamp column of {}", self.name))?;
        let id = row
            .try_get_by_index::<i64>(width + 1)
            .or_else(|_| row.try_get_by_index::<i32>(width + 1).map(i64::from))
            .with_context(|| {
                format!(
                    "the incrementing column of {} must be an integer",
                    self.name
                )
            })?;
        let event = match unreadable {
            Some(why) => Err(why),
            None => self.mapping.map(&values, id),
        };
        Ok(Read {
            mark,
            id,
            event,
            values,
        })
    }

    /// The database's clock minus the last published timestamp, in seconds (0 with no position).
    async fn lag_seconds(&self, position: Option<&Position>) -> f64 {
        let Some(last) = position.and_then(|p| p.timestamp.instant()) else {
            return 0.0;
        };
        let sql = match self.backend {
            Backend::Postgres => "SELECT CAST(CURRENT_TIMESTAMP AS TIMESTAMPTZ)",
            Backend::Sqlite => "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
        };
        let now = self
            .db
            .query_one_raw(self.statement(sql, vec![]))
            .await
            .ok()
            .flatten()
            .and_then(|row| {
                read_mark(&row, 0, self.backend)
                    .ok()
                    .and_then(|m| m.instant())
            });
        now.map_or(0.0, |now| {
            (now - last).num_milliseconds().max(0) as f64 / 1000.0
        })
    }
}

/// The two queries: after a position, and the initial load.
fn select_sql(
    backend: Backend,
    args: &TableArgs,
    mapping: &Mapping,
    types: &std::collections::HashMap<String, String>,
) -> Result<(String, String), String> {
    let table = quoted(&args.table)?;
    // Qualified, and the text columns aliased: `CAST(updated_at AS TEXT)` is itself named
    // `updated_at`, which made `ORDER BY updated_at` ambiguous.
    let ts = format!("src.{}", quoted(&args.timestamp_column)?);
    let id = format!("src.{}", quoted(&args.incrementing_column)?);
    let mut list = Vec::new();
    for (i, selected) in mapping.selected().iter().enumerate() {
        let column = format!("src.{}", quoted(&selected.column)?);
        let kind = types
            .get(&selected.column)
            .map(String::as_str)
            .unwrap_or("");
        list.push(format!("{} AS field{i}", text_of(backend, &column, kind)));
    }
    let p = |n| placeholder(backend, n);
    let older_than_delay = |n| match backend {
        Backend::Postgres => format!(
            "{ts} < CURRENT_TIMESTAMP - CAST({} AS BIGINT) * INTERVAL '1 millisecond'",
            p(n)
        ),
        Backend::Sqlite => format!(
            "julianday({ts}) < julianday('now') - CAST({} AS REAL) / 86400000.0",
            p(n)
        ),
    };
    // Rows without a position that can be stored are never read (as NULL timestamps are in
    // Connect): PostgreSQL's infinite timestamps, and, SQLite being dynamically typed, a
    // timestamp that is not text or an id that is not an integer.
    let readable = match backend {
        Backend::Postgres => format!("{ts} IS NOT NULL AND isfinite({ts}) AND {id} IS NOT NULL"),
        Backend::Sqlite => format!("typeof({ts}) = 'text' AND typeof({id}) = 'integer'"),
    };
    let head = format!("SELECT {}, {ts}, {id} FROM {table} AS src", list.join(", "));
    let tail = format!("ORDER BY {ts}, {id} LIMIT {}", args.batch_size);
    // A row value, not `ts > $1 OR (ts = $1 AND id > $2)`: PostgreSQL turns only the row value
    // into an index range, where the OR form re-reads the table from its start on every batch.
    let after = format!(
        "{head} WHERE {readable} AND ({ts}, {id}) > ({}, {}) AND {} {tail}",
        p(1),
        p(2),
        older_than_delay(3)
    );
    let first = format!("{head} WHERE {readable} AND {} {tail}", older_than_delay(1));
    Ok((after, first))
}

async fn table_columns(
    db: &DatabaseConnection,
    backend: Backend,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    quoted(table).map_err(anyhow::Error::msg)?;
    let (sql, values): (&str, Vec<Value>) = match (backend, table.split_once('.')) {
        (Backend::Postgres, Some((schema, name))) => (
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            vec![schema.into(), name.into()],
        ),
        (Backend::Postgres, None) => (
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            vec![table.into()],
        ),
        (Backend::Sqlite, _) => (
            "SELECT name, type FROM pragma_table_info(?) ORDER BY cid",
            vec![table.into()],
        ),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .with_context(|| format!("listing the columns of {table}"))?;
    let columns = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<String>(0)?,
                r.try_get_by_index::<String>(1)?,
            ))
        })
        .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
    if columns.is_empty() {
        anyhow::bail!("table {table} does not exist (or has no columns)");
    }
    Ok(columns)
}

/// A column as text the cleaning rules read, computed by the database. PostgreSQL timestamps
/// become RFC 3339 in UTC, and their infinities the words `infinity` and `-infinity` (which the
/// rules then refuse): decoding an infinite timestamp makes the driver panic.
fn text_of(backend: Backend, column: &str, kind: &str) -> String {
    const RFC3339: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    match (backend, kind) {
        (Backend::Postgres, "timestamp with time zone") => format!(
            "CASE WHEN isfinite({column}) THEN to_char({column} AT TIME ZONE 'UTC', {RFC3339}) ELSE CAST({column} AS TEXT) END"
        ),
        (Backend::Postgres, "timestamp without time zone") => format!(
            "CASE WHEN isfinite({column}) THEN to_char({column}, {RFC3339}) ELSE CAST({column} AS TEXT) END"
        ),
        _ => format!("CAST({column} AS TEXT)"),
    }
}

/// A column selected as text; an error (not NULL) for a value that is not valid UTF-8, which
/// SQLite lets a TEXT column hold.
fn text(row: &QueryResult, i: usize) -> Result<Option<String>, String> {
    row.try_get_by_index::<Option<String>>(i)
        .map_err(|_| "is not valid UTF-8 text".to_owned())
}

fn read_mark(row: &QueryResult, i: usize, backend: Backend) -> anyhow::Result<Mark> {
    // SQLite's driver would parse text into a DateTime too, but binding that back re-formats it
    // and text comparison would then miss rows with the same timestamp: keep SQLite's text.
    if backend == Backend::Sqlite {
        return Ok(Mark::Text(row.try_get_by_index::<String>(i)?));
    }
    if let Ok(at) = row.try_get_by_index::<chrono::DateTime<chrono::Utc>>(i) {
        return Ok(Mark::Utc(at));
    }
    if let Ok(at) = row.try_get_by_index::<chrono::NaiveDateTime>(i) {
        return Ok(Mark::Naive(at));
    }
    anyhow::bail!("the timestamp column must be a TIMESTAMP or TIMESTAMPTZ")
}

/// The rejects log: one JSON line per row that could not be mapped, with its id, timestamp,
/// reason and the values read.
struct Rejects {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
}

impl Rejects {
    fn new(args: &TableArgs) -> Rejects {
        let path = args
            .rejects
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.rejects.jsonl", args.table)));
        Rejects {
            path,
            file: None,
            count: 0,
        }
    }

    fn write(&mut self, row: &Read, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(id = row.id, reason, "row rejected");
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening the rejects log {}", self.path.display()))?;
            self.file = Some(std::io::BufWriter::new(file));
        }
        let line = serde_json::json!({
            "id": row.id,
            "timestamp": row.mark,
            "reason": reason,
            "values": row.values,
        });
        if let Some(file) = self.file.as_mut() {
            writeln!(file, "{line}").with_context(|| format!("writing {}", self.path.display()))?;
        }
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.flush()
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }

    fn note(&self) -> String {
        if self.count > 0 {
            format!(" (see {})", self.path.display())
        } else {
            String::new()
        }
    }
}
