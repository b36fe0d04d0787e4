//! `producer generate` against the real stack.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bank_contract::money::signed_amount_cents;
use producer::manifest::{AccountTotals, Manifest};
use support::{Event, destination, fresh_topics, read_back, run_producer};

#[tokio::test]
async fn thousand_transactions_over_twenty_customers() {
    let (tx_topic, customer_topic) = fresh_topics("generate");
    let manifest_path = std::env::temp_dir().join(format!("{tx_topic}.manifest.json"));
    let mut args = vec!["generate".to_owned()];
    args.extend(destination(&tx_topic, &customer_topic));
    args.extend(
        [
            "--customers",
            "20",
            "--count",
            "1000",
            "--branches",
            "3",
            "--seed",
            "42",
            "--silent",
            "--manifest",
        ]
        .map(String::from),
    );
    args.push(manifest_path.display().to_string());
    run_producer(args).await.expect("generate succeeds");

    let events = read_back(&tx_topic, &customer_topic, 1020).await;
    let mut customer_time = BTreeMap::new();
    let mut first_tx_time: BTreeMap<String, i64> = BTreeMap::new();
    let mut expected: BTreeMap<String, AccountTotals> = BTreeMap::new();
    for received in &events {
        match &received.event {
            Event::Customer(c) => {
                assert_eq!(
                    received.partition as u32,
                    c.branch_id % 3,
                    "customer partition = branch mod 3"
                );
                assert_eq!(received.key, c.account_number);
                assert!(
                    customer_time
                        .insert(c.account_number.clone(), received.timestamp_ms)
                        .is_none()
                );
            }
            Event::Transaction(tx) => {
                assert_eq!(
                    received.partition as u32,
                    tx.branch_id % 3,
                    "transaction partition = branch mod 3"
                );
                assert_eq!(received.key, tx.account_number);
                let t = first_tx_time
                    .entry(tx.account_number.clone())
                    .or_insert(i64::MAX);
                *t = (*t).min(received.timestamp_ms);
                let totals = expected.entry(tx.account_number.clone()).or_default();
                *totals = AccountTotals::new(
                    totals.transactions + 1,
                    totals.sum_cents + signed_amount_cents(tx).unwrap(),
                );
            }
        }
    }
    assert_eq!(customer_time.len(), 20, "one Customer per account");
    for (account, first) in &first_tx_time {
        let announced = customer_time
            .get(account)
            .unwrap_or_else(|| panic!("{account} has no Customer"));
        assert!(
            announced <= first,
            "{account}: customer at {announced} after its first transaction at {first}"
        );
    }
    let manifest = Manifest::read(&manifest_path).unwrap();
    assert_eq!(
        manifest.accounts, expected,
        "manifest equals what a consumer reads back"
    );
    assert_eq!(manifest.topics[&tx_topic].delivered, 1000);
    assert_eq!(manifest.topics[&customer_topic].delivered, 20);
    assert_eq!(manifest.topics[&tx_topic].failed, 0);
}

#[tokio::test]
async fn the_same_seed_sends_the_same_bytes() {
    async fn run(seed: &str) -> Vec<(String, i32, Vec<u8>)> {
        let (tx_topic, customer_topic) = fresh_topics("seed");
        let mut args = vec!["generate".to_owned()];
        args.extend(destination(&tx_topic, &customer_topic));
        args.extend(
            [
                "--customers",
                "5",
                "--count",
                "200",
                "--seed",
                seed,
                "--silent",
            ]
            .map(String::from),
        );
        run_producer(args).await.unwrap();
        read_back(&tx_topic, &customer_topic, 205)
            .await
            .into_iter()
            .map(|r| {
                let kind = if r.topic == tx_topic {
                    "tx"
                } else {
                    "customer"
                };
                // Skip the 5-byte header: the schema id is the registry's, not the generator's.
                (
                    format!("{kind}:{}", r.key),
                    r.partition,
                    r.payload[5..].to_vec(),
                )
            })
            .collect()
    }
    let first = run("7").await;
    assert_eq!(
        first,
        run("7").await,
        "same seed, same keys, partitions, payloads, order"
    );
    assert_ne!(first, run("8").await, "another seed, other events");
}

#[tokio::test]
async fn refuses_a_topic_with_fewer_partitions_than_branches() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let (tx_topic, customer_topic) = fresh_topics("partitions");
    let admin: AdminClient<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::bootstrap())
        .create()
        .unwrap();
    admin
        .create_topics(
            [&NewTopic::new(&tx_topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let mut args = vec!["generate".to_owned()];
    args.extend(destination(&tx_topic, &customer_topic));
    args.extend(["--branches", "3", "--count", "1", "--silent"].map(String::from));
    let error = format!("{:#}", run_producer(args).await.unwrap_err());
    assert!(
        error.contains("has 1 partitions, fewer than the 3 branches"),
        "{error}"
    );
}

fn run_binary(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_producer"))
        .args(args)
        .output()
        .expect("run producer");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn an_unreachable_broker_is_a_clear_error_in_bounded_time() {
    let (tx_topic, customer_topic) = fresh_topics("nobroker");
    let registry = support::registry_url();
    let (ok, stderr, took) = run_binary(&[
        "generate",
        "-b",
        "127.0.0.1:1",
        "-s",
        &registry,
        "-t",
        &tx_topic,
        "--customers-topic",
        &customer_topic,
        "--count",
        "1",
        "--silent",
    ]);
    assert!(!ok, "exit status is non-zero");
    assert!(stderr.contains("127.0.0.1:1"), "names the broker: {stderr}");
    assert!(took < Duration::from_secs(60), "gave up after {took:?}");
}

#[test]
fn an_unreachable_registry_is_a_clear_error_in_bounded_time() {
    let (ok, stderr, took) = run_binary(&[
        "generate",
        "-b",
        &support::bootstrap(),
        "-s",
        "http://127.0.0.1:9/apis/ccompat/v7",
        "--count",
        "1",
        "--silent",
    ]);
    assert!(!ok, "exit status is non-zero");
    assert!(
        stderr.contains("registering the Customer schema") && stderr.contains("127.0.0.1:9"),
        "names the registry: {stderr}"
    );
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
}

#[test]
fn sigterm_stops_flushes_and_reports() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let (tx_topic, customer_topic) = fresh_topics("sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_producer"))
        .args([
            "generate",
            "--continuous",
            "--rate",
            "500",
            "--customers",
            "3",
        ])
        .args(destination(&tx_topic, &customer_topic))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start producer");
    // Wait for the condition "50 transactions printed", bounded by the reader thread's channel.
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut transactions = 0;
    while transactions < 50 {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("50 transactions within 60 s");
        transactions += usize::from(line.starts_with("transaction "));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let output = child.wait_with_output().expect("producer exits");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "exited within 30 s of SIGTERM"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "clean exit: {stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("a summary line");
    let numbers: Vec<u64> = summary
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(';').parse().ok())
        .collect();
    // customers sent, delivered, failed; transactions sent, delivered, failed
    assert_eq!(numbers.len(), 6, "{summary}");
    assert_eq!(numbers[0], numbers[1]);
    assert_eq!(
        numbers[3], numbers[4],
        "everything in flight was flushed: {summary}"
    );
    assert_eq!(numbers[2] + numbers[5], 0);
    assert!(numbers[3] >= 50);
}

#[tokio::test]
async fn a_registry_behind_https_is_trusted_through_the_ca_store_only() {
    let front = bank_test_support::https_registry(&support::registry_url());
    let (tx_topic, customer_topic) = fresh_topics("https");
    let mut args = destination(&tx_topic, &customer_topic);
    let at = args.iter().position(|a| a == "-s").expect("-s") + 1;
    args[at] = front.url.clone();
    let run = |trusted: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_producer"));
        command
            .arg("generate")
            .args(&args)
            .args(["--count", "5", "--customers", "2", "--silent"]);
        front.trust_in(&mut command, trusted);
        command.output().expect("run the producer")
    };

    let refused = run(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a certificate no trusted CA signed is refused: {stderr}"
    );
    let port = front.url.split('/').nth(2).expect("host:port");
    assert!(
        stderr.contains(port) && stderr.contains("certificate"),
        "the error names the registry and its certificate: {stderr}"
    );

    let trusted = run(true);
    assert!(
        trusted.status.success(),
        "trusted through SSL_CERT_FILE: {}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(read_back(&tx_topic, &customer_topic, 7).await.len(), 7);
}
