//! The examples in `examples/` stay true: every workflow parses, follows the conventions the
//! README promises (functions of type knative-workflow, `input.commands`, a single-quoted
//! `cmd\.exit\..*` catch, a timeout, `CMD_RESULT_KEY` through `envs:`), and every action's
//! `input` is a request the real runner accepts, under the function's own `envs:`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::{FakeSidecar, Runner};

/// The example folders every release ships.
const EXAMPLES: &[&str] = &["aws-cli", "bash", "python"];

/// An allow list naming no real executable: the runner accepts the request and runs nothing.
const ALLOW_NOTHING: &str = "direktiv-cmd-examples-allow-nothing";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// One example workflow: its file, raw text and parsed document.
struct Workflow {
    path: PathBuf,
    text: String,
    doc: Value,
}

/// Every `*.yaml`/`*.yml` under `examples/`, parsed.
fn workflows() -> Vec<Workflow> {
    let mut found = Vec::new();
    for example in EXAMPLES {
        let dir = examples_dir().join(example);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if !is_yaml {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read workflow");
            let doc: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            found.push(Workflow { path, text, doc });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// An action state's call: which function it uses and the input it sends.
struct Action {
    state: String,
    function: Value,
    input: Value,
}

impl Workflow {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn functions(&self) -> Vec<Value> {
        self.doc["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn states(&self) -> Vec<Value> {
        self.doc["states"].as_array().cloned().unwrap_or_default()
    }

    /// Every action state with its function definition and input.
    fn actions(&self) -> Vec<Action> {
        let functions = self.functions();
        self.states()
            .into_iter()
            .filter(|s| s["type"] == "action")
            .map(|s| {
                let id = &s["action"]["function"];
                let function = functions
                    .iter()
                    .find(|f| &f["id"] == id)
                    .cloned()
                    .unwrap_or_else(|| panic!("{}: no function {id}", self.name()));
                Action {
                    state: s["id"].as_str().unwrap_or_default().to_string(),
                    function,
                    input: s["action"]["input"].clone(),
                }
            })
            .collect()
    }
}

impl Action {
    /// The function's `envs:` as (name, value) pairs.
    fn envs(&self) -> Vec<(String, String)> {
        let envs = self.function["envs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        envs.iter()
            .map(|e| {
                let name = e["name"].as_str().expect("env name").to_string();
                let value = match &e["value"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect()
    }

    /// Where results come back: `CMD_RESULT_KEY` or `commands`.
    fn result_key(&self) -> String {
        self.envs()
            .into_iter()
            .find(|(name, _)| name == "CMD_RESULT_KEY")
            .map(|(_, value)| value)
            .unwrap_or_else(|| "commands".to_string())
    }

    fn commands(&self) -> Vec<Value> {
        self.input["commands"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Starts a runner with the function's `envs:` plus `extra`.
fn runner_for(sidecar: &FakeSidecar, action: &Action, extra: &[(&str, &str)]) -> Runner {
    let envs = action.envs();
    let mut vars: Vec<(&str, &str)> = envs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    vars.extend_from_slice(extra);
    Runner::builder().sidecar(sidecar).envs(&vars).start()
}

#[test]
fn every_example_has_an_image_a_workflow_and_a_readme() {
    for example in EXAMPLES {
        let dir = examples_dir().join(example);
        let dockerfile = std::fs::read_to_string(dir.join("Dockerfile"))
            .unwrap_or_else(|e| panic!("{example}/Dockerfile: {e}"));
        let builds_on_ours = dockerfile.lines().any(|l| {
            let l = l.trim();
            (l.starts_with("ARG") && l.contains("direktiv-cmd:"))
                || l.starts_with("COPY --from") && l.contains("/usr/local/bin/direktiv-cmd")
        });
        assert!(
            builds_on_ours,
            "{example}/Dockerfile must build FROM a direktiv-cmd image or COPY --from one"
        );
        let readme = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|e| panic!("{example}/README.md: {e}"));
        assert!(
            readme.starts_with(&format!("# {example}")),
            "{example}/README.md title"
        );
    }
    let found: Vec<String> = workflows().iter().map(Workflow::name).collect();
    for example in EXAMPLES {
        assert!(
            found
                .iter()
                .any(|w| w.contains(&format!("/examples/{example}/"))),
            "{example} has no workflow YAML: {found:?}"
        );
    }
}

#[test]
fn example_workflows_follow_the_documented_conventions() {
    for workflow in workflows() {
        let name = workflow.name();
        let functions = workflow.functions();
        assert!(!functions.is_empty(), "{name}: no functions");
        for function in &functions {
            assert_eq!(function["type"], "knative-workflow", "{name}: {function}");
            assert!(function["image"].is_string(), "{name}: {function}");
        }
        let actions = workflow.actions();
        assert!(!actions.is_empty(), "{name}: no action state");
        for action in &actions {
            assert!(
                !action.commands().is_empty(),
                "{name}: state {} has no input.commands",
                action.state
            );
            assert!(
                action.envs().iter().any(|(n, _)| n == "CMD_RESULT_KEY"),
                "{name}: function of state {} sets no CMD_RESULT_KEY in envs:",
                action.state
            );
        }
        for state in workflow.states().iter().filter(|s| s["type"] == "action") {
            let catches: Vec<&str> = state["catch"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["error"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                catches.contains(&r"cmd\.exit\..*"),
                "{name}: state {} must catch cmd\\.exit\\..*: {catches:?}",
                state["id"]
            );
        }
        // Single quotes: YAML double quotes reject `\.`.
        assert!(
            workflow.text.contains(r"- error: 'cmd\.exit\..*'"),
            "{name}: write the catch pattern in single quotes"
        );
        let has_timeout = workflow
            .actions()
            .iter()
            .flat_map(Action::commands)
            .any(|c| c.get("timeout").is_some());
        assert!(has_timeout, "{name}: no command shows a timeout");
    }
}

/// Checks one reply to a request the runner was not allowed to run anything for: refused by
/// the allow list (`cmd.denied`, which the runner checks after parsing and validating the whole
/// request), never by the input checks (`cmd.input`, 400), and nothing ran.
fn assert_accepted(name: &str, action: &Action, reply: &crate::support::Reply) {
    let context = format!("{name} state {}: {reply:?}", action.state);
    assert_ne!(reply.status, 400, "input refused: {context}");
    assert_eq!(
        reply.error_code().as_deref(),
        Some("cmd.denied"),
        "{context}"
    );
    let results = reply.body()[action.result_key()].as_array().cloned();
    let results =
        results.unwrap_or_else(|| panic!("no `{}` array: {context}", action.result_key()));
    assert!(
        results.iter().all(|r| r["success"] == false),
        "nothing may have run: {context}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn example_inputs_are_requests_the_runner_accepts() {
    for workflow in workflows() {
        for action in workflow.actions() {
            let sidecar = FakeSidecar::start();
            // The allow list stops every command before it starts: the input is parsed and
            // validated in full (files, env, timeouts, shell rules), but nothing runs.
            let runner = runner_for(&sidecar, &action, &[("CMD_ALLOW", ALLOW_NOTHING)]);
            let aid = format!("example-{}", action.state);
            let reply = sidecar.call(&runner, &aid, action.input.clone()).await;
            assert_accepted(&workflow.name(), &action, &reply);
        }
    }
}

/// The input with every command replaced by `echo <index>`, all other fields kept.
fn with_harmless_commands(input: &Value) -> Value {
    let mut input = input.clone();
    if let Some(commands) = input["commands"].as_array_mut() {
        for (i, command) in commands.iter_mut().enumerate() {
            if command.get("args").is_some() {
                command["args"] = json!(["echo", i.to_string()]);
            } else {
                command["command"] = json!(format!("echo {i}"));
            }
        }
    }
    input
}

#[tokio::test(flavor = "multi_thread")]
async fn example_inputs_run_end_to_end_with_harmless_commands() {
    for workflow in workflows() {
        for action in workflow.actions() {
            let sidecar = FakeSidecar::start();
            let runner = runner_for(&sidecar, &action, &[]);
            let aid = format!("example-run-{}", action.state);
            let input = with_harmless_commands(&action.input);
            let reply = sidecar.call(&runner, &aid, input).await;
            let context = format!("{} state {}: {reply:?}", workflow.name(), action.state);
            reply.assert_success();
            let results = reply.results_under(&action.result_key());
            let expected: Vec<Value> = (0..action.commands().len()).map(|i| json!(i)).collect();
            let got: Vec<Value> = results.iter().map(|r| r["result"].clone()).collect();
            assert_eq!(got, expected, "{context}");
        }
    }
}

/// What a Direktiv `jq(...)` template in an example gives when the workflow's data lacks the
/// field: its `// "default"`. Other values are kept.
fn with_jq_defaults(value: &Value) -> Value {
    let default = value
        .as_str()
        .and_then(|s| s.strip_prefix("jq(")?.strip_suffix(')'))
        .and_then(|expr| expr.rsplit_once("//"))
        .and_then(|(_, default)| serde_json::from_str::<Value>(default.trim()).ok());
    default.unwrap_or_else(|| value.clone())
}

/// The bash example's script, run for real: its log says `report for staging`, as a workflow
/// author expects, because `TARGET` is not a secret (README, "Secrets").
#[tokio::test(flavor = "multi_thread")]
async fn the_bash_example_logs_readable_values() {
    let workflow = workflows()
        .into_iter()
        .find(|w| w.name().ends_with("/examples/bash/workflow.yaml"))
        .expect("the bash example workflow");
    let action = workflow.actions().into_iter().next().expect("an action");
    let mut input = action.input.clone();
    if let Some(env) = input["env"].as_object_mut() {
        for value in env.values_mut() {
            *value = with_jq_defaults(value);
        }
    }
    // The script only; it prints its report line before it needs jq.
    input["commands"] = json!([action.commands()[0]]);
    let sidecar = FakeSidecar::start();
    let runner = runner_for(&sidecar, &action, &[]);
    let aid = "example-bash-report";
    let reply = sidecar.call(&runner, aid, input).await;
    let lines = sidecar.lines(aid);
    assert!(
        lines.iter().any(|l| l == "report for staging"),
        "{lines:?} {reply:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("***")), "{lines:?}");
    // The script goes on with jq (a test prerequisite, `make test-prerequisites`).
    reply.assert_success();
    let results = reply.results_under(&action.result_key());
    assert_eq!(
        results[0]["result"]["target"],
        json!("staging"),
        "{reply:?}"
    );
}

/// The talking-back example run for real (`direktiv-cmd var` from the binary under test): the
/// result from DIREKTIV_RESULT, the variable through the sidecar, the retry, and for
/// production the failure code its catch matches.
#[tokio::test(flavor = "multi_thread")]
async fn the_talking_back_example_runs_as_its_comments_say() {
    let workflow = workflows()
        .into_iter()
        .find(|w| w.name().ends_with("/examples/bash/talking-back.yaml"))
        .expect("the talking-back example workflow");
    let action = workflow.actions().into_iter().next().expect("an action");
    let sidecar = FakeSidecar::start();
    let runner = runner_for(&sidecar, &action, &[]);
    let bin_dir = crate::support::binary()
        .parent()
        .expect("the binary's folder")
        .display()
        .to_string();
    let input_for = |target: &str| {
        let mut input = action.input.clone();
        input["env"] = json!({
            "TARGET": target,
            "PATH": format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        });
        input
    };
    let reply = sidecar
        .call(&runner, "talking-back", input_for("staging"))
        .await;
    reply.assert_success();
    let results = reply.results_under(&action.result_key());
    assert_eq!(
        results[1]["result"],
        json!({"target": "staging", "healthy": true})
    );
    assert_eq!(results[3]["attempts"], 2);
    assert_eq!(
        sidecar.var("workflow", "runs").as_deref(),
        Some(&b"1\n"[..])
    );
    let reply = sidecar
        .call(&runner, "talking-back-2", input_for("production"))
        .await;
    reply.assert_error("deploy.refused", 500);
    assert_eq!(
        reply.error_message().as_deref(),
        Some("production needs an approval")
    );
    assert_eq!(
        sidecar.var("workflow", "runs").as_deref(),
        Some(&b"2\n"[..])
    );
    let caught = workflow.states()[0]["catch"][0]["error"].clone();
    assert_eq!(caught, r"deploy\.refused");
}
