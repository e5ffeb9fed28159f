//! What only the reference can show of its storage (docs/contract.md, "Credentials": at
//! rest only a keyed hash; "Limits of the native host": private files): data surviving a
//! restart, the generated admin key file and its mode, and keys stored only as keyed hashes.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use serde_json::json;

use support::*;

#[tokio::test]
async fn data_survives_a_restart_on_the_same_data_dir() {
    let mut h = Service::start().await;
    let t = h.create_tenant("acme").await;
    let (k, s) = h
        .create_key(&t.sk, restricted_body("kept", json!(["read:api_keys"])))
        .await;
    let (gone, gone_secret) = h.create_key(&t.sk, key_body("gone", "secret", None)).await;
    h.revoke(&t.sk, gone["id"].as_str().unwrap()).await.ok(200);
    h.admin(
        "PATCH",
        "/admin/tenants/tenant:acme",
        Some(json!({"plan":"pro","rateLimit":{"requests":5,"windowSeconds":10}})),
    )
    .await
    .ok(200);
    let before = h
        .admin("GET", "/admin/tenants/tenant:acme", None)
        .await
        .body;
    let old_base = h.base.clone();

    h.restart().await;
    assert_ne!(h.base, old_base, "a new listener");
    let after = h.admin("GET", "/admin/tenants/tenant:acme", None).await;
    assert_eq!(after.ok(200), &before);
    for key in [&t.sk, &t.pk, &s] {
        assert!(
            h.works(key).await,
            "keys still authenticate (the pepper persisted)"
        );
    }
    assert!(!h.works(&gone_secret).await, "revocations persisted");
    let r = h
        .call(
            Some(&s),
            "GET",
            &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
            None,
        )
        .await;
    assert_eq!(r.ok(200)["apiKey"], k);
    h.new_tenant(json!({"slug":"acme","name":"A"}))
        .await
        .expect(409, "conflict");
}

#[tokio::test]
async fn a_generated_admin_key_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let generated = Setup {
        admin_key: None,
        ..Setup::default()
    };
    let service = generated.spawn(dir.path()).await;
    let key = service.admin_key.clone();
    assert!(
        key.starts_with("sk_live_") && key.len() >= 8 + 32,
        "admin key shape"
    );
    let file = dir.path().join("platform-admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    let c = client();
    let r = c
        .get(format!("{}/admin/tenants", service.base_url()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    service.shutdown().await;
    // The second start reads the same key back.
    let again = generated.spawn(dir.path()).await;
    assert_eq!(again.admin_key, key);
    again.shutdown().await;
    // A configured key that breaks the contract's shape is refused at start.
    for bad in [
        "sk_live_short",
        "pk_live_0123456789012345678901234567890123",
    ] {
        let other = tempfile::tempdir().unwrap();
        let res = Setup {
            admin_key: Some(bad.into()),
            base_domain: None,
            ..Setup::default()
        }
        .try_spawn(other.path())
        .await;
        assert!(res.is_err(), "{bad} refused");
    }
}

#[tokio::test]
async fn keys_are_stored_only_as_keyed_hashes() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (_, s) = h
        .create_key(
            &t.sk,
            json!({"name":"k","type":"restricted","environment":"test"}),
        )
        .await;
    let secrets = [t.pk.as_str(), t.sk.as_str(), s.as_str(), ADMIN_KEY];
    // No file of the data dir (database, WAL, pepper) holds a key, nor its random part.
    let files = files_under(h.dir.path());
    assert!(!files.is_empty());
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // removed meanwhile (a journal)
        };
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !text.contains(&secret[12..]),
                "{} holds a key",
                path.display()
            );
        }
    }
    // The stored hash is HMAC-SHA256 under the server pepper, for every key type.
    let pepper = std::fs::read_to_string(h.dir.path().join("key-pepper")).unwrap();
    let hasher = auth_core::keys::KeyHasher::new(pepper.trim().as_bytes());
    let db = h.db();
    for secret in &secrets[..3] {
        let (hash, prefix): (String, String) = db
            .query_row(
                "SELECT key_hash, key_prefix FROM api_keys WHERE key_hash = ?1",
                [hasher.hash(secret)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("found by its keyed hash");
        assert_eq!(hash.len(), 64);
        assert_eq!(prefix, secret[..12]);
    }
    // The seed's nine tables, applied as a D1 migration.
    let tables = column(&db, "SELECT name FROM sqlite_master WHERE type = 'table'");
    for table in [
        "tenants",
        "api_keys",
        "platform_admins",
        "platform_admin_tenant_permissions",
        "tenant_data_schemas",
        "usage_metrics",
        "accounts",
        "sessions",
        "verification_tokens",
    ] {
        assert!(tables.iter().any(|t| t == table), "table {table}");
    }
    let applied: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM d1_migrations WHERE name = '0001_initial.sql'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(applied, 1);
}
