//! Throwaway databases for tests and benchmarks: a fresh, uniquely named PostgreSQL database
//! (created through the URL's own server) or SQLite file, so runs never see each other's rows.

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Which server a throwaway database lives on.
#[derive(Clone, Copy, Debug)]
pub enum Scratch {
    Sqlite,
    Postgres,
}

/// A fresh database of `kind`, connected with `pool` connections and migrated: what the storage
/// tests start from. SQLite gets one connection whatever `pool` says (one writer per file).
pub async fn migrated(
    kind: Scratch,
    prefix: &str,
    pool: u32,
) -> anyhow::Result<DatabaseConnection> {
    let (url, pool) = match kind {
        Scratch::Sqlite => (fresh_sqlite(prefix), 1),
        Scratch::Postgres => (
            fresh_postgres(&postgres_base_url(), prefix)
                .await
                .context("the PostgreSQL of the native stack (make stack-up) or DATABASE_URL")?,
            pool,
        ),
    };
    let db = crate::connect(&url, pool).await?;
    crate::migration::run(&db).await?;
    Ok(db)
}

/// The PostgreSQL server tests use: `DATABASE_URL` if it names one, else the native dev stack's.
pub fn postgres_base_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => "postgres://bank:bank@127.0.0.1:5432/bank".to_owned(),
    }
}

/// Creates an empty database named `<prefix>_<random>` on the server of `base_url` and returns
/// its URL.
pub async fn fresh_postgres(base_url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", uuid_like());
    let admin = Database::connect(base_url).await.with_context(|| {
        format!(
            "cannot reach PostgreSQL at {}",
            crate::connect::redact(base_url)
        )
    })?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    admin.close().await?;
    let (server, _) = base_url
        .rsplit_once('/')
        .context("DATABASE_URL has no database name")?;
    Ok(format!("{server}/{name}"))
}

/// A SQLite URL for a new file in the system temp directory.
pub fn fresh_sqlite(prefix: &str) -> String {
    let path = std::env::temp_dir().join(format!("{prefix}_{}.db", uuid_like()));
    format!("sqlite://{}", path.display())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}
