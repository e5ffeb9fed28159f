//! Known failures: scenarios expected to fail on a target, each with a reason.
//!
//! A listed scenario that fails is "expected"; a listed scenario that passes fails the run,
//! so the list cannot go stale. Two formats:
//!
//! ```toml
//! [[failure]]
//! scenario = "Keys in the query string are refused: api_key"
//! reason = "upstream D12"
//! ```
//!
//! or plain text, one `scenario name | reason` per line (`#` starts a comment line).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::RunError;
use crate::results::{ScenarioResult, Verdict};

/// Scenario name -> reason.
#[derive(Debug, Clone, Default)]
pub struct KnownFailures {
    /// The entries.
    pub entries: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    failure: Vec<TomlEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEntry {
    scenario: String,
    reason: String,
}

impl KnownFailures {
    /// Reads a file in either format.
    pub fn load(path: &Path) -> Result<Self, RunError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::Usage(format!("--known-failures {}: {e}", path.display())))?;
        Self::parse(&text, path.extension().is_some_and(|e| e == "toml"))
            .map_err(|e| RunError::Usage(format!("--known-failures {}: {e}", path.display())))
    }

    /// Parses the text; `toml` forces the TOML format, otherwise it is tried first.
    pub fn parse(text: &str, toml: bool) -> Result<Self, String> {
        let looks_toml = toml || text.lines().any(|l| l.trim() == "[[failure]]");
        let mut entries = BTreeMap::new();
        if looks_toml {
            let f: TomlFile = toml::from_str(text).map_err(|e| e.to_string())?;
            for e in f.failure {
                if e.reason.trim().is_empty() {
                    return Err(format!("{:?} has no reason", e.scenario));
                }
                entries.insert(e.scenario, e.reason);
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (name, reason) = line
                    .rsplit_once('|')
                    .ok_or_else(|| format!("line {}: expected 'scenario name | reason'", n + 1))?;
                let (name, reason) = (name.trim(), reason.trim());
                if name.is_empty() || reason.is_empty() {
                    return Err(format!(
                        "line {}: a scenario name and a reason are needed",
                        n + 1
                    ));
                }
                entries.insert(name.to_owned(), reason.to_owned());
            }
        }
        Ok(KnownFailures { entries })
    }

    /// The reason a scenario is listed, if it is.
    pub fn reason(&self, scenario: &str) -> Option<&str> {
        self.entries.get(scenario).map(String::as_str)
    }

    /// Turns listed failures into expected ones and listed passes into unexpected passes (a
    /// failure keeps its class); returns the entries that matched no scenario.
    pub fn apply(&self, results: &mut [ScenarioResult]) -> Vec<String> {
        let mut used = std::collections::BTreeSet::new();
        for r in results.iter_mut() {
            if let Some(reason) = self.reason(&r.name) {
                used.insert(r.name.clone());
                r.verdict = match &r.verdict {
                    Verdict::Failed => Verdict::ExpectedFailure(reason.to_owned()),
                    Verdict::Passed => Verdict::UnexpectedPass(reason.to_owned()),
                    v => v.clone(),
                };
            }
        }
        self.entries
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        let t = KnownFailures::parse("# c\nA scenario | because\n", false).unwrap();
        assert_eq!(t.reason("A scenario"), Some("because"));
        let t =
            KnownFailures::parse("[[failure]]\nscenario = \"X\"\nreason = \"y\"\n", false).unwrap();
        assert_eq!(t.reason("X"), Some("y"));
        assert!(KnownFailures::parse("no reason here\n", false).is_err());
        assert!(KnownFailures::parse("[[failure]]\nscenario=\"X\"\nreason=\"\"\n", true).is_err());
    }
}
