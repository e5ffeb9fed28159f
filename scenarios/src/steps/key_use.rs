//! Whether a key works: tried on `GET /v1/tenant` (the harness's probe) or on every route
//! that accepts it, at once or within a grace period or declared delay
//! (`features/rotation.feature`, `isolation.feature`).

use std::time::{Duration, Instant};

use cucumber::{given, then, when};

use crate::support::text::excerpt;
use crate::verdict::FailureClass;
use crate::world::{judge_status, judge_use, AuthWorld, Cred, Req};

/// Tries a key on `GET /v1/tenant`, the harness's probe. When the probe answers 404, 405 or
/// 501, the route itself may be missing: asked again without any key, the same answer means
/// the target has no such route and the scenario is blocked (its keys cannot be judged this
/// way), not that the key was refused.
async fn probe(w: &mut AuthWorld, key: &str) -> u16 {
    let req = Req::new("GET", "/v1/tenant", w.cred(key));
    let ex = w.send(req).await.clone();
    if matches!(ex.status, 404 | 405 | 501) {
        let bare = Req::new("GET", "/v1/tenant", Cred::None);
        let without = w.send(bare).await.status;
        w.last = Some(ex.clone());
        if without == ex.status {
            w.blocked_with(
                "GET",
                "/v1/tenant",
                ex.status,
                format!("the harness tries keys on GET /v1/tenant (key {key:?}), which the target does not serve"),
            );
        }
    }
    ex.status
}

#[then(regex = r#"^the key "([^"]+)" (?:still )?works$"#)]
async fn key_works(w: &mut AuthWorld, key: String) {
    let s = probe(w, &key).await;
    if s != 200 {
        let msg = format!(
            "GET /v1/tenant as {key:?}: expected 200 (the key works), got {s}: {}",
            excerpt(&w.last().body)
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^the key "([^"]+)" is refused(?: with (\d+))?$"#)]
async fn key_refused(w: &mut AuthWorld, key: String, status: String) {
    probe(w, &key).await;
    let want: u16 = status.parse().unwrap_or(401);
    judge_status(w, &[want]);
}

/// A key that should be refused answered `s` (not its 401): a success is a broken security
/// property, another refusal a different code, anything else is left to the tags.
fn refused_otherwise(w: &AuthWorld, key: &str, s: u16, why: &str) -> ! {
    let msg = format!(
        "GET /v1/tenant as {key:?}: expected 401 ({why}), got {s}: {}",
        excerpt(&w.last().body)
    );
    match s / 100 {
        2 | 3 => w.fail_as(FailureClass::Security, msg),
        4 => w.fail_as(FailureClass::Conformance, msg),
        _ => w.fail(msg),
    }
}

#[then(regex = r#"^within (\d+) seconds the key "([^"]+)" is refused$"#)]
async fn eventually_refused(w: &mut AuthWorld, secs: u64, key: String) {
    let start = Instant::now();
    let deadline = Duration::from_secs(secs);
    loop {
        let s = probe(w, &key).await;
        if s == 401 {
            w.ctx
                .record_propagation(&format!("grace period end of {key}"), start.elapsed());
            return;
        }
        if s != 200 {
            let msg = format!(
                "GET /v1/tenant as {key:?}: expected 200 during the grace period, then 401, got {s}: {}",
                excerpt(&w.last().body)
            );
            match s / 100 {
                4 => w.fail_as(FailureClass::Conformance, msg),
                _ => w.fail(msg),
            }
        }
        if start.elapsed() > deadline {
            refused_otherwise(w, &key, s, &format!("the grace period ended {secs} s ago"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[then(
    regex = r#"^the key "([^"]+)" is refused at once, or within the delay the target declares$"#
)]
async fn refused_per_caps(w: &mut AuthWorld, key: String) {
    let start = Instant::now();
    // The reference declares immediate revocation: one probe. A target that declares
    // eventual consistency gets its declared delay, and the measured delay is reported.
    let max = if w.ctx.caps.eventual_revocation {
        Duration::from_secs_f64(w.ctx.caps.revocation_max_delay)
    } else {
        Duration::ZERO
    };
    loop {
        let s = probe(w, &key).await;
        if s == 401 {
            w.ctx.record_propagation("revocation", start.elapsed());
            return;
        }
        if start.elapsed() >= max || !(200..300).contains(&s) {
            refused_otherwise(w, &key, s, &format!("revoked; declared delay {:?}", max));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant routes a key of this kind may call with a GET, per docs/contract.md's table
/// (`/v1/rate-limit` only where the target declares rate limiting).
fn routes_for(w: &AuthWorld, secret: &str) -> Vec<&'static str> {
    let mut routes = vec!["/v1/tenant"];
    if secret.starts_with("sk_") {
        routes.push("/v1/api-keys");
    }
    if w.ctx.caps.feature("rateLimit") {
        routes.push("/v1/rate-limit");
    }
    routes
}

#[given(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
#[when(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
#[then(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
async fn key_on_every_route(w: &mut AuthWorld, key: String, how: String, status: String) {
    let cred = w.cred(&key);
    let Cred::Bearer { value, .. } = &cred else {
        w.harness_error(format!("{key:?} is not a key"))
    };
    let works = how == "works";
    let want: u16 = status.parse().unwrap_or(401);
    for route in routes_for(w, value) {
        let ex = w.send(Req::new("GET", route, cred.clone())).await.clone();
        judge_use(w, &ex, &key, works, want);
    }
}
