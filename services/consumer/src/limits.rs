//! `consumer limits --limit -5000.00`: the overdraft-limit watcher. Tracks every account's
//! balance over all transactions, keeps the set of accounts at or below the limit, and raises one
//! `LimitAlert` per crossing: logged at WARN and produced to `bank.alerts`.
//!
//! State: the balances of each partition's accounts (an account's transactions share a
//! partition: key = account), checkpointed with the partition's offset after every batch (see
//! [`crate::checkpoint`]), so a restart resumes from the checkpoint instead of replaying the
//! topic; memory grows with accounts, not transactions. A batch's alerts are confirmed by Kafka
//! before its checkpoint is written.
//!
//! Not repeating alerts after a restart: every alert records where its crossing transaction was
//! read (`source_partition`, `source_offset`). At start the watcher reads the alerts topic from
//! where the alerts of its last checkpointed batch end ([`AlertMarks`]) to its end and remembers
//! the exact positions reported for its limit; those crossings (alerts sent just before a crash
//! that lost their batch's checkpoint) are recomputed but not sent again, and each delivery of a
//! partly failed send is remembered the same way. An alert whose delivery was not confirmed is
//! sent again: at least once, never zero. The scan covers at most the alerts of one batch, so
//! the start time does not grow with the history of alerts. Several instances of a group may
//! share the partitions; an instance that takes a partition over does not rescan, so an alert its
//! former owner sent for a batch it never checkpointed may be sent twice (still at least once).
//! An account's balance lives in its partition (key = account): an account whose transactions
//! reach two partitions has one balance in each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use bank_contract::pb::{LimitAlert, LimitAlertKind};
use bank_contract::{Decoder, Event, Registry, money, wire};
use bank_storage::checkpoint::{Checkpoint, Checkpoints, StateEntry};
use futures::future::join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::checkpoint::{Book, PartitionState};
use crate::cli::LimitsArgs;
use crate::overdraft::{Crossing, step};
use crate::pipeline::{Decoded, Sink, WriteError};
use crate::source::PartitionKey;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    kind: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Breaches {
    pub limit: String,
    pub accounts: Vec<Breach>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Breach {
    pub account_number: String,
    pub balance: String,
    pub balance_cents: i64,
}

pub async fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let limit_cents =
        money::parse_cents(&args.limit).map_err(|e| anyhow::anyhow!("--limit: {e}"))?;
    let book: Book<Balances> = Book::open(&args.database_url, &args.group).await?;
    let mut frame = crate::role::Analytics::new();
    let (breaches_gauge, alerts_counter) = register_metrics(&mut frame);

    let schema_registry = Arc::new(Registry::new(&args.input.registry.registry_config()?)?);
    let alert_schema = schema_registry
        .register::<LimitAlert>(&args.alerts_topic)
        .await
        .with_context(|| {
            format!(
                "registering the LimitAlert schema at {}",
                schema_registry.display_url()
            )
        })?;
    let decoder = Decoder::new(schema_registry.clone());
    let marks = AlertMarks::load(book.database(), &args.group, &args.alerts_topic).await?;
    let reported = reported_positions(&args, &decoder, &marks.stored, limit_cents).await?;
    tracing::info!(
        limit = %money::format_cents(limit_cents),
        already_reported = reported.len(),
        "limits watcher starting"
    );

    // The group's breaches, every partition's stored balances, refreshed at most every second.
    let published = Arc::new(Mutex::new(Breaches {
        limit: money::format_cents(limit_cents),
        accounts: Vec::new(),
    }));
    let routes = breaches_route(published.clone());

    let mut producer_config = bank_plumbing::kafka::idempotent_producer_config(&args.input.kafka)?;
    producer_config.set("message.timeout.ms", "30000");
    let offsets = Box::new(book.offsets());
    let mut sink = LimitsSink {
        breached: breaches(book.states().map(|(_, part)| part), limit_cents),
        book,
        limit_cents,
        reported,
        marks,
        delivered: Vec::new(),
        published,
        refreshed: None,
        pending: Vec::new(),
        producer: producer_config
            .create()
            .context("creating the alerts producer")?,
        alerts_topic: args.alerts_topic.clone(),
        alert_schema,
        breaches_gauge,
        alerts_counter,
    };
    sink.refresh_breaches().await;
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

/// The watcher's own metrics: the breaches it sees and the alerts it sent.
fn register_metrics(frame: &mut crate::role::Analytics) -> (Gauge, Family<AlertLabel, Counter>) {
    let breaches_gauge: Gauge = Gauge::default();
    let alerts_counter: Family<AlertLabel, Counter> = Family::default();
    let bank = frame.registry.sub_registry_with_prefix("bank");
    bank.register(
        "limit_breaches",
        "Accounts at or below the limit, of the partitions this instance has read",
        breaches_gauge.clone(),
    );
    bank.register(
        "limit_alerts",
        "Alerts produced, by kind",
        alerts_counter.clone(),
    );
    (breaches_gauge, alerts_counter)
}

/// `GET /breaches`: the group's breaches as last published.
fn breaches_route(published: Arc<Mutex<Breaches>>) -> axum::Router {
    axum::Router::new().route(
        "/breaches",
        get(move || {
            let current = published.lock().unwrap_or_else(|e| e.into_inner()).clone();
            async move { axum::Json(current) }
        }),
    )
}

/// Accounts of these partitions at or below the limit.
fn breaches<'a>(
    parts: impl Iterator<Item = &'a Balances>,
    limit_cents: i64,
) -> BTreeMap<String, i64> {
    parts
        .flat_map(|part| part.0.iter())
        .filter(|(_, cents)| **cents <= limit_cents)
        .map(|(account, cents)| (account.clone(), *cents))
        .collect()
}

/// The balance of every account of one partition, in cents.
#[derive(Debug, Default)]
struct Balances(HashMap<String, i64>);

impl PartitionState for Balances {
    fn restore(entries: Vec<(String, String)>) -> anyhow::Result<Self> {
        entries
            .into_iter()
            .map(|(account, cents)| {
                let cents = cents
                    .parse()
                    .with_context(|| format!("balance of {account}: {cents:?}"))?;
                Ok((account, cents))
            })
            .collect::<anyhow::Result<_>>()
            .map(Balances)
    }
}

/// Per partition of the alerts topic, the offset after the last alert of a checkpointed batch:
/// alerts before it can never be sent again, so the scan at start begins there. Kept in
/// `role_state` under the group `<group>.alerts`, written after each checkpoint that sent
/// alerts (a mark that lags behind only makes the next start scan a little more).
struct AlertMarks {
    checkpoints: Checkpoints,
    topic: String,
    stored: HashMap<i32, i64>,
    acked: HashMap<i32, i64>,
}

const MARK_KEY: &str = "scan-from";

impl AlertMarks {
    async fn load(
        db: &sea_orm::DatabaseConnection,
        group: &str,
        topic: &str,
    ) -> anyhow::Result<AlertMarks> {
        let checkpoints = Checkpoints::new(format!("{group}.alerts"));
        let mut stored = HashMap::new();
        for ((stored_topic, partition), state) in checkpoints
            .load_all(db)
            .await
            .context("loading where the alerts scan starts")?
        {
            let mark = state.entries.iter().find(|(key, _)| key == MARK_KEY);
            if let (true, Some((_, offset))) = (stored_topic == topic, mark) {
                stored.insert(partition, offset.parse().context("alerts scan mark")?);
            }
        }
        Ok(AlertMarks {
            checkpoints,
            topic: topic.to_owned(),
            acked: stored.clone(),
            stored,
        })
    }

    fn delivered(&mut self, delivery: &rdkafka::producer::future_producer::Delivery) {
        let mark = self.acked.entry(delivery.partition).or_insert(0);
        *mark = (*mark).max(delivery.offset + 1);
    }

    /// Stores the marks of alerts delivered so far; call only once their batch is checkpointed.
    async fn store(&mut self, db: &sea_orm::DatabaseConnection) {
        if self.acked == self.stored {
            return;
        }
        let checkpoint = Checkpoint {
            entries: self
                .acked
                .iter()
                .map(|(partition, offset)| StateEntry {
                    topic: self.topic.clone(),
                    partition: *partition,
                    key: MARK_KEY.to_owned(),
                    value: offset.to_string(),
                })
                .collect(),
            ..Checkpoint::default()
        };
        match self.checkpoints.commit(db, &checkpoint).await {
            Ok(()) => self.stored = self.acked.clone(),
            Err(error) => tracing::warn!(%error, "could not store where the alerts scan starts"),
        }
    }
}

/// Reads the alerts topic from `marks` (or its beginning) to its end: the crossings already
/// reported for this limit, as the `(partition, offset)` of their transaction.
async fn reported_positions(
    args: &LimitsArgs,
    decoder: &Decoder,
    marks: &HashMap<i32, i64>,
    limit_cents: i64,
) -> anyhow::Result<HashSet<(u32, i64)>> {
    let mut config = args.input.kafka.client_config()?;
    config
        .set("group.id", format!("{}-alerts-reader", args.group))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().context("creating the alerts reader")?;
    let topic = args.alerts_topic.clone();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {topic}"))?;
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        let (low, high) =
            consumer.fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))?;
        let from = marks.get(&partition.id()).copied().unwrap_or(low).max(low);
        if high > from {
            ends.insert(partition.id(), high);
            assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(from))?;
        }
    }
    let mut reported = HashSet::new();
    if ends.is_empty() {
        return Ok(reported);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "could not read {topic} to its end within 60 s"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        if let Ok(alert) = decoder
            .decode::<LimitAlert>(message.payload().unwrap_or_default())
            .await
        {
            // Exact positions: alerts of one batch reach several partitions of the alerts topic,
            // and one of them may be missing after a crash while a later one is there. Another
            // group's alerts for another limit do not count.
            if alert.limit_cents == limit_cents {
                reported.insert((alert.source_partition, alert.source_offset));
            }
        }
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok(reported)
}

struct LimitsSink {
    book: Book<Balances>,
    limit_cents: i64,
    /// Accounts of the partitions this instance has read at or below the limit (the gauge; the
    /// HTTP answer is the whole group's, from the database).
    breached: BTreeMap<String, i64>,
    /// Crossings already reported whose transactions may still be read again: found by the scan
    /// at start, or sent for a batch not yet checkpointed.
    reported: HashSet<(u32, i64)>,
    marks: AlertMarks,
    /// Where this batch's alerts landed; the scan marks move there once its checkpoint commits.
    delivered: Vec<rdkafka::producer::future_producer::Delivery>,
    /// The group's breaches as served on /breaches, and when they were last read.
    published: Arc<Mutex<Breaches>>,
    refreshed: Option<std::time::Instant>,
    /// Alerts of the batch being applied, not yet acknowledged by Kafka.
    pending: Vec<LimitAlert>,
    producer: FutureProducer,
    alerts_topic: String,
    alert_schema: u32,
    breaches_gauge: Gauge,
    alerts_counter: Family<AlertLabel, Counter>,
}

impl Sink for LimitsSink {
    async fn apply(&mut self, batch: &Decoded) -> Result<(), WriteError> {
        let prepared = self.book.prepare(batch).await?;
        if prepared.loaded {
            self.breached = breaches(self.book.states().map(|(_, part)| part), self.limit_cents);
        }
        // Balances after this batch, of the accounts it touched, computed on copies.
        let mut touched: HashMap<PartitionKey, HashMap<String, i64>> = HashMap::new();
        self.pending.clear();
        self.delivered.clear();
        for ((tx, position), fresh) in batch.transactions().zip(&prepared.fresh) {
            if !fresh {
                continue;
            }
            let signed = tx.signed_cents();
            let key = position.key();
            let before = touched
                .get(&key)
                .and_then(|part| part.get(&tx.account_number))
                .or_else(|| self.book.state(&key)?.0.get(&tx.account_number))
                .copied();
            let Some((after, crossing)) = step(self.limit_cents, before, signed) else {
                tracing::warn!(
                    account = tx.account_number,
                    signed_cents = signed,
                    "skipping a transaction that would overflow the balance"
                );
                continue;
            };
            touched
                .entry(key)
                .or_default()
                .insert(tx.account_number.clone(), after);
            if let Some(crossing) = crossing {
                self.alert(tx, position, crossing, after);
            }
        }
        self.send_pending().await?;
        let entries = touched
            .iter()
            .flat_map(|((topic, partition), part)| {
                part.iter().map(|(account, cents)| StateEntry {
                    topic: topic.clone(),
                    partition: *partition,
                    key: account.clone(),
                    value: cents.to_string(),
                })
            })
            .collect();
        self.book.commit(batch, prepared.counted, entries).await?;
        // Committed: its transactions are never read again, so what was reported for them (or
        // before them) can be forgotten, and the scan marks move past its alerts.
        for ((_, partition), span) in &batch.events.offsets {
            let partition = *partition as u32;
            self.reported
                .retain(|(p, offset)| *p != partition || *offset >= span.next);
        }
        for delivery in self.delivered.drain(..) {
            self.marks.delivered(&delivery);
        }
        self.marks.store(self.book.database()).await;
        for (key, part) in touched {
            let Some(held) = self.book.state_mut(&key) else {
                continue;
            };
            for (account, cents) in part {
                if cents <= self.limit_cents {
                    self.breached.insert(account.clone(), cents);
                } else {
                    self.breached.remove(&account);
                }
                held.0.insert(account, cents);
            }
        }
        self.publish();
        self.refresh_breaches().await;
        Ok(())
    }

    /// Other instances of the group may go on while this one has nothing to do.
    fn idle_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    async fn idle(&mut self) {
        self.refresh_breaches().await;
    }
}

impl LimitsSink {
    /// Queues the alert of a crossing, unless it was reported before a restart.
    fn alert(
        &mut self,
        tx: &bank_storage::ledger::TransactionRow,
        position: &crate::pipeline::Position,
        crossing: Crossing,
        balance: i64,
    ) {
        let partition = position.partition as u32;
        if self.reported.contains(&(partition, position.offset)) {
            return;
        }
        self.pending.push(LimitAlert {
            account_number: tx.account_number.clone(),
            kind: match crossing {
                Crossing::Breached => LimitAlertKind::Breached,
                Crossing::Recovered => LimitAlertKind::Recovered,
            } as i32,
            balance_cents: balance,
            limit_cents: self.limit_cents,
            transaction_id: tx.transaction_id.clone(),
            occurred_at: tx.transaction_datetime.map(|at| prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: at.timestamp_subsec_nanos() as i32,
            }),
            source_partition: partition,
            source_offset: position.offset,
        });
    }

    fn publish(&self) {
        self.breaches_gauge.set(self.breached.len() as i64);
    }

    /// Reads every partition's stored balances (this instance's and the others'), at most once
    /// a second: every account is read, so not after every batch.
    async fn refresh_breaches(&mut self) {
        if self
            .refreshed
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.refreshed = Some(std::time::Instant::now());
        match self.book.stored_states().await {
            Ok(parts) => {
                let accounts = breaches(parts.iter().map(|(_, part)| part), self.limit_cents)
                    .into_iter()
                    .map(|(account, cents)| Breach {
                        balance: money::format_cents(cents),
                        account_number: account,
                        balance_cents: cents,
                    })
                    .collect();
                self.published
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .accounts = accounts;
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "reading the group's balances")
            }
        }
    }
}

impl LimitsSink {
    async fn send_pending(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let producer = &self.producer;
        let schema = self.alert_schema;
        let topic = self.alerts_topic.as_str();
        let sends = self.pending.iter().map(|alert| {
            let payload = wire::frame(schema, alert);
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(alert.key()).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(error, _)| error)
                    .with_context(|| format!("producing an alert to {topic}"))
            }
        });
        // Every delivery is recorded, so a retry after a partial failure sends only the rest.
        let results = join_all(sends).await;
        let mut failed = None;
        let mut sent = Vec::new();
        for (alert, result) in self.pending.drain(..).zip(results) {
            match result {
                Ok(delivery) => {
                    self.delivered.push(delivery);
                    sent.push(alert);
                }
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        for alert in sent {
            let kind = if alert.kind == LimitAlertKind::Breached as i32 {
                "breached"
            } else {
                "recovered"
            };
            tracing::warn!(
                account = alert.account_number,
                kind,
                balance = %money::format_cents(alert.balance_cents),
                limit = %money::format_cents(alert.limit_cents),
                transaction_id = alert.transaction_id,
                "overdraft limit {kind}"
            );
            self.alerts_counter
                .get_or_create(&AlertLabel {
                    kind: kind.to_owned(),
                })
                .inc();
            self.reported
                .insert((alert.source_partition, alert.source_offset));
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
