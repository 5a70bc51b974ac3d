//! The examples' workflows, read the way Direktiv runs them: each action state's function
//! (image and `envs:`), the input it sends with its `jq(...)` values evaluated against the
//! instance data, and where its `catch:` patterns send an error code.
//!
//! Only the expressions the examples use are understood (a path, `// <default>`, `| tojson`)
//! and only the regular-expression syntax their catches use (literals, `\.`, `.`, `*`);
//! anything else panics, so that an example growing past this subset is noticed.

use serde_json::Value;

use super::images::repo;

/// `examples/<name>/workflow.yaml`, parsed.
pub struct Workflow {
    pub name: String,
    doc: Value,
}

/// One action state.
pub struct Action {
    /// The function's `image:`.
    pub image: String,
    /// The function's `envs:`, which Direktiv sets on the function's container.
    pub envs: Vec<(String, String)>,
    /// The action's `input:` as written.
    pub input: Value,
    /// `catch:` entries: (error pattern, transition).
    pub catches: Vec<(String, String)>,
}

impl Workflow {
    /// Reads and parses `examples/<example>/workflow.yaml`.
    pub fn load(example: &str) -> Workflow {
        let path = repo().join("examples").join(example).join("workflow.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        Workflow {
            name: example.to_string(),
            doc,
        }
    }

    /// The action state `id`.
    pub fn action(&self, id: &str) -> Action {
        let states = self.doc["states"].as_array().cloned().unwrap_or_default();
        let state = states
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{}: no state {id}", self.name));
        assert_eq!(state["type"], "action", "{}: {id} is no action", self.name);
        let function_id = &state["action"]["function"];
        let functions = self.doc["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let function = functions
            .iter()
            .find(|f| &f["id"] == function_id)
            .unwrap_or_else(|| panic!("{}: no function {function_id}", self.name));
        let envs = function["envs"]
            .as_array()
            .map(|envs| {
                envs.iter()
                    .map(|e| (text(&e["name"]), text(&e["value"])))
                    .collect()
            })
            .unwrap_or_default();
        let catches = state["catch"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| (text(&c["error"]), text(&c["transition"])))
                    .collect()
            })
            .unwrap_or_default();
        Action {
            image: text(&function["image"]),
            envs,
            input: state["action"]["input"].clone(),
            catches,
        }
    }
}

/// A YAML scalar as text (numbers and booleans as written).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Action {
    /// The body Direktiv sends: the input with every `jq(...)` string replaced by its value
    /// against `data` (the instance data, with `.secrets` for the action's secrets).
    pub fn input_for(&self, data: &Value) -> Value {
        evaluate(&self.input, data)
    }

    /// `CMD_RESULT_KEY` from the function's `envs:`, or `commands`.
    pub fn result_key(&self) -> String {
        self.envs
            .iter()
            .find(|(name, _)| name == "CMD_RESULT_KEY")
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| "commands".to_string())
    }

    /// Where Direktiv goes with `code`: the transition of the first catch whose pattern finds
    /// a match in it (Direktiv's patterns are unanchored regular expressions).
    pub fn transition_for(&self, code: &str) -> Option<&str> {
        self.catches
            .iter()
            .find(|(pattern, _)| regex_finds(pattern, code))
            .map(|(_, transition)| transition.as_str())
    }
}

fn evaluate(value: &Value, data: &Value) -> Value {
    match value {
        Value::String(s) => match s.strip_prefix("jq(").and_then(|s| s.strip_suffix(')')) {
            Some(expr) => jq(expr, data),
            None => {
                assert!(!s.contains("jq("), "jq( inside a longer string: {s}");
                value.clone()
            }
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| evaluate(v, data)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), evaluate(v, data)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `PATH [// DEFAULT] [| tojson]`, PATH being `.` or `.a.b`, DEFAULT a JSON literal.
fn jq(expr: &str, data: &Value) -> Value {
    let (expr, to_json) = match expr.rsplit_once('|') {
        Some((head, "tojson" | " tojson")) => (head, true),
        Some(_) => panic!("unsupported jq filter in {expr}"),
        None => (expr, false),
    };
    let (path, default) = match expr.split_once("//") {
        Some((path, default)) => {
            let default: Value = serde_json::from_str(default.trim())
                .unwrap_or_else(|e| panic!("jq default in {expr}: {e}"));
            (path.trim(), Some(default))
        }
        None => (expr.trim(), None),
    };
    let keys = path
        .strip_prefix('.')
        .unwrap_or_else(|| panic!("jq path must start with `.`: {expr}"));
    let mut value = data.clone();
    for key in keys.split('.').filter(|k| !k.is_empty()) {
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "unsupported jq path {path}"
        );
        value = value[key].clone();
    }
    // jq's `//`: the default when the value is null or false.
    if matches!(value, Value::Null | Value::Bool(false)) {
        if let Some(default) = default {
            value = default;
        }
    }
    if to_json {
        Value::String(value.to_string())
    } else {
        value
    }
}

/// One element of a pattern: a character (or any, for `.`), possibly repeated (`*`).
struct Atom {
    char: Option<char>,
    repeated: bool,
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        self.char.is_none_or(|want| want == c)
    }
}

/// Whether the regular expression `pattern` (literals, `\x`, `.`, `*`) matches anywhere in
/// `text`.
pub fn regex_finds(pattern: &str, text: &str) -> bool {
    let mut atoms: Vec<Atom> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let char = match c {
            '\\' => Some(chars.next().expect("pattern ends in a backslash")),
            '.' => None,
            '*' => {
                let last = atoms.last_mut().expect("pattern starts with *");
                last.repeated = true;
                continue;
            }
            '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => {
                panic!("unsupported regular expression syntax in {pattern}")
            }
            c => Some(c),
        };
        atoms.push(Atom {
            char,
            repeated: false,
        });
    }
    let text: Vec<char> = text.chars().collect();
    (0..=text.len()).any(|start| matches_here(&atoms, &text[start..]))
}

fn matches_here(atoms: &[Atom], text: &[char]) -> bool {
    let Some((atom, rest)) = atoms.split_first() else {
        return true;
    };
    if !atom.repeated {
        return text.first().is_some_and(|&c| atom.matches(c)) && matches_here(rest, &text[1..]);
    }
    let mut taken = 0;
    loop {
        if matches_here(rest, &text[taken..]) {
            return true;
        }
        match text.get(taken) {
            Some(&c) if atom.matches(c) => taken += 1,
            _ => return false,
        }
    }
}
