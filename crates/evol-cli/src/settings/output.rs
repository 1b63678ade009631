//! Settings of the commands that read a run's output: `export`, `merge`
//! and `report`.

use super::{usage, FromArgs};
use super::{ExportSettings, MergeSettings, ReportSettings, UsageError};
use crate::cli::{ExportArgs, MergeArgs, ReportArgs};

impl FromArgs<ExportArgs> for ExportSettings {
    type Error = UsageError;

    fn from_args(args: ExportArgs) -> Result<ExportSettings, UsageError> {
        let ExportArgs { output, to, format, plain, drop_truncated, reasoning, max_file_mb, json: _ } = args;
        if max_file_mb == 0 {
            return Err(usage("--max-file-mb must be at least 1"));
        }
        Ok(ExportSettings {
            output,
            to,
            format,
            plain,
            drop_truncated,
            reasoning,
            max_file_bytes: max_file_mb.saturating_mul(1 << 20),
        })
    }
}

impl FromArgs<MergeArgs> for MergeSettings {
    type Error = UsageError;

    fn from_args(args: MergeArgs) -> Result<MergeSettings, UsageError> {
        let MergeArgs { shards, output } = args;
        Ok(MergeSettings { shards, output })
    }
}

impl FromArgs<ReportArgs> for ReportSettings {
    type Error = UsageError;

    fn from_args(args: ReportArgs) -> Result<ReportSettings, UsageError> {
        let ReportArgs { dirs, output, quiet: _ } = args;
        Ok(ReportSettings { dirs, output })
    }
}
