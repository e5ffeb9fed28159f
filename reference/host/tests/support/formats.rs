//! Independent checks of the contract's formats (timestamps, keys, key objects), secrets kept
//! out of answers and files, and small helpers for ids and the data dir.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Percent-encodes the `:` of an id, as a client putting it in one path segment would
/// (`tenant:acme` -> `tenant%3Aacme`).
pub fn enc(id: &str) -> String {
    id.replace(':', "%3A")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The key format of the contract: `{pk|sk|rk}_{live|test}_` + 32 + 6 base62 characters.
pub fn is_key_format(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 46
        && ["pk_", "sk_", "rk_"].iter().any(|p| k.starts_with(p))
        && (k[3..].starts_with("live_") || k[3..].starts_with("test_"))
        && b[8..].iter().all(u8::is_ascii_alphanumeric)
}

/// CRC-32 (IEEE), written independently of the service's implementation.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The checksum suffix the contract defines for the head `sk_live_<random>`.
pub fn checksum(head: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u64::from(crc32(head.as_bytes()));
    let mut out = vec![b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// The exact field set of a key object.
pub const KEY_FIELDS: &[&str] = &[
    "createdAt",
    "displayPrefix",
    "environment",
    "expiresAt",
    "id",
    "name",
    "permissions",
    "revokedAt",
    "type",
];

#[track_caller]
pub fn assert_key_object(k: &Value) {
    let mut names: Vec<&str> = k
        .as_object()
        .expect("a key object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(names, KEY_FIELDS, "key object fields: {k}");
    let id = k["id"].as_str().unwrap();
    assert!(
        id.len() == 20
            && id.starts_with("key:")
            && id[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "key id {id}"
    );
    assert!(is_rfc3339_utc(k["createdAt"].as_str().unwrap()));
    let dp = k["displayPrefix"].as_str().unwrap();
    assert_eq!(dp.len(), 12, "displayPrefix {dp}");
}

/// Asserts that none of `secrets`, nor its random part past the display prefix, is in `text`.
#[track_caller]
pub fn assert_no_secret<S: AsRef<str>>(text: &str, secrets: &[S]) {
    for s in secrets {
        let s = s.as_ref();
        assert!(!text.contains(s), "a secret leaked into {text}");
        // Nor enough of it to use: the random part past the display prefix.
        assert!(
            !text.contains(&s[12..]),
            "part of a secret leaked into {text}"
        );
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The first column of every row `sql` selects, as text (a test's look at the stored data).
pub fn column(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
