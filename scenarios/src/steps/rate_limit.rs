//! Rate limits: a tenant's override, the 429s of a burst, the `RateLimit-*` and `Retry-After`
//! headers, and the window's reset (`features/rate_limit.feature`).

use std::time::{Duration, Instant};

use cucumber::{given, then};
use serde_json::json;

use crate::extract;
use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Exchange, Req};

#[given(regex = r#"^tenant "([^"]+)" has a rate limit of (\d+) requests per (\d+) seconds?$"#)]
async fn rate_limit_override(w: &mut AuthWorld, tenant: String, n: u32, secs: u32) {
    let req = Req::new(
        "PATCH",
        &format!("/admin/tenants/{{{tenant}.id}}"),
        w.cred("admin"),
    )
    .json(&json!({"rateLimit": {"requests": n, "windowSeconds": secs}}).to_string());
    let ex = w.send(req).await.clone();
    w.expect_setup(
        &ex,
        &[200],
        &format!("setting the rate limit of {tenant:?}"),
    );
}

#[then(
    regex = r#"^every response with status (\d+) is a problem "([^"]+)" with the header "([^"]+)"$"#
)]
async fn every_problem(w: &mut AuthWorld, status: u16, code: String, header: String) {
    let batch = w.batch.clone();
    let req = batch
        .last()
        .map(|e| format!("{} {}", e.method, e.path))
        .unwrap_or_default();
    if !batch.iter().any(|e| e.status == status) {
        let all: Vec<u16> = batch.iter().map(|e| e.status).collect();
        w.fail(format!(
            "{req} x {}: expected some answers {status}, got {all:?}",
            all.len()
        ));
    }
    for e in batch.iter().filter(|e| e.status == status) {
        let got = extract::error_code(e.json());
        if got.as_deref() != Some(code.as_str()) {
            w.deviate(format!(
                "expected every {status} to be a problem {code:?}, got code {got:?}"
            ));
            break;
        }
    }
    if let Some(e) = batch
        .iter()
        .find(|e| e.status == status && e.header(&header).is_none())
    {
        let _ = e;
        w.deviate(format!(
            "expected every {status} with the header {header}, got one without"
        ));
    }
}

#[then(regex = r#"^the (\d+) responses count down the "([^"]+)" header$"#)]
async fn count_down(w: &mut AuthWorld, n: usize, header: String) {
    let values: Vec<Option<i64>> = w
        .batch
        .iter()
        .map(|e| e.header(&header).and_then(|v| v.trim().parse().ok()))
        .collect();
    let req = w
        .batch
        .last()
        .map(|e| format!("{} {}", e.method, e.path))
        .unwrap_or_default();
    if values.len() != n || values.iter().any(Option::is_none) {
        w.fail(format!(
            "{req} x {n}: expected a numeric {header} on every answer, got {values:?}"
        ));
    }
    let v: Vec<i64> = values.into_iter().flatten().collect();
    if v.windows(2).any(|p| p[1] != p[0] - 1) {
        w.fail_as(
            FailureClass::Security,
            format!("{req} x {n}: expected {header} to count down by one, got {v:?}"),
        );
    }
}

#[then(regex = r#"^within (\d+) seconds "([^"]+)" gets (\d+) on (GET) "([^"]*)" again$"#)]
async fn eventually_status(
    w: &mut AuthWorld,
    secs: u64,
    cred: String,
    status: u16,
    method: String,
    path: String,
) {
    let start = Instant::now();
    loop {
        let req = Req::new(&method, &path, w.cred(&cred));
        let got = w.send(req).await.status;
        if got == status {
            w.ctx
                .record_propagation("rate-limit window reset", start.elapsed());
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            w.fail(format!(
                "{method} {path} as {cred:?}: expected {status} within {secs} s, got {got}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header_num(ex: &Exchange, name: &str) -> Option<i64> {
    ex.header(name).and_then(|v| v.trim().parse().ok())
}

#[then(
    regex = r#"^every 429 carries Retry-After equal to its RateLimit-Reset, in whole seconds from 1 to (\d+)$"#
)]
async fn retry_after_exact(w: &mut AuthWorld, window: i64) {
    let batch = w.batch.clone();
    let refused: Vec<&Exchange> = batch.iter().filter(|e| e.status == 429).collect();
    if refused.is_empty() {
        w.fail("expected some 429 answers in the batch, got none");
    }
    for e in refused {
        let line = format!("{} {}", e.method, e.path);
        let retry = e.header("retry-after").unwrap_or("");
        let Ok(secs) = retry.trim().parse::<i64>() else {
            w.fail(format!(
                "{line}: expected Retry-After in whole seconds, got {retry:?}"
            ))
        };
        if !(1..=window).contains(&secs) {
            w.fail(format!(
                "{line}: expected Retry-After from 1 to {window} seconds (the window), got {secs}"
            ));
        }
        match header_num(e, "ratelimit-reset") {
            Some(reset) if reset == secs => {}
            // A second may tick between the two readings of the clock.
            Some(reset) if (reset - secs).abs() <= 1 => {}
            other => w.fail(format!(
                "{line}: expected Retry-After equal to RateLimit-Reset, got Retry-After {secs} and RateLimit-Reset {other:?}"
            )),
        }
    }
}

#[then(
    regex = r#"^the admitted responses carry RateLimit-Remaining from (\d+) down to 0, each value once$"#
)]
async fn remaining_each_once(w: &mut AuthWorld, top: i64) {
    let mut got: Vec<Option<i64>> = w
        .batch
        .iter()
        .filter(|e| (200..300).contains(&e.status))
        .map(|e| header_num(e, "ratelimit-remaining"))
        .collect();
    got.sort();
    let want: Vec<Option<i64>> = (0..=top).map(Some).collect();
    if got != want {
        w.fail(format!(
            "GET burst: expected RateLimit-Remaining {top}..0, one value per admitted request, got {got:?}"
        ));
    }
}
