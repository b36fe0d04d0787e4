//! Where a table source is: the (timestamp, id) of the last row Kafka acknowledged, kept in a
//! small JSON file replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory). It is written only after a batch is acknowledged, so a SIGKILL at any instant
//! leaves either the old position (the batch is published again: at-least-once, bounded by one
//! batch) or the new one, never a position past rows Kafka does not have.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::Value;
use serde::{Deserialize, Serialize};

/// A value of the timestamp column, kept in the type the database gave it, so that binding it
/// back compares equal to the stored value (SQLite compares text: a reformatted time would not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// `TIMESTAMPTZ`.
    Utc(DateTime<Utc>),
    /// `TIMESTAMP` without a zone.
    Naive(NaiveDateTime),
    /// A time stored as text (SQLite).
    Text(String),
}

impl Mark {
    pub fn value(&self) -> Value {
        match self {
            Mark::Utc(at) => (*at).into(),
            Mark::Naive(at) => (*at).into(),
            Mark::Text(text) => text.clone().into(),
        }
    }

    /// The instant, where it can be read (text that is not a time reads as none).
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Mark::Utc(at) => Some(*at),
            Mark::Naive(at) => Some(at.and_utc()),
            Mark::Text(text) => {
                bank_csv::cleaning::parse_date(text, bank_csv::cleaning::SlashDates::MonthFirst)
                    .ok()
            }
        }
    }
}

/// The position and what it is a position of: a file written for another table or other
/// columns is refused rather than applied to the wrong rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub table: String,
    pub timestamp_column: String,
    pub incrementing_column: String,
    pub timestamp: Mark,
    pub id: i64,
    /// Rows published since the file was created (for people reading it).
    pub published: u64,
}

pub struct PositionFile {
    path: PathBuf,
}

impl PositionFile {
    pub fn new(path: PathBuf) -> Self {
        PositionFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position, `None` when there is none yet (an initial load follows).
    pub fn load(
        &self,
        table: &str,
        timestamp_column: &str,
        incrementing_column: &str,
    ) -> anyhow::Result<Option<Position>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let position: Position = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a table source position", self.path.display()))?;
        let same = (
            position.table.as_str(),
            position.timestamp_column.as_str(),
            position.incrementing_column.as_str(),
        ) == (table, timestamp_column, incrementing_column);
        if !same {
            anyhow::bail!(
                "{} is the position of table {} by ({}, {}), not of {table} by ({timestamp_column}, {incrementing_column}); \
                 give each source its own --state-file",
                self.path.display(),
                position.table,
                position.timestamp_column,
                position.incrementing_column
            );
        }
        Ok(Some(position))
    }

    pub fn store(&self, position: &Position) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(position)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = self.path.with_file_name(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            let directory = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            std::fs::File::open(directory)?.sync_all()
        };
        write().with_context(|| format!("storing the position in {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_and_belongs_to_its_table() {
        let dir = std::env::temp_dir().join(format!("position-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = PositionFile::new(dir.join("p.json"));
        assert_eq!(
            file.load("t", "updated_at", "id")
                .expect("no file is no position"),
            None
        );
        let position = Position {
            table: "t".into(),
            timestamp_column: "updated_at".into(),
            incrementing_column: "id".into(),
            timestamp: Mark::Text("2026-12-01 18:14:52.265".into()),
            id: 42,
            published: 7,
        };
        file.store(&position).expect("stored");
        assert_eq!(
            file.load("t", "updated_at", "id").expect("read"),
            Some(position)
        );
        let error = file
            .load("other", "updated_at", "id")
            .expect_err("another table's file");
        assert!(
            error
                .to_string()
                .contains("give each source its own --state-file"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
