//! Masking holds for what is derived from output, not only for the bytes as printed: `result`
//! after JSON decoding (Go's `\u0026`, `\u0053`, PHP's `\/`) and after ANSI stripping, a
//! top-level JSON string, the `output` file's result, direktiv-cmd's `Output`; and a reader of
//! the logs or of `stdout` who decodes them sees no secret either.

use serde_json::{json, Value};

use super::{assert_hidden, call};
use crate::support::strip_ansi;

/// A secret with the characters JSON writers escape (`&`, `<`, `>`, `/`).
const SECRET: &str = "p&ss<w0rd>Xy9/Sup";

/// `SECRET` as Go's `json.Marshal` writes it inside a string, `/` as PHP writes it, and an `S`
/// written as a `\u` escape for no reason at all.
const ESCAPED: &str = r"p\u0026ss\u003cw0rd\u003eXy9\/\u0053up";

/// Every string of a JSON value, keys included.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v)))
            .collect(),
        other => vec![other.to_string()],
    }
}

/// `text` as a reader sees it who strips colours and decodes JSON string escapes.
pub(super) fn as_read(text: &str) -> String {
    let plain = strip_ansi(text);
    let mut out = String::new();
    let mut chars = plain.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => out.push_str(&format!("\\u{hex}")),
                }
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn json_escapes_do_not_bring_a_secret_back_in_result() {
    let body = json!({
        "env": {"DB_PASSWORD": SECRET},
        "commands": [
            {"args": ["printf", "%s", format!(r#"{{"password":"{ESCAPED}"}}"#)], "print": false},
            {"args": ["printf", "%s", format!(r#""{ESCAPED}""#)], "print": false},
            {"args": ["printf", "%s", format!(r#"[1, {{"nested": ["{ESCAPED}"]}}]"#)],
             "print": false},
            {"command": format!(r#"printf '%s' '{{"{ESCAPED}": 1}}' > out.json"#), "shell": true,
             "output": "out.json", "print": false}
        ]
    });
    let (reply, lines) = call("decoded", body).await;
    reply.assert_success();
    let results = reply.results();
    assert_eq!(results[0], json!({"password": "***"}));
    assert_eq!(results[1], json!("***"));
    assert_eq!(results[2], json!([1, {"nested": ["***"]}]));
    assert_eq!(results[3], json!({"***": 1}));
    let shown: Vec<String> = strings(reply.body()).iter().map(|s| as_read(s)).collect();
    assert_hidden(&shown, &[SECRET]);
    let read: Vec<String> = lines.iter().map(|line| as_read(line)).collect();
    assert_hidden(&read, &[SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_escapes_do_not_bring_a_secret_back_in_the_direktiv_cmd_output() {
    let body = json!({"data": {"commands": [{
        "command": format!(r#"printf '%s' '{{"password":"{ESCAPED}"}}'"#),
        "envs": [{"name": "DB_PASSWORD", "value": SECRET}]
    }]}});
    let (reply, _) = call("decoded-dcmd", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body()[0]["Output"], json!({"password": "***"}));
    let shown: Vec<String> = strings(reply.body()).iter().map(|s| as_read(s)).collect();
    assert_hidden(&shown, &[SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escape_sequence_inside_a_secret_does_not_rebuild_it() {
    let secret = "Sup3r-s3cret-Val";
    let body = json!({
        "mask": [secret],
        "commands": [
            {"command": r"printf 'Sup3r-s3\033[0mcret-Val\n'", "shell": true, "print": false},
            {"command": r#"printf '\033[1m{"k": "Sup3r-\033[0ms3cret-Val"}\n'"#, "shell": true,
             "print": false},
            {"command": r"printf 'Sup3r-s3\033[31mcret-Val\n' >&2; exit 3", "shell": true,
             "print": false}
        ]
    });
    let (reply, lines) = call("ansi", body).await;
    reply.assert_error("cmd.exit.3", 500);
    assert_eq!(reply.command(0)["result"], json!("***"));
    assert_eq!(reply.command(1)["result"], json!({"k": "***"}));
    let shown: Vec<String> = strings(reply.body()).iter().map(|s| as_read(s)).collect();
    assert_hidden(&shown, &[secret]);
    let header = reply.error_message().unwrap_or_default();
    assert_hidden([&as_read(&header)], &[secret]);
    let read: Vec<String> = lines.iter().map(|line| as_read(line)).collect();
    assert_hidden(&read, &[secret]);
    assert!(read.iter().any(|l| l == "***"), "{read:?}");
}
