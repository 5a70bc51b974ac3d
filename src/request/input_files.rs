//! The `files` list of a request → `InputFile`s with decoded content and a permission mode.
//!
//! One reader serves both shapes: direktiv-apps' `{name, data, type, mode}` and Direktiv's
//! `direktiv-cmd` `{name, content, permission}` (`content` = `data`, `permission` = `mode`).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::Value;

use super::fields::{self, UnknownFields};
use super::json::{self, Obj};
use super::paths;
use crate::error::Failure;
use crate::plan::InputFile;

/// Mode of a file whose request gives none (what Direktiv's function-builder apps use).
const DEFAULT_MODE: u32 = 0o644;

/// Highest mode accepted: permission bits only, no setuid/setgid/sticky.
const MAX_MODE: u32 = 0o777;

/// Standard base64 alphabet; padding optional, since hand-written payloads often drop it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads the request's `files` field (absent = no files).
pub(crate) fn parse(root: Obj<'_>, unknown: &mut UnknownFields) -> Result<Vec<InputFile>, Failure> {
    let Some(items) = root.array(
        "files",
        "an array of files like [{\"name\": \"...\", \"data\": \"...\"}]",
    )?
    else {
        return Ok(Vec::new());
    };
    let path = root.path_of("files");
    let entries = json::objects(
        items,
        &path,
        "a file like {\"name\": \"...\", \"data\": \"...\"}",
    )?;
    let files = entries
        .iter()
        .map(|(file_path, map)| {
            let file = Obj::new(map, file_path);
            unknown.check(file, &fields::FILE)?;
            parse_file(file)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&files, &path)?;
    Ok(files)
}

/// One entry of `files`.
fn parse_file(file: Obj<'_>) -> Result<InputFile, Failure> {
    let name = file
        .string("name")?
        .ok_or_else(|| file.error("name", "is missing; every file needs a relative path"))?;
    let path = paths::relative(name).map_err(|e| file.error("name", e))?;
    Ok(InputFile {
        path,
        data: content(file)?,
        mode: mode(file)?,
    })
}

/// The decoded bytes of `data` (or its alias `content`); an absent value is an empty file.
fn content(file: Obj<'_>) -> Result<Vec<u8>, Failure> {
    let text = match (file.string("data")?, file.string("content")?) {
        (Some(data), Some(content)) if data != content => {
            return Err(file.error(
                "content",
                "differs from \"data\"; give the file's content only once",
            ))
        }
        (data, content) => data.or(content).unwrap_or(""),
    };
    match file.string("type")?.unwrap_or("plain") {
        "plain" | "" => Ok(text.as_bytes().to_vec()),
        "base64" => decode_base64(text).map_err(|e| file.error("data", e)),
        other => Err(file.error(
            "type",
            format!(
                "{} is not a file type; use \"plain\" or \"base64\"",
                Value::String(other.to_owned())
            ),
        )),
    }
}

/// Standard base64 with any ASCII whitespace (line breaks of `base64` output) ignored.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    BASE64
        .decode(compact)
        .map_err(|e| format!("is not valid base64 ({e})"))
}

/// The mode from `mode` (or its alias `permission`), default 0644.
fn mode(file: Obj<'_>) -> Result<u32, Failure> {
    let mode = file
        .get("mode")
        .map(|v| mode_value(v).map_err(|e| file.error("mode", e)));
    let permission = file
        .get("permission")
        .map(|v| mode_value(v).map_err(|e| file.error("permission", e)));
    match (mode.transpose()?, permission.transpose()?) {
        (Some(a), Some(b)) if a != b => Err(file.error(
            "permission",
            format!("{b:#o} differs from \"mode\" {a:#o}; give the mode only once"),
        )),
        (a, b) => Ok(a.or(b).unwrap_or(DEFAULT_MODE)),
    }
}

/// A mode given as an octal string (`"0755"`, `"755"`, `"0o755"`) or as a number holding the
/// mode's value (493 = 0755, what YAML makes of `0755`).
fn mode_value(value: &Value) -> Result<u32, String> {
    match value {
        Value::String(s) => octal_mode(s),
        Value::Number(n) => match n.as_u64() {
            Some(mode) if mode <= u64::from(MAX_MODE) => Ok(mode as u32),
            Some(mode) => Err(format!(
                "{mode} is not a permission mode (a number is the mode's value, and {mode} \
                 is {mode:#o}); write the octal digits as a string: {} \
                 (YAML reads mode: 755 as the decimal number 755)",
                octal_hint(mode)
            )),
            None => Err(json::expected(
                "an octal string like \"0644\" or a whole number",
                value,
            )),
        },
        other => Err(json::expected("an octal string like \"0644\"", other)),
    }
}

/// The string a user most likely meant by a too-large number: its digits when they are octal
/// (755 → `"0755"`), else an example.
fn octal_hint(mode: u64) -> String {
    let digits = mode.to_string();
    if digits.len() <= 4 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        format!("\"{digits:0>4}\"")
    } else {
        "e.g. \"0755\"".into()
    }
}

/// `"0755"`, `"755"` or `"0o755"`.
fn octal_mode(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0o").unwrap_or(trimmed);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= MAX_MODE && !digits.starts_with('+') => Ok(mode),
        _ => Err(format!(
            "{} is not a permission mode; use octal digits from \"000\" to \"0777\", e.g. \"0644\"",
            Value::String(text.to_owned())
        )),
    }
}

/// Refuses two files with the same path, or one file inside another (`a` and `a/b`): one of
/// them could not be written.
fn check_distinct(files: &[InputFile], path: &str) -> Result<(), Failure> {
    let mut sorted: Vec<(usize, &InputFile)> = files.iter().enumerate().collect();
    // Component-wise order puts every path directly before its first descendant.
    sorted.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    for pair in sorted.windows(2) {
        let ((i, first), (j, second)) = (pair[0], pair[1]);
        let (i, j) = (i.min(j), i.max(j));
        if first.path == second.path {
            return Err(json::at(
                path,
                format!(
                    "files[{i}] and files[{j}] both write {}",
                    first.path.display()
                ),
            ));
        }
        if second.path.starts_with(&first.path) {
            return Err(json::at(
                path,
                format!(
                    "{} would be a file and the folder of {}; a path cannot be both",
                    first.path.display(),
                    second.path.display()
                ),
            ));
        }
    }
    Ok(())
}
