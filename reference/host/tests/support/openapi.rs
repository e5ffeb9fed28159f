//! The OpenAPI schema checker: a value against a schema of the service's own document.

use serde_json::{json, Value};

use super::service::Service;

/// Checks `value` against a JSON schema of the document: `$ref`, `type`, `required`,
/// `properties`, `additionalProperties: false`, `items`, `enum`, `const`, `oneOf`, `allOf`.
pub fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            conforms(doc, s, value, at)?;
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one
            .iter()
            .filter(|s| conforms(doc, s, value, at).is_ok())
            .count();
        if n != 1 {
            return Err(format!("{at}: {n} of oneOf match {value}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            return Err(format!("{at}: {value} not in enum"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            return Err(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
        {
            return Err(format!("{at}: {actual} is not {types:?}"));
        }
    }
    if let Value::Object(map) = value {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req {
                if !map.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{at}: missing {r}"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: {k} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, s, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Asserts that `value` conforms to the component schema `name` of `doc`.
#[track_caller]
pub fn assert_conforms(doc: &Value, name: &str, value: &Value) {
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    conforms(doc, &schema, value, name).unwrap_or_else(|e| panic!("{e}"));
}

impl Service {
    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Value {
        self.call(None, "GET", "/openapi.json", None)
            .await
            .ok(200)
            .clone()
    }

    /// Asserts that `value` conforms to the component schema `name` of the served document.
    pub async fn conforms_to(&self, name: &str, value: &Value) {
        assert_conforms(&self.openapi().await, name, value);
    }
}
