//! What a run found, scenario by scenario: the result types every later phase reads
//! (verdicts, known failures, reports) and the key that ties a result to its World.

use std::time::Duration;

use authconf_scenarios::{Deviation, FailureClass};

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Not run (an earlier step failed, or the scenario was skipped).
    Skipped,
}

/// One step as run.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// `Given`, `When`, ...
    pub keyword: String,
    /// The step text.
    pub text: String,
    /// Line in the feature file.
    pub line: usize,
    /// Outcome.
    pub status: StepStatus,
    /// Time taken.
    pub duration: Duration,
}

/// The verdict on one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Not run: the target lacks what the scenario needs (the reason).
    Skipped(String),
    /// Failed, and listed as a known failure (the reason).
    ExpectedFailure(String),
    /// Passed although listed as a known failure: fails the run.
    UnexpectedPass(String),
}

impl Verdict {
    /// Whether this verdict fails the run.
    pub fn fails_run(&self) -> bool {
        matches!(self, Verdict::Failed | Verdict::UnexpectedPass(_))
    }

    /// A short label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "FAILED",
            Verdict::Skipped(_) => "skipped",
            Verdict::ExpectedFailure(_) => "expected failure",
            Verdict::UnexpectedPass(_) => "UNEXPECTED PASS",
        }
    }
}

/// The failure of a scenario.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The failing step's text.
    pub step: String,
    /// The message (redacted).
    pub message: String,
    /// The last request and response of the scenario (redacted).
    pub exchange: Option<String>,
    /// The harness made this failure up (no step definition, a failing hook): class
    /// `harness` unless the message is marked.
    pub harness: bool,
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// Feature name.
    pub feature: String,
    /// Feature file.
    pub file: String,
    /// Scenario name (outline placeholders filled in).
    pub name: String,
    /// Tags of the feature and the scenario, without `@`.
    pub tags: Vec<String>,
    /// Line of the scenario (of the example row for outlines).
    pub line: usize,
    /// Verdict.
    pub verdict: Verdict,
    /// Time taken.
    pub duration: Duration,
    /// Steps.
    pub steps: Vec<StepResult>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// The class of a failure (`None` unless the verdict is a failure, expected or not).
    pub class: Option<FailureClass>,
    /// Format deviations recorded while the scenario went on.
    pub deviations: Vec<Deviation>,
}

/// The key deviations are recorded under: `<feature path>:<scenario line>`, exactly the
/// `file` and `line` of [`ScenarioResult`] (the harness's `before` hook gives it to each
/// World).
pub fn scenario_key(file: &str, line: usize) -> String {
    format!("{file}:{line}")
}
