//! The whole path on real infrastructure: schemas registered in the registry, one Customer and
//! one Transaction produced to Kafka in the Confluent framing, consumed back and decoded equal.
//! Uses `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL`, defaulting to the native stack.

use std::sync::Arc;
use std::time::Duration;

use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::{Decoder, Event, Registry, RegistryConfig, wire};
use bank_plumbing::kafka::{KafkaArgs, idempotent_producer_config, manual_commit_consumer_config};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test]
async fn events_round_trip_through_kafka_and_the_registry() {
    let kafka = KafkaArgs::with_bootstrap(env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"));
    let registry = Arc::new(
        Registry::new(&RegistryConfig::new(env_or(
            "SCHEMA_REGISTRY_URL",
            "http://127.0.0.1:8081/apis/ccompat/v7",
        )))
        .unwrap(),
    );
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let tx_topic = format!("test.roundtrip.transactions.{suffix}");
    let customer_topic = format!("test.roundtrip.customers.{suffix}");
    let customer_schema = registry
        .register::<Customer>(&customer_topic)
        .await
        .unwrap();
    let tx_schema = registry.register::<Transaction>(&tx_topic).await.unwrap();

    let customer = Customer {
        account_number: "ACC-7".into(),
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        email: "grace@example.com".into(),
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        branch_id: 2,
        updated_at: None,
    };
    let transaction = Transaction {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        account_number: "ACC-7".into(),
        transaction_reference: "REF-7".into(),
        transaction_datetime: Some(prost_types::Timestamp {
            seconds: 1_700_000_100,
            nanos: 1,
        }),
        kind: TransactionKind::Deposit as i32,
        amount_cents: 99_999,
        currency: "USD".into(),
        branch_id: 2,
        description: "salary".into(),
    };

    let producer: FutureProducer = idempotent_producer_config(&kafka)
        .unwrap()
        .create()
        .unwrap();
    for (topic, key, payload) in [
        (
            &customer_topic,
            customer.key(),
            wire::frame(customer_schema, &customer),
        ),
        (
            &tx_topic,
            transaction.key(),
            wire::frame(tx_schema, &transaction),
        ),
    ] {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }

    let consumer: StreamConsumer =
        manual_commit_consumer_config(&kafka, &format!("test-roundtrip-{suffix}"))
            .unwrap()
            .create()
            .unwrap();
    consumer.subscribe(&[&tx_topic, &customer_topic]).unwrap();
    let decoder = Decoder::new(registry);
    let (mut got_customer, mut got_tx) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got_customer.is_none() || got_tx.is_none() {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("both events consumed within 60 s")
            .expect("kafka error");
        assert_eq!(
            message.key(),
            Some("ACC-7".as_bytes()),
            "keyed by account number"
        );
        let payload = message.payload().unwrap();
        if message.topic() == tx_topic {
            got_tx = Some(decoder.decode::<Transaction>(payload).await.unwrap());
        } else {
            got_customer = Some(decoder.decode::<Customer>(payload).await.unwrap());
        }
    }
    assert!(
        bank_plumbing::kafka::close_consumer(consumer, Duration::from_secs(30)).await,
        "consumer closes within 30 s"
    );
    assert_eq!(got_customer.unwrap(), customer);
    assert_eq!(got_tx.unwrap(), transaction);
}
