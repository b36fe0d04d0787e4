//! `producer csv`: a file of transactions, cleaned row by row, in chunks of constant memory.
//!
//! Per chunk: clean the rows (bad ones go to the rejects file with their line number, the raw
//! row and the reason), announce accounts not seen before with a `Customer` event and wait for
//! those to be acknowledged, then send the chunk's transactions. So every customer lands before
//! its first transaction, and memory holds one chunk plus the set of announced accounts.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bank_contract::pb::{Customer, Transaction};
use bank_plumbing::shutdown::Stop;
use csv::{ByteRecord, StringRecord};

use crate::cli::CsvArgs;
use crate::output::Output;
use crate::publisher::Publisher;
use crate::report;
use bank_csv::rows::{Columns, RowRules, clean_row};

const FLUSH_LIMIT: Duration = Duration::from_secs(120);

/// Counts of the rows read.
#[derive(Debug, Default, Clone, Copy)]
struct RowCounts {
    read: u64,
    sent: u64,
    rejected: u64,
}

pub async fn run(args: CsvArgs) -> anyhow::Result<()> {
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| default_rejects_path(&args.input));
    let (reader, columns) = open(&args)?;
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
    let mut rows = Rows {
        reader,
        columns,
        rules: args.row_rules(),
        input: args.input.clone(),
        rejects: Rejects::create(&rejects_path)?,
        record: ByteRecord::new(),
        counts: RowCounts::default(),
    };
    let chunk_size = args.chunk_size.max(1);
    let mut output = Output::new(args.silent, None);
    let (publisher, counts) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Publisher, RowCounts)> {
            let mut publisher = publisher;
            let mut announced: HashSet<String> = HashSet::new();
            let mut chunk: Vec<Transaction> = Vec::with_capacity(chunk_size);
            let mut more = true;
            while more && !stop.is_requested() {
                more = rows.read_chunk(&mut chunk, chunk_size)?;
                send_chunk(&mut publisher, &mut output, &mut announced, &chunk)?;
                rows.counts.sent += chunk.len() as u64;
            }
            let flushed = publisher.flush(FLUSH_LIMIT);
            output.finish();
            rows.rejects.finish()?;
            flushed?;
            Ok((publisher, rows.counts))
        })
        .await
        .context("the ingest loop panicked")??;

    let rejected_to = if counts.rejected > 0 {
        format!(" (see {})", rejects_path.display())
    } else {
        String::new()
    };
    eprintln!(
        "rows: read {} sent {} rejected {}{rejected_to}",
        counts.read, counts.sent, counts.rejected
    );
    report::finish(&publisher, args.manifest.as_deref())?;
    if counts.rejected > 0 {
        bail!("{} rows were rejected", counts.rejected);
    }
    Ok(())
}

/// The input being read, cleaned row by row; rejected rows go to the rejects file.
struct Rows {
    reader: csv::Reader<Box<dyn Read + Send>>,
    columns: Columns,
    rules: RowRules,
    input: PathBuf,
    rejects: Rejects,
    /// Reused for every row.
    record: ByteRecord,
    counts: RowCounts,
}

impl Rows {
    /// Fills `chunk` (emptied first) with up to `size` cleaned transactions; false once the
    /// input has ended.
    fn read_chunk(&mut self, chunk: &mut Vec<Transaction>, size: usize) -> anyhow::Result<bool> {
        chunk.clear();
        while chunk.len() < size {
            if !self
                .reader
                .read_byte_record(&mut self.record)
                .with_context(|| format!("reading {}", self.input.display()))?
            {
                return Ok(false);
            }
            self.counts.read += 1;
            let line = self.record.position().map(|p| p.line()).unwrap_or_default();
            let cleaned = StringRecord::from_byte_record(self.record.clone())
                .map_err(|e| format!("field {} is not valid UTF-8", e.utf8_error().field() + 1))
                .and_then(|row| clean_row(&row, line, &self.columns, &self.rules));
            match cleaned {
                Ok(tx) => chunk.push(tx),
                Err(reason) => {
                    self.counts.rejected += 1;
                    self.rejects.write(line, &self.record, &reason)?;
                }
            }
        }
        Ok(true)
    }
}

/// Sends a chunk: first a `Customer` for each account not announced before, waiting until
/// those are acknowledged (a customer lands before its first transaction), then the
/// transactions.
fn send_chunk(
    publisher: &mut Publisher,
    output: &mut Output,
    announced: &mut HashSet<String>,
    chunk: &[Transaction],
) -> anyhow::Result<()> {
    let newcomers: Vec<Customer> = chunk
        .iter()
        .filter(|tx| announced.insert(tx.account_number.clone()))
        .map(unknown_customer)
        .collect();
    if !newcomers.is_empty() {
        for customer in &newcomers {
            publisher.publish_customer(customer)?;
            output.customer(customer);
        }
        publisher
            .flush(FLUSH_LIMIT)
            .context("delivering the customers")?;
    }
    for tx in chunk {
        publisher.publish_transaction(tx)?;
        output.transaction(tx);
    }
    Ok(())
}

/// The Customer event announcing an account known only from a CSV row: names and email are
/// unknown and sent empty; `created_at` is the time of that first transaction. Consumers treat
/// empty names as "unknown", never as a change of name.
pub fn unknown_customer(tx: &Transaction) -> Customer {
    Customer {
        account_number: tx.account_number.clone(),
        first_name: String::new(),
        last_name: String::new(),
        email: String::new(),
        created_at: tx.transaction_datetime,
        branch_id: tx.branch_id,
        // A placeholder: any real Customer event for the account is newer.
        updated_at: None,
    }
}

fn open(args: &CsvArgs) -> anyhow::Result<(csv::Reader<Box<dyn Read + Send>>, Columns)> {
    let source: Box<dyn Read + Send> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?,
        )
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(args.delimiter as u8)
        .flexible(true)
        .has_headers(true)
        .from_reader(source);
    let header = reader
        .headers()
        .with_context(|| format!("reading the header of {}", args.input.display()))?
        .clone();
    let columns = Columns::from_header(&header, &args.columns)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    Ok((reader, columns))
}

fn default_rejects_path(input: &Path) -> PathBuf {
    if input.as_os_str() == "-" {
        return PathBuf::from("stdin.rejects.csv");
    }
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    input.with_file_name(format!("{stem}.rejects.csv"))
}

/// The rejects file: `line,reason,raw`, one row per rejected input row, raw re-quoted as CSV.
struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<File>>,
}

impl Rejects {
    fn create(path: &Path) -> anyhow::Result<Rejects> {
        Ok(Rejects {
            path: path.to_owned(),
            writer: None,
        })
    }

    fn write(&mut self, line: u64, record: &ByteRecord, reason: &str) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let mut writer = csv::Writer::from_path(&self.path)
                .with_context(|| format!("creating rejects file {}", self.path.display()))?;
            writer.write_record(["line", "reason", "raw"])?;
            self.writer = Some(writer);
        }
        let raw = raw_row(record);
        tracing::warn!(line, reason, "row rejected");
        if let Some(writer) = &mut self.writer {
            writer
                .write_record([line.to_string().as_str(), reason, raw.as_str()])
                .with_context(|| format!("writing rejects file {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Flushes the file; when nothing was rejected, removes a stale one from an earlier run.
    fn finish(&mut self) -> anyhow::Result<()> {
        match &mut self.writer {
            Some(writer) => writer
                .flush()
                .with_context(|| format!("writing rejects file {}", self.path.display())),
            None => {
                let _ = std::fs::remove_file(&self.path);
                Ok(())
            }
        }
    }
}

/// The row as CSV text again (fields re-quoted where needed, invalid UTF-8 replaced).
fn raw_row(record: &ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let _ = writer.write_record(&fields);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\r', '\n'])
        .to_owned()
}
