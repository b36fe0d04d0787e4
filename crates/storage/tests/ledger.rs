//! `Ledger::apply` against both backends: duplicates in a later batch are skipped without
//! moving a balance (PostgreSQL's savepoint fallback), parked transactions are posted when
//! their customer turns up through another writer (and by the timed sweep with no traffic), a
//! stale share is fenced, an older customer version never overwrites a newer one, and awkward
//! text and edge values round-trip through every statement.

use std::collections::BTreeMap;
use std::time::Duration;

use bank_storage::entity::customer;
use bank_storage::ledger::{
    ApplyError, Batch, CustomerRow, Item, Ledger, OffsetSpan, Refusal, TransactionRow,
};
use bank_storage::scratch::{self, Scratch};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set, Statement};

async fn sqlite() -> DatabaseConnection {
    scratch::migrated(Scratch::Sqlite, "bank_ledger", 1)
        .await
        .unwrap()
}

async fn postgres() -> DatabaseConnection {
    scratch::migrated(Scratch::Postgres, "bank_ledger", 2)
        .await
        .unwrap()
}

fn customer(account: &str) -> CustomerRow {
    CustomerRow {
        account_number: account.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        created_at: None,
        branch_id: 1,
        updated_at: None,
        source_partition: 0,
        source_offset: 0,
    }
}

fn deposit(id: &str, account: &str, cents: i64, offset: i64) -> TransactionRow {
    TransactionRow {
        transaction_id: id.into(),
        account_number: account.into(),
        transaction_reference: format!("REF-{id}"),
        transaction_datetime: chrono::DateTime::from_timestamp(1_700_000_000 + offset, 0),
        kind: "DEPOSIT",
        amount_cents: cents,
        currency: "USD".into(),
        branch_id: 1,
        description: String::new(),
        source_partition: 0,
        source_offset: offset,
    }
}

/// A batch of partition 0 that continues from `expected` (None: nothing stored yet) up to
/// `next`; an empty one covers no offsets.
fn batch(
    customers: &[&str],
    transactions: Vec<TransactionRow>,
    expected: Option<i64>,
    next: i64,
) -> Batch {
    let covers = !(customers.is_empty() && transactions.is_empty());
    Batch {
        customers: customers.iter().map(|a| customer(a)).collect(),
        transactions,
        offsets: if covers {
            BTreeMap::from([(
                ("bank.transactions".to_owned(), 0),
                OffsetSpan { expected, next },
            )])
        } else {
            BTreeMap::new()
        },
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
        version_micros: Set(i64::MIN),
        source_partition: Set(-1),
        source_offset: Set(-1),
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
    let first = batch(&["A"], vec![deposit("t1", "A", 100, 0), undated], None, 2);
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
        Some(2),
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
    let replay = batch(&[], vec![deposit("t2", "A", 20, 1)], Some(5), 6);
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
        .apply(&db, &batch(&[], vec![deposit("p1", "B", 7, 0)], None, 1))
        .await
        .unwrap();
    assert_eq!(applied.parked, 1);
    // The other writer's customer, committed after its own look at the parking lot.
    committed_by_another_writer(&db, "B").await;

    // The next transaction of that account: the parked one posts first, in order.
    let applied = writer
        .apply(&db, &batch(&[], vec![deposit("p2", "B", 5, 1)], Some(1), 2))
        .await
        .unwrap();
    assert_eq!(posted_ids(&applied), ["p1", "p2"]);
    assert!(applied.posted[0].was_parked);
    assert_eq!(applied.posted[1].balance_after_cents, 12);

    // An account with no further transaction is found by the periodic sweep.
    writer
        .apply(&db, &batch(&[], vec![deposit("q1", "C", 9, 2)], Some(2), 3))
        .await
        .unwrap();
    committed_by_another_writer(&db, "C").await;
    let applied = writer
        .apply(&db, &batch(&[], vec![], None, 3))
        .await
        .unwrap();
    assert!(applied.posted.is_empty(), "not swept before its time");
    // With no traffic at all, the writer's timer calls the sweep.
    let applied = writer.sweep(&db).await.unwrap();
    assert_eq!(posted_ids(&applied), ["q1"]);
    assert_eq!(applied.posted[0].balance_after_cents, 9);
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM parked_transactions").await,
        0
    );
}

/// Compare-and-set on the stored offset: a share continuing from anything but what is stored
/// writes nothing at all, rows included; the current owner goes on.
async fn stale_shares_are_fenced(db: DatabaseConnection) {
    let mut owner = Ledger::new("g");
    owner
        .apply(
            &db,
            &batch(&["F"], vec![deposit("f1", "F", 10, 0)], None, 1),
        )
        .await
        .unwrap();
    // A former owner, paused before the row above was written, still thinks nothing is stored.
    let mut former = Ledger::new("g");
    let late = batch(
        &["G"],
        vec![deposit("f1", "F", 10, 0), deposit("g1", "F", 99, 1)],
        None,
        2,
    );
    let error = former.apply(&db, &late).await.unwrap_err();
    assert!(
        matches!(
            error,
            ApplyError::Fenced {
                found: Some(1),
                expected: None,
                ..
            }
        ),
        "{error}"
    );
    // A share that overlaps (continues from 0 when 1 is stored) or leaves a gap (from 5).
    for expected in [0, 5] {
        let stale = batch(
            &[],
            vec![deposit("g2", "F", 7, expected)],
            Some(expected),
            expected + 1,
        );
        let error = former.apply(&db, &stale).await.unwrap_err();
        assert!(error.is_fenced() && !error.is_transient(), "{error}");
    }
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM transactions").await, 1);
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM customers WHERE account_number = 'G'"
        )
        .await,
        0,
        "a fenced share's customers are rolled back too"
    );
    // The owner's next share continues exactly where it left off.
    owner
        .apply(&db, &batch(&[], vec![deposit("f2", "F", 5, 1)], Some(1), 2))
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &db,
            "SELECT balance_cents FROM accounts WHERE account_number = 'F'"
        )
        .await,
        15
    );
    assert_eq!(
        scalar(&db, "SELECT next_offset FROM consumer_offsets").await,
        2
    );
}

fn version(first_name: &str, updated_secs: Option<i64>, offset: i64) -> CustomerRow {
    CustomerRow {
        first_name: first_name.into(),
        updated_at: updated_secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
        source_offset: offset,
        ..customer("V")
    }
}

async fn stored_first_name(db: &DatabaseConnection) -> String {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT first_name FROM customers WHERE account_number = 'V'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// Newer wins, whatever the order: within a batch, across batches, across groups (a replay
/// into the same database), versioned over unversioned, and by log position when unversioned.
async fn older_customer_versions_never_overwrite(db: DatabaseConnection) {
    let apply = |group: &'static str, customers: Vec<CustomerRow>| {
        let db = db.clone();
        async move {
            Ledger::new(group)
                .apply(
                    &db,
                    &Batch {
                        customers,
                        ..Batch::default()
                    },
                )
                .await
                .unwrap();
        }
    };
    // Unversioned: the later position wins, in either order of arrival.
    apply(
        "g1",
        vec![version("late", None, 9), version("early", None, 3)],
    )
    .await;
    assert_eq!(stored_first_name(&db).await, "late");
    apply("g2", vec![version("early", None, 3)]).await;
    assert_eq!(
        stored_first_name(&db).await,
        "late",
        "a replay of an older event"
    );
    // Any versioned event is newer than unversioned ones; then the newest updated_at wins.
    apply("g3", vec![version("v200", Some(200), 1)]).await;
    assert_eq!(stored_first_name(&db).await, "v200");
    apply(
        "g4",
        vec![
            version("v100", Some(100), 50),
            version("v300", Some(300), 2),
        ],
    )
    .await;
    assert_eq!(stored_first_name(&db).await, "v300");
    apply("g5", vec![version("v250", Some(250), 99)]).await;
    assert_eq!(
        stored_first_name(&db).await,
        "v300",
        "an older version from later in the log"
    );
    // An empty name in a newer version keeps the known one (partial events, e.g. from CSV).
    apply("g6", vec![version("", Some(400), 3)]).await;
    assert_eq!(stored_first_name(&db).await, "v300");
}

/// Applies `batch`; if the ledger refuses events, checks they are `expected` (item, kind),
/// drops them as the writer does after dead-lettering, and applies the rest.
async fn apply_refusing(
    ledger: &mut Ledger,
    db: &DatabaseConnection,
    mut batch: Batch,
    expected: &[(Item, &str)],
) -> Vec<Refusal> {
    match ledger.apply(db, &batch).await {
        Ok(_) => {
            assert!(expected.is_empty(), "expected refusals {expected:?}");
            Vec::new()
        }
        Err(ApplyError::Refused(refused)) => {
            let got: Vec<(Item, &str)> = refused.iter().map(|r| (r.item, r.kind)).collect();
            assert_eq!(got, expected, "{refused:?}");
            let drop: Vec<usize> = refused
                .iter()
                .filter_map(|r| match r.item {
                    Item::Transaction(i) => Some(i),
                    Item::Customer(_) => None,
                })
                .collect();
            let mut index = 0;
            batch.transactions.retain(|_| {
                index += 1;
                !drop.contains(&(index - 1))
            });
            ledger.apply(db, &batch).await.expect("the rest applies");
            refused
        }
        Err(other) => panic!("unexpected {other}"),
    }
}

/// A balance that would leave 64 bits is refused for the one transaction that would overflow
/// it (in the database, or already within the batch), never wrapped; the rest of the batch,
/// offsets included, commits.
async fn overflowing_balances_are_refused_not_wrapped(db: DatabaseConnection) {
    let mut ledger = Ledger::new("g");
    let big = i64::MAX - 10;
    let first = batch(
        &["O"],
        vec![
            deposit("o1", "O", big, 0),
            deposit("o2", "O", 100, 1),
            deposit("o3", "O", 5, 2),
        ],
        None,
        3,
    );
    let refused = apply_refusing(
        &mut ledger,
        &db,
        first,
        &[(Item::Transaction(1), "balance-overflow")],
    )
    .await;
    assert!(
        refused[0].message.contains("O") || refused[0].code.is_some(),
        "{refused:?}"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT balance_cents FROM accounts WHERE account_number = 'O'"
        )
        .await,
        big + 5
    );
    // Within one batch: the sum of two deposits does not fit, whatever the stored balance.
    let second = batch(
        &["P"],
        vec![
            deposit("p1", "P", i64::MAX / 2 + 1, 3),
            deposit("p2", "P", i64::MAX / 2 + 1, 4),
        ],
        Some(3),
        5,
    );
    apply_refusing(
        &mut ledger,
        &db,
        second,
        &[(Item::Transaction(1), "balance-overflow")],
    )
    .await;
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM transactions").await, 3);
    assert_eq!(
        scalar(&db, "SELECT next_offset FROM consumer_offsets").await,
        5
    );
}

/// The same id for another movement of money is refused (in the batch, against the ledger,
/// against the parking lot); an exact redelivery stays a silent duplicate.
async fn conflicting_duplicates_are_refused(db: DatabaseConnection) {
    let mut ledger = Ledger::new("g");
    ledger
        .apply(
            &db,
            &batch(&["D"], vec![deposit("d1", "D", 100, 0)], None, 1),
        )
        .await
        .unwrap();
    let replay = batch(
        &[],
        vec![
            deposit("d1", "D", 100, 1),
            deposit("d1", "D", 999, 2),
            deposit("d2", "D", 7, 3),
            deposit("d2", "D", 8, 4),
            deposit("e1", "E", 5, 5),
            deposit("e1", "E", 6, 6),
        ],
        Some(1),
        7,
    );
    apply_refusing(
        &mut ledger,
        &db,
        replay,
        &[
            (Item::Transaction(1), "conflicting-duplicate"),
            (Item::Transaction(3), "conflicting-duplicate"),
            (Item::Transaction(5), "conflicting-duplicate"),
        ],
    )
    .await;
    assert_eq!(
        scalar(
            &db,
            "SELECT balance_cents FROM accounts WHERE account_number = 'D'"
        )
        .await,
        107
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM parked_transactions").await,
        1
    );
    let later = batch(&[], vec![deposit("e1", "E", 50, 7)], Some(7), 8);
    apply_refusing(
        &mut ledger,
        &db,
        later,
        &[(Item::Transaction(0), "conflicting-duplicate")],
    )
    .await;
}

#[tokio::test]
async fn sqlite_refuses_overflowing_balances() {
    overflowing_balances_are_refused_not_wrapped(sqlite().await).await;
}

#[tokio::test]
async fn postgres_refuses_overflowing_balances() {
    overflowing_balances_are_refused_not_wrapped(postgres().await).await;
}

#[tokio::test]
async fn sqlite_refuses_conflicting_duplicates() {
    conflicting_duplicates_are_refused(sqlite().await).await;
}

#[tokio::test]
async fn postgres_refuses_conflicting_duplicates() {
    conflicting_duplicates_are_refused(postgres().await).await;
}

/// PostgreSQL refuses a NUL in text (SQLSTATE 22021): found by bisection among valid rows, the
/// others commit. (Validation keeps such rows out earlier; this is the net under it.)
#[tokio::test]
async fn postgres_isolates_a_row_it_refuses() {
    let db = postgres().await;
    let mut ledger = Ledger::new("g");
    let mut rows: Vec<TransactionRow> = (0..9)
        .map(|i| deposit(&format!("n{i}"), "N", 10, i))
        .collect();
    rows[6].description = "bad\u{0}byte".into();
    let refused = apply_refusing(
        &mut ledger,
        &db,
        batch(&["N"], rows, None, 9),
        &[(Item::Transaction(6), "database-rejected")],
    )
    .await;
    assert_eq!(refused[0].code.as_deref(), Some("22021"), "{refused:?}");
    assert_eq!(
        scalar(
            &db,
            "SELECT balance_cents FROM accounts WHERE account_number = 'N'"
        )
        .await,
        80
    );
    assert_eq!(
        scalar(&db, "SELECT next_offset FROM consumer_offsets").await,
        9
    );
}

#[tokio::test]
async fn sqlite_fences_stale_shares() {
    stale_shares_are_fenced(sqlite().await).await;
}

#[tokio::test]
async fn postgres_fences_stale_shares() {
    stale_shares_are_fenced(postgres().await).await;
}

#[tokio::test]
async fn sqlite_keeps_the_newest_customer() {
    older_customer_versions_never_overwrite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_keeps_the_newest_customer() {
    older_customer_versions_never_overwrite(postgres().await).await;
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

/// Text that array literals must not reinterpret: quotes, backslashes, braces, commas, the
/// word NULL, outer spaces, tabs and newlines, non-ASCII.
const AWKWARD: [&str; 8] = [
    r#"say "hi""#,
    r"C:\temp\",
    "{a,b}",
    "NULL",
    "  padded  ",
    "tab\there\nnew line\r",
    "é ü 東京 🏦",
    "",
];

/// Every text column but the currency (three characters, left as `USD`) comes back byte for byte, the duplicate path identifies awkward ids
/// exactly, and balances land on awkward account numbers.
async fn awkward_text_round_trips(db: DatabaseConnection) {
    let mut ledger = Ledger::new("g");
    let accounts: Vec<String> = AWKWARD.iter().map(|t| format!("ACC{t}")).collect();
    let rows: Vec<TransactionRow> = AWKWARD
        .iter()
        .zip(&accounts)
        .enumerate()
        .map(|(i, (text, account))| TransactionRow {
            transaction_reference: format!("{text}ref"),
            description: (*text).to_owned(),
            ..deposit(&format!("id{text}"), account, 100 + i as i64, i as i64)
        })
        .collect();
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let n = rows.len() as i64;
    let applied = ledger
        .apply(&db, &batch(&names, rows.clone(), None, n))
        .await
        .unwrap();
    assert_eq!(applied.posted.len(), rows.len());

    // The same ids again, plus one new: only the new one posts (RETURNING names it exactly).
    let mut again = rows.clone();
    for (i, row) in again.iter_mut().enumerate() {
        row.source_offset = n + i as i64;
    }
    let fresh = TransactionRow {
        source_offset: 2 * n,
        ..deposit(r#"new "one""#, &accounts[0], 7, 2 * n)
    };
    again.push(fresh);
    let applied = ledger
        .apply(&db, &batch(&[], again, Some(n), 2 * n + 1))
        .await
        .unwrap();
    assert_eq!(posted_ids(&applied), [r#"new "one""#]);
    assert_eq!(applied.duplicates, rows.len() as u64);

    let stored = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT transaction_id, account_number, transaction_reference, currency, \
                 description FROM transactions WHERE source_offset < {n} ORDER BY source_offset"
            ),
        ))
        .await
        .unwrap();
    let stored: Vec<[String; 5]> = stored
        .iter()
        .map(|r| std::array::from_fn(|i| r.try_get_by_index(i).unwrap()))
        .collect();
    let expected: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.transaction_id.clone(),
                r.account_number.clone(),
                r.transaction_reference.clone(),
                r.currency.clone(),
                r.description.clone(),
            ]
        })
        .collect();
    assert_eq!(stored, expected);
    for (i, account) in accounts.iter().enumerate() {
        let balance = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                match db.get_database_backend() {
                    sea_orm::DbBackend::Postgres => {
                        "SELECT balance_cents FROM accounts WHERE account_number = $1"
                    }
                    _ => "SELECT balance_cents FROM accounts WHERE account_number = ?",
                },
                [account.as_str().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        let fresh = if i == 0 { 7 } else { 0 };
        assert_eq!(balance, 100 + i as i64 + fresh, "balance of {account:?}");
    }
}

#[tokio::test]
async fn sqlite_round_trips_awkward_text() {
    awkward_text_round_trips(sqlite().await).await;
}

#[tokio::test]
async fn postgres_round_trips_awkward_text() {
    awkward_text_round_trips(postgres().await).await;
}

/// Customers with awkward text in every text column, known and unknown creation times at the
/// edges of the range and the extremes of the integer columns come back exactly, and parked
/// transactions on awkward accounts are found again when their customers arrive, through this
/// writer's batch and through another writer's.
async fn customers_round_trip(db: DatabaseConnection) {
    let at = |micros: i64| chrono::DateTime::from_timestamp_micros(micros);
    let created = [
        None,
        at(0),
        at(-62_135_596_800_000_000), // 0001-01-01
        at(253_402_300_799_999_999), // 9999-12-31 23:59:59.999999
        at(946_684_800_000_001),     // just after PostgreSQL's epoch
        None,
        at(1_700_000_000_123_456),
        at(-1),
    ];
    let customers: Vec<CustomerRow> = AWKWARD
        .iter()
        .zip(created)
        .enumerate()
        .map(|(i, (text, created_at))| CustomerRow {
            account_number: format!("C{text}"),
            first_name: format!("{text}first"),
            last_name: format!("last{text}"),
            email: (*text).to_owned(),
            created_at,
            branch_id: [i64::MIN, i64::MAX, 0, -1][i % 4],
            updated_at: None,
            source_partition: [i32::MAX, 0][i % 2],
            source_offset: i as i64,
        })
        .collect();
    // Their transactions come first and are parked, half for a writer that will see the
    // customers itself, half for one that will only find them in the database.
    let deposits = |prefix: &str, cents: i64| -> Vec<TransactionRow> {
        customers
            .iter()
            .enumerate()
            .map(|(i, c)| deposit(&format!("{prefix}{i}"), &c.account_number, cents, i as i64))
            .collect()
    };
    let mut early = Ledger::new("g");
    let rows = deposits("p", 10);
    let n = rows.len() as i64;
    let applied = early.apply(&db, &batch(&[], rows, None, n)).await.unwrap();
    assert_eq!(applied.parked, n as u64);

    let (mine, theirs) = customers.split_at(customers.len() / 2);
    let applied = early
        .apply(
            &db,
            &Batch {
                customers: mine.to_vec(),
                ..batch(&[], Vec::new(), Some(n), n + 1)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        applied.posted.len(),
        mine.len(),
        "unparked with their customers"
    );
    let applied = Ledger::new("other")
        .apply(
            &db,
            &Batch {
                customers: theirs.to_vec(),
                ..Batch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        applied.posted.len(),
        theirs.len(),
        "unparked by another writer"
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM parked_transactions").await,
        0
    );
    // A writer that has seen none of the customers finds them all in the database.
    let applied = Ledger::new("fresh")
        .apply(&db, &batch(&[], deposits("q", 5), None, n))
        .await
        .unwrap();
    assert_eq!((applied.posted.len() as i64, applied.parked), (n, 0));

    let stored = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT account_number, first_name, last_name, email, created_at, branch_id, \
             source_partition, source_offset FROM customers ORDER BY source_offset",
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), customers.len());
    for (row, c) in stored.iter().zip(&customers) {
        let text: [String; 4] = std::array::from_fn(|i| row.try_get_by_index(i).unwrap());
        assert_eq!(
            text,
            [
                c.account_number.clone(),
                c.first_name.clone(),
                c.last_name.clone(),
                c.email.clone()
            ]
        );
        let created: Option<chrono::DateTime<chrono::Utc>> = row.try_get_by_index(4).unwrap();
        assert_eq!(
            created, c.created_at,
            "created_at of {:?}",
            c.account_number
        );
        assert_eq!(row.try_get_by_index::<i64>(5).unwrap(), c.branch_id);
        assert_eq!(row.try_get_by_index::<i32>(6).unwrap(), c.source_partition);
        assert_eq!(row.try_get_by_index::<i64>(7).unwrap(), c.source_offset);
    }
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(SUM(balance_cents) AS BIGINT) FROM accounts"
        )
        .await,
        15 * n
    );
}

#[tokio::test]
async fn sqlite_round_trips_customers() {
    customers_round_trip(sqlite().await).await;
}

#[tokio::test]
async fn postgres_round_trips_customers() {
    customers_round_trip(postgres().await).await;
}
