//! What the target offers, and where each answer came from.
//!
//! Sources, strongest first: `--assume NAME` (the operator's word), `--capabilities FILE`
//! (the JSON of `/.well-known/authconf`, merged over the target's own document), the
//! target's document, the harness itself (`mailCapture`, `jwtSecretKnown`), and probes for
//! features nobody declared: `GET /openapi.json` (a documented route is evidence) and one
//! safe request per feature. A request probe counts only when the route answers otherwise
//! than a route that cannot exist in the same namespace (`/v1/authconf-probe-…`), so a
//! gateway that answers 401 to everything proves nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use authconf_scenarios::Capabilities;
use serde_json::Value;

use crate::error::RunError;

/// Features a scenario can need (`skip_reason`), in report order.
pub const FEATURES: &[&str] = &[
    "apiKeys",
    "userAuth",
    "adminDashboard",
    "graph",
    "events",
    "auditLog",
    "rateLimit",
    "mailCapture",
    "jwtSecretKnown",
];

/// Test controls a scenario can need.
pub const TEST_CONTROLS: &[&str] = &["enabled", "clock", "evict", "alarms"];

/// Features only the harness can decide (it installed a mail capture; it knows the secret).
const HARNESS_ONLY: &[&str] = &["mailCapture", "jwtSecretKnown"];

/// Where a capability's answer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The target's `/.well-known/authconf`.
    Document,
    /// `--capabilities FILE`.
    File(String),
    /// `--assume`.
    Assumed,
    /// A probe, with its evidence.
    Probe(String),
    /// The harness's own setup (mail capture, known JWT secret).
    Harness(String),
    /// Nothing declared it and no probe found it.
    Undeclared(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Document => f.write_str("document (/.well-known/authconf)"),
            Source::File(p) => write!(f, "option --capabilities {p}"),
            Source::Assumed => f.write_str("option --assume"),
            Source::Probe(e) => write!(f, "probe: {e}"),
            Source::Harness(e) => write!(f, "harness: {e}"),
            Source::Undeclared(e) => write!(f, "not declared: {e}"),
        }
    }
}

impl Source {
    /// `document`, `option`, `probe`, `harness` or `none`: the column of the report table.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Document => "document",
            Source::File(_) | Source::Assumed => "option",
            Source::Probe(_) => "probe",
            Source::Harness(_) => "harness",
            Source::Undeclared(_) => "none",
        }
    }
}

/// One capability as the run used it.
#[derive(Debug, Clone)]
pub struct CapabilityLine {
    /// `userAuth`, `testControls.clock`, `rateLimit.override`.
    pub name: String,
    /// Offered.
    pub enabled: bool,
    /// Where that came from.
    pub source: Source,
}

/// Merges `over` into `base`: objects key by key (recursively), anything else replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Reads `--capabilities FILE`.
pub fn load_file(path: &Path) -> Result<Value, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("--capabilities {}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| RunError::Usage(format!("--capabilities {}: {e}", path.display())))?;
    if !v.is_object() {
        return Err(RunError::Usage(format!(
            "--capabilities {}: expected a JSON object like /.well-known/authconf",
            path.display()
        )));
    }
    Ok(v)
}

/// `--assume NAME` or `NAME=false` as a JSON pointer and a value.
fn assumption(text: &str) -> Result<(String, String, bool), RunError> {
    let (name, on) = match text.split_once('=') {
        Some((n, v)) => match v.trim() {
            "true" | "yes" | "on" => (n.trim(), true),
            "false" | "no" | "off" => (n.trim(), false),
            v => {
                return Err(RunError::Usage(format!(
                    "--assume {text:?}: {v:?} is not true or false"
                )))
            }
        },
        None => (text.trim(), true),
    };
    let name = name.trim_start_matches("features.");
    if HARNESS_ONLY.contains(&name) {
        return Err(RunError::Usage(format!(
            "--assume {name}: the harness decides this one ({})",
            if name == "mailCapture" {
                "use --mail-capture"
            } else {
                "set AUTHCONF_JWT_SECRET"
            }
        )));
    }
    let pointer = if let Some(tc) = name.strip_prefix("testControls.") {
        format!("/testControls/{tc}")
    } else if name == "rateLimit.override" {
        "/rateLimit/override".to_owned()
    } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format!("/features/{name}")
    } else {
        return Err(RunError::Usage(format!(
            "--assume {text:?}: expected a feature (userAuth, graph, events, auditLog, rateLimit, adminDashboard, ...), testControls.<name> or rateLimit.override"
        )));
    };
    Ok((name.to_owned(), pointer, on))
}

/// Checks the `--assume` values before anything is started (usage errors exit 2 early).
pub fn check_assumptions(assume: &[String]) -> Result<(), RunError> {
    assume.iter().try_for_each(|a| assumption(a).map(|_| ()))
}

fn set_pointer(doc: &mut Value, pointer: &str, v: bool) {
    let mut cur = doc;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let m = cur.as_object_mut().expect("made an object");
        if i + 1 == parts.len() {
            m.insert((*p).to_owned(), Value::Bool(v));
            return;
        }
        cur = m.entry((*p).to_owned()).or_insert(Value::Null);
    }
}

fn declared(doc: Option<&Value>, pointer: &str) -> bool {
    doc.and_then(|d| d.pointer(pointer))
        .is_some_and(|v| !v.is_null())
}

/// What decides the capabilities before probing.
pub struct Inputs<'a> {
    /// The target's own document, if it serves one.
    pub document: Option<&'a Value>,
    /// `--capabilities FILE`, loaded, with its path.
    pub file: Option<(&'a Value, String)>,
    /// `--assume` values.
    pub assume: &'a [String],
}

/// The merged document and the source of each declared capability.
pub fn resolve(inputs: &Inputs<'_>) -> Result<(Value, BTreeMap<String, Source>), RunError> {
    let mut merged = inputs
        .document
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"features": {"apiKeys": true}}));
    let mut sources = BTreeMap::new();
    let names = FEATURES
        .iter()
        .map(|f| ((*f).to_owned(), format!("/features/{f}")))
        .chain(
            TEST_CONTROLS
                .iter()
                .map(|t| (format!("testControls.{t}"), format!("/testControls/{t}"))),
        )
        .chain([(
            "rateLimit.override".to_owned(),
            "/rateLimit/override".to_owned(),
        )]);
    let names: Vec<(String, String)> = names.collect();
    for (name, pointer) in &names {
        if declared(inputs.document, pointer) {
            sources.insert(name.clone(), Source::Document);
        } else if inputs.document.is_none() && name == "apiKeys" {
            sources.insert(
                name.clone(),
                Source::Undeclared("assumed: every target has tenants and API keys".into()),
            );
        }
    }
    // Features beyond the ones scenarios need (`platformAdmins`, ...) keep their source too.
    let extra = |doc: &Value| -> Vec<String> {
        doc.get("features")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    if let Some(doc) = inputs.document {
        for k in extra(doc) {
            sources.entry(k).or_insert(Source::Document);
        }
    }
    if let Some((file, path)) = &inputs.file {
        for k in extra(file) {
            sources.insert(k, Source::File(path.clone()));
        }
        merge(&mut merged, file);
        for (name, pointer) in &names {
            if declared(Some(file), pointer) {
                sources.insert(name.clone(), Source::File(path.clone()));
            }
        }
    }
    for a in inputs.assume {
        let (name, pointer, on) = assumption(a)?;
        set_pointer(&mut merged, &pointer, on);
        sources.insert(name, Source::Assumed);
    }
    Ok((merged, sources))
}

/// Capabilities from the merged document; `present` and `raw` keep telling whether the
/// target itself serves the document (the `@contract` scenario judges the target's).
pub fn capabilities_of(merged: &Value, target_document: Option<&Value>) -> Capabilities {
    let mut caps = Capabilities::from_document(merged);
    caps.present = target_document.is_some();
    caps.raw = target_document.cloned();
    caps
}

/// One probe: a feature, the documented path prefixes that are evidence of it, and a safe
/// request (with or without the admin key) whose answer shows the route exists.
struct Probe {
    feature: &'static str,
    documented: &'static [&'static str],
    path: &'static str,
    admin: bool,
}

const PROBES: &[Probe] = &[
    Probe {
        feature: "userAuth",
        documented: &["/v1/auth/"],
        path: "/v1/auth/me",
        admin: false,
    },
    Probe {
        feature: "adminDashboard",
        documented: &["/admin/dashboard", "/admin/metrics"],
        path: "/admin/dashboard",
        admin: true,
    },
    Probe {
        feature: "graph",
        documented: &["/v1/graph"],
        path: "/v1/graph/state",
        admin: false,
    },
    Probe {
        feature: "events",
        documented: &["/v1/events"],
        path: "/v1/events",
        admin: false,
    },
    Probe {
        feature: "auditLog",
        documented: &["/v1/audit"],
        path: "/v1/audit-log",
        admin: false,
    },
];

/// How the probes reach the target.
pub struct Prober<'a> {
    /// HTTP client.
    pub http: &'a reqwest::Client,
    /// Base URL.
    pub base: &'a str,
    /// The platform admin key.
    pub admin_key: Option<&'a str>,
    /// Extra headers.
    pub headers: &'a [(String, String)],
}

impl Prober<'_> {
    async fn status(&self, path: &str, admin: bool) -> Option<u16> {
        let mut rb = self.http.get(format!("{}{path}", self.base));
        if admin {
            rb = rb.bearer_auth(self.admin_key?);
        }
        let rb = crate::http::with_headers(rb, self.headers);
        rb.send().await.ok().map(|r| r.status().as_u16())
    }

    /// Paths `GET /openapi.json` documents (empty when it is not served).
    async fn documented_paths(&self) -> Vec<String> {
        let rb = crate::http::with_headers(
            self.http.get(format!("{}/openapi.json", self.base)),
            self.headers,
        );
        let Ok(r) = rb.send().await else {
            return Vec::new();
        };
        if !r.status().is_success() {
            return Vec::new();
        }
        r.json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("paths").and_then(Value::as_object).cloned())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// One request: evidence when the route answers as an existing route does (a refusal of
    /// the missing token, or 2xx with the admin key) and otherwise than a made-up route of
    /// the same namespace.
    async fn request_evidence(&self, p: &Probe, control: &str) -> Option<String> {
        let got = self.status(p.path, p.admin).await?;
        let ctl = self.status(control, p.admin).await;
        let shows_route = if p.admin {
            (200..300).contains(&got)
        } else {
            matches!(got, 400 | 401 | 403) || (200..300).contains(&got)
        };
        let how = if p.admin {
            "with the admin key"
        } else {
            "without a token"
        };
        (shows_route && ctl != Some(got)).then(|| {
            format!(
                "GET {} {how} answered {got} (GET {control} answered {})",
                p.path,
                ctl.map(|c| c.to_string())
                    .unwrap_or_else(|| "nothing".into())
            )
        })
    }

    /// Probes every feature of [`PROBES`] that nothing declared; returns the evidence for
    /// each (found or not).
    pub async fn probe(&self, undeclared: &[&str]) -> BTreeMap<String, (bool, Source)> {
        let mut out = BTreeMap::new();
        let todo: Vec<&Probe> = PROBES
            .iter()
            .filter(|p| undeclared.contains(&p.feature))
            .collect();
        if todo.is_empty() {
            return out;
        }
        let documented = self.documented_paths().await;
        let nonce: String = {
            use rand::Rng as _;
            rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(8)
                .map(|c| (c as char).to_ascii_lowercase())
                .collect()
        };
        for p in todo {
            let namespace = if p.path.starts_with("/admin/") {
                "/admin"
            } else {
                "/v1"
            };
            let control = format!("{namespace}/authconf-probe-{nonce}");
            let doc = documented
                .iter()
                .find(|d| p.documented.iter().any(|pre| d.starts_with(pre)));
            let found = match doc {
                Some(d) => Some(format!("GET /openapi.json documents {d}")),
                None => self.request_evidence(p, &control).await,
            };
            let entry = match found {
                Some(e) => (true, Source::Probe(e)),
                None => (
                    false,
                    Source::Undeclared(format!(
                        "no document declares it, /openapi.json does not list it and GET {} does not show the route",
                        p.path
                    )),
                ),
            };
            out.insert(p.feature.to_owned(), entry);
        }
        out
    }
}

/// The report's lines: every feature and test control, with its source.
pub fn lines(caps: &Capabilities, sources: &BTreeMap<String, Source>) -> Vec<CapabilityLine> {
    let mut names: Vec<String> = FEATURES.iter().map(|f| (*f).to_owned()).collect();
    for k in caps.features.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    let mut out: Vec<CapabilityLine> = names
        .into_iter()
        .map(|n| CapabilityLine {
            enabled: caps.feature(&n),
            source: sources.get(&n).cloned().unwrap_or_else(|| {
                Source::Undeclared("the target declares nothing about it".into())
            }),
            name: n,
        })
        .collect();
    for t in TEST_CONTROLS {
        let name = format!("testControls.{t}");
        out.push(CapabilityLine {
            enabled: caps.test_control(t),
            source: sources.get(&name).cloned().unwrap_or_else(|| {
                Source::Undeclared("the target declares nothing about it".into())
            }),
            name,
        });
    }
    out.push(CapabilityLine {
        name: "rateLimit.override".into(),
        enabled: caps.rate_limit_override,
        source: sources
            .get("rateLimit.override")
            .cloned()
            .unwrap_or_else(|| Source::Undeclared("the target declares nothing about it".into())),
    });
    out
}

/// Fetches `/.well-known/authconf` (when served as a JSON object).
pub async fn fetch_document(prober: &Prober<'_>) -> Option<Value> {
    let rb = crate::http::with_headers(
        prober
            .http
            .get(format!("{}/.well-known/authconf", prober.base)),
        prober.headers,
    );
    match rb.send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok().filter(Value::is_object),
        _ => None,
    }
}

/// What the harness itself knows about the target.
pub struct HarnessSide {
    /// It installed a mail capture it can read.
    pub mail_capture: bool,
    /// It knows the target's JWT secret.
    pub jwt_secret_known: bool,
}

/// Decides the run's capabilities: the target's document, `--capabilities`, `--assume`, the
/// harness's own side, then probes for what remains undeclared.
pub async fn discover(
    prober: &Prober<'_>,
    file: Option<(&Value, String)>,
    assume: &[String],
    harness: HarnessSide,
) -> Result<(Capabilities, Vec<CapabilityLine>), RunError> {
    let document = fetch_document(prober).await;
    let (merged, mut sources) = resolve(&Inputs {
        document: document.as_ref(),
        file,
        assume,
    })?;
    let mut caps = capabilities_of(&merged, document.as_ref());
    // `features.mailCapture` means "authconf can read the target's mail": true exactly when
    // the harness installed a capture (a target that declares it otherwise is not believed:
    // this harness has no reader for a deployment's own capture).
    for (name, on, why) in [
        (
            "mailCapture",
            harness.mail_capture,
            if harness.mail_capture {
                "authconf captures the target's mail"
            } else {
                "no mail capture authconf can read (--mail-capture)"
            },
        ),
        (
            "jwtSecretKnown",
            harness.jwt_secret_known,
            if harness.jwt_secret_known {
                "the JWT secret is known"
            } else {
                "JWT secret unknown (AUTHCONF_JWT_SECRET)"
            },
        ),
    ] {
        caps.features.insert(name.into(), on);
        sources.insert(name.into(), Source::Harness(why.into()));
    }
    let undeclared: Vec<&str> = FEATURES
        .iter()
        .copied()
        .filter(|f| !sources.contains_key(*f))
        .collect();
    for (feature, (on, source)) in prober.probe(&undeclared).await {
        caps.features.insert(feature.clone(), on);
        sources.insert(feature, source);
    }
    let lines = lines(&caps, &sources);
    Ok((caps, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_complete_and_override_the_document() {
        let doc = json!({"features": {"apiKeys": true, "graph": false, "events": true}});
        let file = json!({"features": {"graph": true}, "testControls": {"clock": true}});
        let assume = vec!["userAuth".to_owned(), "events=false".to_owned()];
        let (merged, src) = resolve(&Inputs {
            document: Some(&doc),
            file: Some((&file, "caps.json".into())),
            assume: &assume,
        })
        .unwrap();
        let caps = capabilities_of(&merged, Some(&doc));
        assert!(caps.feature("graph") && caps.feature("userAuth") && caps.feature("apiKeys"));
        assert!(!caps.feature("events"));
        assert!(caps.test_control("clock"));
        assert_eq!(src["graph"], Source::File("caps.json".into()));
        assert_eq!(src["userAuth"], Source::Assumed);
        assert_eq!(src["apiKeys"], Source::Document);
        assert!(caps.present);
    }

    #[test]
    fn no_document_means_basics_and_not_present() {
        let (merged, src) = resolve(&Inputs {
            document: None,
            file: None,
            assume: &[],
        })
        .unwrap();
        let caps = capabilities_of(&merged, None);
        assert!(caps.feature("apiKeys") && !caps.feature("userAuth") && !caps.present);
        assert_eq!(src["apiKeys"].kind(), "none");
    }

    #[test]
    fn bad_assumptions_are_usage_errors() {
        assert!(check_assumptions(&["mailCapture".into()]).is_err());
        assert!(check_assumptions(&["graph=maybe".into()]).is_err());
        assert!(check_assumptions(&["a/b".into()]).is_err());
        assert!(
            check_assumptions(&["testControls.clock".into(), "rateLimit.override".into()]).is_ok()
        );
    }
}
