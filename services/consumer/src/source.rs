//! The Kafka side of a consumer role: a dedicated thread that polls the group consumer and hands
//! records to the async pipeline through a bounded channel.
//!
//! Why a thread: rebalance callbacks run inside `poll`, and on assignment we must read the
//! partitions' offsets from the database before any record is fetched; on a plain thread that is a
//! simple blocking call. And when the pipeline is stuck (database down), the thread pauses the
//! partitions but keeps polling, so the instance stays in the group instead of being evicted for
//! not polling.
//!
//! The database is the source of truth for positions: a partition resumes at the offset stored
//! with the rows, or at the **earliest** offset when nothing is stored (a new or re-created
//! database rebuilds everything); Kafka's committed offsets only feed lag monitoring. When the
//! offsets cannot be read, the partitions stay paused and the read is retried; there is no
//! fallback. Every record carries the stored offset it continues from (`expected`), which the
//! ledger checks and moves in the same transaction as the rows (fencing), so a gap or an overlap
//! can never be committed: a stale share fails, the writer asks for a re-seek, and the thread
//! rewinds every partition to the database's offsets.
//!
//! All of the thread's bookkeeping lives in one [`State`] behind one lock: the phase
//! (unassigned, seeking, consuming; after vector's kafka source), the generation, positions,
//! records not yet handed over, and the hold that reads the customers topic first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bank_plumbing::backoff::Backoff;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;

use crate::health::Health;
use crate::metrics::{Metrics, PartitionLabels, TopicLabel};

/// `(topic, partition)`.
pub type PartitionKey = (String, i32);

/// A record as the pipeline needs it, detached from librdkafka's buffers.
#[derive(Debug)]
pub struct Record {
    /// Shared by every record of the topic (see [`State::topic_name`]).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Header names are decoded lossily: any client may write bytes that are not UTF-8.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The message's Kafka timestamp (create or log-append time), in ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The stored offset this record continues from: the previous record's offset + 1, or the
    /// position the partition was sought to (`None`: from the beginning, nothing stored).
    pub expected: Option<i64>,
    /// The first record of its partition since the partition's position was set (assigned or
    /// sought again): its `expected` is where the offset store says the partition resumes. A
    /// sink that keeps state per partition may start one only at such a record.
    pub from_seek: bool,
    pub generation: u64,
    /// Its share of the in-flight byte budget, given back when the last copy is dropped (after
    /// the writer committed it or it was dead-lettered).
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Record {
    /// A record of which only the position is known: its key, value and headers are absent.
    pub fn bare(topic: Arc<str>, partition: i32, offset: i64) -> Record {
        Record {
            topic,
            partition,
            offset,
            key: None,
            payload: None,
            headers: Vec::new(),
            timestamp_ms: None,
            expected: None,
            from_seek: false,
            generation: 0,
            budget: None,
        }
    }

    /// A message's topic, position, key, value, headers and timestamp, copied out of librdkafka;
    /// the rest is the group consumer's to fill in (see `accept`).
    pub fn of_message(topic: Arc<str>, message: &BorrowedMessage<'_>) -> Record {
        Record {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: headers_of(message),
            timestamp_ms: message.timestamp().to_millis(),
            ..Record::bare(topic, message.partition(), message.offset())
        }
    }

    /// What the record weighs against the byte budget: an estimate of the memory it holds until
    /// it is committed. The record itself (its bytes and about 250 bytes of structure) and, once
    /// decoded, its row (its strings are about as long as the encoded message, plus about 250
    /// bytes of structure); measured with heaptrack, see the README's memory section. Both are
    /// alive while the batch is decoded; after that the record's bytes go (see
    /// `pipeline::Position`), so the estimate errs on the safe side.
    pub fn weight(&self) -> usize {
        let bytes = self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.payload.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        RECORD_OVERHEAD + 2 * bytes
    }
}

/// The structure around a record's bytes and its decoded row's (see [`Record::weight`]).
const RECORD_OVERHEAD: usize = 512;

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
    /// Next offsets of those partitions that have one stored, or an error if the store cannot
    /// answer now (the caller retries; it never guesses).
    fn load(&self, partitions: &[PartitionKey]) -> anyhow::Result<HashMap<PartitionKey, i64>>;
}

/// What the polling thread is doing with its assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing assigned.
    Unassigned,
    /// Assigned, positions unknown: every partition paused, records dropped, offsets to be
    /// (re)loaded from the store at `retry_at`.
    Seeking { retry_at: Instant },
    /// Positions known, records flowing.
    Consuming,
}

/// The first topic (customers) is read to its end before the others at each assignment.
#[derive(Debug)]
struct Hold {
    /// Partitions of the first topic still catching up: partition -> offset to reach.
    catch_up: HashMap<PartitionKey, i64>,
    /// Partitions of the other topics held back meanwhile.
    held: TopicPartitionList,
    since: Instant,
}

/// Everything the polling thread and the rebalance callbacks share.
struct State {
    phase: Phase,
    generation: u64,
    assignment: TopicPartitionList,
    /// Per assigned partition, what the next record continues from (see [`Record::expected`]).
    positions: HashMap<PartitionKey, Option<i64>>,
    /// Partitions whose position was just set and no record accepted since: the next one of
    /// each is marked [`Record::from_seek`].
    sought: HashSet<PartitionKey>,
    pending: VecDeque<Record>,
    hold: Option<Hold>,
    /// Fetching paused because the pipeline is not taking records.
    stalled_pause: bool,
    seek_backoff: Backoff,
    /// The topics' names, one allocation each rather than one per record.
    topic_names: Vec<Arc<str>>,
}

impl State {
    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.topic_names.iter().find(|name| ***name == *topic) {
            return name.clone();
        }
        let name: Arc<str> = topic.into();
        self.topic_names.push(name.clone());
        name
    }
}

pub struct SourceContext {
    offsets: Box<dyn OffsetStore>,
    first: Option<String>,
    state: Mutex<State>,
    /// Mirrors `State::generation` for the pipeline, which must not take the thread's lock.
    generation: Arc<AtomicU64>,
    /// Set by a fenced writer to `generation + 1`: re-seek every partition from the store.
    reseek: Arc<AtomicU64>,
    /// True while a revoke waits for the pipeline (see [`Reseek::revoking`]).
    revoking: tokio::sync::watch::Sender<bool>,
    /// See [`Subscription::in_flight_bytes`].
    budget_bytes: usize,
    control: mpsc::UnboundedSender<Control>,
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

fn partitions_of(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl SourceContext {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions = partitions_of(tpl);
        let loaded = self.offsets.load(&partitions);
        if let Ok(stored) = &loaded {
            for (topic, partition) in &partitions {
                let offset = match stored.get(&(topic.clone(), *partition)) {
                    Some(next) => Offset::Offset(*next),
                    None => Offset::Beginning,
                };
                if let Err(error) = tpl.set_partition_offset(topic, *partition, offset) {
                    tracing::warn!(%error, topic, partition, "cannot set the start offset");
                }
            }
        }
        if let Err(error) = consumer.assign(tpl) {
            tracing::error!(%error, "assign failed");
        }
        let mut state = self.state();
        state.assignment = tpl.clone();
        state.pending.clear();
        self.bump_generation(&mut state);
        self.health.set_assigned(partitions.len());
        // An assignment comes from the group coordinator: Kafka answers. Without this, a caught-up
        // consumer (no message to read) looked unreachable until the first statistics, 5 s in.
        self.health.set_kafka(true);
        match loaded {
            Ok(stored) => {
                tracing::info!(
                    ?partitions,
                    stored = stored.len(),
                    "partitions assigned; resuming at the database's offsets (earliest where none)"
                );
                state.seek_backoff.reset();
                state.positions = positions(&partitions, &stored);
                state.sought = partitions.iter().cloned().collect();
                state.phase = Phase::Consuming;
                // librdkafka keeps a partition's pause across assignments: one paused by an
                // earlier assignment (offsets unreadable, a stalled pipeline) would stay stuck.
                let _ = consumer.resume(tpl);
                self.start_hold(consumer, &mut state);
            }
            Err(error) => {
                let _ = consumer.pause(tpl);
                let pause = state.seek_backoff.next_pause();
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in = ?pause,
                    "cannot read stored offsets; partitions stay paused until they can be read"
                );
                state.phase = Phase::Seeking {
                    retry_at: Instant::now() + pause,
                };
            }
        }
    }

    /// Rewinds every assigned partition to the store's offsets (after a fenced write, or when
    /// they could not be read at assignment). Partitions stay paused if the store fails again.
    fn reseek(&self, consumer: &BaseConsumer<Self>) {
        let mut state = self.state();
        let partitions = partitions_of(&state.assignment);
        let _ = consumer.pause(&state.assignment);
        match self.offsets.load(&partitions) {
            Ok(stored) => {
                self.bump_generation(&mut state);
                state.pending.clear();
                for (topic, partition) in &partitions {
                    let offset = match stored.get(&(topic.clone(), *partition)) {
                        Some(next) => Offset::Offset(*next),
                        None => Offset::Beginning,
                    };
                    if let Err(error) =
                        consumer.seek(topic, *partition, offset, Duration::from_secs(10))
                    {
                        tracing::warn!(%error, topic, partition, "seek failed; retrying");
                        let pause = state.seek_backoff.next_pause();
                        state.phase = Phase::Seeking {
                            retry_at: Instant::now() + pause,
                        };
                        return;
                    }
                }
                state.seek_backoff.reset();
                state.positions = positions(&partitions, &stored);
                state.sought = partitions.iter().cloned().collect();
                state.phase = Phase::Consuming;
                state.stalled_pause = false;
                let _ = consumer.resume(&state.assignment);
                state.hold = None;
                self.start_hold(consumer, &mut state);
                tracing::info!(
                    ?partitions,
                    "re-read every partition from the database's offsets"
                );
            }
            Err(error) => {
                let pause = state.seek_backoff.next_pause();
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in = ?pause,
                    "cannot read stored offsets; partitions stay paused"
                );
                state.phase = Phase::Seeking {
                    retry_at: Instant::now() + pause,
                };
            }
        }
    }

    fn bump_generation(&self, state: &mut State) {
        state.generation += 1;
        self.generation.store(state.generation, Ordering::SeqCst);
    }

    fn start_hold(&self, consumer: &BaseConsumer<Self>, state: &mut State) {
        let Some(first) = &self.first else { return };
        let mut catch_up = HashMap::new();
        let mut held = TopicPartitionList::new();
        for element in state.assignment.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if element.topic() != first {
                let _ = held.add_partition(&key.0, key.1);
                continue;
            }
            let Ok((low, high)) = consumer.fetch_watermarks(&key.0, key.1, Duration::from_secs(5))
            else {
                continue;
            };
            let start = state.positions.get(&key).copied().flatten().unwrap_or(low);
            if start < high {
                catch_up.insert(key, high);
            }
        }
        if !catch_up.is_empty() && held.count() > 0 {
            tracing::info!(
                behind = catch_up.len(),
                "reading {first} to its end before the other topics"
            );
            let _ = consumer.pause(&held);
            state.hold = Some(Hold {
                catch_up,
                held,
                since: Instant::now(),
            });
        }
    }

    /// Never hold the other topics for long: parking covers whatever is still out of order.
    fn release_hold_if_overdue(&self, consumer: &BaseConsumer<Self>, state: &mut State) {
        if state
            .hold
            .as_ref()
            .is_some_and(|h| h.since.elapsed() > MAX_HOLD)
            && let Some(hold) = state.hold.take()
        {
            let _ = consumer.resume(&hold.held);
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
        state: &mut State,
        key: &PartitionKey,
        offset: i64,
    ) {
        let Some(hold) = state.hold.as_mut() else {
            return;
        };
        if hold.catch_up.get(key).is_some_and(|end| offset + 1 >= *end) {
            hold.catch_up.remove(key);
            if hold.catch_up.is_empty() {
                let _ = consumer.resume(&hold.held);
                state.hold = None;
                tracing::info!("caught up with the first topic; reading every topic");
            }
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>) {
        let _ = self.revoking.send(true);
        let ending = {
            let mut state = self.state();
            state.hold = None;
            state.pending.clear();
            state.generation
        };
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
                "pipeline did not commit within {REVOKE_GRACE:?}; the next owner reads its records again"
            );
        }
        if let Err(error) = consumer.unassign() {
            tracing::error!(%error, "unassign failed");
        }
        let mut state = self.state();
        self.bump_generation(&mut state);
        let _ = self.revoking.send(false);
        state.phase = Phase::Unassigned;
        state.assignment = TopicPartitionList::new();
        state.positions.clear();
        state.sought.clear();
        state.stalled_pause = false;
        self.health.set_assigned(0);
        tracing::info!("partitions revoked");
    }

    /// Takes a polled message into `pending`, or drops it if its partition's position is not
    /// known (seeking) or it lies behind the position (left over from before a seek).
    fn accept(&self, consumer: &BaseConsumer<Self>, message: &BorrowedMessage<'_>) {
        let mut state = self.state();
        let key = (message.topic().to_owned(), message.partition());
        let offset = message.offset();
        if state.phase != Phase::Consuming {
            return;
        }
        let Some(position) = state.positions.get_mut(&key) else {
            return;
        };
        let expected = *position;
        if expected.is_some_and(|next| offset < next) {
            return;
        }
        *position = Some(offset + 1);
        let from_seek = !state.sought.is_empty() && state.sought.remove(&key);
        let record = Record {
            expected,
            from_seek,
            generation: state.generation,
            ..Record::of_message(state.topic_name(&key.0), message)
        };
        self.note_first_topic_progress(consumer, &mut state, &key, offset);
        state.pending.push_back(record);
    }
}

fn positions(
    partitions: &[PartitionKey],
    stored: &HashMap<PartitionKey, i64>,
) -> HashMap<PartitionKey, Option<i64>> {
    partitions
        .iter()
        .map(|key| (key.clone(), stored.get(key).copied()))
        .collect()
}

/// A message's headers, read without rdkafka's accessor, which panics on a header name that is
/// not UTF-8 (any client can write one).
fn headers_of(message: &BorrowedMessage<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::bindings as rd;
    let mut headers = Vec::new();
    // SAFETY: `message` is alive for the whole block and owns its header list; librdkafka
    // returns pointers into it (a NUL-terminated name, a value of `size` bytes or NULL) that we
    // copy before returning. Errors leave the out-pointers untouched and are checked first.
    unsafe {
        let mut list: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        if rd::rd_kafka_message_headers(message.ptr(), &mut list)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || list.is_null()
        {
            return headers;
        }
        for index in 0..rd::rd_kafka_header_cnt(list) {
            let mut name: *const std::ffi::c_char = std::ptr::null();
            let mut value: *const std::ffi::c_void = std::ptr::null();
            let mut size: usize = 0;
            if rd::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                continue;
            }
            let name = if name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            };
            let value = (!value.is_null())
                .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            headers.push((name, value));
        }
    }
    headers
}

/// The Kafka consumer of a role, shared between the polling thread and the pipeline (which
/// commits offsets to Kafka, for lag monitoring, after each database commit).
pub type GroupConsumer = BaseConsumer<SourceContext>;

/// The pipeline's end of a running source.
pub struct Source {
    pub consumer: Arc<GroupConsumer>,
    pub records: mpsc::Receiver<Record>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub generation: Arc<AtomicU64>,
    reseek: Arc<AtomicU64>,
    revoking: tokio::sync::watch::Receiver<bool>,
    thread: std::thread::JoinHandle<()>,
    stop: bank_plumbing::shutdown::Stop,
}

/// A handle writers use to ask for a re-seek after a fenced write.
#[derive(Debug, Clone)]
pub struct Reseek {
    generation: Arc<AtomicU64>,
    request: Arc<AtomicU64>,
    revoking: tokio::sync::watch::Receiver<bool>,
}

impl Reseek {
    /// Whether a rebalance is taking the partitions away right now: a writer then stops
    /// retrying what fails (the next owner reads it again), so the rebalance is not held up by a
    /// database that does not answer.
    pub fn revoking(&self) -> bool {
        *self.revoking.borrow()
    }

    /// Completes when a revoke starts (at once if one is under way).
    pub async fn revoke_started(&self) {
        let mut revoking = self.revoking.clone();
        let _ = revoking.wait_for(|r| *r).await;
    }

    /// The current generation: a share of an older one is stale.
    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Asks the polling thread to rewind every partition to the stored offsets, unless it has
    /// already done so (or rebalanced) since `generation`.
    pub fn request(&self, generation: u64) {
        if self.current() == generation {
            self.request.store(generation + 1, Ordering::SeqCst);
        }
    }
}

/// What a role subscribes to.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// A topic read to its end before the others at each assignment (see [`Hold`]).
    pub first: Option<String>,
    /// Records buffered between the polling thread and the pipeline.
    pub capacity: usize,
    /// Bytes of records in flight between the poll and their commit, whatever their count: large
    /// records cannot exhaust memory.
    pub in_flight_bytes: usize,
}

/// The group consumer's settings that make it fit the pipeline; the operator's own win where
/// they may.
fn tune_fetching(config: &mut ClientConfig) {
    // Range assignment gives one instance the same partition number of both topics, so a
    // branch's customers and transactions meet in the same process.
    config
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "5000")
        // A topic created after the consumer started is noticed within seconds, not the
        // default five minutes.
        .set("topic.metadata.refresh.interval.ms", "10000");
    // librdkafka prefetches up to 64 MiB of messages by default, outside our byte budget. 4 MiB
    // keeps the fetcher ahead of the writers as long as a fetch is re-issued soon after the
    // queue drains below it: by default librdkafka waits a full second, which starved the
    // pipeline. The byte cap alone still let 100,000 small messages queue per partition, whose
    // per-message structures (about 300 bytes each, more than the messages) were 17 MiB of the
    // ledger's peak heap; 5,000 per partition plus one fetch in flight keep the writers as
    // busy (README, memory). Less prefetch (1 or 2 MiB) cost 17-30 % of the rows/s without
    // lowering the peak RSS. The operator's settings win.
    for (key, value) in [
        ("queued.max.messages.kbytes", "4096"),
        ("queued.min.messages", "5000"),
        ("fetch.queue.backoff.ms", "20"),
    ] {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
}

/// Subscribes `config` (a group consumer's settings) to the subscription's topics and starts the
/// polling thread.
pub fn start(
    mut config: ClientConfig,
    subscription: Subscription,
    offsets: Box<dyn OffsetStore>,
    health: Arc<Health>,
    metrics: Metrics,
    stop: bank_plumbing::shutdown::Stop,
) -> anyhow::Result<Source> {
    tune_fetching(&mut config);
    let (records_tx, records) = mpsc::channel(subscription.capacity.max(1));
    let (control_tx, control) = mpsc::unbounded_channel();
    let generation = Arc::new(AtomicU64::new(0));
    let reseek = Arc::new(AtomicU64::new(0));
    let (revoking_tx, revoking) = tokio::sync::watch::channel(false);
    let context = SourceContext {
        offsets,
        first: subscription.first.clone(),
        state: Mutex::new(State {
            phase: Phase::Unassigned,
            generation: 0,
            assignment: TopicPartitionList::new(),
            positions: HashMap::new(),
            sought: HashSet::new(),
            pending: VecDeque::new(),
            hold: None,
            stalled_pause: false,
            seek_backoff: Backoff::default(),
            topic_names: Vec::new(),
        }),
        generation: generation.clone(),
        reseek: reseek.clone(),
        revoking: revoking_tx,
        budget_bytes: subscription
            .in_flight_bytes
            .clamp(1 << 16, u32::MAX as usize),
        control: control_tx,
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
        reseek,
        revoking,
        thread,
        stop,
    })
}

impl Source {
    pub fn reseek_handle(&self) -> Reseek {
        Reseek {
            generation: self.generation.clone(),
            request: self.reseek.clone(),
            revoking: self.revoking.clone(),
        }
    }

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
                bank_plumbing::kafka::close_consumer(consumer, Duration::from_secs(10)).await;
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
    stop: &bank_plumbing::shutdown::Stop,
) {
    let context = consumer.context();
    let mut stalled = Duration::ZERO;
    let budget = Arc::new(tokio::sync::Semaphore::new(context.budget_bytes));
    // Per message, the family's lookup would allocate the label and hash it under a lock.
    let mut consumed: HashMap<String, prometheus_client::metrics::counter::Counter> =
        HashMap::new();
    while !stop.is_requested() {
        if !hand_over(context, &records, &budget, runtime, stop, &mut stalled) {
            return;
        }
        let pending_empty = housekeeping(context, consumer, stalled);
        let timeout = if pending_empty {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(timeout) {
            None => {}
            Some(Ok(message)) => {
                context.health.set_kafka(true);
                match consumed.get(message.topic()) {
                    Some(counter) => {
                        counter.inc();
                    }
                    None => {
                        let counter = context
                            .metrics
                            .consumed
                            .get_or_create(&TopicLabel {
                                topic: message.topic().to_owned(),
                            })
                            .clone();
                        counter.inc();
                        consumed.insert(message.topic().to_owned(), counter);
                    }
                };
                context.accept(consumer, &message);
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "kafka poll error");
            }
        }
    }
}

/// Hands pending records to the pipeline, waiting a little for room: pausing makes librdkafka
/// drop what it prefetched, so it is kept for a pipeline that is stuck, not merely busy. Returns
/// false when the pipeline is gone or a stop was requested.
fn hand_over(
    context: &SourceContext,
    records: &mpsc::Sender<Record>,
    budget: &Arc<tokio::sync::Semaphore>,
    runtime: &tokio::runtime::Handle,
    stop: &bank_plumbing::shutdown::Stop,
    stalled: &mut Duration,
) -> bool {
    loop {
        let Some(mut record) = context.state().pending.pop_front() else {
            return true;
        };
        let bytes = record.weight().min(context.budget_bytes) as u32;
        // The common case, room at once, without entering the runtime and arming a timer for
        // every record (a third of the polling thread's time at full speed).
        if let Ok(permit) = budget.clone().try_acquire_many_owned(bytes) {
            match records.try_reserve() {
                Ok(slot) => {
                    record.budget = Some(permit);
                    slot.send(record);
                    *stalled = Duration::ZERO;
                    if stop.is_requested() {
                        return false;
                    }
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return false,
                // The permit goes back; the slow path waits for both.
                Err(mpsc::error::TrySendError::Full(())) => drop(permit),
            }
        }
        let wait = Duration::from_millis(250);
        let room = async {
            let budget = budget.clone().acquire_many_owned(bytes).await;
            let slot = records.reserve().await;
            (budget, slot)
        };
        match runtime.block_on(async { tokio::time::timeout(wait, room).await }) {
            Ok((Ok(budget), Ok(slot))) => {
                record.budget = Some(budget);
                slot.send(record);
                *stalled = Duration::ZERO;
            }
            Ok((_, Err(_)) | (Err(_), _)) => return false,
            Err(_) => {
                let mut state = context.state();
                // A rebalance or re-seek in between makes the record stale: drop it.
                if record.generation == state.generation {
                    state.pending.push_front(record);
                }
                *stalled += wait;
                return true;
            }
        }
        if stop.is_requested() {
            return false;
        }
    }
}

/// Pauses or resumes for the pipeline, re-seeks when asked or due, releases an overdue hold.
/// Returns whether nothing is pending.
fn housekeeping(context: &SourceContext, consumer: &GroupConsumer, stalled: Duration) -> bool {
    let requested = context.reseek.swap(0, Ordering::SeqCst);
    let due = {
        let mut state = context.state();
        if requested != 0 && requested == state.generation + 1 && state.phase == Phase::Consuming {
            state.phase = Phase::Seeking {
                retry_at: Instant::now(),
            };
        }
        matches!(state.phase, Phase::Seeking { retry_at } if Instant::now() >= retry_at)
    };
    if due {
        context.reseek(consumer);
    }
    let mut state = context.state();
    let pending_empty = state.pending.is_empty();
    if state.phase == Phase::Consuming {
        if !pending_empty && !state.stalled_pause && stalled >= STALL_BEFORE_PAUSE {
            tracing::info!(?stalled, "pipeline is not taking records; pausing fetches");
            let _ = consumer.pause(&state.assignment);
            state.stalled_pause = true;
        } else if pending_empty && state.stalled_pause {
            let _ = consumer.resume(&state.assignment);
            if let Some(hold) = &state.hold {
                let _ = consumer.pause(&hold.held);
            }
            state.stalled_pause = false;
        }
        context.release_hold_if_overdue(consumer, &mut state);
    }
    pending_empty
}
