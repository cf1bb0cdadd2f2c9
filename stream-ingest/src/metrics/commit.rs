//! Commits: files published (made visible in the lake) with their rows and bytes, how fresh
//! their windows were when they became visible, partitions committed (`_SUCCESS` written)
//! and committed partitions compacted. Per table, and the process totals the summary line
//! reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use shared::commit::{PartitionMarker, PendingFile};

use super::{PerTable, Telemetry, register, table_family};

/// Buckets of `window_freshness_seconds`.
const FRESHNESS_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// The commit metrics.
pub(super) struct CommitMetrics {
    freshness: Histogram,
    tables: PerTable<TableCommits>,
    /// Counts of this process, for the summary line.
    files_published: AtomicU64,
    rows_published: AtomicU64,
    bytes_published: AtomicU64,
}

/// The commit metrics of one table.
#[derive(Clone, Default)]
struct TableCommits {
    files_published: Counter,
    rows_published: Counter,
    bytes_published: Counter,
    partitions_committed: Counter,
    partitions_compacted: Counter,
    files_compacted: Counter,
}

impl CommitMetrics {
    pub(super) fn register(r: &mut Registry, tables: &[String]) -> Self {
        CommitMetrics {
            freshness: register(
                r,
                "window_freshness",
                "From the moment windows close (the watermark passes their end) to the moment their rows are published in the lake.",
                Some(Unit::Seconds),
                Histogram::new(FRESHNESS_BUCKETS),
            ),
            tables: TableCommits::register(r, tables),
            files_published: AtomicU64::new(0),
            rows_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
        }
    }

    /// Files, rows and bytes this process published.
    pub(super) fn published(&self) -> (u64, u64, u64) {
        (
            self.files_published.load(Ordering::Relaxed),
            self.rows_published.load(Ordering::Relaxed),
            self.bytes_published.load(Ordering::Relaxed),
        )
    }
}

impl TableCommits {
    fn register(r: &mut Registry, tables: &[String]) -> PerTable<Self> {
        let files = table_family::<Counter>(
            r,
            "files_published",
            "Parquet files published (visible in the lake), in this process.",
            None,
        );
        let rows = table_family::<Counter>(
            r,
            "rows_published",
            "Rows in the files published, in this process.",
            None,
        );
        let bytes = table_family::<Counter>(
            r,
            "published",
            "Bytes of the files published, in this process.",
            Some(Unit::Bytes),
        );
        let committed = table_family::<Counter>(
            r,
            "partitions_committed",
            "Partitions committed (`_SUCCESS` written), in this process.",
            None,
        );
        let compacted = table_family::<Counter>(
            r,
            "partitions_compacted",
            "Committed partitions whose files were merged into one, in this process.",
            None,
        );
        let files_compacted = table_family::<Counter>(
            r,
            "files_compacted",
            "Files merged away by compaction, in this process.",
            None,
        );
        PerTable::new(tables, |l| TableCommits {
            files_published: files.get_or_create_owned(l),
            rows_published: rows.get_or_create_owned(l),
            bytes_published: bytes.get_or_create_owned(l),
            partitions_committed: committed.get_or_create_owned(l),
            partitions_compacted: compacted.get_or_create_owned(l),
            files_compacted: files_compacted.get_or_create_owned(l),
        })
    }
}

impl Telemetry {
    /// A staged file was published (it is visible in the lake now). `closed` are the
    /// instants its windows closed: each gives one freshness sample.
    pub fn file_published(&self, f: &PendingFile, closed: &[Instant]) {
        tracing::info!(table = %f.table, partition = %f.partition, rows = f.rows, "published {}", f.target);
        let c = &self.commit;
        let t = c.tables.get(&f.table);
        t.files_published.inc();
        t.rows_published.inc_by(f.rows);
        t.bytes_published.inc_by(f.bytes);
        c.files_published.fetch_add(1, Ordering::Relaxed);
        c.rows_published.fetch_add(f.rows, Ordering::Relaxed);
        c.bytes_published.fetch_add(f.bytes, Ordering::Relaxed);
        for at in closed {
            c.freshness.observe(at.elapsed().as_secs_f64());
        }
    }

    /// A partition got its `_SUCCESS` marker.
    pub fn partition_committed(&self, m: &PartitionMarker) {
        tracing::info!(table = %m.table, partition = %m.partition_path(), rows = m.rows, "partition committed");
        self.commit.tables.get(&m.table).partitions_committed.inc();
    }

    /// A committed partition's `files` files were merged into one.
    pub fn partition_compacted(&self, m: &PartitionMarker, files: usize) {
        tracing::info!(table = %m.table, partition = %m.partition_path(), files, rows = m.rows, "merged");
        let t = self.commit.tables.get(&m.table);
        t.partitions_compacted.inc();
        t.files_compacted.inc_by(files as u64);
    }
}
