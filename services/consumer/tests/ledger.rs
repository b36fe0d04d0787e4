//! The ledger against the real stack: Kafka, the schema registry, PostgreSQL and SQLite.

mod support;

use std::time::Duration;

use bank_contract::wire;
use support::*;

const WAIT: Duration = Duration::from_secs(90);

async fn reconciles_with_the_manifest(database_url: String, name: &str) {
    let topics = fresh_topics(name);
    let manifest = generate(&topics, 20, 1000, 42).await;
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("1000 transactions persisted", WAIT, || async {
        count(&db, "transactions").await >= 1000
    })
    .await;
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 20));
    assert_eq!(ledger.get("/readyz").await.0, 200);
    assert_eq!(
        ledger.metric("bank_duplicates_skipped_total").await,
        Some(0.0)
    );
    let tuples = std::fs::read_to_string(&ledger.tuple_log).unwrap();
    assert_eq!(tuples.lines().count(), 1000, "one tuple per transaction");
    ledger.stop().await;
}

#[tokio::test]
async fn postgres_equals_the_manifest() {
    reconciles_with_the_manifest(fresh_postgres("ledger_pg").await, "ledger-pg").await;
}

#[tokio::test]
async fn sqlite_equals_the_manifest() {
    reconciles_with_the_manifest(fresh_sqlite("ledger_sqlite"), "ledger-sqlite").await;
}

#[tokio::test]
async fn logs_running_sums_and_durable_balances() {
    let topics = fresh_topics("tuples");
    let database_url = fresh_sqlite("tuples");
    let raw = RawProducer::new(&topics).await;
    raw.customer(&customer("A")).await;
    raw.customer(&customer("B")).await;
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("customers", WAIT, || async {
        count(&db, "customers").await == 2
    })
    .await;
    // A restart-independent balance: A already has 100.00 in the database from "before".
    raw.transaction(&transaction("A", 10_000)).await;
    wait_until("first transaction", WAIT, || async {
        count(&db, "transactions").await == 1
    })
    .await;
    ledger.stop().await;
    std::fs::remove_file(topics_tuple_log(&topics)).unwrap();

    // A new consumer: its running sums start at zero, durable balances do not.
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    for (account, cents) in [("A", 1_000), ("B", -250), ("A", -1_250)] {
        raw.transaction(&transaction(account, cents)).await;
    }
    wait_until("three more transactions", WAIT, || async {
        count(&db, "transactions").await == 4
    })
    .await;
    let tuples = std::fs::read_to_string(&ledger.tuple_log).unwrap();
    assert_eq!(
        tuples,
        "(A, 10.00) balance=110.00\n(B, -2.50) balance=-2.50\n(A, -2.50) balance=97.50\n"
    );
    ledger.stop().await;
}

fn topics_tuple_log(topics: &Topics) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.tuples", topics.group))
}

#[tokio::test]
async fn a_restart_mid_stream_loses_nothing_and_doubles_nothing() {
    let topics = fresh_topics("restart");
    let database_url = fresh_postgres("ledger_restart").await;
    let manifest = generate(&topics, 50, 20_000, 7).await;
    let db = connect(&database_url).await;
    let ledger = spawn_ledger(&topics, &database_url, &["--batch-size", "100"]).await;
    wait_until("a third of the stream", WAIT, || async {
        count(&db, "transactions").await >= 1000
    })
    .await;
    ledger.stop().await;
    let midway = count(&db, "transactions").await;
    assert!(midway < 20_000, "stopped mid-stream ({midway} of 20000)");

    let ledger = spawn_ledger(&topics, &database_url, &["--batch-size", "100"]).await;
    wait_until("the whole stream", WAIT, || async {
        count(&db, "transactions").await >= 20_000
    })
    .await;
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 50));
    ledger.stop().await;
}

#[tokio::test]
async fn the_same_transaction_twice_counts_once() {
    let topics = fresh_topics("dupes");
    let database_url = fresh_postgres("ledger_dupes").await;
    let raw = RawProducer::new(&topics).await;
    raw.customer(&customer("D")).await;
    let tx = transaction("D", 500);
    raw.transaction(&tx).await;
    raw.transaction(&tx).await;
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("both copies consumed", WAIT, || async {
        stored_offset(&db, &topics.group, &topics.transactions).await == 2
    })
    .await;
    let state = ledger_state(&db).await;
    assert_eq!(state.transactions, 1);
    assert_eq!(state.accounts["D"], (1, 500), "balance moved once");
    assert_eq!(
        ledger.metric("bank_duplicates_skipped_total").await,
        Some(1.0)
    );

    // A later redelivery (a producer retry after the first batch committed) is skipped too.
    raw.transaction(&tx).await;
    wait_until("the third copy consumed", WAIT, || async {
        stored_offset(&db, &topics.group, &topics.transactions).await == 3
    })
    .await;
    assert_eq!(ledger_state(&db).await.accounts["D"], (1, 500));
    assert_eq!(
        ledger.metric("bank_duplicates_skipped_total").await,
        Some(2.0)
    );
    ledger.stop().await;
}

#[tokio::test]
async fn a_transaction_before_its_customer_is_parked_then_posted() {
    let topics = fresh_topics("parking");
    let database_url = fresh_postgres("ledger_parking").await;
    let raw = RawProducer::new(&topics).await;
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    let early = transaction("P", -700);
    raw.transaction(&early).await;
    raw.transaction(&transaction("P", 200)).await;
    wait_until("two transactions parked", WAIT, || async {
        count(&db, "parked_transactions").await == 2
    })
    .await;
    assert_eq!(
        count(&db, "transactions").await,
        0,
        "the foreign key holds: nothing posted"
    );
    assert_eq!(ledger.metric("bank_parked_transactions").await, Some(2.0));

    raw.customer(&customer("P")).await;
    wait_until("parked transactions posted", WAIT, || async {
        count(&db, "transactions").await == 2
    })
    .await;
    let state = ledger_state(&db).await;
    assert_eq!(state.parked, 0);
    assert_eq!(state.accounts["P"], (2, -500));
    assert_eq!(ledger.metric("bank_parked_transactions").await, Some(0.0));
    let tuples = std::fs::read_to_string(&ledger.tuple_log).unwrap();
    assert_eq!(
        tuples, "(P, -7.00) balance=-7.00\n(P, -5.00) balance=-5.00\n",
        "posted in arrival order"
    );
    ledger.stop().await;
}

#[tokio::test]
async fn poison_goes_to_the_dead_letter_topic_and_good_data_flows() {
    let topics = fresh_topics("poison");
    let database_url = fresh_postgres("ledger_poison").await;
    let raw = RawProducer::new(&topics).await;
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let tx_topic = topics.transactions.clone();

    raw.customer(&customer("G")).await; // customers offset 0
    raw.transaction(&transaction("G", 100)).await; // 0: good
    raw.raw(&tx_topic, "G", b"\x00\x01garbage").await; // 1: too short / bad indexes
    raw.raw(&tx_topic, "G", b"{\"json\": true}").await; // 2: wrong magic byte
    raw.raw(
        &tx_topic,
        "G",
        &wire::frame(2_000_000_000, &transaction("G", 1)),
    )
    .await; // 3: unknown id
    let mut negative = transaction("G", 300);
    negative.amount_cents = -300;
    raw.transaction(&negative).await; // 4: negative amount
    raw.transaction(&transaction("", 100)).await; // 5: empty account
    raw.raw(
        &tx_topic,
        "G",
        &wire::frame(raw.tx_schema(), &bank_contract::pb::Customer::default())[..6],
    )
    .await; // 6: empty payload decodes as an all-default message: invalid id
    raw.transaction(&transaction("G", 250)).await; // 7: good
    raw.customer(&customer("")).await; // customers offset 1: empty account

    let db = connect(&database_url).await;
    wait_until("every message handled", WAIT, || async {
        stored_offset(&db, &topics.group, &tx_topic).await == 8
            && stored_offset(&db, &topics.group, &topics.customers).await == 2
    })
    .await;
    assert_eq!(
        ledger_state(&db).await.accounts["G"],
        (2, 350),
        "both good transactions persisted"
    );
    assert!(ledger.is_running(), "the consumer never stopped");

    let letters: Vec<(String, i64, String, bool)> = read_dead_letters(&topics, 7)
        .await
        .into_iter()
        .map(|l| {
            (
                l.source_topic,
                l.source_offset,
                l.kind,
                !l.message.is_empty(),
            )
        })
        .collect();
    let expect =
        |topic: &str, offset: i64, kind: &str| (topic.to_owned(), offset, kind.to_owned(), true);
    let mut expected = vec![
        expect(&topics.customers, 1, "contract-violation"),
        expect(&tx_topic, 1, "not-framed"),
        expect(&tx_topic, 2, "not-framed"),
        expect(&tx_topic, 3, "unknown-schema"),
        expect(&tx_topic, 4, "contract-violation"),
        expect(&tx_topic, 5, "contract-violation"),
        expect(&tx_topic, 6, "contract-violation"),
    ];
    expected.sort();
    assert_eq!(letters, expected);
    let (_, metrics) = ledger.get("/metrics").await;
    assert!(metrics.contains("bank_dead_lettered_total{"), "{metrics}");
    ledger.stop().await;
}

#[tokio::test]
async fn every_committed_event_has_its_age_measured() {
    let topics = fresh_topics("ages");
    let database_url = fresh_sqlite("ledger_ages");
    let produced = std::time::Instant::now();
    let raw = RawProducer::new(&topics).await;
    raw.customer(&customer("E")).await;
    for cents in [100, 200, -300] {
        raw.transaction(&transaction("E", cents)).await;
    }
    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let line = |body: &str, series: &str, topic: &str| {
        metric_value(
            body,
            &format!("bank_event_age_seconds_{series}{{topic=\"{topic}\"}}"),
        )
    };
    wait_until("three transaction ages observed", WAIT, || async {
        let (_, body) = ledger.get("/metrics").await;
        line(&body, "count", &topics.transactions) == Some(3.0)
    })
    .await;
    let (_, body) = ledger.get("/metrics").await;
    assert_eq!(line(&body, "count", &topics.customers), Some(1.0), "{body}");
    // From each message's Kafka timestamp to its commit: never negative, never more than the
    // time since the test produced it.
    let sum = line(&body, "sum", &topics.transactions).expect("a sum");
    assert!(
        sum >= 0.0 && sum <= 3.0 * produced.elapsed().as_secs_f64(),
        "{sum}"
    );
    ledger.stop().await;
}
