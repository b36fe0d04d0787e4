//! Readiness: what `/readyz` reports. Each dependency sets its own flag; the service is ready
//! when Kafka and the database answer and it owns at least one partition.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    kafka_ok: AtomicBool,
    database_ok: AtomicBool,
    assigned_partitions: AtomicUsize,
}

impl Health {
    pub fn set_kafka(&self, ok: bool) {
        self.kafka_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_database(&self, ok: bool) {
        self.database_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_assigned(&self, partitions: usize) {
        self.assigned_partitions
            .store(partitions, Ordering::Relaxed);
    }

    pub fn assigned(&self) -> usize {
        self.assigned_partitions.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, else the reasons it is not.
    pub fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let mut problems = Vec::new();
        if !self.kafka_ok.load(Ordering::Relaxed) {
            problems.push("kafka unreachable");
        }
        if !self.database_ok.load(Ordering::Relaxed) {
            problems.push("database unreachable");
        }
        if self.assigned_partitions.load(Ordering::Relaxed) == 0 {
            problems.push("no partitions assigned");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
