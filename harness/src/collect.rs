//! A cucumber writer that collects each scenario's outcome (with the failing exchange from
//! its World) and prints progress; the reports are written from what it collected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authconf_scenarios::{AuthWorld, RunContext};
use cucumber::event::{self, Cucumber, Feature, RetryableScenario, Rule, Scenario, StepError};
use cucumber::{gherkin, parser, Event, Writer};

use crate::results::{scenario_key, Failure, ScenarioResult, StepResult, StepStatus, Verdict};

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
                st.running.insert(key, started(feat, rule, sc, file));
            }
            Scenario::Step(step, se) | Scenario::Background(step, se) => {
                if let Some(r) = st.running.get_mut(&key) {
                    self.step(r, &step, se);
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
                if let Some(r) = st.running.remove(&key) {
                    self.finished(&mut st, feat, sc, r);
                }
            }
            _ => {}
        }
    }

    /// Records one step's event in its running scenario.
    fn step(&self, r: &mut Running, step: &gherkin::Step, se: event::Step<AuthWorld>) {
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

    /// Completes a finished scenario (steps not run, deviations, verdict), prints its
    /// progress line and files it.
    fn finished(
        &self,
        st: &mut Collected,
        feat: &gherkin::Feature,
        sc: &gherkin::Scenario,
        mut r: Running,
    ) {
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
            self.progress_line(st.results.len() + 1, &r.result);
        }
        st.results.push(r.result);
    }

    /// `[ n/total] ok   Feature › Scenario (ms)`, with the failing step and message.
    fn progress_line(&self, n: usize, r: &ScenarioResult) {
        let mark = match (&r.verdict, r.class) {
            (Verdict::Passed, _) => "ok  ".to_owned(),
            (_, Some(c)) => format!("FAIL [{c}]"),
            _ => "FAIL".to_owned(),
        };
        println!(
            "[{n:>3}/{}] {mark} {} › {} ({} ms)",
            self.total_hint,
            r.feature,
            r.name,
            r.duration.as_millis()
        );
        if let Some(f) = &r.failure {
            println!("           step: {}", f.step);
            for line in f.message.lines().take(4) {
                println!("           {line}");
            }
        }
    }
}

/// A scenario that has just started: its tags (feature, rule, scenario) and a passing
/// verdict until a step says otherwise.
fn started(
    feat: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    sc: &gherkin::Scenario,
    file: String,
) -> Running {
    let mut tags: Vec<String> = feat.tags.clone();
    if let Some(r) = rule {
        tags.extend(r.tags.iter().cloned());
    }
    tags.extend(sc.tags.iter().cloned());
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
    }
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
