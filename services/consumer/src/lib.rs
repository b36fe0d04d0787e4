//! The consumer roles. Each reads as: parse config -> build clients -> run the pipeline ->
//! drain and shut down.
//!
//! - [`ledger`]: the exactly-once ledger (the heart of the project);
//! - [`dump`]: decoded events on stdout; [`migrate`]: the database schema alone;
//! - shared by every role: [`source`] (the Kafka thread), [`pipeline`] (batching, decoding,
//!   dead letters, retries), [`dead_letter`], [`http`], [`health`], [`metrics`];
//! - [`tuple_log`]: the `(account_number, sum(amount))` lines.

pub mod cli;
pub mod dead_letter;
pub mod dump;
pub mod health;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod source;
pub mod tuple_log;

/// Runs the subcommand the user asked for.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Ledger(args) => ledger::run(*args).await,
        cli::Command::Dump(args) => dump::run(*args).await,
        cli::Command::Migrate(args) => migrate::run(args).await,
        cli::Command::Healthcheck(args) => http::check(&args).await,
    }
}
