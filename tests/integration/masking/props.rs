//! The real binary with generated secrets: each given one of the four ways a secret is known
//! (`mask`, an env name that looks secret, `"secret": true`, `::add-mask::`), printed in every
//! form between other output, written in pieces of random size, kept in the response up to a
//! random `CMD_MAX_OUTPUT`, in development mode or not. No sink may show the secret or any
//! 8-byte piece of any of its forms: the sidecar's log, the response body and headers, and the
//! runner's own stdout and stderr.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::forms::{fragments, leaked, render, Form};
use crate::support::{FakeSidecar, Reply, Runner};

/// Characters of secrets: letters, digits, quotes, backslashes, base64 and URL specials,
/// multi-byte characters, spaces and line breaks.
const SECRET_CHARS: &[char] = &[
    'a', 'b', 'k', 'Z', 'Q', '0', '7', '\'', '"', '\\', '/', '+', '=', '%', '-', '_', '.', '~',
    '$', '&', ' ', 'é', 'ü', '€', '😀', '\n',
];

/// Characters of the output around secrets: none occurs in any form of a secret, so a piece of
/// a form found in a sink is a leak, never a coincidence.
const FILLER_CHARS: &[char] = &[
    ',', ';', ':', '!', '#', '(', ')', '[', ']', '{', '}', '|', '@', '^', '<', '>', '?',
];

/// How the runner learns that a value is secret.
#[derive(Debug, Clone, Copy)]
enum Source {
    Mask,
    /// An env variable whose name contains SECRET.
    EnvName,
    /// An `envs` entry with `"secret": true`.
    Marked,
    /// A `::add-mask::` line the command prints before anything else.
    Declared,
}

#[derive(Debug, Clone)]
struct Case {
    secrets: Vec<(String, Source)>,
    /// Secret (by index), its form, and the output before it.
    items: Vec<(usize, Form, String)>,
    /// Output after the last secret: long enough at times to move secrets out of the tail.
    trailer: usize,
    max_output: usize,
    write_size: usize,
    development: bool,
}

fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(SECRET_CHARS), 4..40)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_filter("a line worth masking", |s| {
            s.split('\n').any(|line| line.trim().len() >= 4)
        })
        // A line of a multi-line secret is masked on its own from 16 bytes on (shorter ones
        // are boilerplate; `derived::short_lines_of_a_secret_stay_readable`).
        .prop_filter("lines masked on their own", |s| {
            !s.contains('\n')
                || s.split('\n')
                    .all(|l| l.trim().is_empty() || l.trim().len() >= 16)
        })
}

fn source_for(secret: &str) -> BoxedStrategy<Source> {
    // A declaration is one line, and its value is what is left after trimming.
    if secret.contains('\n') || secret.trim() != secret {
        prop_oneof![
            Just(Source::Mask),
            Just(Source::EnvName),
            Just(Source::Marked)
        ]
        .boxed()
    } else {
        prop_oneof![
            Just(Source::Mask),
            Just(Source::EnvName),
            Just(Source::Marked),
            Just(Source::Declared)
        ]
        .boxed()
    }
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Plain),
        Just(Form::Json),
        Just(Form::AsciiJson),
        Just(Form::Url),
        Just(Form::ShellArg),
        Just(Form::DoubleQuoted),
        (0..5usize, 0..5usize, any::<bool>(), any::<bool>()).prop_map(
            |(before, after, url_safe, pad)| Form::Base64 {
                before,
                after,
                url_safe,
                pad
            }
        ),
        Just(Form::Lines),
    ]
}

fn filler(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(FILLER_CHARS), 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(
        secret().prop_flat_map(|s| (Just(s.clone()), source_for(&s))),
        1..4,
    )
    .prop_flat_map(|secrets| {
        let count = secrets.len();
        let item = (0..count, form(), filler(400));
        (
            Just(secrets),
            proptest::collection::vec(item, 1..8),
            prop_oneof![0..200usize, 3000..9000usize],
            64..3000usize,
            1..300usize,
            any::<bool>(),
        )
    })
    .prop_map(
        |(secrets, items, trailer, max_output, write_size, development)| Case {
            secrets,
            items,
            trailer,
            max_output,
            write_size,
            development,
        },
    )
}

impl Case {
    /// What the command prints: declarations first, then the secrets in their forms.
    fn output(&self) -> String {
        let mut out = String::new();
        for (secret, source) in &self.secrets {
            if let Source::Declared = source {
                out.push_str(&format!("::add-mask::{secret}\n"));
            }
        }
        for (index, form, before) in &self.items {
            out.push_str(before);
            out.push_str(&render(&self.secrets[*index].0, form));
            out.push('\n');
        }
        out.push_str(&"?".repeat(self.trailer));
        out
    }

    fn request(&self) -> Value {
        let mut mask = Vec::new();
        let mut env = Map::new();
        let mut envs = Vec::new();
        for (i, (secret, source)) in self.secrets.iter().enumerate() {
            match source {
                Source::Mask => mask.push(json!(secret)),
                Source::EnvName => {
                    env.insert(format!("MY_SECRET_{i}"), json!(secret));
                }
                Source::Marked => envs
                    .push(json!({"name": format!("PLAIN_{i}"), "value": secret, "secret": true})),
                Source::Declared => {}
            }
        }
        // A secret known before the command runs also shows in its echoed argv.
        let shown = self
            .secrets
            .iter()
            .find(|(_, source)| !matches!(source, Source::Declared))
            .map_or("none", |(secret, _)| secret.as_str());
        let script = "dd bs=\"$0\" status=none | tee /dev/stderr; exit 3";
        json!({
            "mask": mask,
            "env": env,
            "envs": envs,
            "commands": [{
                "args": ["sh", "-c", script, self.write_size.to_string(), shown],
                "stdin": self.output()
            }]
        })
    }
}

/// Every text a sink of the response holds: header values, and each string (and number) of
/// the JSON body as the workflow reads it.
fn response_texts(reply: &Reply) -> Vec<(String, String)> {
    fn walk(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::String(s) => out.push((path.to_owned(), s.clone())),
            Value::Number(n) => out.push((path.to_owned(), n.to_string())),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), out);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    out.push((format!("{path} key"), key.clone()));
                    walk(item, &format!("{path}.{key}"), out);
                }
            }
            _ => {}
        }
    }
    let mut texts: Vec<(String, String)> = reply
        .headers
        .iter()
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (format!("header {name}"), text)
        })
        .collect();
    match &reply.json {
        Some(body) => walk(body, "body", &mut texts),
        None => texts.push(("body".into(), reply.text.clone())),
    }
    texts
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let sidecar = FakeSidecar::start();
        let runner = Runner::builder()
            .sidecar(&sidecar)
            .env("CMD_MAX_OUTPUT", &case.max_output.to_string())
            .env("RUST_LOG", "direktiv_cmd=trace")
            .start();
        let aid = if case.development {
            "development"
        } else {
            "props"
        };
        let reply = sidecar.call(&runner, aid, case.request()).await;
        let code = reply.error_code();
        prop_assert_eq!(code.as_deref(), Some("cmd.exit.3"), "{:?}", reply);
        // Everything the runner printed, until it exited: development-mode lines reach its
        // stdout as the command prints them.
        let runner_output = runner.stop();
        let logged = if case.development {
            &runner_output.stdout
        } else {
            &sidecar.lines(aid)
        };
        prop_assert!(
            logged.iter().any(|l| l.starts_with("running command ")),
            "the command's lines must reach {}: {:?}",
            if case.development {
                "stdout"
            } else {
                "the sidecar"
            },
            logged
        );

        let secrets: Vec<&str> = case.secrets.iter().map(|(s, _)| s.as_str()).collect();
        let pieces = fragments(&secrets);
        let mut sinks: Vec<(String, String)> = response_texts(&reply);
        sinks.extend(
            sidecar
                .lines(aid)
                .into_iter()
                .map(|l| ("log".to_owned(), l)),
        );
        sinks.extend(
            runner_output
                .stdout
                .into_iter()
                .map(|l| ("runner stdout".to_owned(), l)),
        );
        sinks.extend(
            runner_output
                .stderr
                .into_iter()
                .map(|l| ("runner stderr".to_owned(), l)),
        );
        for (sink, text) in &sinks {
            if let Some(piece) = leaked(text.as_bytes(), &pieces) {
                prop_assert!(
                    false,
                    "{:?} leaked in {}: {:?}",
                    String::from_utf8_lossy(piece),
                    sink,
                    text
                );
            }
        }
        Ok(())
    })
}

proptest! {
    // Each case starts a runner and runs one request: a few seconds in all.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_sink_shows_a_piece_of_a_secret(case in case()) {
        run_case(&case)?;
    }
}
