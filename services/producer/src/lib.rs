//! The producer: turns bank activity into `Customer` and `Transaction` events on Kafka, framed
//! in the Confluent protobuf wire format with schemas registered in the registry.
//!
//! - [`cli`]: flags and environment variables;
//! - [`synthetic`]: the seeded generator of customers and transactions (no I/O);
//! - [`publisher`]: framing, partitioning by branch, delivery accounting;
//! - [`topics`]: creating topics with a partition per branch;
//! - [`generate`], [`ingest`], [`sample`]: the subcommands; [`into_database`]: `generate`
//!   into the [`source_tables`] of a database; [`table`]: a table as a source (JDBC source);
//! - [`pacing`], [`output`], [`manifest`], [`report`]: rate, what the user sees, what was sent.
//!
//! The CSV cleaning rules and row mapping live in `bank-csv` (no I/O), which the fuzz targets
//! build without the rest of the producer.

pub mod cli;
pub mod generate;
pub mod ingest;
pub mod into_database;
pub mod manifest;
pub mod output;
pub mod pacing;
pub mod publisher;
pub mod report;
pub mod sample;
pub mod source_tables;
pub mod synthetic;
pub mod table;
pub mod topics;

/// Runs the subcommand the user asked for.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Sample(args) => sample::run(args).await,
        cli::Command::Generate(args) => generate::run(*args).await,
        cli::Command::Csv(args) => ingest::run(*args).await,
        cli::Command::Table(args) => table::run(*args).await,
    }
}
