//! Hostile but well-formed input through the real pipeline: it never wedges the ledger, never
//! wraps a balance, and never goes unnoticed. Each bad record is dead-lettered with a reason
//! that names it; every good record of the same batches is persisted.

mod support;

use std::time::Duration;

use bank_contract::Event;
use support::*;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn contract_limits_are_enforced_before_the_database() {
    let topics = fresh_topics("hostile");
    let database_url = fresh_postgres("hostile").await;
    let raw = RawProducer::new(&topics).await;
    for account in ["A", "B"] {
        raw.customer(&customer(account)).await;
    }
    let mut nul = transaction("A", 100);
    nul.description = "a NUL \u{0} here".into(); // 0: PostgreSQL would refuse the whole batch
    raw.transaction(&nul).await;
    raw.transaction(&transaction("B", 200)).await; // 1: good, same batch
    let mut huge = transaction("B", 1);
    huge.amount_cents = 5_000_000_000_000_000_000; // 2: above 10^15
    raw.transaction(&huge).await;
    let mut far = transaction("B", 1);
    far.transaction_datetime = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    }); // 3: outside Timestamp's range
    raw.transaction(&far).await;
    let mut long = transaction("B", 1);
    long.transaction_reference = "R".repeat(10_000); // 4: over the field's limit
    raw.transaction(&long).await;
    let mut named = customer("C");
    named.first_name = "Bobby\u{7}".into(); // customers 2: a control character
    raw.customer(&named).await;
    raw.transaction(&transaction("A", 50)).await; // 5: good

    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("every record handled", WAIT, || async {
        stored_offset(&db, &topics.group, &topics.transactions).await == 6
    })
    .await;
    let state = ledger_state(&db).await;
    assert_eq!(state.accounts["A"], (1, 50));
    assert_eq!(state.accounts["B"], (1, 200));
    assert_eq!(ledger.get("/readyz").await.0, 200, "nothing wedged");
    let letters = read_dead_letters(&topics, 5).await;
    let summary: Vec<(&str, i64, &str)> = letters
        .iter()
        .map(|l| (l.source_topic.as_str(), l.source_offset, l.kind.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (topics.customers.as_str(), 2, "contract-violation"),
            (topics.transactions.as_str(), 0, "contract-violation"),
            (topics.transactions.as_str(), 2, "contract-violation"),
            (topics.transactions.as_str(), 3, "contract-violation"),
            (topics.transactions.as_str(), 4, "contract-violation"),
        ]
    );
    for (letter, field) in letters.iter().zip([
        "first_name",
        "description",
        "amount_cents",
        "transaction_datetime",
        "transaction_reference",
    ]) {
        assert!(
            letter.message.starts_with(field),
            "{letter:?} names {field}"
        );
        assert!(
            letter.message.len() < 300,
            "a short reason, not the value: {letter:?}"
        );
    }
    ledger.stop().await;
}

#[tokio::test]
async fn the_same_id_for_another_movement_is_dead_lettered_and_counted() {
    let topics = fresh_topics("conflict");
    let database_url = fresh_sqlite("conflict");
    let raw = RawProducer::new(&topics).await;
    raw.customer(&customer("K")).await;
    let original = transaction("K", 100);
    raw.transaction(&original).await; // 0
    let mut other = original.clone();
    other.amount_cents = 999; // 1: same id, another amount
    raw.transaction(&other).await;
    raw.transaction(&original).await; // 2: an exact redelivery
    let mut shouting = original.clone();
    shouting.transaction_id = original.transaction_id.to_uppercase(); // 3: the same id
    raw.transaction(&shouting).await;
    raw.transaction(&transaction("K", 1)).await; // 4: good

    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("every record handled", WAIT, || async {
        stored_offset(&db, &topics.group, &topics.transactions).await == 5
    })
    .await;
    assert_eq!(ledger_state(&db).await.accounts["K"], (2, 101));
    let letters = read_dead_letters(&topics, 1).await;
    assert_eq!(letters[0].source_offset, 1);
    assert_eq!(letters[0].kind, "conflicting-duplicate");
    assert!(letters[0].message.contains("999"), "{letters:?}");
    // The batch let the record's bytes go once decoded: the letter reads them back from Kafka.
    assert_eq!(letters[0].key, other.key().as_bytes(), "key untouched");
    assert_eq!(
        letters[0].value,
        raw.framed_transaction(&other),
        "value untouched"
    );
    assert_eq!(
        ledger.metric("bank_conflicting_duplicates_total").await,
        Some(1.0)
    );
    assert_eq!(
        ledger.metric("bank_duplicates_skipped_total").await,
        Some(2.0),
        "the exact and the upper-case redelivery are silent duplicates"
    );
    ledger.stop().await;
}

/// A dead letter Kafka refuses as too large is written cut down, with the original size in a
/// header, instead of stalling every partition behind it; dead-letter topics exist from start.
#[tokio::test]
async fn an_oversized_dead_letter_is_truncated_not_stuck() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let topics = fresh_topics("oversized");
    let database_url = fresh_sqlite("oversized");
    let raw = RawProducer::new(&topics).await;
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let dlq = format!("{}.dlq", topics.transactions);
    let small =
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "100000");
    for result in admin
        .create_topics([&small], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.expect("a dead-letter topic with a small limit");
    }
    raw.customer(&customer("Z")).await;
    raw.raw(&topics.transactions, "Z", &vec![0xAB; 200_000])
        .await; // 0: not framed, too big
    raw.transaction(&transaction("Z", 10)).await; // 1: good

    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("both records handled", WAIT, || async {
        stored_offset(&db, &topics.group, &topics.transactions).await == 2
    })
    .await;
    assert_eq!(ledger_state(&db).await.accounts["Z"], (1, 10));
    let letters = read_dead_letters(&topics, 1).await;
    assert_eq!(letters[0].kind, "not-framed");
    assert_eq!(letters[0].truncated, "200000", "{letters:?}");
    assert_eq!(letters[0].value_bytes, 64 * 1024);
    // The customers' dead-letter topic was created at start, before any poison.
    let metadata = admin
        .inner()
        .fetch_metadata(
            Some(&format!("{}.dlq", topics.customers)),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(metadata.topics()[0].error().is_none(), "created at start");
    ledger.stop().await;
}
