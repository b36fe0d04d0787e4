use clap::Parser;

fn main() -> std::process::ExitCode {
    tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> std::process::ExitCode {
    bank_plumbing::telemetry::init();
    bank_plumbing::telemetry::exit_on_panic();
    let cli = consumer::cli::Cli::parse();
    match consumer::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error.message = %error, error.cause_chain = ?error, "consumer failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Two glibc allocator settings, worth about 35 MiB of peak RSS at full speed in
/// bench-consumer for no measurable throughput:
/// - each thread that allocates gets its own arena (up to 8 per core), and memory freed in one
///   is not reused by another: librdkafka's threads, the async workers and the database
///   connections each kept their own high-water mark;
/// - blocks over 128 KiB are mapped and unmapped on their own, but glibc raises that threshold
///   to the largest block freed so far (up to 32 MiB), so a batch's big buffers (arrays of
///   rows, statement buffers) soon live in the heap and keep it large; a fixed threshold
///   gives them back to the system when they are freed.
///
/// Must run before any thread starts. `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` in the
/// environment still win.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 256 << 10),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
