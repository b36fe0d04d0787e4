//! The async half of a consumer role: batches records, decodes and validates them, sends poison
//! to dead-letter topics, hands the batch to the role's [`Sink`]s, and only then commits offsets
//! to Kafka. Transient failures (registry, dead-letter topic, database) are retried with the
//! shared [`Backoff`] while the Kafka thread keeps the instance in its group. A fenced share
//! (another writer moved its partitions) is dropped and the partitions re-read from the
//! database. Every task selects on the stop signal; stopping is bounded by [`GRACE`], and a
//! pipeline that cannot finish in time, or whose polling thread died, ends with an error, so the
//! process exits non-zero.
//!
//! A role may have several sinks, each driven by its own writer task: partition `p` of every
//! topic always goes to writer `p % writers`, so each partition is still applied in order, and a
//! branch's customers and transactions (same partition number on both topics) meet in the same
//! writer. With a database behind the sinks, that is what lets two backends work at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::{Decoder, validate};
use bank_plumbing::backoff::Backoff;
use bank_plumbing::shutdown::Stop;
use bank_storage::ledger::{ApplyError, Batch, CustomerRow, OffsetSpan, TransactionRow};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::{Control, PartitionKey, Record, Reseek, Source};

/// Where a decoded event was read from, and its claim on the in-flight budget.
///
/// Until the batch is decoded it also holds the record (shared with the batch); once decoded,
/// [`Decoded::release_records`] lets the record's bytes go: at full speed the records in flight
/// were about a third of the consumer's memory, and only an event the database refuses needs
/// them again, which the dead-letter path then reads back from Kafka
/// ([`DeadLetters::refetch`]).
#[derive(Debug)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The message's Kafka timestamp, in ms since the epoch.
    pub timestamp_ms: Option<i64>,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Record(Arc<Record>),
    /// The record's share of the byte budget, given back when the position is dropped.
    Budget {
        _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
}

impl Position {
    fn of(record: &Arc<Record>) -> Position {
        Position {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            held: Held::Record(record.clone()),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn key(&self) -> PartitionKey {
        (self.topic.to_string(), self.partition)
    }

    /// The record, if it is still held.
    fn record(&self) -> Option<&Arc<Record>> {
        match &self.held {
            Held::Record(record) => Some(record),
            Held::Budget { .. } => None,
        }
    }

    /// Gives up the record, keeping its budget, if nothing else shares it.
    fn release(&mut self) {
        self.held = match std::mem::replace(&mut self.held, Held::Budget { _permit: None }) {
            Held::Record(shared) => match Arc::try_unwrap(shared) {
                Ok(mut owned) => Held::Budget {
                    _permit: owned.budget.take(),
                },
                Err(shared) => Held::Record(shared),
            },
            budget => budget,
        };
    }
}

/// A batch of valid events, in consumption order per partition, with the offsets it covers.
///
/// The events are decoded once, straight into the rows the ledger stores (the analytics read
/// the same rows): at full speed a batch's copies of its events are most of the consumer's
/// memory, so there is one copy, moved out of the decoded message, not cloned.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The valid events and `(topic, partition) ->` the stored offset the batch continues from
    /// and the next one, poison messages included.
    pub events: Batch,
    /// Where each of `events.customers` was read from, in the same order.
    pub customer_positions: Vec<Position>,
    /// Where each of `events.transactions` was read from, in the same order.
    pub transaction_positions: Vec<Position>,
    /// Records read, poison included.
    pub records: usize,
    /// The source generation the records were read under; older than the current one: stale.
    pub generation: u64,
    /// Partitions whose first record since their position was set is in this batch, with that
    /// record's offset (see [`Record::from_seek`]): at most the partitions assigned, and only in
    /// the first batches after an assignment or a seek, so a list.
    pub sought: Vec<(PartitionKey, i64)>,
    /// The partition of the record covered last: records come in runs of one partition, and
    /// its key is then not built again for every one.
    last_covered: Option<PartitionKey>,
}

/// The dead letters of the events of `decoded` the database refused, with their records read
/// back from Kafka where the batch no longer holds them.
async fn refused_letters(
    decoded: &Decoded,
    refusals: &[bank_storage::ledger::Refusal],
    dead_letters: &DeadLetters,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    use bank_storage::ledger::Item;
    let refused: Vec<(&Position, &bank_storage::ledger::Refusal)> = refusals
        .iter()
        .filter_map(|refusal| {
            let position = match refusal.item {
                Item::Customer(i) => decoded.customer_positions.get(i)?,
                Item::Transaction(i) => decoded.transaction_positions.get(i)?,
            };
            Some((position, refusal))
        })
        .collect();
    let released: Vec<(Arc<str>, i32, i64)> = refused
        .iter()
        .filter(|(position, _)| position.record().is_none())
        .map(|(p, _)| (p.topic.clone(), p.partition, p.offset))
        .collect();
    let mut fetched = dead_letters.refetch(&released).await?.into_iter();
    let mut letters = Vec::with_capacity(refused.len());
    for (position, refusal) in refused {
        let (record, reason) = match position.record() {
            Some(record) => (record.clone(), refusal.message.clone()),
            None => match fetched.next().flatten() {
                Some(record) => (Arc::new(record), refusal.message.clone()),
                // Gone from Kafka (retention) in the seconds since it was read: the letter
                // still says what was refused and where, without the original bytes.
                None => (
                    Arc::new(Record::bare(
                        position.topic.clone(),
                        position.partition,
                        position.offset,
                    )),
                    format!(
                        "{} (the original record is no longer in Kafka)",
                        refusal.message
                    ),
                ),
            },
        };
        letters.push(DeadLetter {
            record,
            reason_kind: refusal.kind,
            reason,
            code: refusal.code.clone(),
        });
    }
    Ok(letters)
}

/// Keeps the items of `items` whose index is not in `drop`.
fn retain_unlisted<T>(items: &mut Vec<T>, drop: &std::collections::HashSet<usize>) {
    let mut index = 0;
    items.retain(|_| {
        index += 1;
        !drop.contains(&(index - 1))
    });
}

impl Decoded {
    fn with_room(generation: u64, transactions: usize, customers: usize) -> Self {
        let mut decoded = Decoded {
            generation,
            ..Decoded::default()
        };
        decoded.events.transactions.reserve_exact(transactions);
        decoded.transaction_positions.reserve_exact(transactions);
        decoded.events.customers.reserve_exact(customers);
        decoded.customer_positions.reserve_exact(customers);
        decoded
    }

    /// The valid transactions with where each was read from.
    pub fn transactions(&self) -> impl Iterator<Item = (&TransactionRow, &Position)> {
        self.events
            .transactions
            .iter()
            .zip(&self.transaction_positions)
    }

    /// Where every valid event was read from, customers first.
    pub fn positions(&self) -> impl Iterator<Item = &Position> {
        self.customer_positions
            .iter()
            .chain(&self.transaction_positions)
    }

    /// Lets the records' bytes go once the batch that shared them is gone (see [`Position`]).
    fn release_records(&mut self) {
        for position in self
            .customer_positions
            .iter_mut()
            .chain(&mut self.transaction_positions)
        {
            position.release();
        }
    }

    /// Drops refused events; their offsets stay covered (they are dead-lettered).
    fn remove(&mut self, refusals: &[bank_storage::ledger::Refusal]) {
        use bank_storage::ledger::Item;
        let mut customers = std::collections::HashSet::new();
        let mut transactions = std::collections::HashSet::new();
        for refusal in refusals {
            match refusal.item {
                Item::Customer(i) => customers.insert(i),
                Item::Transaction(i) => transactions.insert(i),
            };
        }
        retain_unlisted(&mut self.events.customers, &customers);
        retain_unlisted(&mut self.customer_positions, &customers);
        retain_unlisted(&mut self.events.transactions, &transactions);
        retain_unlisted(&mut self.transaction_positions, &transactions);
    }

    /// Notes that `record` is part of this batch (valid or poison).
    fn cover(&mut self, record: &Record) {
        self.records += 1;
        if record.from_seek {
            let key = (record.topic.to_string(), record.partition);
            self.sought.push((key, record.offset));
        }
        let next = record.offset + 1;
        if let Some(key) = &self.last_covered
            && key.1 == record.partition
            && *key.0 == *record.topic
            && let Some(span) = self.events.offsets.get_mut(key)
        {
            span.next = span.next.max(next);
            return;
        }
        let key = (record.topic.to_string(), record.partition);
        self.events
            .offsets
            .entry(key.clone())
            .and_modify(|span| span.next = span.next.max(next))
            .or_insert(OffsetSpan {
                expected: record.expected,
                next,
            });
        self.last_covered = Some(key);
    }

    fn push_transaction(&mut self, tx: Transaction, position: Position) {
        self.events
            .transactions
            .push(transaction_row(tx, &position));
        self.transaction_positions.push(position);
    }

    fn push_customer(&mut self, customer: Customer, position: Position) {
        self.events
            .customers
            .push(customer_row(customer, &position));
        self.customer_positions.push(position);
    }
}

/// A validated transaction as the ledger stores it; its strings are moved, not copied.
fn transaction_row(tx: Transaction, position: &Position) -> TransactionRow {
    let kind = match TransactionKind::try_from(tx.kind) {
        Ok(TransactionKind::Withdrawal) => "WITHDRAWAL",
        _ => "DEPOSIT",
    };
    TransactionRow {
        transaction_datetime: tx.transaction_datetime.as_ref().and_then(to_datetime),
        transaction_id: tx.transaction_id,
        account_number: tx.account_number,
        transaction_reference: tx.transaction_reference,
        kind,
        amount_cents: tx.amount_cents,
        currency: tx.currency,
        branch_id: i64::from(tx.branch_id),
        description: tx.description,
        source_partition: position.partition,
        source_offset: position.offset,
    }
}

/// A validated customer as the ledger stores it.
fn customer_row(c: Customer, position: &Position) -> CustomerRow {
    CustomerRow {
        created_at: c.created_at.as_ref().and_then(to_datetime),
        updated_at: c.updated_at.as_ref().and_then(to_datetime),
        account_number: c.account_number,
        first_name: c.first_name,
        last_name: c.last_name,
        email: c.email,
        branch_id: i64::from(c.branch_id),
        source_partition: position.partition,
        source_offset: position.offset,
    }
}

fn to_datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// Why a sink could not apply a batch, and so what the writer does next.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Retry the same batch after a pause.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// The batch is stale: another writer moved its partitions. Drop it and re-seek.
    #[error("{0}")]
    Fenced(String),
    /// The database refuses rows of this batch for good (SQLSTATE or SQLite code), and no single
    /// event of it is to blame: retried with backoff.
    #[error("refused by the database ({code}): {message}")]
    Rejected { code: String, message: String },
    /// These events will never be applied: dead-letter them, then apply the rest.
    #[error("{} event(s) refused for good", .0.len())]
    Refused(Vec<bank_storage::ledger::Refusal>),
}

impl WriteError {
    pub fn is_transient(&self) -> bool {
        matches!(self, WriteError::Transient(_))
    }
}

impl From<anyhow::Error> for WriteError {
    fn from(error: anyhow::Error) -> Self {
        WriteError::Transient(error)
    }
}

impl From<ApplyError> for WriteError {
    fn from(error: ApplyError) -> Self {
        if let ApplyError::Refused(refusals) = error {
            return WriteError::Refused(refusals);
        }
        match error.disposition() {
            None => WriteError::Fenced(error.to_string()),
            Some(bank_storage::error::Disposition::Rejected { code, message }) => {
                WriteError::Rejected { code, message }
            }
            Some(bank_storage::error::Disposition::Retry) => {
                WriteError::Transient(anyhow::Error::new(error))
            }
        }
    }
}

/// What a role does with a batch. `apply` must be idempotent per event: after a crash or a
/// rebalance the same events may be applied again, and a transient error means the whole batch
/// is offered again after a pause.
pub trait Sink: Send {
    fn apply(&mut self, batch: &Decoded) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// How often [`Sink::idle`] runs while no batch comes (None: never).
    fn idle_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work between batches (the ledger posts parked transactions whose customer
    /// arrived through another writer).
    fn idle(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The generation whose positions the sink stopped trusting during [`Sink::idle`] (the
    /// lake found a span claimed by another writer): the writer then asks for the partitions
    /// to be sought again, as it does for a fenced batch, rather than wait for the next batch.
    fn distrusted_generation(&self) -> Option<u64> {
        None
    }

    /// Makes durable whatever the sink still holds of the batches it applied; runs before
    /// partitions move to another instance and when the writer ends. Sinks that write each batch
    /// as it comes hold nothing (the default); the lake gathers rows into files across batches.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub max_records: usize,
    /// A batch is handed over once its records weigh this many bytes, whatever their count.
    pub max_bytes: usize,
    /// Zero: group commit (a batch goes to the writers as soon as they can take one, with
    /// whatever has arrived meanwhile). Otherwise a batch waits this long to fill.
    pub linger: Duration,
    pub transactions_topic: String,
    pub customers_topic: String,
}

pub struct Pipeline<S: Sink> {
    pub settings: BatchSettings,
    pub decoder: Arc<Decoder>,
    pub dead_letters: DeadLetters,
    /// One per writer task (at least one).
    pub sinks: Vec<S>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
}

/// What the preparing half hands the writing half: batches in order, and barriers that are
/// answered once everything before them is written.
enum ToWriter {
    Batch(Decoded),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// How long a stopping or rebalancing pipeline keeps retrying before it lets a batch go (it
/// will be consumed again from the stored offsets). With the Kafka close that follows, a
/// SIGTERM ends the process within 30 s, Kubernetes' default grace period.
pub const GRACE: Duration = Duration::from_secs(10);

/// See [`BatchSettings::linger`].
const GROUP_COMMIT_BACKSTOP: Duration = Duration::from_secs(1);

impl<S: Sink + 'static> Pipeline<S> {
    /// Runs until `stop` is requested, then commits what it holds (bounded) and returns the sinks
    /// and the last offsets committed, for a final commit to Kafka. Fails if the polling thread
    /// ends on its own or a writer does not finish within the grace period.
    ///
    /// The halves run concurrently: this task batches, decodes and dead-letters; each writer task
    /// applies its share of every batch to its sink, one batch after the other. While batch N is
    /// written, batch N+1 is being prepared, so neither the database nor the decoding waits for
    /// the other.
    pub async fn run(
        self,
        source: &mut Source,
        stop: Stop,
    ) -> anyhow::Result<(Vec<S>, TopicPartitionList)> {
        let Pipeline {
            settings,
            decoder,
            dead_letters,
            sinks,
            health,
            metrics,
        } = self;
        anyhow::ensure!(!sinks.is_empty(), "a pipeline needs at least one sink");
        let mut to_writers = Vec::with_capacity(sinks.len());
        let mut writers = Vec::with_capacity(sinks.len());
        let took = Arc::new(tokio::sync::Notify::new());
        for (index, sink) in sinks.into_iter().enumerate() {
            let (to_writer, from_front) = tokio::sync::mpsc::channel(1);
            to_writers.push(to_writer);
            let writer = Writer {
                consumer: source.consumer.clone(),
                dead_letters: dead_letters.clone(),
                reseek: source.reseek_handle(),
                health: health.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
                took: took.clone(),
            };
            let span = tracing::info_span!("writer", index, writers = to_writers.capacity());
            writers.push(tokio::spawn(tracing::Instrument::instrument(
                writer.run(sink, from_front),
                span,
            )));
        }
        let to_writer = Writers {
            channels: to_writers,
            took,
        };
        let front = Front {
            settings,
            decoder,
            dead_letters,
            metrics,
        };
        let ended = front.run(source, &stop, &to_writer).await;
        drop(to_writer);
        let finished = join_writers(writers).await;
        ended?;
        finished
    }
}

/// Waits for every writer (bounded); their sinks and the last offsets each committed.
async fn join_writers<S: Sink + 'static>(
    writers: Vec<tokio::task::JoinHandle<anyhow::Result<(S, TopicPartitionList)>>>,
) -> anyhow::Result<(Vec<S>, TopicPartitionList)> {
    let mut sinks = Vec::with_capacity(writers.len());
    let mut committed = TopicPartitionList::new();
    let deadline = tokio::time::Instant::now() + GRACE + Duration::from_secs(5);
    for mut writer in writers {
        match tokio::time::timeout_at(deadline, &mut writer).await {
            Ok(Ok(Ok((sink, offsets)))) => {
                sinks.push(sink);
                for element in offsets.elements() {
                    let _ = committed.add_partition_offset(
                        element.topic(),
                        element.partition(),
                        element.offset(),
                    );
                }
            }
            Ok(Ok(Err(error))) => return Err(error),
            Ok(Err(error)) => anyhow::bail!("a writer task failed: {error}"),
            Err(_) => {
                writer.abort();
                anyhow::bail!("a writer did not finish within the grace period ({GRACE:?})");
            }
        }
    }
    Ok((sinks, committed))
}

/// The front's side of the writer tasks' channels, and the signal each writer gives when it
/// takes a batch (so the front knows there is room again).
struct Writers {
    channels: Vec<tokio::sync::mpsc::Sender<ToWriter>>,
    took: Arc<tokio::sync::Notify>,
}

impl Writers {
    /// Whether every writer can take a batch without waiting.
    fn have_room(&self) -> bool {
        self.channels.iter().all(|channel| channel.capacity() > 0)
    }

    /// Hands each writer its share of the batch (`partition % writers`). Fails if a writer has
    /// ended (it failed: its error ends the pipeline).
    async fn send(&self, parts: Vec<Decoded>) -> anyhow::Result<()> {
        for (writer, part) in self.channels.iter().zip(parts) {
            if part.records > 0 && writer.send(ToWriter::Batch(part)).await.is_err() {
                anyhow::bail!("a writer has stopped");
            }
        }
        Ok(())
    }

    /// Resolves once every writer has written everything it was handed before.
    async fn barrier(&self) {
        let mut waits = Vec::with_capacity(self.channels.len());
        for writer in &self.channels {
            let (written, wait) = tokio::sync::oneshot::channel();
            if writer.send(ToWriter::Barrier(written)).await.is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }
}

/// A writer task's surroundings.
struct Writer {
    consumer: Arc<crate::source::GroupConsumer>,
    dead_letters: DeadLetters,
    reseek: Reseek,
    health: Arc<Health>,
    metrics: Metrics,
    stop: Stop,
    /// Told each time this writer takes a batch: there is room for the next one.
    took: Arc<tokio::sync::Notify>,
}

/// What became of one batch.
enum Written {
    Committed,
    /// Not written, and it must not be retried (stale, fenced, or the stop's grace is over).
    Dropped,
    /// Not written, and the role cannot go on (dead letters not authorized).
    Failed(String),
}

impl Writer {
    /// Applies batches in order, then commits their offsets to Kafka for lag monitoring; runs
    /// the sink's idle work when no batch comes for its interval.
    async fn run<S: Sink>(
        self,
        mut sink: S,
        mut batches: tokio::sync::mpsc::Receiver<ToWriter>,
    ) -> anyhow::Result<(S, TopicPartitionList)> {
        let mut committed = TopicPartitionList::new();
        let idle_every = sink.idle_interval();
        // When the stop was first seen while a write failed: the grace period runs from there
        // for every batch still queued, not afresh for each.
        let mut stopping_since: Option<Instant> = None;
        loop {
            let idle = async {
                match idle_every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                message = batches.recv() => message,
                _ = idle => {
                    sink.idle().await;
                    if let Some(generation) = sink.distrusted_generation() {
                        self.reseek.request(generation);
                    }
                    continue;
                }
            };
            let decoded = match message {
                None => {
                    sink.flush().await?;
                    break;
                }
                Some(ToWriter::Barrier(done)) => {
                    // What is not durable when partitions move would be read again by their next
                    // owner while this instance still holds it: a failure here ends the role.
                    sink.flush().await?;
                    let _ = done.send(());
                    continue;
                }
                Some(ToWriter::Batch(decoded)) => {
                    self.took.notify_one();
                    decoded
                }
            };
            let mut decoded = decoded;
            match self
                .write(&mut sink, &mut decoded, &mut stopping_since)
                .await
            {
                Written::Committed => {
                    self.metrics.observe_ages(&decoded);
                    self.commit_to_kafka(&decoded, &mut committed);
                }
                Written::Dropped => {}
                Written::Failed(why) => anyhow::bail!(why),
            }
        }
        Ok((sink, committed))
    }

    /// Applies one batch, retrying transient failures with backoff, until the stop's grace
    /// period (shared by every batch of this writer) is over.
    async fn write<S: Sink>(
        &self,
        sink: &mut S,
        decoded: &mut Decoded,
        stopping_since: &mut Option<Instant>,
    ) -> Written {
        let mut backoff = Backoff::default();
        loop {
            if stopping_since.is_some_and(|since| since.elapsed() >= GRACE) {
                return Written::Dropped;
            }
            if self.reseek.current() != decoded.generation {
                tracing::debug!("dropping a batch of an older generation; it will be re-read");
                return Written::Dropped;
            }
            let applying = Instant::now();
            let error = match sink.apply(decoded).await {
                Ok(()) => {
                    self.health.set_database(true);
                    self.metrics
                        .commit_seconds
                        .observe(applying.elapsed().as_secs_f64());
                    self.metrics.batch_size.observe(decoded.records as f64);
                    return Written::Committed;
                }
                Err(error) => error,
            };
            if let WriteError::Fenced(why) = &error {
                self.metrics.fenced.inc();
                tracing::warn!(
                    why,
                    "batch fenced; dropping it and re-reading the partitions"
                );
                self.reseek.request(decoded.generation);
                return Written::Dropped;
            }
            if let WriteError::Refused(refusals) = error {
                // Dead letters first (delivery confirmed), then the rest of the batch, with
                // every offset: nothing refused is lost, nothing accepted waits on it.
                match self
                    .dead_letter_refused(decoded, refusals, stopping_since)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return Written::Dropped,
                    Err(why) => return Written::Failed(why),
                }
                backoff.reset();
                continue;
            }
            if !self
                .wait_to_retry(&error, &mut backoff, stopping_since)
                .await
            {
                return Written::Dropped;
            }
        }
    }

    /// After a transient failure: counts it, then waits the backoff's next pause, cut short by
    /// a stop or a revoke. False when the batch is to be given up: a rebalance is under way
    /// (the next owner reads it again), or the stop's grace period is over.
    async fn wait_to_retry(
        &self,
        error: &WriteError,
        backoff: &mut Backoff,
        stopping_since: &mut Option<Instant>,
    ) -> bool {
        self.health.set_database(false);
        self.metrics
            .retries
            .get_or_create(&crate::metrics::OperationLabel {
                operation: "apply".into(),
            })
            .inc();
        if self.reseek.revoking() {
            tracing::warn!(error = %error, "apply failed during a rebalance; the next owner reads the batch again");
            return false;
        }
        let pause = backoff.next_pause();
        tracing::warn!(error = %error, retry_in = ?pause, "apply failed; retrying");
        if self.stop.is_requested() {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            let left = GRACE.saturating_sub(since.elapsed());
            if left.is_zero() {
                tracing::warn!(
                    "stopping: giving up on what is not written; it will be consumed again"
                );
                return false;
            }
            tokio::time::sleep(pause.min(left)).await;
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = self.stop.requested() => {}
            _ = self.reseek.revoke_started() => {}
        }
        true
    }

    /// Sends the refused events to their dead-letter topics (retrying; bounded when stopping)
    /// and removes them from the batch. False if the stop's grace period ran out first; an
    /// error if dead letters cannot be written at all.
    async fn dead_letter_refused(
        &self,
        decoded: &mut Decoded,
        refusals: Vec<bank_storage::ledger::Refusal>,
        stopping_since: &mut Option<Instant>,
    ) -> Result<bool, String> {
        let mut backoff = Backoff::default();
        // Built (and read back from Kafka) once: a failed send is retried with the same letters.
        let mut built: Option<Vec<DeadLetter>> = None;
        let letters = loop {
            let error = match built.take() {
                None => match refused_letters(decoded, &refusals, &self.dead_letters).await {
                    Ok(letters) => {
                        built = Some(letters);
                        continue;
                    }
                    Err(error) => error,
                },
                Some(letters) => match self.dead_letters.send_all(&letters).await {
                    Ok(()) => break letters,
                    Err(error) => {
                        built = Some(letters);
                        error
                    }
                },
            };
            if let DeadLetterError::Fatal(why) = error {
                return Err(why);
            }
            let pause = backoff.next_pause();
            tracing::warn!(error = format!("{error:#}"), retry_in = ?pause, "dead_letter failed; retrying");
            if self.stop.is_requested()
                && stopping_since.get_or_insert_with(Instant::now).elapsed() >= GRACE
            {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
        };
        for letter in &letters {
            tracing::warn!(
                topic = &*letter.record.topic,
                partition = letter.record.partition,
                offset = letter.record.offset,
                reason = letter.reason_kind,
                message = letter.reason,
                "dead-lettering a message the ledger refuses"
            );
            if letter.reason_kind == "conflicting-duplicate" {
                self.metrics.conflicting_duplicates.inc();
            }
        }
        self.metrics.count_dead_letters(&letters);
        decoded.remove(&refusals);
        Ok(true)
    }

    fn commit_to_kafka(&self, decoded: &Decoded, committed: &mut TopicPartitionList) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), span) in &decoded.events.offsets {
            let next = Offset::Offset(span.next);
            let _ = tpl.add_partition_offset(topic, *partition, next);
            let _ = committed.add_partition_offset(topic, *partition, next);
        }
        if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "offset commit to Kafka failed (lag metrics only)");
        }
    }
}

/// Splits what the front holds at a revoke of `generation`: records of that generation are
/// committed now; newer ones (the polling thread gave up waiting and moved on) are kept for
/// later; older ones are stale and dropped.
fn split_for_revoke(batch: &mut Vec<Arc<Record>>, generation: u64) -> Vec<Arc<Record>> {
    batch.retain(|r| r.generation >= generation);
    let (ending, newer): (Vec<_>, Vec<_>) = std::mem::take(batch)
        .into_iter()
        .partition(|r| r.generation == generation);
    *batch = newer;
    ending
}

/// The preparing half: decoding, validation and dead letters.
struct Front {
    settings: BatchSettings,
    decoder: Arc<Decoder>,
    dead_letters: DeadLetters,
    metrics: Metrics,
}

impl Front {
    /// Batches records until a stop is requested, answering revokes on the way. Fails if the
    /// polling thread goes away without a stop (it died: the process must not carry on idle).
    async fn run(
        &self,
        source: &mut Source,
        stop: &Stop,
        to_writer: &Writers,
    ) -> anyhow::Result<()> {
        // Shared from the start: a batch of 20,000 records inline was 3-5 MiB of vector, which
        // the writers' shares then copied into `Arc`s one by one.
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(self.settings.max_records.min(4096));
        let mut batch_bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        let group_commit = self.settings.linger.is_zero();
        // With group commit the wait is only a backstop: writers that take no batch for this
        // long are sent what has gathered anyway (the send then waits for room).
        let wait = if group_commit {
            GROUP_COMMIT_BACKSTOP
        } else {
            self.settings.linger
        };
        loop {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.requested() => {
                    // Records still in the channel are simply not committed: the next start
                    // reads them again from the stored offsets. (Draining would race the
                    // polling thread, which keeps refilling until it is stopped.)
                    return self.hand_over(&mut batch, source, true, to_writer).await;
                }
                control = source.control.recv() => match control {
                    Some(Control::Revoke { generation, done }) => {
                        self.revoke(&mut batch, source, to_writer, generation).await?;
                        batch_bytes = batch.iter().map(|r| r.weight()).sum();
                        deadline = (!batch.is_empty()).then(tokio::time::Instant::now);
                        let _ = done.send(());
                    }
                    None => return self.source_ended(stop),
                },
                record = source.records.recv() => match record {
                    Some(record) => {
                        if batch.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + wait);
                        }
                        let full = self.gather(&mut batch, &mut batch_bytes, source, record);
                        if full || (group_commit && to_writer.have_room()) {
                            self.hand_over(&mut batch, source, false, to_writer).await?;
                            batch_bytes = 0;
                            deadline = None;
                        }
                    }
                    None => return self.source_ended(stop),
                },
                // Group commit: a writer took its batch, so what has gathered goes next.
                _ = to_writer.took.notified(), if group_commit && !batch.is_empty() => {
                    if to_writer.have_room() {
                        self.hand_over(&mut batch, source, false, to_writer).await?;
                        batch_bytes = 0;
                        deadline = None;
                    }
                }
                _ = linger => {
                    self.hand_over(&mut batch, source, false, to_writer).await?;
                    batch_bytes = 0;
                    deadline = None;
                }
            }
        }
    }

    /// Adds `record` to `batch`, then everything already waiting, up to the batch limits;
    /// returns whether the batch is full.
    fn gather(
        &self,
        batch: &mut Vec<Arc<Record>>,
        batch_bytes: &mut usize,
        source: &mut Source,
        record: Record,
    ) -> bool {
        *batch_bytes += record.weight();
        batch.push(Arc::new(record));
        while batch.len() < self.settings.max_records && *batch_bytes < self.settings.max_bytes {
            let Ok(record) = source.records.try_recv() else {
                break;
            };
            *batch_bytes += record.weight();
            batch.push(Arc::new(record));
        }
        batch.len() >= self.settings.max_records || *batch_bytes >= self.settings.max_bytes
    }

    /// Answers a revoke of `generation`: what is held of that generation, and whatever the
    /// polling thread had already sent, is committed before the partitions go.
    async fn revoke(
        &self,
        batch: &mut Vec<Arc<Record>>,
        source: &mut Source,
        to_writer: &Writers,
        generation: u64,
    ) -> anyhow::Result<()> {
        while let Ok(record) = source.records.try_recv() {
            batch.push(Arc::new(record));
        }
        let mut ending = split_for_revoke(batch, generation);
        // Bounded as a whole: writers stuck on a database that does not answer must not hold
        // the group's rebalance (what is not written by then is read again by the next owner;
        // fencing keeps it exact).
        let commit = async {
            self.hand_over(&mut ending, source, true, to_writer).await?;
            to_writer.barrier().await;
            anyhow::Ok(())
        };
        match tokio::time::timeout(GRACE, commit).await {
            Ok(done) => done?,
            Err(_) => tracing::warn!(?GRACE, "revoke: not everything was written in time"),
        }
        Ok(())
    }

    fn source_ended(&self, stop: &Stop) -> anyhow::Result<()> {
        if stop.is_requested() {
            return Ok(());
        }
        anyhow::bail!("the Kafka polling thread ended unexpectedly")
    }

    /// Decodes and dead-letters `batch` (retrying transient failures; bounded when `finishing`),
    /// hands the valid events to the writers, and clears the batch. Records of an older
    /// generation are stale (a rebalance or re-seek since) and dropped, unless `finishing`.
    async fn hand_over(
        &self,
        batch: &mut Vec<Arc<Record>>,
        source: &Source,
        finishing: bool,
        to_writer: &Writers,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let current = source.reseek_handle().current();
        if !finishing {
            batch.retain(|r| r.generation == current);
        }
        let records = std::mem::take(batch);
        let Some(generation) = records.iter().map(|r| r.generation).min() else {
            return Ok(());
        };
        let mut backoff = Backoff::default();
        let mut pause = |what: &str, error: &anyhow::Error| {
            let pause = backoff.next_pause();
            tracing::warn!(error = format!("{error:#}"), retry_in = ?pause, "{what} failed; retrying");
            self.metrics
                .retries
                .get_or_create(&crate::metrics::OperationLabel {
                    operation: what.to_owned(),
                })
                .inc();
            pause
        };
        let reseek = source.reseek_handle();
        let give_up = |started: Instant| {
            (finishing && started.elapsed() >= GRACE) || (!finishing && reseek.current() != current)
        };
        let (mut decoded, poison) = loop {
            match self
                .decode(&records, to_writer.channels.len(), generation)
                .await
            {
                Ok(result) => break result,
                Err(error) => {
                    let wait = pause("decode", &error);
                    if give_up(started) {
                        return Ok(());
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };
        while !poison.is_empty() {
            match self.dead_letters.send_all(&poison).await {
                Ok(()) => {
                    self.metrics.count_dead_letters(&poison);
                    break;
                }
                Err(DeadLetterError::Fatal(why)) => anyhow::bail!(why),
                Err(DeadLetterError::Transient(error)) => {
                    let wait = pause("dead_letter", &error);
                    if give_up(started) {
                        return Ok(());
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        // The batch's and the letters' shares of the records go first: a position can let its
        // record's bytes go only once it holds the last share.
        drop((records, poison));
        decoded.iter_mut().for_each(Decoded::release_records);
        to_writer.send(decoded).await
    }

    /// Splits records into valid events, one [`Decoded`] per writer (`partition % writers`), and
    /// poison. Fails only on a transient registry problem.
    async fn decode(
        &self,
        records: &[Arc<Record>],
        writers: usize,
        generation: u64,
    ) -> anyhow::Result<(Vec<Decoded>, Vec<DeadLetter>)> {
        // Each share's rows are reserved at once: grown by doubling, the vectors of a batch
        // kept a quarter to a half of their rows' room unused (and briefly twice it while
        // reallocating), a few MiB at the peak.
        let mut room = vec![(0usize, 0usize); writers];
        for record in records {
            let share = &mut room[record.partition.unsigned_abs() as usize % writers];
            if *record.topic == *self.settings.transactions_topic {
                share.0 += 1;
            } else {
                share.1 += 1;
            }
        }
        let mut parts: Vec<Decoded> = room
            .into_iter()
            .map(|(transactions, customers)| {
                Decoded::with_room(generation, transactions, customers)
            })
            .collect();
        let mut poison = Vec::new();
        for record in records {
            let decoded = &mut parts[record.partition.unsigned_abs() as usize % writers];
            decoded.cover(record);
            let position = Position::of(record);
            let bytes = record.payload.as_deref().unwrap_or_default();
            let outcome = if *record.topic == *self.settings.transactions_topic {
                match self.decoder.decode::<Transaction>(bytes).await {
                    Ok(tx) => match validate::canonical_transaction(tx) {
                        Ok(tx) => {
                            decoded.push_transaction(tx, position);
                            Ok(())
                        }
                        Err(violation) => Err(("contract-violation", violation.to_string())),
                    },
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => Err((e.kind(), e.to_string())),
                }
            } else if *record.topic == *self.settings.customers_topic {
                match self.decoder.decode::<Customer>(bytes).await {
                    Ok(c) => match validate::customer(&c) {
                        Ok(()) => {
                            decoded.push_customer(c, position);
                            Ok(())
                        }
                        Err(violation) => Err(("contract-violation", violation.to_string())),
                    },
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => Err((e.kind(), e.to_string())),
                }
            } else {
                Err((
                    "unexpected-topic",
                    format!("no role reads topic {}", record.topic),
                ))
            };
            if let Err((kind, message)) = outcome {
                tracing::warn!(
                    topic = &*record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    reason = kind,
                    message,
                    "dead-lettering a message"
                );
                poison.push(DeadLetter {
                    record: record.clone(),
                    reason_kind: kind,
                    reason: message,
                    code: None,
                });
            }
        }
        Ok((parts, poison))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, expected: Option<i64>, generation: u64) -> Record {
        Record {
            expected,
            generation,
            ..Record::bare("t".into(), partition, offset)
        }
    }

    /// The revoke of generation 1 is handled late, after the polling thread gave up waiting and
    /// started generation 2: its records must be kept, not thrown away with the old ones.
    #[test]
    fn a_late_revoke_keeps_the_newer_generation() {
        let mut batch: Vec<Arc<Record>> = [
            record(0, 5, Some(5), 0),
            record(0, 10, Some(10), 1),
            record(1, 3, None, 2),
            record(0, 11, Some(11), 1),
            record(1, 4, Some(4), 2),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let ending = split_for_revoke(&mut batch, 1);
        let offsets =
            |records: &[Arc<Record>]| records.iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&ending), [10, 11], "generation 1 is committed now");
        assert_eq!(offsets(&batch), [3, 4], "generation 2 waits for its turn");
        assert!(batch.iter().all(|r| r.generation == 2));
    }

    /// A share's span of a partition starts where its first record continues from and ends
    /// after its last, whatever lies between (dead letters included, gaps of Kafka's own).
    #[test]
    fn a_share_covers_from_the_first_expected_to_the_last_offset() {
        let mut share = Decoded::default();
        share.cover(&record(0, 7, Some(5), 1)); // 5 and 6 were control records
        share.cover(&record(0, 8, Some(8), 1));
        share.cover(&record(2, 0, None, 1));
        share.cover(&record(0, 9, Some(9), 1)); // back to partition 0 after another
        assert_eq!(
            share.events.offsets[&("t".to_owned(), 0)],
            OffsetSpan {
                expected: Some(5),
                next: 10
            }
        );
        assert_eq!(
            share.events.offsets[&("t".to_owned(), 2)],
            OffsetSpan {
                expected: None,
                next: 1
            }
        );
        assert_eq!(share.records, 4);
    }
}
