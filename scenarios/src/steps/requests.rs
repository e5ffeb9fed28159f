//! Requests as the features write them: any method and path, a credential, a body, headers,
//! a routing source, once, in sequence or concurrently.

use cucumber::gherkin::Step;
use cucumber::{then, when};

use crate::world::{AuthWorld, Body, Cred, Req};

fn docstring_body(req: Req, step: &Step) -> Req {
    match step.docstring() {
        Some(d) => req.json(d.trim()),
        None => req,
    }
}

#[when(regex = r#"^I send (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) "([^"]*)" as "([^"]+)"$"#)]
async fn send_plain(w: &mut AuthWorld, step: &Step, method: String, path: String, cred: String) {
    let req = docstring_body(Req::new(&method, &path, w.cred(&cred)), step);
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with body '(.*)'$"#)]
async fn send_inline(w: &mut AuthWorld, method: String, path: String, cred: String, body: String) {
    let req = Req::new(&method, &path, w.cred(&cred)).json(&body);
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with header "([^"]+)" set to "([^"]*)"$"#)]
async fn send_header(
    w: &mut AuthWorld,
    step: &Step,
    method: String,
    path: String,
    cred: String,
    name: String,
    value: String,
) {
    let req = docstring_body(
        Req::new(&method, &path, w.cred(&cred)).header(&name, &value),
        step,
    );
    w.send(req).await;
}

#[when(
    regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with the (tenant header|tenant slug header|tenant query parameter|subdomain) of "([^"]+)"$"#
)]
async fn send_routed(
    w: &mut AuthWorld,
    step: &Step,
    method: String,
    path: String,
    cred: String,
    source: String,
    tenant: String,
) {
    let mut req = Req::new(&method, &path, w.cred(&cred));
    let (id, slug) = match w.tenants.get(&tenant) {
        Some(t) => (t.id.clone(), t.slug.clone()),
        // An unknown tenant: a slug of this run's prefix that nobody created.
        None => {
            let slug = format!("{}nobody-{tenant}", crate::SLUG_PREFIX).to_ascii_lowercase();
            (format!("tenant:{slug}"), slug)
        }
    };
    match source.as_str() {
        "tenant header" => req = req.header("X-Tenant-ID", &id),
        "tenant slug header" => req = req.header("X-Tenant-ID", &slug),
        "tenant query parameter" => {
            let sep = if path.contains('?') { '&' } else { '?' };
            let enc: String =
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            req.path = format!("{path}{sep}tenant_id={enc}");
        }
        _ => {
            let Some(base) = w.ctx.base_domain.clone() else {
                w.harness_error("the target has no routing base domain (use --base-domain)")
            };
            let port = reqwest::Url::parse(&w.ctx.base_url)
                .ok()
                .and_then(|u| u.port())
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            req.host = Some(format!("{slug}.{base}{port}"));
        }
    }
    let req = docstring_body(req, step);
    w.send(req).await;
}

#[when(
    regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with content type "([^"]*)" and body '(.*)'$"#
)]
async fn send_content_type(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    ct: String,
    body: String,
) {
    let mut req = Req::new(&method, &path, w.cred(&cred));
    req.body = Body::Raw {
        content_type: (!ct.is_empty()).then_some(ct),
        bytes: body.into_bytes(),
    };
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with a JSON body of (\d+) bytes$"#)]
async fn send_big(w: &mut AuthWorld, method: String, path: String, cred: String, size: usize) {
    // A valid JSON object, so that only its size can be the reason for refusing it.
    let filler = size.saturating_sub(40);
    let body = format!(
        "{{\"name\":\"big\",\"type\":\"secret\",\"pad\":\"{}\"}}",
        "a".repeat(filler)
    );
    let mut req = Req::new(&method, &path, w.cred(&cred));
    req.body = Body::Raw {
        content_type: Some("application/json".into()),
        bytes: body.into_bytes(),
    };
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" with the authorization header "([^"]*)"$"#)]
async fn send_raw_auth(w: &mut AuthWorld, method: String, path: String, value: String) {
    let value = w.expand(&value, false);
    let req = Req::new(&method, &path, Cred::Raw(value));
    w.send(req).await;
}

#[when(regex = r#"^I send (GET|POST|DELETE) "([^"]*)" as "([^"]+)" (\d+) times concurrently$"#)]
async fn send_concurrently(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    n: usize,
) {
    let req = Req::new(&method, &path, w.cred(&cred));
    let req = w.prepare(&req);
    w.send_batch(vec![req; n]).await;
}

#[when(
    regex = r#"^I send (GET|POST|DELETE) "([^"]*)" as "([^"]+)" (\d+) times one after another$"#
)]
async fn send_sequentially(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    n: usize,
) {
    let mut all = Vec::new();
    for _ in 0..n {
        let req = Req::new(&method, &path, w.cred(&cred));
        all.push(w.send(req).await.clone());
    }
    w.batch = all;
}

#[when(regex = r#"^I remember the response as "([^"]+)"$"#)]
#[then(regex = r#"^I remember the response as "([^"]+)"$"#)]
async fn remember(w: &mut AuthWorld, name: String) {
    let ex = w.last().clone();
    w.saved.insert(name, ex);
}
