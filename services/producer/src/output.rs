//! What the user sees while events go out: one readable line per event (unless `--silent`), a
//! progress bar when stderr is a terminal, periodic log lines when it is not.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::{Duration, Instant};

use bank_contract::money;
use bank_contract::pb::{Customer, Transaction, TransactionKind};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Output {
    silent: bool,
    stdout: BufWriter<Stdout>,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    count: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Output {
    /// `total`: the number of events expected, when known.
    pub fn new(silent: bool, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::no_length(),
            };
            let template = if total.is_some() {
                "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}"
            } else {
                "{spinner} {pos} events  {per_sec}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Output {
            silent,
            stdout: BufWriter::new(std::io::stdout()),
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            count: 0,
        }
    }

    pub fn customer(&mut self, c: &Customer) {
        if !self.silent {
            let line = format!(
                "customer {} {} {} <{}> branch {}",
                c.account_number, c.first_name, c.last_name, c.email, c.branch_id
            );
            self.line(&line);
        }
        self.tick();
    }

    pub fn transaction(&mut self, tx: &Transaction) {
        if !self.silent {
            let kind = match TransactionKind::try_from(tx.kind) {
                Ok(TransactionKind::Deposit) => "deposit",
                Ok(TransactionKind::Withdrawal) => "withdrawal",
                _ => "invalid",
            };
            let signed = money::signed_amount_cents(tx).unwrap_or_default();
            let line = format!(
                "transaction {} {} {kind} {} {} branch {} {:?}",
                tx.transaction_id,
                tx.account_number,
                money::format_cents(signed),
                tx.currency,
                tx.branch_id,
                tx.description
            );
            self.line(&line);
        }
        self.tick();
    }

    pub fn finish(&mut self) {
        let _ = self.stdout.flush();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => {
                let _ = writeln!(self.stdout, "{line}");
            }
        }
    }

    fn tick(&mut self) {
        self.count += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.count.is_multiple_of(1024) && self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                let rate = self.count as f64 / self.started.elapsed().as_secs_f64();
                tracing::info!(
                    events = self.count,
                    rate = format!("{rate:.0}/s"),
                    "progress"
                );
            }
            None => {}
        }
    }
}
