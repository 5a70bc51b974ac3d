//! The real binary with generated secrets printed the way JSON writers and colourful tools
//! print them: each character as it is or `\u`-escaped (either case), `/` as `\/`, terminal
//! escape sequences anywhere inside, on stdout or stderr, as a JSON object, a JSON string, an
//! `output` file or the direktiv-cmd `Output`. Whoever reads a sink the way it is meant to be
//! read (the response parsed as JSON, a log line with its colours and escapes interpreted)
//! never finds the secret.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::derived::as_read;
use crate::support::{FakeSidecar, Reply, Runner};

/// Characters of secrets, among them those JSON writers escape.
const SECRET_CHARS: &[char] = &[
    'a', 'K', 'q', 'Z', '0', '7', '&', '<', '>', '/', '"', '\\', '-', '_', '=', '+', 'é', '€',
];

/// How the runner learns the secret.
#[derive(Debug, Clone, Copy)]
enum Source {
    Mask,
    EnvName,
    /// Declared with `::add-mask::` on stdout or on stderr (true) before it is printed.
    Declared(bool),
}

/// Where a command prints the secret.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// `{"k":"…"}` on stdout: `result` is JSON.
    JsonObject,
    /// `"…"` on stdout: `result` is a JSON string.
    JsonString,
    /// On stderr, before failing: the error message's tail.
    Stderr,
    /// In the `output` file: `result` from the file.
    OutputFile,
}

/// One character of the secret as printed.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Raw,
    Escaped {
        upper: bool,
    },
    /// `\/` for `/` (PHP); other characters as they are.
    Slash,
}

#[derive(Debug, Clone)]
struct Case {
    secret: String,
    source: Source,
    spellings: Vec<Spelling>,
    /// Before which characters a colour escape is printed (indexes into the secret's chars).
    colours: Vec<usize>,
    places: Vec<Place>,
    direktiv_cmd: bool,
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(proptest::sample::select(SECRET_CHARS), 10..28)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_flat_map(|secret| {
            let count = secret.chars().count();
            let spelling = prop_oneof![
                Just(Spelling::Raw),
                any::<bool>().prop_map(|upper| Spelling::Escaped { upper }),
                Just(Spelling::Slash),
            ];
            let source = prop_oneof![
                Just(Source::Mask),
                Just(Source::EnvName),
                any::<bool>().prop_map(Source::Declared),
            ];
            let place = prop_oneof![
                Just(Place::JsonObject),
                Just(Place::JsonString),
                Just(Place::Stderr),
                Just(Place::OutputFile),
            ];
            (
                Just(secret),
                source,
                proptest::collection::vec(spelling, count),
                proptest::collection::vec(0..count, 0..3),
                proptest::collection::vec(place, 1..4),
                any::<bool>(),
            )
        })
        .prop_map(
            |(secret, source, spellings, colours, places, direktiv_cmd)| Case {
                secret,
                source,
                spellings,
                colours,
                places,
                direktiv_cmd,
            },
        )
}

impl Case {
    /// The secret inside a JSON string, spelt and coloured as generated.
    fn printed(&self) -> String {
        let mut out = String::new();
        for (i, (c, spelling)) in self.secret.chars().zip(&self.spellings).enumerate() {
            if self.colours.contains(&i) {
                out.push_str("\u{1b}[3");
                out.push(char::from(b'0' + (i % 8) as u8));
                out.push('m');
            }
            let must_escape = matches!(c, '"' | '\\');
            match (spelling, c) {
                (Spelling::Slash, '/') => out.push_str("\\/"),
                (Spelling::Escaped { upper }, c) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        match upper {
                            true => out.push_str(&format!("\\u{unit:04X}")),
                            false => out.push_str(&format!("\\u{unit:04x}")),
                        }
                    }
                }
                _ if must_escape => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out
    }

    fn commands(&self) -> Vec<Value> {
        let printed = self.printed();
        let mut commands = Vec::new();
        if let Source::Declared(on_stderr) = self.source {
            let redirect = if on_stderr { " >&2" } else { "" };
            commands.push(json!({
                "args": ["sh", "-c", format!("printf '::add-mask::%s\\n' \"$1\"{redirect}"),
                         "sh", self.secret],
                "print": false
            }));
        }
        for place in &self.places {
            let (script, text) = match place {
                Place::JsonObject => ("printf '%s\\n' \"$1\"", format!(r#"{{"k":"{printed}"}}"#)),
                Place::JsonString => ("printf '%s\\n' \"$1\"", format!(r#""{printed}""#)),
                Place::Stderr => ("printf '%s\\n' \"$1\" >&2; exit 3", printed.clone()),
                Place::OutputFile => ("printf '%s' \"$1\" > out.json", format!(r#"["{printed}"]"#)),
            };
            let mut command = json!({
                "args": ["sh", "-c", script, "sh", text],
                "print": false,
                "continue": true
            });
            if let Place::OutputFile = place {
                command["output"] = json!("out.json");
            }
            commands.push(command);
        }
        commands
    }

    fn request(&self) -> Value {
        let (mask, env) = match self.source {
            Source::Mask => (json!([self.secret]), json!({})),
            Source::EnvName => (json!([]), json!({"SERVICE_API_KEY": self.secret})),
            Source::Declared(_) => (json!([]), json!({})),
        };
        match self.direktiv_cmd {
            false => json!({"mask": mask, "env": env, "commands": self.commands()}),
            true => {
                let commands: Vec<Value> = self
                    .commands()
                    .into_iter()
                    .map(|mut command| {
                        command["stop"] = json!(false);
                        if let Some(map) = command.as_object_mut() {
                            map.remove("continue");
                        }
                        command
                    })
                    .collect();
                let envs: Vec<Value> = env
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect();
                json!({"mask": mask, "data": {"commands": commands}, "envs": envs})
            }
        }
    }
}

/// Every text of a reply as read: header values, and every string, key and number of the
/// body once parsed, colours and escapes interpreted.
fn reply_texts(reply: &Reply) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(map) => map.iter().for_each(|(key, item)| {
                out.push(key.clone());
                walk(item, out);
            }),
            _ => {}
        }
    }
    let mut texts: Vec<String> = reply
        .headers
        .iter()
        .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    match &reply.json {
        Some(body) => walk(body, &mut texts),
        None => texts.push(reply.text.clone()),
    }
    texts.iter().map(|text| as_read(text)).collect()
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let sidecar = FakeSidecar::start();
        let runner = Runner::start(&sidecar);
        let reply = sidecar.call(&runner, "derived", case.request()).await;
        prop_assert!(
            reply.status < 500 || reply.error_code().is_some(),
            "{:?}",
            reply
        );
        let mut texts = reply_texts(&reply);
        texts.extend(sidecar.lines("derived").iter().map(|line| as_read(line)));
        for text in &texts {
            prop_assert!(
                !text.contains(&case.secret),
                "{:?} shows the secret: {:?}\n{}",
                case,
                text,
                reply.text
            );
        }
        Ok(())
    })
}

proptest! {
    // Each case starts a runner and runs one request.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_decoded_sink_shows_a_secret(case in case()) {
        run_case(&case)?;
    }
}
