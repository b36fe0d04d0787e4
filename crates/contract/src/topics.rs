//! Topic names and how subjects are derived from them.
//!
//! Subjects follow Confluent's TopicNameStrategy (`<topic>-value`), the default of every Confluent
//! serializer, so tools such as the Kafka UI and ksqlDB find our schemas without configuration.

/// Default topic of `Transaction` events.
pub const TRANSACTIONS: &str = "bank.transactions";
/// Default topic of `Customer` events.
pub const CUSTOMERS: &str = "bank.customers";
/// Default topic of `LimitAlert` events.
pub const ALERTS: &str = "bank.alerts";

/// The registry subject holding the schema of a topic's message values.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Where messages that cannot be processed go: `<topic>.dlq`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_topic_name_strategy() {
        assert_eq!(value_subject(TRANSACTIONS), "bank.transactions-value");
        assert_eq!(dead_letter_topic(CUSTOMERS), "bank.customers.dlq");
    }
}
