//! Instants as the contract carries them. Every producer path (synthetic, CSV, table rows) turns
//! a `chrono` instant into a protobuf `Timestamp` the same way, so that one row read twice gives
//! the same bytes and therefore the same event.

use chrono::{DateTime, Utc};

/// The protobuf form of an instant: whole seconds since the epoch and the nanoseconds past them,
/// non-negative also before 1970. A leap second (chrono counts it as nanos past 999,999,999) is
/// carried as it is, and `validate` refuses it like any nanos outside the protobuf range.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_epoch_nanos_stay_positive() {
        let at = DateTime::<Utc>::from_timestamp(-2, 250_000_000).expect("-1.75 s is an instant");
        let ts = timestamp(at);
        assert_eq!((ts.seconds, ts.nanos), (-2, 250_000_000));
        assert_eq!(timestamp(DateTime::UNIX_EPOCH).nanos, 0);
    }
}
