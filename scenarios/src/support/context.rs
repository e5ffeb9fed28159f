//! The per-run context shared by every scenario of one run: where the target is, what it
//! claims to offer, the secrets it has shown, the tenants created, and latency figures.
//!
//! Scenarios run concurrently, so everything mutable here sits behind a mutex; the context
//! itself is handed to each new [`crate::AuthWorld`] through a task-local (see
//! [`crate::with_context`]) because cucumber builds worlds with a zero-argument constructor.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::extract;
use crate::verdict::{Deviation, FailureClass};

/// What the target says it offers (`GET /.well-known/authconf`).
///
/// A target without the document is taken to offer only the basics (tenants and API keys),
/// so scenarios that need more are skipped rather than failed on it.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// The document was served and parsed.
    pub present: bool,
    /// The raw document, for the `@contract` scenario that judges its shape.
    pub raw: Option<Value>,
    /// `routing.baseDomain`.
    pub base_domain: Option<String>,
    /// `routing.sources`.
    pub sources: Vec<String>,
    /// `features.*` flags.
    pub features: BTreeMap<String, bool>,
    /// `testControls.*` flags.
    pub test_controls: BTreeMap<String, bool>,
    /// `rateLimit.override`.
    pub rate_limit_override: bool,
    /// `revocation.consistency` is `eventual`.
    pub eventual_revocation: bool,
    /// `revocation.maxDelaySeconds`.
    pub revocation_max_delay: f64,
}

impl Capabilities {
    /// Parses the capabilities document; anything missing reads as "not offered".
    pub fn from_document(doc: &Value) -> Self {
        let flags = |v: Option<&Value>| -> BTreeMap<String, bool> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let routing = doc.get("routing");
        Capabilities {
            present: true,
            raw: Some(doc.clone()),
            base_domain: routing
                .and_then(|r| r.get("baseDomain"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            sources: routing
                .and_then(|r| r.get("sources"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            features: flags(doc.get("features")),
            test_controls: flags(doc.get("testControls")),
            rate_limit_override: doc
                .pointer("/rateLimit/override")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            eventual_revocation: doc
                .pointer("/revocation/consistency")
                .and_then(Value::as_str)
                .is_some_and(|c| c != "immediate"),
            revocation_max_delay: doc
                .pointer("/revocation/maxDelaySeconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        }
    }

    /// The basics every target is assumed to have.
    pub fn basic() -> Self {
        let mut features = BTreeMap::new();
        features.insert("apiKeys".to_owned(), true);
        Capabilities {
            features,
            ..Default::default()
        }
    }

    /// Whether `features.<name>` is true.
    pub fn feature(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }

    /// Whether `testControls.<name>` is true.
    pub fn test_control(&self, name: &str) -> bool {
        self.test_controls.get(name).copied().unwrap_or(false)
    }
}

/// One mail request the target sent to its mail API, as a capture saw it.
#[derive(Debug, Clone, Default)]
pub struct CapturedMail {
    /// `to`, lowercased.
    pub to: String,
    /// `subject`.
    pub subject: String,
    /// `text`.
    pub text: String,
    /// `template` (`verify_email`, `reset_password`, `welcome`).
    pub template: String,
    /// `tenantId`.
    pub tenant_id: Option<String>,
    /// Everything a leak check must read: the body and every header but `Authorization`
    /// (which carries the mail API's own key).
    pub raw: String,
}

/// Reads the mail a target sent. The harness installs one where it can see the target's
/// mail (a `wiremock` mail API for the embedded reference); a deployment could offer one
/// through its capabilities document later. Without one, `@needs-mail` scenarios are skipped.
pub trait MailCapture: Send + Sync + std::fmt::Debug {
    /// Every mail received so far, oldest first.
    fn messages(&self) -> futures::future::BoxFuture<'_, Vec<CapturedMail>>;
}

/// One secret the target has shown, with the exchange that first showed it.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The secret itself.
    pub value: String,
    /// A human label (`A:secret`, `admin`), used in place of the value in reports.
    pub label: String,
    /// The exchange allowed to contain it (the one that issued it); 0 for none.
    pub first_exchange: u64,
    /// `METHOD path` of the exchange that issued it (empty when the target did not).
    pub issued_by: String,
    /// Later exchanges that issued the very same value again (a non-unique token): they may
    /// contain it too, the duplicate is reported as a finding instead.
    pub reissued_by: Vec<u64>,
}

/// Shorter values are not secrets a target issues (the contract's shortest credential is a
/// 20-character key) and would match ordinary text; they are neither scanned nor redacted.
pub const MIN_SECRET_LEN: usize = 8;

/// Every secret of the run; a later response containing one is a leak. Also the issued key
/// prefixes, which are identifiers: shown again they are no leak.
#[derive(Debug, Default)]
pub struct SecretRegistry {
    secrets: Mutex<Vec<Secret>>,
    identifiers: Mutex<std::collections::BTreeSet<String>>,
}

impl SecretRegistry {
    /// Remembers a secret first shown by `exchange` (0: never legitimately shown, e.g. the
    /// admin key that the operator supplied).
    pub fn remember(&self, value: &str, label: &str, exchange: u64) {
        self.remember_issued(value, label, exchange, "");
    }

    /// Remembers a secret issued by `exchange`, which was `request` (`METHOD path`).
    /// Returns the earlier secret when the value was already issued by another exchange (a
    /// non-unique token, or a key secret handed out twice); the caller decides whether this
    /// exchange may contain it ([`Self::allow_in`]).
    pub fn remember_issued(
        &self,
        value: &str,
        label: &str,
        exchange: u64,
        request: &str,
    ) -> Option<Secret> {
        if value.len() < MIN_SECRET_LEN {
            return None;
        }
        let mut s = self.secrets.lock().expect("secret registry poisoned");
        if let Some(x) = s.iter_mut().find(|x| x.value == value) {
            let again = exchange != 0 && x.first_exchange != 0 && x.first_exchange != exchange;
            if again {
                return Some(x.clone());
            }
            return None;
        }
        s.push(Secret {
            value: value.to_owned(),
            label: label.to_owned(),
            first_exchange: exchange,
            issued_by: request.to_owned(),
            reissued_by: Vec::new(),
        });
        None
    }

    /// Remembers an issued key prefix: an identifier that lists and later answers may show.
    pub fn remember_identifier(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        self.identifiers
            .lock()
            .expect("secret registry poisoned")
            .insert(value.to_owned());
    }

    /// Whether `value` is an issued identifier (a key prefix).
    pub fn is_identifier(&self, value: &str) -> bool {
        self.identifiers
            .lock()
            .expect("secret registry poisoned")
            .contains(value)
    }

    /// Marks `value`, already remembered, as issued again by `exchange` (allowed there).
    pub fn allow_in(&self, value: &str, exchange: u64) {
        let mut s = self.secrets.lock().expect("secret registry poisoned");
        if let Some(x) = s.iter_mut().find(|x| x.value == value) {
            if x.first_exchange != exchange && !x.reissued_by.contains(&exchange) {
                x.reissued_by.push(exchange);
            }
        }
    }

    /// Gives a remembered secret a readable label (`A:ci`) for reports.
    pub fn relabel(&self, value: &str, label: &str) {
        let mut s = self.secrets.lock().expect("secret registry poisoned");
        if let Some(x) = s.iter_mut().find(|x| x.value == value) {
            x.label = label.to_owned();
        }
    }

    /// The first remembered secret that `text` contains, other than those `exchange` issued.
    pub fn leaked_in(&self, text: &str, exchange: u64) -> Option<Secret> {
        let s = self.secrets.lock().expect("secret registry poisoned");
        s.iter()
            .find(|x| {
                x.first_exchange != exchange
                    && !x.reissued_by.contains(&exchange)
                    && text.contains(&x.value)
            })
            .cloned()
    }

    /// The first remembered secret that `text` contains, ignoring `allowed` values.
    pub fn any_in(&self, text: &str, allowed: &[&str]) -> Option<Secret> {
        let s = self.secrets.lock().expect("secret registry poisoned");
        s.iter()
            .find(|x| !allowed.contains(&x.value.as_str()) && text.contains(&x.value))
            .cloned()
    }

    /// How many secrets are remembered.
    pub fn len(&self) -> usize {
        self.secrets.lock().expect("secret registry poisoned").len()
    }

    /// Whether no secret is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `value` is known.
    pub fn knows(&self, value: &str) -> bool {
        let s = self.secrets.lock().expect("secret registry poisoned");
        s.iter().any(|x| x.value == value)
    }

    /// Replaces every remembered secret, and anything shaped like a key, in `text`.
    pub fn redact(&self, text: &str) -> String {
        let s = self.secrets.lock().expect("secret registry poisoned");
        let mut out = text.to_owned();
        // Longest first, so a secret that contains another is replaced whole.
        let mut all: Vec<&Secret> = s.iter().collect();
        all.sort_by_key(|x| std::cmp::Reverse(x.value.len()));
        for x in all {
            if out.contains(&x.value) {
                out = out.replace(&x.value, &format!("‹secret {}›", x.label));
            }
        }
        extract::key_pattern()
            .replace_all(&out, |c: &regex::Captures<'_>| {
                format!("‹key {}_{}_…›", &c[1], &c[2])
            })
            .into_owned()
    }
}

/// The ledger: every tenant slug is written here before the create call, so that an
/// interrupted run can be cleaned up (`authconf cleanup`).
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl Ledger {
    /// A ledger appending to `path` (created on first write); `None` keeps nothing on disk.
    pub fn new(path: Option<PathBuf>) -> Self {
        Ledger {
            path,
            lock: Mutex::new(()),
        }
    }

    /// Appends one line `{"slug","id","event"}`; errors are reported, because a tenant that
    /// is not in the ledger could outlive an interrupted run.
    pub fn append(&self, slug: &str, event: &str) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _g = self.lock.lock().expect("ledger poisoned");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let line =
            serde_json::json!({"slug": slug, "id": format!("tenant:{slug}"), "event": event});
        writeln!(f, "{line}")?;
        f.sync_data()
    }
}

/// A propagation delay measured by a polling step.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// What propagated (e.g. "revocation").
    pub what: String,
    /// How long it took until the target showed it.
    pub delay: Duration,
}

/// Everything shared by the scenarios of one run.
#[derive(Debug)]
pub struct RunContext {
    /// Base URL of the target, without a trailing slash.
    pub base_url: String,
    /// The platform admin key, if known.
    pub admin_key: Option<String>,
    /// The routing base domain used for subdomain scenarios (`--base-domain` or the
    /// capabilities document).
    pub base_domain: Option<String>,
    /// Extra headers sent with every request (`--header`).
    pub extra_headers: Vec<(String, String)>,
    /// The run id, part of every slug.
    pub run_id: String,
    /// What the target offers.
    pub caps: Capabilities,
    /// Whether the target is the embedded reference (destructive scenarios allowed).
    pub embedded: bool,
    /// Shared HTTP client.
    pub client: reqwest::Client,
    /// Secrets seen so far.
    pub secrets: SecretRegistry,
    /// Tenant ledger.
    pub ledger: Ledger,
    /// Ids of tenants created by this run and not yet deleted.
    pub tenants: Mutex<Vec<String>>,
    /// Latency samples by endpoint (`GET /v1/api-keys/{id}`).
    pub latencies: Mutex<BTreeMap<String, Vec<Duration>>>,
    /// Propagation delays measured by polling steps.
    pub propagation: Mutex<Vec<Propagation>>,
    /// Where the target's outgoing mail can be read, if anywhere (set once by the harness).
    pub mail: std::sync::OnceLock<Arc<dyn MailCapture>>,
    /// The target's `JWT_SECRET`, when the harness knows it (it chose it for the embedded
    /// reference; `AUTHCONF_JWT_SECRET` for a URL): lets steps sign tokens independently.
    pub jwt_secret: std::sync::OnceLock<String>,
    /// Format deviations recorded by scenarios that went on, by scenario key
    /// (`<feature path>:<scenario line>`, see [`crate::AuthWorld::scenario_key`]).
    pub deviations: Mutex<BTreeMap<String, Vec<Deviation>>>,
    /// Dialect fallbacks used by setup steps, each distinct text once, in first-use order.
    fallbacks: Mutex<Vec<String>>,
    /// Run-wide findings that are no scenario's failure (e.g. non-unique tokens).
    findings: Mutex<Vec<(FailureClass, String)>>,
    exchange_seq: AtomicU64,
    slug_seq: AtomicU64,
}

impl RunContext {
    /// Builds the context; `ledger` is the ledger file of this run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base_url: String,
        admin_key: Option<String>,
        base_domain: Option<String>,
        extra_headers: Vec<(String, String)>,
        run_id: String,
        caps: Capabilities,
        embedded: bool,
        client: reqwest::Client,
        ledger: Option<PathBuf>,
    ) -> Arc<Self> {
        let secrets = SecretRegistry::default();
        if let Some(k) = &admin_key {
            // The admin key is never shown by the target: any response containing it leaks.
            secrets.remember(k, "admin", 0);
        }
        Arc::new(RunContext {
            base_url: base_url.trim_end_matches('/').to_owned(),
            admin_key,
            base_domain,
            extra_headers,
            run_id,
            caps,
            embedded,
            client,
            secrets,
            ledger: Ledger::new(ledger),
            tenants: Mutex::new(Vec::new()),
            latencies: Mutex::new(BTreeMap::new()),
            propagation: Mutex::new(Vec::new()),
            mail: std::sync::OnceLock::new(),
            jwt_secret: std::sync::OnceLock::new(),
            deviations: Mutex::new(BTreeMap::new()),
            fallbacks: Mutex::new(Vec::new()),
            findings: Mutex::new(Vec::new()),
            exchange_seq: AtomicU64::new(1),
            slug_seq: AtomicU64::new(0),
        })
    }

    /// A fresh exchange number (never 0).
    pub fn next_exchange(&self) -> u64 {
        self.exchange_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh slug `authconf-<run id>-<n><random>` that no other scenario uses.
    pub fn new_slug(&self) -> String {
        use rand::Rng as _;
        let n = self.slug_seq.fetch_add(1, Ordering::Relaxed);
        let r: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(3)
            .map(|c| (c as char).to_ascii_lowercase())
            .collect();
        format!("{}{}-{n}{r}", crate::SLUG_PREFIX, self.run_id)
    }

    /// Records a latency sample.
    pub fn record_latency(&self, endpoint: &str, d: Duration) {
        let mut l = self.latencies.lock().expect("latencies poisoned");
        l.entry(endpoint.to_owned()).or_default().push(d);
    }

    /// Records a measured propagation delay.
    pub fn record_propagation(&self, what: &str, delay: Duration) {
        let mut p = self.propagation.lock().expect("propagation poisoned");
        p.push(Propagation {
            what: what.to_owned(),
            delay,
        });
    }

    /// Registers a tenant created by this run, for deletion at the end.
    pub fn track_tenant(&self, id: &str) {
        let mut t = self.tenants.lock().expect("tenants poisoned");
        if !t.iter().any(|x| x == id) {
            t.push(id.to_owned());
        }
    }

    /// Takes the list of tenants to delete.
    pub fn take_tenants(&self) -> Vec<String> {
        std::mem::take(&mut *self.tenants.lock().expect("tenants poisoned"))
    }

    /// Records a format deviation of the scenario `key`; the scenario goes on.
    pub fn record_deviation(&self, key: &str, d: Deviation) {
        let mut m = self.deviations.lock().expect("deviations poisoned");
        let list = m.entry(key.to_owned()).or_default();
        // The same deviation seen twice in one scenario (a retried request) is one deviation.
        if !list.contains(&d) {
            list.push(d);
        }
    }

    /// Takes the deviations recorded for the scenario `key` (empty when none).
    pub fn take_deviations(&self, key: &str) -> Vec<Deviation> {
        self.deviations
            .lock()
            .expect("deviations poisoned")
            .remove(key)
            .unwrap_or_default()
    }

    /// Notes that a setup step used a dialect fallback; each distinct text is kept once.
    pub fn note_fallback(&self, text: impl Into<String>) {
        let text = text.into();
        let mut f = self.fallbacks.lock().expect("fallbacks poisoned");
        if !f.contains(&text) {
            f.push(text);
        }
    }

    /// Every fallback noted so far, in first-use order.
    pub fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.lock().expect("fallbacks poisoned").clone()
    }

    /// Records a run-wide finding that is no scenario's failure; the same finding is kept
    /// once. The text is redacted before it is stored.
    pub fn record_finding(&self, class: FailureClass, text: impl Into<String>) {
        let text = self.secrets.redact(&text.into());
        let mut f = self.findings.lock().expect("findings poisoned");
        if !f.iter().any(|(c, t)| *c == class && *t == text) {
            f.push((class, text));
        }
    }

    /// Every finding recorded so far, in order.
    pub fn findings(&self) -> Vec<(FailureClass, String)> {
        self.findings.lock().expect("findings poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_short_secrets_and_short_key_shapes() {
        let r = SecretRegistry::default();
        // A learned secret of 10 characters.
        r.remember("s3cr3tv4lu", "A:secret", 1);
        // A key-shaped string of 21 characters nobody registered.
        let key = "pk_live_0123456789abc";
        assert_eq!(key.len(), 21);
        let out = r.redact(&format!("token s3cr3tv4lu and key {key} here"));
        assert!(!out.contains("s3cr3tv4lu"), "{out}");
        assert!(!out.contains(key), "{out}");
        assert!(out.contains("‹secret A:secret›"), "{out}");
        assert!(out.contains("‹key pk_live_…›"), "{out}");
        // Ordinary words are left alone.
        assert_eq!(r.redact("sk_live_ short"), "sk_live_ short");
    }

    #[test]
    fn a_secret_is_a_leak_only_outside_the_exchanges_that_issued_it() {
        let r = SecretRegistry::default();
        r.remember_issued("tok-0123456789", "access", 1, "POST /v1/auth/login");
        assert!(r.leaked_in("x tok-0123456789", 1).is_none());
        assert!(r.leaked_in("x tok-0123456789", 2).is_some());
        let again = r.remember_issued("tok-0123456789", "access", 2, "POST /v1/auth/login");
        assert_eq!(
            again.map(|s| s.issued_by).as_deref(),
            Some("POST /v1/auth/login")
        );
        r.allow_in("tok-0123456789", 2);
        assert!(r.leaked_in("x tok-0123456789", 2).is_none());
        assert!(r.leaked_in("x tok-0123456789", 3).is_some());
    }

    #[test]
    fn fallbacks_and_findings_are_kept_once() {
        let ctx = RunContext::new(
            "http://127.0.0.1:9".into(),
            None,
            None,
            Vec::new(),
            "t".into(),
            Capabilities::basic(),
            false,
            reqwest::Client::new(),
            None,
        );
        ctx.note_fallback("a");
        ctx.note_fallback("a");
        ctx.note_fallback("b");
        assert_eq!(ctx.fallbacks(), vec!["a".to_owned(), "b".to_owned()]);
        ctx.record_finding(FailureClass::Security, "x");
        ctx.record_finding(FailureClass::Security, "x");
        assert_eq!(
            ctx.findings(),
            vec![(FailureClass::Security, "x".to_owned())]
        );
    }
}
