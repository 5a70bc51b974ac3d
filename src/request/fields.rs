//! Which fields each object of a request knows, and what becomes of one it does not.
//!
//! A misspelt field must never quietly change what runs: `"timout": "5s"` would run the
//! command without the timeout its author wrote. So in the native shape an unknown field of a
//! command, a file, an `envs` entry, `limits` or `retry` is refused, naming the field most
//! likely meant. Only the top level stays open (direktiv-apps functions are sent fields of
//! their own beside `commands`, and Direktiv may pass a whole state's data): an unknown field
//! there is said once, as a warning, unless it is so close to a field of the request that it
//! can only be a typo of it. The direktiv-cmd shape is a drop-in for Direktiv's runner, which
//! ignores what it does not know: there every unknown field is said, never refused.
//!
//! Each object's fields are one list below; a new field, or a new object checked the same way,
//! is one line there.

use serde_json::Value;

use super::json::{self, Obj};
use crate::error::Failure;

/// The fields one kind of object knows.
pub(crate) struct Fields {
    /// The object, as a message names it ("a command").
    what: &'static str,
    names: &'static [&'static str],
}

/// The request itself (the direktiv-cmd shape's `data` wrapper included).
pub(crate) const REQUEST: Fields = Fields {
    what: "the request",
    names: &[
        "commands", "command", "files", "env", "envs", "mask", "limits", "data",
    ],
};

/// One command. `retry` and `errors` are read by the retry and error-code rules; aliases used
/// by Direktiv's runners count as fields.
pub(crate) const COMMAND: Fields = Fields {
    what: "a command",
    names: &[
        "command",
        "args",
        "shell",
        "env",
        "envs",
        "stdin",
        "workdir",
        "timeout",
        "silent",
        "print",
        "continue",
        "output",
        "limits",
        "retry",
        "errors",
        "stop",
        "suppress_command",
        "suppress_output",
    ],
};

/// One entry of `files`, in both shapes' spelling (`content` = `data`, `permission` = `mode`).
pub(crate) const FILE: Fields = Fields {
    what: "a file",
    names: &["name", "data", "content", "type", "mode", "permission"],
};

/// One entry of `envs`.
pub(crate) const ENV_ENTRY: Fields = Fields {
    what: "an envs entry",
    names: &["name", "value", "secret"],
};

/// A `limits` object (its values are read by `crate::limits`).
pub(crate) const LIMITS: Fields = Fields {
    what: "limits",
    // `pids` is known so that it is refused with the reason (`crate::limits`), not as a typo.
    names: &["memory", "cpu", "file_size", "open_files", "pids"],
};

/// The direktiv-cmd shape's `data` wrapper.
pub(crate) const DATA: Fields = Fields {
    what: "data",
    names: &["commands"],
};

/// A command's `retry` object.
pub(crate) const RETRY: Fields = Fields {
    what: "retry",
    names: &["attempts", "on", "delay", "backoff"],
};

/// Every kind of object, to say where a field that is misplaced belongs.
const ALL: [&Fields; 6] = [&REQUEST, &COMMAND, &FILE, &ENV_ENTRY, &LIMITS, &RETRY];

/// At most this many ignored fields are named in the warning; the rest are counted.
const NAMED_MAX: usize = 10;

/// Whether an unknown field is refused or only said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The native shape: an unknown field of an object below the top level is `cmd.input`.
    Refuse,
    /// The direktiv-cmd shape: every unknown field is only said.
    Note,
}

/// The unknown fields of one request: refused as they are found, or gathered for one warning.
#[derive(Debug)]
pub(crate) struct UnknownFields {
    policy: Policy,
    /// What was ignored: each field's JSON path, with a hint where one is known.
    ignored: Vec<String>,
}

impl UnknownFields {
    pub(crate) fn new(policy: Policy) -> Self {
        UnknownFields {
            policy,
            ignored: Vec::new(),
        }
    }

    /// Checks the fields of `obj`, an object of the kind `fields` describes.
    pub(crate) fn check(&mut self, obj: Obj<'_>, fields: &Fields) -> Result<(), Failure> {
        for key in unknown_keys(obj, fields) {
            let hint = Hint::find(obj, key, fields, &ALL);
            match self.policy {
                Policy::Refuse => return Err(obj.error(&shown(key), hint.refusal(fields))),
                Policy::Note => self.note(obj, key, &hint),
            }
        }
        Ok(())
    }

    /// Checks the request's own fields. `shorthand` is a top-level `command`: the top level is
    /// then a command too. An unknown field is said, not refused (see the module comment),
    /// except in the native shape one that can only be a typo of a field the top level reads.
    pub(crate) fn check_top_level(
        &mut self,
        root: Obj<'_>,
        shorthand: bool,
    ) -> Result<(), Failure> {
        let own: &[&Fields] = if shorthand {
            &[&REQUEST, &COMMAND]
        } else {
            &[&REQUEST]
        };
        for key in root
            .map
            .iter()
            .filter(|(key, value)| !value.is_null() && !own.iter().any(|f| f.knows(key)))
            .map(|(key, _)| key.as_str())
        {
            let typo = own
                .iter()
                .find_map(|fields| likely_meant(root, key, fields.names));
            match (self.policy, typo) {
                (Policy::Refuse, Some(meant)) => {
                    return Err(root.error(
                        &shown(key),
                        format!("is not a field of the request; did you mean \"{meant}\"?"),
                    ))
                }
                _ => {
                    let hint = Hint::find(root, key, &REQUEST, &ALL);
                    self.note(root, key, &hint);
                }
            }
        }
        Ok(())
    }

    /// The warning to log once for the request, when anything was ignored.
    pub(crate) fn warning(&self) -> Option<String> {
        let (named, rest) = self.ignored.split_at(self.ignored.len().min(NAMED_MAX));
        let first = named.first()?;
        let mut text = format!("ignored unknown field{}: ", plural(self.ignored.len()));
        text.push_str(first);
        for field in &named[1..] {
            text.push_str(", ");
            text.push_str(field);
        }
        if !rest.is_empty() {
            text.push_str(&format!(" and {} more", rest.len()));
        }
        Some(text)
    }

    fn note(&mut self, obj: Obj<'_>, key: &str, hint: &Hint) {
        let path = obj.path_of(&shown(key));
        self.ignored.push(match hint.note() {
            Some(note) => format!("{path} ({note})"),
            None => path,
        });
    }
}

impl Fields {
    fn knows(&self, key: &str) -> bool {
        self.names.contains(&key)
    }
}

/// The keys of `obj` that `fields` does not know, in the order given (null values count as
/// absent, as everywhere in a request).
fn unknown_keys<'a>(obj: Obj<'a>, fields: &'a Fields) -> impl Iterator<Item = &'a str> + 'a {
    obj.map
        .iter()
        .filter(move |(key, value)| !value.is_null() && !fields.knows(key))
        .map(|(key, _)| key.as_str())
}

/// What an unknown field most likely is.
enum Hint {
    /// A field of the same object, misspelt.
    Typo(&'static str),
    /// A field of another object, in the wrong place (`"files"` inside a command).
    Elsewhere(&'static Fields),
    None,
}

impl Hint {
    fn find(obj: Obj<'_>, key: &str, fields: &Fields, all: &[&'static Fields]) -> Hint {
        if let Some(meant) = likely_meant(obj, key, fields.names) {
            return Hint::Typo(meant);
        }
        match all.iter().find(|other| other.knows(key)) {
            Some(other) => Hint::Elsewhere(other),
            None => Hint::None,
        }
    }

    /// The message of a refused field.
    fn refusal(&self, fields: &Fields) -> String {
        let list = fields.names.join(", ");
        match self {
            Hint::Typo(meant) => format!(
                "is not a field of {}; did you mean \"{meant}\"? (the fields of {} are {list})",
                fields.what, fields.what
            ),
            Hint::Elsewhere(other) => format!(
                "is not a field of {} but of {}; the fields of {} are {list}",
                fields.what, other.what, fields.what
            ),
            Hint::None => format!(
                "is not a field of {}; the fields of {} are {list}",
                fields.what, fields.what
            ),
        }
    }

    /// The hint beside an ignored field in the warning.
    fn note(&self) -> Option<String> {
        match self {
            Hint::Typo(meant) => Some(format!("did you mean \"{meant}\"?")),
            Hint::Elsewhere(other) => Some(format!("a field of {}", other.what)),
            Hint::None => None,
        }
    }
}

/// The field of `known` that `key`, a field of `obj`, is most likely a misspelling of: the
/// same once letter case, `_` and `-` are ignored (`Timeout`, `fileSize`, `open-files`), or at
/// most one edit away (two for names of six letters or more; a swap of neighbours is one edit:
/// `timout`, `shel`, `silnet`). A field `obj` also has is not a candidate (`comment` beside
/// `command` is no typo of it). Further off, a guess would more often be wrong than helpful.
fn likely_meant(obj: Obj<'_>, key: &str, known: &[&'static str]) -> Option<&'static str> {
    let candidates = || known.iter().filter(|name| !obj.map.contains_key(**name));
    let folded = fold(key);
    if let Some(same) = candidates().find(|name| fold(name) == folded) {
        return Some(same);
    }
    let allowed = if folded.chars().count() >= 6 { 2 } else { 1 };
    candidates()
        .map(|name| (strsim::damerau_levenshtein(&folded, &fold(name)), *name))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Lower case without `_` and `-`.
fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A key as a message shows it: as is when it is a plain name, else quoted like any value (a
/// key can be anything, a megabyte or a line break; the message is cut to its size once masked).
fn shown(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 40
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        key.to_owned()
    } else {
        json::describe(&Value::String(key.to_owned()))
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field `key` most likely means in an object that has only `key`.
    fn meant(key: &str, fields: &Fields) -> Option<&'static str> {
        let map = serde_json::Map::from_iter([(key.to_owned(), Value::Bool(true))]);
        likely_meant(Obj::new(&map, ""), key, fields.names)
    }

    #[test]
    fn typos_find_the_field_meant() {
        assert_eq!(meant("timout", &COMMAND), Some("timeout"));
        assert_eq!(meant("shel", &COMMAND), Some("shell"));
        assert_eq!(meant("silnet", &COMMAND), Some("silent"));
        assert_eq!(meant("Timeout", &COMMAND), Some("timeout"));
        assert_eq!(meant("suppressOutput", &COMMAND), Some("suppress_output"));
        assert_eq!(meant("fileSize", &LIMITS), Some("file_size"));
        assert_eq!(meant("comands", &REQUEST), Some("commands"));
    }

    #[test]
    fn a_field_given_beside_its_look_alike_is_no_typo_of_it() {
        let map = serde_json::Map::from_iter([
            ("command".to_owned(), Value::Bool(true)),
            ("comment".to_owned(), Value::Bool(true)),
        ]);
        let obj = Obj::new(&map, "");
        assert_eq!(likely_meant(obj, "comment", COMMAND.names), None);
        assert_eq!(meant("comment", &COMMAND), Some("command"));
    }

    #[test]
    fn names_far_from_every_field_suggest_nothing() {
        // direktiv-apps functions' own top-level fields must not look like typos.
        for app_field in [
            "scope",
            "loglevel",
            "variables",
            "access-key",
            "secret-key",
            "awsRegion",
            "logging",
            "url",
            "headers",
            "params",
            "debug",
        ] {
            for fields in ALL {
                assert_eq!(meant(app_field, fields), None, "{app_field}");
            }
        }
    }

    #[test]
    fn every_limits_field_is_read_by_limits() {
        for name in LIMITS.names {
            let value = serde_json::json!({ *name: "1" });
            let read = crate::limits::Limits::from_json(&value, "limits");
            assert!(
                !read.is_err_and(|e| e.to_string().contains("is not a limit")),
                "{name}"
            );
        }
    }

    #[test]
    fn odd_keys_are_shown_quoted() {
        assert_eq!(shown("timout"), "timout");
        assert_eq!(shown("a b"), "\"a b\"");
        // Whole: a cut key could be the first part of a secret, which masking would miss.
        assert_eq!(
            shown(&"x".repeat(1000)),
            format!("\"{}\"", "x".repeat(1000))
        );
    }
}
