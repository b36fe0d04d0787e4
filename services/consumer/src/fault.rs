//! Fault injection for the failure-policy tests, in debug builds only (release builds compile
//! these to nothing). A test sets an environment variable on a spawned `consumer` process:
//!
//! - `BANKSTREAM_FAULT_WRITER_PANIC=N`: the N-th batch a ledger writer applies panics;
//! - `BANKSTREAM_FAULT_OFFSET_LOAD_FAILURES=N`: the first N reads of stored offsets fail, as
//!   with a database that is down at assignment.
//!
//! Real failures of these kinds are rare and timing-dependent; injecting them is the only way
//! to prove, every run, what the process does when they happen.

#[cfg(debug_assertions)]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};

    static BATCHES: AtomicU64 = AtomicU64::new(0);
    static OFFSET_LOADS: AtomicU64 = AtomicU64::new(0);

    fn setting(name: &str) -> Option<u64> {
        std::env::var(name).ok()?.parse().ok()
    }

    pub fn writer_panic_point() {
        let batch = BATCHES.fetch_add(1, Ordering::SeqCst) + 1;
        if setting("BANKSTREAM_FAULT_WRITER_PANIC") == Some(batch) {
            panic!("injected fault: writer panic at batch {batch}");
        }
    }

    pub fn offsets_failure_point() -> anyhow::Result<()> {
        let load = OFFSET_LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        match setting("BANKSTREAM_FAULT_OFFSET_LOAD_FAILURES") {
            Some(failures) if load <= failures => {
                anyhow::bail!("injected fault: offset load {load} of {failures} failing")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(debug_assertions)]
pub use enabled::{offsets_failure_point, writer_panic_point};

#[cfg(not(debug_assertions))]
pub fn writer_panic_point() {}

#[cfg(not(debug_assertions))]
pub fn offsets_failure_point() -> anyhow::Result<()> {
    Ok(())
}
