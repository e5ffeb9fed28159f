//! Support shared by the test binaries that run the suite against a fake target.

use std::path::Path;

use authconf::{RunOptions, Target};

/// Options for a quiet run against `target` with the platform admin key `admin`, reports in
/// `report_dir` and `concurrency` scenarios at once.
pub fn options(target: String, admin: &str, report_dir: &Path, concurrency: usize) -> RunOptions {
    RunOptions {
        target: Target::Url(target),
        admin_key: Some(admin.into()),
        report_dir: report_dir.to_path_buf(),
        progress: false,
        summary: false,
        concurrency,
        ..RunOptions::default()
    }
}
