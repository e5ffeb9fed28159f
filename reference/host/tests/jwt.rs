//! Access-token signing over real HTTP (docs/contract.md, "End-user auth", **Signing secrets
//! and rotation**): rotation overlaps, then retires the old key, and persists across
//! restarts; tokens verify with an independent HS256 implementation; no start without a
//! `JWT_SECRET`.

mod support;

use tempfile::TempDir;

use support::users::*;
use support::{Setup, ADMIN_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rotation_overlaps_then_retires_and_persists() {
    let (mut s, (tid, _, _), r) = UserSvc::with_user("ann@example.com").await;
    let old = access(&r);
    let (h_old, _) = parts(&old);
    let ring = s.admin("GET", "/admin/jwt", None).await;
    let ring = ring.ok(200).clone();
    s.conforms_to("JwtKeyring", &ring).await;
    assert_eq!(ring["currentKid"], h_old["kid"]);
    assert!(!ring.to_string().contains(SECRET));
    // Rotate: new tokens carry the new kid; old ones still verify.
    let rotated = s
        .admin("POST", "/admin/jwt/rotate", None)
        .await
        .ok(200)
        .clone();
    let new_kid = rotated["currentKid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, h_old["kid"].as_str().unwrap());
    assert!(rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == h_old["kid"] && k["status"] == "previous"));
    let fresh = s.log_in(&tid, "ann@example.com").await;
    let new = access(&fresh);
    assert_eq!(parts(&new).0["kid"], new_kid.as_str());
    s.me(&old).await.ok(200);
    s.me(&new).await.ok(200);
    // The state persists across a restart.
    s.restart(SECRET, None, None).await;
    assert_eq!(
        s.admin("GET", "/admin/jwt", None).await.ok(200)["currentKid"],
        new_kid.as_str()
    );
    s.me(&old).await.ok(200);
    s.me(&new).await.ok(200);
    // Retire the previous key: old tokens are refused, new ones work, also after a restart.
    s.admin("POST", "/admin/jwt/retire-previous", None)
        .await
        .ok(200);
    s.me(&old).await.expect(401, "unauthorized");
    s.me(&new).await.ok(200);
    s.restart(SECRET, None, None).await;
    s.me(&old).await.expect(401, "unauthorized");
    s.me(&new).await.ok(200);
    // Tokens of a rotated key verify independently with HMAC-SHA256(JWT_SECRET, kid).
    let (h, c) = parts(&new);
    assert_eq!(
        forge(&h, &c, &derived(SECRET, &new_kid)).split('.').count(),
        3
    );
    s.me(&forge(&h, &c, &derived(SECRET, &new_kid)))
        .await
        .ok(200);
    // Changing JWT_SECRET (the old one as JWT_SECRET_PREVIOUS) keeps the rotated key verifying
    // until the previous keys are retired.
    s.restart(OTHER_SECRET, Some(SECRET), None).await;
    s.me(&new).await.ok(200);
    let newest = access(s.login(&tid, "ann@example.com", PASSWORD).await.ok(200));
    let newest_kid = parts(&newest).0["kid"].as_str().unwrap().to_owned();
    assert!(
        newest_kid.starts_with("e-") && newest_kid != h_old["kid"],
        "signed with the new JWT_SECRET"
    );
    s.me(&newest).await.ok(200);
    // Without the old secret at all, its keys cannot be derived: refused.
    s.restart(OTHER_SECRET, None, None).await;
    s.me(&new).await.expect(401, "unauthorized");
    s.me(&newest).await.ok(200);
    // Tenant keys are refused on the keyring routes.
    let (_, _, sk) = s.tenant("other").await;
    s.call_with("POST", "/admin/jwt/rotate", Some(&sk), &[], None)
        .await
        .expect(403, "forbidden");
    s.call_with("GET", "/admin/jwt", None, &[], None)
        .await
        .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_with_an_independent_hs256_implementation() {
    let (_s, (tid, _, _), r) = UserSvc::with_user("ann@example.com").await;
    let token = access(&r);
    let (header, claims) = parts(&token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].as_str().unwrap().starts_with("e-"));
    for c in [
        "sub", "tenantId", "jti", "iat", "exp", "nbf", "iss", "aud", "type", "sid",
    ] {
        assert!(!claims[c].is_null(), "claim {c}");
    }
    assert_eq!(claims["iss"], "auth-service");
    assert_eq!(claims["aud"], tid.as_str());
    assert_eq!(claims["tenantId"], tid.as_str());
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["sub"], r["user"]["id"]);
    assert_eq!(claims["sid"], r["session"]["id"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    // HMAC-SHA256 over `header.payload` with the same secret gives the same signature.
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert_eq!(b64(&hs256(SECRET.as_bytes(), input.as_bytes())), sig);
    assert_ne!(b64(&hs256(OTHER_SECRET.as_bytes(), input.as_bytes())), sig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_to_start_without_a_jwt_secret() {
    let dir = TempDir::new().unwrap();
    for bad in ["", "   ", "too-short"] {
        let r = Setup::local(extras(bad, None, None), false)
            .try_spawn(dir.path())
            .await;
        let e = r.err().expect("refused");
        assert!(e.to_string().contains("JWT_SECRET"), "{e}");
    }
    // The binary says so and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("JWT_SECRET")
        .env("PLATFORM_ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JWT_SECRET is not set"), "{err}");
}
