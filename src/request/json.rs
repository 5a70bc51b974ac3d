//! Walking a `serde_json::Value` with the JSON path of every node, so each error can say
//! where it is (`commands[1].timeout: expected ..., got true`).
//!
//! Hand-rolled rather than derived: the wire formats have aliases, "one of" fields and values
//! of several types, and a derived deserializer would report those in serde's words, not ours.

use serde_json::{Map, Value};

use crate::error::Failure;

/// An object of the request together with its JSON path.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub(crate) map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Obj<'a> {
    /// Wraps an object found at `path` (`""` for the body itself).
    pub(crate) fn new(map: &'a Map<String, Value>, path: &'a str) -> Self {
        Obj { map, path }
    }

    /// The JSON path of this object.
    pub(crate) fn path(&self) -> &'a str {
        self.path
    }

    /// The JSON path of a field of this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// A field's value; an explicit `null` counts as absent (YAML `key:` with nothing after it
    /// arrives as null, and Direktiv's jq templates produce null for missing data).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether the field is present and not null.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An error about one field of this object.
    pub(crate) fn error(&self, key: &str, message: impl std::fmt::Display) -> Failure {
        at(&self.path_of(key), message)
    }

    /// An optional string field.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, expected("a string", other))),
        }
    }

    /// An optional boolean field.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(key, expected("true or false", other))),
        }
    }

    /// An optional array field.
    pub(crate) fn array(&self, key: &str, what: &str) -> Result<Option<&'a [Value]>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.error(key, expected(what, other))),
        }
    }

    /// An optional object field.
    pub(crate) fn object(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<&'a Map<String, Value>>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.error(key, expected(what, other))),
        }
    }
}

/// `parent.key`, or just `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// An input error prefixed with the JSON path it is about.
pub(crate) fn at(path: &str, message: impl std::fmt::Display) -> Failure {
    if path.is_empty() {
        Failure::input(message.to_string())
    } else {
        Failure::input(format!("{path}: {message}"))
    }
}

/// `expected <what>, got <value>`.
pub(crate) fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", describe(got))
}

/// A short rendering of a JSON value for an error message: scalars as JSON, containers by
/// kind only, so a message never dumps a large or secret-bearing object. Strings are quoted
/// whole: a string cut here could be the first part of a secret, which masking (it finds
/// whole secrets) would miss; the message is cut to its size once masked.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => value.to_string(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// An object inside an array, with its JSON path (`commands[2]`).
pub(crate) type Entry<'a> = (String, &'a Map<String, Value>);

/// The elements of an array that must all be objects, each with its path.
pub(crate) fn objects<'a>(
    items: &'a [Value],
    path: &str,
    what: &str,
) -> Result<Vec<Entry<'a>>, Failure> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = index(path, i);
            match item {
                Value::Object(map) => Ok((item_path, map)),
                other => Err(at(&item_path, expected(what, other))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_scalars_as_json_and_containers_by_kind() {
        assert_eq!(describe(&json!(true)), "true");
        assert_eq!(describe(&json!(1.5)), "1.5");
        assert_eq!(describe(&json!("x")), "\"x\"");
        assert_eq!(describe(&json!([1])), "an array");
        assert_eq!(describe(&json!({"a": 1})), "an object");
        let long = describe(&json!("y".repeat(100)));
        assert_eq!(long, format!("\"{}\"", "y".repeat(100)));
    }

    #[test]
    fn paths_join_fields_and_indexes() {
        assert_eq!(join("", "commands"), "commands");
        assert_eq!(join(&index("commands", 2), "env"), "commands[2].env");
        assert_eq!(
            at("a.b", "bad").to_string(),
            "a.b: bad",
            "errors are prefixed with their path"
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let value = json!({"a": null, "b": 1});
        let map = value.as_object().unwrap();
        let obj = Obj::new(map, "");
        assert!(!obj.has("a"));
        assert_eq!(obj.string("a"), Ok(None));
        assert_eq!(
            obj.string("b").unwrap_err().to_string(),
            "b: expected a string, got 1"
        );
    }
}
