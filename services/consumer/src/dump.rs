//! `consumer dump`: decoded events on stdout. A debugging tool and the Rust half of the
//! interoperability test with Confluent's Python client.

use std::time::Duration;

use anyhow::Context;
use bank_contract::pb::{Customer, Transaction};
use bank_contract::{Decoder, Registry, json, money};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::cli::DumpArgs;

pub async fn run(args: DumpArgs) -> anyhow::Result<()> {
    let source = &args.source;
    let registry = Registry::new(&source.registry.registry_config()?)?;
    let decoder = Decoder::new(registry.into());
    // A throwaway group that commits nothing: dumping never moves anyone's offsets.
    let group = format!("bank-dump-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer =
        bank_runtime::kafka::manual_commit_consumer_config(&source.kafka, &group)?
            .create()
            .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&source.transactions_topic, &source.customers_topic])
        .context("subscribing")?;

    let mut seen = 0u64;
    let result = loop {
        if args.count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let next = consumer.recv();
        let message = match args.idle_timeout_secs {
            Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), next).await {
                Ok(message) => message,
                Err(_) => break Err(anyhow::anyhow!("no event for {secs}s after {seen} events")),
            },
            None => next.await,
        };
        let message = message.context("reading from Kafka")?;
        let bytes = message.payload().unwrap_or_default();
        let topic = message.topic();
        let rendered = if topic == source.transactions_topic {
            decoder
                .decode::<Transaction>(bytes)
                .await
                .map(|tx| render_transaction(&tx, args.json))
        } else {
            decoder
                .decode::<Customer>(bytes)
                .await
                .map(|c| render_customer(&c, args.json))
        };
        let position = format!("{topic}[{}]@{}", message.partition(), message.offset());
        match rendered {
            Ok(value) if args.json => println!(
                "{}",
                serde_json::json!({"topic": topic, "partition": message.partition(), "offset": message.offset(), "value": value})
            ),
            Ok(value) => println!("{position} {}", value.as_str().unwrap_or_default()),
            Err(error) => eprintln!("{position} cannot be decoded ({}): {error}", error.kind()),
        }
        seen += 1;
    };
    bank_runtime::kafka::close_consumer(consumer, Duration::from_secs(10)).await;
    result
}

fn render_transaction(tx: &Transaction, as_json: bool) -> serde_json::Value {
    if as_json {
        return json::transaction(tx);
    }
    let signed = money::signed_amount_cents(tx).unwrap_or_default();
    format!(
        "transaction {} account={} amount={} {} branch={} ref={:?} desc={:?}",
        tx.transaction_id,
        tx.account_number,
        money::format_cents(signed),
        tx.currency,
        tx.branch_id,
        tx.transaction_reference,
        tx.description
    )
    .into()
}

fn render_customer(c: &Customer, as_json: bool) -> serde_json::Value {
    if as_json {
        return json::customer(c);
    }
    format!(
        "customer account={} name={:?} email={:?} branch={}",
        c.account_number,
        format!("{} {}", c.first_name, c.last_name).trim(),
        c.email,
        c.branch_id
    )
    .into()
}
