//! Helpers of the consumer's integration tests: the real stack's addresses, fresh topics and
//! databases, the ledger started in-process (zero2prod's `spawn_app`), a raw producer for
//! hand-made and poison events, and bounded waits on conditions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bank_contract::pb::{Customer, Transaction, TransactionKind};
use bank_contract::{Event, Registry, RegistryConfig, wire};
use bank_plumbing::shutdown::Stop;
use clap::Parser;

// Each test binary uses its own subset.
#[allow(unused_imports)]
pub use bank_test_support::{Reaped, bootstrap, free_port, registry_url, terminate, wait_until};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::{ConnectionTrait, DatabaseConnection};

pub struct Topics {
    pub transactions: String,
    pub customers: String,
    pub group: String,
}

pub fn fresh_topics(name: &str) -> Topics {
    let suffix = uuid::Uuid::new_v4().simple();
    Topics {
        transactions: format!("test.{name}.transactions.{suffix}"),
        customers: format!("test.{name}.customers.{suffix}"),
        group: format!("test-{name}-{suffix}"),
    }
}

pub async fn fresh_postgres(name: &str) -> String {
    bank_storage::scratch::fresh_postgres(&bank_storage::scratch::postgres_base_url(), name)
        .await
        .expect("PostgreSQL of the native stack (make stack-up) or DATABASE_URL")
}

pub fn fresh_sqlite(name: &str) -> String {
    bank_storage::scratch::fresh_sqlite(name)
}

/// The ledger's arguments for these topics and database; `extra` flags are appended.
pub fn ledger_args(
    topics: &Topics,
    database_url: &str,
    tuple_log: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "ledger",
        "-b",
        &bootstrap(),
        "-s",
        &registry_url(),
        "-t",
        &topics.transactions,
        "--customers-topic",
        &topics.customers,
        "-g",
        &topics.group,
        "--database-url",
        database_url,
        "--http-addr",
        "127.0.0.1:0",
        "--batch-linger-ms",
        "20",
        "--tuple-log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(tuple_log.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A ledger running in this process.
pub struct TestLedger {
    pub http: SocketAddr,
    pub tuple_log: PathBuf,
    stop: Stop,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_ledger(topics: &Topics, database_url: &str, extra: &[&str]) -> TestLedger {
    let tuple_log = std::env::temp_dir().join(format!("{}.tuples", topics.group));
    let mut argv = vec!["consumer".to_owned()];
    argv.extend(ledger_args(topics, database_url, &tuple_log, extra));
    let cli = consumer::cli::Cli::try_parse_from(argv).expect("valid ledger flags");
    let consumer::cli::Command::Ledger(args) = cli.command else {
        unreachable!()
    };
    let app = consumer::ledger::Application::build(*args)
        .await
        .expect("ledger builds");
    let http = app.http_addr();
    let stop = app.stop_handle();
    let handle = tokio::spawn(app.run_until_stopped());
    TestLedger {
        http,
        tuple_log,
        stop,
        handle,
    }
}

impl TestLedger {
    /// Requests a graceful stop and waits for it (bounded).
    pub async fn stop(self) {
        self.stop.request();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("ledger stops within 60 s")
            .expect("ledger task did not panic")
            .expect("ledger exits cleanly");
    }

    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.http))
            .await
            .expect("http");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// The value of an un-labelled metric line such as `bank_duplicates_skipped_total`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await;
        metric_value(&body, name)
    }
}

/// The un-labelled metric `name` of whatever serves `/metrics` on `port`.
pub async fn port_metric(port: u16, name: &str) -> Option<f64> {
    let body = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_value(&body, name)
}

/// Sends `signal` (`-TERM`, `-STOP`, ...) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The value of the un-labelled metric `name` in a `/metrics` body.
pub fn metric_value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// What the ledger database holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LedgerState {
    pub customers: u64,
    pub transactions: u64,
    pub parked: u64,
    /// account -> (transaction_count, balance_cents), accounts with transactions only.
    pub accounts: BTreeMap<String, (u64, i64)>,
}

/// Whether the role's HTTP endpoint on `port` answers `path` (`/readyz`, `/healthz`) with 2xx.
pub async fn answers(port: u16, path: &str) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

pub async fn connect(database_url: &str) -> DatabaseConnection {
    bank_storage::connect(database_url, 2)
        .await
        .expect("connect")
}

pub async fn count(db: &DatabaseConnection, table: &str) -> u64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) FROM {table}"),
        ))
        .await
        .ok()
        .flatten();
    row.and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .unwrap_or(0) as u64
}

pub async fn ledger_state(db: &DatabaseConnection) -> LedgerState {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT account_number, transaction_count, balance_cents FROM accounts WHERE transaction_count > 0".to_owned(),
        ))
        .await
        .expect("accounts");
    let accounts = rows
        .iter()
        .map(|r| {
            let account: String = r.try_get("", "account_number").unwrap();
            let count: i64 = r.try_get("", "transaction_count").unwrap();
            let balance: i64 = r.try_get("", "balance_cents").unwrap();
            (account, (count as u64, balance))
        })
        .collect();
    LedgerState {
        customers: count(db, "customers").await,
        transactions: count(db, "transactions").await,
        parked: count(db, "parked_transactions").await,
        accounts,
    }
}

/// The ledger state a producer manifest promises.
pub fn expected_state(manifest: &producer::manifest::Manifest, customers: u64) -> LedgerState {
    let accounts: BTreeMap<String, (u64, i64)> = manifest
        .accounts
        .iter()
        .filter(|(_, a)| a.transactions > 0)
        .map(|(k, a)| (k.clone(), (a.transactions, a.sum_cents)))
        .collect();
    LedgerState {
        customers,
        transactions: accounts.values().map(|(n, _)| n).sum(),
        parked: 0,
        accounts,
    }
}

/// Runs `producer generate` in-process and returns its manifest.
pub async fn generate(
    topics: &Topics,
    customers: u32,
    count: u64,
    seed: u64,
) -> producer::manifest::Manifest {
    generate_with(topics, customers, count, seed, &[]).await
}

/// Where [`generate`] writes the manifest of `topics`.
pub fn manifest_path(topics: &Topics) -> PathBuf {
    std::env::temp_dir().join(format!("{}.manifest.json", topics.group))
}

/// [`generate`] with extra flags (e.g. `--rate`).
pub async fn generate_with(
    topics: &Topics,
    customers: u32,
    count: u64,
    seed: u64,
    extra: &[&str],
) -> producer::manifest::Manifest {
    let manifest = manifest_path(topics);
    let mut argv: Vec<String> = [
        "producer",
        "generate",
        "-b",
        &bootstrap(),
        "-s",
        &registry_url(),
        "-t",
        &topics.transactions,
        "--customers-topic",
        &topics.customers,
        "--customers",
        &customers.to_string(),
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--silent",
        "--manifest",
        &manifest.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    producer::run(producer::cli::Cli::try_parse_from(argv).unwrap())
        .await
        .expect("producer generate");
    producer::manifest::Manifest::read(&manifest).unwrap()
}

/// Sends hand-made events (and raw bytes) to partition 0 of the topics.
pub struct RawProducer {
    producer: FutureProducer,
    pub registry: Arc<Registry>,
    tx_schema: u32,
    customer_schema: u32,
    topics_tx: String,
    topics_customers: String,
}

impl RawProducer {
    /// Creates both topics (3 partitions, as a deployment's topic job would) and registers the
    /// schemas.
    pub async fn new(topics: &Topics) -> RawProducer {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .unwrap();
        let new_topics = [
            NewTopic::new(&topics.transactions, 3, TopicReplication::Fixed(1)),
            NewTopic::new(&topics.customers, 3, TopicReplication::Fixed(1)),
        ];
        for result in admin
            .create_topics(&new_topics, &AdminOptions::new())
            .await
            .unwrap()
        {
            result.expect("topic created");
        }
        let registry = Arc::new(Registry::new(&RegistryConfig::new(registry_url())).unwrap());
        let tx_schema = registry
            .register::<Transaction>(&topics.transactions)
            .await
            .unwrap();
        let customer_schema = registry
            .register::<Customer>(&topics.customers)
            .await
            .unwrap();
        let producer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        RawProducer {
            producer,
            registry,
            tx_schema,
            customer_schema,
            topics_tx: topics.transactions.clone(),
            topics_customers: topics.customers.clone(),
        }
    }

    pub async fn customer(&self, c: &Customer) {
        let bytes = wire::frame(self.customer_schema, c);
        self.raw(&self.topics_customers.clone(), c.key(), &bytes)
            .await;
    }

    /// The bytes [`RawProducer::transaction`] sends for `tx`.
    pub fn framed_transaction(&self, tx: &Transaction) -> Vec<u8> {
        wire::frame(self.tx_schema, tx)
    }

    pub async fn transaction(&self, tx: &Transaction) {
        let bytes = wire::frame(self.tx_schema, tx);
        self.raw(&self.topics_tx.clone(), tx.key(), &bytes).await;
    }

    pub async fn raw(&self, topic: &str, key: &str, bytes: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(topic).partition(0).key(key).payload(bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }

    pub fn tx_schema(&self) -> u32 {
        self.tx_schema
    }
}

pub fn customer(account: &str) -> Customer {
    Customer {
        account_number: account.into(),
        first_name: "Test".into(),
        last_name: account.into(),
        email: format!("{account}@example.com"),
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        branch_id: 0,
        updated_at: None,
    }
}

pub fn transaction(account: &str, signed_cents: i64) -> Transaction {
    Transaction {
        transaction_id: uuid::Uuid::new_v4().to_string(),
        account_number: account.into(),
        transaction_reference: "REF".into(),
        transaction_datetime: Some(prost_types::Timestamp {
            seconds: 1_700_000_100,
            nanos: 0,
        }),
        kind: if signed_cents < 0 {
            TransactionKind::Withdrawal
        } else {
            TransactionKind::Deposit
        } as i32,
        amount_cents: signed_cents.abs(),
        currency: "USD".into(),
        branch_id: 0,
        description: String::new(),
    }
}

/// The stored next offset of `group` for partition 0 of `topic` (0 if none).
pub async fn stored_offset(db: &DatabaseConnection, group: &str, topic: &str) -> i64 {
    bank_storage::ledger::load_offsets(db, group, &[(topic.to_owned(), 0)])
        .await
        .ok()
        .and_then(|m| m.get(&(topic.to_owned(), 0)).copied())
        .unwrap_or(0)
}

/// Produces one record to partition 0 of `topic` with a header whose *name* is `name`, raw
/// bytes that need not be UTF-8 (rdkafka's safe API only takes `&str` names; any other client
/// can write such a header).
pub fn produce_with_raw_header_name(topic: &str, key: &str, value: &[u8], name: &[u8]) {
    use rdkafka::bindings as rd;
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    let topic = std::ffi::CString::new(topic).unwrap();
    let name = std::ffi::CString::new(name).expect("no NUL in the header name");
    let header_value = b"v";
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    let vus = [
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: 0 },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: key.as_ptr() as *mut _,
                    size: key.len(),
                },
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: value.as_ptr() as *mut _,
                    size: value.len(),
                },
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: header_value.as_ptr().cast(),
                    size: header_value.len() as isize,
                },
            },
        ),
    ];
    // SAFETY: every pointer refers to a local that outlives the call; librdkafka copies the
    // key, value and header (RD_KAFKA_MSG_F_COPY is the default for produceva).
    let error =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(error.is_null(), "produceva failed");
    producer
        .flush(Duration::from_secs(30))
        .expect("the record with a raw header name was delivered");
}

/// A TCP proxy on 127.0.0.1 that a test can cut (every connection dropped, new ones refused)
/// and restore: a database outage for one instance only, without touching the server.
pub struct Proxy {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Starts the proxy on a thread and runtime of its own, so that it keeps forwarding
    /// whatever the test's runtime is doing (an in-process producer may block it).
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let (cut, watch) = tokio::sync::watch::channel(false);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if *watch.borrow() {
                        continue; // dropped at once: refused
                    }
                    let mut watch = watch.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = watch.wait_for(|cut| *cut) => {}
                        }
                    });
                }
            });
        });
        let port = port_rx.recv().unwrap();
        Proxy { port, cut }
    }

    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    pub fn restore(&self) {
        let _ = self.cut.send(false);
    }

    /// `url` (a postgres:// URL of the native stack) with its port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (head, tail) = url.rsplit_once('@').expect("user@host in the URL");
        let (_host, rest) = tail.split_once('/').expect("a database in the URL");
        format!("{head}@127.0.0.1:{}/{rest}", self.port)
    }
}

/// A dead letter as read back from `<topic>.dlq`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Letter {
    pub source_topic: String,
    pub source_offset: i64,
    pub kind: String,
    pub message: String,
    pub code: String,
    /// `dlq.truncated.original-bytes`, when the value had to be cut.
    pub truncated: String,
    pub value_bytes: usize,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Reads `count` dead letters of both topics (bounded wait), sorted.
pub async fn read_dead_letters(topics: &Topics, count: usize) -> Vec<Letter> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    let reader: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set(
            "group.id",
            format!("{}-dlq-reader-{}", topics.group, uuid::Uuid::new_v4()),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let transactions = format!("{}.dlq", topics.transactions);
    let customers = format!("{}.dlq", topics.customers);
    reader.subscribe(&[&transactions, &customers]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        let received = tokio::time::timeout(Duration::from_secs(90), reader.recv())
            .await
            .expect("dead letters arrive");
        // A dead-letter topic that nothing was sent to does not exist: not an error here.
        let Ok(message) = received else { continue };
        let headers = message.headers().expect("dead letters carry headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        letters.push(Letter {
            source_topic: header("dlq.source.topic"),
            source_offset: header("dlq.source.offset").parse().unwrap_or(-1),
            kind: header("dlq.error.kind"),
            message: header("dlq.error.message"),
            code: header("dlq.error.code"),
            truncated: header("dlq.truncated.original-bytes"),
            value_bytes: message.payload().map_or(0, <[u8]>::len),
            key: message.key().unwrap_or_default().to_vec(),
            value: message.payload().unwrap_or_default().to_vec(),
        });
    }
    letters.sort();
    letters
}
