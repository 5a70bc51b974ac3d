//! One command object → `CommandSpec`, with aliases and defaults resolved.

use std::time::Duration;

use serde_json::Value;

use super::fields::{self, UnknownFields};
use super::json::{self, Obj};
use super::{env, paths, shell};
use crate::error::Failure;
use crate::limits::Limits;
use crate::plan::{CommandSpec, Dialect, FieldPath, Program};
use crate::retry::Retry;

/// Reads a command. `with_env` is false for the top-level `command` shorthand, whose `env`
/// (and other request fields) belong to the request, which checks them. Env values marked
/// secret are added to `secrets`.
pub(crate) fn parse(
    cmd: Obj<'_>,
    dialect: Dialect,
    with_env: bool,
    secrets: &mut Vec<String>,
    unknown: &mut UnknownFields,
) -> Result<CommandSpec, Failure> {
    if with_env {
        unknown.check(cmd, &fields::COMMAND)?;
    }
    if let Some(Value::Object(retry)) = cmd.get("retry") {
        unknown.check(Obj::new(retry, &cmd.path_of("retry")), &fields::RETRY)?;
    }
    let (program, display) = program(cmd)?;
    Ok(CommandSpec {
        display,
        program,
        env: if with_env {
            env::parse(cmd, secrets, unknown)?
        } else {
            Vec::new()
        },
        stdin: cmd.string("stdin")?.map(|s| s.as_bytes().to_vec()),
        workdir: relative_path(cmd, "workdir")?,
        timeout: timeout(cmd)?,
        silent: flag(cmd, "silent", ("suppress_output", false))?.unwrap_or(false),
        print: flag(cmd, "print", ("suppress_command", true))?.unwrap_or(true),
        continue_on_error: flag(cmd, "continue", ("stop", true))?
            .unwrap_or(dialect == Dialect::DirektivCmd),
        output: relative_path(cmd, "output")?,
        limits: limits(cmd, unknown)?,
        errors: errors(cmd)?,
        retry: retry(cmd)?,
    })
}

/// Most attempts a `retry` may ask for.
const MAX_ATTEMPTS: u64 = 100;

/// `retry`: `{"attempts": 3, "on": ["cmd\\.exit\\.75"], "delay": "PT2S", "backoff": 2}`.
fn retry(cmd: Obj<'_>) -> Result<Option<Retry>, Failure> {
    let Some(map) = cmd.object(
        "retry",
        "an object like {\"attempts\": 3, \"delay\": \"5s\"}",
    )?
    else {
        return Ok(None);
    };
    let path = cmd.path_of("retry");
    let retry = Obj::new(map, &path);
    let attempts =
        match retry.get("attempts") {
            None => return Err(json::at(
                &path,
                "needs \"attempts\": the number of attempts in all, the first included (e.g. 3)",
            )),
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|n| (1..=MAX_ATTEMPTS).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    retry.error(
                        "attempts",
                        format!("expected a whole number from 1 to {MAX_ATTEMPTS}, got {n}"),
                    )
                })?,
            Some(other) => {
                return Err(retry.error(
                    "attempts",
                    json::expected(&format!("a whole number from 1 to {MAX_ATTEMPTS}"), other),
                ))
            }
        };
    let on = match retry.array(
        "on",
        "an array of regular expressions like [\"cmd\\\\.exit\\\\.75\"]",
    )? {
        None => None,
        Some(items) => {
            let on_path = retry.path_of("on");
            let patterns = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = json::index(&on_path, i);
                    match item {
                        Value::String(pattern) => regex_lite::Regex::new(pattern).map_err(|e| {
                            json::at(&at, format!("is not a regular expression: {e}"))
                        }),
                        other => Err(json::at(&at, json::expected("a regular expression", other))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(patterns)
        }
    };
    let delay = duration(retry, "delay")?.unwrap_or_default();
    let backoff = match retry.get("backoff") {
        None => 1.0,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|b| b.is_finite() && *b >= 1.0)
            .ok_or_else(|| {
                retry.error(
                    "backoff",
                    format!("expected a number of at least 1, got {n}"),
                )
            })?,
        Some(other) => {
            return Err(retry.error("backoff", json::expected("a number of at least 1", other)))
        }
    };
    Ok(Some(Retry {
        attempts,
        on,
        delay,
        backoff,
    }))
}

/// `errors`: `{"254": "aws.client"}`, exit statuses and the codes a failure with one of them
/// gets (the rules of `check_chosen_code`).
fn errors(cmd: Obj<'_>) -> Result<Vec<(i32, String)>, Failure> {
    let Some(map) = cmd.object("errors", "an object like {\"254\": \"aws.client\"}")? else {
        return Ok(Vec::new());
    };
    let path = cmd.path_of("errors");
    map.iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(status, code)| {
            let field = json::join(&path, status);
            let status = status
                .parse::<i32>()
                .ok()
                .filter(|status| (1..=255).contains(status))
                .ok_or_else(|| {
                    json::at(
                        &path,
                        format!(
                            "{} is not an exit status; the keys are exit statuses from 1 to 255",
                            json::describe(&Value::String(status.clone()))
                        ),
                    )
                })?;
            let Value::String(code) = code else {
                return Err(json::at(
                    &field,
                    json::expected("an error code like \"aws.client\"", code),
                ));
            };
            crate::error::check_chosen_code(code)
                .map_err(|why| json::at(&field, format!("the error code '{code}' {why}")))?;
            Ok((status, code.clone()))
        })
        .collect()
}

/// The program from `command` (split, or run by the shell with `shell: true`) or `args`, and
/// the text that shows it in logs.
fn program(cmd: Obj<'_>) -> Result<(Program, String), Failure> {
    let shell_mode = cmd.boolean("shell")?.unwrap_or(false);
    match (cmd.string("command")?, args(cmd)?) {
        (Some(_), Some(_)) => Err(cmd.error(
            "args",
            "cannot be given together with \"command\"; use one of them",
        )),
        (None, None) => Err(json::at(
            cmd.path(),
            "a command needs \"command\": \"program arg ...\" or \"args\": [\"program\", \"arg\", ...]",
        )),
        (None, Some(_)) if shell_mode => Err(cmd.error(
            "shell",
            "works only with \"command\" (a script for the shell), not with \"args\"",
        )),
        (None, Some(argv)) => {
            let display = shell_words::join(&argv);
            Ok((Program::Argv(argv), display))
        }
        (Some(command), None) if shell_mode => {
            if command.trim().is_empty() {
                return Err(cmd.error("command", "the shell script is empty"));
            }
            if command.contains('\0') {
                return Err(cmd.error("command", "contains a NUL character"));
            }
            Ok((Program::Shell(command.to_owned()), command.to_owned()))
        }
        (Some(command), None) => {
            let argv = shell::split(command).map_err(|e| cmd.error("command", e))?;
            check_no_nul(&argv).map_err(|e| cmd.error("command", e))?;
            Ok((Program::Argv(argv), command.to_owned()))
        }
    }
}

/// `args`: a non-empty array of strings whose first element names the program.
fn args(cmd: Obj<'_>) -> Result<Option<Vec<String>>, Failure> {
    let Some(items) = cmd.array("args", "an array of strings like [\"ls\", \"-l\"]")? else {
        return Ok(None);
    };
    let path = cmd.path_of("args");
    let argv = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(json::at(
                &json::index(&path, i),
                json::expected("a string", other),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match argv.first() {
        None => Err(cmd.error("args", "is empty; the first element names the program")),
        Some(program) if program.is_empty() => Err(json::at(
            &json::index(&path, 0),
            "the program name is empty",
        )),
        Some(_) => {
            check_no_nul(&argv).map_err(|e| cmd.error("args", e))?;
            Ok(Some(argv))
        }
    }
}

/// An argument with NUL cannot be passed to `execve`.
fn check_no_nul(argv: &[String]) -> Result<(), String> {
    match argv.iter().any(|arg| arg.contains('\0')) {
        true => Err("an argument contains a NUL character".into()),
        false => Ok(()),
    }
}

/// `timeout`: seconds (a number ≥ 0) or a duration string (`"90s"`, `"5m"`, `"PT10M"`, see
/// `crate::duration`). Zero means "no timeout of its own", like `CMD_TIMEOUT=0`, so the command
/// gets the configured default instead of being stopped at once.
fn timeout(cmd: Obj<'_>) -> Result<Option<Duration>, Failure> {
    duration(cmd, "timeout").map(|timeout| timeout.filter(|timeout| !timeout.is_zero()))
}

/// A duration field: seconds (a number ≥ 0) or a duration string (`"90s"`, `"5m"`, `"PT10M"`).
fn duration(cmd: Obj<'_>, key: &str) -> Result<Option<Duration>, Failure> {
    use crate::duration::{self, EXPECTED};
    let Some(value) = cmd.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => match n.as_f64() {
            Some(secs) => duration::from_secs(secs, &n.to_string()),
            None => Err(format!("{EXPECTED}, got {n}")),
        },
        Value::String(s) => duration::parse(s),
        other => Err(format!("{EXPECTED}, got {}", json::describe(other))),
    };
    parsed.map(Some).map_err(|e| cmd.error(key, e))
}

/// `limits`: the command's own resource limits (the request's apply where it sets none).
pub(crate) fn limits(obj: Obj<'_>, unknown: &mut UnknownFields) -> Result<Limits, Failure> {
    let path = obj.path_of("limits");
    match obj.get("limits") {
        Some(value) => {
            if let Value::Object(map) = value {
                unknown.check(Obj::new(map, &path), &fields::LIMITS)?;
            }
            Limits::from_json(value, &path)
        }
        None => Ok(Limits::default()),
    }
}

/// An optional relative path field (`workdir`, `output`).
fn relative_path(cmd: Obj<'_>, key: &str) -> Result<Option<FieldPath>, Failure> {
    cmd.string(key)?
        .map(|raw| match paths::relative(raw) {
            Ok(path) => Ok(FieldPath {
                path,
                field: cmd.path_of(key),
            }),
            Err(e) => Err(cmd.error(key, e)),
        })
        .transpose()
}

/// A boolean that may also be given through an alias: `(alias, negated)` where `negated`
/// means the alias says the opposite (`stop` = not `continue`). Both given and disagreeing is
/// refused rather than guessed.
fn flag(cmd: Obj<'_>, key: &str, (alias, negated): (&str, bool)) -> Result<Option<bool>, Failure> {
    let direct = cmd.boolean(key)?;
    let aliased = cmd.boolean(alias)?;
    match (direct, aliased) {
        (Some(d), Some(a)) if d != (a != negated) => Err(cmd.error(
            alias,
            format!("{a} contradicts \"{key}\": {d}; give only one of them"),
        )),
        (Some(d), _) => Ok(Some(d)),
        (None, a) => Ok(a.map(|a| a != negated)),
    }
}
