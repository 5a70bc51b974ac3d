//! The test's own account of how a secret can show up in output (README, "Secrets": the value,
//! each line, base64 at each alignment in both alphabets, JSON-escaped, URL-encoded,
//! shell-quoted, backslash-escaped in double quotes), and the check that no 8-byte piece of any
//! of those forms is visible anywhere.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// The length of the pieces looked for: shorter ones turn up in ordinary text by chance.
pub const FRAGMENT: usize = 8;

/// A way a command may print a secret.
#[derive(Debug, Clone)]
pub enum Form {
    Plain,
    Json,
    /// JSON as Python's `json.dumps` writes it: non-ASCII as `\uXXXX`.
    AsciiJson,
    Url,
    /// As the runner echoes an argument: `'...'\''...'`.
    ShellArg,
    /// Inside double quotes with `\"` and `\\`.
    DoubleQuoted,
    /// base64 of the secret between `before` and `after` other bytes.
    Base64 {
        before: usize,
        after: usize,
        url_safe: bool,
        pad: bool,
    },
    /// Each line of the secret, with other output between them.
    Lines,
}

/// The secret printed in `form`.
pub fn render(secret: &str, form: &Form) -> String {
    match form {
        Form::Plain => secret.to_owned(),
        Form::Json => json(secret),
        Form::AsciiJson => ascii_json(secret),
        Form::Url => url(secret),
        Form::ShellArg => shell_words::quote(secret).into_owned(),
        Form::DoubleQuoted => format!("\"{}\"", double_quoted(secret)),
        Form::Base64 {
            before,
            after,
            url_safe,
            pad,
        } => {
            let mut bytes = vec![b'Q'; *before];
            bytes.extend_from_slice(secret.as_bytes());
            bytes.extend(std::iter::repeat_n(b'Z', *after));
            let engine = match (url_safe, pad) {
                (false, true) => &STANDARD,
                (false, false) => &STANDARD_NO_PAD,
                (true, true) => &URL_SAFE,
                (true, false) => &URL_SAFE_NO_PAD,
            };
            engine.encode(&bytes)
        }
        Form::Lines => secret.split(['\n', '\r']).collect::<Vec<_>>().join("#"),
    }
}

/// Every form of the secret and of each of its lines (those of 4 bytes or more).
pub fn forms(secret: &str) -> Vec<Vec<u8>> {
    let lines = secret.split(['\n', '\r']).map(str::trim);
    let values = std::iter::once(secret)
        .chain(lines)
        .filter(|value| value.len() >= 4);
    let mut forms = Vec::new();
    for value in values {
        forms.push(value.to_owned());
        forms.push(json(value));
        forms.push(ascii_json(value));
        forms.push(url(value));
        forms.push(value.replace('\'', r"'\''"));
        forms.push(double_quoted(value));
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            for offset in 0..3 {
                let mut bytes = vec![0u8; offset];
                bytes.extend_from_slice(value.as_bytes());
                let encoded = engine.encode(&bytes);
                // Only the characters that encode the value's bits alone.
                let first = (8 * offset).div_ceil(6);
                let end = 8 * bytes.len() / 6;
                forms.push(encoded[first..end].to_owned());
            }
        }
        forms.push(STANDARD.encode(value));
        forms.push(URL_SAFE.encode(value));
    }
    forms.into_iter().map(String::into_bytes).collect()
}

/// Every `FRAGMENT`-byte piece of every form of the secrets.
pub fn fragments<S: AsRef<str>>(secrets: &[S]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = secrets
        .iter()
        .flat_map(|secret| forms(secret.as_ref()))
        .flat_map(|form| {
            form.windows(FRAGMENT)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    pieces.sort();
    pieces.dedup();
    pieces
}

/// The first piece of a secret found in `text`, if any.
pub fn leaked<'a>(text: &[u8], fragments: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    fragments
        .iter()
        .find(|piece| text.windows(piece.len()).any(|w| w == piece.as_slice()))
        .map(Vec::as_slice)
}

/// Asserts that no piece of a secret shows in `text`, which `sink` names.
#[track_caller]
pub fn assert_no_fragment(sink: &str, text: &str, fragments: &[Vec<u8>]) {
    if let Some(piece) = leaked(text.as_bytes(), fragments) {
        panic!(
            "{:?} leaked in {sink}: {text:?}",
            String::from_utf8_lossy(piece)
        );
    }
}

fn json(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

fn ascii_json(value: &str) -> String {
    json(value)
        .chars()
        .map(|c| match c.is_ascii() {
            true => c.to_string(),
            false => c
                .encode_utf16(&mut [0; 2])
                .iter()
                .map(|unit| format!("\\u{unit:04x}"))
                .collect(),
        })
        .collect()
}

fn url(value: &str) -> String {
    value
        .bytes()
        .map(
            |b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                true => char::from(b).to_string(),
                false => format!("%{b:02X}"),
            },
        )
        .collect()
}

fn double_quoted(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"")
}
