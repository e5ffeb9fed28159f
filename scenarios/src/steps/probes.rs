//! Steps of the probes for defects seen in real deployments (the public cf-auth deployment's
//! §14 in `shared/reference/upstream-cf-auth-contract.md`): tokens signed with a well-known
//! default secret, `validate` accepting what `me` refuses, account enumeration that needs no
//! mail, a missing `Authorization` answered 400, CORS that lets any origin send credentials,
//! and a routing header sent twice with different tenants.
//!
//! Each check says which class its failure is: a broken security property is marked
//! `security`; a refusal with another status or shape than docs/contract.md is a conformance
//! deviation (the scenario goes on); a route the target does not have is `blocked`.

use cucumber::{given, then, when};
use rand::Rng as _;
use serde_json::{json, Value};

use crate::support::jwt::resign_hs256;
use crate::support::text::normalized;
use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Cred, Exchange, Req};

fn random_password() -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    format!("Wrong-9{tail}x")
}

/// `status body` of an exchange, for messages.
fn answer(ex: &Exchange) -> String {
    let body: String = ex.body.chars().take(200).collect();
    format!("{} {body}", ex.status)
}

#[given(
    regex = r#"^"(\w+)"'s access token re-signed with the well-known secret "([^"]*)" as "([^"]+)"$"#
)]
async fn well_known_secret(w: &mut AuthWorld, user: String, secret: String, name: String) {
    let Some(token) = w.users.access.get(&user).and_then(|v| v.last()).cloned() else {
        w.fail(format!("{user:?} holds no access token"))
    };
    let Some(forged) = resign_hs256(&token, &secret) else {
        w.fail_as(
            FailureClass::Conformance,
            format!("{user:?}'s access token is not a JWT with a JSON header"),
        )
    };
    w.users.named.insert(name, forged);
}

/// Sends `GET path` with a bearer token and no other credential.
async fn get_with(w: &mut AuthWorld, path: &str, label: &str, token: &str) -> Exchange {
    let req = Req::new(
        "GET",
        path,
        Cred::Bearer {
            label: label.to_owned(),
            value: token.to_owned(),
        },
    );
    w.send(req).await.clone()
}

/// `me` must refuse the token; `validate` must not call it valid. Contract: both answer the
/// uniform 401; a `validate` that answers 200 `{"valid":false}` refuses the token all the
/// same, so that is a format deviation, not a broken property.
#[then(regex = r#"^the access token "([^"]+)" is refused by me and by validate$"#)]
async fn refused_by_me_and_validate(w: &mut AuthWorld, name: String) {
    let Some(token) = w.users.named.get(&name).cloned() else {
        w.fail(format!("no token named {name:?}"))
    };
    let me = get_with(w, "/v1/auth/me", &name, &token).await;
    if (200..300).contains(&me.status) {
        w.fail_expect(
            Some(FailureClass::Security),
            format!("the token {name:?} refused with 401"),
            answer(&me),
        );
    }
    if me.status != 401 {
        w.deviate(format!(
            "expected 401 for the token {name:?}, got {}",
            me.status
        ));
    }
    let v = get_with(w, "/v1/auth/validate", &name, &token).await;
    if v.status == 404 {
        w.blocked("GET", "/v1/auth/validate", 404);
    }
    let said_valid = v.json.as_ref().and_then(|j| j.get("valid")) != Some(&json!(false));
    if (200..300).contains(&v.status) && said_valid {
        w.fail_expect(
            Some(FailureClass::Security),
            format!("the token {name:?} refused (401, or at least \"valid\": false)"),
            answer(&v),
        );
    }
    if v.status != 401 {
        w.deviate(format!(
            "expected the uniform 401 for the token {name:?}, got {}",
            answer(&v)
        ));
    }
}

/// The body of a mail-free account request for `user`'s address (upper-cased on request).
fn account_body(w: &mut AuthWorld, path: &str, user: &str, upper: bool) -> String {
    let mut email = w.email_of(user);
    if upper {
        email = email.to_ascii_uppercase();
    }
    if path.ends_with("/login") {
        json!({"email": email, "password": random_password()}).to_string()
    } else {
        json!({"email": email}).to_string()
    }
}

async fn account_request(w: &mut AuthWorld, path: &str, tenant: &str, body: String) -> Exchange {
    let id = w.tenant(tenant).id.clone();
    let req = Req::new("POST", path, Cred::None)
        .header("X-Tenant-ID", &id)
        .json(&body);
    w.send(req).await.clone()
}

/// No account enumeration without mail: login (with a wrong password), forgot-password and
/// resend-verification answer one address exactly like another.
#[then(
    regex = r#"^POST "(/v1/auth/[a-z-]+)" in tenant "([^"]+)" answers "(\w+)"( in upper case)? exactly like "(\w+)"$"#
)]
async fn answers_alike(
    w: &mut AuthWorld,
    path: String,
    tenant: String,
    first: String,
    upper: String,
    second: String,
) {
    let a_body = account_body(w, &path, &first, !upper.is_empty());
    let b_body = account_body(w, &path, &second, false);
    let a = account_request(w, &path, &tenant, a_body).await;
    let b = account_request(w, &path, &tenant, b_body).await;
    if a.status == 404 && b.status == 404 {
        w.blocked("POST", &path, 404);
    }
    let same = a.status == b.status && normalized(&a, &[]) == normalized(&b, &[]);
    if !same {
        let who = if upper.is_empty() {
            format!("{first:?}")
        } else {
            format!("{first:?} in upper case")
        };
        w.fail_as(
            FailureClass::Security,
            format!(
                "POST {path}: expected the same answer for {who} as for {second:?} (no account enumeration), got {} vs {}",
                answer(&a),
                answer(&b)
            ),
        );
    }
}

/// A token route without `Authorization`: refused with 401 (a 2xx is a broken property; any
/// other refusal a conformance failure).
#[then(regex = r#"^(GET|POST) "([^"]+)" without an Authorization header is refused with 401$"#)]
async fn missing_authorization(w: &mut AuthWorld, method: String, path: String) {
    let mut req = Req::new(&method, &path, Cred::None);
    if method == "POST" {
        req = req.json("{}");
    }
    let ex = w.send(req).await.clone();
    match ex.status {
        401 => {}
        404 | 405 => w.blocked(&method, &path, ex.status),
        s if (200..300).contains(&s) => {
            w.fail_expect(Some(FailureClass::Security), "401", answer(&ex))
        }
        _ => w.fail_expect(Some(FailureClass::Conformance), "401", answer(&ex)),
    }
}

#[when(
    regex = r#"^I send a CORS preflight for (GET|POST|PUT|DELETE) "([^"]+)" from the origin "([^"]+)"$"#
)]
async fn preflight(w: &mut AuthWorld, method: String, path: String, origin: String) {
    let req = Req::new("OPTIONS", &path, Cred::None)
        .header("Origin", &origin)
        .header("Access-Control-Request-Method", &method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        );
    w.send(req).await;
}

#[when(regex = r#"^I send GET "([^"]+)" from the origin "([^"]+)"$"#)]
async fn from_origin(w: &mut AuthWorld, path: String, origin: String) {
    let req = Req::new("GET", &path, Cred::None).header("Origin", &origin);
    w.send(req).await;
}

/// A foreign origin must not be told it may send credentials: `Access-Control-Allow-Origin`
/// naming it (or echoing it) together with `Access-Control-Allow-Credentials: true` lets any
/// web page read the user's authenticated answers.
#[then(regex = r#"^the answer does not let the origin "([^"]+)" send credentials$"#)]
async fn no_credentialed_cors(w: &mut AuthWorld, origin: String) {
    let ex = w.last().clone();
    let allow = ex.header("access-control-allow-origin").unwrap_or("");
    let creds = ex
        .header("access-control-allow-credentials")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if creds && (allow == origin || allow == "*") {
        w.fail_as(
            FailureClass::Security,
            format!(
                "{} {}: expected no Access-Control-Allow-Origin for {origin:?} with credentials, got Access-Control-Allow-Origin: {allow} and Access-Control-Allow-Credentials: true",
                ex.method, ex.path
            ),
        );
    }
}

/// `X-Tenant-ID` twice, naming two tenants: 403 `tenant_mismatch`. A 2xx means one of the
/// two sources was silently believed (security); another refusal is a deviation.
async fn duplicated_tenant_header(w: &mut AuthWorld, req: Req, route: &str) {
    let ex = w.send(req).await.clone();
    if ex.status == 404 || ex.status == 405 {
        let (m, p) = route.split_once(' ').unwrap_or(("GET", route));
        w.blocked(m, p, ex.status);
    }
    if ex.status != 403 {
        let class = if (200..300).contains(&ex.status) {
            FailureClass::Security
        } else {
            FailureClass::Conformance
        };
        w.fail_expect(Some(class), "403 tenant_mismatch", answer(&ex));
    }
    let code = ex.json.as_ref().and_then(|j| j.get("code")).cloned();
    if code != Some(json!("tenant_mismatch")) {
        w.deviate(format!(
            "expected the problem code \"tenant_mismatch\", got {code:?}"
        ));
    }
}

#[when(
    regex = r#"^I send GET "([^"]+)" as "([^"]+)" with the tenant header sent twice, naming "([^"]+)" and "([^"]+)"$"#
)]
async fn key_with_two_headers(
    w: &mut AuthWorld,
    path: String,
    cred: String,
    t1: String,
    t2: String,
) {
    let (a, b) = (w.tenant(&t1).id.clone(), w.tenant(&t2).id.clone());
    let c = w.cred(&cred);
    let req = Req::new("GET", &path, c)
        .header("X-Tenant-ID", &a)
        .header("X-Tenant-ID", &b);
    duplicated_tenant_header(w, req, &format!("GET {path}")).await;
}

#[when(
    regex = r#"^"(\w+)" logs in with the tenant header sent twice, naming "([^"]+)" and "([^"]+)"$"#
)]
async fn login_with_two_headers(w: &mut AuthWorld, user: String, t1: String, t2: String) {
    let (a, b) = (w.tenant(&t1).id.clone(), w.tenant(&t2).id.clone());
    let key = format!("{user}@{t1}");
    let Some(password) = w.users.accounts.get(&key).map(|a| a.password.clone()) else {
        w.fail(format!("{user:?} has no account in tenant {t1:?}"))
    };
    let email = w.email_of(&user);
    let req = Req::new("POST", "/v1/auth/login", Cred::None)
        .header("X-Tenant-ID", &a)
        .header("X-Tenant-ID", &b)
        .json(&json!({"email": email, "password": password}).to_string());
    duplicated_tenant_header(w, req, "POST /v1/auth/login").await;
}

/// The object with `"id": id` anywhere in `v`.
fn find_by_id<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) if o.get("id") == Some(&json!(id)) => Some(v),
        Value::Object(o) => o.values().find_map(|x| find_by_id(x, id)),
        Value::Array(a) => a.iter().find_map(|x| find_by_id(x, id)),
        _ => None,
    }
}

/// A key's listed prefix (`displayPrefix`, or the public deployment's `keyPrefix`/`prefix`)
/// is there to recognise the key, never to use it: alone it must get the 401 of a bad key.
/// A 403 means the prefix authenticated and only then lacked the right (the public
/// deployment's D12), a 2xx that it opened the route.
#[then(
    regex = r#"^the listed prefix of the key "([^"]+)" alone is refused on GET "([^"]+)" with 401$"#
)]
async fn listed_prefix_alone(w: &mut AuthWorld, key: String, path: String) {
    let tenant = key.split(':').next().unwrap_or_default().to_owned();
    let id = w.key_id(&key);
    let list = Req::new(
        "GET",
        &format!("/admin/tenants/{{{tenant}.id}}/keys"),
        w.cred("admin"),
    );
    let ex = w.send(list).await.clone();
    if ex.status == 404 || ex.status == 405 {
        w.blocked("GET", "/admin/tenants/{id}/keys", ex.status);
    }
    let entry = ex.json.as_ref().and_then(|j| find_by_id(j, &id)).cloned();
    let prefix = entry.as_ref().and_then(|e| {
        ["displayPrefix", "keyPrefix", "prefix"]
            .iter()
            .find_map(|f| e.get(*f).and_then(Value::as_str))
            .map(str::to_owned)
    });
    let Some(prefix) = prefix else {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!("the key {id} with its displayPrefix in the list"),
            answer(&ex),
        )
    };
    let label = format!("the listed prefix of {key}");
    let probe = get_with(w, &path, &label, &prefix).await;
    match probe.status {
        401 => {}
        s if s == 403 || (200..300).contains(&s) => w.fail_expect(
            Some(FailureClass::Security),
            format!("401 for {label} alone (it must not authenticate)"),
            answer(&probe),
        ),
        _ => w.fail_expect(Some(FailureClass::Conformance), "401", answer(&probe)),
    }
}
