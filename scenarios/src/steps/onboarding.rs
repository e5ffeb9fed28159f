//! A tenant created with its first admin (`features/onboarding.feature`).

use cucumber::when;
use serde_json::{json, Value};

use crate::extract;
use crate::world::{AuthWorld, TenantRef};

#[when(
    regex = r#"^the platform admin creates tenant "([^"]+)" with onboarding for "(\w+)"(?: and the template "([^"]+)")?$"#
)]
async fn onboard(w: &mut AuthWorld, name: String, user: String, template: String) {
    let email = w.email_of(&user);
    let mut onboarding = json!({"adminEmail": email});
    if !template.is_empty() {
        onboarding["template"] = json!(template);
    }
    w.create_onboarded_tenant(&name, onboarding).await;
    let ex = w.last().clone();
    if ex.status == 201 {
        let j = ex.json();
        let slug = w.expand(&format!("{{slug:{name}}}"), false);
        let id = extract::tenant_id(j).unwrap_or_else(|| format!("tenant:{slug}"));
        let (secret, public) = extract::tenant_credentials(j);
        w.remember_tenant(&name, TenantRef { id, slug }, secret, public);
        w.users.last_tenant.insert(user, name);
    }
}

#[when(regex = r#"^the platform admin creates tenant "([^"]+)" with the onboarding '(.*)'$"#)]
async fn onboard_literal(w: &mut AuthWorld, name: String, onboarding: String) {
    let text = w.expand(&onboarding, false);
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => w.harness_error(format!("the onboarding in the feature is not JSON: {e}")),
    };
    w.create_onboarded_tenant(&name, v).await;
}
