//! Reading captured mail: the template of a kind of mail and the single-use token in its text.

pub(crate) fn mail_kind(kind: &str) -> &'static str {
    match kind {
        "verification" => "verify_email",
        "password reset" | "reset" => "reset_password",
        _ => "welcome",
    }
}

/// The single-use token in a mail: a word starting `ev_` or `pr_` (docs/contract.md), or the
/// value of a `token=` parameter in a link.
pub(crate) fn token_in_text(text: &str) -> Option<String> {
    for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>') {
        let w = word.trim_end_matches(['.', ',', ')', ';']);
        if (w.starts_with("ev_") || w.starts_with("pr_")) && w.len() > 8 {
            return Some(w.to_owned());
        }
        if let Some(i) = w.find("token=") {
            let t: String = w[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if t.len() > 8 {
                return Some(t);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_mail_text() {
        assert_eq!(
            token_in_text("Use this code:\n\nev_abcDEF123456\n\nThanks").as_deref(),
            Some("ev_abcDEF123456")
        );
        assert_eq!(
            token_in_text("https://x.test/reset?token=pr_abcdef12345&x=1").as_deref(),
            Some("pr_abcdef12345")
        );
        assert_eq!(token_in_text("nothing here"), None);
    }
}
