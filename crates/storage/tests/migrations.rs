//! The migrations create the same working schema on SQLite and on the real PostgreSQL server of
//! the native stack (or `DATABASE_URL`).

use bank_storage::entity::{account, customer, transaction};
use bank_storage::{migration, scratch};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set};

async fn check_schema(db: &DatabaseConnection) {
    migration::run(db).await.expect("migrations apply");
    migration::run(db).await.expect("migrations are idempotent");

    customer::ActiveModel {
        account_number: Set("ACC-1".into()),
        first_name: Set("Ada".into()),
        last_name: Set("Lovelace".into()),
        email: Set("ada@example.com".into()),
        created_at: Set(None),
        branch_id: Set(2),
        version_micros: Set(i64::MIN),
        source_partition: Set(-1),
        source_offset: Set(-1),
    }
    .insert(db)
    .await
    .expect("insert customer");

    let tx = |id: &str, account: &str| transaction::ActiveModel {
        transaction_id: Set(id.into()),
        account_number: Set(account.into()),
        transaction_reference: Set("REF".into()),
        transaction_datetime: Set(Some(chrono::Utc::now())),
        kind: Set("DEPOSIT".into()),
        amount_cents: Set(9_007_199_254_740_993),
        currency: Set("USD".into()),
        branch_id: Set(2),
        description: Set(String::new()),
        source_partition: Set(0),
        source_offset: Set(41),
    };
    tx("t-1", "ACC-1")
        .insert(db)
        .await
        .expect("insert transaction");
    assert!(
        tx("t-1", "ACC-1").insert(db).await.is_err(),
        "transaction_id is the primary key"
    );
    assert!(
        tx("t-2", "NO-SUCH-ACCOUNT").insert(db).await.is_err(),
        "the foreign key to customers holds"
    );

    account::ActiveModel {
        account_number: Set("ACC-1".into()),
        balance_cents: Set(-5),
        transaction_count: Set(1),
    }
    .insert(db)
    .await
    .expect("insert account");

    let stored = transaction::Entity::find_by_id("t-1".to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.amount_cents, 9_007_199_254_740_993,
        "BIGINT cents survive exactly"
    );
    let tables = [
        "customers",
        "transactions",
        "accounts",
        "parked_transactions",
        "consumer_offsets",
    ];
    for table in tables {
        db.execute_unprepared(&format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap_or_else(|e| panic!("table {table} missing: {e}"));
    }
}

#[tokio::test]
async fn migrations_apply_to_sqlite() {
    let url = scratch::fresh_sqlite("bank_migrations");
    let db = bank_storage::connect(&url, 1).await.unwrap();
    check_schema(&db).await;
    db.close().await.unwrap();
    let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
}

#[tokio::test]
async fn migrations_apply_to_postgres() {
    let url = scratch::fresh_postgres(&scratch::postgres_base_url(), "bank_migrations")
        .await
        .expect("the PostgreSQL of the native stack (make stack-up) or DATABASE_URL");
    let db = bank_storage::connect(&url, 2).await.unwrap();
    check_schema(&db).await;
    // Keys compare bytewise (m0002): the cluster's linguistic collation made every index probe
    // on them a strcoll call.
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT table_name || '.' || column_name AS col, collation_name \
             FROM information_schema.columns \
             WHERE column_name IN ('account_number', 'transaction_id') \
             AND data_type IN ('character varying', 'text') \
             AND table_schema = 'public' ORDER BY 1",
        ))
        .await
        .unwrap();
    let collations: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "col").unwrap(),
                r.try_get("", "collation_name").unwrap(),
            )
        })
        .collect();
    assert!(collations.len() >= 6, "{collations:?}");
    for (column, collation) in &collations {
        assert_eq!(collation.as_deref(), Some("C"), "{column} collation");
    }
    db.close().await.unwrap();
}
