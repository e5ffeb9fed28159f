//! End-user passwords: one strength rule set (register, reset and change all use it) and
//! argon2id hashing.
//!
//! Parameters (OWASP's first recommendation for argon2id): memory 19,456 KiB (19 MiB),
//! 2 iterations, 1 lane, a 16-byte salt from the [`Entropy`] port, a 32-byte output. The stored
//! form is the PHC string `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (unpadded base64), so
//! a later change of parameters still verifies older hashes.

use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// The hasher for these costs, and the number of memory blocks it works in.
fn argon2(m: u32, t: u32, p: u32) -> Option<(Argon2<'static>, usize)> {
    let params = Params::new(m, t, p, Some(OUTPUT_LEN)).ok()?;
    let blocks = params.block_count();
    Some((
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        blocks,
    ))
}

/// The working memory of one argon2 computation at this module's cost (19 MiB). Hosts keep a
/// few and reuse them, so concurrent logins neither allocate nor leave freed arenas behind.
pub struct Memory(Vec<Block>);

impl Memory {
    pub fn new() -> Self {
        Self(vec![Block::default(); M_COST_KIB as usize])
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

/// Where password hashing runs. A host bounds it (a few workers, each with its own
/// [`Memory`]): argon2 is the most expensive thing a caller without a credential can ask for.
pub trait PasswordWork: Send + Sync {
    /// Runs `job` with a working memory. `Err` (a 503 problem) when the host has no worker
    /// free within its bound; `job` has then not run.
    fn run(&self, job: &mut dyn FnMut(&mut Memory)) -> Result<(), ApiError>;
}

/// Runs each job on the caller's thread with a fresh memory (the Worker, unit tests).
pub struct Inline;

impl PasswordWork for Inline {
    fn run(&self, job: &mut dyn FnMut(&mut Memory)) -> Result<(), ApiError> {
        job(&mut Memory::new());
        Ok(())
    }
}

/// The parameters, salt and hash of a stored PHC string this module can verify.
struct Stored {
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

fn parse_stored(stored: &str) -> Option<Stored> {
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, expected] = parts.as_slice() else {
        return None;
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse::<u32>().ok(),
            Some(("t", v)) => t = v.parse::<u32>().ok(),
            Some(("p", v)) => p = v.parse::<u32>().ok(),
            _ => return None,
        }
    }
    let (Ok(salt), Ok(expected)) = (B64.decode(salt), B64.decode(expected)) else {
        return None;
    };
    // A cost above this module's is refused: it would not fit the host's working memory.
    let stored = Stored {
        m: m.filter(|m| *m <= M_COST_KIB)?,
        t: t.filter(|t| *t <= T_COST)?,
        p: p?,
        salt,
        expected,
    };
    (stored.expected.len() == OUTPUT_LEN).then_some(stored)
}

/// A valid hash no password matches, at this module's cost: what an unknown user, a user
/// without a password and an over-long password are verified against.
const DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn compute(
    (a, blocks): &(Argon2, usize),
    password: &str,
    salt: &[u8],
    mem: &mut Memory,
) -> Option<[u8; OUTPUT_LEN]> {
    let mut out = [0u8; OUTPUT_LEN];
    let area = mem.0.get_mut(..*blocks)?;
    a.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, area)
        .ok()?;
    Some(out)
}

/// Hashes a password with a fresh salt, on the host's password workers.
pub fn hash(
    work: &dyn PasswordWork,
    password: &str,
    entropy: &dyn Entropy,
) -> Result<String, ApiError> {
    let mut salt = [0u8; SALT_LEN];
    entropy.fill(&mut salt);
    let a = argon2(M_COST_KIB, T_COST, P_COST).ok_or(ApiError::Internal)?;
    let mut out = None;
    work.run(&mut |mem| out = compute(&a, password, &salt, mem))?;
    let out = out.ok_or(ApiError::Internal)?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Whether `password` matches the stored PHC string. Every answer costs one full
/// verification: a malformed or empty stored value (a user who never set a password) and a
/// password over [`MAX_LEN`] are checked against a dummy hash and never match, so the time
/// taken tells nothing about the account.
pub fn verify(work: &dyn PasswordWork, password: &str, stored: &str) -> Result<bool, ApiError> {
    let usable = parse_stored(stored).filter(|_| password.chars().count() <= MAX_LEN);
    let real = usable.is_some();
    let s = match usable {
        Some(s) => s,
        None => parse_stored(DUMMY).ok_or(ApiError::Internal)?,
    };
    let a = argon2(s.m, s.t, s.p).ok_or(ApiError::Internal)?;
    let mut out = None;
    work.run(&mut |mem| out = compute(&a, password, &s.salt, mem))?;
    Ok(real && out.is_some_and(|o| bool::from(o.as_slice().ct_eq(&s.expected))))
}

/// Spends the same work as a verification, for an unknown user, so that the answer's timing
/// does not tell whether an account exists.
pub fn verify_nothing(work: &dyn PasswordWork, password: &str) -> Result<(), ApiError> {
    verify(work, password, DUMMY).map(drop)
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
        let h1 = hash(&Inline, "Correct-horse-1", &Fixed(1)).unwrap();
        let h2 = hash(&Inline, "Correct-horse-1", &Fixed(2)).unwrap();
        assert!(h1.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h1}");
        assert_ne!(h1, h2);
        let v = |p: &str, h: &str| verify(&Inline, p, h).unwrap();
        assert!(v("Correct-horse-1", &h1));
        assert!(v("Correct-horse-1", &h2));
        assert!(!v("Correct-horse-2", &h1));
        assert!(!v("Correct-horse-1", "plain"));
        assert!(!v("Correct-horse-1", "$argon2id$v=19$m=8,t=1$x$y"));
        assert!(!v("Correct-horse-1", &h1.replace("t=2", "t=3")));
        verify_nothing(&Inline, "whatever").unwrap();
    }

    /// Counts the jobs run, to check that every failure path does the same work.
    struct Counting(std::sync::atomic::AtomicUsize);
    impl PasswordWork for Counting {
        fn run(&self, job: &mut dyn FnMut(&mut Memory)) -> Result<(), ApiError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Inline.run(job)
        }
    }

    #[test]
    fn every_failure_costs_one_full_verification() {
        let work = Counting(Default::default());
        let h = hash(&Inline, "Correct-horse-1", &Fixed(1)).unwrap();
        let long = format!("Ab1{}", "x".repeat(MAX_LEN));
        // A user without a password ("!"), an over-long password, a malformed hash.
        assert!(!verify(&work, "Correct-horse-1", "!").unwrap());
        assert!(!verify(&work, &long, &h).unwrap());
        assert!(!verify(&work, "Correct-horse-1", "").unwrap());
        verify_nothing(&work, "Correct-horse-1").unwrap();
        assert_eq!(work.0.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
