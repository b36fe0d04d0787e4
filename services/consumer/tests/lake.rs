//! `consumer lake` against the real stack, checked by an independent reader (DuckDB, through
//! `tests/lake/check.py`): SIGKILLed at random instants and restarted, every transaction is in
//! the lake exactly once and per-account sums equal the producer's manifest; the same on
//! S3-compatible storage (moto's server); files cut by time; SIGTERM writing what it holds.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use consumer::lake::layout::Table;
use consumer::lake::store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::*;

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/.venv/bin")
        .join(name)
}

/// The lake's command and the port of its HTTP endpoint.
fn lake_command(topics: &Topics, lake: &str, extra: &[&str]) -> (Command, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_consumer"));
    command
        .args([
            "lake",
            "-b",
            &bootstrap(),
            "-s",
            &registry_url(),
            "-g",
            &topics.group,
        ])
        .args([
            "-t",
            &topics.transactions,
            "--customers-topic",
            &topics.customers,
        ])
        .args(["--lake", lake, "--http-addr", &format!("127.0.0.1:{port}")])
        // A SIGKILLed member holds its partitions until its session times out.
        .args([
            "--kafka-config",
            "session.timeout.ms=6000,heartbeat.interval.ms=1000",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    (command, port)
}

/// What DuckDB reads in the lake.
fn check(lake: &str, env: &[(&str, String)]) -> serde_json::Value {
    let mut command = Command::new(venv_bin("python"));
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lake/check.py"));
    match lake.strip_prefix("s3://") {
        Some(bucket) => {
            let endpoint = env
                .iter()
                .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            command.args(["--s3", bucket, "--endpoint", &endpoint, "unused"]);
        }
        None => {
            command.arg(lake);
        }
    }
    let output = command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run check.py");
    assert!(
        output.status.success(),
        "check.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("check.py prints JSON")
}

fn expected_sums(manifest: &producer::manifest::Manifest) -> BTreeMap<String, (u64, i64)> {
    manifest
        .accounts
        .iter()
        .map(|(a, t)| (a.clone(), (t.transactions, t.sum_cents)))
        .collect()
}

fn lake_sums(found: &serde_json::Value) -> BTreeMap<String, (u64, i64)> {
    found["accounts"]
        .as_object()
        .map(|accounts| {
            accounts
                .iter()
                .map(|(a, v)| {
                    (
                        a.clone(),
                        (
                            v["transactions"].as_u64().unwrap_or(0),
                            v["sum_cents"].as_i64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Files of `dir` (recursively) whose names end in `.parquet`.
fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                parquet_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// Messages in `topic` now.
fn committed_end(topic: &str) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("client");
    (0..3)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
        })
        .map(|w| w.1)
        .sum()
}

/// The group's committed offsets sum (the lake commits to Kafka after each batch it took).
fn committed(topics: &Topics) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &topics.group)
        .create()
        .expect("client");
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..3 {
        list.add_partition(&topics.transactions, partition);
    }
    consumer
        .committed_offsets(list, Duration::from_secs(10))
        .map(|l| {
            l.elements()
                .iter()
                .filter_map(|e| e.offset().to_raw())
                .filter(|o| *o > 0)
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the lake `kills` times, each SIGKILLed at a random instant once it has written a new
/// file (or has nothing left to write), then once more until its files cover both topics.
async fn sigkilled_until_complete(
    topics: &Topics,
    lake: &str,
    env: &[(&str, String)],
    kills: usize,
) {
    let seed = uuid::Uuid::new_v4().as_u128() as u64;
    println!("lake kill seed {seed}");
    let mut state = seed | 1;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let store = store_of(lake, env);
    let files = || async {
        store
            .files(Table::Transactions)
            .await
            .map(|f| f.len())
            .unwrap_or(0)
    };
    let flags = ["--flush-records", "1000", "--flush-interval-ms", "300"];
    let spawn = || {
        let (mut command, port) = lake_command(topics, lake, &flags);
        let child = command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .expect("start lake");
        (Reaped(child), port)
    };
    for _ in 0..kills {
        let before = files().await;
        let (mut child, _) = spawn();
        wait_until("a new file", Duration::from_secs(60), || async {
            files().await > before || covers(&store, topics).await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(random(400))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let (mut last, port) = spawn();
    wait_until(
        "the lake to cover both topics",
        Duration::from_secs(180),
        || async { covers(&store, topics).await },
    )
    .await;
    // The killed runs may have covered everything already: the last one is stopped only once it
    // is up (its signal handler with it), or the SIGTERM would meet a process still starting.
    wait_until("the last lake to answer", Duration::from_secs(60), || {
        answers(port, "/healthz")
    })
    .await;
    terminate(&mut last);
}

/// The lake as the sink sees it, to wait on its listing (the contents are checked by DuckDB).
fn store_of(lake: &str, env: &[(&str, String)]) -> Store {
    let Some(rest) = lake.strip_prefix("s3://") else {
        return Store::open(lake).expect("a local lake");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let get = |key: &str| {
        env.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(get("AWS_ENDPOINT_URL"))
        .with_allow_http(true)
        .with_region(get("AWS_REGION"))
        .with_access_key_id(get("AWS_ACCESS_KEY_ID"))
        .with_secret_access_key(get("AWS_SECRET_ACCESS_KEY"))
        .build()
        .expect("an S3 client");
    Store::S3 {
        store: std::sync::Arc::new(s3),
        prefix: prefix.to_owned(),
        url: lake.to_owned(),
    }
}

/// Whether the lake's files reach the end of every partition of both topics.
async fn covers(store: &Store, topics: &Topics) -> bool {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("client");
    for (topic, table) in [
        (&topics.transactions, Table::Transactions),
        (&topics.customers, Table::Customers),
    ] {
        let Ok(reached) = store.resume(table, topic).await else {
            return false;
        };
        for partition in 0..3 {
            let end = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map(|w| w.1)
                .unwrap_or(-1);
            let reached = reached.get(&partition).and_then(|r| r.next).unwrap_or(0);
            if reached != end {
                return false;
            }
        }
    }
    true
}

/// Produces `count` transactions at `rate`/s in the background (so kills land mid-stream);
/// the manifest comes when it is done.
fn produce_meanwhile(
    topics: &Topics,
    customers: u32,
    count: u64,
    seed: u64,
    rate: u32,
) -> tokio::task::JoinHandle<producer::manifest::Manifest> {
    let topics = Topics {
        transactions: topics.transactions.clone(),
        customers: topics.customers.clone(),
        group: topics.group.clone(),
    };
    tokio::spawn(async move {
        generate_with(
            &topics,
            customers,
            count,
            seed,
            &["--rate", &rate.to_string()],
        )
        .await
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkills_leave_every_transaction_in_the_lake_exactly_once() {
    let topics = fresh_topics("lake-kill");
    let producing = produce_meanwhile(&topics, 50, 30_000, 21, 5_000);
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    // The topics exist once the producer has started; the lake subscribes to them.
    wait_until(
        "the producer's first events",
        Duration::from_secs(60),
        || async { committed_end(&topics.transactions) > 0 },
    )
    .await;
    sigkilled_until_complete(&topics, &lake_url, &[], 5).await;
    let manifest = producing.await.expect("the producer");
    let store = store_of(&lake_url, &[]);
    wait_until(
        "the lake to cover both topics",
        Duration::from_secs(60),
        || async { covers(&store, &topics).await },
    )
    .await;
    let found = check(&lake_url, &[]);
    assert_eq!(found["rows"], 30_000, "{found}");
    assert_eq!(found["distinct"], 30_000, "no transaction twice");
    assert_eq!(
        lake_sums(&found),
        expected_sums(&manifest),
        "per-account sums equal the manifest"
    );
    assert_eq!(found["customers"], 50);
    assert!(
        found["dates"].as_u64().unwrap_or(0) > 1,
        "partitioned by date: {found}"
    );
    let _ = std::fs::remove_dir_all(lake);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_path_is_exactly_once_too() {
    let port = free_port();
    let mut moto = Reaped(
        Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (make interop-env)"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_until("moto to answer", Duration::from_secs(60), || async {
        reqwest::Client::new()
            .put(format!("{endpoint}/lake-bucket"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let env = [
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ];
    let topics = fresh_topics("lake-s3");
    let manifest = generate(&topics, 20, 8_000, 22).await;
    // The first part of an unfinished span, as a run killed between its parts leaves it: not
    // Parquet, so DuckDB fails below unless the sink deletes it from the bucket.
    store_of("s3://lake-bucket/bank", &env)
        .put(
            &format!(
                "transactions/dt=2026-12-01/{}.p0.{:020}-{:020}.1of2.parquet",
                topics.transactions, 0, 999
            ),
            bytes::Bytes::from_static(b"the first part of two; the second never written"),
        )
        .await
        .expect("an orphan put into the bucket");
    sigkilled_until_complete(&topics, "s3://lake-bucket/bank", &env, 2).await;
    let found = check("s3://lake-bucket/bank", &env);
    assert_eq!(
        (found["rows"].as_u64(), found["distinct"].as_u64()),
        (Some(8_000), Some(8_000)),
        "{found}"
    );
    assert_eq!(lake_sums(&found), expected_sums(&manifest));
    // Spans are claimed with a conditional PUT: a second claim of the same offset is refused
    // and the first is kept.
    let store = store_of("s3://lake-bucket/bank", &env);
    let claim = format!("_spans/transactions/{}.p0/{:020}", topics.transactions, 0);
    let first = store.read(&claim).await.expect("read").expect("a claim");
    let other = bytes::Bytes::from_static(b"last=1\nsomething/else.parquet\n");
    let kept = store
        .create_once(&claim, other)
        .await
        .expect("a conditional put");
    assert_eq!(kept.as_ref(), Some(&first), "the claim that was there");
    assert_eq!(store.read(&claim).await.expect("read"), Some(first));
    let _ = moto.0.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_cut_by_time_and_sigterm_writes_what_is_held() {
    let topics = fresh_topics("lake-time");
    generate(&topics, 3, 40, 23).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let mut child = Reaped(
        lake_command(&topics, &lake_url, &["--flush-interval-ms", "500"])
            .0
            .spawn()
            .expect("start lake"),
    );
    wait_until("files cut by time", Duration::from_secs(60), || async {
        check(&lake_url, &[])["rows"].as_u64() == Some(40)
    })
    .await;
    terminate(&mut child);

    // An hour's interval: only the stop writes them.
    let topics = fresh_topics("lake-stop");
    generate(&topics, 3, 40, 24).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let mut child = Reaped(
        lake_command(&topics, &lake_url, &["--flush-interval-ms", "3600000"])
            .0
            .spawn()
            .expect("start lake"),
    );
    wait_until("the batch taken", Duration::from_secs(60), || async {
        committed(&topics) == 40
    })
    .await;
    assert_eq!(parquet_files(&lake), 0, "nothing written before the stop");
    terminate(&mut child);
    let found = check(&lake_url, &[]);
    assert_eq!(
        (found["rows"].as_u64(), found["customers"].as_u64()),
        (Some(40), Some(3)),
        "{found}"
    );
}

/// Produces `count` transactions to partition 0 whose dates cycle over `days` consecutive days,
/// after a customer for each account; returns the per-account count and sum.
async fn cycling_dates(topics: &Topics, count: usize, days: i64) -> BTreeMap<String, (u64, i64)> {
    let producer = RawProducer::new(topics).await;
    let accounts = ["ACC-1", "ACC-2", "ACC-3", "ACC-4"];
    for account in accounts {
        producer.customer(&customer(account)).await;
    }
    let mut expected: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut events = Vec::with_capacity(count);
    for i in 0..count {
        let account = accounts[i % accounts.len()];
        let signed = if i % 5 == 0 {
            -(i as i64 + 1)
        } else {
            i as i64 + 7
        };
        let mut tx = transaction(account, signed);
        tx.transaction_datetime = Some(prost_types::Timestamp {
            seconds: 1_796_148_892 + 86_400 * (i as i64 % days),
            nanos: 0,
        });
        let entry = expected.entry(account.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += signed;
        events.push(tx);
    }
    for chunk in events.chunks(500) {
        futures::future::join_all(chunk.iter().map(|tx| producer.transaction(tx))).await;
    }
    expected
}

/// DuckDB's reading of a local lake: `count` rows, each id once, per-account sums as `expected`.
fn exactly_once(
    lake: &str,
    count: usize,
    expected: &BTreeMap<String, (u64, i64)>,
) -> serde_json::Value {
    let found = check(lake, &[]);
    assert_eq!(
        (found["rows"].as_u64(), found["distinct"].as_u64()),
        (Some(count as u64), Some(count as u64)),
        "{found}"
    );
    assert_eq!(&lake_sums(&found), expected);
    found
}

/// A backfill whose dates cycle over three days within one partition, the sink SIGKILLed
/// meanwhile: a span holds a file per date (not a file per change of date), and a span a kill
/// left with some of its parts written is deleted and written again, never counted twice.
#[tokio::test(flavor = "multi_thread")]
async fn interleaved_dates_share_a_span_and_survive_sigkills() {
    let topics = fresh_topics("lake-dates");
    let count = 6_000usize;
    let expected = cycling_dates(&topics, count, 3).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    // What a run killed between the parts of a span leaves: the first of two. Not Parquet, so
    // DuckDB below fails if the sink counts or keeps it.
    let orphan = lake.join("transactions/dt=2026-12-01").join(format!(
        "{}.p0.{:020}-{:020}.1of2.parquet",
        topics.transactions, 0, 999
    ));
    std::fs::create_dir_all(orphan.parent().expect("a directory")).expect("mkdir");
    std::fs::write(&orphan, b"the first part of two; the second never written").expect("write");
    sigkilled_until_complete(&topics, &lake_url, &[], 3).await;
    let found = exactly_once(&lake_url, count, &expected);
    assert_eq!(found["dates"], 3, "{found}");
    let files = parquet_files(&lake.join("transactions"));
    // 6,000 rows cut every 1,000 (or 300 ms), 3 dates a span: a few dozen files at most, where
    // a file per change of date made one per row.
    assert!(files <= 120, "{files} files for {count} rows");
    let _ = std::fs::remove_dir_all(lake);
}

/// `--max-open-files` below the number of dates that interleave: every span is cut before a
/// third date would open, so files hold a row or two; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn max_open_files_cuts_a_span_before_one_more_file() {
    let topics = fresh_topics("lake-open");
    let count = 300usize;
    let expected = cycling_dates(&topics, count, 3).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let (mut command, port) = lake_command(&topics, &lake_url, &["--max-open-files", "2"]);
    let mut child = Reaped(command.spawn().expect("start lake"));
    wait_until("the lake to answer", Duration::from_secs(60), || {
        answers(port, "/healthz")
    })
    .await;
    wait_until("every row taken", Duration::from_secs(60), || async {
        committed(&topics) == count as i64
    })
    .await;
    terminate(&mut child);
    exactly_once(&lake_url, count, &expected);
    let files = parquet_files(&lake.join("transactions"));
    assert!(
        files >= count / 2,
        "{files} files: spans were not cut at 2 open files"
    );
    let _ = std::fs::remove_dir_all(lake);
}

/// The lake, started.
fn spawn_lake(topics: &Topics, lake: &str, flags: &[&str]) -> Reaped {
    let (mut command, _) = lake_command(topics, lake, flags);
    Reaped(command.spawn().expect("start lake"))
}

/// A zombie: an instance paused (SIGSTOP) past its session timeout while it held a span of
/// every partition, whose partitions a second instance took over, cut differently and wrote.
/// Woken, the first finds each span's first offset claimed otherwise and writes none of it:
/// every transaction is in the lake once, before and after both stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_instance_woken_after_a_takeover_writes_nothing_twice() {
    let topics = fresh_topics("lake-zombie");
    let first = generate(&topics, 20, 1_500, 26).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    // Its spans are cut by time only, 20 s after their first row: long enough to be held
    // across the pause, short enough to come due once it is woken.
    let (mut command, zombie_port) =
        lake_command(&topics, &lake_url, &["--flush-interval-ms", "20000"]);
    let mut zombie = Reaped(command.spawn().expect("start the first lake"));
    wait_until(
        "the first lake to take every transaction",
        Duration::from_secs(60),
        || async { committed(&topics) == 1_500 },
    )
    .await;
    send_signal(zombie.id(), "-STOP");
    assert_eq!(parquet_files(&lake), 0, "the first lake holds its spans");
    // More rows after the pause: the second lake's spans run past where the first one's end.
    let second = generate(&topics, 20, 1_500, 27).await;
    let (mut command, _) = lake_command(&topics, &lake_url, &["--flush-interval-ms", "300"]);
    let mut survivor = Reaped(command.spawn().expect("start the second lake"));
    let store = store_of(&lake_url, &[]);
    wait_until(
        "the second lake to cover both topics",
        Duration::from_secs(120),
        || async { covers(&store, &topics).await },
    )
    .await;
    send_signal(zombie.id(), "-CONT");
    wait_until(
        "the woken lake to find its spans claimed",
        Duration::from_secs(90),
        || async {
            port_metric(zombie_port, "bank_lake_spans_taken_total")
                .await
                .is_some_and(|taken| taken >= 1.0)
        },
    )
    .await;
    let mut expected = expected_sums(&first);
    for (account, (count, sum)) in expected_sums(&second) {
        let entry = expected.entry(account).or_default();
        entry.0 += count;
        entry.1 += sum;
    }
    exactly_once(&lake_url, 3_000, &expected);
    terminate(&mut zombie);
    terminate(&mut survivor);
    exactly_once(&lake_url, 3_000, &expected);
    let _ = std::fs::remove_dir_all(&lake);
}

/// The owner of a partition stopped in the middle of a span it had claimed (here: that span's
/// later parts and everything after it removed, as if it had died there). The next run, whose
/// limits would cut elsewhere, writes that span exactly as claimed, the same files, before
/// going on: every transaction once.
#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_span_left_unfinished_is_completed_as_claimed() {
    let topics = fresh_topics("lake-claimed");
    let manifest = generate(&topics, 20, 3_000, 28).await;
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let store = store_of(&lake_url, &[]);
    let run = |flags: &'static [&'static str]| {
        let (mut command, port) = lake_command(&topics, &lake_url, flags);
        (Reaped(command.spawn().expect("start lake")), port)
    };
    let (mut first, _) = run(&[
        "--flush-records",
        "200",
        "--max-open-files",
        "1",
        "--flush-interval-ms",
        "300",
    ]);
    wait_until(
        "the lake to cover both topics",
        Duration::from_secs(120),
        || async { covers(&store, &topics).await },
    )
    .await;
    terminate(&mut first);

    let mut spans: Vec<(String, consumer::lake::layout::Span)> = store
        .files(Table::Transactions)
        .await
        .expect("the listing")
        .into_iter()
        .filter(|(_, s)| s.partition == 0)
        .collect();
    spans.sort_by_key(|(_, s)| (s.first, s.part));
    let firsts: std::collections::BTreeSet<i64> = spans.iter().map(|(_, s)| s.first).collect();
    assert!(firsts.len() >= 3, "small spans: {firsts:?}");
    let cut = *firsts.iter().nth(firsts.len() / 2).expect("a middle span");
    let claims = lake.join(format!("_spans/transactions/{}.p0", topics.transactions));
    let claimed = std::fs::read_to_string(claims.join(format!("{cut:020}"))).expect("its claim");
    for (path, span) in &spans {
        if span.first > cut || (span.first == cut && span.part > 1) {
            std::fs::remove_file(lake.join(path)).expect("a file removed");
        }
    }
    for claim in std::fs::read_dir(&claims).expect("the claims") {
        let claim = claim.expect("a claim").path();
        let first: i64 = claim
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("a claim's name is its first offset");
        if first > cut {
            std::fs::remove_file(claim).expect("a later claim removed");
        }
    }

    let (mut second, _) = run(&["--flush-records", "100000", "--flush-interval-ms", "300"]);
    wait_until(
        "the lake to cover both topics again",
        Duration::from_secs(120),
        || async { covers(&store, &topics).await },
    )
    .await;
    terminate(&mut second);
    for path in claimed.lines().skip(1) {
        assert!(lake.join(path).exists(), "{path} of the claimed span");
    }
    exactly_once(&lake_url, 3_000, &expected_sums(&manifest));
    let _ = std::fs::remove_dir_all(&lake);
}

/// Poison at the end of a partition, after its last span: a clean stop claims those offsets
/// without files, so the next run neither reads nor dead-letters them again.
#[tokio::test(flavor = "multi_thread")]
async fn poison_at_the_end_is_dead_lettered_once_across_restarts() {
    let topics = fresh_topics("lake-poison");
    let producer = RawProducer::new(&topics).await;
    producer.customer(&customer("ACC-1")).await;
    for cents in 1..=10 {
        producer.transaction(&transaction("ACC-1", cents)).await;
    }
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let run = || spawn_lake(&topics, &lake_url, &["--flush-interval-ms", "300"]);
    let mut first = run();
    wait_until(
        "the valid rows written",
        Duration::from_secs(60),
        || async { parquet_files(&lake.join("transactions")) >= 1 },
    )
    .await;
    for _ in 0..3 {
        producer
            .raw(&topics.transactions, "ACC-1", b"not a framed event")
            .await;
    }
    let dead = format!("{}.dlq", topics.transactions);
    wait_until(
        "the poison read and dead-lettered",
        Duration::from_secs(60),
        || async { committed(&topics) == 13 && committed_end(&dead) == 3 },
    )
    .await;
    terminate(&mut first);

    // One more valid event: once the next run has taken it, it has read whatever it re-reads.
    producer.transaction(&transaction("ACC-1", 11)).await;
    let mut second = run();
    wait_until(
        "the next run past the new event",
        Duration::from_secs(60),
        || async { committed(&topics) == 14 },
    )
    .await;
    terminate(&mut second);
    assert_eq!(committed_end(&dead), 3, "the poison dead-lettered once");
    let found = check(&lake_url, &[]);
    assert_eq!(
        (found["rows"].as_u64(), found["distinct"].as_u64()),
        (Some(11), Some(11)),
        "{found}"
    );
    let _ = std::fs::remove_dir_all(&lake);
}

/// A partition whose records so far were all poison has no file to resume from: its claim
/// without files is found by listing the partition's claims, so the next run does not
/// dead-letter those records again either.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_of_poison_only_is_dead_lettered_once_across_restarts() {
    let topics = fresh_topics("lake-poison-only");
    let producer = RawProducer::new(&topics).await;
    producer.customer(&customer("ACC-1")).await;
    for _ in 0..3 {
        producer
            .raw(&topics.transactions, "ACC-1", b"not a framed event")
            .await;
    }
    let lake = std::env::temp_dir().join(format!("lake-{}", topics.group));
    let lake_url = lake.display().to_string();
    let run = || spawn_lake(&topics, &lake_url, &["--flush-interval-ms", "300"]);
    let dead = format!("{}.dlq", topics.transactions);
    let mut first = run();
    wait_until(
        "the poison dead-lettered",
        Duration::from_secs(60),
        || async { committed(&topics) == 3 && committed_end(&dead) == 3 },
    )
    .await;
    terminate(&mut first);
    assert_eq!(parquet_files(&lake.join("transactions")), 0);

    producer.transaction(&transaction("ACC-1", 5)).await;
    let mut second = run();
    wait_until(
        "the next run past the new event",
        Duration::from_secs(60),
        || async { committed(&topics) == 4 },
    )
    .await;
    terminate(&mut second);
    assert_eq!(committed_end(&dead), 3, "the poison dead-lettered once");
    let found = check(&lake_url, &[]);
    assert_eq!(found["rows"].as_u64(), Some(1), "{found}");
    let _ = std::fs::remove_dir_all(&lake);
}
