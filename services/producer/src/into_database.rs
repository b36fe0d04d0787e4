//! `producer generate --into-database URL`: the seed's `make_fake_data.py`. Synthetic customers
//! and transactions become rows of the source tables (created when missing) instead of events,
//! so the relational half of the pipeline (`producer table` -> Kafka -> ledger) can be shown
//! without a hand-written SQL script.
//!
//! Customers are upserted first (a rerun refreshes their `updated_at`, which a table source sees
//! as a change). Transactions are inserted in small transactions of their own: at a slow pace
//! each row commits as it is made, at full speed every 1,000 rows or 100 ms. The manifest counts
//! only rows the database confirmed (`RETURNING`), so a rerun with the same `--seed`, whose ids
//! already exist, adds nothing to it and nothing to the table.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use bank_contract::money;
use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_plumbing::shutdown::Stop;
use bank_storage::connect::Backend;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};

use crate::cli::GenerateArgs;
use crate::manifest::{AccountTotals, Manifest, TopicCounts};
use crate::output::Output;
use crate::pacing::{Pace, Pacer};
use crate::source_tables::{self, CUSTOMER_COLUMNS, TRANSACTION_COLUMNS, placeholder, quoted};
use crate::synthetic::Generator;

const COMMIT_ROWS: usize = 1_000;
const COMMIT_EVERY: Duration = Duration::from_millis(100);

struct Target {
    db: DatabaseConnection,
    backend: Backend,
    customers: String,
    transactions: String,
}

pub async fn run(args: GenerateArgs, url: &str) -> anyhow::Result<()> {
    let target = open(&args, url).await?;
    let config = args.generator_config();
    tracing::info!(
        seed = config.seed,
        "generating rows (rerun with --seed {} to reproduce)",
        config.seed
    );
    let stop = Stop::new();
    stop.on_signal();
    let count = (!args.continuous).then_some(args.count);
    let mut generator = Generator::new(&config);
    let mut output = Output::new(args.silent, count.map(|n| n + u64::from(config.customers)));

    upsert_customers(&target, generator.customers()).await?;
    generator
        .customers()
        .iter()
        .for_each(|c| output.customer(c));

    let pace = args.pace();
    let mut pacer = Pacer::new(pace, config.seed);
    let mut pending: Vec<Transaction> = Vec::with_capacity(COMMIT_ROWS);
    let mut totals: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let (mut made, mut inserted) = (0u64, 0u64);
    let mut last_commit = Instant::now();
    // The pacer blocks its thread, like the Kafka generator's send loop.
    while count.is_none_or(|n| made < n) && wait(&mut pacer, &stop, pace) {
        let tx = generator.next_transaction();
        output.transaction(&tx);
        pending.push(tx);
        made += 1;
        if pending.len() >= COMMIT_ROWS || last_commit.elapsed() >= COMMIT_EVERY {
            inserted += insert_transactions(&target, &pending, &mut totals).await?;
            pending.clear();
            last_commit = Instant::now();
        }
    }
    inserted += insert_transactions(&target, &pending, &mut totals).await?;
    output.finish();
    eprintln!(
        "rows: {} customers upserted into {}; {made} transactions made, {inserted} inserted into {}",
        config.customers, target.customers, target.transactions
    );
    if let Some(path) = &args.manifest {
        manifest(&target, made, inserted, &totals).write(path)?;
        eprintln!("manifest written to {}", path.display());
    }
    Ok(())
}

fn wait(pacer: &mut Pacer, stop: &Stop, pace: Pace) -> bool {
    match pace {
        Pace::Unlimited => !stop.is_requested(),
        _ => tokio::task::block_in_place(|| pacer.wait(stop)),
    }
}

async fn open(args: &GenerateArgs, url: &str) -> anyhow::Result<Target> {
    let backend = Backend::of_url(url)?;
    let db = bank_storage::connect::connect(url, 1).await?;
    let customers = args.customers_table.clone();
    let transactions = args.transactions_table.clone();
    for statement in
        source_tables::ddl(backend, &customers, &transactions).map_err(anyhow::Error::msg)?
    {
        db.execute_unprepared(&statement)
            .await
            .with_context(|| format!("creating the source tables ({statement})"))?;
    }
    Ok(Target {
        db,
        backend,
        customers,
        transactions,
    })
}

/// A time as the backend stores it: `TIMESTAMPTZ`, or SQLite's sortable UTC text.
fn time_value(backend: Backend, at: Option<&prost_types::Timestamp>) -> Value {
    let at = at
        .and_then(|t| {
            DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .unwrap_or_default();
    match backend {
        Backend::Postgres => at.into(),
        Backend::Sqlite => at.format("%Y-%m-%d %H:%M:%S%.3f").to_string().into(),
    }
}

/// `VALUES` rows of `width` placeholders each (the amount cast to NUMERIC on PostgreSQL, where a
/// text parameter is not taken for a number), then the database's clock for `updated_at`.
fn values_sql(backend: Backend, rows: usize, width: usize, numeric_at: Option<usize>) -> String {
    let now = source_tables::now_sql(backend);
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (0..width)
                .map(|i| {
                    let p = placeholder(backend, row * width + i + 1);
                    match (backend, numeric_at) {
                        (Backend::Postgres, Some(n)) if n == i => {
                            format!("CAST({p} AS NUMERIC(20,2))")
                        }
                        _ => p,
                    }
                })
                .collect();
            format!("({}, {now})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn upsert_customers(target: &Target, customers: &[Customer]) -> anyhow::Result<()> {
    let backend = target.backend;
    for chunk in customers.chunks(COMMIT_ROWS) {
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|c| -> [Value; 6] {
                [
                    c.account_number.clone().into(),
                    c.first_name.clone().into(),
                    c.last_name.clone().into(),
                    c.email.clone().into(),
                    i64::from(c.branch_id).into(),
                    time_value(backend, c.created_at.as_ref()),
                ]
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}, updated_at) VALUES {} ON CONFLICT (account_number) DO UPDATE SET \
             first_name = excluded.first_name, last_name = excluded.last_name, email = excluded.email, \
             branch_id = excluded.branch_id, updated_at = excluded.updated_at",
            quoted(&target.customers).map_err(anyhow::Error::msg)?,
            CUSTOMER_COLUMNS.join(", "),
            values_sql(backend, chunk.len(), CUSTOMER_COLUMNS.len(), None)
        );
        target
            .db
            .execute_raw(Statement::from_sql_and_values(
                target.db.get_database_backend(),
                sql,
                values,
            ))
            .await
            .with_context(|| format!("upserting customers into {}", target.customers))?;
    }
    Ok(())
}

/// Inserts `rows`, skipping ids already there; adds what was inserted to `totals`.
async fn insert_transactions(
    target: &Target,
    rows: &[Transaction],
    totals: &mut BTreeMap<String, (u64, i64)>,
) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let backend = target.backend;
    let values: Vec<Value> = rows
        .iter()
        .flat_map(|tx| -> [Value; 9] {
            let kind = match TransactionKind::try_from(tx.kind) {
                Ok(TransactionKind::Withdrawal) => "withdrawal",
                _ => "deposit",
            };
            [
                tx.transaction_id.clone().into(),
                tx.account_number.clone().into(),
                tx.transaction_reference.clone().into(),
                time_value(backend, tx.transaction_datetime.as_ref()),
                kind.into(),
                money::format_cents(tx.amount_cents).into(),
                tx.currency.clone().into(),
                i64::from(tx.branch_id).into(),
                tx.description.clone().into(),
            ]
        })
        .collect();
    let amount_at = TRANSACTION_COLUMNS.iter().position(|c| *c == "amount");
    let sql = format!(
        "INSERT INTO {} ({}, updated_at) VALUES {} ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id",
        quoted(&target.transactions).map_err(anyhow::Error::msg)?,
        TRANSACTION_COLUMNS.join(", "),
        values_sql(backend, rows.len(), TRANSACTION_COLUMNS.len(), amount_at)
    );
    let inserted = target
        .db
        .query_all_raw(Statement::from_sql_and_values(
            target.db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .with_context(|| format!("inserting transactions into {}", target.transactions))?;
    let by_id: HashMap<&str, &Transaction> = rows
        .iter()
        .map(|tx| (tx.transaction_id.as_str(), tx))
        .collect();
    for row in &inserted {
        let id: String = row.try_get_by_index(0)?;
        if let Some(tx) = by_id.get(id.as_str()) {
            let entry = totals.entry(tx.account_number.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry
                .1
                .checked_add(money::signed_amount_cents(tx).unwrap_or(0))
                .context("an account's sum overflows i64 cents")?;
        }
    }
    Ok(inserted.len() as u64)
}

fn manifest(
    target: &Target,
    made: u64,
    inserted: u64,
    totals: &BTreeMap<String, (u64, i64)>,
) -> Manifest {
    let counts = TopicCounts {
        partitions: 0,
        sent: made,
        delivered: inserted,
        failed: 0,
    };
    Manifest {
        topics: BTreeMap::from([(target.transactions.clone(), counts)]),
        accounts: totals
            .iter()
            .map(|(account, (n, sum))| (account.clone(), AccountTotals::new(*n, *sum)))
            .collect(),
    }
}
