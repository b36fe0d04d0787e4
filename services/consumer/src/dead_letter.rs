//! Dead-letter topics: a message that cannot be decoded or breaks the contract is copied, key
//! and value untouched, to `<topic>.dlq` with headers saying what was wrong and where it came
//! from, and the consumer moves on. Delivery is confirmed before the batch that skips the
//! message is committed, so a poison message is never lost; after a crash at the wrong instant
//! it may be dead-lettered twice (at-least-once), never zero times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::try_join_all;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
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

    /// Reads the records at `wanted` (topic, partition, offset) back from Kafka, in order: a
    /// batch lets its records' bytes go once decoded, and an event the database refuses later
    /// must still be dead-lettered untouched. `None` for a record that is no longer in Kafka.
    /// Rare (a refusal), so each call has a consumer of its own, outside any group.
    pub async fn refetch(
        &self,
        wanted: &[(Arc<str>, i32, i64)],
    ) -> Result<Vec<Option<Record>>, DeadLetterError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut config = self.base.clone();
        config
            .set("group.id", "bankstream-dead-letter-refetch")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let wanted = wanted.to_vec();
        tokio::task::spawn_blocking(move || refetch_blocking(&config, &wanted))
            .await
            .map_err(|error| DeadLetterError::Transient(anyhow::anyhow!("refetch task: {error}")))?
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
            .map_err(|error| {
                let record = &letter.record;
                let at = position_of(&record.topic, record.partition, record.offset);
                classify(error, format!("dead-lettering {at}"))
            })
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

/// How long reading one record back may take before the attempt counts as failed (retried).
const REFETCH_TIMEOUT: Duration = Duration::from_secs(30);

fn refetch_blocking(
    config: &ClientConfig,
    wanted: &[(Arc<str>, i32, i64)],
) -> Result<Vec<Option<Record>>, DeadLetterError> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| classify(e, "creating the refetch consumer".into()))?;
    let mut found = Vec::with_capacity(wanted.len());
    for (topic, partition, offset) in wanted {
        let at = position_of(topic, *partition, *offset);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .and_then(|()| consumer.assign(&tpl))
            .map_err(|e| classify(e, format!("reading {at} back")))?;
        let deadline = Instant::now() + REFETCH_TIMEOUT;
        let record = loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(DeadLetterError::Transient(anyhow::anyhow!(
                    "reading {at} back from Kafka timed out"
                )));
            };
            match consumer.poll(left) {
                Some(Ok(message))
                    if message.topic() == &**topic && message.partition() == *partition =>
                {
                    if message.offset() == *offset {
                        break Some(Record::of_message(topic.clone(), &message));
                    }
                    // Past it: deleted by retention, the position reset to the earliest.
                    if message.offset() > *offset {
                        break None;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break None,
                Some(Err(error)) => return Err(classify(error, format!("reading {at} back"))),
                Some(Ok(_)) | None => {}
            }
        };
        found.push(record);
    }
    Ok(found)
}

/// Whether a Kafka error met while `doing` something for a letter is worth retrying: not being
/// authorized is not (the role stops, loudly), anything else may pass (broker down, timeouts).
fn classify(error: KafkaError, doing: String) -> DeadLetterError {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ) => DeadLetterError::Fatal(format!("{doing}: {error}")),
        _ => DeadLetterError::Transient(anyhow::Error::new(error).context(doing)),
    }
}

/// `topic[partition]@offset`, how letters name a record in errors.
fn position_of(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}[{partition}]@{offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authorization_failures_are_fatal() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ] {
            for error in [
                KafkaError::MessageConsumption(code),
                KafkaError::MessageProduction(code),
            ] {
                let classified = classify(error, "reading t[0]@7 back".into());
                assert!(
                    matches!(&classified, DeadLetterError::Fatal(m) if m.starts_with("reading t[0]@7 back: ")),
                    "{code:?}: {classified:?}"
                );
            }
        }
        for error in [
            KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure),
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange),
        ] {
            let classified = classify(error, "dead-lettering t[0]@7".into());
            assert!(
                matches!(&classified, DeadLetterError::Transient(e) if format!("{e:#}").starts_with("dead-lettering t[0]@7: ")),
                "{classified:?}"
            );
        }
    }
}
