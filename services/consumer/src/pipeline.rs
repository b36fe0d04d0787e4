//! The async half of a consumer role: batches records, decodes and validates them, sends poison
//! to dead-letter topics, hands the batch to the role's [`Sink`]s, and only then commits offsets
//! to Kafka. Transient failures (registry, dead-letter topic, database) are retried with a
//! bounded backoff while the Kafka thread keeps the instance in its group.
//!
//! A role may have several sinks, each driven by its own writer task: partition `p` of every
//! topic always goes to writer `p % writers`, so each partition is still applied in order, and a
//! branch's customers and transactions (same partition number on both topics) meet in the same
//! writer. With a database behind the sinks, that is what lets two backends work at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank_contract::pb::{Customer, Transaction};
use bank_contract::{Decoder, validate};
use bank_runtime::shutdown::Stop;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::{Control, Record, Source};

/// Where a decoded event was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A batch of valid events, in consumption order per partition, with the offsets it covers.
#[derive(Debug, Default)]
pub struct Decoded {
    pub customers: Vec<(Customer, Position)>,
    pub transactions: Vec<(Transaction, Position)>,
    /// `(topic, partition) -> next offset`, poison messages included.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Records read, poison included.
    pub records: usize,
}

/// What a role does with a batch. `apply` must be idempotent per event: after a crash or a
/// rebalance the same events may be applied again, and an error means the whole batch is
/// offered again after a pause.
pub trait Sink: Send {
    fn apply(&mut self, batch: &Decoded) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub max_records: usize,
    pub linger: Duration,
    pub transactions_topic: String,
    pub customers_topic: String,
}

/// Retry pauses double from 100 ms up to this bound.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

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
/// will be consumed again from the stored offsets).
const GRACE: Duration = Duration::from_secs(20);

impl<S: Sink + 'static> Pipeline<S> {
    /// Runs until `stop` is requested, then commits what it holds (bounded) and returns the sinks
    /// and the last offsets committed, for a final commit to Kafka.
    ///
    /// The halves run concurrently: this task batches, decodes and dead-letters; each writer task
    /// applies its share of every batch to its sink, one batch after the other. While batch N is
    /// written, batch N+1 is being prepared, so neither the database nor the decoding waits for
    /// the other.
    pub async fn run(self, source: &mut Source, stop: Stop) -> (Vec<S>, TopicPartitionList) {
        let Pipeline {
            settings,
            decoder,
            dead_letters,
            sinks,
            health,
            metrics,
        } = self;
        assert!(!sinks.is_empty(), "a pipeline needs at least one sink");
        let mut to_writers = Vec::with_capacity(sinks.len());
        let mut writers = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let (to_writer, from_front) = tokio::sync::mpsc::channel(1);
            to_writers.push(to_writer);
            writers.push(tokio::spawn(write_loop(
                sink,
                from_front,
                source.consumer.clone(),
                health.clone(),
                metrics.clone(),
                stop.clone(),
            )));
        }
        let to_writer = Writers(to_writers);
        let front = Front {
            settings,
            decoder,
            dead_letters,
            metrics,
        };
        let mut batch: Vec<Record> = Vec::with_capacity(front.settings.max_records);
        let mut deadline: Option<tokio::time::Instant> = None;
        let stopping = {
            let stop = stop.clone();
            async move {
                while !stop.is_requested() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        tokio::pin!(stopping);
        loop {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stopping => {
                    // Records still in the channel are simply not committed: the next start
                    // reads them again from the stored offsets. (Draining would race the
                    // polling thread, which keeps refilling until it is stopped.)
                    front.hand_over(&mut batch, source, true, &to_writer).await;
                    break;
                }
                control = source.control.recv() => match control {
                    Some(Control::Revoke { generation, done }) => {
                        while let Ok(record) = source.records.try_recv() {
                            batch.push(record);
                        }
                        batch.retain(|r| r.generation == generation);
                        front.hand_over(&mut batch, source, true, &to_writer).await;
                        let _ = tokio::time::timeout(GRACE, to_writer.barrier()).await;
                        deadline = None;
                        let _ = done.send(());
                    }
                    None => break,
                },
                record = source.records.recv() => match record {
                    Some(record) => {
                        if batch.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + front.settings.linger);
                        }
                        batch.push(record);
                        if batch.len() >= front.settings.max_records {
                            front.hand_over(&mut batch, source, false, &to_writer).await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                _ = linger => {
                    front.hand_over(&mut batch, source, false, &to_writer).await;
                    deadline = None;
                }
            }
        }
        drop(to_writer);
        let mut sinks = Vec::with_capacity(writers.len());
        let mut committed = TopicPartitionList::new();
        let deadline = tokio::time::Instant::now() + GRACE + Duration::from_secs(5);
        for writer in writers {
            match tokio::time::timeout_at(deadline, writer).await {
                Ok(Ok((sink, offsets))) => {
                    sinks.push(sink);
                    for element in offsets.elements() {
                        let _ = committed.add_partition_offset(
                            element.topic(),
                            element.partition(),
                            element.offset(),
                        );
                    }
                }
                _ => panic!("a writer did not finish within its grace period"),
            }
        }
        (sinks, committed)
    }
}

/// The front's side of the writer tasks' channels.
struct Writers(Vec<tokio::sync::mpsc::Sender<ToWriter>>);

impl Writers {
    /// Hands each writer its share of the batch (`partition % writers`).
    async fn send(&self, parts: Vec<Decoded>) {
        for (writer, part) in self.0.iter().zip(parts) {
            if part.records > 0 {
                let _ = writer.send(ToWriter::Batch(part)).await;
            }
        }
    }

    /// Resolves once every writer has written everything it was handed before.
    async fn barrier(&self) {
        let mut waits = Vec::with_capacity(self.0.len());
        for writer in &self.0 {
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

/// Applies batches in order, retrying each until it is written (or, when stopping, until the
/// grace period ends), then commits its offsets to Kafka for lag monitoring.
async fn write_loop<S: Sink>(
    mut sink: S,
    mut batches: tokio::sync::mpsc::Receiver<ToWriter>,
    consumer: Arc<crate::source::GroupConsumer>,
    health: Arc<Health>,
    metrics: Metrics,
    stop: Stop,
) -> (S, TopicPartitionList) {
    let mut committed = TopicPartitionList::new();
    while let Some(message) = batches.recv().await {
        let decoded = match message {
            ToWriter::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
            ToWriter::Batch(decoded) => decoded,
        };
        let mut backoff = Duration::from_millis(100);
        let mut stopping_since: Option<Instant> = None;
        let written = loop {
            let applying = Instant::now();
            match sink.apply(&decoded).await {
                Ok(()) => {
                    health.set_database(true);
                    metrics
                        .commit_seconds
                        .observe(applying.elapsed().as_secs_f64());
                    metrics.batch_size.observe(decoded.records as f64);
                    break true;
                }
                Err(error) => {
                    health.set_database(false);
                    metrics
                        .retries
                        .get_or_create(&crate::metrics::OperationLabel {
                            operation: "apply".into(),
                        })
                        .inc();
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?backoff, "apply failed; retrying");
                    if stop.is_requested() {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= GRACE {
                            tracing::warn!("giving up on this batch; it will be consumed again");
                            break false;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        if !written {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &decoded.offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
            let _ = committed.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "offset commit to Kafka failed (lag metrics only)");
        }
    }
    (sink, committed)
}

/// The preparing half: decoding, validation and dead letters.
struct Front {
    settings: BatchSettings,
    decoder: Arc<Decoder>,
    dead_letters: DeadLetters,
    metrics: Metrics,
}

impl Front {
    /// Decodes and dead-letters `batch` (retrying transient failures; bounded when `finishing`),
    /// hands the valid events to the writer, and clears the batch.
    async fn hand_over(
        &self,
        batch: &mut Vec<Record>,
        source: &Source,
        finishing: bool,
        to_writer: &Writers,
    ) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let current = source.generation.load(Ordering::SeqCst);
        batch.retain(|r| r.generation == current || finishing);
        let records = std::mem::take(batch);
        let mut backoff = Duration::from_millis(100);
        let mut pause = |what: &str, error: &anyhow::Error| {
            tracing::warn!(error = format!("{error:#}"), retry_in = ?backoff, "{what} failed; retrying");
            self.metrics
                .retries
                .get_or_create(&crate::metrics::OperationLabel {
                    operation: what.to_owned(),
                })
                .inc();
            let pause = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pause
        };
        let give_up = |started: Instant| {
            (finishing && started.elapsed() >= GRACE)
                || (!finishing && source.generation.load(Ordering::SeqCst) != current)
        };
        let (decoded, poison) = loop {
            match self.decode(&records, to_writer.0.len()).await {
                Ok(result) => break result,
                Err(error) => {
                    let wait = pause("decode", &error);
                    if give_up(started) {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };
        while !poison.is_empty() {
            match self.dead_letters.send_all(&poison).await {
                Ok(()) => {
                    for letter in &poison {
                        self.metrics
                            .dead_lettered
                            .get_or_create(&crate::metrics::DeadLetterLabels {
                                topic: letter.record.topic.clone(),
                                reason: letter.reason_kind.to_owned(),
                            })
                            .inc();
                    }
                    break;
                }
                Err(error) => {
                    let wait = pause("dead_letter", &error);
                    if give_up(started) {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        to_writer.send(decoded).await;
    }

    /// Splits records into valid events, one [`Decoded`] per writer (`partition % writers`), and
    /// poison. Fails only on a transient registry problem.
    async fn decode(
        &self,
        records: &[Record],
        writers: usize,
    ) -> anyhow::Result<(Vec<Decoded>, Vec<DeadLetter>)> {
        let mut parts: Vec<Decoded> = (0..writers).map(|_| Decoded::default()).collect();
        let mut poison = Vec::new();
        for record in records {
            let decoded = &mut parts[record.partition.unsigned_abs() as usize % writers];
            decoded.records += 1;
            let entry = decoded
                .offsets
                .entry((record.topic.clone(), record.partition))
                .or_insert(0);
            *entry = (*entry).max(record.offset + 1);
            let position = Position {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            };
            let bytes = record.payload.as_deref().unwrap_or_default();
            let outcome = if record.topic == self.settings.transactions_topic {
                match self.decoder.decode::<Transaction>(bytes).await {
                    Ok(tx) => match validate::transaction(&tx) {
                        Ok(()) => {
                            decoded.transactions.push((tx, position));
                            Ok(())
                        }
                        Err(violation) => Err(("contract-violation", violation.to_string())),
                    },
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => Err((e.kind(), e.to_string())),
                }
            } else if record.topic == self.settings.customers_topic {
                match self.decoder.decode::<Customer>(bytes).await {
                    Ok(c) => match validate::customer(&c) {
                        Ok(()) => {
                            decoded.customers.push((c, position));
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
                    topic = record.topic,
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
                });
            }
        }
        Ok((parts, poison))
    }
}
