//! `env` (`{"NAME": "value"}`) and its alias `envs` (`[{"name": ..., "value": ...}]`), at
//! request and at command level. An `envs` entry may say `"secret": true`: its value is then
//! masked whatever the variable is called.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fields::{self, UnknownFields};
use super::json::{self, Obj};
use crate::error::Failure;

/// The variables of `env` and `envs` of one object, merged. The same name twice is fine with
/// the same value and refused with different ones (which one should win is a guess). Values
/// marked `"secret": true` are added to `secrets`.
pub(crate) fn parse(
    obj: Obj<'_>,
    secrets: &mut Vec<String>,
    unknown: &mut UnknownFields,
) -> Result<Vec<(String, String)>, Failure> {
    let mut vars = Vars::default();
    if let Some(map) = obj.object("env", "an object like {\"NAME\": \"value\"}")? {
        from_object(map, &obj.path_of("env"), &mut vars)?;
    }
    if let Some(items) = obj.array(
        "envs",
        "an array like [{\"name\": \"NAME\", \"value\": \"value\"}]",
    )? {
        from_list(items, &obj.path_of("envs"), &mut vars, secrets, unknown)?;
    }
    Ok(vars.list)
}

/// Sets each of `overrides` in `vars`: a name already there takes the new value in place,
/// others are added at the end.
pub(crate) fn override_with(vars: &mut Vec<(String, String)>, overrides: &[(String, String)]) {
    for (name, value) in overrides {
        match vars.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1.clone_from(value),
            None => vars.push((name.clone(), value.clone())),
        }
    }
}

/// Variables in the order given, with an index by name (a request may carry many).
#[derive(Default)]
struct Vars {
    list: Vec<(String, String)>,
    by_name: HashMap<String, usize>,
}

/// `{"NAME": "value", ...}`.
fn from_object(map: &Map<String, Value>, path: &str, vars: &mut Vars) -> Result<(), Failure> {
    for (name, value) in map {
        let item_path = json::join(path, name);
        check_name(name).map_err(|e| json::at(path, e))?;
        let value = value_text(value).map_err(|e| json::at(&item_path, e))?;
        add(vars, name, value, &item_path)?;
    }
    Ok(())
}

/// `[{"name": "NAME", "value": "value", "secret": true}, ...]` (`secret` optional).
fn from_list(
    items: &[Value],
    path: &str,
    vars: &mut Vars,
    secrets: &mut Vec<String>,
    unknown: &mut UnknownFields,
) -> Result<(), Failure> {
    for (item_path, map) in
        json::objects(items, path, "{\"name\": \"NAME\", \"value\": \"value\"}")?
    {
        let entry = Obj::new(map, &item_path);
        unknown.check(entry, &fields::ENV_ENTRY)?;
        let name = entry
            .string("name")?
            .ok_or_else(|| entry.error("name", "is missing"))?;
        check_name(name).map_err(|e| entry.error("name", e))?;
        let value = match entry.get("value") {
            None => String::new(),
            Some(value) => value_text(value).map_err(|e| entry.error("value", e))?,
        };
        if entry.boolean("secret")?.unwrap_or(false) && !value.is_empty() {
            secrets.push(value.clone());
        }
        add(vars, name, value, &entry.path_of("value"))?;
    }
    Ok(())
}

/// Adds one variable unless the name is already there with a different value.
fn add(vars: &mut Vars, name: &str, value: String, path: &str) -> Result<(), Failure> {
    match vars.by_name.get(name) {
        Some(&i) if vars.list[i].1 == value => Ok(()),
        Some(_) => Err(json::at(
            path,
            format!("{name} is given twice with different values; give it once"),
        )),
        None => {
            vars.by_name.insert(name.to_owned(), vars.list.len());
            vars.list.push((name.to_owned(), value));
            Ok(())
        }
    }
}

/// An environment variable name `execve` can carry: not empty, no `=`, no NUL.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("an environment variable name is empty".into())
    } else if name.contains('=') || name.contains('\0') {
        Err(format!(
            "{} is not an environment variable name (it contains '=' or NUL)",
            Value::String(name.to_owned())
        ))
    } else {
        Ok(())
    }
}

/// A variable's value. Strings as they are; numbers and booleans as their JSON text, because
/// YAML `PORT: 8080` or `DEBUG: true` arrive as such and a user means the obvious string.
fn value_text(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => return Err(json::expected("a string", other)),
    };
    if text.contains('\0') {
        return Err("the value contains a NUL character, which an environment cannot hold".into());
    }
    Ok(text)
}
