//! `consumer migrate`: bring the database schema up to date and exit (for an init container or
//! a deploy step that runs before the consumers).

use crate::cli::MigrateArgs;

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let db = bank_storage::connect(&args.database.url, 1).await?;
    bank_storage::migration::run(&db).await?;
    tracing::info!(
        database = %bank_storage::connect::redact(&args.database.url),
        "database schema is up to date"
    );
    db.close().await?;
    Ok(())
}
