//! The API key format: generation, parsing with checksum, and the keyed hash kept at rest.
//!
//! A key is one opaque bearer token `{pk|sk|rk}_{live|test}_{random}{checksum}`:
//! - `random` is 32 base62 characters (about 190 bits) from the platform CSPRNG;
//! - `checksum` is the CRC-32 of everything before it, as 6 base62 digits. It lets the service
//!   refuse a mistyped, truncated or extended key before any lookup, and lets secret scanners
//!   recognise a real key with few false positives (the scheme GitHub's tokens use).
//!
//! Only `HMAC-SHA256(pepper, key)` is ever stored. The pepper lives outside the database, so a
//! leaked table alone does not allow offline guessing, and the 190-bit random part makes a
//! slow KDF unnecessary.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ports::Entropy;

/// Characters of the random part.
pub const RANDOM_LEN: usize = 32;
/// Characters of the checksum suffix.
pub const CHECKSUM_LEN: usize = 6;
/// Random characters shown in `displayPrefix`.
pub const DISPLAY_RANDOM_LEN: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Publishable,
    Secret,
    Restricted,
}

impl KeyType {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyType::Publishable => "pk",
            KeyType::Secret => "sk",
            KeyType::Restricted => "rk",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Publishable => "publishable",
            KeyType::Secret => "secret",
            KeyType::Restricted => "restricted",
        }
    }
    /// Parses the wire name; `public` is the upstream deployment's synonym of `publishable`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "publishable" | "public" => Some(KeyType::Publishable),
            "secret" => Some(KeyType::Secret),
            "restricted" => Some(KeyType::Restricted),
            _ => None,
        }
    }
    fn from_prefix(p: &str) -> Option<Self> {
        match p {
            "pk" => Some(KeyType::Publishable),
            "sk" => Some(KeyType::Secret),
            "rk" => Some(KeyType::Restricted),
            _ => None,
        }
    }
}

/// Live keys touch real data; test keys a sandbox that cannot see live keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

/// A key whose shape and checksum are right. It may still be unknown or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub key_type: KeyType,
    pub environment: Environment,
    pub token: &'a str,
}

/// Checks shape and checksum without any lookup.
pub fn parse(token: &str) -> Option<ParsedKey<'_>> {
    let bytes = token.as_bytes();
    let expected_len = 2 + 1 + 4 + 1 + RANDOM_LEN + CHECKSUM_LEN;
    if bytes.len() != expected_len || bytes[2] != b'_' || bytes[7] != b'_' {
        return None;
    }
    let key_type = KeyType::from_prefix(&token[0..2])?;
    let environment = Environment::parse(&token[3..7])?;
    let body = &token[8..];
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (head, checksum) = token.split_at(expected_len - CHECKSUM_LEN);
    // Not secret: the checksum is derived from the visible token, so a plain compare is fine.
    if checksum.as_bytes() != checksum_of(head).as_slice() {
        return None;
    }
    Some(ParsedKey {
        key_type,
        environment,
        token,
    })
}

fn checksum_of(head: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(head.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Draws a new key from the platform CSPRNG.
pub fn generate(key_type: KeyType, environment: Environment, entropy: &dyn Entropy) -> String {
    let mut token = String::with_capacity(8 + RANDOM_LEN + CHECKSUM_LEN);
    token.push_str(key_type.prefix());
    token.push('_');
    token.push_str(environment.as_str());
    token.push('_');
    token.push_str(&random_base62(RANDOM_LEN, entropy));
    let checksum = checksum_of(&token);
    token.push_str(std::str::from_utf8(&checksum).expect("base62 is ASCII"));
    token
}

/// Uniform base62 characters by rejection sampling (bytes >= 248 are redrawn, so no character
/// is more likely than another).
pub fn random_base62(len: usize, entropy: &dyn Entropy) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        entropy.fill(&mut buf);
        for &b in buf.iter() {
            if b < 248 && out.len() < len {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// Lowercase hex of `len` random bytes.
pub fn random_hex(len: usize, entropy: &dyn Entropy) -> String {
    let mut buf = vec![0u8; len];
    entropy.fill(&mut buf);
    hex(&buf)
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The part of a key that lists may show.
pub fn display_prefix(token: &str) -> String {
    token[..8 + DISPLAY_RANDOM_LEN].to_owned()
}

/// Hashes keys with the server pepper. Cloning is cheap; the pepper never leaves it.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    pub fn new(pepper: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes any key length"),
        }
    }

    /// Hex of `HMAC-SHA256(pepper, key)`: the only form a key takes at rest.
    pub fn hash(&self, token: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Constant-time comparison of two stored hashes (or any two secrets).
    pub fn same(a: &str, b: &str) -> bool {
        a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A deterministic stand-in for the CSPRNG, so tests see varied but repeatable bytes:
    /// a full-period LCG mod 256 (multiplier = 1 mod 4, odd increment), so every byte value
    /// comes up once per 256 draws.
    struct Counter(Cell<u8>);
    impl Entropy for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                let v = self.0.get().wrapping_mul(5).wrapping_add(7);
                self.0.set(v);
                *b = v;
            }
        }
    }

    #[test]
    fn generated_keys_parse_with_their_type_and_environment() {
        let e = Counter(Cell::new(1));
        for (t, env) in [
            (KeyType::Secret, Environment::Live),
            (KeyType::Publishable, Environment::Test),
            (KeyType::Restricted, Environment::Live),
        ] {
            let k = generate(t, env, &e);
            assert_eq!(k.len(), 8 + RANDOM_LEN + CHECKSUM_LEN);
            let p = parse(&k).expect("parses");
            assert_eq!((p.key_type, p.environment), (t, env));
        }
    }

    #[test]
    fn any_change_to_a_key_is_refused() {
        let e = Counter(Cell::new(9));
        let k = generate(KeyType::Secret, Environment::Live, &e);
        assert!(parse(&k[..k.len() - 1]).is_none(), "truncated");
        assert!(parse(&format!("{k}0")).is_none(), "extended");
        let mut flipped = k.clone().into_bytes();
        flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
        assert!(
            parse(std::str::from_utf8(&flipped).unwrap()).is_none(),
            "one char changed"
        );
        assert!(
            parse(&k.replacen("sk_", "pk_", 1)).is_none(),
            "type changed"
        );
        assert!(
            parse(&k.replacen("_live_", "_test_", 1)).is_none(),
            "env changed"
        );
        assert!(parse("").is_none());
        assert!(parse("sk_live_").is_none());
    }

    #[test]
    fn base62_is_uniform_enough() {
        let e = Counter(Cell::new(3));
        let s = random_base62(62 * 200, &e);
        let mut counts = [0u32; 128];
        for c in s.bytes() {
            counts[c as usize] += 1;
        }
        for &c in BASE62 {
            assert!(
                counts[c as usize] > 50,
                "char {} seen {}",
                c as char,
                counts[c as usize]
            );
        }
    }

    #[test]
    fn hashes_depend_on_the_pepper_and_compare_equal() {
        let a = KeyHasher::new(b"pepper-a").hash("sk_live_x");
        let b = KeyHasher::new(b"pepper-b").hash("sk_live_x");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(KeyHasher::same(&a, &a.clone()));
        assert!(!KeyHasher::same(&a, &b));
    }

    #[test]
    fn display_prefix_is_short() {
        let e = Counter(Cell::new(5));
        let k = generate(KeyType::Secret, Environment::Test, &e);
        let d = display_prefix(&k);
        assert!(k.starts_with(&d));
        assert_eq!(d.len(), 12);
    }
}
