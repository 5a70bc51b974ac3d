//! Wire formats → one validated `Plan`. This is the only place that parses request JSON.
//!
//! `parse(body)` returns the plan, or `Failure::Input` with a message that says what is wrong
//! and where (e.g. `commands[1].timeout: ...`).
//!
//! Two shapes are told apart by their fields (README, "Request format"): a top-level `data`
//! object is Direktiv's `direktiv-cmd` shape (commands in `data.commands`), unless `data` holds
//! no commands and the top level does; anything else is the native shape (`commands`, or a
//! single top-level `command`). Unknown fields are refused or said once, by shape and place
//! (`fields`).

mod command;
mod env;
mod fields;
mod input_files;
mod json;
mod paths;
mod salvage;
mod shell;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use self::salvage::{secrets_of_refused, Salvaged};

use self::fields::{Policy, UnknownFields};
use self::json::Obj;
use crate::error::Failure;
use crate::plan::{CommandSpec, Dialect, Plan};

/// What a request looks like, for messages about a body of the wrong shape.
const EXPECTED_SHAPE: &str =
    "expected a JSON object like {\"commands\": [{\"command\": \"ls -l\"}]} \
     (or {\"data\": {\"commands\": [...]}} in Direktiv's direktiv-cmd shape)";

/// Parses a request body in either dialect.
pub fn parse(body: &[u8]) -> Result<Plan, Failure> {
    parse_with_env(body, &[])
}

/// Parses a request body, with variables that join its top-level `env` and win over a value
/// it gives for the same name (`direktiv-cmd run --env`). They count as the request's own
/// env in every other way, secrets included.
pub fn parse_with_env(body: &[u8], overrides: &[(String, String)]) -> Result<Plan, Failure> {
    let value = body_json(body)?;
    let Value::Object(map) = &value else {
        return Err(Failure::input(format!(
            "the request body is {}; {EXPECTED_SHAPE}",
            json::describe(&value)
        )));
    };
    let root = Obj::new(map, "");
    let mut marked = Vec::new();
    let mut unknown = UnknownFields::new(match direktiv_cmd_data(root)? {
        Some(_) => Policy::Note,
        None => Policy::Refuse,
    });
    unknown.check_top_level(root, root.has("command") && !root.has("commands"))?;
    let (dialect, mut commands) = commands(root, &mut marked, &mut unknown)?;
    // Request-level `limits` are every command's defaults.
    let limits = command::limits(root, &mut unknown)?;
    for command in &mut commands {
        command.limits = command.limits.over(limits);
    }
    let files = input_files::parse(root, &mut unknown)?;
    let mut env = env::parse(root, &mut marked, &mut unknown)?;
    // A variable marked secret stays secret with the value that overrides it.
    for (name, value) in overrides {
        if env.iter().any(|(n, v)| n == name && marked.contains(v)) {
            marked.push(value.clone());
        }
    }
    env::override_with(&mut env, overrides);
    let secrets = secrets(mask(root)?, marked);
    Ok(Plan {
        dialect,
        files,
        env,
        commands,
        secrets,
        warning: unknown.warning(),
    })
}

/// The body as JSON; empty is an error (there is nothing to run).
fn body_json(body: &[u8]) -> Result<Value, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::input(format!(
            "the request body is empty; {EXPECTED_SHAPE}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Failure::input(format!(
            "the request body is not valid JSON ({e}); {EXPECTED_SHAPE}"
        ))
    })
}

/// The dialect and its commands; env values marked secret are added to `secrets`.
fn commands(
    root: Obj<'_>,
    secrets: &mut Vec<String>,
    unknown: &mut UnknownFields,
) -> Result<(Dialect, Vec<CommandSpec>), Failure> {
    if let Some(data) = direktiv_cmd_data(root)? {
        unknown.check(data, &fields::DATA)?;
        let items = data
            .array("commands", "an array of commands")?
            .ok_or_else(|| {
                data.error(
                    "commands",
                    "is missing; the direktiv-cmd shape is \
                     {\"data\": {\"commands\": [{\"command\": \"ls -l\"}]}}",
                )
            })?;
        let list = command_list(
            items,
            &data.path_of("commands"),
            Dialect::DirektivCmd,
            secrets,
            unknown,
        )?;
        return Ok((Dialect::DirektivCmd, list));
    }
    let list = match (
        root.array("commands", "an array of commands")?,
        root.has("command"),
    ) {
        (Some(_), true) => {
            return Err(Failure::input(
                "the request has both \"commands\" and \"command\"; use \"commands\": [...] for \
                 several commands or \"command\": \"...\" for one",
            ))
        }
        (Some(items), false) => command_list(items, "commands", Dialect::Native, secrets, unknown)?,
        (None, true) => vec![command::parse(
            root,
            Dialect::Native,
            false,
            secrets,
            unknown,
        )?],
        (None, false) => {
            return Err(Failure::input(format!(
                "the request has no \"commands\"; {EXPECTED_SHAPE}"
            )))
        }
    };
    Ok((Dialect::Native, list))
}

/// The `data` object when the body is in the direktiv-cmd shape. A native body may carry an
/// unrelated `data` object (state data passed through): it only counts when it holds
/// `commands` or the top level has none.
/// Commands in both places are refused: running either list would be a guess.
fn direktiv_cmd_data(root: Obj<'_>) -> Result<Option<Obj<'_>>, Failure> {
    let Some(Value::Object(data)) = root.get("data") else {
        return Ok(None);
    };
    let data = Obj::new(data, "data");
    let native = root.has("commands") || root.has("command");
    match (data.has("commands"), native) {
        (true, true) => Err(Failure::input(
            "the request has commands both in \"data.commands\" (direktiv-cmd shape) and at \
             the top level (native shape); send one shape",
        )),
        (false, true) => Ok(None),
        (_, false) => Ok(Some(data)),
    }
}

/// Every element of a `commands` array.
fn command_list(
    items: &[Value],
    path: &str,
    dialect: Dialect,
    secrets: &mut Vec<String>,
    unknown: &mut UnknownFields,
) -> Result<Vec<CommandSpec>, Failure> {
    json::objects(items, path, "a command like {\"command\": \"ls -l\"}")?
        .iter()
        .map(|(item_path, map)| {
            let cmd = Obj::new(map, item_path);
            command::parse(cmd, dialect, true, secrets, unknown)
        })
        .collect()
}

/// The `mask` list: extra strings to redact (numbers as their text, like env values).
fn mask(root: Obj<'_>) -> Result<Vec<String>, Failure> {
    let Some(items) = root.array("mask", "an array of strings")? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(json::at(
                &json::index("mask", i),
                json::expected("a string", other),
            )),
        })
        .collect()
}

/// The request's own secrets: the `mask` entries, then the env values marked secret; once
/// each. Which env names make a value secret is configuration (`mask::SecretPolicy`).
fn secrets(mask: Vec<String>, marked: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    mask.into_iter()
        .chain(marked)
        .filter(|secret| !secret.is_empty() && seen.insert(secret.clone()))
        .collect()
}
