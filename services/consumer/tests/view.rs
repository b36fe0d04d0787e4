//! `consumer view` against the real stack, as its users run it: the binary, its flags, its
//! stdout. Typed filters, readable times in a zone, the three output formats, `--from latest`
//! showing exactly what arrives after the view starts, undecodable records skipped with their
//! position, and the ends a view has: a limit, SIGTERM, a reader that goes away.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::*;

fn view(topics: &Topics, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consumer"));
    command
        .args(["view", "-b", &bootstrap(), "-s", &registry_url()])
        .args([
            "-t",
            &topics.transactions,
            "--customers-topic",
            &topics.customers,
        ])
        .args(args)
        .env("RUST_LOG", "warn");
    command
}

fn run(topics: &Topics, args: &[&str]) -> (bool, String, String) {
    let mut child = Reaped(
        view(topics, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start consumer view"),
    );
    let (mut out, mut err) = (String::new(), String::new());
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut err);
        err
    });
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let status = wait_exit(&mut child);
    (status.success(), out, errors.join().unwrap_or_default())
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "view ended within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout lines as they come, so a test can wait for one (bounded).
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("a line within 30 s")
}

async fn seeded(name: &str) -> (Topics, RawProducer) {
    let topics = fresh_topics(name);
    let producer = RawProducer::new(&topics).await;
    producer.customer(&customer("ACC-000001")).await;
    let mut small = transaction("ACC-000001", -2_500);
    small.transaction_datetime = Some(prost_types::Timestamp {
        seconds: 1_618_269_963,
        nanos: 655_000_000,
    });
    producer.transaction(&small).await;
    producer
        .raw(
            &topics.transactions,
            "ACC-000001",
            b"\x00\x00\x00\x00\x07not protobuf",
        )
        .await;
    let mut big = transaction("ACC-000001", -150_000);
    big.transaction_datetime = small.transaction_datetime;
    big.description = "rent,\n\"May\"\u{1b}[2J".into();
    producer.transaction(&big).await;
    producer
        .transaction(&transaction("ACC-000002", 900_000))
        .await;
    (topics, producer)
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_times_and_formats_are_what_was_asked() {
    let (topics, _producer) = seeded("view-formats").await;

    let (ok, out, err) = run(
        &topics,
        &[
            "--from",
            "earliest",
            "--format",
            "csv",
            "--limit",
            "1",
            "--columns",
            "account_number,kind,amount,transaction_datetime,description,offset",
            "--where",
            "kind=withdrawal",
            "--where",
            "amount>1000.00",
            "--time-format",
            "yyyy-MM-dd HH:mm:ss.SSS",
            "--tz",
            "Europe/Paris",
        ],
    );
    assert!(ok, "exit 0: {err}");
    assert_eq!(
        out,
        "account_number,kind,amount,transaction_datetime,description,offset\n\
         ACC-000001,WITHDRAWAL,1500.00,2021-04-13 01:26:03.655,\"rent,\n\"\"May\"\"\u{1b}[2J\",2\n"
    );
    assert!(
        err.contains("[0]@1 cannot be decoded"),
        "the poison is named on stderr: {err}"
    );

    let (ok, out, err) = run(
        &topics,
        &[
            "--from",
            "earliest",
            "--format",
            "table",
            "--limit",
            "2",
            "--columns",
            "account_number,signed_amount,description",
        ],
    );
    assert!(ok, "{err}");
    let table: Vec<&str> = out.lines().collect();
    assert_eq!(table.len(), 6, "rule, header, rule, two rows, rule:\n{out}");
    assert_eq!(
        table[1],
        "|ACCOUNT_NUMBER|SIGNED_AMOUNT|DESCRIPTION                   |"
    );
    assert_eq!(
        table[3],
        "|ACC-000001    |       -25.00|                              |"
    );
    assert!(
        table[4].contains("rent,\\n\"May\"\\u{1b}[2J"),
        "escaped for the terminal: {out}"
    );

    let (ok, out, err) = run(
        &topics,
        &[
            "customers",
            "--from",
            "earliest",
            "--format",
            "json",
            "--limit",
            "1",
            "--columns",
            "*,partition",
        ],
    );
    assert!(ok, "{err}");
    let customer: serde_json::Value = serde_json::from_str(out.trim()).expect("a JSON line");
    assert_eq!(customer["account_number"], "ACC-000001");
    assert_eq!(customer["created_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(customer["updated_at"], serde_json::Value::Null);
    assert_eq!(customer["partition"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_shows_exactly_what_arrives_after_the_start() {
    let (topics, producer) = seeded("view-latest").await;
    let mut child = Reaped(
        view(
            &topics,
            &["--format", "csv", "--columns", "account_number,amount"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("start consumer view"),
    );
    let lines = lines(&mut child);
    assert_eq!(
        next_line(&lines),
        "account_number,amount",
        "the header once assigned"
    );
    producer
        .transaction(&transaction("ACC-000003", 4_200))
        .await;
    assert_eq!(
        next_line(&lines),
        "ACC-000003,42.00",
        "the new event, and none of the old"
    );
    terminate(&mut child);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_the_view_cleanly() {
    let (topics, producer) = seeded("view-pipe").await;
    let mut child = Reaped(
        view(&topics, &["--format", "csv"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start consumer view"),
    );
    let lines = lines(&mut child);
    assert!(next_line(&lines).starts_with("transaction_id,"));
    drop(lines);
    // The reading thread ends at its next line, closing the pipe; each event then either reaches
    // it or finds the pipe closed, and the view must end with exit 0 rather than panic.
    let status = loop {
        producer.transaction(&transaction("ACC-000004", 100)).await;
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a closed pipe is a normal end: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_flag_fails_before_reading_and_says_which() {
    let topics = fresh_topics("view-flags");
    for (args, says) in [
        (
            &["--where", "amount>10.005"][..],
            "--where \"amount>10.005\"",
        ),
        (&["--where", "email=x"][..], "not a column of transactions"),
        (
            &["customers", "--columns", "amount"][..],
            "--columns: \"amount\" is not a column of customers",
        ),
        (&["--tz", "Mars/Olympus"][..], "--tz"),
        (&["--time-format", "yyyy G"][..], "--time-format"),
    ] {
        let (ok, _, err) = run(&topics, args);
        assert!(!ok, "{args:?} is refused");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (ok, _, err) = run(&topics, &["--from", "earliest"]);
    assert!(
        !ok && err.contains("does not exist"),
        "a missing topic is named: {err}"
    );
}
