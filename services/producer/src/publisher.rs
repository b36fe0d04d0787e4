//! Putting events on Kafka: Confluent framing with the registered schema ids, the account number
//! as key, the partition chosen by branch, and an exact account of what was delivered.
//!
//! The send path is synchronous (`BaseProducer`, polled by the sending thread) so that a tight
//! generation loop pays no async overhead per event. Delivery reports come back with the event's
//! account and signed amount attached, so the manifest counts only what Kafka acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bank_contract::pb::{Customer, Transaction};
use bank_contract::{Event, Registry, SchemaId, money, wire};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::cli::Destination;
use crate::manifest::{AccountTotals, Manifest, TopicCounts};
use crate::topics::{TopicLayout, ensure_topic};

/// What a delivery report refers to.
pub enum Sent {
    Customer,
    Transaction { account: u32, signed_cents: i64 },
}

#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// Counts delivery reports; shared with librdkafka as the producer's context.
#[derive(Default)]
pub struct DeliveryTracker {
    customers: Tally,
    transactions: Tally,
    /// Per account (by interned id): acknowledged transactions and their signed sum.
    totals: Mutex<Vec<(u64, i64)>>,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let tally = match *sent {
            Sent::Customer => &self.customers,
            Sent::Transaction { .. } => &self.transactions,
        };
        match result {
            Ok(_) => {
                tally.delivered.fetch_add(1, Ordering::Relaxed);
                if let Sent::Transaction {
                    account,
                    signed_cents,
                } = *sent
                {
                    let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
                    let index = account as usize;
                    if totals.len() <= index {
                        totals.resize(index + 1, (0, 0));
                    }
                    totals[index].0 += 1;
                    totals[index].1 += signed_cents;
                }
            }
            Err((error, _)) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(error.to_string());
                    tracing::error!(%error, "delivery failed");
                }
            }
        }
    }
}

/// A topic events go to, with what is needed to address it.
#[derive(Debug, Clone)]
struct Route {
    topic: String,
    partitions: i32,
    schema_id: SchemaId,
    sent: u64,
    /// Framed value bytes handed to Kafka (keys excluded), for the average event size.
    value_bytes: u64,
}

impl Route {
    fn partition_of(&self, branch_id: u32) -> i32 {
        (branch_id % self.partitions as u32) as i32
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

pub struct Publisher {
    producer: BaseProducer<DeliveryTracker>,
    customers: Route,
    transactions: Route,
    account_ids: HashMap<String, u32>,
    account_names: Vec<String>,
    buffer: Vec<u8>,
    unpolled: u32,
}

/// Serve delivery callbacks at least this often, so the queue of reports stays short.
const POLL_EVERY: u32 = 1024;

impl Publisher {
    /// Registers both schemas, makes sure both topics exist with a partition per branch, and
    /// connects an idempotent producer.
    pub async fn connect(dest: &Destination, layout: &TopicLayout) -> anyhow::Result<Publisher> {
        let registry = Registry::new(&dest.registry.registry_config()?)?;
        let customer_schema = registry
            .register::<Customer>(&dest.customers_topic)
            .await
            .with_context(|| {
                format!(
                    "registering the Customer schema at {}",
                    registry.display_url()
                )
            })?;
        let transaction_schema = registry
            .register::<Transaction>(&dest.transactions_topic)
            .await
            .with_context(|| {
                format!(
                    "registering the Transaction schema at {}",
                    registry.display_url()
                )
            })?;

        let base = dest.kafka.client_config()?;
        let customer_partitions = ensure_topic(&base, &dest.customers_topic, layout).await?;
        let transaction_partitions = ensure_topic(&base, &dest.transactions_topic, layout).await?;

        let mut config = bank_plumbing::kafka::idempotent_producer_config(&dest.kafka)?;
        // Throughput defaults; anything here can be overridden with --kafka-config.
        for (key, value) in [
            ("linger.ms", "10"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
            ("message.timeout.ms", "60000"),
        ] {
            if config.get(key).is_none() {
                config.set(key, value);
            }
        }
        tracing::debug!(config = %bank_plumbing::kafka::describe(&config), "producer settings");
        let producer: BaseProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .context("creating the Kafka producer")?;
        Ok(Publisher {
            producer,
            customers: Route {
                topic: dest.customers_topic.clone(),
                partitions: customer_partitions,
                schema_id: customer_schema,
                sent: 0,
                value_bytes: 0,
            },
            transactions: Route {
                topic: dest.transactions_topic.clone(),
                partitions: transaction_partitions,
                schema_id: transaction_schema,
                sent: 0,
                value_bytes: 0,
            },
            account_ids: HashMap::new(),
            account_names: Vec::new(),
            buffer: Vec::with_capacity(256),
            unpolled: 0,
        })
    }

    pub fn publish_customer(&mut self, customer: &Customer) -> anyhow::Result<()> {
        self.buffer.clear();
        wire::frame_into(&mut self.buffer, self.customers.schema_id, customer);
        let partition = self.customers.partition_of(customer.branch_id);
        enqueue(
            &self.producer,
            &self.customers.topic,
            partition,
            customer.key(),
            &self.buffer,
            Box::new(Sent::Customer),
        )?;
        self.customers.sent += 1;
        self.customers.value_bytes += self.buffer.len() as u64;
        self.after_send();
        Ok(())
    }

    pub fn publish_transaction(&mut self, tx: &Transaction) -> anyhow::Result<()> {
        let Some(signed_cents) = money::signed_amount_cents(tx) else {
            bail!(
                "transaction {} has no valid kind ({})",
                tx.transaction_id,
                tx.kind
            );
        };
        let account = self.account_id(&tx.account_number);
        self.buffer.clear();
        wire::frame_into(&mut self.buffer, self.transactions.schema_id, tx);
        let partition = self.transactions.partition_of(tx.branch_id);
        let sent = Box::new(Sent::Transaction {
            account,
            signed_cents,
        });
        enqueue(
            &self.producer,
            &self.transactions.topic,
            partition,
            tx.key(),
            &self.buffer,
            sent,
        )?;
        self.transactions.sent += 1;
        self.transactions.value_bytes += self.buffer.len() as u64;
        self.after_send();
        Ok(())
    }

    /// Waits until everything sent so far is acknowledged (or failed), at most `limit`.
    /// Waits until every event sent so far is acknowledged (or failed), at most `limit`.
    ///
    /// Not rdkafka's `flush`, which polls in steps of up to 100 ms and was seen to take about
    /// 100 ms even when the last acknowledgement came after a few: a table source that waits for
    /// each batch lost half its rate to that. Polling in 1 ms steps serves each report as soon as it
    /// arrives.
    pub fn flush(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + limit;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "{} events still unacknowledged after {limit:?}",
                    self.producer.in_flight_count()
                );
            }
            self.producer.poll(Duration::from_millis(1));
        }
        self.unpolled = 0;
        Ok(())
    }

    pub fn customer_summary(&self) -> Summary {
        summary(self.customers.sent, &self.producer.context().customers)
    }

    pub fn transaction_summary(&self) -> Summary {
        summary(
            self.transactions.sent,
            &self.producer.context().transactions,
        )
    }

    pub fn first_error(&self) -> Option<String> {
        self.producer.context().first_error.lock().ok()?.clone()
    }

    /// What was acknowledged, per topic and per account.
    pub fn manifest(&self) -> Manifest {
        let mut topics = BTreeMap::new();
        for (route, summary) in [
            (&self.customers, self.customer_summary()),
            (&self.transactions, self.transaction_summary()),
        ] {
            topics.insert(
                route.topic.clone(),
                TopicCounts {
                    partitions: route.partitions,
                    sent: summary.sent,
                    delivered: summary.delivered,
                    failed: summary.failed,
                },
            );
        }
        let totals = self
            .producer
            .context()
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let accounts = self
            .account_names
            .iter()
            .enumerate()
            .map(|(id, name)| {
                let (transactions, sum_cents) = totals.get(id).copied().unwrap_or_default();
                (name.clone(), AccountTotals::new(transactions, sum_cents))
            })
            .collect();
        Manifest { topics, accounts }
    }

    /// Average size of a framed Transaction value, in bytes.
    pub fn average_transaction_bytes(&self) -> u64 {
        self.transactions.value_bytes / self.transactions.sent.max(1)
    }

    /// Partition count of the transactions topic (customers' may differ).
    pub fn transaction_partitions(&self) -> i32 {
        self.transactions.partitions
    }

    fn account_id(&mut self, account: &str) -> u32 {
        if let Some(id) = self.account_ids.get(account) {
            return *id;
        }
        let id = self.account_names.len() as u32;
        self.account_ids.insert(account.to_owned(), id);
        self.account_names.push(account.to_owned());
        id
    }

    fn after_send(&mut self) {
        self.unpolled += 1;
        if self.unpolled >= POLL_EVERY {
            self.producer.poll(Duration::ZERO);
            self.unpolled = 0;
        }
    }
}

/// Hands one event to librdkafka, waiting for room when its queue is full (backpressure
/// instead of an error or unbounded memory).
fn enqueue(
    producer: &BaseProducer<DeliveryTracker>,
    topic: &str,
    partition: i32,
    key: &str,
    payload: &[u8],
    sent: Box<Sent>,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, sent)
        .partition(partition)
        .key(key)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Serving delivery reports is what frees room in the queue.
                producer.poll(Duration::from_millis(50));
                record = returned;
            }
            Err((error, _)) => {
                return Err(error).with_context(|| format!("sending to {topic}[{partition}]"));
            }
        }
    }
}

fn summary(sent: u64, tally: &Tally) -> Summary {
    Summary {
        sent,
        delivered: tally.delivered.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
    }
}
