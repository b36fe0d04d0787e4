//! Dead-letter topics: a message that cannot be decoded or breaks the contract is copied, key
//! and value untouched, to `<topic>.dlq` with headers saying what was wrong and where it came
//! from, and the consumer moves on. Delivery is confirmed before the batch that skips the
//! message is committed, so a poison message is never lost; after a crash at the wrong instant
//! it may be dead-lettered twice (at-least-once), never zero times.

use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::source::Record;

/// Header names, stable for tools that read the dead-letter topics.
pub const HEADER_ERROR_KIND: &str = "dlq.error.kind";
pub const HEADER_ERROR_MESSAGE: &str = "dlq.error.message";
pub const HEADER_SOURCE_TOPIC: &str = "dlq.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "dlq.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "dlq.source.offset";
/// The database's error code (SQLSTATE, or SQLite's extended result code) of a
/// `database-rejected` letter.
pub const HEADER_ERROR_CODE: &str = "dlq.error.code";

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: std::sync::Arc<Record>,
    /// Short stable label (`not-framed`, `unknown-schema`, `contract-violation`,
    /// `database-rejected`, `balance-overflow`, `conflicting-duplicate`, ...).
    pub reason_kind: &'static str,
    pub reason: String,
    /// The database's error code, for `database-rejected`.
    pub code: Option<String>,
}

/// Cheap to clone: the front and every writer share one producer.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
}

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl DeadLetters {
    pub fn new(base: &ClientConfig) -> anyhow::Result<DeadLetters> {
        let mut config = base.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        Ok(DeadLetters {
            producer: config
                .create()
                .context("creating the dead-letter producer")?,
        })
    }

    /// Sends every letter and waits until Kafka acknowledged all of them.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        let sends = letters.iter().map(|letter| async move {
            let record = &letter.record;
            let topic = bank_contract::topics::dead_letter_topic(&record.topic);
            let partition = record.partition.to_string();
            let offset = record.offset.to_string();
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            headers = headers
                .insert(Header {
                    key: HEADER_ERROR_KIND,
                    value: Some(letter.reason_kind),
                })
                .insert(Header {
                    key: HEADER_ERROR_MESSAGE,
                    value: Some(&letter.reason),
                })
                .insert(Header {
                    key: HEADER_SOURCE_TOPIC,
                    value: Some(&record.topic),
                })
                .insert(Header {
                    key: HEADER_SOURCE_PARTITION,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: HEADER_SOURCE_OFFSET,
                    value: Some(&offset),
                });
            if let Some(code) = &letter.code {
                headers = headers.insert(Header {
                    key: HEADER_ERROR_CODE,
                    value: Some(code),
                });
            }
            let mut message: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(payload) = &record.payload {
                message = message.payload(payload.as_slice());
            }
            self.producer
                .send(message, DELIVERY_TIMEOUT)
                .await
                .map_err(|(error, _)| error)
                .with_context(|| {
                    format!(
                        "dead-lettering {}[{}]@{} to {topic}",
                        record.topic, record.partition, record.offset
                    )
                })
        });
        try_join_all(sends).await?;
        Ok(())
    }
}
