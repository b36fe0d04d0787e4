//! `consumer reconcile`: compares the ledger database with a producer manifest (the expected
//! `sum(amount)` of every account) and prints one row per account. Exit status 0 only if every
//! account matches: the check behind `make demo`, and a tool for any replay or migration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bank_contract::money::format_cents;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::cli::ReconcileArgs;

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading manifest {}", args.manifest.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing manifest {}", args.manifest.display()))?;
    let expected: BTreeMap<String, (i64, i64)> = manifest["accounts"]
        .as_object()
        .context("the manifest has no \"accounts\" object")?
        .iter()
        .map(|(account, totals)| {
            let count = totals["transactions"].as_i64().unwrap_or(0);
            let cents = totals["sum_cents"].as_i64().unwrap_or(0);
            (account.clone(), (count, cents))
        })
        .collect();
    let total: i64 = expected.values().map(|(n, _)| n).sum();

    let db = bank_storage::connect(&args.database.url, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let persisted = loop {
        // Until the deadline, a missing table only means the ledger has not started yet.
        match balances(&db, &expected).await {
            Ok(persisted) => {
                let done: i64 = persisted.values().map(|(n, _)| n).sum();
                if done >= total || Instant::now() >= deadline {
                    break persisted;
                }
            }
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!(
        "{:<16} {:>14} {:>14} {:>8}  match",
        "account", "expected", "persisted", "count"
    );
    let mut differ = 0;
    for (account, (count, cents)) in &expected {
        let (got_count, got_cents) = persisted.get(account).copied().unwrap_or((0, 0));
        let ok = got_count == *count && got_cents == *cents;
        differ += usize::from(!ok);
        println!(
            "{account:<16} {:>14} {:>14} {:>8}  {}",
            format_cents(*cents),
            format_cents(got_cents),
            format!("{got_count}/{count}"),
            if ok { "ok" } else { "DIFFERS" }
        );
    }
    println!(
        "{} accounts: {} match, {differ} differ",
        expected.len(),
        expected.len() - differ
    );
    db.close().await?;
    anyhow::ensure!(differ == 0, "{differ} accounts differ from the manifest");
    Ok(())
}

/// `(transaction_count, balance_cents)` of the given accounts.
async fn balances(
    db: &DatabaseConnection,
    accounts: &BTreeMap<String, (i64, i64)>,
) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT account_number, transaction_count, balance_cents FROM accounts",
        ))
        .await
        .context("reading balances (has the ledger run its migrations?)")?;
    let mut found = BTreeMap::new();
    for row in rows {
        let account: String = row.try_get("", "account_number")?;
        if accounts.contains_key(&account) {
            found.insert(
                account,
                (
                    row.try_get("", "transaction_count")?,
                    row.try_get("", "balance_cents")?,
                ),
            );
        }
    }
    Ok(found)
}
