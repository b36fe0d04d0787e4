//! The analytics roles' checkpoints on both backends: state and offsets round-trip, a stale
//! writer is fenced and writes nothing, an id counted meanwhile by another writer refuses the
//! whole checkpoint, and counted ids are answered from the database.

use std::collections::BTreeMap;

use bank_storage::checkpoint::{Checkpoint, Checkpoints, StateEntry, Stored};
use bank_storage::ledger::{ApplyError, OffsetSpan};
use bank_storage::scratch::{self, Scratch};
use sea_orm::DatabaseConnection;

async fn sqlite() -> DatabaseConnection {
    scratch::migrated(Scratch::Sqlite, "bank_checkpoint", 1)
        .await
        .unwrap()
}

async fn postgres() -> DatabaseConnection {
    scratch::migrated(Scratch::Postgres, "bank_checkpoint", 2)
        .await
        .unwrap()
}

fn entry(partition: i32, key: &str, value: &str) -> StateEntry {
    StateEntry {
        topic: "tx".into(),
        partition,
        key: key.into(),
        value: value.into(),
    }
}

fn span(partition: i32, expected: Option<i64>, next: i64) -> BTreeMap<(String, i32), OffsetSpan> {
    BTreeMap::from([(("tx".to_owned(), partition), OffsetSpan { expected, next })])
}

async fn round_trip_fencing_and_contention(db: DatabaseConnection) {
    let book = Checkpoints::new("bank-summary");
    let ids: Vec<uuid::Uuid> = (0..7_000).map(|_| uuid::Uuid::new_v4()).collect();
    book.commit(
        &db,
        &Checkpoint {
            offsets: span(0, None, 10),
            counted: ids[..6_000].to_vec(),
            entries: vec![entry(0, "A", "-500"), entry(0, "B", "7")],
        },
    )
    .await
    .unwrap();
    book.commit(
        &db,
        &Checkpoint {
            offsets: span(0, Some(10), 12),
            counted: vec![ids[6_000]],
            entries: vec![entry(0, "A", "-400")],
        },
    )
    .await
    .unwrap();
    let mut stored = book.load(&db, "tx", 0).await.unwrap();
    stored.entries.sort();
    assert_eq!(
        stored,
        Stored {
            next: Some(12),
            entries: vec![("A".into(), "-400".into()), ("B".into(), "7".into())],
        }
    );
    assert_eq!(book.load(&db, "tx", 1).await.unwrap(), Stored::default());
    assert_eq!(book.load_all(&db).await.unwrap().len(), 1);
    let counted = book.counted(&db, &ids).await.unwrap();
    assert_eq!(counted.len(), 6_001, "answered across chunks");
    assert!(!counted.contains(&ids[6_999]));
    // Another group counts on its own.
    let other = Checkpoints::new("bank-limits");
    assert!(other.counted(&db, &ids).await.unwrap().is_empty());

    // A former owner continuing from offset 10 is fenced and writes nothing.
    let stale = book
        .commit(
            &db,
            &Checkpoint {
                offsets: span(0, Some(10), 11),
                counted: vec![ids[6_999]],
                entries: vec![entry(0, "A", "1")],
            },
        )
        .await;
    assert!(matches!(stale, Err(ApplyError::Fenced { .. })), "{stale:?}");
    // Counting an id counted meanwhile refuses everything, offsets included.
    let contended = book
        .commit(
            &db,
            &Checkpoint {
                offsets: span(0, Some(12), 13),
                counted: vec![ids[6_999], ids[0]],
                entries: vec![entry(0, "A", "2")],
            },
        )
        .await;
    assert!(
        matches!(&contended, Err(e @ ApplyError::Contended(_)) if e.is_transient()),
        "{contended:?}"
    );
    let mut after = book.load(&db, "tx", 0).await.unwrap();
    after.entries.sort();
    assert_eq!(after, stored);
    assert!(
        !book
            .counted(&db, &ids[6_999..])
            .await
            .unwrap()
            .contains(&ids[6_999])
    );
}

#[tokio::test]
async fn sqlite_checkpoints_round_trip_and_fence() {
    round_trip_fencing_and_contention(sqlite().await).await;
}

#[tokio::test]
async fn postgres_checkpoints_round_trip_and_fence() {
    round_trip_fencing_and_contention(postgres().await).await;
}
