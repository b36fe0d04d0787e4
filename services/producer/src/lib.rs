//! The producer: turns bank activity into `Customer` and `Transaction` events on Kafka, framed
//! in the Confluent protobuf wire format with schemas registered in the registry.

pub mod cli;
pub mod sample;

/// Runs the subcommand the user asked for.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Sample(args) => sample::run(args).await,
    }
}
