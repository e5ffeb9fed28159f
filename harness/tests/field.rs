//! The harness in the field (issue 12, CLI side), against a small stateful fake target
//! (wiremock, one responder): preflight refuses a target without an admin API or refusing
//! the admin key; `--fail-on` gates by class; failures are grouped by cause; capabilities
//! come from `--capabilities`, `--assume` or probes, each with its source; cleanup counts only
//! tenants really deleted and reports keys that outlive their tenant.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use authconf::{FailOn, RunOptions, Verdict};
use authconf_scenarios::FailureClass;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ADMIN: &str = "sk_live_fieldAdminKeyForTheHarnessTests0123456789ab";
const TENANT_SCENARIO: &str = "A tenant sees only itself through its key";
const SIGNUP_SCENARIO: &str = "Signing up answers 201 with the user, an access token and a session";
const HEALTH_SCENARIO: &str = "The health check answers with status, timestamp and version";

/// How the fake behaves.
#[derive(Clone, Default)]
struct Config {
    /// `GET /admin/tenants` with the admin key answers this instead of 200.
    admin_status: Option<u16>,
    /// DELETE answers 200 but the tenant stays.
    delete_lies: bool,
    /// Keys keep authenticating after their tenant is deleted.
    keys_survive: bool,
    /// `POST /v1/api-keys` is not mounted (404).
    no_key_route: bool,
    /// `/openapi.json` lists these paths.
    openapi: Option<Vec<&'static str>>,
    /// `GET /v1/auth/me` without a token answers this (404 otherwise).
    auth_me: Option<u16>,
    /// `/health` lacks `version`.
    bad_health: bool,
}

#[derive(Default)]
struct State {
    /// id -> (slug, deleted)
    tenants: BTreeMap<String, (String, bool)>,
    /// bearer -> tenant id
    keys: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Fake {
    cfg: Config,
    state: Arc<Mutex<State>>,
    n: Arc<AtomicU64>,
}

fn problem(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("X-Request-Id", "req-1")
        .set_body_raw(
            json!({"type": format!("urn:auth-service:problem:{code}"), "title": code,
                   "status": status, "code": code, "detail": code})
            .to_string(),
            "application/problem+json",
        )
}

fn ok(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("X-Request-Id", "req-1")
        .set_body_json(body)
}

fn tenant_json(id: &str, slug: &str, deleted: bool) -> Value {
    json!({"id": id, "slug": slug, "name": "authconf x", "plan": "free",
           "status": if deleted { "deleted" } else { "active" }, "rateLimit": null,
           "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
           "deletedAt": null})
}

impl Fake {
    fn key(&self, prefix: &str) -> String {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let r: u64 = rand_u64();
        format!("{prefix}{n:012}{r:020}abcdefghij")
    }

    fn bearer(req: &Request) -> Option<String> {
        req.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
    }

    fn tenant_of(&self, bearer: &str) -> Option<(String, String)> {
        let st = self.state.lock().unwrap();
        let id = st.keys.get(bearer)?;
        let (slug, deleted) = st.tenants.get(id)?;
        (!deleted || self.cfg.keys_survive).then(|| (id.clone(), slug.clone()))
    }

    fn admin(&self, req: &Request) -> ResponseTemplate {
        let p = req.url.path().to_owned();
        let m = req.method.as_str();
        if Self::bearer(req).as_deref() != Some(ADMIN) {
            let known = Self::bearer(req).is_some_and(|b| self.tenant_of(&b).is_some());
            return if known {
                problem(403, "forbidden")
            } else {
                problem(401, "unauthorized")
            };
        }
        if p == "/admin/tenants" && m == "GET" {
            if let Some(s) = self.cfg.admin_status {
                return problem(s, "not_found");
            }
            return ok(
                200,
                json!({"tenants": [], "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0}}),
            );
        }
        if p == "/admin/tenants" && m == "POST" {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let slug = body["slug"].as_str().unwrap_or("x").to_owned();
            let id = format!("tenant:{slug}");
            let (pk, sk) = (self.key("pk_live_"), self.key("sk_live_"));
            let mut st = self.state.lock().unwrap();
            st.tenants.insert(id.clone(), (slug.clone(), false));
            st.keys.insert(sk.clone(), id.clone());
            st.keys.insert(pk.clone(), id.clone());
            return ok(
                201,
                json!({"tenant": tenant_json(&id, &slug, false),
                       "credentials": {"publicKey": pk, "secretKey": sk}}),
            );
        }
        let Some(raw) = p.strip_prefix("/admin/tenants/") else {
            return problem(404, "not_found");
        };
        let id = raw.replace("%3A", ":").replace("%3a", ":");
        let mut st = self.state.lock().unwrap();
        let Some((slug, deleted)) = st.tenants.get(&id).cloned() else {
            return problem(404, "not_found");
        };
        match m {
            "GET" if deleted => problem(404, "not_found"),
            "GET" => ok(200, json!({"tenant": tenant_json(&id, &slug, false)})),
            "DELETE" => {
                if !self.cfg.delete_lies {
                    st.tenants.insert(id.clone(), (slug.clone(), true));
                }
                ok(200, json!({"tenant": tenant_json(&id, &slug, true)}))
            }
            _ => problem(405, "method_not_allowed"),
        }
    }
}

fn rand_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u8(1);
    h.finish() % 10u64.pow(19)
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let p = req.url.path().to_owned();
        let m = req.method.as_str();
        if p.starts_with("/admin/") || p == "/admin/tenants" {
            return self.admin(req);
        }
        match (m, p.as_str()) {
            ("GET", "/health") => {
                let mut b =
                    json!({"status": "ok", "timestamp": 1_764_000_000_000u64, "version": "0.0.1"});
                if self.cfg.bad_health {
                    b.as_object_mut().unwrap().remove("version");
                }
                ok(200, b)
            }
            ("GET", "/openapi.json") => match &self.cfg.openapi {
                Some(paths) => ok(
                    200,
                    json!({"openapi": "3.1.0", "paths": paths.iter().map(|p| ((*p).to_owned(), json!({}))).collect::<serde_json::Map<_, _>>()}),
                ),
                None => problem(404, "not_found"),
            },
            ("GET", "/v1/auth/me") => match self.cfg.auth_me {
                Some(s) => problem(s, "unauthorized"),
                None => problem(404, "not_found"),
            },
            ("GET", "/v1/tenant") => match Self::bearer(req).and_then(|b| self.tenant_of(&b)) {
                Some((id, slug)) => ok(200, json!({"tenant": tenant_json(&id, &slug, false)})),
                None => problem(401, "unauthorized"),
            },
            ("POST", "/v1/api-keys") if !self.cfg.no_key_route => {
                let Some((tid, _)) = Self::bearer(req).and_then(|b| self.tenant_of(&b)) else {
                    return problem(401, "unauthorized");
                };
                let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
                let secret = self.key("sk_live_");
                self.state.lock().unwrap().keys.insert(secret.clone(), tid);
                let id = format!("key_{:016x}", self.n.fetch_add(1, Ordering::Relaxed));
                ok(
                    201,
                    json!({"apiKey": {"id": id, "name": body["name"], "type": body["type"],
                           "environment": "live", "permissions": [], "displayPrefix": &secret[..12],
                           "createdAt": "2026-01-01T00:00:00Z", "revokedAt": null, "expiresAt": null},
                           "credentials": {"keySecret": secret}}),
                )
            }
            _ => problem(404, "not_found"),
        }
    }
}

async fn fake(cfg: Config) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(Fake {
            cfg,
            state: Arc::default(),
            n: Arc::default(),
        })
        .mount(&server)
        .await;
    server
}

fn options(target: String, report_dir: &Path) -> RunOptions {
    support::options(target, ADMIN, report_dir, 4)
}

fn only(name: &str) -> Option<String> {
    Some(format!("^{}$", regex::escape(name)))
}

/// A fake target behaving as `cfg`, and options to run the one scenario `name` against it
/// with reports in `dir`.
async fn fake_for(cfg: Config, dir: &Path, name: &str) -> (MockServer, RunOptions) {
    let server = fake(cfg).await;
    let mut o = options(server.uri(), dir);
    o.name = only(name);
    (server, o)
}

async fn created_tenants(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/admin/tenants")
        .count()
}

#[tokio::test]
async fn a_target_without_an_admin_api_exits_2_before_any_scenario() {
    for (status, words) in [
        (404, "no admin API"),
        (405, "no admin API"),
        (401, "refuses the platform admin key"),
        (403, "refuses the platform admin key"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (server, o) = fake_for(
            Config {
                admin_status: Some(status),
                ..Config::default()
            },
            dir.path(),
            TENANT_SCENARIO,
        )
        .await;
        let err = authconf::run_suite(o).await.expect_err("preflight refuses");
        assert_eq!(err.exit_code(), 2, "{status}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(words) && msg.contains(&status.to_string()),
            "{msg}"
        );
        assert!(msg.contains("GET /admin/tenants"), "{msg}");
        assert_eq!(created_tenants(&server).await, 0, "no scenario ran");
    }
}

#[tokio::test]
async fn fail_on_gates_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut o) = fake_for(
        Config {
            bad_health: true,
            ..Config::default()
        },
        dir.path(),
        HEALTH_SCENARIO,
    )
    .await;
    o.fail_on = FailOn::Security;
    let mut out = authconf::run_suite(o).await.unwrap();
    let r = out.scenario(HEALTH_SCENARIO).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{r:?}");
    assert_eq!(r.class, Some(FailureClass::Conformance), "{r:?}");
    assert_eq!(
        out.exit_code(),
        0,
        "a conformance failure does not gate --fail-on security"
    );
    out.fail_on = FailOn::Conformance;
    assert_eq!(out.exit_code(), 1);
    out.fail_on = FailOn::Any;
    assert_eq!(out.exit_code(), 1);
    // The class is in every report.
    let junit = std::fs::read_to_string(out.report_path.join("junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<property name="authconf.class" value="conformance"/>"#),
        "{junit}"
    );
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.report_path.join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["failuresByClass"]["conformance"], 1, "{results}");
    let cucumber = std::fs::read_to_string(out.report_path.join("cucumber.json")).unwrap();
    assert!(cucumber.contains(r#""class": "conformance""#));
    let md = std::fs::read_to_string(out.report_path.join("summary.md")).unwrap();
    assert!(md.contains("class: conformance"), "{md}");
}

#[tokio::test]
async fn one_missing_route_is_one_root_cause() {
    let server = fake(Config {
        no_key_route: true,
        ..Config::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    o.tags = Some("@isolation".into());
    let out = authconf::run_suite(o).await.unwrap();
    let failed = out
        .scenarios
        .iter()
        .filter(|r| r.verdict == Verdict::Failed)
        .count();
    let causes = out.causes();
    assert!(failed >= 10, "{failed} failures");
    let top = &causes[0];
    assert!(top.scenarios.len() >= 10, "{causes:#?}");
    assert!(
        causes.len() < failed / 2,
        "{} causes for {failed} failures: {causes:#?}",
        causes.len()
    );
    let headline = top.headline();
    assert!(
        headline.contains("POST /v1/api-keys") && headline.contains("404"),
        "{headline}"
    );
    assert!(
        headline.starts_with(&format!("{} scenarios", top.scenarios.len())),
        "{headline}"
    );
    let md = std::fs::read_to_string(out.report_path.join("summary.md")).unwrap();
    assert!(
        md.contains("## Root causes") && md.contains(&headline),
        "{md}"
    );
    let html = std::fs::read_to_string(out.report_path.join("summary.html")).unwrap();
    assert!(html.contains("Root causes"));
    let summary = authconf::report::text_summary(&out);
    // `--nocapture` shows it (the README's example is this output).
    println!("{summary}");
    assert!(summary.contains(&headline));
}

/// The `@needs-user-auth` scenario against a target that does not serve the capabilities
/// document: skipped unless an option or a probe says the target has user auth.
async fn signup_run(
    cfg: Config,
    dir: &Path,
    edit: impl FnOnce(&mut RunOptions),
) -> authconf::RunOutcome {
    let (_server, mut o) = fake_for(cfg, dir, SIGNUP_SCENARIO).await;
    edit(&mut o);
    authconf::run_suite(o).await.unwrap()
}

fn user_auth_source(out: &authconf::RunOutcome) -> (bool, String, String) {
    let l = out
        .capabilities
        .iter()
        .find(|l| l.name == "userAuth")
        .expect("userAuth is reported");
    (l.enabled, l.source.kind().to_owned(), l.source.to_string())
}

#[tokio::test]
async fn capabilities_come_from_options_or_probes_with_their_source() {
    // Nothing says the target has user auth: skipped.
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path();
    let out = signup_run(Config::default(), reports, |_| {}).await;
    assert!(matches!(
        out.scenario(SIGNUP_SCENARIO).unwrap().verdict,
        Verdict::Skipped(_)
    ));
    assert_eq!(user_auth_source(&out).1, "none");

    // --capabilities FILE.
    let file = dir.path().join("caps.json");
    std::fs::write(&file, r#"{"features": {"userAuth": true}}"#).unwrap();
    let out = signup_run(Config::default(), reports, |o| {
        o.capabilities_file = Some(file.clone())
    })
    .await;
    assert!(!matches!(
        out.scenario(SIGNUP_SCENARIO).unwrap().verdict,
        Verdict::Skipped(_)
    ));
    let (on, kind, detail) = user_auth_source(&out);
    assert!(
        on && kind == "option" && detail.contains("--capabilities"),
        "{detail}"
    );

    // --assume userAuth.
    let out = signup_run(Config::default(), reports, |o| {
        o.assume = vec!["userAuth".into()]
    })
    .await;
    assert!(!matches!(
        out.scenario(SIGNUP_SCENARIO).unwrap().verdict,
        Verdict::Skipped(_)
    ));
    let (on, kind, detail) = user_auth_source(&out);
    assert!(
        on && kind == "option" && detail.contains("--assume"),
        "{detail}"
    );

    // A probe: GET /v1/auth/me without a token answers 401 where a made-up route answers 404.
    let out = signup_run(
        Config {
            auth_me: Some(401),
            ..Config::default()
        },
        reports,
        |_| {},
    )
    .await;
    assert!(!matches!(
        out.scenario(SIGNUP_SCENARIO).unwrap().verdict,
        Verdict::Skipped(_)
    ));
    let (on, kind, detail) = user_auth_source(&out);
    assert!(
        on && kind == "probe" && detail.contains("/v1/auth/me") && detail.contains("401"),
        "{detail}"
    );
    let md = std::fs::read_to_string(out.report_path.join("summary.md")).unwrap();
    assert!(md.contains("| userAuth | yes | probe |"), "{md}");
    let html = std::fs::read_to_string(out.report_path.join("summary.html")).unwrap();
    assert!(html.contains("<td>userAuth</td><td>yes</td><td>probe</td>"));

    // A probe: /openapi.json documents a /v1/auth/ route.
    let out = signup_run(
        Config {
            openapi: Some(vec!["/health", "/v1/auth/login"]),
            ..Config::default()
        },
        reports,
        |_| {},
    )
    .await;
    let (on, kind, detail) = user_auth_source(&out);
    assert!(
        on && kind == "probe" && detail.contains("openapi"),
        "{detail}"
    );
}

#[tokio::test]
async fn cleanup_counts_only_tenants_really_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, o) = fake_for(
        Config {
            delete_lies: true,
            ..Config::default()
        },
        dir.path(),
        TENANT_SCENARIO,
    )
    .await;
    let out = authconf::run_suite(o).await.unwrap();
    assert!(created_tenants(&server).await >= 2);
    assert_eq!(
        out.tenants_deleted, 0,
        "DELETE said 200 but every tenant is still there"
    );
    assert_eq!(
        out.cleanup_errors.len(),
        created_tenants(&server).await,
        "{:?}",
        out.cleanup_errors
    );
    assert!(
        out.cleanup_errors[0].contains("still shows it"),
        "{:?}",
        out.cleanup_errors
    );
}

#[tokio::test]
async fn keys_that_outlive_their_tenant_are_a_security_finding() {
    // An honest target first: everything deleted, no finding, exit 0.
    let dir = tempfile::tempdir().unwrap();
    let (server, mut o) = fake_for(Config::default(), dir.path(), TENANT_SCENARIO).await;
    o.fail_on = FailOn::Security;
    let out = authconf::run_suite(o).await.unwrap();
    let r = out.scenario(TENANT_SCENARIO).unwrap();
    assert_eq!(r.verdict, Verdict::Passed, "{r:?}");
    assert_eq!(out.tenants_deleted, created_tenants(&server).await);
    assert!(out.deleted_keys_checked >= 2);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    assert_eq!(out.exit_code(), 0);

    // Keys that keep working after their tenant is deleted.
    let (_server, mut o) = fake_for(
        Config {
            keys_survive: true,
            ..Config::default()
        },
        dir.path(),
        TENANT_SCENARIO,
    )
    .await;
    o.fail_on = FailOn::Security;
    let out = authconf::run_suite(o).await.unwrap();
    assert_eq!(
        out.scenario(TENANT_SCENARIO).unwrap().verdict,
        Verdict::Passed
    );
    let f: Vec<&(FailureClass, String)> = out
        .findings
        .iter()
        .filter(|(_, t)| t.contains("keys of deleted tenants still authenticate"))
        .collect();
    assert_eq!(f.len(), 1, "{:?}", out.findings);
    assert_eq!(f[0].0, FailureClass::Security);
    assert!(f[0].1.contains("GET /v1/tenant answered 200"), "{}", f[0].1);
    assert_eq!(
        out.exit_code(),
        1,
        "a security finding gates --fail-on security"
    );
    let md = std::fs::read_to_string(out.report_path.join("summary.md")).unwrap();
    assert!(
        md.contains("## Findings") && md.contains("keys of deleted tenants"),
        "{md}"
    );
    assert!(
        authconf::report::text_summary(&out).contains("FINDING [security] keys of deleted tenants")
    );
    // No key is printed anywhere.
    let re = regex::Regex::new(r"(pk|sk|rk)_(live|test)_[0-9A-Za-z]{12,}").unwrap();
    for file in [
        "summary.md",
        "summary.html",
        "results.json",
        "junit.xml",
        "cucumber.json",
    ] {
        let text = std::fs::read_to_string(out.report_path.join(file)).unwrap();
        assert!(!re.is_match(&text), "a key-shaped string in {file}");
    }
}
