//! The end of a run: summary on stderr, manifest on disk, exit status from what was delivered.

use std::path::Path;

use anyhow::bail;

use crate::publisher::Publisher;

/// Prints the summary, writes the manifest if asked, and fails the run if anything was not
/// delivered.
pub fn finish(publisher: &Publisher, manifest_path: Option<&Path>) -> anyhow::Result<()> {
    let customers = publisher.customer_summary();
    let transactions = publisher.transaction_summary();
    eprintln!(
        "summary: customers sent {} delivered {} failed {}; transactions sent {} delivered {} failed {}",
        customers.sent,
        customers.delivered,
        customers.failed,
        transactions.sent,
        transactions.delivered,
        transactions.failed
    );
    if let Some(path) = manifest_path {
        publisher.manifest().write(path)?;
        eprintln!("manifest written to {}", path.display());
    }
    let failed = customers.failed + transactions.failed;
    let unacknowledged = (customers.sent + transactions.sent)
        .saturating_sub(customers.delivered + transactions.delivered + failed);
    if failed > 0 || unacknowledged > 0 {
        bail!(
            "{failed} events failed and {unacknowledged} were not acknowledged; first error: {}",
            publisher
                .first_error()
                .unwrap_or_else(|| "none reported".into())
        );
    }
    Ok(())
}
