//! `producer sample`: one Customer and one Transaction, end to end. Proves the broker, the
//! registry and the framing work before anything bigger is attempted.

use std::time::Duration;

use anyhow::Context;
use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::{Event, Registry, json, money, wire};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::cli::SampleArgs;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: SampleArgs) -> anyhow::Result<()> {
    let dest = &args.destination;
    let registry = Registry::new(&dest.registry.registry_config()?)?;
    let customer_schema = registry
        .register::<Customer>(&dest.customers_topic)
        .await
        .context("registering the Customer schema")?;
    let transaction_schema = registry
        .register::<Transaction>(&dest.transactions_topic)
        .await
        .context("registering the Transaction schema")?;
    tracing::info!(
        customer_schema,
        transaction_schema,
        registry = registry.display_url(),
        "schemas registered"
    );

    let producer: FutureProducer = bank_plumbing::kafka::idempotent_producer_config(&dest.kafka)?
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()
        .context("creating the Kafka producer")?;

    let (customer, transaction) = sample_events(chrono::Utc::now());
    // Customer first: the contract promises an account's customer precedes its transactions.
    send(&producer, &dest.customers_topic, customer_schema, &customer).await?;
    send(
        &producer,
        &dest.transactions_topic,
        transaction_schema,
        &transaction,
    )
    .await?;

    print_sent(args.json, dest, &customer, &transaction);
    Ok(())
}

/// A customer with a fresh account number and one deposit to it, both stamped `now`.
fn sample_events(now: chrono::DateTime<chrono::Utc>) -> (Customer, Transaction) {
    let at = prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_millis() as i32 * 1_000_000,
    };
    let account = format!("ACC-{:06}", now.timestamp_subsec_micros());
    let customer = Customer {
        account_number: account.clone(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        created_at: Some(at),
        branch_id: 1,
        updated_at: Some(at),
    };
    let transaction = Transaction {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        account_number: account,
        transaction_reference: "SAMPLE-1".into(),
        transaction_datetime: Some(at),
        kind: TransactionKind::Deposit as i32,
        amount_cents: 12_550,
        currency: "USD".into(),
        branch_id: 1,
        description: "sample deposit".into(),
    };
    (customer, transaction)
}

/// What was sent, as JSON lines (`--json`) or as two sentences.
fn print_sent(
    json_lines: bool,
    dest: &crate::cli::Destination,
    customer: &Customer,
    transaction: &Transaction,
) {
    if json_lines {
        println!(
            "{}",
            serde_json::json!({"topic": dest.customers_topic, "value": json::customer(customer)})
        );
        println!(
            "{}",
            serde_json::json!({"topic": dest.transactions_topic, "value": json::transaction(transaction)})
        );
    } else {
        println!(
            "sent customer {} {} ({}) to {}",
            customer.first_name, customer.last_name, customer.account_number, dest.customers_topic
        );
        println!(
            "sent transaction {} {} {} on {} to {}",
            transaction.transaction_id,
            money::format_cents(money::signed_amount_cents(transaction).unwrap_or_default()),
            transaction.currency,
            transaction.account_number,
            dest.transactions_topic
        );
    }
}

async fn send<E: Event>(
    producer: &FutureProducer,
    topic: &str,
    schema_id: u32,
    event: &E,
) -> anyhow::Result<()> {
    let payload = wire::frame(schema_id, event);
    producer
        .send(
            FutureRecord::to(topic).key(event.key()).payload(&payload),
            Timeout::After(DELIVERY_TIMEOUT),
        )
        .await
        .map_err(|(error, _)| error)
        .with_context(|| format!("delivering {} to {topic}", E::SCHEMA.full_name))?;
    Ok(())
}
