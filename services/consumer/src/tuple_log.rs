//! The per-transaction log line of the original tutorial: the tuple
//! `(account_number, sum(amount))`, where the sum is the account's running total of signed
//! amounts seen since this consumer started, followed by the account's durable balance.
//!
//! ```text
//! (ACC-000042, -12.50) balance=1034.25
//! ```
//!
//! Lines go to stdout or a file through a buffer flushed once per batch; at 100,000 lines a
//! second, going through the tracing subscriber per line would cost more than the database.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;

use bank_contract::money::format_cents;
use bank_storage::ledger::Posted;

pub struct TupleLog {
    out: Option<BufWriter<Box<dyn Write + Send + Sync>>>,
    running: HashMap<String, i64>,
}

impl TupleLog {
    /// `target`: `-` for stdout, a path to append to, or `None` to log nothing.
    pub fn open(target: Option<&Path>) -> anyhow::Result<TupleLog> {
        let out: Option<Box<dyn Write + Send + Sync>> = match target {
            None => None,
            Some(path) if path.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
            Some(path) => Some(Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open tuple log {}: {e}", path.display())
                    })?,
            )),
        };
        Ok(TupleLog {
            out: out.map(|w| BufWriter::with_capacity(1 << 16, w)),
            running: HashMap::new(),
        })
    }

    /// Logs one tuple per posted transaction, in posting order.
    pub fn record(&mut self, posted: &[Posted]) -> std::io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        for p in posted {
            let sum = match self.running.get_mut(p.account_number.as_str()) {
                Some(sum) => {
                    *sum += p.signed_cents;
                    *sum
                }
                None => {
                    self.running
                        .insert(p.account_number.clone(), p.signed_cents);
                    p.signed_cents
                }
            };
            writeln!(
                out,
                "({}, {}) balance={}",
                p.account_number,
                format_cents(sum),
                format_cents(p.balance_after_cents)
            )?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sums_per_account() {
        let path = std::env::temp_dir().join(format!("tuples-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = TupleLog::open(Some(&path)).unwrap();
        let posted = |account: &str, signed: i64, balance: i64| Posted {
            transaction_id: "t".into(),
            account_number: account.into(),
            signed_cents: signed,
            balance_after_cents: balance,
            was_parked: false,
        };
        log.record(&[
            posted("A", 1000, 5000),
            posted("B", -250, -250),
            posted("A", -1250, 3750),
        ])
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "(A, 10.00) balance=50.00\n(B, -2.50) balance=-2.50\n(A, -2.50) balance=37.50\n"
        );
    }
}
