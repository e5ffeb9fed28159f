//! Platform admins and values kept from an answer (`features/admin_dashboard.feature`).

use cucumber::{given, then, when};
use serde_json::json;

use crate::world::{AuthWorld, Req};

fn field_text(w: &AuthWorld, path: &str) -> String {
    match crate::extract::field(w.last().json(), path).and_then(serde_json::Value::as_str) {
        Some(s) => s.to_owned(),
        None => w.fail_expect(
            None,
            format!("a string in {path:?}"),
            crate::extract::field(w.last().json(), path)
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        ),
    }
}

#[then(regex = r#"^I keep the credential in "([^"]+)" as "([^"]+)"$"#)]
#[when(regex = r#"^I keep the credential in "([^"]+)" as "([^"]+)"$"#)]
/// The bearer secret at `path` of the last answer becomes the credential `name`.
async fn keep_credential(w: &mut AuthWorld, path: String, name: String) {
    let v = field_text(w, &path);
    w.raw_creds.insert(name, v);
}

#[then(regex = r#"^I keep the field "([^"]+)" as "([^"]+)"$"#)]
#[when(regex = r#"^I keep the field "([^"]+)" as "([^"]+)"$"#)]
/// The string at `path` of the last answer becomes `{value:name}`.
async fn keep_field(w: &mut AuthWorld, path: String, name: String) {
    let v = field_text(w, &path);
    w.values.insert(name, v);
}

#[given(
    regex = r#"^a platform admin "([^"]+)" with role "([^"]+)"(?: limited to tenant "([^"]+)")?$"#
)]
/// Creates a platform admin with the root key; its key becomes the credential `name` and its
/// id `{value:name.id}`.
async fn platform_admin(w: &mut AuthWorld, name: String, role: String, tenant: String) {
    let email = format!("{}@authconf.invalid", w.ctx.new_slug());
    let mut body = json!({"email": email, "role": role});
    if !tenant.is_empty() {
        body["tenants"] = json!([w.tenant(&tenant).id.clone()]);
    }
    let req = Req::new("POST", "/admin/admins", w.cred("admin")).json(&body.to_string());
    let ex = w.send(req).await.clone();
    w.expect_setup(
        &ex,
        &[201],
        &format!("creating the platform admin {name:?}"),
    );
    keep_credential(w, "credentials.adminKey".into(), name.clone()).await;
    keep_field(w, "admin.id".into(), format!("{name}.id")).await;
}
