//! Everything that can stop a run, and the exit status each one gives a script. The exit
//! statuses live here, together, so the `--help` text, [`AnalyzeError::exit_code`] and the
//! metrics file ([`crate::metrics_file`]) read them from one place.

use datafusion::error::DataFusionError;
use shared::config::ConfigError;
use shared::delta::TimeTravelError;
use shared::lake::LakeError;

use crate::catalog::SnapshotError;
use crate::lake_output::LakeOutputError;
use crate::lock::ReportLockError;
use crate::output::OutputError;
use crate::small_files::LakeFileError;
use crate::state::StateError;

/// Status 4: nothing to do (with `--exit-4-if-nothing`).
pub(crate) const EXIT_NOTHING_TO_DO: u8 = 4;

/// Everything that can stop a run. [`AnalyzeError::exit_code`] maps it for scripts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnalyzeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("report `{report}`: {source}")]
    Report {
        report: String,
        #[source]
        source: DataFusionError,
    },
    /// A lake file that does not read back, named as the user writes the lake.
    #[error("report `{report}`: {source}")]
    LakeFile {
        report: String,
        #[source]
        source: LakeFileError,
    },
    #[error("registering tables: {0}")]
    Catalog(DataFusionError),
    /// The cluster (`--cluster`) cannot be reached or refused the session.
    #[error("cluster {0}")]
    Cluster(String),
    /// A query ran longer than `--query-timeout`; nothing of its report was written.
    #[error(
        "report `{report}`: no result after {limit} on the {engine} engine (--query-timeout); nothing of it was written"
    )]
    QueryTimeout {
        report: String,
        limit: shared::HumanDuration,
        engine: String,
    },
    #[error("report `{report}`: {source}")]
    Output {
        report: String,
        #[source]
        source: OutputError,
    },
    #[error("report `{report}`: writing to the lake: {source}")]
    LakeOutput {
        report: String,
        #[source]
        source: Box<LakeOutputError>,
    },
    #[error(transparent)]
    Locked(#[from] ReportLockError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("reading commit events: {0}")]
    Follow(String),
}

impl AnalyzeError {
    /// A report's query failed: [`AnalyzeError::LakeFile`] when a lake file did not read
    /// back (the error names it), else [`AnalyzeError::Report`].
    pub(crate) fn report(report: &str, source: DataFusionError) -> AnalyzeError {
        match LakeFileError::find(&source) {
            Some(e) => AnalyzeError::LakeFile {
                report: report.to_string(),
                source: e.clone(),
            },
            None => AnalyzeError::Report {
                report: report.to_string(),
                source,
            },
        }
    }

    /// 2 for a bad configuration or arguments (a version `--as-of` asks for that the
    /// table lacks included), 3 when another run holds a lock, 1 for
    /// anything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            AnalyzeError::Config(_)
            | AnalyzeError::Usage(_)
            | AnalyzeError::Lake(LakeError::InvalidRoot { .. })
            | AnalyzeError::Snapshot(SnapshotError::TimeTravel(
                TimeTravelError::NoSuchVersion { .. } | TimeTravelError::Expired { .. },
            )) => 2,
            AnalyzeError::Locked(ReportLockError::Busy { .. }) => 3,
            _ => 1,
        }
    }
}

/// The first line of an error message (DataFusion's and Ballista's run on).
pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
