//! `producer table` against the real stack: the seed's generator writes rows into PostgreSQL or
//! SQLite, the table source publishes them, and what reaches Kafka is compared with the table.
//! Initial load then only what changed; a restart resuming after its stored position; SIGKILL
//! at random instants skipping nothing and repeating at most a batch per kill; a row committed
//! late with an older timestamp found thanks to the delay; rows that cannot be mapped logged
//! while the source goes on; metrics and a clean SIGTERM.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bank_contract::money;
use rand::{RngExt, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use support::*;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("table-{name}-{}", uuid::Uuid::new_v4().simple()))
}

async fn generate_rows(url: &str, args: &[&str]) {
    let mut argv: Vec<String> = ["generate", "--into-database", url, "--silent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(args.iter().map(|s| s.to_string()));
    run_producer(argv).await.expect("generate --into-database");
}

fn table_args(
    url: &str,
    tx: &str,
    customers: &str,
    state: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut argv = vec![
        "table".to_owned(),
        "--database-url".into(),
        url.into(),
        "--silent".into(),
    ];
    argv.extend(destination(tx, customers));
    argv.extend(
        ["--http-addr", "127.0.0.1:0", "--state-file"]
            .iter()
            .map(|s| s.to_string()),
    );
    argv.push(state.display().to_string());
    // Beside the state, not in the working directory (the default).
    if !extra.contains(&"--rejects") {
        argv.push("--rejects".into());
        argv.push(format!("{}.rejects.jsonl", state.display()));
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv
}

/// Messages in `topic` now (the sum of its partitions' end offsets). Right after the source
/// creates a topic its partitions may have no leader yet ("not leader for partition"): asked
/// again, bounded, rather than failing the test on the broker's election.
fn messages_in(topic: &str) -> usize {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("client");
    poll_for("the end offsets", Duration::from_secs(30), || {
        end_offsets(&consumer, topic).ok()
    })
}

fn end_offsets(consumer: &BaseConsumer, topic: &str) -> rdkafka::error::KafkaResult<usize> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut total = 0;
    for partition in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        total += usize::try_from(high).unwrap_or(0);
    }
    Ok(total)
}

/// Every transaction in the topic: id -> (account, signed cents), and how many times each id came.
async fn transactions_in(tx: &str, customers: &str) -> (HashMap<String, (String, i64)>, usize) {
    let total = messages_in(tx) + messages_in(customers);
    let mut seen = HashMap::new();
    let mut copies = 0;
    for received in read_back(tx, customers, total).await {
        if let Event::Transaction(t) = received.event {
            copies += 1;
            seen.insert(
                t.transaction_id.clone(),
                (
                    t.account_number.clone(),
                    money::signed_amount_cents(&t).unwrap_or(0),
                ),
            );
        }
    }
    (seen, copies)
}

/// The id of the row the source publishes last: its order is (updated_at, id).
async fn last_id(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id FROM {table} ORDER BY updated_at DESC, id DESC LIMIT 1"),
        ))
        .await
        .expect("select the last id")
        .expect("a row");
    row.try_get_by_index(0).expect("an id")
}

async fn table_ids(db: &DatabaseConnection, table: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT transaction_id FROM {table}"),
        ))
        .await
        .expect("select ids");
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index(0).expect("an id"))
        .collect();
    ids.sort();
    ids
}

fn sums(seen: &HashMap<String, (String, i64)>) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for (account, cents) in seen.values() {
        *sums.entry(account.clone()).or_insert(0) += cents;
    }
    sums
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_is_published_whole_then_only_what_changes() {
    let url = bank_storage::scratch::fresh_postgres(
        &bank_storage::scratch::postgres_base_url(),
        "table_load",
    )
    .await
    .expect("PostgreSQL");
    let (tx, customers) = fresh_topics("table-load");
    let (manifest, state) = (temp("manifest.json"), temp("state.json"));
    generate_rows(
        &url,
        &[
            "-n",
            "3000",
            "--customers",
            "20",
            "--seed",
            "11",
            "--manifest",
            &manifest.display().to_string(),
        ],
    )
    .await;
    run_producer(table_args(
        &url,
        &tx,
        &customers,
        &state,
        &["--batch-size", "700", "--stop-when-caught-up"],
    ))
    .await
    .expect("initial load");

    let db = bank_storage::connect::connect(&url, 1).await.expect("db");
    let (seen, copies) = transactions_in(&tx, &customers).await;
    assert_eq!(copies, 3000, "each row once");
    let mut ids: Vec<String> = seen.keys().cloned().collect();
    ids.sort();
    assert_eq!(
        ids,
        table_ids(&db, "source_transactions").await,
        "every row of the table, by id"
    );
    let expected = producer::manifest::Manifest::read(&manifest).expect("manifest");
    let expected: BTreeMap<String, i64> = expected
        .accounts
        .iter()
        .map(|(a, t)| (a.clone(), t.sum_cents))
        .collect();
    assert_eq!(
        sums(&seen),
        expected,
        "per-account sums equal the generator's manifest"
    );

    // New rows, and one changed row (a new description, a fresh updated_at): only those go out.
    generate_rows(&url, &["-n", "500", "--customers", "20", "--seed", "12"]).await;
    db.execute_unprepared("UPDATE source_transactions SET description = 'corrected', updated_at = clock_timestamp() WHERE id = 5")
        .await
        .expect("update");
    run_producer(table_args(
        &url,
        &tx,
        &customers,
        &state,
        &["--stop-when-caught-up"],
    ))
    .await
    .expect("resume");
    let (seen, copies) = transactions_in(&tx, &customers).await;
    assert_eq!(
        copies,
        3000 + 500 + 1,
        "the 500 new rows and the changed one, nothing else"
    );
    assert_eq!(seen.len(), 3500, "the changed row keeps its transaction_id");

    let customer_state = temp("customers.json");
    let (ctx, ccustomers) = fresh_topics("table-customers");
    run_producer(table_args(
        &url,
        &ctx,
        &ccustomers,
        &customer_state,
        &[
            "--table",
            "source_customers",
            "--events",
            "customers",
            "--stop-when-caught-up",
        ],
    ))
    .await
    .expect("customers table");
    let received = read_back(&ctx, &ccustomers, 20).await;
    let named = received.iter().filter(|r| matches!(&r.event, Event::Customer(c) if !c.first_name.is_empty() && c.updated_at.is_some()));
    assert_eq!(
        named.count(),
        20,
        "customers with their names and updated_at"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_cannot_be_mapped_are_logged_and_the_source_goes_on() {
    let path = std::env::temp_dir().join(format!("table-odd-{}.db", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    let db = bank_storage::connect::connect(&url, 1)
        .await
        .expect("sqlite");
    db.execute_unprepared(
        "CREATE TABLE odd (pk INTEGER PRIMARY KEY, acct_no TEXT, amount TEXT, transaction_datetime TEXT, kind TEXT, changed TEXT, description TEXT);
         INSERT INTO odd VALUES
           (1, 'ACC-1', '10.00', '2026-01-01 10:00:00', 'deposit', '2026-01-01 10:00:00.000', NULL),
           (2, NULL, '10.00', '2026-01-01 10:00:00', 'deposit', '2026-01-01 10:00:01.000', NULL),
           (3, 'ACC-1', 'twelve', '2026-01-01 10:00:00', 'deposit', '2026-01-01 10:00:02.000', NULL),
           (4, 'ACC-1', '1.00', 'yesterday', 'deposit', '2026-01-01 10:00:03.000', NULL),
           (5, 'ACC-1', '2.50', '2026-01-01 11:00:00', 'withdrawal', '2026-01-01 10:00:04.000', NULL),
           (6, 'ACC-1', '9.99', '2026-01-01 11:00:00', 'deposit', NULL, NULL),
           (7, CAST(X'C328' AS TEXT), '1.00', '2026-01-01 11:00:00', 'deposit', '2026-01-01 10:00:05.000', NULL),
           (8, 'ACC-1', '1.00', '2026-01-01 11:00:00', 'deposit', '2026-01-01 10:00:06.000', printf('%.20000c', 'x')),
           (9, 'ACC-1', '1.00', '2026-01-01 11:00:00', 'deposit', X'3132', NULL);",
    )
    .await
    .expect("the odd table");
    let (tx, customers) = fresh_topics("table-odd");
    let (state, rejects) = (temp("state.json"), temp("rejects.jsonl"));
    let extra = [
        "--table",
        "odd",
        "--column",
        "account_number=acct_no",
        "--timestamp-column",
        "changed",
        "--incrementing-column",
        "pk",
        "--stop-when-caught-up",
        "--rejects",
    ];
    let mut extra: Vec<&str> = extra.to_vec();
    let rejects_arg = rejects.display().to_string();
    extra.push(&rejects_arg);
    run_producer(table_args(&url, &tx, &customers, &state, &extra))
        .await
        .expect("a source with bad rows still ends well");

    let (seen, copies) = transactions_in(&tx, &customers).await;
    assert_eq!(copies, 2, "the two good rows");
    assert_eq!(sums(&seen).get("ACC-1"), Some(&750));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .expect("rejects log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let reasons: Vec<(i64, String)> = lines
        .iter()
        .map(|l| {
            (
                l["id"].as_i64().unwrap_or(-1),
                l["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert_eq!(
        reasons[0],
        (2, "column acct_no (account_number) is NULL".into())
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].1.contains("twelve"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == 4 && reasons[2].1.contains("yesterday"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[3],
        (
            7,
            "column acct_no (account_number): is not valid UTF-8 text".into()
        )
    );
    assert!(
        reasons[4].0 == 8 && reasons[4].1.starts_with("description: "),
        "the contract's limits apply at the source: {reasons:?}"
    );
    let position: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("json");
    assert_eq!(
        position["id"], 8,
        "past the rejected rows; rows whose timestamp is NULL or a blob are never read"
    );
}

fn stored_id(state: &std::path::Path) -> i64 {
    std::fs::read(state)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|p| p["id"].as_i64())
        .unwrap_or(0)
}

fn spawn_table(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_producer"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start producer table")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_any_instant_skips_nothing_and_repeats_at_most_a_batch() {
    let url = bank_storage::scratch::fresh_postgres(
        &bank_storage::scratch::postgres_base_url(),
        "table_kill",
    )
    .await
    .expect("PostgreSQL");
    generate_rows(&url, &["-n", "40000", "--customers", "50"]).await;
    let (tx, customers) = fresh_topics("table-kill");
    let state = temp("state.json");
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let kills = 6;
    let batch = 1000;
    let batch_arg = batch.to_string();
    let db = bank_storage::connect::connect(&url, 1).await.expect("db");
    let last = last_id(&db, "source_transactions").await;
    let mut killed = 0;
    for _ in 0..kills {
        // A fast machine can publish the rest of the table between two kills: once the stored
        // position is the table's last row there is nothing left to interrupt mid-stream.
        let before = stored_id(&state);
        if before == last {
            break;
        }
        // Reaped: a failed wait must not leave the source running (it would hold the test
        // runner's stderr open, and CI's pipe with it).
        let mut child = Reaped(spawn_table(&table_args(
            &url,
            &tx,
            &customers,
            &state,
            &["--batch-size", &batch_arg],
        )));
        // Killed once the run has moved the position (so mid-stream), at a random instant after.
        let moved = || async { stored_id(&state) > before };
        wait_until("the position to move", Duration::from_secs(60), moved).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        killed += 1;
    }
    assert!(killed > 0, "at least one SIGKILL mid-stream");
    let mut last = spawn_table(&table_args(
        &url,
        &tx,
        &customers,
        &state,
        &["--batch-size", &batch_arg, "--stop-when-caught-up"],
    ));
    let status = tokio::task::spawn_blocking(move || last.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "the last run ends once caught up: {status}"
    );

    let (seen, copies) = transactions_in(&tx, &customers).await;
    let mut ids: Vec<String> = seen.keys().cloned().collect();
    ids.sort();
    assert_eq!(
        ids,
        table_ids(&db, "source_transactions").await,
        "no row skipped (kill seed {seed})"
    );
    let repeated = copies - seen.len();
    println!(
        "table sigkill: {killed} SIGKILLs, {} rows, {repeated} published twice (seed {seed})",
        seen.len()
    );
    assert!(
        repeated <= killed * batch,
        "at most the batch in flight per kill: {repeated} (seed {seed})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_commit_with_an_older_timestamp_is_found_within_the_delay() {
    let url = bank_storage::scratch::fresh_postgres(
        &bank_storage::scratch::postgres_base_url(),
        "table_late",
    )
    .await
    .expect("PostgreSQL");
    generate_rows(&url, &["-n", "10", "--customers", "2"]).await;
    let (tx, customers) = fresh_topics("table-late");
    let state = temp("state.json");
    let args = table_args(
        &url,
        &tx,
        &customers,
        &state,
        &["--timestamp-delay-ms", "1500", "--poll-interval-ms", "100"],
    );
    let mut child = Reaped(spawn_table(&args));
    wait_until("the first rows", Duration::from_secs(60), || async {
        messages_in(&tx) >= 10
    })
    .await;

    // A takes its timestamp first but commits after B, as a slow transaction does.
    let late = bank_storage::connect::connect(&url, 1).await.expect("db");
    let other = bank_storage::connect::connect(&url, 1).await.expect("db");
    let insert = |id: &str| {
        format!(
            "INSERT INTO source_transactions (transaction_id, account_number, transaction_reference, transaction_datetime, kind, amount, currency, branch_id, description, updated_at) \
             VALUES ('{id}', 'ACC-000001', 'R', clock_timestamp(), 'deposit', 1.00, 'USD', 0, 'late', clock_timestamp())"
        )
    };
    let (a, b) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let txn = sea_orm::TransactionTrait::begin(&late)
        .await
        .expect("begin");
    txn.execute_unprepared(&insert(&a)).await.expect("A");
    other.execute_unprepared(&insert(&b)).await.expect("B");
    txn.commit().await.expect("A commits after B");
    wait_until("both rows", Duration::from_secs(60), || async {
        messages_in(&tx) >= 12
    })
    .await;
    let (seen, _) = transactions_in(&tx, &customers).await;
    assert!(
        seen.contains_key(&a) && seen.contains_key(&b),
        "the late row too"
    );
    terminate(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_tell_progress_and_sigterm_stops_cleanly() {
    let path = std::env::temp_dir().join(format!(
        "table-metrics-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}", path.display());
    generate_rows(&url, &["-n", "1000", "--customers", "5"]).await;
    let (tx, customers) = fresh_topics("table-metrics");
    let state = temp("state.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let mut args = table_args(
        &url,
        &tx,
        &customers,
        &state,
        &["--poll-interval-ms", "100"],
    );
    let at = args
        .iter()
        .position(|a| a == "127.0.0.1:0")
        .expect("http flag");
    args[at] = format!("127.0.0.1:{port}");
    let mut child = Reaped(spawn_table(&args));
    let published = || async move {
        let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix("bank_source_rows_published_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    wait_until("1000 rows published", Duration::from_secs(60), || async {
        published().await == Some(1000.0)
    })
    .await;
    generate_rows(&url, &["-n", "10", "--customers", "5"]).await;
    wait_until("10 more", Duration::from_secs(60), || async {
        published().await == Some(1010.0)
    })
    .await;
    terminate(&mut child);
    assert_eq!(messages_in(&tx), 1010);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_postgres_rows_are_rejected_or_never_read_and_the_source_goes_on() {
    let url = bank_storage::scratch::fresh_postgres(
        &bank_storage::scratch::postgres_base_url(),
        "table_hostile",
    )
    .await
    .expect("PostgreSQL");
    let db = bank_storage::connect::connect(&url, 1).await.expect("db");
    db.execute_unprepared(
        "CREATE TABLE pay (id BIGINT PRIMARY KEY, account_number TEXT, amount NUMERIC, kind TEXT,
                           transaction_datetime TIMESTAMPTZ, updated_at TIMESTAMPTZ);
         INSERT INTO pay VALUES
           (1, 'ACC-1', 10.00, 'deposit', '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z'),
           (2, 'ACC-1', 10.00, 'deposit', 'infinity', '2026-01-01T10:00:01Z'),
           (3, 'ACC-1', 'NaN', 'deposit', '2026-01-01T10:00:00Z', '2026-01-01T10:00:02Z'),
           (4, 'ACC-1', 1.005, 'deposit', '2026-01-01T10:00:00Z', '2026-01-01T10:00:03Z'),
           (5, 'ACC-1', -3.00, 'deposit', '2026-01-01T10:00:00Z', '2026-01-01T10:00:04Z'),
           (6, 'ACC-1', 1e20, 'deposit', '2026-01-01T10:00:00Z', '2026-01-01T10:00:05Z'),
           (7, 'ACC-1', 1.00, 'deposit', '2026-01-01T10:00:00Z', '-infinity'),
           (8, 'ACC-1', 1.00, 'deposit', '2026-01-01T10:00:00Z', 'infinity'),
           (9, 'ACC-1', 2.50, 'withdrawal', '2026-01-01T11:00:00Z', '2026-01-01T10:00:06Z');",
    )
    .await
    .expect("the hostile table");
    let (tx, customers) = fresh_topics("table-hostile");
    let (state, rejects) = (temp("state.json"), temp("rejects.jsonl"));
    let rejects_arg = rejects.display().to_string();
    let extra = [
        "--table",
        "pay",
        "--stop-when-caught-up",
        "--rejects",
        &rejects_arg,
    ];
    run_producer(table_args(&url, &tx, &customers, &state, &extra))
        .await
        .expect("the source ends well");
    let (seen, copies) = transactions_in(&tx, &customers).await;
    assert_eq!(copies, 2, "rows 1 and 9");
    assert_eq!(sums(&seen).get("ACC-1"), Some(&750));
    let ids: Vec<i64> = std::fs::read_to_string(&rejects)
        .expect("rejects log")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["id"]
                .as_i64()
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(
        ids,
        [2, 3, 4, 5, 6],
        "infinite time, NaN, 3 decimals, a negative deposit, too large"
    );
    assert_eq!(
        stored_id(&state),
        9,
        "infinite updated_at rows are never read"
    );
}
