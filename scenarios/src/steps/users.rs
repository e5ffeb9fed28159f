//! End users' accounts and sessions: sign-up, login, logout, password change, refresh
//! (`features/user_auth.feature`).

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use serde_json::json;

use crate::support::text::strong_password;
use crate::verdict::FailureClass;
use crate::world::AuthWorld;

#[given(regex = r#"^"(\w+)" has signed up in tenant "([^"]+)"(?: with another password)?$"#)]
async fn has_signed_up(w: &mut AuthWorld, user: String, tenant: String) {
    w.register(&user, &tenant, strong_password()).await;
    let ex = w.last().clone();
    w.expect_setup(&ex, &[201], &format!("signing {user:?} up in {tenant:?}"));
}

#[when(regex = r#"^"(\w+)" signs up in tenant "([^"]+)"$"#)]
async fn signs_up(w: &mut AuthWorld, user: String, tenant: String) {
    w.register(&user, &tenant, strong_password()).await;
}

#[when(regex = r#"^"(\w+)" signs up in tenant "([^"]+)" with the password "([^"]*)"$"#)]
async fn signs_up_with(w: &mut AuthWorld, user: String, tenant: String, password: String) {
    w.register(&user, &tenant, password).await;
}

/// Logs `user` in to `tenant`; a 200 keeps the session for the steps that follow.
async fn log_in(w: &mut AuthWorld, user: &str, tenant: &str, email: String, password: String) {
    w.post_auth(
        tenant,
        "login",
        json!({"email": email, "password": password}),
    )
    .await;
    if w.last().status == 200 {
        w.take_session(user, tenant);
    }
}

#[when(regex = r#"^"(\w+)" logs in to tenant "([^"]+)" with the password "([^"]*)"$"#)]
async fn logs_in_with(w: &mut AuthWorld, user: String, tenant: String, password: String) {
    let email = w.email_of(&user);
    log_in(w, &user, &tenant, email, password).await;
}

#[when(
    regex = r#"^"(\w+)" logs in to tenant "([^"]+)"(?: (with a wrong password|with her address in upper case|with her old password|with the password she uses in tenant "[^"]+"))?$"#
)]
async fn logs_in(w: &mut AuthWorld, user: String, tenant: String, how: String) {
    let email = w.email_of(&user);
    let own = w
        .users
        .accounts
        .get(&format!("{user}@{tenant}"))
        .map(|a| a.password.clone());
    let (email, password) = match how.as_str() {
        "" => (email, own.unwrap_or_else(strong_password)),
        "with a wrong password" => (email, strong_password()),
        "with her address in upper case" => (
            email.to_ascii_uppercase(),
            own.unwrap_or_else(strong_password),
        ),
        "with her old password" => {
            let a = w.account(&user, &tenant);
            match a.old_passwords.last() {
                Some(p) => (email, p.clone()),
                None => w.harness_error(format!("{user:?} has no old password in {tenant:?}")),
            }
        }
        other => {
            let from = other
                .trim_start_matches("with the password she uses in tenant \"")
                .trim_end_matches('"')
                .to_owned();
            (email, w.account(&user, &from).password)
        }
    };
    log_in(w, &user, &tenant, email, password).await;
}

#[when(regex = r#"^"(\w+)" tries to log in to tenant "([^"]+)" (\d+) times one after another$"#)]
async fn logs_in_n(w: &mut AuthWorld, user: String, tenant: String, n: usize) {
    let mut all = Vec::new();
    for _ in 0..n {
        logs_in(w, user.clone(), tenant.clone(), String::new()).await;
        all.push(w.last().clone());
    }
    w.batch = all;
}

/// A user's session answers carried no token of this kind. When the user has sessions, the
/// target issues no such token (upstream has no refresh token): the contract's session answer
/// is not met. Without any session, the feature used the step wrongly.
fn no_token(w: &AuthWorld, user: &str, kind: &str) -> ! {
    if w.users.access.contains_key(user) {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "{user:?}'s session answers (POST /v1/auth/register, /v1/auth/login): expected a {kind}Token, got none"
            ),
        );
    }
    w.harness_error(format!("{user:?} holds no {kind} token: no session yet"))
}

#[when(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
#[given(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
#[then(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
async fn remember_token(w: &mut AuthWorld, user: String, kind: String, name: String) {
    let list = if kind == "access" {
        w.users.access.get(&user)
    } else {
        w.users.refresh.get(&user)
    };
    let Some(t) = list.and_then(|v| v.last()).cloned() else {
        no_token(w, &user, &kind)
    };
    w.users.named.insert(name, t);
}

#[when(
    regex = r#"^"(\w+)" sends (GET|POST) "([^"]+)" with her access token(?: and the tenant header of "([^"]+)")?$"#
)]
async fn user_sends(
    w: &mut AuthWorld,
    step: &Step,
    user: String,
    method: String,
    path: String,
    tenant: String,
) {
    let token = w.latest_access(&user);
    let body = step.docstring().map(|d| d.trim().to_owned());
    let tenant = (!tenant.is_empty()).then_some(tenant);
    w.send_with_token(
        &method,
        &path,
        &format!("{user}:access"),
        token,
        tenant.as_deref(),
        body,
    )
    .await;
}

#[when(
    regex = r#"^I send (GET|POST) "([^"]+)" with the access token "([^"]+)"(?: and the tenant header of "([^"]+)")?$"#
)]
async fn send_named_token(
    w: &mut AuthWorld,
    method: String,
    path: String,
    name: String,
    tenant: String,
) {
    let token = w.named_token(&name);
    let tenant = (!tenant.is_empty()).then_some(tenant);
    w.send_with_token(&method, &path, &name, token, tenant.as_deref(), None)
        .await;
}

#[when(regex = r#"^"(\w+)" logs out$"#)]
async fn logs_out(w: &mut AuthWorld, user: String) {
    let token = w.latest_access(&user);
    w.send_with_token(
        "POST",
        "/v1/auth/logout",
        &format!("{user}:access"),
        token,
        None,
        None,
    )
    .await;
}

#[when(regex = r#"^"(\w+)" changes her password(?: to "([^"]*)")?$"#)]
async fn changes_password(w: &mut AuthWorld, user: String, new: String) {
    let tenant = w.tenant_of(&user);
    let account = w.account(&user, &tenant);
    let new = if new.is_empty() {
        strong_password()
    } else {
        new
    };
    w.ctx
        .secrets
        .remember(&new, &format!("{user}:new password"), 0);
    let token = w.latest_access(&user);
    let body = json!({"currentPassword": account.password, "newPassword": new}).to_string();
    w.send_with_token(
        "POST",
        "/v1/auth/change-password",
        &format!("{user}:access"),
        token,
        None,
        Some(body),
    )
    .await;
    if w.last().status == 200 {
        let key = format!("{user}@{tenant}");
        if let Some(a) = w.users.accounts.get_mut(&key) {
            a.old_passwords
                .push(std::mem::replace(&mut a.password, new));
        }
    }
}

#[when(regex = r#"^"(\w+)" refreshes her session(?: with the refresh token "([^"]+)")?$"#)]
async fn refreshes(w: &mut AuthWorld, user: String, name: String) {
    let tenant = w.tenant_of(&user);
    let token = if name.is_empty() {
        match w.users.refresh.get(&user).and_then(|v| v.last()) {
            Some(t) => t.clone(),
            None => no_token(w, &user, "refresh"),
        }
    } else {
        w.named_token(&name)
    };
    w.post_auth(&tenant, "refresh", json!({"refreshToken": token}))
        .await;
    if w.last().status == 200 {
        w.take_session(&user, &tenant);
    }
}
