//! Options of a run, shared by the CLI and by tests that run the suite programmatically.

use std::path::PathBuf;
use std::time::Duration;

use authconf_scenarios::FailureClass;

use crate::error::RunError;

/// Which deployment the suite checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The reference `auth-service`, started in-process on `127.0.0.1:0` with a temporary
    /// data dir and test controls on.
    Embedded,
    /// Any deployment, by base URL.
    Url(String),
}

/// A latency gate: `p99<300ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Percentile (1..=100).
    pub percentile: u8,
    /// The bound.
    pub max: Duration,
    /// `<=` rather than `<`.
    pub inclusive: bool,
    /// The text as given.
    pub text: String,
}

impl Slo {
    /// Parses `p99<300ms`, `p95<=1s`, `p50<20ms`.
    pub fn parse(text: &str) -> Result<Self, RunError> {
        let re = regex::Regex::new(r"^p(\d{1,3})\s*(<=|<)\s*(\d+(?:\.\d+)?)\s*(ms|s)$")
            .expect("static regex");
        let t = text.trim();
        let c = re.captures(t).ok_or_else(|| {
            RunError::Usage(format!(
                "--slo {text:?}: expected e.g. 'p99<300ms' or 'p95<=1s'"
            ))
        })?;
        let percentile: u8 = c[1]
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| RunError::Usage(format!("--slo {text:?}: percentile 1..100")))?;
        let n: f64 = c[3]
            .parse()
            .map_err(|_| RunError::Usage(format!("--slo {text:?}")))?;
        let max = if &c[4] == "ms" {
            Duration::from_secs_f64(n / 1000.0)
        } else {
            Duration::from_secs_f64(n)
        };
        Ok(Slo {
            percentile,
            max,
            inclusive: &c[2] == "<=",
            text: t.to_owned(),
        })
    }

    /// Whether a measured percentile meets the bound.
    pub fn met_by(&self, d: Duration) -> bool {
        if self.inclusive {
            d <= self.max
        } else {
            d < self.max
        }
    }
}

/// Parses `Name: value` (`--header`).
pub fn parse_header(text: &str) -> Result<(String, String), RunError> {
    let (k, v) = text
        .split_once(':')
        .ok_or_else(|| RunError::Usage(format!("--header {text:?}: expected 'Name: value'")))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(RunError::Usage(format!(
            "--header {text:?}: bad header name"
        )));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

/// Which failures make the run fail (`--fail-on`): a team can gate on security first while
/// it fixes formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// Only `security` failures and findings.
    Security,
    /// `security` and `conformance`.
    Conformance,
    /// Every failure, `blocked` and `harness` included (the default).
    #[default]
    Any,
}

impl FailOn {
    /// Parses `security`, `conformance` or `any`.
    pub fn parse(text: &str) -> Result<Self, RunError> {
        match text.trim() {
            "security" => Ok(FailOn::Security),
            "conformance" => Ok(FailOn::Conformance),
            "any" => Ok(FailOn::Any),
            t => Err(RunError::Usage(format!(
                "--fail-on {t:?}: expected security, conformance or any"
            ))),
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FailOn::Security => "security",
            FailOn::Conformance => "conformance",
            FailOn::Any => "any",
        }
    }

    /// Whether a failure of `class` fails the run. A failure without a class (none is
    /// decided only for verdicts that are no failure) gates like `any`.
    pub fn gates(self, class: Option<FailureClass>) -> bool {
        match (self, class) {
            (FailOn::Any, _) => true,
            (_, None) => false,
            (FailOn::Security, Some(c)) => c == FailureClass::Security,
            (FailOn::Conformance, Some(c)) => {
                matches!(c, FailureClass::Security | FailureClass::Conformance)
            }
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The target.
    pub target: Target,
    /// Platform admin key of a URL target (`AUTHCONF_ADMIN_KEY`); the embedded reference
    /// gets a fresh one.
    pub admin_key: Option<String>,
    /// The `JWT_SECRET` of a URL target (`AUTHCONF_JWT_SECRET`), for scenarios that sign
    /// tokens independently (`@needs-jwt-secret`); the embedded reference gets a fresh one.
    pub jwt_secret: Option<String>,
    /// Routing base domain for subdomain scenarios; defaults to the one the target declares.
    pub base_domain: Option<String>,
    /// For a URL target: where authconf listens as the target's mail API (`--mail-capture`),
    /// with the key the target sends (`AUTHCONF_MAIL_KEY`, optional), so `@needs-mail`
    /// scenarios run. The target must be configured to send to `http://ADDR/send`.
    pub mail_capture: Option<(std::net::SocketAddr, Option<String>)>,
    /// Extra headers for every request.
    pub headers: Vec<(String, String)>,
    /// The feature files (a directory or one file).
    pub features: PathBuf,
    /// Cucumber tag expression (`@isolation and not @slow`).
    pub tags: Option<String>,
    /// Regex on scenario names.
    pub name: Option<String>,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// Scenarios run at once (`@serial` ones alone).
    pub concurrency: usize,
    /// Allows `@destructive` scenarios on a URL target.
    pub allow_destructive: bool,
    /// File of known failures.
    pub known_failures: Option<PathBuf>,
    /// Latency gates.
    pub slo: Vec<Slo>,
    /// Where `<run id>/` and `latest` go.
    pub report_dir: PathBuf,
    /// Print a line per finished scenario.
    pub progress: bool,
    /// Print the summary table at the end.
    pub summary: bool,
    /// Which failure classes fail the run (`--fail-on`).
    pub fail_on: FailOn,
    /// A capabilities document for a target that serves none, or to correct the one it
    /// serves (`--capabilities FILE`: the JSON of `/.well-known/authconf`).
    pub capabilities_file: Option<PathBuf>,
    /// Capabilities taken as offered whatever the target declares (`--assume NAME`,
    /// `NAME=false` to take one as absent): a feature (`userAuth`), `testControls.<name>` or
    /// `rateLimit.override`.
    pub assume: Vec<String>,
}

/// The repository's `features/` when run from the workspace, else `./features`.
pub fn default_features_dir() -> PathBuf {
    let here = PathBuf::from("features");
    if here.is_dir() {
        return here;
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features");
    if beside.is_dir() {
        return beside;
    }
    here
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            target: Target::Embedded,
            admin_key: None,
            jwt_secret: None,
            base_domain: None,
            mail_capture: None,
            headers: Vec::new(),
            features: default_features_dir(),
            tags: None,
            name: None,
            fail_fast: false,
            concurrency: 8,
            allow_destructive: false,
            known_failures: None,
            slo: Vec::new(),
            report_dir: PathBuf::from("reports"),
            progress: true,
            summary: true,
            fail_on: FailOn::Any,
            capabilities_file: None,
            assume: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_parses() {
        let s = Slo::parse("p99<300ms").unwrap();
        assert_eq!(s.percentile, 99);
        assert_eq!(s.max, Duration::from_millis(300));
        assert!(s.met_by(Duration::from_millis(299)));
        assert!(!s.met_by(Duration::from_millis(300)));
        assert!(Slo::parse("p95<=1s")
            .unwrap()
            .met_by(Duration::from_secs(1)));
        assert!(Slo::parse("fast").is_err());
        assert!(Slo::parse("p0<1ms").is_err());
    }

    #[test]
    fn fail_on_gates_by_class() {
        use FailureClass::*;
        assert!(FailOn::Security.gates(Some(Security)));
        assert!(!FailOn::Security.gates(Some(Conformance)));
        assert!(FailOn::Conformance.gates(Some(Conformance)));
        assert!(!FailOn::Conformance.gates(Some(Blocked)));
        assert!(FailOn::Any.gates(Some(Harness)));
        assert_eq!(FailOn::parse("security").unwrap(), FailOn::Security);
        assert!(FailOn::parse("all").is_err());
    }

    #[test]
    fn header_parses() {
        assert_eq!(
            parse_header("CF-Access-Client-Id: abc").unwrap(),
            ("CF-Access-Client-Id".into(), "abc".into())
        );
        assert!(parse_header("nocolon").is_err());
    }
}
