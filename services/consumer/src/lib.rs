//! The consumer roles. Each reads as: parse config -> build clients -> run the pipeline ->
//! drain and shut down.
//!
//! - [`ledger`]: the exactly-once ledger (the heart of the project);
//! - [`summary`]: running statistics ([`statistics`]); [`limits`]: the overdraft watcher
//!   ([`overdraft`]); both hold their state per partition and checkpoint it with its offsets
//!   ([`checkpoint`]);
//! - [`role`]: what every role shares once its sink is built;
//! - [`lake`]: Parquet files in a directory or S3, exactly once;
//! - [`dump`]: decoded events on stdout; [`view`]: a streaming view (ksqlDB's `emit changes`); [`migrate`]: the database schema alone;
//!   [`reconcile`]: the ledger against a producer manifest;
//! - shared by every role: [`source`] (the Kafka thread), [`stored_offsets`], [`pipeline`] (batching, decoding,
//!   dead letters, retries), [`dead_letter`], [`http`], [`health`], [`metrics`];
//! - [`tuple_log`]: the `(account_number, sum(amount))` lines;
//! - [`fault`]: fault injection for the failure-policy tests (debug builds only).

pub mod checkpoint;
pub mod cli;
pub mod dead_letter;
pub mod dump;
pub mod fault;
pub mod health;
pub mod http;
pub mod lake;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod overdraft;
pub mod pipeline;
pub mod reconcile;
pub mod role;
pub mod source;
pub mod statistics;
pub mod stored_offsets;
pub mod summary;
pub mod tuple_log;
pub mod view;

/// Runs the subcommand the user asked for.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Ledger(args) => ledger::run(*args).await,
        cli::Command::Summary(args) => summary::run(*args).await,
        cli::Command::Limits(args) => limits::run(*args).await,
        cli::Command::Dump(args) => dump::run(*args).await,
        cli::Command::View(args) => view::run(*args).await,
        cli::Command::Lake(args) => lake::run(*args).await,
        cli::Command::Migrate(args) => migrate::run(args).await,
        cli::Command::Healthcheck(args) => http::check(&args).await,
        cli::Command::Reconcile(args) => reconcile::run(args).await,
    }
}
