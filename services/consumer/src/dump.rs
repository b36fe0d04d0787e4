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
    let input = &args.input;
    let registry = Registry::new(&input.registry.registry_config()?)?;
    let decoder = Decoder::new(registry.into());
    // A throwaway group that commits nothing: dumping never moves anyone's offsets.
    let group = format!("bank-dump-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer =
        bank_plumbing::kafka::manual_commit_consumer_config(&input.kafka, &group)?
            .create()
            .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&input.transactions_topic, &input.customers_topic])
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
        let rendered = if topic == input.transactions_topic {
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
    bank_plumbing::kafka::close_consumer(consumer, Duration::from_secs(10)).await;
    result
}

fn render_transaction(tx: &Transaction, as_json: bool) -> serde_json::Value {
    if as_json {
        return json::transaction(tx);
    }
    let signed = money::signed_amount_cents(tx).unwrap_or_default();
    let at = json::timestamp(tx.transaction_datetime.as_ref());
    format!(
        "transaction {} at={} account={} amount={} {} branch={} ref={:?} desc={:?}",
        tx.transaction_id,
        at.as_str().unwrap_or("-"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bank_contract::pb::TransactionKind;

    #[test]
    fn a_transaction_line_shows_when_it_happened() {
        let mut tx = Transaction {
            transaction_id: "00000000-0000-4000-8000-000000000001".into(),
            account_number: "ACC-000001".into(),
            kind: TransactionKind::Withdrawal as i32,
            amount_cents: 1_250,
            currency: "USD".into(),
            transaction_datetime: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 120_000_000,
            }),
            ..Default::default()
        };
        let line = render_transaction(&tx, false);
        let line = line.as_str().unwrap_or_default();
        assert!(
            line.contains(" at=2023-11-14T22:13:20.120Z account=ACC-000001 amount=-12.50 USD"),
            "{line}"
        );
        tx.transaction_datetime = None;
        let line = render_transaction(&tx, false);
        assert!(
            line.as_str().unwrap_or_default().contains(" at=- "),
            "{line}"
        );
    }
}
