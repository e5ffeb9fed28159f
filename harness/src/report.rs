//! Reports of a run: junit.xml, cucumber JSON, summary.md, a self-contained summary.html,
//! results.json and the summary printed at the end, one module per format. Everything here
//! has been redacted already (the collector redacts failures); the run's secrets are
//! redacted once more on writing.

mod cucumber;
mod format;
mod html;
mod junit;
mod markdown;
pub mod sections;
mod tally;
mod text;

use std::path::Path;

pub use cucumber::cucumber_json;
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use tally::{tallies, Counts, AREAS};
pub use text::text_summary;

use crate::outcome::RunOutcome;

/// Writes every report into `dir`, passing each text through `redact`.
pub fn write_all(
    o: &RunOutcome,
    dir: &Path,
    redact: &dyn Fn(&str) -> String,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("junit.xml"), redact(&junit(o)))?;
    let j = serde_json::to_string_pretty(&cucumber_json(o)).unwrap_or_else(|_| "[]".into());
    std::fs::write(dir.join("cucumber.json"), redact(&j))?;
    std::fs::write(dir.join("summary.md"), redact(&markdown(o)))?;
    std::fs::write(dir.join("summary.html"), redact(&html(o)))?;
    let r =
        serde_json::to_string_pretty(&sections::results_json(o)).unwrap_or_else(|_| "{}".into());
    std::fs::write(dir.join("results.json"), redact(&r))?;
    Ok(())
}

/// Points `<report dir>/latest` at this run: a symlink, or a copy where links fail.
pub fn update_latest(report_dir: &Path, run_dir: &Path, run_id: &str) -> std::io::Result<()> {
    let latest = report_dir.join("latest");
    if let Ok(meta) = std::fs::symlink_metadata(&latest) {
        if meta.file_type().is_dir() {
            std::fs::remove_dir_all(&latest)?;
        } else {
            std::fs::remove_file(&latest)?;
        }
    }
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(run_id, &latest).is_ok() {
            return Ok(());
        }
    }
    let _ = run_id;
    std::fs::create_dir_all(&latest)?;
    for e in std::fs::read_dir(run_dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), latest.join(e.file_name()))?;
        }
    }
    Ok(())
}
