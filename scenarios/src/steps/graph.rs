//! Steps of the graph scenarios (`features/graph.feature`): CSV upload, reload, check,
//! validate, mutations and versions, through the HTTP routes only.
//!
//! The graph version a scenario starts from is noted (`I note the graph version of "A"`) and
//! every later version is judged relative to it, so the steps hold on a target whose versions
//! do not start at 0.

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use serde_json::{json, Value};

use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Body, Exchange, Req};

const HEADER: &str = "subject_type,subject_id,relation,object_type,object_id";

fn docstring(w: &AuthWorld, step: &Step) -> String {
    match &step.docstring {
        // Gherkin keeps the doc string's first newline; a CSV does not start with one.
        Some(d) => d.trim_start_matches('\n').to_owned(),
        None => w.harness_error(format!("the step {:?} needs a doc string", step.value)),
    }
}

async fn upload(w: &mut AuthWorld, who: &str, csv: &str) -> Exchange {
    let mut req = Req::new("PUT", "/v1/graph/csv", w.cred(who));
    req.body = Body::Raw {
        content_type: Some("text/csv".into()),
        bytes: csv.as_bytes().to_vec(),
    };
    w.send(req).await.clone()
}

async fn reload(w: &mut AuthWorld, who: &str) -> Exchange {
    let req = Req::new("POST", "/v1/graph/reload", w.cred(who));
    w.send(req).await.clone()
}

/// `GET /v1/graph/state` as `who`; the state's JSON.
async fn state(w: &mut AuthWorld, who: &str) -> Value {
    let req = Req::new("GET", "/v1/graph/state", w.cred(who));
    let ex = w.send(req).await.clone();
    if ex.status != 200 {
        w.fail_expect(None, "200 with the graph's state", ex.status);
    }
    ex.json().clone()
}

fn number(w: &AuthWorld, v: &Value, field: &str) -> i64 {
    match v.get(field).and_then(Value::as_i64) {
        Some(n) => n,
        None => w.fail_expect(
            Some(FailureClass::Conformance),
            format!("a whole number in {field:?}"),
            v.get(field).cloned().unwrap_or(Value::Null),
        ),
    }
}

/// Uploads and reloads; a refusal of either is a setup failure.
async fn load(w: &mut AuthWorld, who: &str, csv: &str) {
    let ex = upload(w, who, csv).await;
    w.expect_setup(&ex, &[200, 201], &format!("uploading the graph of {who:?}"));
    let ex = reload(w, who).await;
    w.expect_setup(&ex, &[200], &format!("reloading the graph of {who:?}"));
}

/// The five columns of an edge id `st:sid:rel:ot:oid`.
fn edge_parts(w: &AuthWorld, id: &str) -> [String; 5] {
    let parts: Vec<&str> = id.split(':').collect();
    match parts.as_slice() {
        [a, b, c, d, e] => [a, b, c, d, e].map(|s| (*s).to_owned()),
        _ => w.harness_error(format!("{id:?} is not an edge id with five parts")),
    }
}

fn edge_json(w: &AuthWorld, id: &str) -> Value {
    let [st, sid, rel, ot, oid] = edge_parts(w, id);
    json!({"subject_type": st, "subject_id": sid, "relation": rel,
           "object_type": ot, "object_id": oid})
}

#[given(regex = r#"^"([^"]+)" has loaded the graph:$"#)]
async fn given_loaded(w: &mut AuthWorld, who: String, step: &Step) {
    let csv = docstring(w, step);
    load(w, &who, &csv).await;
}

#[given(
    regex = r#"^"([^"]+)" has loaded membership chains of (\d+) and (\d+) hops to "([^"]+)" on "([^"]+)"$"#
)]
/// Two chains `user:hop<N> -member-> g1 -member-> ... -member-> gN -relation-> object`, N
/// membership hops each, with their own groups.
async fn given_chains(
    w: &mut AuthWorld,
    who: String,
    n1: usize,
    n2: usize,
    relation: String,
    object: String,
) {
    let (ot, oid) = match object.split_once(':') {
        Some(p) => p,
        None => w.harness_error(format!("{object:?} is not a node id type:id")),
    };
    let mut csv = format!("{HEADER}\n");
    for n in [n1, n2] {
        let group = |i: usize| format!("hop{n}-g{i}");
        csv.push_str(&format!("user,hop{n},member,group,{}\n", group(1)));
        for i in 1..n {
            csv.push_str(&format!(
                "group,{},member,group,{}\n",
                group(i),
                group(i + 1)
            ));
        }
        csv.push_str(&format!("group,{},{relation},{ot},{oid}\n", group(n)));
    }
    load(w, &who, &csv).await;
}

#[when(regex = r#"^"([^"]+)" uploads the graph CSV:$"#)]
async fn when_upload(w: &mut AuthWorld, who: String, step: &Step) {
    let csv = docstring(w, step);
    upload(w, &who, &csv).await;
}

#[when(regex = r#"^"([^"]+)" reloads the graph$"#)]
async fn when_reload(w: &mut AuthWorld, who: String) {
    reload(w, &who).await;
}

#[when(regex = r#"^"([^"]+)" (adds|revokes) the graph edges? "([^"]+)"$"#)]
/// One `POST /v1/graph/mutations` call with one op per listed edge id (comma-separated).
async fn when_mutate(w: &mut AuthWorld, who: String, op: String, ids: String) {
    let ops: Vec<Value> = ids
        .split(',')
        .map(str::trim)
        .map(|id| match op.as_str() {
            "adds" => json!({"op": "add", "edge": edge_json(w, id)}),
            _ => json!({"op": "revoke", "edgeId": id}),
        })
        .collect();
    let req = Req::new("POST", "/v1/graph/mutations", w.cred(&who))
        .json(&json!({ "mutations": ops }).to_string());
    w.send(req).await;
}

#[when(regex = r#"^I note the graph version of "([^"]+)"$"#)]
#[given(regex = r#"^I note the graph version of "([^"]+)"$"#)]
async fn note_version(w: &mut AuthWorld, who: String) {
    let s = state(w, &who).await;
    let v = number(w, &s, "version");
    w.values
        .insert(format!("graph-version:{who}"), v.to_string());
}

fn noted(w: &AuthWorld, who: &str) -> i64 {
    match w.values.get(&format!("graph-version:{who}")) {
        Some(v) => v.parse().unwrap_or(0),
        None => w.harness_error(format!(
            "no noted graph version of {who:?} (add: I note the graph version of {who:?})"
        )),
    }
}

#[then(regex = r#"^the graph version of "([^"]+)" has moved by (\d+)$"#)]
async fn version_moved(w: &mut AuthWorld, who: String, by: i64) {
    let before = noted(w, &who);
    let s = state(w, &who).await;
    let now = number(w, &s, "version");
    if now != before + by {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!(
                "version {} (noted {before}, then {by} change(s))",
                before + by
            ),
            format!("version {now}"),
        );
    }
}

#[then(regex = r#"^the graph of "([^"]+)" holds (\d+) edges?$"#)]
async fn edge_count(w: &mut AuthWorld, who: String, n: i64) {
    let s = state(w, &who).await;
    let got = number(w, &s, "edgeCount");
    if got != n {
        w.fail_expect(None, format!("edgeCount {n}"), format!("edgeCount {got}"));
    }
}

#[then(regex = r#"^as "([^"]+)", "([^"]+)" (has|does not have) "([^"]+)" on "([^"]+)"$"#)]
async fn check(
    w: &mut AuthWorld,
    who: String,
    subject: String,
    has: String,
    relation: String,
    object: String,
) {
    let want = has == "has";
    let body = json!({"subject": subject, "relation": relation, "object": object});
    let req = Req::new("POST", "/v1/graph/check", w.cred(&who)).json(&body.to_string());
    let ex = w.send(req).await.clone();
    if ex.status != 200 {
        w.fail_expect(None, "200 with {\"allowed\":...}", ex.status);
    }
    let got = ex.json().get("allowed").and_then(Value::as_bool);
    if got != Some(want) {
        // Granting what the graph does not hold is an authorization failure.
        let class = if want {
            FailureClass::Conformance
        } else {
            FailureClass::Security
        };
        w.fail_expect(
            Some(class),
            format!("{{\"allowed\":{want}}} for {subject} {relation} {object}"),
            ex.body.clone(),
        );
    }
}

#[then(
    regex = r#"^as "([^"]+)", the chain "([^"]*)" from "([^"]+)" to "([^"]+)" is (valid|invalid)$"#
)]
async fn validate(
    w: &mut AuthWorld,
    who: String,
    chain: String,
    user: String,
    resource: String,
    verdict: String,
) {
    let ids: Vec<&str> = chain
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let body = json!({"edgeIds": ids, "userId": user, "resourceId": resource});
    let req = Req::new("POST", "/v1/graph/validate", w.cred(&who)).json(&body.to_string());
    let ex = w.send(req).await.clone();
    if ex.status != 200 {
        w.fail_expect(None, "200 with {\"valid\":...}", ex.status);
    }
    let j = ex.json();
    let valid = j.get("valid").and_then(Value::as_bool);
    match (verdict.as_str(), valid) {
        ("valid", Some(true)) => {}
        ("invalid", Some(false)) => {
            if j.get("reason")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                w.fail_expect(None, "a \"reason\" with the refusal", ex.body.clone());
            }
        }
        ("invalid", _) => w.fail_expect(
            Some(FailureClass::Security),
            format!("{{\"valid\":false,...}} for the chain {chain:?}"),
            ex.body.clone(),
        ),
        _ => w.fail_expect(
            None,
            format!("{{\"valid\":true}} for {chain:?}"),
            ex.body.clone(),
        ),
    }
}

#[then(regex = r#"^the graph mutation log of "([^"]+)" since the noted version lists, in order:$"#)]
/// The table's rows are `| +<versions after the noted one> | add|revoke|reload | <edge id or -> |`.
/// The log must hold exactly these entries, in this order: nothing lost, nothing extra.
async fn mutation_log(w: &mut AuthWorld, who: String, step: &Step) {
    let since = noted(w, &who);
    let Some(table) = step.table.as_ref() else {
        w.harness_error("the mutation log step needs a table")
    };
    let want: Vec<(i64, String, Option<String>)> = table
        .rows
        .iter()
        .map(|r| {
            let off: i64 = r[0].trim().trim_start_matches('+').parse().unwrap_or(0);
            let edge = r.get(2).map(|s| s.trim()).filter(|s| *s != "-");
            (since + off, r[1].trim().to_owned(), edge.map(str::to_owned))
        })
        .collect();
    let path = format!("/v1/graph/mutations?since={since}&limit=1000");
    let ex = w.send(Req::new("GET", &path, w.cred(&who))).await.clone();
    if ex.status != 200 {
        w.fail_expect(None, "200 with the mutation log", ex.status);
    }
    let got: Vec<(i64, String, Option<String>)> = ex
        .json()
        .get("mutations")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m.get("version").and_then(Value::as_i64).unwrap_or(-1),
                        m.get("op").and_then(Value::as_str).unwrap_or("").to_owned(),
                        m.get("edgeId").and_then(Value::as_str).map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if got != want {
        w.fail_expect(
            Some(FailureClass::Conformance),
            format!("the log entries (version, op, edge) {want:?}"),
            format!("{got:?}"),
        );
    }
    let current = ex.json().get("currentVersion").and_then(Value::as_i64);
    let last = want.last().map(|e| e.0).unwrap_or(since);
    if current != Some(last) {
        w.fail_expect(
            None,
            format!("currentVersion {last}"),
            format!("{current:?}"),
        );
    }
}

#[then(regex = r#"^the problem detail names line (\d+) and column (\d+)$"#)]
async fn detail_line_column(w: &mut AuthWorld, line: u32, column: u32) {
    let ex = w.last().clone();
    let want = format!("line {line}, column {column}");
    let j = ex.json();
    let mut texts: Vec<String> = vec![j["detail"].as_str().unwrap_or("").to_owned()];
    if let Some(errs) = j["errors"].as_array() {
        texts.extend(
            errs.iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned)),
        );
    }
    if !texts.iter().any(|t| t.contains(&want)) {
        w.fail_expect(
            None,
            format!("a problem whose detail names {want:?}"),
            ex.body.clone(),
        );
    }
}
