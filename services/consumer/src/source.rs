//! The Kafka side of a consumer role: a dedicated thread that polls the group consumer and hands
//! records to the async pipeline through a bounded channel.
//!
//! Why a thread: rebalance callbacks run inside `poll`, and on assignment we must read the
//! partitions' offsets from the database before any record is fetched; on a plain thread that is a
//! simple blocking call. And when the pipeline is stuck (database down), the thread pauses the
//! partitions but keeps polling, so the instance stays in the group instead of being evicted for
//! not polling.
//!
//! Every record carries the generation of the assignment it was fetched under. A rebalance ends
//! a generation: the pipeline first gets the chance to commit what it holds, then discards any
//! record of an older generation (the eager protocol revokes everything, and the next assignment
//! seeks to the offsets stored in the database, so nothing is lost).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;

use crate::health::Health;
use crate::metrics::{Metrics, PartitionLabels, TopicLabel};

/// A record as the pipeline needs it, detached from librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub generation: u64,
}

/// Requests from the Kafka thread that the pipeline must answer before the thread goes on.
#[derive(Debug)]
pub enum Control {
    /// Partitions are about to be revoked: commit what you hold of generation `generation`, then
    /// reply. Anything not committed by then is dropped and consumed again by the next owner.
    Revoke {
        generation: u64,
        done: std::sync::mpsc::SyncSender<()>,
    },
}

/// Where stored offsets come from on assignment.
pub trait OffsetStore: Send + Sync + 'static {
    /// Next offsets for the given partitions, or an error if the store cannot answer now.
    fn load(
        &self,
        partitions: &[(String, i32)],
    ) -> anyhow::Result<std::collections::HashMap<(String, i32), i64>>;
}

pub struct SourceContext {
    offsets: Box<dyn OffsetStore>,
    /// Topic read to its end before the others at every assignment (the customers topic), so
    /// that a backlog does not park every transaction only to post it again moments later.
    first: Option<String>,
    /// Partitions of `first` still catching up: partition -> offset to reach.
    catch_up: Mutex<std::collections::HashMap<(String, i32), i64>>,
    /// Partitions of the other topics held back meanwhile, and since when.
    held: Mutex<TopicPartitionList>,
    held_since: Mutex<Option<std::time::Instant>>,
    control: mpsc::UnboundedSender<Control>,
    generation: Arc<AtomicU64>,
    pending: Mutex<VecDeque<Record>>,
    assignment: Mutex<TopicPartitionList>,
    health: Arc<Health>,
    metrics: Metrics,
}

/// Longest hold of the other topics while the first one catches up.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// How long a rebalance waits for the pipeline to commit what it holds.
const REVOKE_GRACE: Duration = Duration::from_secs(30);

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let broker_up = stats.brokers.values().any(|b| b.state == "UP");
        self.health.set_kafka(broker_up);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: partition.to_string(),
                    })
                    .set(p.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.health.set_kafka(false);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer),
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                self.revoke(consumer);
            }
        }
    }
}

impl SourceContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        match self.offsets.load(&partitions) {
            Ok(stored) => {
                for ((topic, partition), next) in &stored {
                    if let Err(error) =
                        tpl.set_partition_offset(topic, *partition, Offset::Offset(*next))
                    {
                        tracing::warn!(%error, topic, partition, "cannot seek to the stored offset");
                    }
                }
                tracing::info!(
                    ?partitions,
                    stored = stored.len(),
                    "partitions assigned; resuming at the database's offsets"
                );
            }
            Err(error) => {
                // Safe, only slower: Kafka's committed offsets never pass the database's, and
                // every write is idempotent, so re-reading a little is harmless.
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read stored offsets; resuming at Kafka's committed offsets"
                );
            }
        }
        if let Err(error) = consumer.assign(tpl) {
            tracing::error!(%error, "assign failed");
        }
        self.hold_until_first_topic_caught_up(consumer, tpl);
        self.health.set_assigned(partitions.len());
        *self.assignment.lock().unwrap_or_else(|e| e.into_inner()) = tpl.clone();
    }

    fn hold_until_first_topic_caught_up(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) {
        let Some(first) = &self.first else { return };
        let mut catch_up = std::collections::HashMap::new();
        let mut held = TopicPartitionList::new();
        for element in tpl.elements() {
            if element.topic() != first {
                let _ = held.add_partition(element.topic(), element.partition());
                continue;
            }
            let end = consumer
                .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0);
            let start = match element.offset() {
                Offset::Offset(n) => n,
                _ => consumer
                    .committed_offsets(
                        {
                            let mut one = TopicPartitionList::new();
                            let _ = one.add_partition(element.topic(), element.partition());
                            one
                        },
                        Duration::from_secs(5),
                    )
                    .ok()
                    .and_then(|c| c.elements().first().and_then(|e| e.offset().to_raw()))
                    .filter(|n| *n >= 0)
                    .unwrap_or(0),
            };
            if start < end {
                catch_up.insert((element.topic().to_owned(), element.partition()), end);
            }
        }
        if !catch_up.is_empty() && held.count() > 0 {
            tracing::info!(
                behind = catch_up.len(),
                "reading {first} to its end before the other topics"
            );
            let _ = consumer.pause(&held);
            *self.catch_up.lock().unwrap_or_else(|e| e.into_inner()) = catch_up;
            *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
            *self.held_since.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
        }
    }

    /// Never hold the other topics for long: parking covers whatever is still out of order.
    fn release_hold_if_overdue(&self, consumer: &BaseConsumer<Self>) {
        let overdue = self
            .held_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|since| since.elapsed() > MAX_HOLD);
        if overdue {
            self.catch_up
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            let held = std::mem::replace(
                &mut *self.held.lock().unwrap_or_else(|e| e.into_inner()),
                TopicPartitionList::new(),
            );
            *self.held_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = consumer.resume(&held);
            tracing::warn!(
                ?MAX_HOLD,
                "first topic still behind; reading every topic anyway"
            );
        }
    }

    /// Notes progress on the first topic; releases the held partitions once it caught up.
    fn note_first_topic_progress(
        &self,
        consumer: &BaseConsumer<Self>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let mut catch_up = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        if catch_up.is_empty() || self.first.as_deref() != Some(topic) {
            return;
        }
        let key = (topic.to_owned(), partition);
        if catch_up.get(&key).is_some_and(|end| offset + 1 >= *end) {
            catch_up.remove(&key);
            if catch_up.is_empty() {
                *self.held_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let held = std::mem::replace(
                    &mut *self.held.lock().unwrap_or_else(|e| e.into_inner()),
                    TopicPartitionList::new(),
                );
                let _ = consumer.resume(&held);
                tracing::info!("caught up with the first topic; reading every topic");
            }
        }
    }

    /// Re-applies the catch-up hold after a blanket resume.
    fn reapply_hold(&self, consumer: &BaseConsumer<Self>) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.count() > 0 {
            let _ = consumer.pause(&held);
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>) {
        self.catch_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = TopicPartitionList::new();
        let ending = self.generation.load(Ordering::SeqCst);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self
            .control
            .send(Control::Revoke {
                generation: ending,
                done,
            })
            .is_ok()
            && finished.recv_timeout(REVOKE_GRACE).is_err()
        {
            tracing::warn!(
                "pipeline did not commit within {REVOKE_GRACE:?}; its batch will be consumed again"
            );
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = consumer.unassign() {
            tracing::error!(%error, "unassign failed");
        }
        self.health.set_assigned(0);
        *self.assignment.lock().unwrap_or_else(|e| e.into_inner()) = TopicPartitionList::new();
        tracing::info!("partitions revoked");
    }
}

/// The Kafka consumer of a role, shared between the polling thread and the pipeline (which
/// commits offsets to Kafka, for lag monitoring, after each database commit).
pub type GroupConsumer = BaseConsumer<SourceContext>;

pub struct Source {
    pub consumer: Arc<GroupConsumer>,
    pub records: mpsc::Receiver<Record>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub generation: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
    stop: bank_runtime::shutdown::Stop,
}

/// Subscribes `config` (a group consumer's settings) to `topics` and starts the polling thread.
/// What a role subscribes to.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// A topic read to its end before the others at each assignment (see `SourceContext`).
    pub first: Option<String>,
    /// Records buffered between the polling thread and the pipeline.
    pub capacity: usize,
}

pub fn start(
    mut config: ClientConfig,
    subscription: Subscription,
    offsets: Box<dyn OffsetStore>,
    health: Arc<Health>,
    metrics: Metrics,
    stop: bank_runtime::shutdown::Stop,
) -> anyhow::Result<Source> {
    // Range assignment gives one instance the same partition number of both topics, so a
    // branch's customers and transactions meet in the same process.
    config
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "5000")
        // A topic created after the consumer started is noticed within seconds, not the
        // default five minutes.
        .set("topic.metadata.refresh.interval.ms", "10000");
    let (records_tx, records) = mpsc::channel(subscription.capacity.max(1));
    let (control_tx, control) = mpsc::unbounded_channel();
    let generation = Arc::new(AtomicU64::new(0));
    let context = SourceContext {
        offsets,
        first: subscription.first.clone(),
        catch_up: Mutex::new(std::collections::HashMap::new()),
        held: Mutex::new(TopicPartitionList::new()),
        held_since: Mutex::new(None),
        control: control_tx,
        generation: generation.clone(),
        pending: Mutex::new(VecDeque::new()),
        assignment: Mutex::new(TopicPartitionList::new()),
        health,
        metrics,
    };
    let consumer: Arc<GroupConsumer> = Arc::new(config.create_with_context(context)?);
    let topics: Vec<&str> = subscription.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let thread = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || poll_loop(&consumer, records_tx, &runtime, &stop))?
    };
    Ok(Source {
        consumer,
        records,
        control,
        generation,
        thread,
        stop,
    })
}

impl Source {
    /// Asks the polling thread to stop (after the pipeline committed), waits for it, commits the
    /// final positions to Kafka and leaves the group, all bounded in time.
    pub async fn close(self, last_offsets: Option<TopicPartitionList>) {
        // The pipeline is done: a revoke during close must not wait for it to answer.
        drop(self.control);
        drop(self.records);
        self.stop.request();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        if let Some(tpl) = last_offsets.filter(|t| t.count() > 0)
            && let Err(error) = self.consumer.commit(&tpl, CommitMode::Sync)
        {
            tracing::warn!(%error, "final offset commit to Kafka failed (lag metrics only)");
        }
        match Arc::try_unwrap(self.consumer) {
            Ok(consumer) => {
                bank_runtime::kafka::close_consumer(consumer, Duration::from_secs(10)).await;
            }
            Err(_) => {
                tracing::warn!("consumer still shared at shutdown; leaving it to the process exit")
            }
        }
    }
}

/// How long the polling thread waits for room in the pipeline before pausing the partitions
/// and going back to polling (to serve rebalances and stay in the group).
const STALL_BEFORE_PAUSE: Duration = Duration::from_secs(5);

fn poll_loop(
    consumer: &GroupConsumer,
    records: mpsc::Sender<Record>,
    runtime: &tokio::runtime::Handle,
    stop: &bank_runtime::shutdown::Stop,
) {
    let context = consumer.context();
    let mut paused = false;
    let mut stalled = Duration::ZERO;
    while !stop.is_requested() {
        // Hand over what is pending, waiting a little for room: pausing makes librdkafka drop
        // what it prefetched, so it is kept for a pipeline that is stuck, not merely busy.
        loop {
            let next = context
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(record) = next else { break };
            let wait = Duration::from_millis(250);
            match runtime.block_on(async { tokio::time::timeout(wait, records.reserve()).await }) {
                Ok(Ok(permit)) => {
                    permit.send(record);
                    stalled = Duration::ZERO;
                }
                Ok(Err(_)) => return,
                Err(_) => {
                    context
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_front(record);
                    stalled += wait;
                    break;
                }
            }
            if stop.is_requested() {
                return;
            }
        }
        let pending_empty = context
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let assignment = context
            .assignment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !pending_empty && !paused && stalled >= STALL_BEFORE_PAUSE {
            tracing::info!(?stalled, "pipeline is not taking records; pausing fetches");
            let _ = consumer.pause(&assignment);
            paused = true;
        } else if pending_empty && paused {
            let _ = consumer.resume(&assignment);
            context.reapply_hold(consumer);
            paused = false;
        }
        context.release_hold_if_overdue(consumer);
        let timeout = if pending_empty {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(timeout) {
            None => {}
            Some(Ok(message)) => {
                context.health.set_kafka(true);
                context
                    .metrics
                    .consumed
                    .get_or_create(&TopicLabel {
                        topic: message.topic().to_owned(),
                    })
                    .inc();
                let record = Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|header| {
                                    (
                                        header.key.to_owned(),
                                        header.value.unwrap_or_default().to_vec(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    generation: context.generation.load(Ordering::SeqCst),
                };
                context.note_first_topic_progress(
                    consumer,
                    &record.topic,
                    record.partition,
                    record.offset,
                );
                context
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(record);
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "kafka poll error");
            }
        }
    }
}
