//! Where things are in the lake: one table directory per event type, Hive-style partitions by
//! event date (and optionally branch), and file names that carry the Kafka position of their
//! rows. The lake's own listing is the sink's offset store, so this is the one place that
//! writes and parses those names.
//!
//! ```text
//! <root>/transactions/dt=2026-12-01/branch=2/bank.transactions.p2.00000000000000001000-00000000000000001999.parquet
//! ```
//!
//! The files of one span hold every valid event of one Kafka partition between its first and
//! last offset (inclusive; poison in between was dead-lettered), one file per Hive partition its
//! rows fall in. A span of one file is named as above; a span of several says which part of how
//! many each is (`...-00000000000000001999.2of3.parquet`), so a reader of the listing knows a
//! span is complete only when every part is there. Offsets are zero-padded, so names sort by
//! position.

use std::collections::{BTreeMap, BTreeSet};

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

/// A file's Kafka position: the span of offsets it covers, and which of the span's files it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// 1-based; `parts` is the number of files (Hive partitions) of the span.
    pub part: u32,
    pub parts: u32,
}

impl Span {
    pub fn file_name(&self) -> String {
        let range = format!(
            "{}.p{}.{:020}-{:020}",
            self.topic, self.partition, self.first, self.last
        );
        if self.parts == 1 {
            format!("{range}.parquet")
        } else {
            format!("{range}.{}of{}.parquet", self.part, self.parts)
        }
    }

    /// The span of a file name (the last component of a path); `None` for anything else
    /// (temporary files, other tools' files).
    pub fn parse(name: &str) -> Option<Span> {
        let stem = name.strip_suffix(".parquet")?;
        let (rest, last) = stem.rsplit_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let ((part, parts), (rest, range)) = match last.split_once("of") {
            Some((part, parts)) if digits(part) && digits(parts) => {
                let counts = (part.parse::<u32>().ok()?, parts.parse::<u32>().ok()?);
                // A span of one file has one name only, without the count.
                if counts.1 < 2 {
                    return None;
                }
                (counts, rest.rsplit_once('.')?)
            }
            _ => ((1, 1), (rest, last)),
        };
        let (first, last) = range.split_once('-')?;
        let (topic, partition) = rest.rsplit_once(".p")?;
        let number = |s: &str| {
            (s.len() == 20 && digits(s))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        };
        let span = Span {
            topic: topic.to_owned(),
            partition: partition
                .parse()
                .ok()
                .filter(|p: &i32| *p >= 0 && digits(partition))?,
            first: number(first)?,
            last: number(last)?,
            part,
            parts,
        };
        let counted = (1..=span.parts).contains(&span.part);
        (!span.topic.is_empty() && span.first <= span.last && counted).then_some(span)
    }
}

/// What a partition's listing says: `next` is one past the last offset its complete spans
/// cover; `unfinished` are the spans past it some of whose parts never became visible (their
/// writer died between them). The first of those, if claimed, is written again as claimed;
/// the files of any other must go before the sink writes anything, as their rows are read
/// again and may be cut differently.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub next: Option<i64>,
    pub unfinished: Vec<Unfinished>,
}

/// The visible files of a span not every part of which is visible, in offset order.
#[derive(Debug, PartialEq, Eq)]
pub struct Unfinished {
    pub first: i64,
    pub last: i64,
    pub paths: Vec<String>,
}

/// The files of one span found in a listing.
#[derive(Default)]
struct Found<'a> {
    parts: u32,
    seen: BTreeSet<u32>,
    paths: Vec<&'a str>,
}

impl Found<'_> {
    fn complete(&self) -> bool {
        self.seen.len() == self.parts as usize
            && self.seen.iter().all(|p| (1..=self.parts).contains(p))
    }
}

/// Reads one partition's files (path and span) into where it resumes.
pub fn resume<'a>(files: impl IntoIterator<Item = (&'a str, &'a Span)>) -> Resume {
    let mut spans: BTreeMap<(i64, i64), Found<'a>> = BTreeMap::new();
    for (path, span) in files {
        let found = spans.entry((span.first, span.last)).or_default();
        found.parts = found.parts.max(span.parts);
        found.seen.insert(span.part);
        found.paths.push(path);
    }
    let next = spans
        .iter()
        .filter(|(_, found)| found.complete())
        .map(|((_, last), _)| last + 1)
        .max();
    let unfinished = spans
        .iter()
        .filter(|((first, _), found)| !found.complete() && next.is_none_or(|next| *first >= next))
        .map(|((first, last), found)| Unfinished {
            first: *first,
            last: *last,
            paths: found.paths.iter().map(|p| (*p).to_owned()).collect(),
        })
        .collect();
    Resume { next, unfinished }
}

/// Where a span's claim is, below the lake's root: one small object per span, named by the
/// span's first offset, outside the table directories (and with a leading `_`, which Hive
/// readers skip), so globs over `transactions/` never meet it.
pub fn claim_path(table: Table, topic: &str, partition: i32, first: i64) -> String {
    format!("_spans/{}/{topic}.p{partition}/{first:020}", table.dir())
}

/// What a span claims before any of its files is written: where it ends and the files it is
/// made of. A claim is created only if none exists at its first offset, so of two writers
/// that start a span at the same offset (an instance paused past its session, and the one that
/// took over its partitions) exactly one claims it. The other finds a different claim there
/// and is fenced, or the same claim and writes the same files. Every span starts where the
/// previous one ends, and a writer starts a partition at the lake's position (or, where the
/// lake has none, at the partition's first record, poison or not), so two writers' spans
/// always meet at some first offset.
///
/// A claim without files covers offsets that were all poison (dead-lettered), at the end of a
/// partition when its writer stopped or handed it over, so they are not read (and
/// dead-lettered) again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub last: i64,
    /// Below the lake's root, in part order.
    pub paths: Vec<String>,
}

impl Claim {
    pub fn encode(&self) -> String {
        let mut text = format!("last={}\n", self.last);
        for path in &self.paths {
            text.push_str(path);
            text.push('\n');
        }
        text
    }

    /// `None` for anything that is not a claim as [`Claim::encode`] writes it.
    pub fn parse(text: &[u8]) -> Option<Claim> {
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.lines();
        let last = lines.next()?.strip_prefix("last=")?.parse().ok()?;
        let paths: Vec<String> = lines.map(str::to_owned).collect();
        paths
            .iter()
            .all(|p| !p.is_empty())
            .then_some(Claim { last, paths })
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
            part: 1,
            parts: 1,
        };
        let name = span.file_name();
        assert_eq!(
            name,
            "bank.tx-v2_x.p11.00000000000000000000-00000000000000001999.parquet"
        );
        assert_eq!(Span::parse(&name), Some(span.clone()));
        let second = Span {
            part: 2,
            parts: 3,
            ..span
        };
        let name = second.file_name();
        assert_eq!(
            name,
            "bank.tx-v2_x.p11.00000000000000000000-00000000000000001999.2of3.parquet"
        );
        assert_eq!(Span::parse(&name), Some(second));
        for other in [
            "x.p1.1-2.parquet",
            "x.p1.00000000000000000002-00000000000000000001.parquet",
            "x.p-1.00000000000000000001-00000000000000000002.parquet",
            "x.p1.00000000000000000001-00000000000000000002.parquet#1",
            "x.p1.00000000000000000001-00000000000000000002.parquet.tmp",
            ".p1.00000000000000000001-00000000000000000002.parquet",
            "x.p1.00000000000000000001-00000000000000000002.4of3.parquet",
            "x.p1.00000000000000000001-00000000000000000002.0of3.parquet",
            "x.p1.00000000000000000001-00000000000000000002.1of1.parquet",
            "x.p1.00000000000000000001-00000000000000000002.of.parquet",
            "x.p1.2of3.parquet",
            "_delta_log",
        ] {
            assert_eq!(Span::parse(other), None, "{other}");
        }
    }

    fn span(first: i64, last: i64, part: u32, parts: u32) -> Span {
        Span {
            topic: "t".into(),
            partition: 0,
            first,
            last,
            part,
            parts,
        }
    }

    #[test]
    fn a_span_counts_only_once_every_part_is_visible() {
        let files = [
            ("a", span(0, 99, 1, 1)),
            ("b1", span(100, 199, 1, 2)),
            ("b2", span(100, 199, 2, 2)),
            // The sink died after the first of three parts.
            ("c1", span(200, 349, 1, 3)),
        ];
        let found = resume(files.iter().map(|(p, s)| (*p, s)));
        let c = || Unfinished {
            first: 200,
            last: 349,
            paths: vec!["c1".into()],
        };
        assert_eq!(
            found,
            Resume {
                next: Some(200),
                unfinished: vec![c()],
            }
        );
        let found = resume(files[3..].iter().map(|(p, s)| (*p, s)));
        assert_eq!(found.next, None, "nothing complete: read from the start");
        assert_eq!(found.unfinished, [c()]);
        assert_eq!(resume(std::iter::empty()), Resume::default());
    }

    #[test]
    fn claims_round_trip_and_nothing_else_parses() {
        let claim = Claim {
            last: 1_999,
            paths: vec![
                "transactions/dt=2026-12-01/a.1of2.parquet".into(),
                "transactions/dt=2026-12-02/a.2of2.parquet".into(),
            ],
        };
        assert_eq!(Claim::parse(claim.encode().as_bytes()), Some(claim));
        let poison = Claim {
            last: 7,
            paths: Vec::new(),
        };
        assert_eq!(Claim::parse(poison.encode().as_bytes()), Some(poison));
        for other in [
            &b""[..],
            b"last=x\na\n",
            b"first=1\na\n",
            b"last=1\n\n",
            b"\xff",
        ] {
            assert_eq!(Claim::parse(other), None, "{other:?}");
        }
        assert_eq!(
            claim_path(Table::Customers, "bank.customers", 2, 7),
            "_spans/customers/bank.customers.p2/00000000000000000007"
        );
    }

    #[test]
    fn partitions_are_hive_style() {
        let at = chrono::DateTime::from_timestamp(1_796_148_892, 0).map(|at| at.date_naive());
        assert_eq!(partition_dir(at, None), "dt=2026-12-01");
        assert_eq!(partition_dir(at, Some(2)), "dt=2026-12-01/branch=2");
        assert_eq!(partition_dir(None, None), "dt=__HIVE_DEFAULT_PARTITION__");
    }
}
