//! Reading a JSON request body: size, media type and syntax first ([`json_object`]), then
//! its fields one by one ([`Fields`]), each refusal naming the field at fault.

use http::header;
use serde_json::{Map, Value};

use super::{ApiError, Request};

/// Largest request body accepted. Hosts should stop reading after one byte more.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The declared media type without parameters, lower-cased (`text/csv` for
/// `Text/CSV; charset=utf-8`); `None` without a readable `Content-Type`.
pub fn media_type(req: &Request) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The JSON object in a request body, checked for size, media type and syntax.
/// `optional` allows an empty body (read as `{}`), for routes whose body may be omitted.
pub fn json_object(req: &Request, optional: bool) -> Result<Map<String, Value>, ApiError> {
    let body = req.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if body.is_empty() && optional {
        return Ok(Map::new());
    }
    let is_json = media_type(req)
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if body.is_empty() {
        return Err(ApiError::InvalidJson("The request body is empty.".into()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::InvalidJson(
            "The request body must be a JSON object.".into(),
        )),
        Err(e) => Err(ApiError::InvalidJson(format!(
            "Malformed JSON at line {}, column {}.",
            e.line(),
            e.column()
        ))),
    }
}

/// Typed access to the fields of a JSON object, with errors that name the field.
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Refuses any field not in `allowed`, so a misspelt field (`parent_id` for `parentId`) is
    /// an error rather than silently ignored.
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(ApiError::field(k.as_str(), "is not a known field"));
        }
        Ok(Self { map })
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A string field; `None` when absent. `null` counts as absent only if `null_ok`.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::field(name, "must be a string")),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .ok_or_else(|| ApiError::field(name, "is required"))
    }

    /// A string of 1..=max characters after trimming.
    pub fn text(&self, name: &str, max: usize, required: bool) -> Result<Option<String>, ApiError> {
        let Some(v) = self.opt_str(name)? else {
            return if required {
                Err(ApiError::field(name, "is required"))
            } else {
                Ok(None)
            };
        };
        let t = v.trim();
        if t.is_empty() {
            return Err(ApiError::field(name, "must not be empty"));
        }
        if t.chars().count() > max {
            return Err(ApiError::field(
                name,
                format!("must be at most {max} characters"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(ApiError::field(name, "must not contain control characters"));
        }
        Ok(Some(t.to_owned()))
    }

    /// A whole number in `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(ApiError::field(
                    name,
                    format!("must be a whole number from {min} to {max}"),
                )),
            },
            Some(_) => Err(ApiError::field(name, "must be a number")),
        }
    }

    /// A list of strings.
    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::field(name, "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::field(name, "must be a list of strings")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(content_type: Option<&str>, body: &[u8]) -> Request {
        let mut b = http::Request::builder().method("POST").uri("/x");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(body.to_vec()).unwrap()
    }

    fn fields(v: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
        match v {
            Value::Object(m) => Fields::new(m, allowed),
            _ => panic!("not an object"),
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } | ApiError::InvalidQuery { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn json_bodies_are_checked_for_size_type_and_syntax() {
        let ok = json_object(&req(Some("application/json"), br#"{"a":1}"#), false).unwrap();
        assert_eq!(ok["a"], 1);
        assert!(json_object(&req(Some("Application/JSON; charset=utf-8"), b"{}"), false).is_ok());
        assert!(json_object(&req(Some("application/merge-patch+json"), b"{}"), false).is_ok());
        assert_eq!(
            json_object(&req(Some("text/plain"), b"{}"), false),
            Err(ApiError::UnsupportedMediaType)
        );
        assert_eq!(
            json_object(&req(None, b"{}"), false),
            Err(ApiError::UnsupportedMediaType)
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            json_object(&req(Some("application/json"), &big), false),
            Err(ApiError::PayloadTooLarge)
        );
        // Exactly the limit is still read.
        let mut at_limit = b"{}".to_vec();
        at_limit.resize(MAX_BODY_BYTES, b' ');
        assert!(json_object(&req(Some("application/json"), &at_limit), false).is_ok());
        assert!(json_object(&req(None, b""), true).unwrap().is_empty());
        assert!(matches!(
            json_object(&req(Some("application/json"), b""), false),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            json_object(&req(Some("application/json"), b"[1]"), false),
            Err(ApiError::InvalidJson(_))
        ));
        match json_object(&req(Some("application/json"), b"{\n \"a\": }"), false) {
            Err(ApiError::InvalidJson(d)) => assert!(d.contains("line 2"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_refuse_unknown_names_and_name_the_field() {
        let e = fields(json!({"name": "x", "zeta": 1, "alpha": 2}), &["name"])
            .err()
            .unwrap();
        assert_eq!(field_of(e), "alpha", "the first unknown field in order");
        let f = fields(
            json!({"s": "  hi  ", "n": 5, "l": ["a", "b"], "bad": 1.5, "e": " ", "ctl": "a\u{7}"}),
            &["s", "n", "l", "bad", "e", "ctl"],
        )
        .unwrap();
        assert!(f.has("s") && !f.has("missing"));
        assert_eq!(f.text("s", 10, true).unwrap().as_deref(), Some("hi"));
        assert_eq!(field_of(f.text("s", 1, true).unwrap_err()), "s");
        assert_eq!(field_of(f.text("e", 10, true).unwrap_err()), "e");
        assert_eq!(field_of(f.text("ctl", 10, true).unwrap_err()), "ctl");
        assert_eq!(f.text("missing", 10, false).unwrap(), None);
        assert_eq!(
            field_of(f.text("missing", 10, true).unwrap_err()),
            "missing"
        );
        assert_eq!(field_of(f.opt_str("n").unwrap_err()), "n");
        assert_eq!(field_of(f.req_str("missing").unwrap_err()), "missing");
        assert_eq!(f.opt_int("n", 0, 5).unwrap(), Some(5));
        assert_eq!(field_of(f.opt_int("n", 0, 4).unwrap_err()), "n");
        assert_eq!(field_of(f.opt_int("bad", 0, 4).unwrap_err()), "bad");
        assert_eq!(field_of(f.opt_int("s", 0, 4).unwrap_err()), "s");
        assert_eq!(f.opt_int("missing", 0, 4).unwrap(), None);
        assert_eq!(
            f.opt_str_list("l").unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(field_of(f.opt_str_list("n").unwrap_err()), "n");
        let g = fields(json!({"l": ["a", 1]}), &["l"]).unwrap();
        assert_eq!(field_of(g.opt_str_list("l").unwrap_err()), "l");
    }
}
