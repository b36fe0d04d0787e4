//! The async half of a consumer role: batches records, decodes and validates them, sends poison
//! to dead-letter topics, hands the batch to the role's [`Sink`], and only then commits offsets
//! to Kafka. Transient failures (registry, dead-letter topic, database) are retried with a
//! bounded backoff while the Kafka thread keeps the instance in its group.

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
    pub sink: S,
    pub health: Arc<Health>,
    pub metrics: Metrics,
}

impl<S: Sink> Pipeline<S> {
    /// Runs until `stop` is requested, then commits what it holds (bounded) and returns the
    /// last offsets committed, for a final commit to Kafka.
    pub async fn run(mut self, source: &mut Source, stop: Stop) -> (S, TopicPartitionList) {
        let mut batch: Vec<Record> = Vec::with_capacity(self.settings.max_records);
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut committed = TopicPartitionList::new();
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
                    while let Ok(record) = source.records.try_recv() {
                        batch.push(record);
                    }
                    self.flush(&mut batch, source, &mut committed, Some(Duration::from_secs(20))).await;
                    break;
                }
                control = source.control.recv() => match control {
                    Some(Control::Revoke { generation, done }) => {
                        while let Ok(record) = source.records.try_recv() {
                            batch.push(record);
                        }
                        batch.retain(|r| r.generation == generation);
                        self.flush(&mut batch, source, &mut committed, Some(Duration::from_secs(20))).await;
                        deadline = None;
                        let _ = done.send(());
                    }
                    None => break,
                },
                record = source.records.recv() => match record {
                    Some(record) => {
                        if batch.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.settings.linger);
                        }
                        batch.push(record);
                        if batch.len() >= self.settings.max_records {
                            self.flush(&mut batch, source, &mut committed, None).await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                _ = linger => {
                    self.flush(&mut batch, source, &mut committed, None).await;
                    deadline = None;
                }
            }
        }
        (self.sink, committed)
    }

    /// Decodes, dead-letters and applies `batch`, retrying transient failures until it succeeds,
    /// the give-up bound passes, a stop is requested, or the batch's generation ends. Clears it.
    async fn flush(
        &mut self,
        batch: &mut Vec<Record>,
        source: &Source,
        committed: &mut TopicPartitionList,
        give_up_after: Option<Duration>,
    ) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let current = source.generation.load(Ordering::SeqCst);
        batch.retain(|r| r.generation == current || give_up_after.is_some());
        let records = std::mem::take(batch);
        let mut backoff = Duration::from_millis(100);
        let retries = self.metrics.retries.clone();
        let mut attempt = |what: &str, error: &anyhow::Error| {
            tracing::warn!(error = format!("{error:#}"), retry_in = ?backoff, "{what} failed; retrying");
            retries
                .get_or_create(&crate::metrics::OperationLabel {
                    operation: what.to_owned(),
                })
                .inc();
            let pause = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pause
        };
        let out_of_time =
            |started: Instant| give_up_after.is_some_and(|limit| started.elapsed() >= limit);

        let (decoded, poison) = loop {
            match self.decode(&records).await {
                Ok(result) => break result,
                Err(error) => {
                    let pause = attempt("decode", &error);
                    if out_of_time(started)
                        || source.generation.load(Ordering::SeqCst) != current
                            && give_up_after.is_none()
                    {
                        return;
                    }
                    tokio::time::sleep(pause).await;
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
                    let pause = attempt("dead_letter", &error);
                    if out_of_time(started) {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
        loop {
            let applying = Instant::now();
            match self.sink.apply(&decoded).await {
                Ok(()) => {
                    self.health.set_database(true);
                    self.metrics
                        .commit_seconds
                        .observe(applying.elapsed().as_secs_f64());
                    self.metrics.batch_size.observe(decoded.records as f64);
                    break;
                }
                Err(error) => {
                    self.health.set_database(false);
                    let pause = attempt("apply", &error);
                    if out_of_time(started) {
                        tracing::warn!("giving up on this batch; it will be consumed again");
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
        // For lag monitoring only: the database holds the offsets that count.
        for ((topic, partition), next) in &decoded.offsets {
            let _ = committed.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &decoded.offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(error) = source.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "offset commit to Kafka failed (lag metrics only)");
        }
    }

    /// Splits records into valid events and poison. Fails only on a transient registry problem.
    async fn decode(&self, records: &[Record]) -> anyhow::Result<(Decoded, Vec<DeadLetter>)> {
        let mut decoded = Decoded {
            records: records.len(),
            ..Decoded::default()
        };
        let mut poison = Vec::new();
        for record in records {
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
        Ok((decoded, poison))
    }
}
