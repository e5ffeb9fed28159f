//! The audit log: after a known sequence of changes it holds exactly one record per change,
//! `seq` 1..n without gaps, every record the caller's; pages with `after=` neither lose nor
//! repeat a record (`features/audit.feature`).

use cucumber::{then, when};
use serde_json::{json, Value};

use crate::support::records::{action, expand_actions, seq};
use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Req};

/// Most pages a step reads before it calls the log endless.
const MAX_PAGES: usize = 200;

/// One page of `GET /v1/audit-log`: its records and `nextAfter`.
async fn page(w: &mut AuthWorld, who: &str, query: &str) -> (Vec<Value>, Value) {
    let req = Req::new("GET", &format!("/v1/audit-log{query}"), w.cred(who));
    let ex = w.send(req).await.clone();
    if ex.status != 200 {
        w.expect_setup(&ex, &[200], &format!("reading the audit log of {who:?}"));
    }
    let j = ex.json();
    let records = j
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    (records, j.get("nextAfter").cloned().unwrap_or(Value::Null))
}

/// The whole log, read with the largest page the contract allows, following `nextAfter`.
async fn whole_log(w: &mut AuthWorld, who: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = "?limit=1000".to_owned();
    for _ in 0..MAX_PAGES {
        let (records, next) = page(w, who, &query).await;
        if records.is_empty() {
            return all;
        }
        all.extend(records);
        match next.as_i64() {
            Some(n) => query = format!("?after={n}&limit=1000"),
            None => return all,
        }
    }
    w.fail_expect(
        None,
        format!("an end within {MAX_PAGES} pages"),
        "more pages",
    )
}

/// Every record belongs to `tenant_id`; a foreign one is a leak across tenants.
fn check_owner(w: &AuthWorld, records: &[Value], tenant_id: &str, what: &str) {
    if let Some(r) = records
        .iter()
        .find(|r| r.get("tenantId").and_then(Value::as_str) != Some(tenant_id))
    {
        w.fail_as(
            FailureClass::Security,
            format!(
                "{what}: expected only records of {tenant_id}, got a record of {}: {r}",
                r.get("tenantId").unwrap_or(&Value::Null)
            ),
        );
    }
}

/// `seq` runs `first, first+1, ...` without gaps or repeats.
fn check_consecutive(w: &AuthWorld, records: &[Value], first: i64, what: &str) {
    let seqs: Vec<Option<i64>> = records.iter().map(seq).collect();
    let want: Vec<Option<i64>> = (0..records.len() as i64).map(|i| Some(first + i)).collect();
    if seqs != want {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!(
                "{what}: seq {first}..{} in order, no gaps",
                first + records.len() as i64 - 1
            ),
            format!("seq {seqs:?}"),
        );
    }
}

#[then(regex = r#"^the audit log of "([^"]+)" holds exactly, in order: "([^"]*)"$"#)]
async fn log_exactly(w: &mut AuthWorld, who: String, actions: String) {
    let want = expand_actions(&actions);
    let tenant = who.split(':').next().unwrap_or_default().to_owned();
    let tenant_id = w.tenant(&tenant).id.clone();
    let records = whole_log(w, &who).await;
    check_owner(
        w,
        &records,
        &tenant_id,
        &format!("GET /v1/audit-log as {who}"),
    );
    let got: Vec<String> = records.iter().map(action).collect();
    if got != want {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!("one record per change, in order: {want:?}"),
            format!("{got:?}"),
        );
    }
    check_consecutive(w, &records, 1, "GET /v1/audit-log");
    // A record names the response that caused it.
    if let Some(r) = records.iter().find(|r| {
        action(r) != "api_key.expired"
            && r.get("requestId")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
    }) {
        w.fail_expect(None, "a requestId on every record", r.to_string());
    }
}

#[then(
    regex = r#"^reading the audit log of "([^"]+)" in pages of (\d+) gives every record once, in order$"#
)]
async fn paged(w: &mut AuthWorld, who: String, size: usize) {
    let tenant = who.split(':').next().unwrap_or_default().to_owned();
    let tenant_id = w.tenant(&tenant).id.clone();
    let whole = whole_log(w, &who).await;
    let mut paged: Vec<Value> = Vec::new();
    let mut query = format!("?limit={size}");
    let mut ended = false;
    for _ in 0..MAX_PAGES {
        let (records, next) = page(w, &who, &query).await;
        if records.len() > size {
            w.fail_expect(
                None,
                format!("at most {size} records a page"),
                records.len(),
            );
        }
        if records.is_empty() {
            if !next.is_null() {
                w.fail_expect(None, "\"nextAfter\":null on an empty page", next);
            }
            ended = true;
            break;
        }
        let last = records.last().and_then(seq);
        if next.as_i64() != last {
            w.fail_expect(
                None,
                format!("nextAfter = the page's last seq {last:?}"),
                next.to_string(),
            );
        }
        paged.extend(records);
        query = format!("?after={}&limit={size}", next.as_i64().unwrap_or(0));
    }
    if !ended {
        w.fail_expect(
            None,
            format!("an empty page within {MAX_PAGES} pages"),
            "more",
        );
    }
    check_owner(
        w,
        &paged,
        &tenant_id,
        &format!("GET /v1/audit-log?after= as {who}"),
    );
    let seqs = |v: &[Value]| v.iter().map(seq).collect::<Vec<_>>();
    if seqs(&paged) != seqs(&whole) {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!("the pages together give the log's seq {:?}", seqs(&whole)),
            format!("{:?}", seqs(&paged)),
        );
    }
    check_consecutive(w, &paged, 1, "GET /v1/audit-log in pages");
}

#[when(regex = r#"^"([^"]+)" and "([^"]+)" each create (\d+) keys at the same time$"#)]
/// Both tenants write to their logs concurrently, so a target that mixes logs under load
/// shows it.
async fn busy(w: &mut AuthWorld, a: String, b: String, n: usize) {
    let mut reqs = Vec::new();
    for i in 0..n {
        for who in [&a, &b] {
            let body =
                json!({"name": format!("busy {i}"), "type": "secret", "environment": "live"});
            let req = Req::new("POST", "/v1/api-keys", w.cred(who)).json(&body.to_string());
            reqs.push(w.prepare(&req));
        }
    }
    w.send_batch(reqs).await;
    let batch = w.batch.clone();
    if let Some(bad) = batch.iter().find(|e| e.status != 201) {
        w.expect_setup(bad, &[201], "creating keys in both tenants at once");
    }
}
