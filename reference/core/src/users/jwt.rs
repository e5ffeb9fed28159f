//! Access tokens (HS256 JWTs through `jsonwebtoken`, RustCrypto backend) and the signing
//! keyring with zero-downtime rotation.
//!
//! Secrets:
//! - `JWT_SECRET` is the base secret; its key id is `e-<fingerprint>` where the fingerprint is
//!   the first 12 hex digits of `HMAC-SHA256(secret, "auth-service/jwt-kid")`. An optional
//!   `JWT_SECRET_PREVIOUS` gets a key id the same way and verifies while it is `previous`.
//! - `POST /admin/jwt/rotate` makes a key id `r-<fingerprint of JWT_SECRET>-<8 random hex>`;
//!   its secret is `HMAC-SHA256(JWT_SECRET, kid)`. Only key ids and statuses are stored
//!   (`jwt_keys`), never a secret. Changing `JWT_SECRET` therefore invalidates rotated keys
//!   derived from the old value unless it is passed as `JWT_SECRET_PREVIOUS` (rotated keys are
//!   derived from whichever of the two their fingerprint names).
//! - The keyring has one `current` key (signs), any number of `previous` keys (verify only),
//!   and `retired` keys (refused). `retire-previous` retires every previous key.
//!
//! Verification checks the algorithm (HS256 only: `none` and every other algorithm are refused
//! before any key is looked at), the key id, the signature, `iss`, `aud`, `type`, and `exp`,
//! `nbf` and `iat` against the [`Clock`](crate::ports::Clock) port (`jsonwebtoken`'s own time
//! checks read `SystemTime`, which wasm32 lacks, so they are turned off).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::http::ApiError;
use crate::keys;
use crate::model::rfc3339;
use crate::ports::{Entropy, Sql, SqlValue, StorageError};

/// `iss` of every access token.
pub const ISSUER: &str = "auth-service";
/// Access-token lifetime: 15 minutes.
pub const ACCESS_TTL_SECONDS: i64 = 15 * 60;
/// The `type` claim of access tokens.
pub const ACCESS_TYPE: &str = "access";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn fingerprint(secret: &[u8]) -> String {
    keys::hex(&hmac(secret, b"auth-service/jwt-kid"))[..12].to_owned()
}

/// One configured secret with its fingerprint, computed once: every key id lookup compares
/// fingerprints, and recomputing the HMAC per verification was most of `verify`'s overhead.
#[derive(Clone)]
struct Base {
    secret: Vec<u8>,
    fingerprint: String,
}

impl Base {
    fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
            fingerprint: fingerprint(secret),
        }
    }
}

/// The signing secrets a host configures (`JWT_SECRET`, `JWT_SECRET_PREVIOUS`). Never printed.
#[derive(Clone)]
pub struct JwtSecrets {
    current: Base,
    previous: Option<Base>,
}

impl std::fmt::Debug for JwtSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecrets(..)")
    }
}

impl JwtSecrets {
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            current: Base::new(current),
            previous: previous.filter(|p| !p.is_empty()).map(Base::new),
        }
    }

    /// Key id of `JWT_SECRET` itself.
    pub fn base_kid(&self) -> String {
        format!("e-{}", self.current.fingerprint)
    }

    /// Key id of `JWT_SECRET_PREVIOUS`, if set.
    pub fn previous_kid(&self) -> Option<String> {
        self.previous
            .as_ref()
            .map(|p| format!("e-{}", p.fingerprint))
    }

    fn base_named(&self, fp: &str) -> Option<&Base> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|b| b.fingerprint == fp)
    }

    /// The secret behind a key id, if these secrets can derive it.
    pub fn resolve(&self, kid: &str) -> Option<Vec<u8>> {
        if let Some(fp) = kid.strip_prefix("e-") {
            return self.base_named(fp).map(|b| b.secret.clone());
        }
        let rest = kid.strip_prefix("r-")?;
        let (fp, random) = rest.split_once('-')?;
        if random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.base_named(fp)
            .map(|b| hmac(&b.secret, kid.as_bytes()).to_vec())
    }

    /// Whether `kid` is `JWT_SECRET`'s own key or derived from it (not from the previous one).
    pub fn derives_from_current(&self, kid: &str) -> bool {
        let fp = self.current.fingerprint.as_str();
        kid.strip_prefix("e-") == Some(fp)
            || kid
                .strip_prefix("r-")
                .and_then(|r| r.split_once('-'))
                .is_some_and(|(f, _)| f == fp)
    }

    /// Whether `kid` is `JWT_SECRET`'s own key id, without formatting it.
    fn is_base_kid(&self, kid: &str) -> bool {
        kid.strip_prefix("e-") == Some(self.current.fingerprint.as_str())
    }

    fn new_rotated_kid(&self, entropy: &dyn Entropy) -> String {
        format!(
            "r-{}-{}",
            self.current.fingerprint,
            keys::random_hex(4, entropy)
        )
    }
}

/// One key of the keyring, as `GET /admin/jwt` shows it (never a secret).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub kid: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl KeyEntry {
    pub fn to_wire(&self) -> auth_contract::JwtKey {
        auth_contract::JwtKey {
            kid: self.kid.clone(),
            status: self.status.clone(),
            created_at: rfc3339(self.created_at),
            retired_at: self.retired_at.map(rfc3339),
        }
    }
}

pub fn list_keys(db: &dyn Sql) -> Result<Vec<KeyEntry>, StorageError> {
    let rows = db.query(
        "SELECT kid, status, created_at, retired_at FROM jwt_keys ORDER BY created_at, rowid",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| KeyEntry {
            kid: r[0].as_str().unwrap_or_default().to_owned(),
            status: r[1].as_str().unwrap_or_default().to_owned(),
            created_at: r[2].as_i64().unwrap_or(0),
            retired_at: r[3].as_i64(),
        })
        .collect())
}

fn upsert(db: &dyn Sql, kid: &str, status: &str, now: i64) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO jwt_keys (kid, status, created_at, retired_at) VALUES (?, ?, ?, NULL) \
         ON CONFLICT (kid) DO UPDATE SET status = excluded.status, retired_at = NULL",
        &[kid.into(), status.into(), now.into()],
    )
    .map(drop)
}

/// Brings the stored keyring in line with the configured secrets at start: when no current
/// key is stored, or the stored one cannot be derived from these secrets (`JWT_SECRET`
/// changed), `JWT_SECRET`'s own key becomes current; `JWT_SECRET_PREVIOUS` joins as previous
/// unless it was retired before.
pub fn reconcile(db: &dyn Sql, secrets: &JwtSecrets, now: i64) -> Result<(), StorageError> {
    db.transaction(&mut |db| {
        let keys = list_keys(db)?;
        let current = keys.iter().find(|k| k.status == "current");
        let base = secrets.base_kid();
        if current.is_none_or(|c| !secrets.derives_from_current(&c.kid)) {
            if let Some(c) = current {
                // Still derivable (from JWT_SECRET_PREVIOUS): it verifies as previous until
                // retired; otherwise it is retired now.
                if secrets.resolve(&c.kid).is_some() {
                    db.execute(
                        "UPDATE jwt_keys SET status = 'previous' WHERE kid = ?",
                        &[c.kid.as_str().into()],
                    )?;
                } else {
                    db.execute(
                        "UPDATE jwt_keys SET status = 'retired', retired_at = ? WHERE kid = ?",
                        &[now.into(), c.kid.as_str().into()],
                    )?;
                }
            }
            upsert(db, &base, "current", now)?;
        }
        if let Some(prev) = secrets.previous_kid() {
            if !keys.iter().any(|k| k.kid == prev) && prev != base {
                upsert(db, &prev, "previous", now)?;
            }
        }
        Ok(())
    })
}

/// `POST /admin/jwt/rotate`: the current key becomes previous; a new derived key is current.
pub fn rotate(
    db: &dyn Sql,
    secrets: &JwtSecrets,
    entropy: &dyn Entropy,
    now: i64,
) -> Result<(), StorageError> {
    let kid = secrets.new_rotated_kid(entropy);
    db.transaction(&mut |db| {
        db.execute(
            "UPDATE jwt_keys SET status = 'previous' WHERE status = 'current'",
            &[],
        )?;
        upsert(db, &kid, "current", now)
    })
}

/// `POST /admin/jwt/retire-previous`: tokens signed with a previous key are refused from now
/// on. Answers how many keys it retired.
pub fn retire_previous(db: &dyn Sql, now: i64) -> Result<usize, StorageError> {
    db.execute(
        "UPDATE jwt_keys SET status = 'retired', retired_at = ? WHERE status = 'previous'",
        &[now.into()],
    )
}

/// The key that signs new tokens: the stored current key, or `JWT_SECRET`'s own key when the
/// keyring is empty (a host that never reconciled).
pub fn signing_key(db: &dyn Sql, secrets: &JwtSecrets) -> Result<(String, Vec<u8>), StorageError> {
    let stored = db
        .query(
            "SELECT kid FROM jwt_keys WHERE status = 'current' LIMIT 1",
            &[],
        )?
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_str)
        .map(str::to_owned);
    let kid = stored.unwrap_or_else(|| secrets.base_kid());
    match secrets.resolve(&kid) {
        Some(secret) => Ok((kid, secret)),
        None => Ok((secrets.base_kid(), secrets.current.secret.clone())),
    }
}

/// The secret that verifies `kid`, if `kid` is current or previous.
fn verification_key(
    db: &dyn Sql,
    secrets: &JwtSecrets,
    kid: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    let rows = db.query("SELECT status FROM jwt_keys WHERE kid = ?", &[kid.into()])?;
    let usable = match rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_str)
    {
        Some(status) => status == "current" || status == "previous",
        // An empty keyring (never reconciled) trusts JWT_SECRET's own key only.
        None => {
            secrets.is_base_kid(kid) && db.query("SELECT 1 FROM jwt_keys LIMIT 1", &[])?.is_empty()
        }
    };
    Ok(if usable { secrets.resolve(kid) } else { None })
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub iss: String,
    /// The tenant id.
    pub aud: String,
    #[serde(rename = "type")]
    pub token_type: String,
    /// The session id.
    pub sid: String,
}

/// Signs an access token with the current key.
pub fn sign(db: &dyn Sql, secrets: &JwtSecrets, claims: &AccessClaims) -> Result<String, ApiError> {
    let (kid, secret) = signing_key(db, secrets)?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&secret))
        .map_err(|_| ApiError::Internal)
}

/// The `tenantId` claim of a token, unverified: only to pick the tenant's object, which then
/// verifies the token in full.
pub fn unverified_tenant(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload) = (parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("tenantId")?.as_str().map(str::to_owned)
}

/// The header fields `verify` needs to pick a key. `jsonwebtoken::decode` parses and checks
/// the whole header again anyway; this narrower read skips the full `Header`'s flattened
/// extras map (its costliest part) and accepts every header that one accepts, so nothing the
/// library would take is refused here.
#[derive(Deserialize)]
struct KeyHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// Splits like `jsonwebtoken::decode_header`: the header is what precedes the last two dots.
fn key_header(token: &str) -> Option<KeyHeader> {
    let (message, _signature) = token.rsplit_once('.')?;
    let (header, _payload) = message.rsplit_once('.')?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies an access token for `tenant_id` at `now_ms`. Every failure is the one uniform
/// [`ApiError::UserUnauthorized`].
pub fn verify(
    db: &dyn Sql,
    secrets: &JwtSecrets,
    token: &str,
    tenant_id: &str,
    now_ms: i64,
) -> Result<AccessClaims, ApiError> {
    let unauth = |_| ApiError::UserUnauthorized;
    let header = key_header(token).ok_or(ApiError::UserUnauthorized)?;
    if header.alg != Algorithm::HS256 {
        return Err(ApiError::UserUnauthorized);
    }
    let kid = header.kid.ok_or(ApiError::UserUnauthorized)?;
    let secret = verification_key(db, secrets, &kid)?.ok_or(ApiError::UserUnauthorized)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    // Time is checked below with the Clock port.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.set_audience(&[tenant_id]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    let data = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(&secret),
        &validation,
    )
    .map_err(unauth)?;
    let c = data.claims;
    let now = now_ms.div_euclid(1000);
    let ok = c.token_type == ACCESS_TYPE
        && c.iss == ISSUER
        && c.aud == tenant_id
        && c.tenant_id == tenant_id
        && c.exp > now
        && c.iat <= now
        && c.nbf.is_none_or(|nbf| nbf <= now)
        && !c.jti.is_empty()
        && !c.sid.is_empty();
    if ok {
        Ok(c)
    } else {
        Err(ApiError::UserUnauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_resolve_only_from_the_configured_secrets() {
        let s = JwtSecrets::new(b"first-secret-first-secret-first-secret", None);
        let base = s.base_kid();
        assert!(base.starts_with("e-") && base.len() == 14);
        assert_eq!(
            s.resolve(&base).unwrap(),
            b"first-secret-first-secret-first-secret"
        );
        let kid = format!("r-{}-0a1b2c3d", &base[2..]);
        let derived = s.resolve(&kid).unwrap();
        assert_eq!(
            derived,
            hmac(b"first-secret-first-secret-first-secret", kid.as_bytes())
        );
        assert!(s.resolve("r-000000000000-0a1b2c3d").is_none());
        assert!(s.resolve(&format!("r-{}-zz", &base[2..])).is_none());
        assert!(s.resolve("e-000000000000").is_none());
        // Moving the old secret to JWT_SECRET_PREVIOUS keeps its derived keys verifiable.
        let moved = JwtSecrets::new(
            b"second-secret-second-secret-second",
            Some(b"first-secret-first-secret-first-secret"),
        );
        assert_eq!(moved.resolve(&kid).unwrap(), derived);
        assert_eq!(moved.previous_kid().unwrap(), base);
        assert!(!format!("{s:?}").contains("first"));
    }

    /// A keyring that was never reconciled: empty, so JWT_SECRET's own key signs and verifies.
    struct EmptyKeyring;
    impl Sql for EmptyKeyring {
        fn execute(&self, _: &str, _: &[SqlValue]) -> Result<usize, StorageError> {
            Ok(0)
        }
        fn query(&self, _: &str, _: &[SqlValue]) -> Result<Vec<crate::ports::Row>, StorageError> {
            Ok(Vec::new())
        }
        fn transaction(
            &self,
            work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
        ) -> Result<(), StorageError> {
            work(self)
        }
    }

    fn claims(now_s: i64) -> AccessClaims {
        AccessClaims {
            sub: "user:1".into(),
            tenant_id: "tenant:a".into(),
            jti: "j1".into(),
            iat: now_s,
            exp: now_s + ACCESS_TTL_SECONDS,
            nbf: Some(now_s),
            iss: ISSUER.into(),
            aud: "tenant:a".into(),
            token_type: ACCESS_TYPE.into(),
            sid: "session:1".into(),
        }
    }

    #[test]
    fn tokens_round_trip_and_every_bad_one_is_refused() {
        let s = JwtSecrets::new(b"a-secret-of-at-least-32-characters!!", None);
        let now_s = 1_795_690_327;
        let now_ms = now_s * 1000;
        let token = sign(&EmptyKeyring, &s, &claims(now_s)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some(s.base_kid().as_str()));
        assert_eq!(
            verify(&EmptyKeyring, &s, &token, "tenant:a", now_ms).unwrap(),
            claims(now_s)
        );
        let refused = |t: &str, tenant: &str, at: i64| {
            verify(&EmptyKeyring, &s, t, tenant, at) == Err(ApiError::UserUnauthorized)
        };
        assert!(refused(&token, "tenant:b", now_ms), "other tenant");
        assert!(
            refused(&token, "tenant:a", (now_s + ACCESS_TTL_SECONDS) * 1000),
            "expired"
        );
        assert!(
            refused(&token, "tenant:a", (now_s - 1) * 1000),
            "not yet valid"
        );
        let other = JwtSecrets::new(b"another-secret-of-32-characters!!!!!", None);
        assert!(
            verify(&EmptyKeyring, &other, &token, "tenant:a", now_ms).is_err(),
            "other secret"
        );
        let resigned = |c: AccessClaims| sign(&EmptyKeyring, &s, &c).unwrap();
        let mut c = claims(now_s);
        c.iss = "x".into();
        assert!(refused(&resigned(c), "tenant:a", now_ms), "iss");
        let mut c = claims(now_s);
        c.token_type = "refresh".into();
        assert!(refused(&resigned(c), "tenant:a", now_ms), "type");
        let mut c = claims(now_s);
        c.tenant_id = "tenant:b".into();
        assert!(
            refused(&resigned(c), "tenant:a", now_ms),
            "tenantId differs from aud"
        );
        let (head, rest) = token.split_once('.').unwrap();
        let none_head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            refused(&format!("{none_head}.{rest}"), "tenant:a", now_ms),
            "alg none"
        );
        let hs512 =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS512","kid":"{}"}}"#, s.base_kid()));
        assert!(
            refused(&format!("{hs512}.{rest}"), "tenant:a", now_ms),
            "HS512"
        );
        assert!(
            refused(&format!("{head}.{rest}x"), "tenant:a", now_ms),
            "tampered"
        );
        assert!(refused("", "tenant:a", now_ms));
    }

    #[test]
    fn key_header_reads_what_the_library_header_reads() {
        let s = JwtSecrets::new(b"a-secret-of-at-least-32-characters!!", None);
        let token = sign(&EmptyKeyring, &s, &claims(1_795_690_327)).unwrap();
        let full = jsonwebtoken::decode_header(&token).unwrap();
        let ours = key_header(&token).unwrap();
        assert_eq!((ours.alg, ours.kid), (full.alg, full.kid));
        let rest = token.split_once('.').unwrap().1;
        for head in [
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"HS256","kid":null,"typ":"JWT","x":"y"}"#,
            r#"{"alg":"RS256","kid":"k"}"#,
        ] {
            let t = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(head));
            let full = jsonwebtoken::decode_header(&t).unwrap();
            let ours = key_header(&t).unwrap();
            assert_eq!((ours.alg, ours.kid), (full.alg, full.kid), "{head}");
        }
        for bad in ["", "a.b", "!!.b.c", r#"{"kid":"k"}"#, r#"{"alg":"none"}"#] {
            let t = if bad.starts_with('{') {
                format!("{}.{rest}", URL_SAFE_NO_PAD.encode(bad))
            } else {
                bad.to_owned()
            };
            assert!(key_header(&t).is_none(), "{bad}");
            assert!(jsonwebtoken::decode_header(&t).is_err(), "{bad}");
        }
    }

    #[test]
    fn unverified_tenant_reads_the_payload_only() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"tenantId":"tenant:a"}"#);
        assert_eq!(
            unverified_tenant(&format!("x.{payload}.y")).as_deref(),
            Some("tenant:a")
        );
        assert_eq!(unverified_tenant("sk_live_short"), None);
        assert_eq!(unverified_tenant("a.b.c"), None);
    }
}
