//! SIGKILL the ledger process at random points while it ingests, restart it each time: the final
//! database equals the producer's manifest exactly.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

fn start(topics: &Topics, database_url: &str) -> Child {
    let log = std::env::temp_dir().join(format!("{}.tuples", topics.group));
    Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(ledger_args(
            topics,
            database_url,
            &log,
            &["--batch-size", "250"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the ledger binary")
}

#[tokio::test]
async fn sigkill_at_random_points_then_restart_equals_the_manifest() {
    let topics = fresh_topics("crash");
    let database_url = fresh_postgres("ledger_crash").await;
    let total = 8_000;
    let manifest = generate(&topics, 200, total, 11).await;
    let db = connect(&database_url).await;

    // Random kill points, printed so a failing run can be reproduced.
    let seed = uuid::Uuid::new_v4().as_u128() as u64;
    println!("kill-point seed {seed}");
    let mut state = seed | 1;
    let mut next_random = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut kills = 0;
    for _ in 0..5 {
        let before = count(&db, "transactions").await;
        if before >= total {
            break;
        }
        let target = (before + 300 + next_random(1_200)).min(total - 1);
        let mut child = start(&topics, &database_url);
        wait_until(
            "progress before the kill",
            Duration::from_secs(120),
            || async { count(&db, "transactions").await >= target },
        )
        .await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
        println!("killed at >= {target} transactions");
    }
    assert!(
        kills >= 3,
        "the ledger was killed mid-stream at least three times ({kills})"
    );

    let mut child = start(&topics, &database_url);
    wait_until("the whole stream", Duration::from_secs(180), || async {
        count(&db, "transactions").await >= total
    })
    .await;
    wait_until("every offset stored", Duration::from_secs(60), || async {
        let partitions: Vec<_> = (0..3).map(|p| (topics.transactions.clone(), p)).collect();
        let stored = bank_storage::ledger::load_offsets(&db, &topics.group, &partitions)
            .await
            .unwrap();
        stored.values().sum::<i64>() == total as i64
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(ledger_state(&db).await, expected_state(&manifest, 200));
}
