//! The consumer: reads `Customer` and `Transaction` events and makes them durable.

pub mod cli;
pub mod dump;
pub mod migrate;

/// Runs the subcommand the user asked for.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Dump(args) => dump::run(*args).await,
        cli::Command::Migrate(args) => migrate::run(args).await,
    }
}
