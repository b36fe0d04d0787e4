//! Where things are in the lake: one table directory per event type, Hive-style partitions by
//! event date (and optionally branch), and file names that carry the Kafka position of their
//! rows. The lake's own listing is the sink's offset store, so this is the one place that
//! writes and parses those names.
//!
//! ```text
//! <root>/transactions/dt=2026-12-01/branch=2/bank.transactions.p2.00000000000000001000-00000000000000001999.parquet
//! ```
//!
//! A file holds every valid event of one Kafka partition between its first and last offset
//! (inclusive; poison in between was dead-lettered), all of one Hive partition. Offsets are
//! zero-padded, so names sort by position.

use chrono::NaiveDate;

/// Which table an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Transactions,
    Customers,
}

impl Table {
    pub fn dir(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Customers => "customers",
        }
    }
}

/// Hive's name for the partition of a NULL value.
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The Hive partition directory of an event: `dt=YYYY-MM-DD` of its date in UTC, then
/// `branch=N` when asked for.
pub fn partition_dir(at: Option<NaiveDate>, branch: Option<i64>) -> String {
    let dt = at.map_or_else(
        || NULL_PARTITION.to_owned(),
        |at| at.format("%Y-%m-%d").to_string(),
    );
    match branch {
        Some(branch) => format!("dt={dt}/branch={branch}"),
        None => format!("dt={dt}"),
    }
}

/// A file's Kafka position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

impl Span {
    pub fn file_name(&self) -> String {
        format!(
            "{}.p{}.{:020}-{:020}.parquet",
            self.topic, self.partition, self.first, self.last
        )
    }

    /// The span of a file name (the last component of a path); `None` for anything else
    /// (temporary files, other tools' files).
    pub fn parse(name: &str) -> Option<Span> {
        let stem = name.strip_suffix(".parquet")?;
        let (rest, range) = stem.rsplit_once('.')?;
        let (first, last) = range.split_once('-')?;
        let (topic, partition) = rest.rsplit_once(".p")?;
        let number = |s: &str| {
            (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        };
        let span = Span {
            topic: topic.to_owned(),
            partition: partition
                .parse()
                .ok()
                .filter(|p: &i32| *p >= 0 && partition.bytes().all(|b| b.is_ascii_digit()))?,
            first: number(first)?,
            last: number(last)?,
        };
        (!span.topic.is_empty() && span.first <= span.last).then_some(span)
    }
}

/// The path of a file below the lake's root.
pub fn file_path(table: Table, dir: &str, span: &Span) -> String {
    format!("{}/{dir}/{}", table.dir(), span.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        let span = Span {
            topic: "bank.tx-v2_x".into(),
            partition: 11,
            first: 0,
            last: 1_999,
        };
        let name = span.file_name();
        assert_eq!(
            name,
            "bank.tx-v2_x.p11.00000000000000000000-00000000000000001999.parquet"
        );
        assert_eq!(Span::parse(&name), Some(span));
        for other in [
            "x.p1.1-2.parquet",
            "x.p1.00000000000000000002-00000000000000000001.parquet",
            "x.p-1.00000000000000000001-00000000000000000002.parquet",
            "x.p1.00000000000000000001-00000000000000000002.parquet#1",
            "x.p1.00000000000000000001-00000000000000000002.parquet.tmp",
            ".p1.00000000000000000001-00000000000000000002.parquet",
            "_delta_log",
        ] {
            assert_eq!(Span::parse(other), None, "{other}");
        }
    }

    #[test]
    fn partitions_are_hive_style() {
        let at = chrono::DateTime::from_timestamp(1_796_148_892, 0).map(|at| at.date_naive());
        assert_eq!(partition_dir(at, None), "dt=2026-12-01");
        assert_eq!(partition_dir(at, Some(2)), "dt=2026-12-01/branch=2");
        assert_eq!(partition_dir(None, None), "dt=__HIVE_DEFAULT_PARTITION__");
    }
}
