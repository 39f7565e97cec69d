//! A small JSON-schema checker for request bodies, with the messages Python's `jsonschema`
//! gives (Ironic's API validates with it, and clients see its text in the error envelope).
//!
//! Hand-written rather than a crate: the Rust validators word their errors differently (JSON
//! quoting instead of Python's `repr`), and only the keywords Ironic's schemas use are needed:
//! `type`, `enum`, `properties`, `required`, `additionalProperties`, `items`, `minItems`,
//! `minLength`, `maxLength`, `minimum`, `exclusiveMinimum` (draft 4), `pattern` (as a
//! predicate), `anyOf`, `dependencies` and `format` (`uuid`, `mac-address`).

use serde_json::Value;

/// Python's `repr()` of a JSON value, as `jsonschema` prints instances.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            format!(
                "{{{}}}",
                m.iter().map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// Python's `repr()` of a string: single quotes unless the text has one and no double quote.
pub fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A named predicate standing in for a regex `pattern`.
pub type Pattern = (&'static str, fn(&str) -> bool);

/// One validation failure: where (depth in the instance) and what.
#[derive(Debug, Clone)]
pub struct SchemaError {
    pub depth: usize,
    pub message: String,
    /// For `anyOf`: the most relevant failure among the alternatives.
    pub cause: Option<String>,
    /// Errors from keywords Python's `best_match` treats as weak (`anyOf`).
    weak: bool,
}

fn type_name_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn is_uuid(s: &str) -> bool {
    s.parse::<uuid::Uuid>().is_ok()
}

fn is_mac(s: &str) -> bool {
    s.parse::<crate::models::MacAddr>().is_ok()
}

/// Validates `v` against `schema`, appending every failure (as `jsonschema.iter_errors` does).
fn check(schema: &Value, v: &Value, depth: usize, patterns: &[Pattern], out: &mut Vec<SchemaError>) {
    let Some(s) = schema.as_object() else { return };
    let err = |message: String| SchemaError { depth, message, cause: None, weak: false };
    for (kw, arg) in s {
        match kw.as_str() {
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
                    _ => continue,
                };
                if !types.iter().any(|t| type_name_ok(t, v)) {
                    let names: Vec<String> = types.iter().map(|t| py_str(t)).collect();
                    out.push(err(format!("{} is not of type {}", py_repr(v), names.join(", "))));
                }
            }
            "enum" => {
                if let Some(choices) = arg.as_array() {
                    if !choices.contains(v) {
                        out.push(err(format!("{} is not one of {}", py_repr(v), py_repr(arg))));
                    }
                }
            }
            "properties" => {
                if let (Some(props), Some(obj)) = (arg.as_object(), v.as_object()) {
                    for (name, sub) in props {
                        if let Some(val) = obj.get(name) {
                            check(sub, val, depth + 1, patterns, out);
                        }
                    }
                }
            }
            "required" => {
                if let (Some(req), Some(obj)) = (arg.as_array(), v.as_object()) {
                    for r in req.iter().filter_map(|r| r.as_str()) {
                        if !obj.contains_key(r) {
                            out.push(err(format!("{} is a required property", py_str(r))));
                        }
                    }
                }
            }
            "additionalProperties" if arg == &Value::Bool(false) => {
                if let Some(obj) = v.as_object() {
                    let known = s.get("properties").and_then(|p| p.as_object());
                    let extra: Vec<String> =
                        obj.keys().filter(|k| known.is_none_or(|p| !p.contains_key(*k))).map(|k| py_str(k)).collect();
                    if !extra.is_empty() {
                        let verb = if extra.len() == 1 { "was" } else { "were" };
                        out.push(err(format!(
                            "Additional properties are not allowed ({} {verb} unexpected)",
                            extra.join(", ")
                        )));
                    }
                }
            }
            "items" => {
                if let Some(arr) = v.as_array() {
                    for item in arr {
                        check(arg, item, depth + 1, patterns, out);
                    }
                }
            }
            "minItems" => {
                if let (Some(n), Some(arr)) = (arg.as_u64(), v.as_array()) {
                    if (arr.len() as u64) < n {
                        let what = if n == 1 { "should be non-empty" } else { "is too short" };
                        out.push(err(format!("{} {what}", py_repr(v))));
                    }
                }
            }
            "minLength" => {
                if let (Some(n), Some(st)) = (arg.as_u64(), v.as_str()) {
                    if (st.chars().count() as u64) < n {
                        let what = if n == 1 { "should be non-empty" } else { "is too short" };
                        out.push(err(format!("{} {what}", py_repr(v))));
                    }
                }
            }
            "maxLength" => {
                if let (Some(n), Some(st)) = (arg.as_u64(), v.as_str()) {
                    if (st.chars().count() as u64) > n {
                        out.push(err(format!("{} is too long", py_repr(v))));
                    }
                }
            }
            "minimum" => {
                if let (Some(min), Some(x)) = (arg.as_f64(), v.as_f64()) {
                    if v.is_number() {
                        let exclusive = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
                        if exclusive && x <= min {
                            out.push(err(format!(
                                "{} is less than or equal to the minimum of {}",
                                py_repr(v),
                                py_repr(arg)
                            )));
                        } else if x < min {
                            out.push(err(format!("{} is less than the minimum of {}", py_repr(v), py_repr(arg))));
                        }
                    }
                }
            }
            "pattern" => {
                if let (Some(p), Some(st)) = (arg.as_str(), v.as_str()) {
                    if let Some((_, f)) = patterns.iter().find(|(name, _)| *name == p) {
                        if !f(st) {
                            out.push(err(format!("{} does not match {}", py_repr(v), py_str(p))));
                        }
                    }
                }
            }
            "format" => {
                if let (Some(f), Some(st)) = (arg.as_str(), v.as_str()) {
                    let ok = match f {
                        "uuid" => is_uuid(st),
                        "mac-address" => is_mac(st),
                        _ => true,
                    };
                    if !ok {
                        out.push(err(format!("{} is not a {}", py_repr(v), py_str(f))));
                    }
                }
            }
            "anyOf" => {
                if let Some(alts) = arg.as_array() {
                    let mut all = Vec::new();
                    let mut matched = false;
                    for alt in alts {
                        let mut e = Vec::new();
                        check(alt, v, depth, patterns, &mut e);
                        if e.is_empty() {
                            matched = true;
                            break;
                        }
                        all.extend(e);
                    }
                    if !matched {
                        let cause = best(&all).map(|e| e.cause.clone().unwrap_or(e.message.clone()));
                        out.push(SchemaError {
                            depth,
                            message: format!("{} is not valid under any of the given schemas", py_repr(v)),
                            cause,
                            weak: true,
                        });
                    }
                }
            }
            "dependencies" => {
                if let (Some(deps), Some(obj)) = (arg.as_object(), v.as_object()) {
                    for (prop, needs) in deps {
                        if !obj.contains_key(prop) {
                            continue;
                        }
                        for n in needs.as_array().into_iter().flatten().filter_map(|n| n.as_str()) {
                            if !obj.contains_key(n) {
                                out.push(err(format!("{} is a dependency of {}", py_str(n), py_str(prop))));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Python `jsonschema.best_match`: the shallowest error, strong keywords before `anyOf`,
/// first in schema order among equals.
fn best(errors: &[SchemaError]) -> Option<&SchemaError> {
    let mut best: Option<&SchemaError> = None;
    for e in errors {
        best = match best {
            None => Some(e),
            Some(b) if (e.depth, e.weak) < (b.depth, b.weak) => Some(e),
            keep => keep,
        };
    }
    best
}

/// Validates and returns the most relevant error, if any.
pub fn validate(schema: &Value, v: &Value, patterns: &[Pattern]) -> Option<SchemaError> {
    let mut errors = Vec::new();
    check(schema, v, 0, patterns, &mut errors);
    best(&errors).cloned()
}

/// Ironic's `args.schema` wording: `Schema error for <name>: <message>[. Possible root cause:
/// <cause>]`.
pub fn validate_arg(name: &str, schema: &Value, v: &Value, patterns: &[Pattern]) -> Result<(), String> {
    match validate(schema, v, patterns) {
        None => Ok(()),
        Some(e) => {
            let mut msg = format!("Schema error for {name}: {}", e.message);
            if let Some(c) = e.cause {
                msg.push_str(&format!(". Possible root cause: {c}"));
            }
            Err(msg)
        }
    }
}

/// `^CUSTOM_[A-Z0-9_]+$`.
pub fn custom_trait(s: &str) -> bool {
    s.strip_prefix("CUSTOM_")
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
}

/// `^[0-9]+$`.
pub fn digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The patterns Ironic's schemas use.
pub const PATTERNS: &[Pattern] = &[("^CUSTOM_[A-Z0-9_]+$", custom_trait), ("^[0-9]+$", digits)];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_match_python_jsonschema() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}, "required": ["b"],
                       "additionalProperties": false});
        let e = validate(&s, &json!({"a": 5, "c": 1}), PATTERNS).unwrap();
        // Top-level errors win over nested ones.
        assert_eq!(e.message, "'b' is a required property");
        let e = validate(&s, &json!({"a": 5, "b": 1}), PATTERNS).unwrap();
        assert_eq!(e.message, "5 is not of type 'string'");
        let e = validate(&s, &json!({"b": 1, "c": 1, "d": 2}), PATTERNS).unwrap();
        assert_eq!(e.message, "Additional properties are not allowed ('c', 'd' were unexpected)");
        assert_eq!(py_repr(&json!({"x": [true, null, "it's"]})), "{'x': [True, None, \"it's\"]}");
    }

    #[test]
    fn any_of_reports_a_cause() {
        let s = json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+$"}]});
        assert!(validate(&s, &json!(3), PATTERNS).is_none());
        assert!(validate(&s, &json!("12"), PATTERNS).is_none());
        let e = validate(&s, &json!("x"), PATTERNS).unwrap();
        assert_eq!(e.message, "'x' is not valid under any of the given schemas");
        assert_eq!(e.cause.as_deref(), Some("'x' is not of type 'integer'"));
    }
}
