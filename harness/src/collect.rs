//! A cucumber writer that collects each scenario's outcome (with the failing exchange from
//! its World) and prints progress; the reports are written from what it collected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authconf_scenarios::{AuthWorld, Deviation, FailureClass, RunContext};
use cucumber::event::{self, Cucumber, Feature, RetryableScenario, Rule, Scenario, StepError};
use cucumber::{gherkin, parser, Event, Writer};

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

type Key = (String, usize, usize);

struct Running {
    started: Instant,
    step_started: Instant,
    result: ScenarioResult,
}

/// Shared between the writer (owned by cucumber) and the run.
#[derive(Default)]
pub struct Collected {
    /// Finished scenarios, in finishing order.
    pub results: Vec<ScenarioResult>,
    /// Feature files that could not be parsed.
    pub parse_errors: Vec<String>,
    running: HashMap<Key, Running>,
}

/// The writer.
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    ctx: Arc<RunContext>,
    progress: bool,
    total_hint: usize,
}

impl Collector {
    /// A collector writing into `state`.
    pub fn new(
        state: Arc<Mutex<Collected>>,
        ctx: Arc<RunContext>,
        progress: bool,
        total_hint: usize,
    ) -> Self {
        Collector {
            state,
            ctx,
            progress,
            total_hint,
        }
    }

    fn scenario(
        &mut self,
        feat: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        sc: &gherkin::Scenario,
        ev: Scenario<AuthWorld>,
    ) {
        let file = feat
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let key: Key = (file.clone(), sc.position.line, sc.position.col);
        let mut st = self.state.lock().expect("collector poisoned");
        match ev {
            Scenario::Started => {
                let mut tags: Vec<String> = feat.tags.clone();
                if let Some(r) = rule {
                    tags.extend(r.tags.iter().cloned());
                }
                tags.extend(sc.tags.iter().cloned());
                st.running.insert(
                    key,
                    Running {
                        started: Instant::now(),
                        step_started: Instant::now(),
                        result: ScenarioResult {
                            feature: feat.name.clone(),
                            file,
                            name: sc.name.clone(),
                            tags,
                            line: sc.position.line,
                            verdict: Verdict::Passed,
                            duration: Duration::ZERO,
                            steps: Vec::new(),
                            failure: None,
                            class: None,
                            deviations: Vec::new(),
                        },
                    },
                );
            }
            Scenario::Step(step, se) | Scenario::Background(step, se) => {
                let Some(r) = st.running.get_mut(&key) else {
                    return;
                };
                let push = |status: StepStatus, r: &mut Running| {
                    r.result.steps.push(StepResult {
                        keyword: step.keyword.trim().to_owned(),
                        text: step.value.clone(),
                        line: step.position.line,
                        status,
                        duration: r.step_started.elapsed(),
                    });
                };
                match se {
                    event::Step::Started => r.step_started = Instant::now(),
                    event::Step::Passed(..) => push(StepStatus::Passed, r),
                    event::Step::Skipped => {
                        // A step with no definition: a bug in the feature, never a pass.
                        push(StepStatus::Failed, r);
                        r.result.verdict = Verdict::Failed;
                        r.result.failure.get_or_insert(Failure {
                            step: step.value.clone(),
                            message: "no step definition matches this step".into(),
                            exchange: None,
                            harness: true,
                        });
                    }
                    event::Step::Failed(_, _, world, err) => {
                        push(StepStatus::Failed, r);
                        r.result.verdict = Verdict::Failed;
                        let message = match &err {
                            StepError::Panic(info) => panic_text(info),
                            other => other.to_string(),
                        };
                        let exchange = world.as_ref().and_then(|w| w.failure_context());
                        r.result.failure.get_or_insert(Failure {
                            step: step.value.clone(),
                            message: self.ctx.secrets.redact(&message),
                            exchange,
                            harness: false,
                        });
                    }
                }
            }
            Scenario::Hook(_, event::Hook::Failed(_, info)) => {
                if let Some(r) = st.running.get_mut(&key) {
                    r.result.verdict = Verdict::Failed;
                    r.result.failure.get_or_insert(Failure {
                        step: "(hook)".into(),
                        message: self.ctx.secrets.redact(&panic_text(&info)),
                        exchange: None,
                        harness: true,
                    });
                }
            }
            Scenario::Finished => {
                let Some(mut r) = st.running.remove(&key) else {
                    return;
                };
                r.result.duration = r.started.elapsed();
                // Steps after a failure were not run: list them as skipped for the reports.
                let done = r.result.steps.len();
                let all: Vec<&gherkin::Step> = feat
                    .background
                    .iter()
                    .flat_map(|b| b.steps.iter())
                    .chain(sc.steps.iter())
                    .collect();
                for s in all.into_iter().skip(done) {
                    r.result.steps.push(StepResult {
                        keyword: s.keyword.trim().to_owned(),
                        text: s.value.clone(),
                        line: s.position.line,
                        status: StepStatus::Skipped,
                        duration: Duration::ZERO,
                    });
                }
                let deviations = self
                    .ctx
                    .take_deviations(&scenario_key(&r.result.file, r.result.line));
                crate::verdicts::decide(&mut r.result, deviations);
                if self.progress {
                    let n = st.results.len() + 1;
                    let mark = match (&r.result.verdict, r.result.class) {
                        (Verdict::Passed, _) => "ok  ".to_owned(),
                        (_, Some(c)) => format!("FAIL [{c}]"),
                        _ => "FAIL".to_owned(),
                    };
                    println!(
                        "[{n:>3}/{}] {mark} {} › {} ({} ms)",
                        self.total_hint,
                        r.result.feature,
                        r.result.name,
                        r.result.duration.as_millis()
                    );
                    if let Some(f) = &r.result.failure {
                        println!("           step: {}", f.step);
                        for line in f.message.lines().take(4) {
                            println!("           {line}");
                        }
                    }
                }
                st.results.push(r.result);
            }
            _ => {}
        }
    }
}

/// The key deviations are recorded under: `<feature path>:<scenario line>`, exactly the
/// `file` and `line` of [`ScenarioResult`] (the harness's `before` hook gives it to each
/// World).
pub fn scenario_key(file: &str, line: usize) -> String {
    format!("{file}:{line}")
}

fn panic_text(info: &event::Info) -> String {
    if let Some(s) = info.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = info.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "the step panicked".into()
    }
}

impl Writer<AuthWorld> for Collector {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(
        &mut self,
        ev: parser::Result<Event<Cucumber<AuthWorld>>>,
        _cli: &Self::Cli,
    ) {
        match ev {
            Err(e) => {
                let msg = e.to_string();
                if self.progress {
                    eprintln!("feature file error: {msg}");
                }
                self.state
                    .lock()
                    .expect("collector poisoned")
                    .parse_errors
                    .push(msg);
            }
            Ok(ev) => match ev.value {
                Cucumber::Feature(feat, Feature::Scenario(sc, RetryableScenario { event, .. })) => {
                    self.scenario(&feat, None, &sc, event);
                }
                Cucumber::Feature(
                    feat,
                    Feature::Rule(rule, Rule::Scenario(sc, RetryableScenario { event, .. })),
                ) => {
                    self.scenario(&feat, Some(&rule), &sc, event);
                }
                _ => {}
            },
        }
    }
}

// The collector keys every event by its scenario, so it needs no reordering of the
// concurrently running scenarios' events (which `writer::Normalize` would buffer, delaying
// the progress lines).
impl cucumber::writer::Normalized for Collector {}
