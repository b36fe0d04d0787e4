//! `producer generate`: synthetic customers first, then transactions on their accounts.

use std::time::Duration;

use anyhow::Context;
use bank_plumbing::shutdown::Stop;

use crate::cli::GenerateArgs;
use crate::output::Output;
use crate::pacing::Pacer;
use crate::publisher::Publisher;
use crate::report;
use crate::synthetic::Generator;

/// Bound on the wait for acknowledgements at the end of a phase.
const FLUSH_LIMIT: Duration = Duration::from_secs(120);

pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if let Some(url) = args.into_database.clone() {
        return crate::into_database::run(args, &url).await;
    }
    let config = args.generator_config();
    tracing::info!(
        seed = config.seed,
        customers = config.customers,
        branches = config.branches,
        "generating (rerun with --seed {} to reproduce)",
        config.seed
    );
    let stop = Stop::new();
    // Before the registry and Kafka are reached: a stop while they are slow to answer exits 0.
    stop.on_signal();
    let publisher = tokio::select! {
        publisher = Publisher::connect(&args.destination, &args.layout) => publisher?,
        () = stop.requested() => {
            tracing::info!("stop requested before the registry and Kafka answered");
            return Ok(());
        }
    };
    let pace = args.pace();
    let count = (!args.continuous).then_some(args.count);
    let total = count.map(|n| n + u64::from(config.customers));
    let silent = args.silent;

    let publisher = tokio::task::spawn_blocking(move || -> anyhow::Result<Publisher> {
        let mut publisher = publisher;
        let mut generator = Generator::new(&config);
        let mut output = Output::new(silent, total);
        for customer in generator.customers() {
            publisher.publish_customer(customer)?;
            output.customer(customer);
        }
        // Every Customer is acknowledged before the first Transaction goes out.
        publisher.flush(FLUSH_LIMIT).context("delivering the customers")?;

        let mut pacer = Pacer::new(pace, config.seed);
        let mut sent = 0u64;
        let started = std::time::Instant::now();
        while count.is_none_or(|n| sent < n) && pacer.wait(&stop) {
            let tx = generator.next_transaction();
            publisher.publish_transaction(&tx)?;
            output.transaction(&tx);
            sent += 1;
        }
        if stop.is_requested() {
            tracing::info!(sent, "stopping: flushing what is in flight");
        }
        let flushed = publisher.flush(FLUSH_LIMIT);
        output.finish();
        flushed?;
        let elapsed = started.elapsed().as_secs_f64();
        // One parseable line for benchmarks: transactions acknowledged over the send phase.
        eprintln!(
            "throughput: {sent} transactions acknowledged in {elapsed:.3} s = {:.0} transactions/s, average value {} bytes",
            sent as f64 / elapsed.max(1e-9),
            publisher.average_transaction_bytes()
        );
        Ok(publisher)
    })
    .await
    .context("the send loop panicked")??;

    report::finish(&publisher, args.manifest.as_deref())
}
