//! Dead-letter topics: a message that cannot be decoded or breaks the contract is copied, key
//! and value untouched, to `<topic>.dlq` with headers saying what was wrong and where it came
//! from, and the consumer moves on. Delivery is confirmed before the batch that skips the
//! message is committed, so a poison message is never lost; after a crash at the wrong instant
//! it may be dead-lettered twice (at-least-once), never zero times.

use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

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

/// Why dead letters could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Retrying cannot help (not authorized): the role must stop, loudly.
    #[error("dead letters cannot be written: {0}")]
    Fatal(String),
    /// Broker down, timeouts: retry with backoff.
    #[error("{0:#}")]
    Transient(anyhow::Error),
}

/// Cheap to clone: the front and every writer share one producer.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    base: ClientConfig,
}

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Header of a dead letter whose value (or headers) had to be cut to fit Kafka's limits: the
/// original value's size in bytes.
pub const HEADER_TRUNCATED: &str = "dlq.truncated.original-bytes";

/// What is kept of a value too large for the dead-letter topic.
const TRUNCATED_BYTES: usize = 64 * 1024;

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
            base: base.clone(),
        })
    }

    /// Creates `<topic>.dlq` for each source topic that lacks one (as many partitions as the
    /// source), so that a broker with auto-creation off cannot make every dead letter time out.
    /// Fails, naming the topic, if one is missing and cannot be created (not authorized).
    pub async fn ensure_topics(&self, sources: &[String]) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> =
            self.base.create().context("creating an admin client")?;
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .context("reading topic metadata")?;
        let partitions = |name: &str| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map(|t| t.partitions().len())
        };
        let missing: Vec<(String, i32)> = sources
            .iter()
            .map(|source| (bank_contract::topics::dead_letter_topic(source), source))
            .filter(|(dlq, _)| partitions(dlq).is_none())
            .map(|(dlq, source)| (dlq, partitions(source).unwrap_or(1).max(1) as i32))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(name, count)| NewTopic::new(name, *count, TopicReplication::Fixed(-1)))
            .collect();
        let results = admin
            .create_topics(&new_topics, &AdminOptions::new())
            .await
            .context("creating the dead-letter topics")?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, "created the dead-letter topic"),
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!(
                    "dead-letter topic {topic} is missing and cannot be created ({code}); create it, or allow this client to"
                ),
            }
        }
        Ok(())
    }

    /// Sends every letter and waits until Kafka acknowledged all of them. A letter too large for
    /// the topic is sent again with its value cut to 64 KiB and a header giving the original
    /// size; an authorization failure is [`DeadLetterError::Fatal`].
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let sends = letters.iter().map(|letter| async move {
            match self.send(letter, false).await {
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                    self.send(letter, true).await
                }
                other => other,
            }
            .map_err(|error| classify(error, &letter.record))
        });
        try_join_all(sends).await?;
        Ok(())
    }

    async fn send(&self, letter: &DeadLetter, truncate: bool) -> Result<(), KafkaError> {
        let record = &letter.record;
        let topic = bank_contract::topics::dead_letter_topic(&record.topic);
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let original = record.payload.as_ref().map_or(0, Vec::len).to_string();
        let mut headers = OwnedHeaders::new();
        // Cut down, the letter keeps only its own headers: a source's may be what is too big.
        if !truncate {
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
        }
        let reason: String = letter.reason.chars().take(4096).collect();
        for (key, value) in [
            (HEADER_ERROR_KIND, letter.reason_kind),
            (HEADER_ERROR_MESSAGE, reason.as_str()),
            (HEADER_SOURCE_TOPIC, &*record.topic),
            (HEADER_SOURCE_PARTITION, partition.as_str()),
            (HEADER_SOURCE_OFFSET, offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Some(code) = &letter.code {
            headers = headers.insert(Header {
                key: HEADER_ERROR_CODE,
                value: Some(code),
            });
        }
        if truncate {
            headers = headers.insert(Header {
                key: HEADER_TRUNCATED,
                value: Some(&original),
            });
        }
        let mut message: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(&key[..key.len().min(TRUNCATED_BYTES)]);
        }
        if let Some(payload) = &record.payload {
            let end = if truncate {
                payload.len().min(TRUNCATED_BYTES)
            } else {
                payload.len()
            };
            message = message.payload(&payload[..end]);
        }
        self.producer
            .send(message, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

fn classify(error: KafkaError, record: &Record) -> DeadLetterError {
    let at = format!("{}[{}]@{}", record.topic, record.partition, record.offset);
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ) => DeadLetterError::Fatal(format!("dead-lettering {at}: {error}")),
        _ => DeadLetterError::Transient(
            anyhow::Error::new(error).context(format!("dead-lettering {at}")),
        ),
    }
}
