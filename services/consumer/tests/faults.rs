//! The ledger under faults that used to lose data or leave a zombie: a new database under a
//! group Kafka already knows, a header name that is not UTF-8, a panicking writer, offsets that
//! cannot be read at assignment, and SIGTERM while the database is unreachable.

mod support;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bank_contract::wire;
use support::*;

const WAIT: Duration = Duration::from_secs(120);

/// The ledger binary, its stderr going to a file the test reads afterwards.
fn spawn_binary(
    topics: &Topics,
    database_url: &str,
    env: &[(&str, &str)],
) -> (Reaped, std::path::PathBuf) {
    spawn_with(topics, database_url, &registry_url(), |command| {
        command.envs(env.iter().copied());
    })
}

/// [`spawn_binary`] with another registry URL and whatever `configure` adds to the command.
fn spawn_with(
    topics: &Topics,
    database_url: &str,
    registry: &str,
    configure: impl FnOnce(&mut Command),
) -> (Reaped, std::path::PathBuf) {
    let log =
        std::env::temp_dir().join(format!("{}.{}.stderr", topics.group, uuid::Uuid::new_v4()));
    let tuples = std::env::temp_dir().join(format!("{}.tuples", topics.group));
    let mut args = ledger_args(topics, database_url, &tuples, &[]);
    let at = args.iter().position(|a| a == "-s").expect("-s") + 1;
    args[at] = registry.to_owned();
    let mut command = Command::new(env!("CARGO_BIN_EXE_consumer"));
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    configure(&mut command);
    let child = command.spawn().expect("start the ledger binary");
    (Reaped(child), log)
}

fn read(path: &std::path::Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Waits (bounded) for the child to exit; its exit code and how long that took.
async fn wait_exit(child: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fresh_database_under_an_existing_group_rebuilds_everything() {
    let topics = fresh_topics("fresh-db");
    let manifest = generate(&topics, 5, 50, 3).await;
    let first = fresh_sqlite("fresh_db_a");
    let ledger = spawn_ledger(&topics, &first, &[]).await;
    let db = connect(&first).await;
    wait_until("the first database", WAIT, || async {
        count(&db, "transactions").await >= 50
    })
    .await;
    // Stopping commits the group's offsets to Kafka, at the end of both topics.
    ledger.stop().await;

    let second = fresh_sqlite("fresh_db_b");
    let ledger = spawn_ledger(&topics, &second, &[]).await;
    let db = connect(&second).await;
    wait_until(
        "the second database, rebuilt from the earliest offsets",
        WAIT,
        || async { count(&db, "transactions").await >= 50 },
    )
    .await;
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 5));
    ledger.stop().await;
}

#[tokio::test]
async fn a_header_name_that_is_not_utf8_does_not_stop_the_ledger() {
    let topics = fresh_topics("raw-header");
    let database_url = fresh_sqlite("raw_header");
    let raw = RawProducer::new(&topics).await;
    raw.customer(&customer("H")).await;
    let odd = transaction("H", 700);
    let bytes = wire::frame(raw.tx_schema(), &odd);
    produce_with_raw_header_name(&topics.transactions, "H", &bytes, b"\xff\xfename");
    raw.transaction(&transaction("H", 50)).await;

    let ledger = spawn_ledger(&topics, &database_url, &[]).await;
    let db = connect(&database_url).await;
    wait_until("both transactions, the odd one included", WAIT, || async {
        count(&db, "transactions").await == 2
    })
    .await;
    assert!(ledger.is_running(), "the ledger carries on");
    assert_eq!(ledger.get("/readyz").await.0, 200);
    ledger.stop().await;
}

#[tokio::test]
async fn a_panicking_writer_ends_the_process_at_once_with_a_failure_code() {
    let topics = fresh_topics("panic");
    let database_url = fresh_sqlite("panic");
    generate(&topics, 5, 100, 4).await;
    let (mut child, log) = spawn_binary(
        &topics,
        &database_url,
        &[("BANKSTREAM_FAULT_WRITER_PANIC", "1")],
    );
    let (code, _) = wait_exit(&mut child, WAIT).await;
    let stderr = read(&log);
    assert_eq!(
        code,
        Some(bank_plumbing::telemetry::PANIC_EXIT_CODE),
        "a panic is a failure: {stderr}"
    );
    let errors: Vec<_> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("panic") && l.contains("injected fault")),
        "one clear ERROR line names the panic: {stderr}"
    );
}

#[tokio::test]
async fn unreadable_offsets_pause_and_retry_never_fall_back_to_kafka() {
    let topics = fresh_topics("offsets-down");
    let manifest = generate(&topics, 5, 80, 6).await;
    // Kafka learns offsets at the end of both topics from a first database.
    let first = fresh_sqlite("offsets_down_a");
    let ledger = spawn_ledger(&topics, &first, &[]).await;
    let db = connect(&first).await;
    wait_until("the first database", WAIT, || async {
        count(&db, "transactions").await >= 80
    })
    .await;
    ledger.stop().await;

    // A new database whose offsets cannot be read for the first three tries.
    let second = fresh_sqlite("offsets_down_b");
    let (mut child, log) = spawn_binary(
        &topics,
        &second,
        &[("BANKSTREAM_FAULT_OFFSET_LOAD_FAILURES", "3")],
    );
    let db = connect(&second).await;
    wait_until("everything, from the earliest offsets", WAIT, || async {
        count(&db, "transactions").await >= 80
    })
    .await;
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 5));
    let stderr = read(&log);
    assert!(
        stderr.contains("cannot read stored offsets; partitions stay paused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("resuming at Kafka's committed offsets"),
        "{stderr}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_while_the_database_is_unreachable_exits_cleanly_within_the_grace_period() {
    let topics = fresh_topics("term-outage");
    let direct = fresh_postgres("term_outage").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through_proxy = proxy.url(&direct);
    generate(&topics, 20, 2_000, 8).await;
    let (mut child, log) = spawn_binary(&topics, &through_proxy, &[]);
    let db = connect(&direct).await;
    wait_until("ingestion under way", WAIT, || async {
        count(&db, "transactions").await >= 1
    })
    .await;
    proxy.cut();
    generate(&topics, 20, 500, 9).await;
    // Let the writer fail against the cut database at least once.
    wait_until("a failed write", WAIT, || async {
        read(&log).contains("apply failed; retrying")
    })
    .await;
    send_signal(child.id(), "-TERM");
    let (code, took) = wait_exit(&mut child, Duration::from_secs(60)).await;
    let stderr = read(&log);
    assert_eq!(code, Some(0), "a requested stop is not a failure: {stderr}");
    assert!(took < Duration::from_secs(30), "stopped in {took:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    proxy.restore();
}

/// A database that accepts the connection and never answers (a PostgreSQL that hangs, a
/// black-holing proxy): a SIGTERM while the ledger waits on it ends the process with 0, a
/// requested stop, not with the default action's 143.
#[tokio::test]
async fn sigterm_while_connecting_to_the_database_exits_cleanly() {
    let topics = fresh_topics("term-connect");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = silent.local_addr().expect("its address");
    let url = format!("postgres://bank:bank@{address}/bank");
    let (mut child, log) = spawn_binary(&topics, &url, &[]);
    wait_until("the ledger connecting", WAIT, || async {
        read(&log).contains("connecting to the ledger database")
    })
    .await;
    send_signal(child.id(), "-TERM");
    let (code, _) = wait_exit(&mut child, Duration::from_secs(30)).await;
    let stderr = read(&log);
    assert_eq!(code, Some(0), "a requested stop is not a failure: {stderr}");
    assert!(
        stderr.contains("stop requested before the ledger was ready"),
        "{stderr}"
    );
    drop(silent);
}

#[tokio::test]
async fn a_registry_behind_https_is_used_when_its_ca_is_trusted_and_refused_at_once_otherwise() {
    let front = bank_test_support::https_registry(&registry_url());
    let topics = fresh_topics("https");
    let database_url = fresh_sqlite("https");
    generate(&topics, 3, 40, 5).await;

    // Not trusted (the system's CA store only): a misconfiguration, so the start fails at once
    // naming the URL, instead of waiting for a registry that will never be reachable.
    let (mut child, log) = spawn_with(&topics, &database_url, &front.url, |command| {
        front.trust_in(command, false)
    });
    let (code, _) = wait_exit(&mut child, WAIT).await;
    let stderr = read(&log);
    assert_ne!(code, Some(0), "an untrusted certificate fails the start");
    let port = front.url.split('/').nth(2).expect("host:port");
    assert!(
        stderr.contains(port) && stderr.contains("certificate"),
        "the error names the registry and its certificate: {stderr}"
    );

    // Trusted through SSL_CERT_FILE, as a corporate CA is: schemas are fetched over TLS.
    let (mut child, log) = spawn_with(&topics, &database_url, &front.url, |command| {
        front.trust_in(command, true)
    });
    let db = connect(&database_url).await;
    wait_until("43 rows decoded over HTTPS", WAIT, || async {
        count(&db, "transactions").await + count(&db, "customers").await >= 43
    })
    .await;
    terminate(&mut child);
    assert!(!read(&log).contains("ERROR"), "{}", read(&log));
}
