//! The harness against fake targets (wiremock): it must report an unreachable target, fail on
//! a leaked secret in the scenario meant to catch it, apply the known-failures list both ways,
//! and report capability skips as skipped.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use authconf::{RunError, RunOptions, Verdict};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ADMIN: &str = "sk_live_fakeAdminKeyForTheHarnessTests0123456789";

fn random_key(prefix: &str) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // 40 base62 characters from the std hasher's random seed: enough to be unique here.
    let mut out = String::from(prefix);
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    while out.len() < prefix.len() + 40 {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(out.len());
        let mut n = h.finish();
        for _ in 0..8 {
            out.push(B62[(n % 62) as usize] as char);
            n /= 62;
        }
    }
    out
}

fn problem(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("X-Request-Id", "req-1")
        .set_body_raw(
            json!({"type": format!("urn:auth-service:problem:{code}"), "title": code,
                   "status": status, "code": code})
            .to_string(),
            "application/problem+json",
        )
}

/// Issues fresh tenants and keys, and remembers every secret it issued.
#[derive(Clone, Default)]
struct Issuer {
    n: Arc<AtomicU64>,
    issued: Arc<Mutex<Vec<(String, String)>>>,
}

impl Respond for Issuer {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let parsed = if req.body.is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_slice::<serde_json::Value>(&req.body)
        };
        let Ok(body) = parsed else {
            // Upstream's defect: a malformed body reaches the global error handler.
            return ResponseTemplate::new(500).set_body_json(
                json!({"error": "Internal Server Error", "message": "Malformed JSON in request body"}),
            );
        };
        if req.url.path() == "/admin/tenants" {
            let slug = body["slug"].as_str().unwrap_or("x").to_owned();
            let (pk, sk) = (random_key("pk_live_"), random_key("sk_live_"));
            self.issued
                .lock()
                .unwrap()
                .push((format!("key:{n:016x}"), sk.clone()));
            return ResponseTemplate::new(201).set_body_json(json!({
                "tenant": {"id": format!("tenant:{slug}"), "slug": slug, "name": "x", "plan": "free",
                           "status": "active", "rateLimit": null,
                           "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"},
                "credentials": {"publicKey": pk, "secretKey": sk}
            }));
        }
        let ty = match body["type"].as_str() {
            Some("restricted") => "rk",
            Some("publishable") => "pk",
            _ => "sk",
        };
        let secret = random_key(&format!("{ty}_live_"));
        let id = format!("key:{n:016x}");
        self.issued
            .lock()
            .unwrap()
            .push((id.clone(), secret.clone()));
        ResponseTemplate::new(201).set_body_json(json!({
            "apiKey": {"id": id, "name": body["name"], "type": body["type"], "environment": "live",
                       "permissions": [], "displayPrefix": &secret[..12],
                       "createdAt": "2026-01-01T00:00:00Z", "revokedAt": null, "expiresAt": null},
            "credentials": {"keySecret": secret}
        }))
    }
}

/// The key list, with each key's secret in it: the defect under test.
struct LeakyList(Issuer);

impl Respond for LeakyList {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let keys: Vec<serde_json::Value> = self
            .0
            .issued
            .lock()
            .unwrap()
            .iter()
            .map(|(id, s)| {
                json!({"id": id, "name": "k", "type": "secret", "environment": "live",
                                  "permissions": [], "displayPrefix": &s[..12], "secret": s})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "apiKeys": keys }))
    }
}

/// A fake with health, tenant and key creation, a key list that leaks secrets, and
/// upstream's D1 (any key is an admin key).
async fn leaky_target() -> MockServer {
    leaky_target_with(true).await
}

/// [`leaky_target`]; `any_key_is_admin: false` lets only the admin key list tenants (so the
/// cleanup's check of deleted tenants' keys finds nothing).
async fn leaky_target_with(any_key_is_admin: bool) -> MockServer {
    let server = MockServer::start().await;
    let issuer = Issuer::default();
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Request-Id", "req-1")
                .set_body_json(
                    json!({"status":"ok","timestamp":1_764_000_000_000u64,"version":"0.0.1"}),
                ),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/admin/tenants"))
        .respond_with(issuer.clone())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/api-keys"))
        .respond_with(issuer.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/api-keys"))
        .respond_with(LeakyList(issuer))
        .mount(&server)
        .await;
    // Upstream's D1: any key is an admin key.
    let admin_only = (!any_key_is_admin).then(|| wiremock::matchers::bearer_token(ADMIN));
    let list = ResponseTemplate::new(200).set_body_json(
        json!({"tenants": [], "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0}}),
    );
    match admin_only {
        Some(m) => {
            Mock::given(method("GET"))
                .and(path("/admin/tenants"))
                .and(m)
                .respond_with(list)
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/admin/tenants"))
                .respond_with(problem(403, "forbidden"))
                .mount(&server)
                .await;
        }
        None => {
            Mock::given(method("GET"))
                .and(path("/admin/tenants"))
                .respond_with(list)
                .mount(&server)
                .await;
        }
    }
    Mock::given(method("GET"))
        .and(path("/v1/tenant"))
        .respond_with(problem(401, "unauthorized"))
        .mount(&server)
        .await;
    server
}

fn options(target: String, report_dir: &Path) -> RunOptions {
    support::options(target, ADMIN, report_dir, 2)
}

const LIST_SCENARIO: &str = "The tenant's key list shows no secret";
const HEALTH_SCENARIO: &str = "The health check answers with status, timestamp and version";

#[tokio::test]
async fn unreachable_target_exits_3() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let err = authconf::run_suite(options(format!("http://127.0.0.1:{port}"), dir.path()))
        .await
        .expect_err("an unreachable target is an error");
    assert!(matches!(err, RunError::Unreachable(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test]
async fn url_target_without_admin_key_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options("http://127.0.0.1:9".into(), dir.path());
    o.admin_key = None;
    let err = authconf::run_suite(o).await.expect_err("usage error");
    assert_eq!(err.exit_code(), 2);
    let mut o = options("http://127.0.0.1:9".into(), dir.path());
    o.tags = Some("@isolation and and".into());
    assert_eq!(authconf::run_suite(o).await.unwrap_err().exit_code(), 2);
}

#[tokio::test]
async fn a_secret_in_the_key_list_fails_the_suite() {
    let server = leaky_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    o.name = Some(format!("^{LIST_SCENARIO}$"));
    let out = authconf::run_suite(o).await.expect("the run completes");
    let r = out.scenario(LIST_SCENARIO).expect("the scenario ran");
    assert_eq!(r.verdict, Verdict::Failed, "{r:?}");
    let f = r.failure.as_ref().expect("a failure is recorded");
    assert!(
        f.message.contains("SECRET LEAK") || f.message.contains("contains the secret"),
        "{}",
        f.message
    );
    assert_eq!(out.exit_code(), 1);

    // The reports show the failing exchange but none of the secrets.
    let html = std::fs::read_to_string(out.report_path.join("summary.html")).unwrap();
    assert!(
        html.contains("GET /v1/api-keys"),
        "the failing request is in the report"
    );
    let md = std::fs::read_to_string(out.report_path.join("summary.md")).unwrap();
    for text in [&html, &md] {
        assert!(!text.contains(ADMIN));
        let re = regex_lite_key();
        assert!(
            !text
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(&re),
            "a key is in a report"
        );
    }
    for f in ["junit.xml", "cucumber.json", "ledger.jsonl"] {
        assert!(out.report_path.join(f).exists(), "{f} written");
    }
    assert!(dir.path().join("latest").exists());
}

/// A full key of the contract's format.
fn regex_lite_key() -> impl Fn(&str) -> bool {
    |w: &str| {
        let parts: Vec<&str> = w.splitn(3, '_').collect();
        parts.len() == 3
            && ["pk", "sk", "rk"].contains(&parts[0])
            && ["live", "test"].contains(&parts[1])
            && parts[2].len() >= 30
    }
}

#[tokio::test]
async fn known_failures_turn_failures_into_expected_ones() {
    let server = leaky_target_with(false).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("known.txt");
    std::fs::write(
        &list,
        format!("{LIST_SCENARIO} | the fake leaks on purpose\n"),
    )
    .unwrap();
    let mut o = options(server.uri(), dir.path());
    o.name = Some(format!("^{LIST_SCENARIO}$"));
    o.known_failures = Some(list);
    let out = authconf::run_suite(o).await.unwrap();
    assert_eq!(
        out.scenario(LIST_SCENARIO).unwrap().verdict,
        Verdict::ExpectedFailure("the fake leaks on purpose".into())
    );
    assert_eq!(out.exit_code(), 0);
}

#[tokio::test]
async fn a_known_failure_that_passes_fails_the_run() {
    let server = leaky_target().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("known.toml");
    std::fs::write(
        &list,
        format!("[[failure]]\nscenario = \"{HEALTH_SCENARIO}\"\nreason = \"stale\"\n"),
    )
    .unwrap();
    let mut o = options(server.uri(), dir.path());
    o.name = Some(format!("^{HEALTH_SCENARIO}$"));
    o.known_failures = Some(list);
    let out = authconf::run_suite(o).await.unwrap();
    assert_eq!(
        out.scenario(HEALTH_SCENARIO).unwrap().verdict,
        Verdict::UnexpectedPass("stale".into())
    );
    assert_eq!(out.exit_code(), 1);
}

#[tokio::test]
async fn missing_capabilities_are_reported_as_skipped() {
    let server = leaky_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    // The fake serves no capabilities document and no base domain is given.
    o.tags = Some("@needs-subdomain or @needs-capabilities".into());
    let out = authconf::run_suite(o).await.unwrap();
    assert!(!out.scenarios.is_empty());
    for r in &out.scenarios {
        match &r.verdict {
            Verdict::Skipped(why) => assert!(!why.is_empty()),
            v => panic!("{} should be skipped, is {v:?}", r.name),
        }
    }
    assert_eq!(out.exit_code(), 0);
    let junit = std::fs::read_to_string(out.report_path.join("junit.xml")).unwrap();
    assert!(junit.contains("<skipped message="));
}

#[tokio::test]
async fn mail_scenarios_are_skipped_on_a_url_target_without_a_readable_capture() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // A target that even claims mail capture: this harness has no reader for a deployment's
    // capture, so @needs-mail scenarios are skipped (with the reason), never run or passed.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/authconf"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "service": "auth-service",
            "features": {"apiKeys": true, "userAuth": true, "mailCapture": true}
        })))
        .mount(&server)
        .await;
    // Preflight needs an admin API.
    Mock::given(method("GET"))
        .and(path("/admin/tenants"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tenants": [], "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0}
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    o.tags = Some("@needs-mail".into());
    let out = authconf::run_suite(o).await.unwrap();
    assert!(out.scenarios.len() >= 10, "{}", out.scenarios.len());
    for r in &out.scenarios {
        match &r.verdict {
            Verdict::Skipped(why) => assert!(why.contains("mail capture"), "{why}"),
            v => panic!("{} should be skipped, is {v:?}", r.name),
        }
    }
    assert_eq!(out.exit_code(), 0);
}

/// Runs one scenario of the real features against the leaky fake and returns its verdict.
async fn verdict_of(scenario: &str) -> (Verdict, String) {
    let server = leaky_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    o.name = Some(format!("^{}$", regex_escape(scenario)));
    let out = authconf::run_suite(o).await.unwrap();
    let r = out.scenario(scenario).expect("the scenario ran");
    let msg = r
        .failure
        .as_ref()
        .map(|f| f.message.clone())
        .unwrap_or_default();
    (r.verdict.clone(), msg)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[tokio::test]
async fn a_tenant_key_accepted_on_admin_routes_fails_isolation() {
    let (v, msg) =
        verdict_of("A tenant's secret key on GET /admin/tenants is refused with 403").await;
    assert_eq!(v, Verdict::Failed);
    assert!(
        msg.contains("GET /admin/tenants") && msg.contains("403") && msg.contains("got 200"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_500_on_bad_json_fails_the_errors_feature() {
    let (v, msg) = verdict_of("A truncated object sent to /v1/api-keys is invalid JSON").await;
    assert_eq!(v, Verdict::Failed);
    assert!(msg.contains("got 500"), "{msg}");
}

#[tokio::test]
async fn cleanup_deletes_only_the_suites_leftover_tenants() {
    let server = MockServer::start().await;
    let tenant = |slug: &str, status: &str| json!({"id": format!("tenant:{slug}"), "slug": slug, "status": status});
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/admin/tenants"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "tenants": [tenant("acme", "active"), tenant("authconf-1-a", "active"),
                        tenant("authconf-1-b", "deleted")],
            "pagination": {"page": 1, "limit": 100, "total": 3, "pages": 1}
        })))
        .mount(&server)
        .await;
    // Two tenants a DELETE really deletes; a third (in upstream's envelope, whose own
    // "status":"success" is not the tenant's) that a DELETE answers 200 for but keeps.
    for (slug, status, really) in [
        ("authconf-1-a", "active", true),
        ("authconf-2-ledger", "suspended", true),
        ("authconf-3-stays", "active", false),
    ] {
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Mock::given(method("GET"))
            .and(path(format!("/admin/tenants/tenant%3A{slug}")))
            .respond_with(TenantView {
                body: if really {
                    json!({"tenant": tenant(slug, status)})
                } else {
                    json!({"status": "success", "data": tenant(slug, status)})
                },
                gone: gone.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(path(format!("/admin/tenants/tenant%3A{slug}")))
            .respond_with(Deleting {
                gone: gone.clone(),
                really,
            })
            .expect(1)
            .mount(&server)
            .await;
    }
    // A ledger of an interrupted run names a tenant the listing does not show.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("run1")).unwrap();
    std::fs::write(
        dir.path().join("run1/ledger.jsonl"),
        "{\"slug\":\"authconf-2-ledger\",\"event\":\"create\"}\n{\"slug\":\"authconf-3-stays\",\"event\":\"create\"}\n{\"slug\":\"not-ours\",\"event\":\"create\"}\n",
    )
    .unwrap();
    let out = authconf::cleanup(&server.uri(), ADMIN, &[], dir.path(), false)
        .await
        .unwrap();
    let mut deleted = out.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["tenant:authconf-1-a", "tenant:authconf-2-ledger"]);
    // The tenant still there after its DELETE answered 200 is not counted as deleted.
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].contains("authconf-3-stays") && out.errors[0].contains("still shows it"),
        "{:?}",
        out.errors
    );
    // Dropping the server checks each DELETE happened exactly once (and no other).
}

/// A tenant's admin view: 404 once deleted.
struct TenantView {
    body: serde_json::Value,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Respond for TenantView {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        if self.gone.load(Ordering::SeqCst) {
            problem(404, "not_found")
        } else {
            ResponseTemplate::new(200).set_body_json(self.body.clone())
        }
    }
}

/// A DELETE that answers 200, and deletes only if `really`.
struct Deleting {
    gone: Arc<std::sync::atomic::AtomicBool>,
    really: bool,
}

impl Respond for Deleting {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        if self.really {
            self.gone.store(true, Ordering::SeqCst);
        }
        ResponseTemplate::new(200)
    }
}

/// Upstream's rotation: a successor is issued, but nothing refuses the old key (and every key
/// is accepted on `GET /v1/tenant`).
#[tokio::test]
async fn rotation_that_keeps_the_old_key_alive_fails_rotation() {
    let server = MockServer::start().await;
    let issuer = Issuer::default();
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    for p in ["/admin/tenants", "/v1/api-keys"] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(issuer.clone())
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/admin/tenants"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"tenants": [], "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/api-keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"apiKeys": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/api-keys/[^/]+/rotate$"))
        .respond_with(issuer.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tenant"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"tenant": {"id": "tenant:x"}})),
        )
        .mount(&server)
        .await;
    // Every other tenant route accepts every key too.
    Mock::given(method("GET"))
        .and(path_regex("^/v1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(server.uri(), dir.path());
    let name = "After rotation the new key works and the old key is refused at once";
    o.name = Some(format!("^{name}$"));
    let out = authconf::run_suite(o).await.unwrap();
    let r = out.scenario(name).expect("the scenario ran");
    assert_eq!(r.verdict, Verdict::Failed, "{r:?}");
    let msg = &r.failure.as_ref().unwrap().message;
    // The fake's rotation answer lacks previousKey, or the old key still works: either way
    // the scenario catches the broken rotation.
    assert!(
        msg.contains("previousKey") || msg.contains("should be refused"),
        "{msg}"
    );
}
