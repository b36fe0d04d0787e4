//! How a view prints its rows: an aligned table with a header, as ksqlDB's CLI shows a push
//! query; CSV with a header line (RFC 4180 quoting); or JSON lines. Rows stream: each is
//! flushed as it is printed, so a view piped into `grep` or a file shows events as they come.
//!
//! A table is for a terminal, so control characters in event text (a newline, an ANSI escape,
//! a bidi override) are shown escaped instead of moving the cursor; CSV and JSON keep the text
//! as it is, quoted or escaped by their own rules.

use std::io::Write;

use bank_contract::money;
use chrono::{DateTime, Utc};

use super::columns::{Cell, Column, Row, Type};
use super::time::{TimeFormat, Zone};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub struct Printer<W: Write> {
    out: W,
    format: Format,
    columns: Vec<Column>,
    widths: Vec<usize>,
    zone: Zone,
    time_format: TimeFormat,
}

impl<W: Write> Printer<W> {
    pub fn new(
        out: W,
        format: Format,
        columns: Vec<Column>,
        zone: Zone,
        time_format: TimeFormat,
    ) -> Self {
        // A fixed instant with two-digit fields, so a time column is as wide as its format.
        let sample = zone.render(
            DateTime::<Utc>::from_timestamp(1_766_000_000, 0).unwrap_or_default(),
            &time_format,
        );
        let widths = columns
            .iter()
            .map(|c| {
                let usual = if c.kind() == Type::Time {
                    sample.chars().count()
                } else {
                    c.usual_width()
                };
                usual.max(c.name().len())
            })
            .collect();
        Printer {
            out,
            format,
            columns,
            widths,
            zone,
            time_format,
        }
    }

    pub fn header(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Table => {
                let names: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| c.name().to_ascii_uppercase())
                    .collect();
                // Numbers are right-aligned, and so are their headers.
                let right: Vec<bool> = self
                    .columns
                    .iter()
                    .map(|c| matches!(c.kind(), Type::Money | Type::Integer))
                    .collect();
                self.rule()?;
                self.table_line(names.iter().map(String::as_str), &right)?;
                self.rule()?;
            }
            Format::Csv => {
                let names: Vec<String> = self.columns.iter().map(|c| csv_field(c.name())).collect();
                writeln!(self.out, "{}", names.join(","))?;
            }
            Format::Json => {}
        }
        self.out.flush()
    }

    pub fn row(&mut self, row: &Row) -> std::io::Result<()> {
        let cells: Vec<Cell<'_>> = self.columns.iter().map(|c| c.cell(row)).collect();
        match self.format {
            Format::Table => {
                let texts: Vec<String> =
                    cells.iter().map(|c| terminal_safe(&self.text(c))).collect();
                let right: Vec<bool> = cells
                    .iter()
                    .map(|c| matches!(c, Cell::Money(_) | Cell::Integer(_)))
                    .collect();
                self.table_line(texts.iter().map(String::as_str), &right)?;
            }
            Format::Csv => {
                let fields: Vec<String> = cells.iter().map(|c| csv_field(&self.text(c))).collect();
                writeln!(self.out, "{}", fields.join(","))?;
            }
            Format::Json => {
                // Written by hand so that keys keep the order of --columns.
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .zip(&cells)
                    .map(|(column, cell)| format!("\"{}\":{}", column.name(), self.json(cell)))
                    .collect();
                writeln!(self.out, "{{{}}}", fields.join(","))?;
            }
        }
        self.out.flush()
    }

    /// The closing rule of a table; nothing for the other formats.
    pub fn footer(&mut self) -> std::io::Result<()> {
        if self.format == Format::Table {
            self.rule()?;
        }
        self.out.flush()
    }

    fn text(&self, cell: &Cell<'_>) -> String {
        match cell {
            Cell::Text(text) => text.to_string(),
            Cell::Money(cents) => money::format_cents(*cents),
            Cell::Integer(n) => n.to_string(),
            Cell::Time(Some(at)) => self.zone.render(*at, &self.time_format),
            Cell::Time(None) => String::new(),
        }
    }

    /// Money as a decimal string (exact, whatever the reader's floats), integers as numbers,
    /// a missing time as null.
    fn json(&self, cell: &Cell<'_>) -> serde_json::Value {
        match cell {
            Cell::Integer(n) => (*n).into(),
            Cell::Time(None) => serde_json::Value::Null,
            other => self.text(other).into(),
        }
    }

    fn rule(&mut self) -> std::io::Result<()> {
        let line: String = self
            .widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(*w)))
            .collect();
        writeln!(self.out, "{line}+")
    }

    fn table_line<'s>(
        &mut self,
        texts: impl Iterator<Item = &'s str>,
        right: &[bool],
    ) -> std::io::Result<()> {
        let mut line = String::new();
        for (i, (text, width)) in texts.zip(&self.widths).enumerate() {
            let pad = width.saturating_sub(text.chars().count());
            line.push('|');
            if right.get(i).copied().unwrap_or(false) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(text);
            } else {
                line.push_str(text);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(self.out, "{line}|")
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn terminal_safe(text: &str) -> String {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.contains(unsafe_char) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::columns::{Event, Stream};
    use bank_contract::pb::{Transaction, TransactionKind};

    fn printed(format: Format, columns: &str, tx: Transaction) -> String {
        let columns = Stream::Transactions.columns(columns).expect("columns");
        let zone = Zone::parse("UTC").expect("UTC");
        let time = TimeFormat::parse("yyyy-MM-dd HH:mm:ss.SSS").expect("format");
        let mut printer = Printer::new(Vec::new(), format, columns, zone, time);
        let row = Row {
            event: Event::Transaction(tx),
            partition: 1,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_120),
        };
        printer.header().expect("header");
        printer.row(&row).expect("row");
        printer.footer().expect("footer");
        String::from_utf8(printer.out).expect("utf-8")
    }

    fn withdrawal(description: &str) -> Transaction {
        Transaction {
            account_number: "ACC-000001".into(),
            kind: TransactionKind::Withdrawal as i32,
            amount_cents: 123_456,
            description: description.into(),
            transaction_datetime: Some(prost_types::Timestamp {
                seconds: 1_618_269_963,
                nanos: 655_000_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_table_is_aligned_under_its_header() {
        let out = printed(
            Format::Table,
            "account_number,kind,amount,transaction_datetime",
            withdrawal(""),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "|ACCOUNT_NUMBER|KIND      |      AMOUNT|TRANSACTION_DATETIME   |"
        );
        assert_eq!(
            lines[3],
            "|ACC-000001    |WITHDRAWAL|     1234.56|2021-04-12 23:26:03.655|"
        );
        assert_eq!(lines[0], lines[2]);
        assert_eq!(lines[0], lines[4]);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{out}"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let out = printed(
            Format::Table,
            "description",
            withdrawal("a\nb\u{1b}[2J\u{202e}c"),
        );
        assert!(out.contains("a\\nb\\u{1b}[2J\\u{202e}c"), "{out}");
        assert_eq!(out.lines().count(), 5);
    }

    #[test]
    fn csv_and_json_keep_the_text_exact() {
        let out = printed(
            Format::Csv,
            "amount,description,partition,offset",
            withdrawal("say \"hi\",\nthen go"),
        );
        assert_eq!(
            out,
            "amount,description,partition,offset\n1234.56,\"say \"\"hi\"\",\nthen go\",1,42\n"
        );
        let out = printed(
            Format::Json,
            "amount,signed_amount,description,rowtime,offset",
            withdrawal("x\ny"),
        );
        let value: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(value["amount"], "1234.56");
        assert_eq!(value["signed_amount"], "-1234.56");
        assert_eq!(value["description"], "x\ny");
        assert_eq!(value["rowtime"], "2023-11-14 22:13:20.120");
        assert_eq!(value["offset"], 42);
        assert!(
            out.starts_with("{\"amount\":\"1234.56\",\"signed_amount\""),
            "in column order: {out}"
        );
    }
}
