//! Key material the harness makes itself: well-formed keys nobody issued (with the checksum
//! docs/contract.md defines) and keys whose type letters are swapped.

use rand::Rng as _;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 of the key body as 6 base62 digits, as docs/contract.md defines the checksum.
pub(crate) fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn random_base62(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

pub(crate) fn replace_type(key: &str, ty: &str) -> String {
    match key.get(2..) {
        Some(rest) => format!("{ty}{rest}"),
        None => key.to_owned(),
    }
}
