//! JWTs decoded and forged with `hmac`, `sha2` and `base64` alone, independently of any
//! implementation under test.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The header and claims of a JWT.
pub(crate) fn jwt_parts(token: &str) -> Option<(Value, Value)> {
    let mut it = token.split('.');
    let h = decode_part(it.next()?)?;
    let c = decode_part(it.next()?)?;
    Some((h, c))
}

pub(crate) fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub(crate) fn hmac512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A JWT with this header and claims, signed with `key` by the header's `alg` (HS256 or
/// HS512; anything else gets an empty signature).
pub(crate) fn sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => hmac256(key, input.as_bytes()),
        Some("HS512") => hmac512(key, input.as_bytes()),
        _ => Vec::new(),
    };
    format!("{input}.{}", b64(&sig))
}

/// The signing secret of a key id per docs/contract.md: `JWT_SECRET` itself for the base key,
/// `HMAC-SHA256(JWT_SECRET, kid)` for a rotated key (`r-...`).
pub(crate) fn signing_key(secret: &str, kid: &str) -> Vec<u8> {
    if kid.starts_with("r-") {
        hmac256(secret.as_bytes(), kid.as_bytes())
    } else {
        secret.as_bytes().to_vec()
    }
}

/// Re-signs a JWT's header and claims with HS256 and `secret` (whatever its header said).
pub(crate) fn resign_hs256(token: &str, secret: &str) -> Option<String> {
    let mut it = token.split('.');
    let (h, c) = (it.next()?, it.next()?);
    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    header["alg"] = json!("HS256");
    let input = format!("{}.{c}", URL_SAFE_NO_PAD.encode(header.to_string()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    Some(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_tokens_round_trip() {
        let h = json!({"alg":"HS256","typ":"JWT","kid":"e-1"});
        let c = json!({"sub":"user:1","iat":1});
        let t = sign(&h, &c, b"k");
        let (h2, c2) = jwt_parts(&t).unwrap();
        assert_eq!((h2, c2), (h, c));
        // RFC 7515's HS256 example key and input give its published signature.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        assert_eq!(
            b64(&hmac256(&key, input.as_bytes())),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }
}
