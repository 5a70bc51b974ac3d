//! The forms in which a secret value can show up in output, each of which is masked.
//!
//! A command rarely prints a secret only as it was given: it base64-encodes it into an
//! `Authorization: Basic` header, URL-encodes it into a query string, prints it inside JSON, and
//! the runner itself shell-quotes it when it echoes `args`. Each such form is a pattern of its
//! own; the masker replaces any of them.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD, PAD};
use base64::Engine;

use super::MIN_SECRET_LEN;

/// Shortest base64 fragment that is masked. A base64 run is random-looking text in a 64-letter
/// alphabet: one of 4 characters turns up by chance about once in 16 million positions of
/// base64 data, so a megabyte-sized base64 payload (a certificate, a file in `result`) would be
/// corrupted by a `***` every few requests. At 6 characters that is once in 68 billion. Only a
/// 4-byte secret has shorter fragments; its whole encoding (`echo -n abcd | base64`) is still
/// masked.
const MIN_BASE64_LEN: usize = 6;

/// Shortest line of a multi-line secret that is a pattern of its own, trimmed. Shorter lines
/// are boilerplate (a kubeconfig's `apiVersion: v1`, `- name: admin`, a PEM's `-----END`
/// lines are all shorter): masked, they would shred every other YAML or key a command prints,
/// and alone they give nothing away. The whole value is masked whatever its lines.
pub(super) const MIN_LINE_LEN: usize = 16;

/// Calls `add` with every form of `secret` worth masking: the value itself, each line of a
/// multi-line value (`MIN_LINE_LEN`), and the encoded forms of each of those. Forms may repeat
/// (the caller removes duplicates); values shorter than `MIN_SECRET_LEN` bytes give nothing.
pub(super) fn forms_of(secret: &str, add: &mut impl FnMut(Vec<u8>)) {
    for value in values_of(secret) {
        add(value.as_bytes().to_vec());
        add(json_escaped(value).into_bytes());
        if !value.is_ascii() {
            add(json_escaped_ascii(value).into_bytes());
        }
        add(url_encoded(value).into_bytes());
        // The runner prints `args` with shell-words quoting, where `'` inside single quotes
        // becomes `'\''`.
        add(value.replace('\'', r"'\''").into_bytes());
        // The same value written inside double quotes in a `command` (`"p4ss\"w0rd"`).
        add(value.replace('\\', r"\\").replace('"', "\\\"").into_bytes());
        base64_forms(value.as_bytes(), add);
    }
}

/// The value, and each line of it when it has several (a PEM key is logged a line at a time,
/// and each line is a message of its own). Lines are trimmed: indentation is not secret.
fn values_of(secret: &str) -> impl Iterator<Item = &str> {
    let lines = secret
        .contains(['\n', '\r'])
        .then(|| secret.split(['\n', '\r']).map(str::trim))
        .into_iter()
        .flatten()
        .filter(|line| line.len() >= MIN_LINE_LEN);
    std::iter::once(secret)
        .filter(|value| value.len() >= MIN_SECRET_LEN)
        .chain(lines)
}

/// As `serde_json` writes the value inside a JSON string (without the quotes): `"`, `\` and
/// control characters escaped.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'));
    inner.unwrap_or(&quoted).to_owned()
}

/// As JSON writers that keep their output ASCII write it (Python's `json.dumps` by default):
/// every non-ASCII character as `\uXXXX` (lowercase hex, UTF-16 surrogate pairs beyond U+FFFF).
fn json_escaped_ascii(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in json_escaped(value).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Percent-encoding: every byte outside RFC 3986's unreserved set as `%XX`, uppercase hex.
fn url_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Base64 forms in the standard and URL-safe alphabets.
///
/// Inside a longer encoded text (`base64("user:" + password)`), how the value's bytes fall on
/// base64 characters depends on how many bytes precede it, modulo 3. For each of those three
/// alignments, the characters that encode bits of the value alone are the same whatever comes
/// before or after; the one or two characters at each end that mix in neighbouring bits are
/// left out. The value encoded on its own, with and without `=` padding, is added whole.
fn base64_forms(value: &[u8], add: &mut impl FnMut(Vec<u8>)) {
    for alphabet in [&alphabet::STANDARD, &alphabet::URL_SAFE] {
        let unpadded = GeneralPurpose::new(alphabet, NO_PAD);
        for offset in 0..3 {
            let core = aligned_core(&unpadded, value, offset);
            if core.len() >= MIN_BASE64_LEN {
                add(core.into_bytes());
            }
        }
        add(unpadded.encode(value).into_bytes());
        add(GeneralPurpose::new(alphabet, PAD)
            .encode(value)
            .into_bytes());
    }
}

/// The characters of `value`'s encoding, after `offset` bytes of something else, that depend on
/// the value alone.
fn aligned_core(engine: &GeneralPurpose, value: &[u8], offset: usize) -> String {
    let mut shifted = vec![0u8; offset];
    shifted.extend_from_slice(value);
    let encoded = engine.encode(&shifted);
    // Character k holds bits [6k, 6k + 6); the value's bits are [8 * offset, 8 * (offset + n)).
    let first = (8 * offset).div_ceil(6);
    let end = (8 * shifted.len()) / 6;
    encoded.get(first..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
pub(super) fn all_forms(secret: &str) -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    forms_of(secret, &mut |form| {
        if !forms.contains(&form) {
            forms.push(form);
        }
    });
    forms
}
