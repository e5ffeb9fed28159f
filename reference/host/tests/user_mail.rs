//! End-user mail over real HTTP (docs/contract.md, "End-user auth", **Mail**): verification
//! and reset tokens come by mail and are distinct single-use kinds, the outbox delivers
//! exactly once through a failing or slow mail API (captured by `wiremock`) and keeps mail
//! until an API is configured, and no single-use code rests in any file of the data dir.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use support::users::*;
use support::{files_under, ADMIN_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_and_reset_tokens_come_by_mail_and_are_distinct_single_use_kinds() {
    let server = mail_server().await;
    let mut s = UserSvc::start(Some(&server)).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let login_token = access(&r);
    let all = wait_mails(&server, 1).await;
    let verify = token_in(last_mail(&all, "ann@example.com", "verify_email"));
    assert_eq!(all[0]["tenantId"], tid.as_str());
    assert_eq!(all[0]["subject"], "Verify your email address");
    // Forgot-password: a reset mail; the pending verification token stays valid.
    let f = s
        .email_only(&tid, "forgot-password", "ANN@example.com")
        .await;
    let forgot_body = f.ok(200).clone();
    let all = wait_mails(&server, 2).await;
    let reset = token_in(last_mail(&all, "ann@example.com", "reset_password"));
    assert_ne!(reset, verify);
    // Kinds do not stand in for each other.
    s.verify_email(&tid, &reset)
        .await
        .expect_field("invalid_field", "token");
    s.reset_password(&tid, &verify, "Battery-staple-77")
        .await
        .expect_field("invalid_field", "token");
    // A token of this tenant does nothing in another.
    let (other, _, _) = s.tenant("other").await;
    s.verify_email(&other, &verify)
        .await
        .expect_field("invalid_field", "token");
    // Verification: once.
    s.verify_email(&tid, &verify).await.ok(200);
    s.verify_email(&tid, &verify)
        .await
        .expect_field("invalid_field", "token");
    assert_eq!(
        s.me(&login_token).await.ok(200)["user"]["emailVerified"],
        true
    );
    // Reset: once; it revokes every session; the old password stops working.
    s.reset_password(&tid, &reset, "Battery-staple-77")
        .await
        .ok(200);
    s.me(&login_token).await.expect(401, "unauthorized");
    s.reset_password(&tid, &reset, "Other-staple-78")
        .await
        .expect_field("invalid_field", "token");
    s.login(&tid, "ann@example.com", PASSWORD)
        .await
        .expect(401, "unauthorized");
    s.restart(SECRET, None, Some(&server)).await;
    s.me(&login_token).await.expect(401, "unauthorized");
    let after = s.login(&tid, "ann@example.com", "Battery-staple-77").await;
    let after_token = access(after.ok(200));
    // A reset token expires after an hour.
    s.email_only(&tid, "forgot-password", "ann@example.com")
        .await
        .ok(200);
    let all = wait_mails(&server, 3).await;
    let late = token_in(last_mail(&all, "ann@example.com", "reset_password"));
    s.advance(3600 * 1000 + 1000).await;
    s.reset_password(&tid, &late, "Third-staple-79")
        .await
        .expect_field("invalid_field", "token");
    let _ = after_token;
    // No enumeration: unknown, verified and case-variant addresses get the same answers.
    let n = mails(&server).await.len();
    let unknown = s
        .email_only(&tid, "forgot-password", "nobody@example.com")
        .await;
    assert_eq!(unknown.ok(200), &forgot_body);
    let resend_verified = s
        .email_only(&tid, "resend-verification", "ann@example.com")
        .await;
    let resend_unknown = s
        .email_only(&tid, "resend-verification", "nobody@example.com")
        .await;
    assert_eq!(resend_verified.ok(200), resend_unknown.ok(200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails(&server).await.len(),
        n,
        "no mail for unknown or verified accounts"
    );
    // Resend for an unverified account: a new token, the older one ends.
    s.register(&tid, "bob@example.com").await;
    let all = wait_mails(&server, n + 1).await;
    let first = token_in(last_mail(&all, "bob@example.com", "verify_email"));
    let again = s
        .email_only(&tid, "resend-verification", "BOB@example.com")
        .await;
    assert_eq!(again.ok(200), resend_unknown.ok(200));
    let all = wait_mails(&server, n + 2).await;
    let second = token_in(last_mail(&all, "bob@example.com", "verify_email"));
    assert_ne!(first, second);
    s.verify_email(&tid, &first)
        .await
        .expect_field("invalid_field", "token");
    s.verify_email(&tid, &second).await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_api_500_then_success_delivers_exactly_once_without_secrets() {
    let server = mail_server_after(ResponseTemplate::new(500)).await;
    let s = UserSvc::start(Some(&server)).await;
    let (tid, pk, sk) = s.tenant("acme").await;
    // The request succeeds although the mail API fails.
    let r = s.register(&tid, "ann@example.com").await;
    let got = wait_mails(&server, 2).await;
    assert_eq!(got[0], got[1], "the same mail, retried");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "sent once more after the 500, then never again"
    );
    let key0 = requests[0].headers.get("idempotency-key").unwrap();
    assert_eq!(Some(key0), requests[1].headers.get("idempotency-key"));
    assert_eq!(
        requests[0].headers.get("authorization").unwrap(),
        &format!("Bearer {MAIL_KEY}")
    );
    // No secret in any mail request: not the password, keys or tokens.
    s.email_only(&tid, "forgot-password", "ann@example.com")
        .await
        .ok(200);
    wait_mails(&server, 3).await;
    for req in server.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&req.body).to_string();
        for secret in [
            PASSWORD,
            ADMIN_KEY,
            pk.as_str(),
            sk.as_str(),
            SECRET,
            r["accessToken"].as_str().unwrap(),
            r["refreshToken"].as_str().unwrap(),
            MAIL_KEY,
        ] {
            assert!(!body.contains(secret), "a secret in a mail: {body}");
        }
        for h in req.headers.iter() {
            if h.0 != "authorization" {
                assert!(!h.1.to_str().unwrap_or("").contains(SECRET));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_api_timeouts_are_retried() {
    let server =
        mail_server_after(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
    let s = UserSvc::start_with(
        Some(mail_config(&server, Duration::from_millis(500))),
        Some(server.uri()),
    )
    .await;
    let (tid, _, _) = s.tenant("acme").await;
    s.register(&tid, "ann@example.com").await;
    let got = wait_mails(&server, 2).await;
    assert_eq!(got[0], got[1]);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(
        mails(&server).await.len(),
        2,
        "delivered by the retry, then never again"
    );
    assert!(s.mail.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_stays_queued_without_a_mail_api_and_goes_out_once_one_is_configured() {
    let (mut s, (tid, _, _)) = UserSvc::with_tenant("acme").await;
    s.register(&tid, "ann@example.com").await;
    let server = mail_server().await;
    s.restart(SECRET, None, Some(&server)).await;
    let got = wait_mails(&server, 1).await;
    assert_eq!(got[0]["template"], "verify_email");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(mails(&server).await.len(), 1);
}

/// Panics if the bytes of any file of the data dir hold one of `codes` (or the random part of
/// one, without its `ev_`/`pr_` prefix).
fn assert_no_code_at_rest(dir: &Path, codes: &[String]) {
    let files = files_under(dir);
    assert!(
        files.iter().any(|f| f.ends_with("auth.sqlite3")),
        "{files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for code in codes {
            for needle in [code.as_str(), &code[3..]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "the code {code} rests in {}",
                    f.display()
                );
            }
        }
    }
}

/// Single-use codes never rest in plaintext: after welcome, verification and reset mail went
/// out (and while the service still runs, its WAL files unmerged), no file of the data dir
/// holds any of their codes, and the codes still work.
#[tokio::test]
async fn no_code_of_a_mail_rests_in_any_file_of_the_data_dir() {
    let server = mail_server().await;
    let s = UserSvc::start(Some(&server)).await;
    let created = s
        .new_tenant(json!({"slug": "rest", "name": "Rest",
                        "onboarding": {"adminEmail": "admin@rest.io", "template": "rbac"}}))
        .await;
    let tid = created.ok(201)["tenant"]["id"].as_str().unwrap().to_owned();
    s.register(&tid, "ann@rest.io").await;
    s.email_only(&tid, "resend-verification", "ann@rest.io")
        .await
        .ok(200);
    s.email_only(&tid, "forgot-password", "ann@rest.io")
        .await
        .ok(200);
    let all = wait_mails(&server, 4).await;
    let codes: Vec<String> = all.iter().map(token_in).collect();
    assert_eq!(codes.len(), 4);
    assert_no_code_at_rest(s.dir.path(), &codes);

    // The codes are the real ones: the reset code sets a password that logs in, the welcome
    // code the admin's.
    let reset = token_in(last_mail(&all, "ann@rest.io", "reset_password"));
    s.reset_and_log_in(&tid, &reset, "ann@rest.io", "Another-horse-43")
        .await;
    let welcome = token_in(last_mail(&all, "admin@rest.io", "welcome"));
    s.reset_password(&tid, &welcome, "Admin-horse-44")
        .await
        .ok(200);
    assert_no_code_at_rest(s.dir.path(), &codes);
}
