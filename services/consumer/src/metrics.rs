//! Prometheus metrics of the consumer roles, in the OpenMetrics text format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    pub topic: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// Every metric the ledger exports. Cheap to clone (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub consumed: Family<TopicLabel, Counter>,
    pub persisted: Family<TopicLabel, Counter>,
    pub duplicates: Counter,
    pub parked: Gauge,
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub lag: Family<PartitionLabels, Gauge>,
    pub ready: Gauge,
    pub assigned_partitions: Gauge,
    pub retries: Family<OperationLabel, Counter>,
    pub fenced: Counter,
    pub conflicting_duplicates: Counter,
    /// Seconds from an event's Kafka timestamp to the commit that made it durable.
    pub event_age: Family<TopicLabel, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

impl Metrics {
    /// Counts delivered dead letters by source topic and reason.
    pub fn count_dead_letters(&self, letters: &[crate::dead_letter::DeadLetter]) {
        for letter in letters {
            self.dead_lettered
                .get_or_create(&DeadLetterLabels {
                    topic: letter.record.topic.to_string(),
                    reason: letter.reason_kind.to_owned(),
                })
                .inc();
        }
    }

    /// Creates the metrics and registers them under the `bank_` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            consumed: Family::default(),
            persisted: Family::default(),
            duplicates: Counter::default(),
            parked: Gauge::default(),
            dead_lettered: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            lag: Family::default(),
            ready: Gauge::default(),
            assigned_partitions: Gauge::default(),
            retries: Family::default(),
            fenced: Counter::default(),
            conflicting_duplicates: Counter::default(),
            // 1 ms to about 65 s, doubling.
            event_age: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 17))
            }),
        };
        let bank = registry.sub_registry_with_prefix("bank");
        bank.register(
            "events_consumed",
            "Events read from Kafka",
            metrics.consumed.clone(),
        );
        bank.register(
            "events_persisted",
            "Events whose effect is committed to the database (customers upserted, transactions posted)",
            metrics.persisted.clone(),
        );
        bank.register(
            "duplicates_skipped",
            "Transactions skipped because their id was already in the ledger",
            metrics.duplicates.clone(),
        );
        bank.register(
            "parked_transactions",
            "Transactions waiting for their customer",
            metrics.parked.clone(),
        );
        bank.register(
            "dead_lettered",
            "Messages copied to a dead-letter topic, by source topic and reason",
            metrics.dead_lettered.clone(),
        );
        bank.register(
            "batch_size",
            "Messages per committed batch",
            metrics.batch_size.clone(),
        );
        bank.register(
            "commit_seconds",
            "Time to apply and commit one batch in the database",
            metrics.commit_seconds.clone(),
        );
        bank.register(
            "consumer_lag",
            "Messages between the consumer's position and the end of the partition",
            metrics.lag.clone(),
        );
        bank.register(
            "ready",
            "1 when /readyz would answer 200",
            metrics.ready.clone(),
        );
        bank.register(
            "assigned_partitions",
            "Partitions (branches, both topics) this instance owns",
            metrics.assigned_partitions.clone(),
        );
        bank.register(
            "retries",
            "Failed attempts that were retried after a pause, by operation",
            metrics.retries.clone(),
        );
        bank.register(
            "fenced_batches",
            "Batches dropped because another writer had moved their partitions (then re-read)",
            metrics.fenced.clone(),
        );
        bank.register(
            "conflicting_duplicates",
            "Transactions whose id was already stored for another movement of money (dead-lettered)",
            metrics.conflicting_duplicates.clone(),
        );
        bank.register(
            "event_age_seconds",
            "Time from an event's Kafka timestamp to the commit of its effect, by topic",
            metrics.event_age.clone(),
        );
        metrics
    }

    /// Observes the age of every event of a committed batch.
    pub fn observe_ages(&self, decoded: &crate::pipeline::Decoded) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let positions = decoded.positions();
        // One label lookup per topic of the batch, not per event.
        let mut by_topic: std::collections::HashMap<&str, Histogram> = Default::default();
        for position in positions {
            let Some(at) = position.timestamp_ms else {
                continue;
            };
            let histogram = by_topic.entry(position.topic()).or_insert_with(|| {
                self.event_age
                    .get_or_create(&TopicLabel {
                        topic: position.topic().to_owned(),
                    })
                    .clone()
            });
            histogram.observe(now_ms.saturating_sub(at).max(0) as f64 / 1000.0);
        }
    }
}
