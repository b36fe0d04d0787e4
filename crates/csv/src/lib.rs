//! A bank's CSV export, row by row, into `Transaction`s: the producer's `ingest` reads files with
//! it and `table` maps database rows through the same rules, so a row means one thing whichever
//! way it arrives. Pure functions over text, without Kafka, a database or the registry client,
//! so that the fuzz targets can build it under sanitizers in a fraction of the producer's time.
//!
//! - [`cleaning`]: one field at a time (text, amounts in both decimal styles, dates, kinds);
//! - [`rows`]: header mapping and a whole row into a transaction or a reason it cannot be one.

pub mod cleaning;
pub mod rows;
