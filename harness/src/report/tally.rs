//! Counts by verdict, by feature and by area (the tags that name an area of the suite), for
//! the tables of every summary.

use std::collections::BTreeMap;

use crate::results::{ScenarioResult, Verdict};

/// Tags that name an area of the suite.
pub const AREAS: &[&str] = &[
    "isolation",
    "secrecy",
    "rotation",
    "errors",
    "contract",
    "admin",
    "rate-limit",
    "durable-object",
    "user-auth",
    "email",
    "onboarding",
    "jwt-rotation",
];

/// Counts by verdict.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed (including unexpected passes).
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Expected failures.
    pub expected: usize,
}

impl Counts {
    fn add(&mut self, v: &Verdict) {
        match v {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed | Verdict::UnexpectedPass(_) => self.failed += 1,
            Verdict::Skipped(_) => self.skipped += 1,
            Verdict::ExpectedFailure(_) => self.expected += 1,
        }
    }
}

/// Counts by feature and by area.
pub fn tallies(
    results: &[ScenarioResult],
) -> (BTreeMap<String, Counts>, BTreeMap<String, Counts>, Counts) {
    let mut by_feature: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_area: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for r in results {
        by_feature
            .entry(r.feature.clone())
            .or_default()
            .add(&r.verdict);
        let mut areas: Vec<&str> = r
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| AREAS.contains(t))
            .collect();
        areas.sort_unstable();
        areas.dedup();
        if areas.is_empty() {
            areas.push("(no area)");
        }
        for a in areas {
            by_area.entry(a.to_owned()).or_default().add(&r.verdict);
        }
        total.add(&r.verdict);
    }
    (by_feature, by_area, total)
}
