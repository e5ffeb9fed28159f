//! What a run found, as a whole: every scenario's result, the run-wide findings and figures,
//! and the exit code they make. The reports, the CLI and the tests read it; it sits above the
//! phases that fill it (results, verdicts, latency, capabilities) and below those that read it.

use std::path::PathBuf;
use std::time::Duration;

use authconf_scenarios::{FailureClass, Propagation};

use crate::capabilities::CapabilityLine;
use crate::latency::Latency;
use crate::options::FailOn;
use crate::results::{ScenarioResult, Verdict};
use crate::verdicts::{self, Cause};

/// Exit code of an interrupted run (Ctrl-C), as shells report SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run id (`yyMMddHHmmss-xxxx`).
    pub run_id: String,
    /// `reports/<run id>`.
    pub report_path: PathBuf,
    /// The target as shown in reports (`embedded reference (http://...)` or the URL).
    pub target: String,
    /// Every selected scenario, skipped ones included.
    pub scenarios: Vec<ScenarioResult>,
    /// Latency by endpoint.
    pub latencies: Vec<Latency>,
    /// Propagation delays measured by polling steps.
    pub propagation: Vec<Propagation>,
    /// SLO gates that were missed.
    pub slo_violations: Vec<String>,
    /// Feature files that failed to parse.
    pub parse_errors: Vec<String>,
    /// Known-failure entries that matched no selected scenario (warnings).
    pub unused_known_failures: Vec<String>,
    /// Tenants that could not be deleted at the end.
    pub cleanup_errors: Vec<String>,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    /// Suite wall time (target start to the last scenario).
    pub wall: Duration,
    /// Time spent deleting the run's tenants afterwards.
    pub cleanup_time: Duration,
    /// Tenants this run's cleanup deleted (and confirmed gone).
    pub tenants_deleted: usize,
    /// The run's tenants that were already gone (never created, or deleted by a scenario).
    pub tenants_already_gone: usize,
    /// Deleted tenants whose key was tried after the delete.
    pub deleted_keys_checked: usize,
    /// Which failure classes fail the run.
    pub fail_on: FailOn,
    /// Run-wide findings that are no scenario's failure (non-unique tokens, keys of deleted
    /// tenants that still authenticate), redacted.
    pub findings: Vec<(FailureClass, String)>,
    /// Dialect fallbacks setup steps used, each once.
    pub fallbacks: Vec<String>,
    /// Every capability the run used, with where it came from.
    pub capabilities: Vec<CapabilityLine>,
}

impl RunOutcome {
    /// 0 passed, 1 a failure of a class `--fail-on` gates on (a failed scenario or a
    /// finding), a known failure that passed, a missed SLO or a feature file error; 130
    /// interrupted.
    pub fn exit_code(&self) -> i32 {
        let gated = self.scenarios.iter().any(|r| match r.verdict {
            Verdict::Failed => self.fail_on.gates(r.class),
            Verdict::UnexpectedPass(_) => true,
            _ => false,
        }) || self
            .findings
            .iter()
            .any(|(c, _)| self.fail_on.gates(Some(*c)));
        if self.interrupted {
            EXIT_INTERRUPTED
        } else if gated || !self.slo_violations.is_empty() || !self.parse_errors.is_empty() {
            1
        } else {
            0
        }
    }

    /// Failures grouped by cause, most scenarios first.
    pub fn causes(&self) -> Vec<Cause> {
        verdicts::causes(&self.scenarios)
    }

    /// The result of the scenario with this name.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|r| r.name == name)
    }
}
