//! The analytics roles against the real stack: a scripted sequence with known statistics and
//! known crossings (down, stay, recover, down again) gives exactly the expected summary lines and
//! exactly the expected alerts on the alerts topic. Both roles resume from their checkpoint after
//! a kill -9: the restarted summary continues the figures without replaying, the restarted
//! watcher knows its breaches before any new transaction and repeats no alert.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use bank_contract::pb::{LimitAlert, LimitAlertKind};
use bank_contract::{Decoder, Registry, RegistryConfig};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use support::*;

const WAIT: Duration = Duration::from_secs(120);

fn role(args: &[&str], topics: &Topics, port: u16) -> (Reaped, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(args)
        .args([
            "-b",
            &bootstrap(),
            "-s",
            &registry_url(),
            "-t",
            &topics.transactions,
        ])
        .args(["--customers-topic", &topics.customers])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the role");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (Reaped(child), lines)
}

/// The (amount in cents, is_deposit) script, on account X but the last on Y.
const SCRIPT: [(&str, i64); 6] = [
    ("X", 2_000),
    ("X", -8_000),
    ("X", -500),
    ("X", 10_000),
    ("X", -8_500),
    ("Y", 1_000),
];

/// The expected line after each transaction of `script`, computed the naive two-pass way.
fn expected_lines(script: &[(&str, i64)]) -> Vec<String> {
    let stats = |values: &[i64]| {
        if values.is_empty() {
            return (0, "0.00".to_owned(), "0.00".to_owned());
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<i64>() as f64 / n;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (
            values.len(),
            format!("{:.2}", mean / 100.0),
            format!("{:.2}", var.sqrt() / 100.0),
        )
    };
    (1..=script.len())
        .map(|upto| {
            let deposits: Vec<i64> = script[..upto]
                .iter()
                .filter(|(_, c)| *c > 0)
                .map(|(_, c)| *c)
                .collect();
            let withdrawals: Vec<i64> = script[..upto]
                .iter()
                .filter(|(_, c)| *c < 0)
                .map(|(_, c)| -c)
                .collect();
            let (dn, dm, ds) = stats(&deposits);
            let (wn, wm, ws) = stats(&withdrawals);
            format!(
                "deposits count={dn} mean={dm} sd={ds} | withdrawals count={wn} mean={wm} sd={ws}"
            )
        })
        .collect()
}

async fn read_alerts(topic: &str, count: usize) -> Vec<LimitAlert> {
    let decoder = Decoder::new(std::sync::Arc::new(
        Registry::new(&RegistryConfig::new(registry_url())).unwrap(),
    ));
    let reader: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set(
            "group.id",
            format!("alerts-reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .unwrap();
    reader.subscribe(&[topic]).unwrap();
    let mut alerts = Vec::new();
    while alerts.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} alerts within 60 s", alerts.len()))
            .unwrap();
        alerts.push(
            decoder
                .decode::<LimitAlert>(message.payload().unwrap())
                .await
                .unwrap(),
        );
    }
    alerts.sort_by_key(|a| a.source_offset);
    alerts
}

/// Counts the alerts on `topic` right now (reading it to its end).
async fn alerts_on(topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    high - low
}

#[tokio::test]
async fn scripted_sequence_gives_exact_summaries_and_alerts() {
    let topics = fresh_topics("analytics");
    let alerts_topic = format!("{}.alerts", topics.transactions);
    let raw = RawProducer::new(&topics).await;
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .unwrap();
        for r in admin
            .create_topics(
                [&NewTopic::new(&alerts_topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap()
        {
            r.unwrap();
        }
    }
    let mut ids = Vec::new();
    for (account, cents) in SCRIPT {
        let tx = transaction(account, cents);
        ids.push(tx.transaction_id.clone());
        raw.transaction(&tx).await;
    }
    // A producer retry of the second transaction: counted once by both roles.
    let mut again = transaction("X", -8_000);
    again.transaction_id = ids[1].clone();
    raw.transaction(&again).await;

    let summary_port = free_port();
    let summary_db = fresh_postgres("analytics_summary").await;
    let summary_args = [
        "summary",
        "-g",
        &format!("{}-summary", topics.group),
        "--database-url",
        &summary_db,
    ];
    let (mut summary, lines) = role(&summary_args, &topics, summary_port);
    let mut seen = Vec::new();
    for _ in 0..SCRIPT.len() {
        seen.push(
            lines
                .recv_timeout(Duration::from_secs(60))
                .expect("a summary line per transaction"),
        );
    }
    assert_eq!(seen, expected_lines(&SCRIPT));
    assert_eq!(
        seen.last().unwrap(),
        "deposits count=3 mean=43.33 sd=40.28 | withdrawals count=3 mean=56.67 sd=36.59"
    );
    let body = reqwest::get(format!("http://127.0.0.1:{summary_port}/summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("\"count\":3") && body.contains("\"stddev\":\"40.28\""),
        "{body}"
    );
    terminate(&mut summary);

    // Restarted, it resumes from its checkpoint: the next line covers all seven transactions,
    // and none of the six is printed (or counted) again.
    let (mut summary, lines) = role(&summary_args, &topics, summary_port);
    raw.transaction(&transaction("Y", 2_500)).await;
    let next = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a line for the new transaction");
    let mut longer = SCRIPT.to_vec();
    longer.push(("Y", 2_500));
    assert_eq!(&next, expected_lines(&longer).last().unwrap());
    terminate(&mut summary);

    let limits_db = fresh_sqlite("analytics_limits");
    let limits_args = [
        "limits",
        "--limit",
        "-50.00",
        "--alerts-topic",
        alerts_topic.as_str(),
        "--database-url",
        limits_db.as_str(),
        "-g",
    ];
    let group = format!("{}-limits", topics.group);
    let port = free_port();
    let (mut limits, _) = role(
        &[&limits_args[..], &[group.as_str()]].concat(),
        &topics,
        port,
    );
    let alerts = read_alerts(&alerts_topic, 3).await;
    let described: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                a.account_number.as_str(),
                a.kind,
                a.balance_cents,
                a.limit_cents,
                a.transaction_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (
                "X",
                LimitAlertKind::Breached as i32,
                -6_000,
                -5_000,
                ids[1].as_str()
            ),
            (
                "X",
                LimitAlertKind::Recovered as i32,
                3_500,
                -5_000,
                ids[3].as_str()
            ),
            (
                "X",
                LimitAlertKind::Breached as i32,
                -5_000,
                -5_000,
                ids[4].as_str()
            ),
        ]
    );
    // Published after the batch, or within a second (the watcher refreshes while idle).
    wait_until("the breach is served", WAIT, || async {
        let breaches = reqwest::get(format!("http://127.0.0.1:{port}/breaches"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        breaches.contains("\"account_number\":\"X\"") && breaches.contains("\"balance\":\"-50.00\"")
    })
    .await;

    // Restarted, it knows the breach from its checkpoint and repeats nothing; a new crossing is
    // reported once.
    limits.kill().unwrap();
    limits.wait().unwrap();
    let (mut limits, _) = role(
        &[&limits_args[..], &[group.as_str()]].concat(),
        &topics,
        port,
    );
    wait_until(
        "the restarted watcher is ready",
        Duration::from_secs(60),
        || answers(port, "/readyz"),
    )
    .await;
    let breaches = reqwest::get(format!("http://127.0.0.1:{port}/breaches"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(breaches.contains("\"balance\":\"-50.00\""), "{breaches}");
    let recover = transaction("X", 6_000);
    raw.transaction(&recover).await;
    let alerts = read_alerts(&alerts_topic, 4).await;
    assert_eq!(alerts[3].transaction_id, recover.transaction_id);
    assert_eq!(alerts[3].kind, LimitAlertKind::Recovered as i32);
    assert_eq!(
        alerts_on(&alerts_topic).await,
        4,
        "no alert repeated after the restart"
    );
    limits.kill().unwrap();
    limits.wait().unwrap();
}

/// `/summary` of a summary instance, as JSON.
async fn summary_of(port: u16) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{port}/summary"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Offsets of `topic` the group's checkpoint covers, summed over partitions.
async fn checkpointed(db: &sea_orm::DatabaseConnection, group: &str, topic: &str) -> i64 {
    let partitions: Vec<(String, i32)> = (0..3).map(|p| (topic.to_owned(), p)).collect();
    bank_storage::ledger::load_offsets(db, group, &partitions)
        .await
        .map(|offsets| offsets.values().sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn three_summaries_give_the_global_figures_of_one_even_after_one_is_killed() {
    let topics = fresh_topics("scaleout");
    let database_url = fresh_postgres("analytics_scaleout").await;
    let db = connect(&database_url).await;
    generate(&topics, 30, 1_500, 41).await;
    // Quick takeover of a killed member's partitions (the broker's minimum session timeout).
    let quick = "session.timeout.ms=6000";
    let spawn = |group: String, port: u16| {
        role(
            &[
                "summary",
                "-g",
                &group,
                "--database-url",
                &database_url,
                "--every-ms",
                "60000",
                "--kafka-config",
                quick,
            ],
            &topics,
            port,
        )
    };
    let shared = format!("{}-three", topics.group);
    let ports = [free_port(), free_port(), free_port()];
    let mut three: Vec<Reaped> = ports
        .iter()
        .map(|port| spawn(shared.clone(), *port).0)
        .collect();
    wait_until("the three checkpoint the first 1,500", WAIT, || async {
        checkpointed(&db, &shared, &topics.transactions).await == 1_500
    })
    .await;
    // One dies; the others take over its partitions from its checkpoint. More transactions,
    // and a producer that sends the first 1,500 again (same seed: same ids, counted once).
    three[0].kill().unwrap();
    three[0].wait().unwrap();
    generate(&topics, 30, 1_500, 42).await;
    generate(&topics, 30, 1_500, 41).await;
    wait_until(
        "the two left checkpoint all 4,500 records",
        WAIT,
        || async { checkpointed(&db, &shared, &topics.transactions).await == 4_500 },
    )
    .await;

    let alone = format!("{}-one", topics.group);
    let port = free_port();
    let (mut one, _) = spawn(alone.clone(), port);
    wait_until(
        "one instance checkpoints all 4,500 records",
        WAIT,
        || async { checkpointed(&db, &alone, &topics.transactions).await == 4_500 },
    )
    .await;
    let count = |s: &serde_json::Value| {
        s["deposits"]["count"].as_u64().unwrap_or(0)
            + s["withdrawals"]["count"].as_u64().unwrap_or(0)
    };
    // Its figures are published just after its last checkpoint: wait for them, then they stay.
    wait_until("one instance serves 3,000 transactions", WAIT, || async {
        count(&summary_of(port).await) == 3_000
    })
    .await;
    let expected = summary_of(port).await;
    assert_eq!(count(&expected), 3_000, "each id once: {expected}");
    for port in &ports[1..] {
        // The figures are published after each batch's checkpoint and every second while idle:
        // read until they settle. Each partition's accumulators continue bit for bit across a
        // takeover and are merged in partition order, so the figures are the same, not close.
        wait_until("a survivor serves the global figures", WAIT, || async {
            summary_of(*port).await == expected
        })
        .await;
    }
    for child in three.iter_mut().skip(1).chain(std::iter::once(&mut one)) {
        terminate(child);
    }
}
