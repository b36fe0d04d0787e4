use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bank_plumbing::telemetry::init();
    bank_plumbing::telemetry::exit_on_panic();
    let cli = producer::cli::Cli::parse();
    match producer::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error.message = %error, error.cause_chain = ?error, "producer failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
