//! Tenants: created, suspended, deleted, listed and looked up through the admin API
//! (`features/admin.feature`, `isolation.feature`).

use cucumber::{given, then};
use serde_json::{json, Value};

use crate::extract;
use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Req};

#[given(regex = r#"^a tenant "([^"]+)"(?: on plan "([^"]+)")?$"#)]
async fn a_tenant(w: &mut AuthWorld, name: String, plan: String) {
    let plan = (!plan.is_empty()).then_some(plan.as_str());
    w.create_tenant(&name, plan).await;
}

#[given(regex = r#"^tenant "([^"]+)" is (suspended|deleted|active)$"#)]
async fn tenant_status(w: &mut AuthWorld, tenant: String, status: String) {
    let req = if status == "deleted" {
        Req::new(
            "DELETE",
            &format!("/admin/tenants/{{{tenant}.id}}"),
            w.cred("admin"),
        )
    } else {
        Req::new(
            "PATCH",
            &format!("/admin/tenants/{{{tenant}.id}}"),
            w.cred("admin"),
        )
        .json(&json!({"status": status}).to_string())
    };
    let ex = w.send(req).await.clone();
    w.expect_setup(&ex, &[200, 204], &format!("making {tenant:?} {status}"));
}

#[then(regex = r#"^in the tenant list, "([^"]+)" comes before "([^"]+)"$"#)]
async fn tenant_order(w: &mut AuthWorld, a: String, b: String) {
    let (ia, ib) = (w.tenant(&a).id.clone(), w.tenant(&b).id.clone());
    let list = w.all_tenants("").await;
    let pos = |id: &str| list.iter().position(|t| t.get("id") == Some(&json!(id)));
    match (pos(&ia), pos(&ib)) {
        (Some(x), Some(y)) if x < y => {}
        (x, y) => w.fail(format!(
            "GET /admin/tenants: expected {a:?} before {b:?}, got positions {x:?} and {y:?}"
        )),
    }
}

#[then(regex = r#"^the tenant list filtered by "([^"]*)" (includes|excludes) "([^"]+)"$"#)]
async fn tenant_filter(w: &mut AuthWorld, filter: String, how: String, t: String) {
    let id = w.tenant(&t).id.clone();
    let list = w.all_tenants(&format!("{filter}&")).await;
    let has = list.iter().any(|x| x.get("id") == Some(&json!(id)));
    if has != (how == "includes") {
        w.fail(format!(
            "GET /admin/tenants?{filter}: expected the list {how} {t:?}, got {}",
            if has { "it listed" } else { "it missing" }
        ));
    }
}

#[then(regex = r#"^every tenant in the list has "([^"]+)" set to "([^"]+)"$"#)]
async fn every_tenant(w: &mut AuthWorld, field: String, value: String) {
    let list = extract::list(w.last().json(), "tenants")
        .cloned()
        .unwrap_or_default();
    if let Some(bad) = list.iter().find(|t| t.get(&field) != Some(&json!(value))) {
        let msg = format!(
            "{}: expected every tenant with {field} = {value:?}, got {:?} for {}",
            w.last_request_line(),
            bad.get(&field),
            bad.get("id").cloned().unwrap_or(Value::Null)
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^tenant "([^"]+)" has status "([^"]+)"$"#)]
async fn tenant_has_status(w: &mut AuthWorld, t: String, status: String) {
    let req = Req::new(
        "GET",
        &format!("/admin/tenants/{{{t}.id}}"),
        w.cred("admin"),
    );
    let ex = w.send(req).await.clone();
    let got = extract::tenant_status(ex.json());
    if got.as_deref() != Some(status.as_str()) {
        w.fail(format!(
            "{} {}: expected the tenant {t:?} with status {status:?}, got {} (HTTP {})",
            ex.method,
            ex.path,
            got.map_or_else(|| "no status".to_owned(), |g| format!("{g:?}")),
            ex.status
        ));
    }
}

#[then(regex = r#"^the capabilities document (is served|is absent)$"#)]
async fn caps_served(w: &mut AuthWorld, how: String) {
    if w.ctx.caps.present != (how == "is served") {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "GET /.well-known/authconf: expected the capabilities document {how}, got it {}",
                if w.ctx.caps.present {
                    "served"
                } else {
                    "absent"
                }
            ),
        );
    }
}

#[then(regex = r#"^no tenant with the slug of "([^"]+)" exists$"#)]
async fn no_such_tenant(w: &mut AuthWorld, name: String) {
    let slug = match w.tenants.get(&name) {
        Some(t) => t.slug.clone(),
        None => w.expand(&format!("{{slug:{name}}}"), false),
    };
    let list = w.all_tenants("").await;
    if let Some(t) = list.iter().find(|t| t.get("slug") == Some(&json!(slug))) {
        w.fail(format!(
            "GET /admin/tenants: expected no tenant with the slug {slug:?}, got {}",
            t.get("id").cloned().unwrap_or(Value::Null)
        ));
    }
    let req = Req::new(
        "GET",
        &format!("/admin/tenants/tenant%3A{slug}"),
        w.cred("admin"),
    );
    let s = w.send(req).await.status;
    if s != 404 {
        w.fail(format!(
            "GET /admin/tenants/tenant:{slug}: expected 404, got {s}"
        ));
    }
}
