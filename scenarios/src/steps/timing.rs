//! Does a login's time tell whether the address has an account? (`features/timing.feature`)

use std::time::{Duration, Instant};

use cucumber::{then, when};
use serde_json::json;

use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Req};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[when(
    regex = r#"^I time (\d+) interleaved logins to tenant "([^"]+)" with a wrong password, for the address of "(\w+)" and for an unknown address$"#
)]
/// Alternates known and unknown addresses so drift on the target (load, caches, CPU
/// frequency) falls on both samples alike; one warm-up round of each is not counted.
async fn time_logins(w: &mut AuthWorld, n: usize, tenant: String, user: String) {
    let known = w.email_of(&user);
    let unknown = format!("nobody-{}@authconf.invalid", w.ctx.new_slug());
    let public = w.cred(&format!("{tenant}:public"));
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=n {
        for (i, email) in [&known, &unknown].into_iter().enumerate() {
            let body = json!({"email": email, "password": "Wrong-password-123"}).to_string();
            // The tenant named by its publishable key, so a limiter for requests without any
            // credential does not throttle the samples.
            let req = Req::new("POST", "/v1/auth/login", public.clone()).json(&body);
            let started = Instant::now();
            let ex = w.send(req).await.clone();
            let took = started.elapsed();
            if ex.status != 401 {
                // A wrong password that logs in is a broken security property; any other
                // refusal is a refusal in another form, and the timing cannot be measured.
                let class = if (200..300).contains(&ex.status) {
                    FailureClass::Security
                } else {
                    FailureClass::Conformance
                };
                w.fail_expect(
                    Some(class),
                    "401 for a wrong password or unknown address",
                    ex.status,
                );
            }
            if round > 0 {
                samples[i].push(took);
            }
        }
    }
    let [mut k, mut u] = samples;
    let (mk, mu) = (median(&mut k), median(&mut u));
    w.values
        .insert("timing:known".into(), mk.as_micros().to_string());
    w.values
        .insert("timing:unknown".into(), mu.as_micros().to_string());
}

#[then(
    regex = r#"^the median times differ by less than (\d+) ms or by less than (\d+)% of the slower one$"#
)]
/// The margin is the larger of an absolute bound (jitter of a remote target) and a share of
/// the slower median (a target with slow hashing): a skipped hash differs by the whole
/// hashing time, far more than either.
async fn medians_close(w: &mut AuthWorld, ms: u64, pct: u64) {
    let get = |k: &str| -> u128 {
        w.values
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    let (known, unknown) = (get("timing:known"), get("timing:unknown"));
    let diff = known.abs_diff(unknown);
    let slower = known.max(unknown);
    let margin = u128::from(ms) * 1000;
    let share = slower * u128::from(pct) / 100;
    if diff >= margin.max(share) {
        w.fail_as(
            FailureClass::Security,
            format!(
                "POST /v1/auth/login: expected the same time for a known and an unknown address (median difference under {ms} ms or {pct}%), got medians {:.1} ms (known) and {:.1} ms (unknown): the time tells whether an address has an account",
                known as f64 / 1000.0,
                unknown as f64 / 1000.0
            ),
        );
    }
}
