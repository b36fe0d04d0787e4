//! Branches are partitions: with three ledger instances in one group each owns a share of the
//! branches; when one is killed, the others take its branches over with no loss and no duplicate.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn instance(topics: &Topics, database_url: &str, port: u16) -> Reaped {
    let log = std::env::temp_dir().join(format!("{}-{port}.tuples", topics.group));
    let mut args = ledger_args(topics, database_url, &log, &["--batch-size", "200"]);
    let http = args.iter().position(|a| a == "--http-addr").unwrap() + 1;
    args[http] = format!("127.0.0.1:{port}");
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_consumer"))
            .args(args)
            // A killed member's branches move after this timeout (the broker's minimum).
            .args(["--kafka-config", "session.timeout.ms=6000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a ledger instance"),
    )
}

async fn ready(port: u16) -> bool {
    answers(port, "/readyz").await
}

/// Partitions the instance on `port` owns, as its `/metrics` reports them (0 if it is unreachable).
async fn assigned(port: u16) -> u64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let body = response.text().await.unwrap_or_default();
    metric_value(&body, "bank_assigned_partitions").unwrap_or(0.0) as u64
}

#[tokio::test]
async fn three_instances_share_branches_and_survive_losing_one() {
    let topics = fresh_topics("branches");
    let database_url = fresh_postgres("ledger_branches").await;
    // Topics with 3 partitions exist before the instances join.
    let _ = RawProducer::new(&topics).await;
    let ports = [free_port(), free_port(), free_port()];
    let mut instances: Vec<Reaped> = ports
        .iter()
        .map(|p| instance(&topics, &database_url, *p))
        .collect();

    // Ready means "owns at least one partition": all three ready = the branches are split.
    wait_until(
        "every instance owns a branch",
        Duration::from_secs(90),
        || async {
            for port in ports {
                if !ready(port).await {
                    return false;
                }
            }
            true
        },
    )
    .await;

    let db = connect(&database_url).await;
    let total = 6_000;
    let manifest = generate(&topics, 60, total, 21).await;
    wait_until("ingestion under way", Duration::from_secs(90), || async {
        count(&db, "transactions").await >= 500
    })
    .await;
    let mut victim = instances.remove(0);
    victim.kill().expect("SIGKILL one instance");
    victim.wait().unwrap();

    // The victim's branches move to the survivors: between them they own all 6 partitions
    // (3 branches x 2 topics) and each keeps a share. Waited on, not sampled: the group may
    // still be rebalancing when the last row lands, if the victim had finished its branches.
    wait_until(
        "the survivors own every branch",
        Duration::from_secs(90),
        || async {
            let mut owned_by_survivors = 0;
            for port in &ports[1..] {
                let owned = assigned(*port).await;
                if owned == 0 || !ready(*port).await {
                    return false;
                }
                owned_by_survivors += owned;
            }
            owned_by_survivors == 6
        },
    )
    .await;
    wait_until(
        "the survivors finish every branch",
        Duration::from_secs(120),
        || async { count(&db, "transactions").await >= total },
    )
    .await;
    assert_eq!(
        ledger_state(&db).await,
        expected_state(&manifest, 60),
        "no loss, no duplicate"
    );
    for mut child in instances {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
