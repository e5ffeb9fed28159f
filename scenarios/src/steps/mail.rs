//! Mail: verification, reset and welcome mails, their tokens sent back, and no secret in any
//! mail (`features/email.feature`, `onboarding.feature`).

use std::time::Duration;

use cucumber::{then, when};
use serde_json::json;

use crate::extract;
use crate::support::mail::token_in_text;
use crate::support::text::strong_password;
use crate::verdict::FailureClass;
use crate::world::{Account, AuthWorld};

#[then(regex = r#"^"(\w+)" receives an? (verification|password reset|welcome) mail$"#)]
#[when(regex = r#"^"(\w+)" receives an? (verification|password reset|welcome) mail$"#)]
async fn receives(w: &mut AuthWorld, user: String, kind: String) {
    let m = w.wait_mail(&user, &kind).await;
    // The mail names a tenant the user belongs to.
    let mut theirs: Vec<String> = w
        .users
        .accounts
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{user}@")).map(str::to_owned))
        .collect();
    theirs.extend(w.users.last_tenant.get(&user).cloned());
    let ids: Vec<String> = theirs
        .iter()
        .filter_map(|t| w.tenants.get(t).map(|x| x.id.clone()))
        .collect();
    if !m.tenant_id.as_ref().is_some_and(|t| ids.contains(t)) {
        w.fail(format!(
            "the {kind} mail names the tenant {:?}, not one of {user:?}'s ({ids:?})",
            m.tenant_id
        ));
    }
}

#[then(regex = r#"^the (verification|password reset|welcome) mail to "(\w+)" mentions "([^"]+)"$"#)]
async fn mail_mentions(w: &mut AuthWorld, kind: String, user: String, text: String) {
    let text = w.expand(&text, false);
    let Some(m) = w.users.mails.get(&format!("{user}:{kind}")).cloned() else {
        w.harness_error(format!("{user:?} has received no {kind} mail"))
    };
    if !m.text.contains(&text) && !m.subject.contains(&text) {
        w.fail(format!(
            "the {kind} mail to {user:?}: expected it to mention {text:?}, got no mention"
        ));
    }
}

#[then(regex = r#"^within (\d+) seconds? no (?:new )?mail has gone to "(\w+)"$"#)]
async fn no_mail(w: &mut AuthWorld, secs: u64, user: String) {
    let Some(capture) = w.ctx.mail.get().cloned() else {
        w.harness_error("the run has no mail capture")
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let to = w.email_of(&user).to_ascii_lowercase();
    let seen = w.users.seen_mail_tokens.clone();
    let new = capture
        .messages()
        .await
        .into_iter()
        .find(|m| m.to == to && token_in_text(&m.text).is_none_or(|t| !seen.contains(&t)));
    if let Some(m) = new {
        let msg = format!(
            "{}: expected no mail to {user:?} within {secs} s, got a {} mail",
            w.last_request_line(),
            m.template
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^no captured mail contains a secret of this run$"#)]
async fn no_secret_in_mail(w: &mut AuthWorld) {
    let Some(capture) = w.ctx.mail.get().cloned() else {
        w.harness_error("the run has no mail capture")
    };
    let all = capture.messages().await;
    if all.is_empty() {
        w.harness_error("no mail has been captured at all: nothing to judge");
    }
    if w.ctx.secrets.is_empty() {
        w.harness_error("the run has seen no secret to look for");
    }
    for m in &all {
        // A mail may carry its own single-use token, nothing else secret.
        let own = token_in_text(&m.text).unwrap_or_default();
        if let Some(s) = w.ctx.secrets.any_in(&m.raw, &[own.as_str()]) {
            w.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: a {} mail to {}: expected no secret but its own token, got the secret {:?}",
                    m.template, m.to, s.label
                ),
            );
        }
        if let Some(k) = extract::credential_pattern()
            .find_iter(&m.raw)
            .find(|k| !w.ctx.secrets.is_identifier(k.as_str()))
        {
            w.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: a {} mail to {}: expected no credential, got a key-shaped one ({}…)",
                    m.template,
                    m.to,
                    &k.as_str()[..8.min(k.as_str().len())]
                ),
            );
        }
    }
}

#[when(
    regex = r#"^"(\w+)" sends her (earlier )?(verification|password reset|welcome) token to "(verify-email|reset-password)"(?: of tenant "([^"]+)")?(?: with the new password "([^"]*)")?$"#
)]
async fn sends_mail_token(
    w: &mut AuthWorld,
    user: String,
    earlier: String,
    kind: String,
    route: String,
    tenant: String,
    new_password: String,
) {
    let token = w.mail_token(&user, &kind, !earlier.is_empty());
    let tenant = if tenant.is_empty() {
        w.tenant_of(&user)
    } else {
        tenant
    };
    let body = if route == "verify-email" {
        json!({"token": token})
    } else {
        let p = if new_password.is_empty() {
            strong_password()
        } else {
            new_password
        };
        w.ctx
            .secrets
            .remember(&p, &format!("{user}:new password"), 0);
        w.users
            .pending_password
            .insert(format!("{user}@{tenant}"), p.clone());
        json!({"token": token, "newPassword": p})
    };
    w.post_auth(&tenant, &route, body).await;
    let key = format!("{user}@{tenant}");
    if route == "reset-password" && w.last().status == 200 {
        if let Some(p) = w.users.pending_password.remove(&key) {
            let a = w.users.accounts.entry(key).or_insert_with(|| Account {
                tenant: tenant.clone(),
                ..Account::default()
            });
            let old = std::mem::replace(&mut a.password, p);
            if !old.is_empty() {
                a.old_passwords.push(old);
            }
        }
    }
}

#[when(
    regex = r#"^"(\w+)" asks for a (password reset|new verification mail) in tenant "([^"]+)"$"#
)]
async fn asks_for_mail(w: &mut AuthWorld, user: String, what: String, tenant: String) {
    let email = w.email_of(&user);
    let leaf = if what == "password reset" {
        "forgot-password"
    } else {
        "resend-verification"
    };
    w.post_auth(&tenant, leaf, json!({"email": email})).await;
}
