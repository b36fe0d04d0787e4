//! Applying a batch of events to the ledger in one database transaction.
//!
//! This is where exactly-once is decided. A batch carries customers, transactions and the next
//! Kafka offset of every partition it covers; [`apply`] writes all of it or none of it:
//!
//! 0. the share is fenced: for every partition it covers, the stored next offset must be the one
//!    the share continues from (compare-and-set, in the same transaction), so a former owner of
//!    the partition, or a share left over from before a rebalance, can never write;
//! 1. customers are upserted, newer version wins (see migration m0003; an empty name never
//!    overwrites a known one), and get an account row;
//! 2. transactions parked for customers that just arrived (or that this writer sees for the
//!    first time) are taken out of the parking lot (`DELETE ... RETURNING`: a row leaves the lot
//!    only together with its posting) and go first, in the order they were consumed;
//! 3. transactions whose customer is still unknown are parked (the foreign key always holds);
//! 4. the rest are inserted; a transaction id already in the ledger is skipped (PostgreSQL tries
//!    a plain multi-row INSERT under a savepoint and, only if it hits a duplicate, redoes it with
//!    `ON CONFLICT (transaction_id) DO NOTHING RETURNING`): only rows actually inserted move a
//!    balance, so a redelivered or replayed transaction counts once;
//! 5. balances move by the sum of the inserted rows' signed amounts;
//! 6. the partitions' next offsets are stored (step 0 did it, under the same row lock).
//!
//! A crash before the commit loses the whole batch, offsets included, so it is consumed again;
//! a crash after it leaves nothing to redo. Statements are multi-row and chunked under the
//! backends' bind-parameter limits.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, OnConflict, Query, SimpleExpr};

use crate::array_literal;
pub use crate::error::{ApplyError, Item, Refusal};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    SqlErr, Statement, StatementBuilder, TransactionTrait, Value,
};

/// A customer as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub account_number: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub created_at: Option<DateTime<Utc>>,
    pub branch_id: i64,
    /// The event's `updated_at`, its version (absent: older than any versioned event).
    pub updated_at: Option<DateTime<Utc>>,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl CustomerRow {
    /// The total order "newer wins" follows (see migration m0003).
    pub fn version(&self) -> (i64, i32, i64) {
        (
            self.updated_at.map_or(i64::MIN, |at| at.timestamp_micros()),
            self.source_partition,
            self.source_offset,
        )
    }
}

/// A transaction as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub transaction_id: String,
    pub account_number: String,
    pub transaction_reference: String,
    pub transaction_datetime: Option<DateTime<Utc>>,
    /// `DEPOSIT` or `WITHDRAWAL` (static: one allocation less per row in flight).
    pub kind: &'static str,
    /// Positive; `kind` carries the sign.
    pub amount_cents: i64,
    pub currency: String,
    pub branch_id: i64,
    pub description: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl TransactionRow {
    /// The effect on the balance: `+amount` for a deposit, `-amount` for a withdrawal.
    pub fn signed_cents(&self) -> i64 {
        if self.kind == "WITHDRAWAL" {
            -self.amount_cents
        } else {
            self.amount_cents
        }
    }
}

/// Everything one database transaction applies.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub customers: Vec<CustomerRow>,
    /// In consumption order within each partition.
    pub transactions: Vec<TransactionRow>,
    /// `(topic, partition) ->` the stored offset this batch continues from and the next one.
    pub offsets: BTreeMap<(String, i32), OffsetSpan>,
}

/// What a batch moves a partition's stored offset from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetSpan {
    /// The next offset the database must hold for this batch to apply: the offset the partition
    /// was read from, or `None` when it was read from the beginning because nothing was stored.
    pub expected: Option<i64>,
    /// The next offset to consume once this batch is applied.
    pub next: i64,
}

impl Batch {
    /// Every event of the batch: customers first, then transactions, each in order.
    pub fn items(&self) -> Vec<Item> {
        (0..self.customers.len())
            .map(Item::Customer)
            .chain((0..self.transactions.len()).map(Item::Transaction))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.transactions.is_empty() && self.offsets.is_empty()
    }
}

/// A transaction that moved a balance in this batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub transaction_id: String,
    pub account_number: String,
    pub signed_cents: i64,
    /// The account's durable balance right after this transaction.
    pub balance_after_cents: i64,
    /// Whether it had been parked waiting for its customer.
    pub was_parked: bool,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Posted transactions, in posting order (formerly parked ones first).
    pub posted: Vec<Posted>,
    /// Transactions skipped because their id was already in the ledger (or twice in the batch).
    pub duplicates: u64,
    /// Transactions parked by this batch.
    pub parked: u64,
    /// Customers inserted or updated.
    pub customers: u64,
    /// Conflicting duplicates found on the way (the batch is then not committed).
    pub refused: Vec<Refusal>,
}

/// Rows per `UNNEST` statement: a writer's whole share of a batch, as a rule. The bound
/// arrays are a copy of the rows (one text literal per column, see [`array_literal`]), but
/// smaller statements cost more than they save: chunks of 2,500 cost 10% of bench-consumer's
/// rows/s when each element was still a value of its own.
const UNNEST_CHUNK: usize = 20_000;

/// Bind parameters per statement: SQLite allows 32766, PostgreSQL 65535.
const MAX_PARAMS: usize = 30_000;

/// The columns of `customers` the ledger writes, in the order of [`upsert_customers`]' values,
/// each with the PostgreSQL array type it is bound as there.
const CUSTOMER_COLUMNS: [(&str, &str); 9] = [
    ("account_number", "text[]"),
    ("first_name", "text[]"),
    ("last_name", "text[]"),
    ("email", "text[]"),
    ("created_at", "timestamptz[]"),
    ("branch_id", "int8[]"),
    ("version_micros", "int8[]"),
    ("source_partition", "int4[]"),
    ("source_offset", "int8[]"),
];

fn customer_column_names() -> [&'static str; 9] {
    CUSTOMER_COLUMNS.map(|(name, _)| name)
}

/// The columns of `transactions` (and of `parked_transactions`) the ledger writes, in the
/// order of [`transaction_values`] and of the arrays [`insert_transactions_unnest`] binds,
/// each with the PostgreSQL array type it is bound as there.
const TX_COLUMNS: [(&str, &str); 11] = [
    ("transaction_id", "text[]"),
    ("account_number", "text[]"),
    ("transaction_reference", "text[]"),
    ("transaction_datetime", "timestamptz[]"),
    ("kind", "text[]"),
    ("amount_cents", "int8[]"),
    ("currency", "text[]"),
    ("branch_id", "int8[]"),
    ("description", "text[]"),
    ("source_partition", "int4[]"),
    ("source_offset", "int8[]"),
];

/// `$1::text[], $2::int8[], ...`: one bound array per column, typed as `columns` say.
fn array_parameters(columns: &[(&str, &str)]) -> String {
    (1..)
        .zip(columns)
        .map(|(i, (_, ty))| format!("${i}::{ty}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tx_column_names() -> [&'static str; 11] {
    TX_COLUMNS.map(|(name, _)| name)
}

/// The ledger's write side, with a cache of accounts known to have a customer (customers are
/// never deleted, so a positive answer stays true).
#[derive(Debug)]
pub struct Ledger {
    group: String,
    known_customers: HashSet<String>,
    /// How often to look for parked transactions whose customer arrived through another writer.
    sweep_every: Duration,
    last_sweep: Option<Instant>,
}

/// A transaction is parked and its customer inserted by two writers (two processes, or two
/// writer tasks) at the same instant only when a branch's customers and transactions sit on
/// partitions with different numbers; neither sees the other's uncommitted row. The sweep
/// posts such a transaction within this long.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Ledger {
    /// A ledger writing offsets under consumer group `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Ledger {
            group: group.into(),
            known_customers: HashSet::new(),
            sweep_every: SWEEP_EVERY,
            last_sweep: None,
        }
    }

    /// Sweeps for stranded parked transactions at most this often (tests use zero).
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    /// Applies `batch` atomically. On error nothing was written; [`ApplyError::is_transient`]
    /// says whether the same batch may be offered again, and [`ApplyError::Refused`] names the
    /// events the ledger will never apply (dead-letter them and apply the rest).
    pub async fn apply(
        &mut self,
        db: &DatabaseConnection,
        batch: &Batch,
    ) -> Result<Applied, ApplyError> {
        let txn = db.begin().await?;
        // First, so that a stale share stops before doing any work, and so that the offset
        // rows' locks serialize two writers of one partition until the first one commits.
        advance_offsets(&txn, &self.group, &batch.offsets).await?;
        let items = batch.items();
        let sweep = self.sweep_due();
        // Under a savepoint: after a refused statement PostgreSQL accepts nothing but a
        // rollback, and bisection needs the transaction (and its offsets) still usable.
        let attempt = txn.begin().await?;
        let (applied, learned) = match self.apply_rows(&attempt, batch, &items, sweep).await {
            Ok(done) => {
                attempt.commit().await?;
                done
            }
            Err(error) if error.is_row_fault() => {
                attempt.rollback().await?;
                let refused = self.bisect(&txn, batch, items, error).await?;
                txn.rollback().await?;
                return Err(ApplyError::Refused(refused));
            }
            Err(error) => return Err(error),
        };
        if !applied.refused.is_empty() {
            txn.rollback().await?;
            let mut refused = applied.refused;
            refused.sort_by_key(|r| r.item);
            return Err(ApplyError::Refused(refused));
        }
        txn.commit().await?;
        self.known_customers.extend(learned);
        Ok(applied)
    }

    /// Finds the events of `items` the database refuses: applies halves under savepoints, left
    /// to right, keeping what succeeds (so later rows see earlier ones, as in one pass) and
    /// splitting what fails down to single events. Fails with `first` if no single event is to
    /// blame (the fault needs rows outside the batch, e.g. parked ones).
    async fn bisect(
        &self,
        txn: &DatabaseTransaction,
        batch: &Batch,
        items: Vec<Item>,
        first: ApplyError,
    ) -> Result<Vec<Refusal>, ApplyError> {
        let mut refused = Vec::new();
        let mut parts = vec![items];
        while let Some(part) = parts.pop() {
            let probe = txn.begin().await?;
            match self.apply_rows(&probe, batch, &part, false).await {
                Ok((applied, _)) => {
                    refused.extend(applied.refused);
                    probe.commit().await?;
                }
                Err(error) if error.is_row_fault() => {
                    probe.rollback().await?;
                    if let [item] = part[..] {
                        refused.push(error.refusal(item));
                    } else {
                        let (left, right) = part.split_at(part.len() / 2);
                        parts.push(right.to_vec());
                        parts.push(left.to_vec());
                    }
                }
                Err(error) => return Err(error),
            }
        }
        if refused.is_empty() {
            return Err(first);
        }
        refused.sort_by_key(|r| r.item);
        Ok(refused)
    }

    /// Writes the events `items` of `batch` (customers, parking, postings, balances) in `txn`;
    /// returns what it did and the accounts this writer may now treat as known.
    async fn apply_rows(
        &self,
        txn: &DatabaseTransaction,
        batch: &Batch,
        items: &[Item],
        sweep: bool,
    ) -> Result<(Applied, Vec<String>), ApplyError> {
        let mut applied = Applied::default();
        let mut customers_in = Vec::new();
        let mut transactions_in = Vec::new();
        for item in items {
            match *item {
                Item::Customer(i) => customers_in.push(batch.customers[i].clone()),
                Item::Transaction(i) => transactions_in.push((i, &batch.transactions[i])),
            }
        }
        let customers = dedupe_customers(&customers_in);
        applied.customers = customers.len() as u64;
        upsert_customers(txn, &customers).await?;
        let newly_known: Vec<String> = customers
            .iter()
            .map(|c| c.account_number.clone())
            .filter(|a| !self.known_customers.contains(a))
            .collect();
        let accounts = transactions_in
            .iter()
            .map(|(_, t)| t.account_number.as_str());
        let existing = self.existing_unknown(txn, accounts, &newly_known).await?;

        // Parked transactions of customers that may just have arrived go first: customers in
        // this batch, customers this writer sees for the first time (another writer may have
        // parked their early transactions) and, now and then, any parked row whose customer
        // exists (see SWEEP_EVERY).
        let mut unpark: Vec<String> = newly_known.iter().chain(&existing).cloned().collect();
        if sweep {
            unpark.extend(parked_with_customer(txn).await?);
        }
        // Candidates borrow their rows: a batch is the bulk of a writer's memory, and an
        // owned-or-borrowed `Cow` would be as large as the row itself.
        let parked = take_parked(txn, &unpark).await?;
        let mut to_insert: Vec<Candidate<'_>> =
            Vec::with_capacity(parked.len() + transactions_in.len());
        to_insert.extend(parked.iter().map(|row| (row, None)));
        let mut to_park = Vec::new();
        // One copy of an id per batch, the first, before rows split between parking and
        // posting: two copies on different accounts must not end one parked, one posted.
        let mut first: HashMap<&str, &TransactionRow> = HashMap::new();
        for (index, tx) in transactions_in {
            if let Some(kept) = first.get(tx.transaction_id.as_str()) {
                applied.duplicates += 1;
                applied
                    .refused
                    .extend(conflict(index, kept, tx, "this batch"));
                continue;
            }
            first.insert(&tx.transaction_id, tx);
            let known = self.known_customers.contains(&tx.account_number)
                || newly_known.contains(&tx.account_number)
                || existing.contains(&tx.account_number);
            if known {
                to_insert.push((tx, Some(index)));
            } else {
                to_park.push((tx, index));
            }
        }
        applied.parked = park(txn, &to_park, &mut applied.refused).await?;
        post(txn, to_insert, &mut applied).await?;
        let learned = newly_known.into_iter().chain(existing).collect();
        Ok((applied, learned))
    }

    /// Posts parked transactions whose customer is in the ledger. The writer calls this on a
    /// timer, so such rows are posted within the sweep interval even when no traffic comes.
    pub async fn sweep(&mut self, db: &DatabaseConnection) -> Result<Applied, ApplyError> {
        self.last_sweep = Some(Instant::now());
        let txn = db.begin().await?;
        let accounts = parked_with_customer(&txn).await?;
        let mut applied = Applied::default();
        if accounts.is_empty() {
            txn.rollback().await?;
            return Ok(applied);
        }
        let rows = take_parked(&txn, &accounts).await?;
        post(&txn, rows.iter().map(|r| (r, None)).collect(), &mut applied).await?;
        txn.commit().await?;
        self.known_customers.extend(accounts);
        Ok(applied)
    }

    /// How often [`Ledger::sweep`] is due.
    pub fn sweep_interval(&self) -> Duration {
        self.sweep_every
    }

    fn sweep_due(&mut self) -> bool {
        let due = self
            .last_sweep
            .is_none_or(|at| at.elapsed() >= self.sweep_every);
        if due {
            self.last_sweep = Some(Instant::now());
        }
        due
    }

    /// Accounts among `accounts` that this writer does not know yet but that have a customer in
    /// the database.
    async fn existing_unknown(
        &self,
        txn: &DatabaseTransaction,
        accounts: impl Iterator<Item = &str>,
        newly_known: &[String],
    ) -> Result<HashSet<String>, DbErr> {
        let mut unknown: Vec<String> = accounts
            .filter(|a| !self.known_customers.contains(*a) && !newly_known.iter().any(|k| k == a))
            .map(str::to_owned)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unknown.sort();
        existing_customers(txn, &unknown).await
    }
}

/// Inserts `to_insert` (first copy of an id wins; ids already in the ledger are skipped, and
/// refused as conflicting duplicates when their content differs), moves the balances by what
/// was inserted, and records each posting with its running balance.
async fn post(
    txn: &DatabaseTransaction,
    to_insert: Vec<Candidate<'_>>,
    applied: &mut Applied,
) -> Result<(), ApplyError> {
    let mut unique = first_copies(to_insert, applied);
    drop_parked_copies(txn, &mut unique, applied).await?;
    let inserted = insert_transactions(txn, &unique).await?;
    let (posted, skipped): (Vec<_>, Vec<_>) =
        unique.iter().zip(&inserted).partition(|(_, new)| **new);
    let skipped: Vec<&Candidate<'_>> = skipped.into_iter().map(|(row, _)| row).collect();
    applied.duplicates += skipped.len() as u64;
    refuse_conflicting(txn, &skipped, applied).await?;
    let posted: Vec<&Candidate<'_>> = posted.into_iter().map(|(row, _)| row).collect();
    move_and_record(txn, posted, applied).await
}

/// Drops from `unique` the batch's copies of ids parked earlier for an account still without
/// customer: the parked one is taken, so a later copy is a duplicate (or a conflict), not a
/// second movement. Looked up only when anything is parked.
async fn drop_parked_copies(
    txn: &DatabaseTransaction,
    unique: &mut Vec<Candidate<'_>>,
    applied: &mut Applied,
) -> Result<(), DbErr> {
    if !parked_any(txn).await? {
        return Ok(());
    }
    let ids: Vec<String> = unique
        .iter()
        .filter(|(_, origin)| origin.is_some())
        .map(|(r, _)| r.transaction_id.clone())
        .collect();
    let parked = stored_movements(txn, "parked_transactions", &ids).await?;
    if parked.is_empty() {
        return Ok(());
    }
    unique.retain(
        |(row, origin)| match (origin, parked.get(&row.transaction_id)) {
            (Some(index), Some(known)) => {
                applied.duplicates += 1;
                applied
                    .refused
                    .extend(conflict(*index, known, row, "the parking lot"));
                false
            }
            _ => true,
        },
    );
    Ok(())
}

/// Refuses, among rows whose id the ledger already held, those whose movement differs from
/// the stored one; the others were plain redeliveries.
async fn refuse_conflicting(
    txn: &DatabaseTransaction,
    skipped: &[&Candidate<'_>],
    applied: &mut Applied,
) -> Result<(), DbErr> {
    if skipped.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = skipped
        .iter()
        .map(|(r, _)| r.transaction_id.clone())
        .collect();
    let stored = stored_movements(txn, "transactions", &ids).await?;
    for (row, origin) in skipped {
        if let (Some(index), Some(known)) = (origin, stored.get(&row.transaction_id))
            && let Some(refusal) = conflict(*index, known, row, "the ledger")
        {
            applied.refused.push(refusal);
        }
    }
    Ok(())
}

/// Moves each account's balance by its `posted` rows and records every posting with the
/// balance right after it, in order.
async fn move_and_record(
    txn: &DatabaseTransaction,
    posted: Vec<&Candidate<'_>>,
    applied: &mut Applied,
) -> Result<(), ApplyError> {
    // Widened, then checked: a batch's delta for one account may not fit 64 bits even when
    // every amount is within the contract's limit.
    let mut deltas: BTreeMap<&str, (i128, i64)> = BTreeMap::new();
    for (row, _) in posted.iter().copied() {
        let entry = deltas.entry(row.account_number.as_str()).or_default();
        entry.0 += i128::from(row.signed_cents());
        entry.1 += 1;
    }
    let mut narrow: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (account, (delta, count)) in &deltas {
        let delta = i64::try_from(*delta).map_err(|_| ApplyError::Overflow {
            account: (*account).to_owned(),
        })?;
        narrow.insert(account, (delta, *count));
    }
    let after = move_balances(txn, &narrow).await?;
    let mut running: HashMap<&str, i128> = deltas
        .iter()
        .map(|(account, (delta, _))| {
            let after = i128::from(after.get(*account).copied().unwrap_or(0));
            (*account, after - delta)
        })
        .collect();
    for (row, origin) in posted {
        let balance = running.entry(row.account_number.as_str()).or_default();
        *balance += i128::from(row.signed_cents());
        applied.posted.push(Posted {
            transaction_id: row.transaction_id.clone(),
            account_number: row.account_number.clone(),
            signed_cents: row.signed_cents(),
            balance_after_cents: i64::try_from(*balance).unwrap_or(if *balance < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            was_parked: origin.is_none(),
        });
    }
    Ok(())
}

/// A row to post, with its index in the batch, or `None` when it comes from the parking lot.
type Candidate<'a> = (&'a TransactionRow, Option<usize>);

/// The first copy of each id among `rows` (formerly parked rows and the batch's), in order;
/// later copies count as duplicates, or are refused when their movement differs.
fn first_copies<'a>(rows: Vec<Candidate<'a>>, applied: &mut Applied) -> Vec<Candidate<'a>> {
    let mut keep = vec![true; rows.len()];
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (at, (row, origin)) in rows.iter().enumerate() {
        match first.entry(row.transaction_id.as_str()) {
            Entry::Vacant(entry) => {
                entry.insert(at);
            }
            Entry::Occupied(entry) => {
                keep[at] = false;
                applied.duplicates += 1;
                if let Some(index) = origin
                    && let Some(refusal) = conflict(*index, rows[*entry.get()].0, row, "this batch")
                {
                    applied.refused.push(refusal);
                }
            }
        }
    }
    drop(first);
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then_some(row))
        .collect()
}

/// Whether any transaction waits in the parking lot (almost never: a cheap look).
async fn parked_any(txn: &DatabaseTransaction) -> Result<bool, DbErr> {
    let stmt = Query::select()
        .expr(Expr::val(1))
        .from("parked_transactions")
        .limit(1)
        .to_owned();
    Ok(txn.query_one(&stmt).await?.is_some())
}

/// The same movement of money: account, direction, amount and currency.
fn same_movement(a: &TransactionRow, b: &TransactionRow) -> bool {
    a.account_number == b.account_number
        && a.kind == b.kind
        && a.amount_cents == b.amount_cents
        && a.currency == b.currency
}

/// A refusal if `row` (event `index` of the batch) reuses the id of `known` for another
/// movement of money.
fn conflict(
    index: usize,
    known: &TransactionRow,
    row: &TransactionRow,
    place: &str,
) -> Option<Refusal> {
    if same_movement(known, row) {
        return None;
    }
    let movement = |r: &TransactionRow| {
        format!(
            "{} {} {} {}",
            r.account_number, r.kind, r.amount_cents, r.currency
        )
    };
    Some(Refusal {
        item: Item::Transaction(index),
        kind: "conflicting-duplicate",
        code: None,
        message: format!(
            "transaction_id {} is already in {place} as {}; this event says {}",
            row.transaction_id,
            movement(known),
            movement(row)
        ),
    })
}

/// The stored movements (the columns [`same_movement`] compares) of `ids` in `table`.
async fn stored_movements(
    txn: &DatabaseTransaction,
    table: &str,
    ids: &[String],
) -> Result<HashMap<String, TransactionRow>, DbErr> {
    let mut found = HashMap::new();
    let sql = format!(
        "SELECT {} FROM {table} WHERE transaction_id = ANY($1::text[])",
        tx_column_names().join(", ")
    );
    let rows = where_in(txn, &sql, ids, |chunk| {
        Query::select()
            .columns(tx_column_names())
            .from(sea_orm::sea_query::Alias::new(table))
            .and_where(Expr::col("transaction_id").is_in(chunk.iter().cloned()))
            .to_owned()
    })
    .await?;
    for row in rows {
        let row = transaction_from_row(&row)?;
        found.insert(row.transaction_id.clone(), row);
    }
    Ok(found)
}

/// The rows a statement selects (or deletes and returns) for a list of `values`. PostgreSQL
/// runs `sql`, whose one parameter is `$1::text[]`, with the values bound as one array
/// literal: its text is the same whatever the number of values, so each connection prepares
/// and caches it once, where a list of parameters (`IN ($1, ..., $30000)`) is a statement of
/// its own for every length, each cached with its parameter types for the connection's life.
/// Other backends run `portable` per chunk under the bind-parameter limit.
async fn where_in<S: StatementBuilder>(
    txn: &DatabaseTransaction,
    sql: &str,
    values: &[String],
    portable: impl Fn(&[String]) -> S,
) -> Result<Vec<QueryResult>, DbErr> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        let list = array_literal::text(values.iter().map(String::as_str));
        let statement =
            Statement::from_sql_and_values(DbBackend::Postgres, sql, [Value::from(list)]);
        return txn.query_all_raw(statement).await;
    }
    let mut rows = Vec::new();
    for chunk in values.chunks(MAX_PARAMS) {
        rows.extend(txn.query_all(&portable(chunk)).await?);
    }
    Ok(rows)
}

/// The stored next offsets of `group` for the given partitions (absent: never consumed).
pub async fn load_offsets(
    db: &impl ConnectionTrait,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, DbErr> {
    let stmt = Query::select()
        .columns(["topic", "partition", "next_offset"])
        .from("consumer_offsets")
        .and_where(Expr::col("group_id").eq(group.to_owned()))
        .to_owned();
    let wanted: HashSet<&(String, i32)> = partitions.iter().collect();
    let rows = db.query_all(&stmt).await?;
    let mut offsets = HashMap::new();
    for row in rows {
        let key: (String, i32) = (row.try_get("", "topic")?, row.try_get("", "partition")?);
        if wanted.contains(&key) {
            offsets.insert(key, row.try_get("", "next_offset")?);
        }
    }
    Ok(offsets)
}

/// How many transactions are waiting for their customer.
pub async fn parked_count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let stmt = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from("parked_transactions")
        .to_owned();
    let row = db.query_one(&stmt).await?;
    let count: i64 = match row {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(count as u64)
}

/// One row per account: the newest version, with non-empty names of older versions filling
/// empty ones (and the oldest known `created_at`). Independent of the order within the batch.
fn dedupe_customers(customers: &[CustomerRow]) -> Vec<CustomerRow> {
    let mut sorted: Vec<&CustomerRow> = customers.iter().collect();
    sorted.sort_by_key(|c| c.version());
    let mut by_account: BTreeMap<&str, CustomerRow> = BTreeMap::new();
    for c in sorted {
        match by_account.get_mut(c.account_number.as_str()) {
            Some(known) => {
                let keep = |new: &String, old: &String| {
                    if new.is_empty() {
                        old.clone()
                    } else {
                        new.clone()
                    }
                };
                *known = CustomerRow {
                    first_name: keep(&c.first_name, &known.first_name),
                    last_name: keep(&c.last_name, &known.last_name),
                    email: keep(&c.email, &known.email),
                    created_at: known.created_at.or(c.created_at),
                    ..c.clone()
                };
            }
            None => {
                by_account.insert(&c.account_number, c.clone());
            }
        }
    }
    by_account.into_values().collect()
}

/// The customer columns an upsert changes, each with its SQL: the newer event wins, but an
/// empty name or email does not erase a known one, and the first known `created_at` stays.
/// One definition for both backends' statements.
fn customer_updates() -> Vec<(&'static str, String)> {
    let keep_known = |col: &str| {
        format!("CASE WHEN excluded.{col} <> '' THEN excluded.{col} ELSE customers.{col} END")
    };
    vec![
        ("first_name", keep_known("first_name")),
        ("last_name", keep_known("last_name")),
        ("email", keep_known("email")),
        (
            "created_at",
            "COALESCE(customers.created_at, excluded.created_at)".to_owned(),
        ),
        ("branch_id", "excluded.branch_id".to_owned()),
        ("version_micros", "excluded.version_micros".to_owned()),
        ("source_partition", "excluded.source_partition".to_owned()),
        ("source_offset", "excluded.source_offset".to_owned()),
    ]
}

/// When an upsert applies: only to an older stored version (a replayed or an older event
/// changes nothing).
fn customer_is_newer() -> String {
    let version = |table: &str| {
        format!("({table}.version_micros, {table}.source_partition, {table}.source_offset)")
    };
    format!("{} > {}", version("excluded"), version("customers"))
}

async fn upsert_customers(
    txn: &DatabaseTransaction,
    customers: &[CustomerRow],
) -> Result<(), DbErr> {
    if customers.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        return upsert_customers_unnest(txn, customers).await;
    }
    let updates = customer_updates()
        .into_iter()
        .map(|(col, sql)| (col, Expr::cust(sql)));
    for chunk in customers.chunks(MAX_PARAMS / CUSTOMER_COLUMNS.len()) {
        let mut insert = Query::insert();
        insert
            .into_table("customers")
            .columns(customer_column_names());
        for c in chunk {
            let (version_micros, partition, offset) = c.version();
            insert.values_panic([
                c.account_number.clone().into(),
                c.first_name.clone().into(),
                c.last_name.clone().into(),
                c.email.clone().into(),
                c.created_at.into(),
                c.branch_id.into(),
                version_micros.into(),
                partition.into(),
                offset.into(),
            ]);
        }
        insert.on_conflict(
            OnConflict::column("account_number")
                .values(updates.clone())
                .action_and_where(Expr::cust(customer_is_newer()))
                .to_owned(),
        );
        txn.execute(&insert).await?;

        // Every customer has an account, at zero until its first transaction.
        let mut accounts = Query::insert();
        accounts.into_table("accounts").columns([
            "account_number",
            "balance_cents",
            "transaction_count",
        ]);
        for c in chunk {
            accounts.values_panic([c.account_number.clone().into(), 0i64.into(), 0i64.into()]);
        }
        accounts.on_conflict(OnConflict::column("account_number").do_nothing().to_owned());
        txn.execute(&accounts).await?;
    }
    Ok(())
}

/// PostgreSQL: the customers as one array per column, in one statement of constant text (see
/// [`where_in`]). The driver cannot bind an array holding NULL timestamps, so `created_at` goes
/// with a placeholder where it is unknown and a flag array saying which are real.
async fn upsert_customers_unnest(
    txn: &DatabaseTransaction,
    customers: &[CustomerRow],
) -> Result<(), DbErr> {
    let names = customer_column_names();
    let arrays = array_parameters(&CUSTOMER_COLUMNS);
    let selected = names
        .map(|name| match name {
            "created_at" => "CASE WHEN created_known THEN created_at END",
            name => name,
        })
        .join(", ");
    let updates = customer_updates()
        .into_iter()
        .map(|(col, sql)| format!("{col} = {sql}"))
        .collect::<Vec<_>>()
        .join(", ");
    let known_flags = CUSTOMER_COLUMNS.len() + 1;
    let sql = format!(
        "INSERT INTO customers ({}) SELECT {selected} \
         FROM UNNEST({arrays}, ${known_flags}::bool[]) AS u({}, created_known) \
         ON CONFLICT (account_number) DO UPDATE SET {updates} WHERE {}",
        names.join(", "),
        names.join(", "),
        customer_is_newer()
    );
    let text = |f: &dyn Fn(&CustomerRow) -> &str| {
        Value::from(array_literal::text(customers.iter().map(f)))
    };
    let integers = |f: &dyn Fn(&CustomerRow) -> i64| {
        Value::from(array_literal::integers(customers.iter().map(f)))
    };
    let created_at = Value::Array(
        ArrayType::ChronoDateTimeUtc,
        Some(Box::new(
            customers
                .iter()
                .map(|c| Value::ChronoDateTimeUtc(Some(c.created_at.unwrap_or_default())))
                .collect(),
        )),
    );
    let created_known = array_literal::flags(customers.iter().map(|c| c.created_at.is_some()));
    // In the order of CUSTOMER_COLUMNS, then the flags.
    let values = vec![
        text(&|c| &c.account_number),
        text(&|c| &c.first_name),
        text(&|c| &c.last_name),
        text(&|c| &c.email),
        created_at,
        integers(&|c| c.branch_id),
        integers(&|c| c.version().0),
        integers(&|c| i64::from(c.source_partition)),
        integers(&|c| c.source_offset),
        Value::from(created_known),
    ];
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        &sql,
        values,
    ))
    .await?;
    // Every customer has an account, at zero until its first transaction.
    const ACCOUNTS: &str = "INSERT INTO accounts (account_number, balance_cents, transaction_count) \
        SELECT account_number, 0, 0 FROM UNNEST($1::text[]) AS u(account_number) \
        ON CONFLICT (account_number) DO NOTHING";
    let accounts = array_literal::text(customers.iter().map(|c| c.account_number.as_str()));
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        ACCOUNTS,
        [Value::from(accounts)],
    ))
    .await?;
    Ok(())
}

async fn existing_customers(
    txn: &DatabaseTransaction,
    accounts: &[String],
) -> Result<HashSet<String>, DbErr> {
    const SQL: &str = "SELECT account_number FROM customers WHERE account_number = ANY($1::text[])";
    let rows = where_in(txn, SQL, accounts, |chunk| {
        Query::select()
            .column("account_number")
            .from("customers")
            .and_where(Expr::col("account_number").is_in(chunk.iter().cloned()))
            .to_owned()
    })
    .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "account_number"))
        .collect()
}

/// Accounts with parked transactions whose customer is in the ledger after all (see
/// [`SWEEP_EVERY`]). Cheap: the parking lot is almost always empty.
async fn parked_with_customer(txn: &DatabaseTransaction) -> Result<Vec<String>, DbErr> {
    let stmt = Query::select()
        .distinct()
        .column(("parked_transactions", "account_number"))
        .from("parked_transactions")
        .inner_join(
            "customers",
            Expr::col(("customers", "account_number"))
                .equals(("parked_transactions", "account_number")),
        )
        .to_owned();
    txn.query_all(&stmt)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "account_number"))
        .collect()
}

/// Removes and returns the parked transactions of `accounts`, oldest first. One statement
/// (`DELETE ... RETURNING`) per chunk: a row leaves the lot only with the caller's posting of
/// it, in the same transaction, and a row parked meanwhile by another writer is either seen
/// and returned, or stays parked; never deleted unseen.
async fn take_parked(
    txn: &DatabaseTransaction,
    accounts: &[String],
) -> Result<Vec<TransactionRow>, DbErr> {
    let mut accounts = accounts.to_vec();
    accounts.sort();
    accounts.dedup();
    let sql = format!(
        "DELETE FROM parked_transactions WHERE account_number = ANY($1::text[]) RETURNING {}",
        tx_column_names().join(", ")
    );
    let taken = where_in(txn, &sql, &accounts, |chunk| {
        Query::delete()
            .from_table("parked_transactions")
            .and_where(Expr::col("account_number").is_in(chunk.iter().cloned()))
            .returning(Query::returning().columns(tx_column_names()))
            .to_owned()
    })
    .await?;
    let mut rows = taken
        .iter()
        .map(transaction_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by_key(|r| (r.source_partition, r.source_offset));
    Ok(rows)
}

/// Parks transactions whose customer is unknown. An id already posted or parked is a
/// duplicate (skipped), or a conflicting duplicate (refused) when its content differs.
async fn park(
    txn: &DatabaseTransaction,
    rows: &[(&TransactionRow, usize)],
    refused: &mut Vec<Refusal>,
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = rows.iter().map(|(r, _)| r.transaction_id.clone()).collect();
    let mut known = stored_movements(txn, "transactions", &ids).await?;
    known.extend(stored_movements(txn, "parked_transactions", &ids).await?);
    let mut new_rows = Vec::with_capacity(rows.len());
    for (row, index) in rows {
        match known.get(&row.transaction_id) {
            Some(stored) => refused.extend(conflict(*index, stored, row, "the ledger")),
            None => {
                known.insert(row.transaction_id.clone(), (*row).clone());
                new_rows.push(*row);
            }
        }
    }
    // As the postings: one statement of constant text where the driver can bind the arrays.
    if txn.get_database_backend() == DbBackend::Postgres
        && new_rows
            .iter()
            .all(|row| row.transaction_datetime.is_some())
    {
        let rows: Vec<Candidate<'_>> = new_rows.iter().map(|row| (*row, None)).collect();
        let inserted = insert_transactions_unnest(
            txn,
            "parked_transactions",
            &rows,
            UnnestMode::SkipDuplicates,
        )
        .await?;
        return Ok(inserted.len() as u64);
    }
    let mut parked = 0;
    for chunk in new_rows.chunks(MAX_PARAMS / TX_COLUMNS.len()) {
        let mut insert = Query::insert();
        insert
            .into_table("parked_transactions")
            .columns(tx_column_names());
        for row in chunk {
            insert.values_panic(transaction_values(row));
        }
        insert.on_conflict(OnConflict::column("transaction_id").do_nothing().to_owned());
        parked += txn.execute(&insert).await?.rows_affected();
    }
    Ok(parked)
}

/// Inserts rows whose id is new; returns, for each row, whether it was inserted.
async fn insert_transactions(
    txn: &DatabaseTransaction,
    rows: &[Candidate<'_>],
) -> Result<Vec<bool>, DbErr> {
    // The driver cannot bind an array holding NULL timestamps, so such a (rare) batch takes
    // the portable path.
    let unnest = txn.get_database_backend() == DbBackend::Postgres
        && rows
            .iter()
            .all(|(row, _)| row.transaction_datetime.is_some());
    let inserted = if unnest {
        // Almost every batch has no duplicate: try a plain INSERT under a savepoint first. It
        // skips ON CONFLICT's extra index probe per row and the RETURNING list, about a sixth
        // of PostgreSQL's work; a batch with a duplicate rolls back to the savepoint and takes
        // the careful path.
        let attempt = txn.begin().await?;
        match insert_transactions_unnest(&attempt, "transactions", rows, UnnestMode::Plain).await {
            Ok(_) => {
                attempt.commit().await?;
                return Ok(vec![true; rows.len()]);
            }
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                attempt.rollback().await?;
            }
            Err(error) => return Err(error),
        }
        insert_transactions_unnest(txn, "transactions", rows, UnnestMode::SkipDuplicates).await?
    } else {
        insert_transactions_values(txn, rows).await?
    };
    Ok(rows
        .iter()
        .map(|(row, _)| inserted.contains(&row.transaction_id))
        .collect())
}

/// Any backend: multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`, chunked under the
/// bind-parameter limit; returns the ids inserted.
async fn insert_transactions_values(
    txn: &DatabaseTransaction,
    rows: &[Candidate<'_>],
) -> Result<HashSet<String>, DbErr> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_PARAMS / TX_COLUMNS.len()) {
        let mut insert = Query::insert();
        insert.into_table("transactions").columns(tx_column_names());
        for (row, _) in chunk {
            insert.values_panic(transaction_values(row));
        }
        insert
            .on_conflict(OnConflict::column("transaction_id").do_nothing().to_owned())
            .returning_col("transaction_id");
        for row in txn.query_all(&insert).await? {
            inserted.insert(row.try_get::<String>("", "transaction_id")?);
        }
    }
    Ok(inserted)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnnestMode {
    /// Fails on a duplicate id.
    Plain,
    /// Skips duplicate ids and returns the ids inserted.
    SkipDuplicates,
}

/// PostgreSQL, into `table` (the ledger or the parking lot): one statement per chunk whatever
/// its size, the columns passed as 11 arrays.
/// Binding 11 arrays instead of 11 parameters per row is what makes the ledger keep up with
/// Kafka: far less SQL to build, send and plan. Ten are array literals, one text value each;
/// in bench-consumer that took 15-20 MiB off the peak RSS and a tenth of the consumer's CPU.
async fn insert_transactions_unnest(
    txn: &DatabaseTransaction,
    table: &str,
    rows: &[Candidate<'_>],
    mode: UnnestMode,
) -> Result<HashSet<String>, DbErr> {
    let names = tx_column_names().join(", ");
    let arrays = array_parameters(&TX_COLUMNS);
    let insert = format!("INSERT INTO {table} ({names}) SELECT * FROM UNNEST({arrays})");
    let sql = match mode {
        UnnestMode::Plain => insert,
        UnnestMode::SkipDuplicates => {
            format!("{insert} ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id")
        }
    };
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(UNNEST_CHUNK) {
        let text = |f: &dyn Fn(&TransactionRow) -> &str| {
            Value::from(array_literal::text(chunk.iter().map(|(r, _)| f(r))))
        };
        let integers = |f: &dyn Fn(&TransactionRow) -> i64| {
            Value::from(array_literal::integers(chunk.iter().map(|(r, _)| f(r))))
        };
        // Timestamps stay a bound array: sqlx's encoding is the one every other path uses
        // (it truncates nanoseconds toward 2000-01-01), and one column of them is cheap.
        let datetimes = Value::Array(
            ArrayType::ChronoDateTimeUtc,
            Some(Box::new(
                chunk
                    .iter()
                    .map(|(r, _)| Value::ChronoDateTimeUtc(r.transaction_datetime))
                    .collect(),
            )),
        );
        // In the order of TX_COLUMNS.
        let values = vec![
            text(&|r| &r.transaction_id),
            text(&|r| &r.account_number),
            text(&|r| &r.transaction_reference),
            datetimes,
            text(&|r| r.kind),
            integers(&|r| r.amount_cents),
            text(&|r| &r.currency),
            integers(&|r| r.branch_id),
            text(&|r| &r.description),
            integers(&|r| i64::from(r.source_partition)),
            integers(&|r| r.source_offset),
        ];
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, &sql, values);
        if mode == UnnestMode::Plain {
            txn.execute_raw(statement).await?;
            continue;
        }
        for row in txn.query_all_raw(statement).await? {
            inserted.insert(row.try_get::<String>("", "transaction_id")?);
        }
    }
    Ok(inserted)
}

/// Adds each account's delta; returns the balances after.
async fn move_balances(
    txn: &DatabaseTransaction,
    deltas: &BTreeMap<&str, (i64, i64)>,
) -> Result<HashMap<String, i64>, DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        const SQL: &str = "INSERT INTO accounts (account_number, balance_cents, transaction_count) \
            SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[]) \
            ON CONFLICT (account_number) DO UPDATE SET \
            balance_cents = accounts.balance_cents + excluded.balance_cents, \
            transaction_count = accounts.transaction_count + excluded.transaction_count \
            RETURNING account_number, balance_cents";
        let values = vec![
            Value::from(array_literal::text(deltas.keys().copied())),
            Value::from(array_literal::integers(deltas.values().map(|(d, _)| d))),
            Value::from(array_literal::integers(deltas.values().map(|(_, n)| n))),
        ];
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, SQL, values);
        let mut after = HashMap::with_capacity(deltas.len());
        for row in txn.query_all_raw(statement).await? {
            after.insert(
                row.try_get("", "account_number")?,
                row.try_get("", "balance_cents")?,
            );
        }
        return Ok(after);
    }
    let mut after = HashMap::with_capacity(deltas.len());
    let entries: Vec<_> = deltas.iter().collect();
    for chunk in entries.chunks(MAX_PARAMS / 3) {
        let mut upsert = Query::insert();
        upsert.into_table("accounts").columns([
            "account_number",
            "balance_cents",
            "transaction_count",
        ]);
        for (account, (delta, count)) in chunk {
            upsert.values_panic([(**account).into(), (*delta).into(), (*count).into()]);
        }
        upsert
            .on_conflict(
                OnConflict::column("account_number")
                    .values([
                        // SQLite turns an overflowing integer sum into a float instead of
                        // failing; the guard makes it NULL, which the NOT NULL column refuses
                        // (PostgreSQL raises "bigint out of range" by itself).
                        (
                            "balance_cents",
                            Expr::cust(
                                "CASE WHEN accounts.balance_cents + excluded.balance_cents \
                                 BETWEEN -9223372036854775808 AND 9223372036854775807 \
                                 THEN accounts.balance_cents + excluded.balance_cents END",
                            ),
                        ),
                        (
                            "transaction_count",
                            Expr::cust("accounts.transaction_count + excluded.transaction_count"),
                        ),
                    ])
                    .to_owned(),
            )
            .returning(Query::returning().columns(["account_number", "balance_cents"]));
        for row in txn.query_all(&upsert).await? {
            after.insert(
                row.try_get("", "account_number")?,
                row.try_get("", "balance_cents")?,
            );
        }
    }
    Ok(after)
}

/// Moves each partition's stored offset from `span.expected` to `span.next`, or fails with
/// [`ApplyError::Fenced`] if the database holds anything else (compare-and-set). Under
/// PostgreSQL's READ COMMITTED a concurrent writer of the same partition waits on the row lock
/// and then re-checks the condition, so exactly one of two racing shares wins.
pub(crate) async fn advance_offsets(
    txn: &DatabaseTransaction,
    group: &str,
    offsets: &BTreeMap<(String, i32), OffsetSpan>,
) -> Result<(), ApplyError> {
    for ((topic, partition), span) in offsets {
        let moved = match span.expected {
            Some(expected) => {
                let update = Query::update()
                    .table("consumer_offsets")
                    .value("next_offset", span.next)
                    .and_where(Expr::col("group_id").eq(group))
                    .and_where(Expr::col("topic").eq(topic.as_str()))
                    .and_where(Expr::col("partition").eq(*partition))
                    .and_where(Expr::col("next_offset").eq(expected))
                    .to_owned();
                txn.execute(&update).await?.rows_affected()
            }
            None => {
                let insert = Query::insert()
                    .into_table("consumer_offsets")
                    .columns(["group_id", "topic", "partition", "next_offset"])
                    .values_panic([
                        group.into(),
                        topic.clone().into(),
                        (*partition).into(),
                        span.next.into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["group_id", "topic", "partition"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned();
                txn.execute(&insert).await?.rows_affected()
            }
        };
        if moved != 1 {
            let found = load_offsets(txn, group, &[(topic.clone(), *partition)])
                .await?
                .get(&(topic.clone(), *partition))
                .copied();
            return Err(ApplyError::Fenced {
                topic: topic.clone(),
                partition: *partition,
                expected: span.expected,
                found,
            });
        }
    }
    Ok(())
}

fn transaction_values(row: &TransactionRow) -> [SimpleExpr; 11] {
    [
        row.transaction_id.clone().into(),
        row.account_number.clone().into(),
        row.transaction_reference.clone().into(),
        row.transaction_datetime.into(),
        row.kind.into(),
        row.amount_cents.into(),
        row.currency.clone().into(),
        row.branch_id.into(),
        row.description.clone().into(),
        row.source_partition.into(),
        row.source_offset.into(),
    ]
}

/// The stored kind as the static string the rows carry.
fn kind_of(stored: &str) -> Result<&'static str, DbErr> {
    match stored {
        "DEPOSIT" => Ok("DEPOSIT"),
        "WITHDRAWAL" => Ok("WITHDRAWAL"),
        other => Err(DbErr::Type(format!(
            "stored transaction kind {other:?} is not DEPOSIT or WITHDRAWAL"
        ))),
    }
}

fn transaction_from_row(row: &QueryResult) -> Result<TransactionRow, DbErr> {
    Ok(TransactionRow {
        transaction_id: row.try_get("", "transaction_id")?,
        account_number: row.try_get("", "account_number")?,
        transaction_reference: row.try_get("", "transaction_reference")?,
        transaction_datetime: row.try_get("", "transaction_datetime")?,
        kind: kind_of(&row.try_get::<String>("", "kind")?)?,
        amount_cents: row.try_get("", "amount_cents")?,
        currency: row.try_get("", "currency")?,
        branch_id: row.try_get("", "branch_id")?,
        description: row.try_get("", "description")?,
        source_partition: row.try_get("", "source_partition")?,
        source_offset: row.try_get("", "source_offset")?,
    })
}
