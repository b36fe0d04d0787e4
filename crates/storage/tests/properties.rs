//! Property: whatever sequence of batches the ledger is given (redeliveries, the same id for
//! another movement, transactions before their customer, customers arriving late), applied the
//! way the writer applies them (refused events dropped, the rest applied again), the ledger ends
//! equal to a plain model: the first accepted version of each id is posted once, every balance
//! is the sum of its posted signed amounts, every count the number of posted rows, and nothing
//! is left parked once every customer has arrived.

use std::collections::{BTreeMap, BTreeSet};

use bank_storage::ledger::{
    ApplyError, Batch, CustomerRow, Item, Ledger, OffsetSpan, TransactionRow,
};
use bank_storage::{migration, scratch};
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

const ACCOUNTS: [&str; 3] = ["A", "B", "C"];

#[derive(Debug, Clone)]
enum Event {
    Customer(usize),
    Transaction {
        id: u8,
        account: usize,
        withdrawal: bool,
        cents: i64,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (0..ACCOUNTS.len()).prop_map(Event::Customer),
        4 => (0u8..8, 0..ACCOUNTS.len(), any::<bool>(), 1i64..1000).prop_map(
            |(id, account, withdrawal, cents)| Event::Transaction { id, account, withdrawal, cents }
        ),
    ]
}

fn row(id: u8, account: usize, withdrawal: bool, cents: i64, offset: i64) -> TransactionRow {
    TransactionRow {
        transaction_id: format!("00000000-0000-4000-8000-0000000000{id:02}"),
        account_number: ACCOUNTS[account].into(),
        transaction_reference: String::new(),
        transaction_datetime: chrono::DateTime::from_timestamp(1_700_000_000, 0),
        kind: if withdrawal { "WITHDRAWAL" } else { "DEPOSIT" },
        amount_cents: cents,
        currency: "USD".into(),
        branch_id: 0,
        description: String::new(),
        source_partition: 0,
        source_offset: offset,
    }
}

fn customer(account: usize, offset: i64) -> CustomerRow {
    CustomerRow {
        account_number: ACCOUNTS[account].into(),
        first_name: "F".into(),
        last_name: "L".into(),
        email: String::new(),
        created_at: None,
        branch_id: 0,
        updated_at: None,
        source_partition: 0,
        source_offset: offset,
    }
}

/// Applies like the writer: refused events are dropped (dead-lettered) and the rest applied.
async fn apply(ledger: &mut Ledger, db: &DatabaseConnection, mut batch: Batch) {
    loop {
        match ledger.apply(db, &batch).await {
            Ok(_) => return,
            Err(ApplyError::Refused(refused)) => {
                let drop: BTreeSet<Item> = refused.iter().map(|r| r.item).collect();
                let mut i = 0;
                batch.transactions.retain(|_| {
                    i += 1;
                    !drop.contains(&Item::Transaction(i - 1))
                });
                let mut i = 0;
                batch.customers.retain(|_| {
                    i += 1;
                    !drop.contains(&Item::Customer(i - 1))
                });
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<(String, String, i64, i64)> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
                r.try_get_by_index(3).unwrap_or(0),
            )
        })
        .collect()
}

async fn run(batches: Vec<Vec<Event>>) {
    let url = scratch::fresh_sqlite("bank_property");
    let db = bank_storage::connect(&url, 1).await.unwrap();
    migration::run(&db).await.unwrap();
    let mut ledger = Ledger::new("g");
    // The model: the first accepted movement of each id, in the order of the log.
    let mut first: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut offset = 0i64;
    let mut stored: Option<i64> = None;
    let mut all = batches;
    all.push(vec![
        Event::Customer(0),
        Event::Customer(1),
        Event::Customer(2),
    ]);
    for events in all {
        let start = offset;
        let mut batch = Batch::default();
        for event in events {
            match event {
                Event::Customer(account) => batch.customers.push(customer(account, offset)),
                Event::Transaction {
                    id,
                    account,
                    withdrawal,
                    cents,
                } => {
                    let tx = row(id, account, withdrawal, cents, offset);
                    let signed = if withdrawal { -cents } else { cents };
                    first
                        .entry(tx.transaction_id.clone())
                        .or_insert((tx.account_number.clone(), signed));
                    batch.transactions.push(tx);
                }
            }
            offset += 1;
        }
        if offset == start {
            continue;
        }
        batch.offsets = BTreeMap::from([(
            ("t".to_owned(), 0),
            OffsetSpan {
                expected: stored,
                next: offset,
            },
        )]);
        stored = Some(offset);
        apply(&mut ledger, &db, batch).await;
    }
    ledger.sweep(&db).await.unwrap();

    let posted = rows(
        &db,
        "SELECT transaction_id, account_number, CASE kind WHEN 'WITHDRAWAL' THEN -amount_cents ELSE amount_cents END, 0 FROM transactions ORDER BY 1",
    )
    .await;
    let expected: Vec<(String, String, i64, i64)> = first
        .iter()
        .map(|(id, (account, signed))| (id.clone(), account.clone(), *signed, 0))
        .collect();
    assert_eq!(
        posted, expected,
        "the first version of every id, posted once"
    );
    let balances = rows(
        &db,
        "SELECT a.account_number, a.account_number, a.balance_cents, a.transaction_count FROM accounts a ORDER BY 1",
    )
    .await;
    for (account, _, balance, count) in balances {
        let mine: Vec<i64> = expected
            .iter()
            .filter(|e| e.1 == account)
            .map(|e| e.2)
            .collect();
        assert_eq!(balance, mine.iter().sum::<i64>(), "balance of {account}");
        assert_eq!(count, mine.len() as i64, "count of {account}");
    }
    let parked = rows(
        &db,
        "SELECT transaction_id, account_number, 0, 0 FROM parked_transactions",
    )
    .await;
    assert!(
        parked.is_empty(),
        "nothing parked once every customer arrived: {parked:?}"
    );
    db.close().await.unwrap();
    let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn any_sequence_of_batches_keeps_the_ledger_exact(
        batches in proptest::collection::vec(proptest::collection::vec(event(), 1..7), 1..7)
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(batches));
    }
}
