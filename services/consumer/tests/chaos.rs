//! The chaos suite: the ledger on PostgreSQL under the faults an operator meets, each scenario
//! ending with `consumer reconcile` equal to the producer's manifest **and** offset continuity
//! (for every partition, the persisted offsets are exactly the partition's offsets: no gap, no
//! overlap, and the stored next offset is the end of the partition).
//!
//! - SIGKILL at random instants, again and again;
//! - two instances, one SIGSTOPped past its session timeout while the other takes over, then
//!   resumed (a zombie with writes in flight), with customers updated during each pause;
//! - one instance's database connection cut (a TCP proxy) while a second joins and leaves;
//! - the Kafka broker restarted mid-stream;
//! - a fresh database under a group whose offsets Kafka already has.
//!
//! Size: `CHAOS_TRANSACTIONS` (default 20,000, what CI runs); `make chaos` runs 200,000 on a
//! release build. The scenarios restart the broker, so they take turns (one lock), and this is a
//! test binary of its own (cargo runs test binaries one at a time).

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bank_contract::pb::Customer;
use bank_contract::{Event, wire};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use support::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CUSTOMERS: u32 = 200;
const PARTITIONS: i32 = 3;
const LONG: Duration = Duration::from_secs(600);

fn size() -> u64 {
    std::env::var("CHAOS_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// The outage of the connection-cut scenario: 60 s at full size, 15 s in CI.
fn outage() -> Duration {
    if size() >= 100_000 {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(15)
    }
}

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = uuid::Uuid::new_v4().as_u128() as u64 | 1;
        println!("random seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// A ledger process of the scenario.
struct Instance {
    child: Reaped,
    port: u16,
    log: std::path::PathBuf,
}

fn start(topics: &Topics, database_url: &str, name: &str) -> Instance {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{}.{name}.stderr", topics.group));
    let tuples = std::env::temp_dir().join(format!("{}.{name}.tuples", topics.group));
    let mut args = ledger_args(
        topics,
        database_url,
        &tuples,
        &[
            "--batch-size",
            "500",
            // A killed or frozen member's partitions move on within seconds.
            "--kafka-config",
            "session.timeout.ms=6000,heartbeat.interval.ms=1000",
        ],
    );
    let at = args.iter().position(|a| a == "127.0.0.1:0").unwrap();
    args[at] = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .expect("start the ledger binary");
    Instance {
        child: Reaped(child),
        port,
        log,
    }
}

impl Instance {
    fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        port_metric(self.port, name).await
    }

    async fn assigned(&self) -> usize {
        self.metric("bank_assigned_partitions").await.unwrap_or(0.0) as usize
    }

    /// SIGTERM and a bounded wait: a clean stop exits 0.
    async fn stop(mut self) {
        self.signal("-TERM");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "stopped within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "a SIGTERM ends with exit 0: {status} {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn scalar(db: &DatabaseConnection, sql: String) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .and_then(|row| row.try_get_by_index::<i64>(0).ok())
        .unwrap_or(-1)
}

/// `consumer reconcile` against the manifest, waiting for the ledger to catch up.
fn reconcile(topics: &Topics, database_url: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["reconcile", "--manifest"])
        .arg(manifest_path(topics))
        .args(["--database-url", database_url, "--wait-secs", "300"])
        .output()
        .expect("consumer reconcile");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "reconcile differs:\n{report}");
    report.lines().last().unwrap_or_default().to_owned()
}

/// For every partition of both topics: the stored next offset is the partition's end, and the
/// transactions' `(partition, offset)` pairs cover the partition exactly.
async fn assert_offsets_continuous(db: &DatabaseConnection, topics: &Topics) -> String {
    let kafka: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let mut covered = 0;
    for partition in 0..PARTITIONS {
        for topic in [&topics.transactions, &topics.customers] {
            let (_, high) = kafka
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap();
            let stored = scalar(
                db,
                format!(
                    "SELECT next_offset FROM consumer_offsets WHERE group_id = '{}' AND topic = '{topic}' AND partition = {partition}",
                    topics.group
                ),
            )
            .await;
            assert_eq!(stored, high, "stored next offset of {topic}[{partition}]");
        }
        let (low, high) = kafka
            .fetch_watermarks(&topics.transactions, partition, Duration::from_secs(10))
            .unwrap();
        let rows = format!("FROM transactions WHERE source_partition = {partition}");
        let count = scalar(db, format!("SELECT COUNT(*) {rows}")).await;
        let first = scalar(
            db,
            format!("SELECT COALESCE(MIN(source_offset), -1) {rows}"),
        )
        .await;
        let last = scalar(
            db,
            format!("SELECT COALESCE(MAX(source_offset), -1) {rows}"),
        )
        .await;
        assert_eq!(
            count,
            high - low,
            "one row per offset of partition {partition}"
        );
        if count > 0 {
            assert_eq!(
                (first, last),
                (low, high - 1),
                "partition {partition} covered end to end"
            );
        }
        covered += count;
    }
    format!("offsets continuous: {covered} transactions over {PARTITIONS} partitions")
}

async fn verdict(name: &str, topics: &Topics, database_url: &str, started: Instant, what: &str) {
    let report = reconcile(topics, database_url);
    let db = connect(database_url).await;
    let continuity = assert_offsets_continuous(&db, topics).await;
    assert_eq!(
        count(&db, "parked_transactions").await,
        0,
        "nothing left parked"
    );
    println!(
        "chaos {name}: {what}; reconcile: {report}; {continuity}; {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Produces `size()` transactions spread over about `seconds`, in the background.
fn produce_over(topics: &Topics, seed: u64, seconds: u64) -> tokio::task::JoinHandle<()> {
    let topics = Topics {
        transactions: topics.transactions.clone(),
        customers: topics.customers.clone(),
        group: topics.group.clone(),
    };
    let rate = (size() / seconds.max(1)).max(1).to_string();
    tokio::spawn(async move {
        generate_with(&topics, CUSTOMERS, size(), seed, &["--rate", &rate]).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_instants() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let topics = fresh_topics("chaos-kill");
    let database_url = fresh_postgres("chaos_kill").await;
    generate(&topics, CUSTOMERS, size(), 21).await;
    let db = connect(&database_url).await;
    let mut rng = Rng::new();
    let mut kills = 0;
    while kills < 10 {
        let before = count(&db, "transactions").await;
        let target = before + 1 + rng.below(size() / 14);
        assert!(target < size(), "ten kills fit in the stream");
        let instance = start(&topics, &database_url, &format!("run{kills}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&db, "transactions").await < target {
            assert!(Instant::now() < deadline, "progress before kill {kills}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        instance.kill();
        kills += 1;
    }
    let last = start(&topics, &database_url, "last");
    let what = format!("{kills} SIGKILLs over {} transactions", size());
    verdict("sigkill", &topics, &database_url, started, &what).await;
    last.stop().await;
}

/// Sends a newer version of each account's customer (first name `round-N`) to its partition.
async fn update_customers(topics: &Topics, db: &DatabaseConnection, round: u32) -> Vec<String> {
    let registry =
        bank_contract::Registry::new(&bank_contract::RegistryConfig::new(registry_url())).unwrap();
    let schema = registry
        .register::<Customer>(&topics.customers)
        .await
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT account_number, branch_id FROM customers ORDER BY account_number LIMIT 30",
        ))
        .await
        .unwrap();
    // Far newer than anything the generator wrote, and newer each round.
    let version = chrono::Utc::now().timestamp() + 86_400 + i64::from(round);
    let mut accounts = Vec::new();
    for row in rows {
        let account: String = row.try_get("", "account_number").unwrap();
        let branch: i64 = row.try_get("", "branch_id").unwrap();
        let customer = Customer {
            account_number: account.clone(),
            first_name: format!("round-{round}"),
            last_name: "Updated".into(),
            email: format!("{account}@example.org"),
            branch_id: branch as u32,
            updated_at: Some(prost_types::Timestamp {
                seconds: version,
                nanos: 0,
            }),
            ..Customer::default()
        };
        let bytes = wire::frame(schema, &customer);
        producer
            .send(
                FutureRecord::to(&topics.customers)
                    .partition((branch % i64::from(PARTITIONS)) as i32)
                    .key(customer.key())
                    .payload(&bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        accounts.push(account);
    }
    accounts
}

async fn names(db: &DatabaseConnection, accounts: &[String]) -> BTreeMap<String, String> {
    let list = accounts
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(",");
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT account_number, first_name FROM customers WHERE account_number IN ({list})"
        ),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get("", "account_number").unwrap(),
            r.try_get("", "first_name").unwrap(),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_past_its_session_timeout_cannot_write_when_it_wakes() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let topics = fresh_topics("chaos-stop");
    let database_url = fresh_postgres("chaos_stop").await;
    let rounds = if size() >= 100_000 { 4 } else { 2 };
    let producing = produce_over(&topics, 22, 40);
    let db = connect(&database_url).await;
    let a = start(&topics, &database_url, "a");
    let b = start(&topics, &database_url, "b");
    wait_until("ingestion under way", LONG, || async {
        count(&db, "customers").await >= u64::from(CUSTOMERS)
            && count(&db, "transactions").await > 0
    })
    .await;
    let mut updated = Vec::new();
    for round in 1..=rounds {
        wait_until("both instances own partitions", LONG, || async {
            a.assigned().await > 0 && b.assigned().await > 0
        })
        .await;
        a.signal("-STOP");
        updated = update_customers(&topics, &db, round).await;
        wait_until("the other instance takes every partition", LONG, || async {
            b.assigned().await == 2 * PARTITIONS as usize
        })
        .await;
        let wanted = format!("round-{round}");
        wait_until(
            "the update of this round, written by the survivor",
            LONG,
            || async { names(&db, &updated).await.values().all(|n| *n == wanted) },
        )
        .await;
        a.signal("-CONT");
    }
    producing.await.unwrap();
    let what = format!(
        "{rounds} SIGSTOP/SIGCONT rounds over {} transactions",
        size()
    );
    verdict("sigstop", &topics, &database_url, started, &what).await;
    let final_name = format!("round-{rounds}");
    let stored = names(&db, &updated).await;
    assert!(
        stored.values().all(|n| *n == final_name),
        "customers end at their newest version: {stored:?}"
    );
    let fenced = a.metric("bank_fenced_batches_total").await;
    assert!(fenced.is_some(), "the woken instance still serves metrics");
    println!(
        "chaos sigstop: batches the woken instance had in flight and lost to fencing: {fenced:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_for_one_instance_while_another_joins_and_leaves() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let topics = fresh_topics("chaos-cut");
    let database_url = fresh_postgres("chaos_cut").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let producing = produce_over(&topics, 23, 30);
    let db = connect(&database_url).await;
    let a = start(&topics, &proxy.url(&database_url), "a");
    wait_until("ingestion under way", LONG, || async {
        count(&db, "transactions").await >= size() / 10
    })
    .await;
    proxy.cut();
    let cut_at = Instant::now();
    let b = start(&topics, &database_url, "b");
    let before = count(&db, "transactions").await;
    wait_until("the second instance writes", LONG, || async {
        b.assigned().await > 0 && count(&db, "transactions").await > before
    })
    .await;
    b.stop().await;
    // The outage's length is the fault itself, not a synchronisation.
    tokio::time::sleep(outage().saturating_sub(cut_at.elapsed())).await;
    proxy.restore();
    producing.await.unwrap();
    let what = format!(
        "database cut for {:.0} s while a second instance joined and left, {} transactions",
        cut_at.elapsed().as_secs_f64(),
        size()
    );
    verdict("db-cut", &topics, &database_url, started, &what).await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarts_mid_stream() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let topics = fresh_topics("chaos-broker");
    let database_url = fresh_postgres("chaos_broker").await;
    let producing = produce_over(&topics, 24, 30);
    let db = connect(&database_url).await;
    let a = start(&topics, &database_url, "a");
    wait_until("ingestion under way", LONG, || async {
        count(&db, "transactions").await >= size() / 5
    })
    .await;
    let kafka = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/kafka.sh");
    for action in ["down", "up"] {
        let status = Command::new("bash").args([kafka, action]).status().unwrap();
        assert!(status.success(), "kafka.sh {action}");
    }
    producing.await.unwrap();
    let what = format!("broker restarted mid-stream, {} transactions", size());
    verdict("broker-restart", &topics, &database_url, started, &what).await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_under_a_group_with_committed_offsets_rebuilds_everything() {
    let _turn = SERIAL.lock().await;
    let started = Instant::now();
    let topics = fresh_topics("chaos-fresh");
    let first = fresh_postgres("chaos_fresh_a").await;
    generate(&topics, CUSTOMERS, size(), 25).await;
    let a = start(&topics, &first, "a");
    reconcile(&topics, &first);
    a.stop().await;
    let second = fresh_postgres("chaos_fresh_b").await;
    let b = start(&topics, &second, "b");
    let what = format!("second database rebuilt, {} transactions", size());
    verdict("fresh-database", &topics, &second, started, &what).await;
    b.stop().await;
}
