//! Audit records as the log and the event stream show them: their `seq` and `action`, and the
//! `"a, b*3"` lists the features write them in.

use serde_json::Value;

/// `"a, b*3, c"` -> `[a, b, b, b, c]`.
pub(crate) fn expand_actions(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('*') {
            Some((a, n)) => {
                let n: usize = n.trim().parse().unwrap_or(1);
                out.extend(std::iter::repeat_n(a.trim().to_owned(), n));
            }
            None => out.push(item.to_owned()),
        }
    }
    out
}

pub(crate) fn seq(r: &Value) -> Option<i64> {
    r.get("seq").and_then(Value::as_i64)
}

pub(crate) fn action(r: &Value) -> String {
    r.get("action")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}
