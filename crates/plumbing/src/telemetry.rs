//! Logging. One subscriber for every service: human-readable lines by default, JSON lines with
//! `LOG_FORMAT=json` (for log shippers), level filter from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// sqlx logs every statement at INFO and librdkafka is chatty at debug; neither belongs in a
/// default log.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,rdkafka=warn";

/// Installs the global subscriber, writing to stderr so stdout stays for the program's output.
/// Calling it twice is harmless (tests spawn several apps in one process).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Exit code of a process ended by a panic (EX_SOFTWARE: an internal error).
pub const PANIC_EXIT_CODE: i32 = 70;

/// Makes a panic anywhere (any thread, any task) end the process at once with one ERROR line
/// and exit code [`PANIC_EXIT_CODE`]. Without it a panicking tokio task or the Kafka polling
/// thread dies alone and the process lingers, alive but doing nothing, which no supervisor
/// restarts. Binaries call this at start; in-process tests do not.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location,
            message,
            "panic: a bug; exiting with code {PANIC_EXIT_CODE}"
        );
        std::process::exit(PANIC_EXIT_CODE);
    }));
}
