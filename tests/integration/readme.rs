//! The README's examples, run against the real binary: the quick start's `curl` request, the
//! `run -` example and the response format. The output must have the shape the README shows
//! (the same keys, the same types, the same values wherever they are deterministic), so the
//! README cannot drift from what the runner does.

use std::path::Path;
use std::time::Duration;

use crate::support::{FakeSidecar, Runner};
use serde_json::Value;

/// Keys whose values differ from run to run; only their keys and types are compared.
const VARYING: &[&str] = &["duration_ms", "usage"];

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(path).expect("README.md")
}

/// The fenced code blocks of a Markdown text: (info string, content).
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, content)), None) => {
                content.push_str(line);
                content.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The `json` block right after the first `sh` block containing `needle`, with that `sh` block.
fn example(needle: &str) -> (String, Value) {
    let blocks = code_blocks(&readme());
    let at = blocks
        .iter()
        .position(|(info, content)| info == "sh" && content.contains(needle))
        .unwrap_or_else(|| panic!("the README has a sh block with {needle:?}"));
    let (info, shown) = blocks
        .get(at + 1)
        .unwrap_or_else(|| panic!("the README shows the output of {needle:?}"));
    assert_eq!(
        info, "json",
        "the block after {needle:?} shows its JSON output"
    );
    let shown = serde_json::from_str(shown)
        .unwrap_or_else(|e| panic!("the README's output of {needle:?} is JSON ({e}): {shown}"));
    (blocks[at].1.clone(), shown)
}

/// Every single-quoted argument following `flag` in a shell command line.
fn quoted_after(command: &str, flag: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = command;
    while let Some(at) = rest.find(&format!("{flag} '")) {
        let start = at + flag.len() + 2;
        let end = rest[start..]
            .find('\'')
            .map(|end| start + end)
            .expect("a closing quote");
        found.push(rest[start..end].to_owned());
        rest = &rest[end + 1..];
    }
    found
}

/// Asserts that `actual` has the shape of `shown`: the same keys and array lengths, the same
/// types, and equal values except under the keys in [`VARYING`].
#[track_caller]
fn assert_shape(shown: &Value, actual: &Value, path: &str, compare_values: bool) {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            let shown_keys: Vec<_> = shown.keys().collect();
            let actual_keys: Vec<_> = actual.keys().collect();
            assert_eq!(shown_keys, actual_keys, "keys of {path}");
            for (key, value) in shown {
                let compare = compare_values && !VARYING.contains(&key.as_str());
                assert_shape(value, &actual[key], &format!("{path}.{key}"), compare);
            }
        }
        (Value::Array(shown), Value::Array(actual)) => {
            if compare_values {
                assert_eq!(shown.len(), actual.len(), "length of {path}");
            }
            for (i, (shown, actual)) in shown.iter().zip(actual).enumerate() {
                assert_shape(shown, actual, &format!("{path}[{i}]"), compare_values);
            }
        }
        _ => {
            assert_eq!(
                std::mem::discriminant(shown),
                std::mem::discriminant(actual),
                "type of {path}: the README shows {shown}, the runner answers {actual}"
            );
            if compare_values {
                assert_eq!(shown, actual, "value of {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_curl_example_answers_as_shown() {
    let (command, shown) = example("curl ");
    let headers: Vec<(String, String)> = quoted_after(&command, "-H")
        .iter()
        .map(|header| {
            let (name, value) = header.split_once(':').expect("Name: value");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let data = quoted_after(&command, "-d");
    assert_eq!(data.len(), 1, "one -d body in {command}");
    assert!(
        command.contains("localhost:8080/"),
        "the example talks to the default port: {command}"
    );

    // `make run`: development mode, as the quick start starts it.
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, &[("DIREKTIV_DEV_MODE", "1")]);
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let reply = runner.post(data[0].as_str(), &header_refs).await;
    reply.assert_success();
    assert_shape(&shown, reply.body(), "body", true);
}

#[test]
fn the_run_example_answers_as_shown() {
    let (command, shown) = example("direktiv-cmd run -");
    let request = quoted_after(&command, "echo");
    assert_eq!(request.len(), 1, "one request piped into run: {command}");
    let finished = Runner::builder()
        .arg("run")
        .arg("-")
        .run_to_exit(request[0].as_bytes(), Duration::from_secs(30));
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    let actual: Value = serde_json::from_str(&finished.stdout).expect("response JSON on stdout");
    assert_shape(&shown, &actual, "body", true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_format_has_the_keys_and_types_shown() {
    let blocks = code_blocks(&readme());
    let shown = blocks
        .iter()
        .filter(|(info, _)| info == "json")
        .filter_map(|(_, content)| serde_json::from_str::<Value>(content).ok())
        .find(|value| value["commands"][0]["command"] == "aws --version")
        .expect("the README's response format example");
    let sidecar = FakeSidecar::start();
    let runner = Runner::start(&sidecar);
    let reply = sidecar
        .call(
            &runner,
            "readme",
            serde_json::json!({"command": "echo shape"}),
        )
        .await;
    reply.assert_success();
    // `aws` is not installed here: keys and types only.
    assert_shape(&shown, reply.body(), "body", false);
}

/// The commands the README's "Talking back" section shows (`errors`, `retry`) are commands the
/// runner accepts: sent with a harmless program, every other field kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_talking_back_commands_are_accepted() {
    let readme = readme();
    let section = readme
        .split("\n## Talking back\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's Talking back section");
    let commands: Vec<Value> = code_blocks(section)
        .into_iter()
        .filter(|(info, _)| info == "json")
        .map(|(_, text)| serde_json::from_str(&text).expect("a JSON command"))
        .collect();
    assert_eq!(commands.len(), 2, "the errors and retry examples");
    let sidecar = FakeSidecar::start();
    let runner = Runner::start(&sidecar);
    for mut command in commands {
        command["command"] = Value::from("true");
        let body = serde_json::json!({ "commands": [command] });
        let reply = sidecar.call(&runner, "readme-talking-back", body).await;
        reply.assert_success();
    }
}
