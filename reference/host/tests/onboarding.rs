//! Onboarding over real HTTP (docs/contract.md, "Onboarding"): the schema's first admin and
//! its welcome mail.

mod support;

use std::time::Duration;

use serde_json::json;

use support::users::*;
use support::Tenant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_makes_the_schema_the_first_admin_and_a_welcome_mail() {
    let server = mail_server().await;
    let s = UserSvc::start(Some(&server)).await;
    // Bad onboarding specs: 400 naming the field, nothing created.
    for (onboarding, field) in [
        (
            json!({"adminEmail": "not-an-address"}),
            "onboarding.adminEmail",
        ),
        (
            json!({"adminEmail": "a@acme.io", "template": "nope"}),
            "onboarding.template",
        ),
        (
            json!({"adminEmail": "a@acme.io", "other": 1}),
            "onboarding.other",
        ),
        (json!("admin@acme.io"), "onboarding"),
    ] {
        s.new_tenant(json!({"slug": "acme", "name": "Acme", "onboarding": onboarding}))
            .await
            .expect_field("invalid_field", field);
    }
    s.admin("GET", "/admin/tenants/tenant:acme", None)
        .await
        .expect(404, "not_found");
    let created = s
        .new_tenant(json!({"slug": "acme", "name": "Acme",
                        "onboarding": {"adminEmail": "Admin@Acme.io", "template": "rbac"}}))
        .await;
    let created = created.ok(201).clone();
    let Tenant {
        id: tid, sk, pk, ..
    } = Tenant::from_created(&created);
    let o = &created["onboarding"];
    s.conforms_to("OnboardingState", o).await;
    assert_eq!(o["adminEmail"], "admin@acme.io");
    assert_eq!(o["template"], "rbac");
    assert_eq!(o["adminPasswordSet"], false);
    // The welcome mail: documentation link and a set-password code, no API key.
    let all = wait_mails(&server, 1).await;
    let welcome = last_mail(&all, "admin@acme.io", "welcome");
    assert_eq!(welcome["tenantId"], tid.as_str());
    let text = welcome["text"].as_str().unwrap();
    assert!(text.contains("docs/contract.md"), "{text}");
    assert!(!text.contains(&sk) && !text.contains(&pk) && !text.contains("sk_live_"));
    let token = token_in(welcome);
    // The admin has no usable password until it sets one with the code.
    s.login(&tid, "admin@acme.io", PASSWORD)
        .await
        .expect(401, "unauthorized");
    s.reset_password(&tid, &token, PASSWORD).await.ok(200);
    let l = s.login(&tid, "admin@acme.io", PASSWORD).await;
    let me = s.me(&access(l.ok(200))).await;
    assert_eq!(me.ok(200)["user"]["emailVerified"], true);
    // The onboarding state shows the mail sent and the password set.
    let t = s.admin("GET", &format!("/admin/tenants/{tid}"), None).await;
    let t = t.ok(200);
    assert_eq!(t["onboarding"]["welcomeEmail"], "sent");
    assert_eq!(t["onboarding"]["adminPasswordSet"], true);
    assert_eq!(t["onboarding"]["adminUserId"], me.body["user"]["id"]);
    // The data schema came from the template shipped in the repo.
    let db = rusqlite::Connection::open_with_flags(
        s.dir.path().join("auth.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (version, active, yaml): (String, i64, String) = db
        .query_row(
            "SELECT version, is_active, yaml_content FROM tenant_data_schemas WHERE tenant_id = ?1",
            [&tid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((version.as_str(), active), ("1.0.0", 1));
    assert_eq!(yaml, include_str!("../../templates/rbac.yaml"));
    // A tenant made without onboarding answers as before and gets no mail.
    let plain = s
        .new_tenant(json!({"slug": "plain", "name": "Plain"}))
        .await;
    assert!(plain.ok(201).get("onboarding").is_none());
    let t = s.admin("GET", "/admin/tenants/tenant:plain", None).await;
    assert!(t.ok(200).get("onboarding").is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(mails(&server).await.len(), 1);
}
