//! Which scenarios a run takes: the `--tags` expression and `--name` pattern choose them,
//! and the skip rules set aside, with a reason, those the target cannot run (an `@needs-*`
//! capability it lacks, `@destructive` on a shared deployment).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authconf_scenarios::Capabilities;
use cucumber::gherkin;
use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::tag::Ext as _;

use crate::error::RunError;
use crate::options::RunOptions;
use crate::results::{ScenarioResult, StepResult, StepStatus, Verdict};

/// The operator's choice of scenarios: a tag expression and a pattern on names.
#[derive(Clone)]
pub(crate) struct Selection {
    tags: Option<TagOperation>,
    name: Option<regex::Regex>,
}

impl Selection {
    /// `--tags` and `--name` of the options, checked (a bad one is a usage error).
    pub(crate) fn from_options(opts: &RunOptions) -> Result<Self, RunError> {
        let tags = opts
            .tags
            .as_deref()
            .map(|t| {
                t.parse::<TagOperation>()
                    .map_err(|e| RunError::Usage(format!("--tags {t:?}: {e}")))
            })
            .transpose()?;
        let name = opts
            .name
            .as_deref()
            .map(|n| {
                regex::Regex::new(n).map_err(|e| RunError::Usage(format!("--name {n:?}: {e}")))
            })
            .transpose()?;
        Ok(Selection { tags, name })
    }

    /// Whether the scenario with this name and these (inherited) tags is selected.
    pub(crate) fn chosen(&self, name: &str, tags: &[String]) -> bool {
        self.tags.as_ref().is_none_or(|t| t.eval(tags.iter()))
            && self.name.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// What the skip rules judge a scenario's tags against.
#[derive(Clone)]
pub(crate) struct SkipRules {
    /// What the target offers.
    pub(crate) caps: Capabilities,
    /// The target is the embedded reference (destructive scenarios are safe there).
    pub(crate) embedded: bool,
    /// `--allow-destructive`.
    pub(crate) allow_destructive: bool,
    /// The routing base domain, when known.
    pub(crate) base_domain: Option<String>,
}

/// Why a scenario with these tags cannot run on this target, if it cannot.
///
/// A capability the target claims is taken at its word: the scenario runs and fails if the
/// target does not deliver.
pub fn skip_reason(
    tags: &[String],
    caps: &Capabilities,
    embedded: bool,
    allow_destructive: bool,
    base_domain: Option<&str>,
) -> Option<String> {
    for t in tags {
        let why = match t.as_str() {
            "destructive" if !embedded && !allow_destructive => {
                Some("@destructive needs --allow-destructive on a non-embedded target".to_owned())
            }
            "needs-test-controls" if !caps.test_control("enabled") => {
                Some("the target offers no test controls (testControls.enabled)".into())
            }
            "needs-clock" if !caps.test_control("clock") => {
                Some("the target offers no settable clock (testControls.clock)".into())
            }
            "needs-evict" if !caps.test_control("evict") => {
                Some("the target cannot evict objects (testControls.evict)".into())
            }
            "needs-alarms" if !caps.test_control("alarms") => {
                Some("the target cannot fire alarms on demand (testControls.alarms)".into())
            }
            "needs-rate-limit" if !caps.feature("rateLimit") => {
                Some("the target declares no rate limiting (features.rateLimit)".into())
            }
            "needs-rate-limit-override" if !caps.rate_limit_override => {
                Some("the target declares no rate-limit override (rateLimit.override)".into())
            }
            "needs-durable-objects" | "needs-audit-log" if !caps.feature("auditLog") => {
                Some("the target declares no audit log (features.auditLog)".into())
            }
            "needs-events" if !caps.feature("events") => {
                Some("the target declares no WebSocket events (features.events)".into())
            }
            "needs-graph" if !caps.feature("graph") => {
                Some("the target declares no graph (features.graph)".into())
            }
            "needs-admin-dashboard" if !caps.feature("adminDashboard") => Some(
                "the target declares no admin dashboard and usage metrics (features.adminDashboard)"
                    .into(),
            ),
            "needs-user-auth" if !caps.feature("userAuth") => {
                Some("the target declares no end-user auth (features.userAuth)".into())
            }
            "needs-mail" if !caps.feature("mailCapture") => Some(
                "the target offers no mail capture that authconf can read (features.mailCapture; the embedded reference gets a wiremock mail API)"
                    .into(),
            ),
            "needs-jwt-secret" if !caps.feature("jwtSecretKnown") => Some(
                "the harness does not know the target's JWT_SECRET (set AUTHCONF_JWT_SECRET)"
                    .into(),
            ),
            "needs-subdomain" if base_domain.is_none() => {
                Some("no routing base domain (the target declares none; pass --base-domain)".into())
            }
            "needs-capabilities" if !caps.present => {
                Some("the target serves no /.well-known/authconf".into())
            }
            _ => None,
        };
        if why.is_some() {
            return why;
        }
    }
    None
}

/// The cucumber filter of a run: a selected scenario runs unless the skip rules set it aside;
/// those are recorded once each in `skipped`, as skipped with their reason.
pub(crate) fn scenario_filter(
    selection: Selection,
    rules: SkipRules,
    skipped: Arc<Mutex<Vec<ScenarioResult>>>,
) -> impl Fn(&gherkin::Feature, Option<&gherkin::Rule>, &gherkin::Scenario) -> bool + 'static {
    move |feat: &gherkin::Feature, rule: Option<&gherkin::Rule>, sc: &gherkin::Scenario| {
        let tags = scenario_tags(feat, rule, sc);
        if !selection.chosen(&sc.name, &tags) {
            return false;
        }
        match skip_reason(
            &tags,
            &rules.caps,
            rules.embedded,
            rules.allow_destructive,
            rules.base_domain.as_deref(),
        ) {
            None => true,
            Some(why) => {
                let mut s = skipped.lock().expect("skip list poisoned");
                let file = feat
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if !s
                    .iter()
                    .any(|r| r.file == file && r.line == sc.position.line)
                {
                    s.push(skipped_result(feat, sc, file, tags, why));
                }
                false
            }
        }
    }
}

/// A scenario's tags with those it inherits: the feature's, then the rule's, then its own.
pub(crate) fn scenario_tags(
    feat: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    sc: &gherkin::Scenario,
) -> Vec<String> {
    feat.tags
        .iter()
        .chain(rule.iter().flat_map(|r| r.tags.iter()))
        .chain(sc.tags.iter())
        .cloned()
        .collect()
}

/// A scenario the target cannot run, reported as skipped with the reason.
fn skipped_result(
    feat: &gherkin::Feature,
    sc: &gherkin::Scenario,
    file: String,
    tags: Vec<String>,
    why: String,
) -> ScenarioResult {
    ScenarioResult {
        feature: feat.name.clone(),
        file,
        name: sc.name.clone(),
        tags,
        line: sc.position.line,
        verdict: Verdict::Skipped(why),
        duration: Duration::ZERO,
        steps: sc
            .steps
            .iter()
            .map(|st| StepResult {
                keyword: st.keyword.trim().to_owned(),
                text: st.value.clone(),
                line: st.position.line,
                status: StepStatus::Skipped,
                duration: Duration::ZERO,
            })
            .collect(),
        failure: None,
        class: None,
        deviations: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_need_reasons() {
        let caps = Capabilities::basic();
        let t = |s: &str| vec![s.to_owned()];
        assert!(skip_reason(&t("needs-rate-limit"), &caps, true, false, None).is_some());
        assert!(skip_reason(&t("destructive"), &caps, false, false, None).is_some());
        assert!(skip_reason(&t("destructive"), &caps, true, false, None).is_none());
        assert!(skip_reason(&t("needs-subdomain"), &caps, true, false, Some("a.test")).is_none());
        assert!(skip_reason(&t("isolation"), &caps, false, false, None).is_none());
        for tag in ["needs-user-auth", "needs-mail", "needs-jwt-secret"] {
            assert!(
                skip_reason(&t(tag), &caps, true, false, None).is_some(),
                "{tag}"
            );
        }
        let mut caps = Capabilities::basic();
        for f in ["userAuth", "mailCapture", "jwtSecretKnown"] {
            caps.features.insert(f.into(), true);
        }
        for tag in ["needs-user-auth", "needs-mail", "needs-jwt-secret"] {
            assert!(
                skip_reason(&t(tag), &caps, false, false, None).is_none(),
                "{tag}"
            );
        }
    }
}
