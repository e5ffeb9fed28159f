//! Text helpers shared by the World and the steps: status lists and body excerpts for failure
//! messages, bodies normalised for comparison, comma lists, random values.

use rand::Rng as _;

use crate::support::http::Exchange;

/// `201`, `200 or 201`, `401, 403 or 404` for messages.
pub fn statuses(list: &[u16]) -> String {
    let all: Vec<String> = list.iter().map(u16::to_string).collect();
    match all.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The first 300 characters of a body, for a failure message.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let chars: Vec<char> = body.chars().collect();
    if chars.len() <= MAX {
        return body.to_owned();
    }
    // Never cut inside a token-like run (a key, a secret, a JWT): a cut secret no longer
    // matches what the redactor learned, and its first part would reach the report. Back off
    // to the start of the run, so a secret is either whole (and redacted) or absent.
    let token_char = |c: char| c.is_ascii_alphanumeric() || "_-.:+/=".contains(c);
    let mut cut = MAX;
    if token_char(chars[cut]) {
        while cut > 0 && token_char(chars[cut - 1]) {
            cut -= 1;
        }
    }
    let mut s: String = chars[..cut].iter().collect();
    s.push('…');
    s
}

pub(crate) fn request_ids(ex: &Exchange) -> Vec<String> {
    ex.header("x-request-id")
        .map(|v| vec![v.to_owned()])
        .unwrap_or_default()
}

/// A body with the exchange's own request id and the given ids replaced, for comparing two
/// answers that must be identical.
pub(crate) fn normalized(ex: &Exchange, ids: &[&str]) -> String {
    let mut b = ex.body.clone();
    for r in request_ids(ex) {
        b = b.replace(&r, "<request-id>");
    }
    for id in ids {
        if !id.is_empty() {
            b = b.replace(id, "<id>");
            let enc: String =
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            b = b.replace(&enc, "<id>");
        }
    }
    b
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A strong password (upper, lower, digit, 24 characters), never used before.
pub(crate) fn strong_password() -> String {
    format!("Pw9-{}-xY", random_alnum(18))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_never_ends_inside_a_secret() {
        let secret = "a".repeat(20) + &"0123456789abcdef".repeat(4);
        let body = format!(
            "{{\"note\":\"{}\",\"secret\":\"{secret}\"}}",
            "x ".repeat(130)
        );
        let cut = excerpt(&body);
        assert!(cut.ends_with('…'), "{cut}");
        assert!(
            !cut.contains("aaaa"),
            "a part of the secret reached the excerpt: {cut}"
        );
        assert_eq!(excerpt("short"), "short");
    }
}
