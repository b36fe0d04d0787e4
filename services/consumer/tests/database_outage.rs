//! The database stops mid-stream and comes back: the ledger reports not-ready, retries with a
//! bounded backoff, stays in its group, then catches up; the final state equals the manifest.
//! Stops and starts the native stack's PostgreSQL cluster, so it is a test binary of its own
//! (cargo runs test binaries one at a time).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// `pg_ctlcluster` arguments of the cluster behind the tests' database.
fn cluster() -> (String, String) {
    let name = std::env::var("PG_CLUSTER").unwrap_or_else(|_| "bankstream".into());
    let listing = Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect("pg_lsclusters (run make stack-up)");
    let version = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find_map(|line| {
            let fields: Vec<_> = line.split_whitespace().collect();
            (fields.get(1) == Some(&name.as_str())).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| panic!("no PostgreSQL cluster named {name}"));
    (version, name)
}

fn pg_ctl(action: &str) {
    let (version, name) = cluster();
    let status = Command::new("pg_ctlcluster")
        .args([version.as_str(), name.as_str(), action])
        .args(if action == "stop" {
            &["-m", "fast"][..]
        } else {
            &[][..]
        })
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Starts the cluster again however the test ends.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let (version, name) = cluster();
        let _ = Command::new("pg_ctlcluster")
            .args([version.as_str(), name.as_str(), "start"])
            .status();
    }
}

#[tokio::test]
async fn the_ledger_survives_a_database_outage() {
    let topics = fresh_topics("outage");
    let database_url = fresh_postgres("ledger_outage").await;
    let total = 6_000;
    let manifest = generate(&topics, 100, total, 5).await;
    let ledger = spawn_ledger(
        &topics,
        &database_url,
        &["--batch-size", "100", "--no-tuple-log"],
    )
    .await;
    let db = connect(&database_url).await;
    wait_until("ingestion under way", Duration::from_secs(60), || async {
        count(&db, "transactions").await >= 500
    })
    .await;

    let _guard = RestartOnDrop;
    pg_ctl("stop");
    wait_until(
        "not ready while the database is down",
        Duration::from_secs(60),
        || async { ledger.get("/readyz").await.0 == 503 },
    )
    .await;
    let retries = || async {
        let (_, body) = ledger.get("/metrics").await;
        body.lines()
            .filter(|l| l.starts_with("bank_retries_total{operation=\"apply\"}"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum::<f64>()
    };
    wait_until(
        "three failed attempts, each retried",
        Duration::from_secs(60),
        || async { retries().await >= 3.0 },
    )
    .await;
    assert!(
        ledger.is_running(),
        "the ledger waits for the database instead of exiting"
    );
    assert_eq!(ledger.get("/healthz").await.0, 200, "alive while not ready");

    pg_ctl("start");
    let db = connect(&database_url).await;
    wait_until(
        "caught up after the outage",
        Duration::from_secs(120),
        || async { count(&db, "transactions").await >= total },
    )
    .await;
    wait_until("ready again", Duration::from_secs(60), || async {
        ledger.get("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 100));
    ledger.stop().await;
}
