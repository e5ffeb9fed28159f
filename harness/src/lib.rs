//! `authconf`: runs the Gherkin conformance suite of docs/contract.md against the embedded
//! reference `auth-service` or any deployment, and writes reports.
//!
//! The binary is a thin wrapper over [`run_suite`], [`list_features`] and [`cleanup`], so that
//! tests can run the suite programmatically against fake targets (wiremock) and check the
//! verdict of each scenario.
//!
//! Safety against shared deployments: every tenant the suite creates has the slug
//! `authconf-<run id>-...`, is written to `reports/<run id>/ledger.jsonl` before the create
//! call, and is deleted at the end of the run, after failures and after Ctrl-C too.
//!
//! This file only declares and re-exports. The modules form a stack, each importing only
//! those listed above it: errors, HTTP and run ids; options and results; verdicts, latency,
//! capabilities and the outcome; known failures, listing and selection; the target,
//! preflight and mail; collection and cleanup; reports; the run, which calls them in order
//! (select, target, capabilities, scenarios, cleanup, verdicts, reports).

// The bottom: no harness imports.
pub mod error;
mod http;
mod run_id;
// What a run is asked and what it finds, scenario by scenario.
pub mod options;
pub mod results;
// Judging: failure classes and causes; latency figures and capabilities; the whole outcome.
pub mod verdicts;

pub mod capabilities;
pub mod latency;

pub mod outcome;
// The suite as written and the part of it a run takes.
pub mod known;
pub mod listing;
pub mod rules;
mod select;
// The target.
pub mod mail;
pub mod preflight;
mod target;
// During and after the scenarios.
pub mod cleanup;
pub mod collect;
pub mod report;
// The phases in order.
mod run;
// `authconf bench`: a separate command over the same run ids.
pub mod bench;

pub use capabilities::{CapabilityLine, Source as CapabilitySource};
pub use cleanup::{cleanup, CleanupOutcome};
pub use error::RunError;
pub use known::KnownFailures;
pub use latency::Latency;
pub use listing::{list_features, parse_features, Listed};
pub use options::{FailOn, RunOptions, Slo, Target};
pub use outcome::{RunOutcome, EXIT_INTERRUPTED};
pub use results::{Failure, ScenarioResult, StepResult, StepStatus, Verdict};
pub use run::run_suite;
pub use run_id::new_run_id;
pub use select::skip_reason;
pub use verdicts::Cause;
