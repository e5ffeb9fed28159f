//! Names in steps resolved to values: credential references (`admin`, `A`, `A:ci`) and the
//! `{...}` placeholders of paths, headers and bodies.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::core::AuthWorld;
use crate::support::http::Cred;

/// Characters left as they are in a percent-encoded path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

impl AuthWorld {
    /// Resolves a credential reference: `admin`, `none`, a literal built by a step, `A`
    /// (tenant A's secret key) or `A:name`.
    pub fn cred(&self, reference: &str) -> Cred {
        match reference {
            "none" | "nobody" => Cred::None,
            "admin" => match &self.ctx.admin_key {
                Some(k) => Cred::Bearer {
                    label: "admin".into(),
                    value: k.clone(),
                },
                None => self.harness_error("no platform admin key (set AUTHCONF_ADMIN_KEY)"),
            },
            r => {
                if let Some(v) = self.raw_creds.get(r) {
                    return Cred::Bearer {
                        label: r.to_owned(),
                        value: v.clone(),
                    };
                }
                let full = if r.contains(':') {
                    r.to_owned()
                } else {
                    format!("{r}:secret")
                };
                match self.keys.get(&full).and_then(|k| k.secret.clone()) {
                    Some(value) => Cred::Bearer { label: full, value },
                    None => self.harness_error(format!("the scenario has no key {full:?}")),
                }
            }
        }
    }

    /// The bearer token of a key reference.
    pub fn secret_of(&self, reference: &str) -> String {
        match self.cred(reference) {
            Cred::Bearer { value, .. } => value,
            _ => self.harness_error(format!("{reference:?} has no secret")),
        }
    }

    /// Expands `{...}` placeholders. In paths, values are percent-encoded as one segment
    /// unless written `{raw:...}`.
    ///
    /// `{A.id}`, `{A.slug}`, `{A:k.id}`, `{A:k.secret}`, `{slug:x}` (a fresh slug, the same
    /// for the same x within the scenario), `{value:x}`.
    pub fn expand(&mut self, text: &str, in_path: bool) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            let inner = &rest[start + 1..start + len];
            // JSON bodies contain braces too: only expand what looks like a placeholder.
            if inner.is_empty() || inner.contains(['"', ' ', '\n', '{']) {
                out.push('{');
                rest = &rest[start + 1..];
                continue;
            }
            let (raw, name) = match inner.strip_prefix("raw:") {
                Some(n) => (true, n),
                None => (false, inner),
            };
            let value = self.placeholder(name);
            if in_path && !raw {
                out.extend(utf8_percent_encode(&value, SEGMENT));
            } else {
                out.push_str(&value);
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    pub(crate) fn placeholder(&mut self, name: &str) -> String {
        if let Some(x) = name.strip_prefix("slug:") {
            let key = format!("slug:{x}");
            if let Some(v) = self.values.get(&key) {
                return v.clone();
            }
            let v = self.ctx.new_slug();
            self.values.insert(key, v.clone());
            return v;
        }
        for (prefix, len) in [("slug63:", 63), ("slug64:", 64)] {
            if let Some(x) = name.strip_prefix(prefix) {
                let key = format!("{prefix}{x}");
                if let Some(v) = self.values.get(&key) {
                    return v.clone();
                }
                // A fresh slug padded to an exact length (63 is the longest DNS label).
                let mut v = self.ctx.new_slug();
                v.push('-');
                while v.len() < len {
                    v.push('x');
                }
                v.truncate(len);
                self.values.insert(key, v.clone());
                return v;
            }
        }
        if let Some(x) = name.strip_prefix("value:") {
            return match self.values.get(x) {
                Some(v) => v.clone(),
                None => self.harness_error(format!("no saved value {x:?}")),
            };
        }
        if let Some(x) = name.strip_prefix("user:") {
            // `{user:ann.email}`: the address of a user name.
            return match x.strip_suffix(".email") {
                Some(u) => self.email_of(u),
                None => self.harness_error(format!("unknown user placeholder {{{name}}}")),
            };
        }
        if name == "unknown-key-id" {
            return "key:0000000000000000".into();
        }
        if name == "unknown-tenant-id" {
            return format!("tenant:{}nobody", crate::SLUG_PREFIX);
        }
        let Some((obj, attr)) = name.rsplit_once('.') else {
            self.harness_error(format!("unknown placeholder {{{name}}}"))
        };
        if obj.contains(':') {
            match attr {
                "id" => self.key_id(obj),
                "secret" => self.secret_of(obj),
                _ => self.harness_error(format!("unknown key attribute in {{{name}}}")),
            }
        } else {
            let t = self.tenant(obj).clone();
            match attr {
                "id" => t.id,
                "slug" => t.slug,
                _ => self.harness_error(format!("unknown tenant attribute in {{{name}}}")),
            }
        }
    }

    /// The id of a key reference, looked up in the tenant's key list when the creating
    /// response did not carry it (a tenant's initial keys).
    pub fn key_id(&self, reference: &str) -> String {
        let Some(k) = self.keys.get(reference) else {
            self.harness_error(format!("the scenario has no key {reference:?}"))
        };
        match &k.id {
            Some(id) => id.clone(),
            None => self.harness_error(format!(
                "the id of {reference:?} is unknown (look it up first with \"the key ids of tenant ... are known\")"
            )),
        }
    }
}
