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
