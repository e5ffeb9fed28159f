//! The checks every exchange goes through, whichever step sent it: what it issues is learnt
//! first, then a secret issued elsewhere, a whole credential nobody issued, or internal text
//! in an error fails the step.

use super::core::AuthWorld;
use crate::context::RunContext;
use crate::extract;
use crate::support::http::{ex_text, Exchange};
use crate::support::internals::internal_patterns;
use crate::verdict::FailureClass;

impl AuthWorld {
    /// Learns what the response issues (secrets, tokens, key prefixes), then fails the step
    /// if it shows a secret that another exchange issued, or a whole credential nobody
    /// issued. Learning comes first so that a response is never flagged for what it issues
    /// itself, whatever the credential's shape or length.
    pub(crate) fn check_exchange(&mut self, ex: &Exchange) {
        self.register_issued(ex);
        check_internals(self, ex);
        if let Some(leak) = self.ctx.secrets.leaked_in(&ex_text(ex), ex.id) {
            let origin = if leak.issued_by.is_empty() {
                "which the target must never show".to_owned()
            } else {
                format!("which {} issued earlier", leak.issued_by)
            };
            self.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: {} {}: expected no secret shown again, got the secret {:?} ({origin})",
                    ex.method, ex.path, leak.label
                ),
            );
        }
        if let Some(stray) = stray_key(&self.ctx, ex) {
            self.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: {} {}: expected no credential the response did not issue, got a whole key-shaped credential ({}…)",
                    ex.method,
                    ex.path,
                    &stray[..8.min(stray.len())]
                ),
            );
        }
    }

    /// Remembers the credentials a successful response issues. A token already issued by
    /// another exchange is not a leak but a finding (`non-unique token`): a target without
    /// `jti` signs identical claims in the same second into the same JWT.
    pub(crate) fn register_issued(&mut self, ex: &Exchange) {
        if !(200..300).contains(&ex.status) {
            return;
        }
        let Some(j) = &ex.json else {
            return;
        };
        let issued = extract::issued_credentials(j);
        for p in &issued.identifiers {
            self.ctx.secrets.remember_identifier(p);
        }
        for (s, label) in &issued.secrets {
            self.ctx
                .secrets
                .remember_issued(s, &format!("{label}#{}", ex.id), ex.id, &ex.endpoint);
        }
        self.issued.extend(issued.bearers.iter().cloned());
        for (t, field) in &issued.tokens {
            let earlier = self.ctx.secrets.remember_issued(
                t,
                &format!("{field}#{}", ex.id),
                ex.id,
                &ex.endpoint,
            );
            if let Some(e) = earlier {
                self.ctx.secrets.allow_in(t, ex.id);
                self.ctx.record_finding(
                    FailureClass::Security,
                    format!(
                        "non-unique token: {} issued the same {field} as earlier {}",
                        ex.endpoint,
                        if e.issued_by.is_empty() {
                            "(unknown)"
                        } else {
                            &e.issued_by
                        }
                    ),
                );
            }
        }
    }
}

/// A whole credential in a response that the response did not issue (a leak even when the
/// harness never saw that key, e.g. another tenant's): a full contract key or a
/// `prefix:secret` bearer. Key prefixes alone are identifiers (key lists show them) and are
/// never matched; issued identifiers are skipped as well.
pub(crate) fn stray_key(ctx: &RunContext, ex: &Exchange) -> Option<String> {
    let text = ex_text(ex);
    let issued = ex
        .json
        .as_ref()
        .filter(|_| (200..300).contains(&ex.status))
        .map(extract::issued_credentials)
        .unwrap_or_default();
    extract::credential_pattern()
        .find_iter(&text)
        .map(|m| m.as_str().to_owned())
        // A known secret is handled by the registry check (with its first-exchange rule).
        .find(|k| {
            !issued.all_secrets().any(|i| i.contains(k.as_str()))
                && !ctx.secrets.knows(k)
                && !ctx.secrets.is_identifier(k)
        })
}

/// Fails when an error's `title`, `detail` or `errors[].message` holds internal text that
/// the caller did not send itself (an echo of the caller's own input is not a leak).
pub(crate) fn check_internals(w: &AuthWorld, ex: &Exchange) {
    if ex.status < 400 {
        return;
    }
    let Some(j) = ex.json.as_ref() else { return };
    let mut texts: Vec<(&str, &str)> = Vec::new();
    for field in ["title", "detail"] {
        if let Some(s) = j.get(field).and_then(serde_json::Value::as_str) {
            texts.push((field, s));
        }
    }
    if let Some(errs) = j.get("errors").and_then(serde_json::Value::as_array) {
        texts.extend(
            errs.iter()
                .filter_map(|e| e.get("message").and_then(serde_json::Value::as_str))
                .map(|s| ("errors[].message", s)),
        );
    }
    let sent = format!("{} {}", ex.path, ex.request_body.as_deref().unwrap_or(""));
    for (field, text) in texts {
        for re in internal_patterns() {
            if let Some(m) = re.find(text) {
                if sent.contains(m.as_str()) {
                    continue;
                }
                w.fail_as(
                    FailureClass::Security,
                    format!(
                        "{} {}: expected an error without internal text, got {field} {text:?} (internal: {:?})",
                        ex.method,
                        ex.path,
                        m.as_str()
                    ),
                );
            }
        }
    }
}
