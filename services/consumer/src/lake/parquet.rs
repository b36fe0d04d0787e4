//! Rows to Parquet, with proper types: UTC timestamps (microseconds), integer cents and an exact
//! `DECIMAL(20,2)` amount, the kind as a dictionary-encoded string, and each row's Kafka
//! partition and offset. Rows are appended to Arrow builders as they come (no copy of the batch
//! is kept), and a file is encoded in memory when it is cut, so what reaches storage is one
//! complete object.

use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, Int32Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::types::Int8Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bank_storage::ledger::{CustomerRow, TransactionRow};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn transaction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("transaction_id", DataType::Utf8, false),
        Field::new("account_number", DataType::Utf8, false),
        Field::new("transaction_reference", DataType::Utf8, false),
        Field::new("transaction_datetime", utc(), true),
        Field::new(
            "kind",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("amount_cents", DataType::Int64, false),
        Field::new("signed_amount_cents", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(20, 2), false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("branch_id", DataType::Int64, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]))
}

pub fn customer_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_number", DataType::Utf8, false),
        Field::new("first_name", DataType::Utf8, false),
        Field::new("last_name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("created_at", utc(), true),
        Field::new("updated_at", utc(), true),
        Field::new("branch_id", DataType::Int64, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", utc(), true),
    ]))
}

fn micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|at| at.timestamp_micros())
}

/// What each column of a new file reserves, in rows. Arrow's default of 1,024 cost about 100 KiB
/// per file before its first row: with a span's files spread over many dates, that was most of
/// the sink's memory. Builders double as they fill, so a large file pays a few more copies.
pub const INITIAL_ROWS: usize = 32;

fn timestamps() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(INITIAL_ROWS).with_timezone("UTC")
}

fn strings() -> StringBuilder {
    StringBuilder::with_capacity(INITIAL_ROWS, INITIAL_ROWS * 16)
}

fn int64s() -> Int64Builder {
    Int64Builder::with_capacity(INITIAL_ROWS)
}

/// The rows of one file being gathered.
#[allow(clippy::large_enum_variant)] // One per open file, a handful at a time; boxing buys nothing.
pub enum Rows {
    Transactions(TransactionColumns),
    Customers(CustomerColumns),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Transactions(c) => c.len,
            Rows::Customers(c) => c.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes the rows as one Parquet file, keeping them (a failed write is tried again).
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let batch = match self {
            Rows::Transactions(c) => c.finish()?,
            Rows::Customers(c) => c.finish()?,
        };
        // Deterministic bytes for the same rows: no timestamps, fixed properties.
        // Ids and references are unique per row: a dictionary would only be built to be thrown
        // away (it showed in profiles).
        let unique = ["transaction_id", "transaction_reference", "kafka_offset"];
        let properties = unique
            .iter()
            .fold(WriterProperties::builder(), |builder, column| {
                builder.set_column_dictionary_enabled((*column).into(), false)
            })
            .set_compression(Compression::SNAPPY)
            .set_created_by("bankstream consumer lake".into())
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))?;
        writer.write(&batch)?;
        Ok(writer.into_inner()?)
    }
}

pub struct TransactionColumns {
    len: usize,
    transaction_id: StringBuilder,
    account_number: StringBuilder,
    transaction_reference: StringBuilder,
    transaction_datetime: TimestampMicrosecondBuilder,
    kind: StringDictionaryBuilder<Int8Type>,
    amount_cents: Int64Builder,
    signed_amount_cents: Int64Builder,
    amount: Decimal128Builder,
    currency: StringBuilder,
    branch_id: Int64Builder,
    description: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
}

impl TransactionColumns {
    pub fn new() -> Self {
        TransactionColumns {
            len: 0,
            transaction_id: strings(),
            account_number: strings(),
            transaction_reference: strings(),
            transaction_datetime: timestamps(),
            kind: StringDictionaryBuilder::with_capacity(INITIAL_ROWS, 4, 32),
            amount_cents: int64s(),
            signed_amount_cents: int64s(),
            amount: Decimal128Builder::with_capacity(INITIAL_ROWS),
            currency: strings(),
            branch_id: int64s(),
            description: strings(),
            kafka_partition: Int32Builder::with_capacity(INITIAL_ROWS),
            kafka_offset: int64s(),
        }
    }

    /// Appends a row; returns about how many bytes it adds.
    pub fn push(&mut self, row: &TransactionRow) -> usize {
        self.len += 1;
        self.transaction_id.append_value(&row.transaction_id);
        self.account_number.append_value(&row.account_number);
        self.transaction_reference
            .append_value(&row.transaction_reference);
        self.transaction_datetime
            .append_option(micros(row.transaction_datetime));
        // A dictionary of two values cannot overflow its Int8 keys.
        let _ = self.kind.append(row.kind);
        self.amount_cents.append_value(row.amount_cents);
        self.signed_amount_cents.append_value(row.signed_cents());
        self.amount
            .append_value(i128::from(row.signed_cents().abs()));
        self.currency.append_value(&row.currency);
        self.branch_id.append_value(row.branch_id);
        self.description.append_value(&row.description);
        self.kafka_partition.append_value(row.source_partition);
        self.kafka_offset.append_value(row.source_offset);
        80 + row.transaction_id.len()
            + row.account_number.len()
            + row.transaction_reference.len()
            + row.currency.len()
            + row.description.len()
    }

    fn finish(&self) -> anyhow::Result<RecordBatch> {
        let amount = self
            .amount
            .finish_cloned()
            .with_precision_and_scale(20, 2)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.transaction_id.finish_cloned()),
            Arc::new(self.account_number.finish_cloned()),
            Arc::new(self.transaction_reference.finish_cloned()),
            Arc::new(self.transaction_datetime.finish_cloned()),
            Arc::new(self.kind.finish_cloned()),
            Arc::new(self.amount_cents.finish_cloned()),
            Arc::new(self.signed_amount_cents.finish_cloned()),
            Arc::new(amount),
            Arc::new(self.currency.finish_cloned()),
            Arc::new(self.branch_id.finish_cloned()),
            Arc::new(self.description.finish_cloned()),
            Arc::new(self.kafka_partition.finish_cloned()),
            Arc::new(self.kafka_offset.finish_cloned()),
        ];
        Ok(RecordBatch::try_new(transaction_schema(), columns)?)
    }
}

impl Default for TransactionColumns {
    fn default() -> Self {
        Self::new()
    }
}

pub struct CustomerColumns {
    len: usize,
    account_number: StringBuilder,
    first_name: StringBuilder,
    last_name: StringBuilder,
    email: StringBuilder,
    created_at: TimestampMicrosecondBuilder,
    updated_at: TimestampMicrosecondBuilder,
    branch_id: Int64Builder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    kafka_timestamp: TimestampMicrosecondBuilder,
}

impl CustomerColumns {
    pub fn new() -> Self {
        CustomerColumns {
            len: 0,
            account_number: strings(),
            first_name: strings(),
            last_name: strings(),
            email: strings(),
            created_at: timestamps(),
            updated_at: timestamps(),
            branch_id: int64s(),
            kafka_partition: Int32Builder::with_capacity(INITIAL_ROWS),
            kafka_offset: int64s(),
            kafka_timestamp: timestamps(),
        }
    }

    /// Appends a row and its record's Kafka timestamp (milliseconds).
    pub fn push(&mut self, row: &CustomerRow, kafka_ms: Option<i64>) -> usize {
        self.len += 1;
        self.account_number.append_value(&row.account_number);
        self.first_name.append_value(&row.first_name);
        self.last_name.append_value(&row.last_name);
        self.email.append_value(&row.email);
        self.created_at.append_option(micros(row.created_at));
        self.updated_at.append_option(micros(row.updated_at));
        self.branch_id.append_value(row.branch_id);
        self.kafka_partition.append_value(row.source_partition);
        self.kafka_offset.append_value(row.source_offset);
        self.kafka_timestamp
            .append_option(kafka_ms.and_then(|ms| ms.checked_mul(1_000)));
        64 + row.account_number.len() + row.first_name.len() + row.last_name.len() + row.email.len()
    }

    fn finish(&self) -> anyhow::Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.account_number.finish_cloned()),
            Arc::new(self.first_name.finish_cloned()),
            Arc::new(self.last_name.finish_cloned()),
            Arc::new(self.email.finish_cloned()),
            Arc::new(self.created_at.finish_cloned()),
            Arc::new(self.updated_at.finish_cloned()),
            Arc::new(self.branch_id.finish_cloned()),
            Arc::new(self.kafka_partition.finish_cloned()),
            Arc::new(self.kafka_offset.finish_cloned()),
            Arc::new(self.kafka_timestamp.finish_cloned()),
        ];
        Ok(RecordBatch::try_new(customer_schema(), columns)?)
    }
}

impl Default for CustomerColumns {
    fn default() -> Self {
        Self::new()
    }
}
