//! The secrets of a body the parser refused, as far as they can be read, so that its refusal
//! (`cmd.input`, which may quote a value: a bad `timeout`, a file name) is masked like
//! everything else. A refused body is not a `Plan`, so this reads the JSON leniently: every
//! `mask` entry, every `env`/`envs` entry (for the name rule) and every `envs` value marked
//! `"secret": true`, wherever they stand (top level, a command, `data.commands`). A body that
//! is not JSON gives nothing, and its refusal quotes nothing of it.

use serde_json::{Map, Value};

/// What a refused body says is secret.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Salvaged {
    /// `mask` entries and values marked secret.
    pub marked: Vec<String>,
    /// Env entries, secret or not by their name.
    pub env: Vec<(String, String)>,
}

/// Reads what secrets it can out of `body`; `overrides` are env entries given beside it
/// (`direktiv-cmd run --env`).
pub fn secrets_of_refused(body: &[u8], overrides: &[(String, String)]) -> Salvaged {
    let mut found = Salvaged {
        env: overrides.to_vec(),
        ..Salvaged::default()
    };
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        walk(&value, &mut found);
    }
    found
}

fn walk(value: &Value, found: &mut Salvaged) {
    match value {
        Value::Object(map) => {
            read_object(map, found);
            map.values().for_each(|item| walk(item, found));
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
        _ => {}
    }
}

fn read_object(map: &Map<String, Value>, found: &mut Salvaged) {
    if let Some(Value::Array(items)) = map.get("mask") {
        found.marked.extend(items.iter().filter_map(text));
    }
    if let Some(Value::Object(env)) = map.get("env") {
        let entries = env
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), text(value)?)));
        found.env.extend(entries);
    }
    if let Some(Value::Array(entries)) = map.get("envs") {
        for entry in entries.iter().filter_map(Value::as_object) {
            let Some(value) = entry.get("value").and_then(text) else {
                continue;
            };
            if entry.get("secret") == Some(&Value::Bool(true)) {
                found.marked.push(value.clone());
            }
            let name = entry.get("name").and_then(text).unwrap_or_default();
            found.env.push((name, value));
        }
    }
}

/// A scalar as the parser would read it into a string.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_read_wherever_they_stand() {
        let body = json!({
            "mask": ["m-1", 123456, {"no": 1}],
            "env": {"API_TOKEN": "t-1", "N": 5},
            "commands": [{"command": "x", "timeout": "bad",
                          "envs": [{"name": "P", "value": "p-1", "secret": true},
                                   {"name": "Q", "value": "q-1"}]}],
            "data": {"commands": [{"envs": [{"value": "v-1", "secret": true}]}]}
        });
        let found = secrets_of_refused(body.to_string().as_bytes(), &[("O".into(), "o".into())]);
        let mut marked = found.marked.clone();
        marked.sort();
        assert_eq!(marked, ["123456", "m-1", "p-1", "v-1"]);
        let mut env = found.env.clone();
        env.sort();
        assert_eq!(
            env,
            [
                ("".into(), "v-1".into()),
                ("API_TOKEN".into(), "t-1".into()),
                ("N".into(), "5".into()),
                ("O".into(), "o".into()),
                ("P".into(), "p-1".into()),
                ("Q".into(), "q-1".into())
            ]
        );
        assert_eq!(secrets_of_refused(b"{not json", &[]), Salvaged::default());
    }
}
