//! End-user passwords: one strength rule set (register, reset and change all use it) and
//! argon2id hashing.
//!
//! Parameters (OWASP's first recommendation for argon2id): memory 19,456 KiB (19 MiB),
//! 2 iterations, 1 lane, a 16-byte salt from the [`Entropy`] port, a 32-byte output. The stored
//! form is the PHC string `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (unpadded base64), so
//! a later change of parameters still verifies older hashes.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::http::ApiError;
use crate::ports::Entropy;

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;
/// Salt bytes.
pub const SALT_LEN: usize = 16;
/// Output bytes.
pub const OUTPUT_LEN: usize = 32;
/// Shortest password accepted.
pub const MIN_LEN: usize = 10;
/// Longest password accepted (bounds the work a request can ask for).
pub const MAX_LEN: usize = 128;

/// The one strength rule set: 10 to 128 characters, with an uppercase letter, a lowercase
/// letter and a digit. `field` names the body field in the error; the message never echoes
/// the password.
pub fn check_strength(field: &str, password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    let problem = if n < MIN_LEN {
        Some(format!("must be at least {MIN_LEN} characters long"))
    } else if n > MAX_LEN {
        Some(format!("must be at most {MAX_LEN} characters long"))
    } else if !password.chars().any(char::is_uppercase) {
        Some("must contain at least one uppercase letter".into())
    } else if !password.chars().any(char::is_lowercase) {
        Some("must contain at least one lowercase letter".into())
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("must contain at least one digit".into())
    } else {
        None
    };
    match problem {
        Some(message) => Err(ApiError::field(field, message)),
        None => Ok(()),
    }
}

fn argon2(m: u32, t: u32, p: u32) -> Option<Argon2<'static>> {
    let params = Params::new(m, t, p, Some(OUTPUT_LEN)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh salt.
pub fn hash(password: &str, entropy: &dyn Entropy) -> Result<String, ApiError> {
    let mut salt = [0u8; SALT_LEN];
    entropy.fill(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    argon2(M_COST_KIB, T_COST, P_COST)
        .ok_or(ApiError::Internal)?
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .map_err(|_| ApiError::Internal)?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Whether `password` matches the stored PHC string. A malformed stored value never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, expected] = parts.as_slice() else {
        return false;
    };
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse::<u32>().ok(),
            Some(("t", v)) => t = v.parse::<u32>().ok(),
            Some(("p", v)) => p = v.parse::<u32>().ok(),
            _ => return false,
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (B64.decode(salt), B64.decode(expected)) else {
        return false;
    };
    if expected.len() != OUTPUT_LEN {
        return false;
    }
    let Some(a) = argon2(m, t, p) else {
        return false;
    };
    let mut out = [0u8; OUTPUT_LEN];
    if a.hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    bool::from(out.as_slice().ct_eq(&expected))
}

/// Spends the same work as a verification, for an unknown user, so that the answer's timing
/// does not tell whether an account exists.
pub fn verify_nothing(password: &str) {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let _ = verify(password, DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u8);
    impl Entropy for Fixed {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(self.0);
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("password", "Abcdefghi1").is_ok());
        assert!(check_strength("password", &format!("Ab1{}", "x".repeat(125))).is_ok());
        for weak in [
            "",
            "Abcdefgh1",
            "alllowercase1",
            "ALLUPPERCASE1",
            "NoDigitsHere",
            &format!("Ab1{}", "x".repeat(126)),
        ] {
            assert_eq!(
                field_of(check_strength("newPassword", weak).unwrap_err()),
                "newPassword",
                "{weak}"
            );
        }
    }

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let h1 = hash("Correct-horse-1", &Fixed(1)).unwrap();
        let h2 = hash("Correct-horse-1", &Fixed(2)).unwrap();
        assert!(h1.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h1}");
        assert_ne!(h1, h2);
        assert!(verify("Correct-horse-1", &h1));
        assert!(verify("Correct-horse-1", &h2));
        assert!(!verify("Correct-horse-2", &h1));
        assert!(!verify("Correct-horse-1", "plain"));
        assert!(!verify("Correct-horse-1", "$argon2id$v=19$m=8,t=1$x$y"));
        assert!(!verify("Correct-horse-1", &h1.replace("t=2", "t=3")));
        verify_nothing("whatever");
    }
}
