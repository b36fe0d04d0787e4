//! `Ledger::apply` against both backends: duplicates in a later batch are skipped without
//! moving a balance (PostgreSQL's savepoint fallback), and parked transactions are posted when
//! their customer turns up through another writer.

use std::collections::BTreeMap;
use std::time::Duration;

use bank_storage::entity::customer;
use bank_storage::ledger::{Batch, CustomerRow, Ledger, TransactionRow};
use bank_storage::{migration, scratch};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set, Statement};

async fn sqlite() -> DatabaseConnection {
    let url = scratch::fresh_sqlite("bank_ledger");
    let db = bank_storage::connect(&url, 1).await.unwrap();
    migration::run(&db).await.unwrap();
    db
}

async fn postgres() -> DatabaseConnection {
    let url = scratch::fresh_postgres(&scratch::postgres_base_url(), "bank_ledger")
        .await
        .expect("the PostgreSQL of the native stack (make stack-up) or DATABASE_URL");
    let db = bank_storage::connect(&url, 2).await.unwrap();
    migration::run(&db).await.unwrap();
    db
}

fn customer(account: &str) -> CustomerRow {
    CustomerRow {
        account_number: account.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        created_at: None,
        branch_id: 1,
    }
}

fn deposit(id: &str, account: &str, cents: i64, offset: i64) -> TransactionRow {
    TransactionRow {
        transaction_id: id.into(),
        account_number: account.into(),
        transaction_reference: format!("REF-{id}"),
        transaction_datetime: chrono::DateTime::from_timestamp(1_700_000_000 + offset, 0),
        kind: "DEPOSIT".into(),
        amount_cents: cents,
        currency: "USD".into(),
        branch_id: 1,
        description: String::new(),
        source_partition: 0,
        source_offset: offset,
    }
}

fn batch(customers: &[&str], transactions: Vec<TransactionRow>, next_offset: i64) -> Batch {
    Batch {
        customers: customers.iter().map(|a| customer(a)).collect(),
        transactions,
        offsets: BTreeMap::from([(("bank.transactions".to_owned(), 0), next_offset)]),
    }
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// Inserts a customer the way another writer's committed batch leaves it: row in place, this
/// writer's cache unaware.
async fn committed_by_another_writer(db: &DatabaseConnection, account: &str) {
    let row = customer(account);
    customer::ActiveModel {
        account_number: Set(row.account_number),
        first_name: Set(row.first_name),
        last_name: Set(row.last_name),
        email: Set(row.email),
        created_at: Set(row.created_at),
        branch_id: Set(row.branch_id),
    }
    .insert(db)
    .await
    .unwrap();
}

fn posted_ids(applied: &bank_storage::ledger::Applied) -> Vec<&str> {
    applied
        .posted
        .iter()
        .map(|p| p.transaction_id.as_str())
        .collect()
}

async fn duplicates_in_a_later_batch_count_once(db: DatabaseConnection) {
    let mut ledger = Ledger::new("g");
    // A transaction without a timestamp is stored with NULL (PostgreSQL cannot take it through
    // the array path).
    let undated = TransactionRow {
        transaction_datetime: None,
        ..deposit("t2", "A", 20, 1)
    };
    let first = batch(&["A"], vec![deposit("t1", "A", 100, 0), undated], 2);
    let applied = ledger.apply(&db, &first).await.unwrap();
    assert_eq!(posted_ids(&applied), ["t1", "t2"]);

    // t1 again between two new ones: the new ones post, t1 is skipped, nothing else changes.
    let second = batch(
        &[],
        vec![
            deposit("t3", "A", 3, 2),
            deposit("t1", "A", 100, 3),
            deposit("t4", "A", 4000, 4),
        ],
        5,
    );
    let applied = ledger.apply(&db, &second).await.unwrap();
    assert_eq!(posted_ids(&applied), ["t3", "t4"]);
    assert_eq!(applied.duplicates, 1);
    assert_eq!(
        applied.posted.last().unwrap().balance_after_cents,
        100 + 20 + 3 + 4000
    );

    // A batch of nothing but duplicates posts nothing and still stores its offset.
    let replay = batch(&[], vec![deposit("t2", "A", 20, 1)], 6);
    let applied = ledger.apply(&db, &replay).await.unwrap();
    assert!(applied.posted.is_empty());
    assert_eq!(applied.duplicates, 1);

    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM transactions").await, 4);
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM transactions WHERE transaction_datetime IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT balance_cents FROM accounts WHERE account_number = 'A'"
        )
        .await,
        4123
    );
    assert_eq!(
        scalar(&db, "SELECT next_offset FROM consumer_offsets").await,
        6
    );
}

/// Writer 1 parks a transaction while writer 2 inserts its customer; neither sees the other's
/// uncommitted row, so the parked row is stranded until someone looks again.
async fn stranded_parked_transactions_are_posted(db: DatabaseConnection) {
    let mut writer = Ledger::new("g").sweep_every(Duration::from_secs(3600));
    let applied = writer
        .apply(&db, &batch(&[], vec![deposit("p1", "B", 7, 0)], 1))
        .await
        .unwrap();
    assert_eq!(applied.parked, 1);
    // The other writer's customer, committed after its own look at the parking lot.
    committed_by_another_writer(&db, "B").await;

    // The next transaction of that account: the parked one posts first, in order.
    let applied = writer
        .apply(&db, &batch(&[], vec![deposit("p2", "B", 5, 1)], 2))
        .await
        .unwrap();
    assert_eq!(posted_ids(&applied), ["p1", "p2"]);
    assert!(applied.posted[0].was_parked);
    assert_eq!(applied.posted[1].balance_after_cents, 12);

    // An account with no further transaction is found by the periodic sweep.
    writer
        .apply(&db, &batch(&[], vec![deposit("q1", "C", 9, 2)], 3))
        .await
        .unwrap();
    committed_by_another_writer(&db, "C").await;
    let applied = writer.apply(&db, &batch(&[], vec![], 3)).await.unwrap();
    assert!(applied.posted.is_empty(), "not swept before its time");
    let mut writer = writer.sweep_every(Duration::ZERO);
    let applied = writer.apply(&db, &batch(&[], vec![], 3)).await.unwrap();
    assert_eq!(posted_ids(&applied), ["q1"]);
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM parked_transactions").await,
        0
    );
}

#[tokio::test]
async fn sqlite_skips_duplicates_in_a_later_batch() {
    duplicates_in_a_later_batch_count_once(sqlite().await).await;
}

#[tokio::test]
async fn postgres_skips_duplicates_in_a_later_batch() {
    duplicates_in_a_later_batch_count_once(postgres().await).await;
}

#[tokio::test]
async fn sqlite_posts_stranded_parked_transactions() {
    stranded_parked_transactions_are_posted(sqlite().await).await;
}

#[tokio::test]
async fn postgres_posts_stranded_parked_transactions() {
    stranded_parked_transactions_are_posted(postgres().await).await;
}
