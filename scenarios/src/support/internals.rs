//! Text that only an implementation's insides write, to be kept out of error answers.

/// Text that only an implementation's insides write: SQL with its tables, database engine
/// messages, source paths with line numbers, Rust or JavaScript type paths and error types,
/// stack frames, panics.
pub(crate) fn internal_patterns() -> &'static [regex::Regex] {
    static PATTERNS: std::sync::OnceLock<Vec<regex::Regex>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            // SQL as engines and query builders write it: keywords in capitals.
            r"\b(SELECT\s+[\w*.,\s]+?\s+FROM|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET)\s+\w+",
            r"(?i)\b(sqlite|sqlstate|sqlx|rusqlite|d1_error|no such (table|column)|constraint failed|syntax error at or near)\b",
            r"(?i)[\w./-]+\.(rs|ts|js|mjs|go|py|java)(:\d+)",
            r"\b(std|core|alloc|tokio|serde_json|serde|axum|hyper|rusqlite|worker)::[A-Za-z_]\w*",
            r"\b(TypeError|ReferenceError|RangeError|SyntaxError|Traceback)\b",
            r"(?m)^\s*at \S+ \(\S+:\d+:\d+\)|\bat \S+:\d+:\d+\b",
            r"(?i)panicked at|stack backtrace|RUST_BACKTRACE|called `(Option|Result)::unwrap\(\)`",
        ]
        .iter()
        .map(|p| regex::Regex::new(p).expect("static regex"))
        .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::internal_patterns;

    fn internal(text: &str) -> bool {
        internal_patterns().iter().any(|re| re.is_match(text))
    }

    #[test]
    fn internal_text_is_recognised() {
        for t in [
            "SQLITE_CONSTRAINT: UNIQUE constraint failed: api_keys.key_hash",
            "error in SELECT id FROM tenants WHERE slug = ?",
            "at reference/core/src/store.rs:142",
            "serde_json::Error: EOF while parsing",
            "TypeError: Cannot read properties of undefined",
            "    at handler (/app/src/index.ts:12:7)",
            "thread 'main' panicked at src/main.rs:3:5",
            "D1_ERROR: no such table: tenants",
        ] {
            assert!(internal(t), "{t:?} should count as internal");
        }
    }

    #[test]
    fn ordinary_problem_text_is_not() {
        for t in [
            "Bad Request",
            "line 1, column 2: expected value",
            "csv: line 3, column 3: relation must match [A-Za-z0-9_-]+",
            "must be at most 100 characters",
            "must be one of free, pro, enterprise",
            "The key was revoked or never existed",
            "select a plan from the list",
            "unknown field `colour`, expected one of `after`, `limit`",
        ] {
            assert!(!internal(t), "{t:?} should not count as internal");
        }
    }
}
