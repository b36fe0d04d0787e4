//! Helpers shared by the producer's integration tests: the stack's addresses, fresh topic
//! names, and a test consumer that reads topics back and decodes them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bank_contract::pb::{Customer, Transaction};
use bank_contract::{Decoder, Registry, RegistryConfig};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Timestamp;

// Each test binary uses its own subset.
#[allow(unused_imports)]
pub use bank_test_support::{Reaped, bootstrap, poll_for, registry_url, terminate, wait_until};

/// A pair of topic names no other test uses.
pub fn fresh_topics(name: &str) -> (String, String) {
    let suffix = uuid::Uuid::new_v4().simple();
    (
        format!("test.{name}.transactions.{suffix}"),
        format!("test.{name}.customers.{suffix}"),
    )
}

/// The flags every test passes to reach the stack and its topics.
pub fn destination(tx_topic: &str, customer_topic: &str) -> Vec<String> {
    vec![
        "-b".into(),
        bootstrap(),
        "-s".into(),
        registry_url(),
        "-t".into(),
        tx_topic.into(),
        "--customers-topic".into(),
        customer_topic.into(),
    ]
}

pub async fn run_producer(args: Vec<String>) -> anyhow::Result<()> {
    use clap::Parser;
    let mut argv = vec!["producer".to_owned()];
    argv.extend(args);
    producer::run(producer::cli::Cli::try_parse_from(argv)?).await
}

#[derive(Debug, Clone)]
pub enum Event {
    Customer(Customer),
    Transaction(Transaction),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub timestamp_ms: i64,
    pub payload: Vec<u8>,
    pub event: Event,
}

/// Reads exactly `count` events from the two topics (from the beginning), failing after 60 s.
pub async fn read_back(tx_topic: &str, customer_topic: &str, count: usize) -> Vec<Received> {
    let registry = Arc::new(Registry::new(&RegistryConfig::new(registry_url())).unwrap());
    let decoder = Decoder::new(registry);
    let kafka = bank_plumbing::kafka::KafkaArgs::with_bootstrap(bootstrap());
    let group = format!("test-reader-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer =
        bank_plumbing::kafka::manual_commit_consumer_config(&kafka, &group)
            .unwrap()
            .create()
            .unwrap();
    consumer.subscribe(&[tx_topic, customer_topic]).unwrap();
    let mut received = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("read {} of {count} events in 60 s", received.len()))
            .expect("kafka error");
        let payload = message.payload().unwrap_or_default().to_vec();
        let event = if message.topic() == tx_topic {
            Event::Transaction(decoder.decode::<Transaction>(&payload).await.unwrap())
        } else {
            Event::Customer(decoder.decode::<Customer>(&payload).await.unwrap())
        };
        let timestamp_ms = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
            Timestamp::NotAvailable => panic!("message without timestamp"),
        };
        received.push(Received {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap(),
            timestamp_ms,
            payload,
            event,
        });
    }
    assert!(bank_plumbing::kafka::close_consumer(consumer, Duration::from_secs(30)).await);
    received
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    received
}
