//! Small pieces the report formats share: milliseconds, HTML escaping.

use std::time::Duration;

/// A duration in milliseconds.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `s` escaped for HTML text and attribute values.
pub(super) fn h(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
