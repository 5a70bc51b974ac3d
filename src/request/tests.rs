//! The parsing rules of both request shapes, end to end through `parse`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::parse;
use crate::error::Failure;
use crate::plan::{CommandSpec, Dialect, FieldPath, InputFile, Plan, Program};

fn plan(body: Value) -> Plan {
    match parse(body.to_string().as_bytes()) {
        Ok(plan) => plan,
        Err(e) => panic!("{body} was refused: {e}"),
    }
}

fn command(body: Value) -> CommandSpec {
    let mut plan = plan(body);
    assert_eq!(plan.commands.len(), 1);
    plan.commands.remove(0)
}

/// The `cmd.input` message for a body that must be refused.
fn refused(body: Value) -> String {
    refused_bytes(body.to_string().as_bytes())
}

fn refused_bytes(body: &[u8]) -> String {
    match parse(body) {
        Err(Failure::Input(message)) => message,
        Err(other) => panic!("refused with a non-input failure: {other:?}"),
        Ok(plan) => panic!("accepted: {plan:?}"),
    }
}

fn argv(words: &[&str]) -> Program {
    Program::Argv(words.iter().map(|w| w.to_string()).collect())
}

fn file(body: Value) -> InputFile {
    let mut plan = plan(json!({"commands": [], "files": [body]}));
    plan.files.remove(0)
}

fn file_refused(body: Value) -> String {
    refused(json!({"commands": [], "files": [body]}))
}

// --- shapes -------------------------------------------------------------------------------

#[test]
fn native_shape_with_defaults() {
    let plan = plan(json!({"commands": [{"command": "ls -l"}]}));
    assert_eq!(plan.dialect, Dialect::Native);
    assert!(plan.files.is_empty() && plan.env.is_empty() && plan.secrets.is_empty());
    assert_eq!(
        plan.commands,
        [CommandSpec {
            display: "ls -l".into(),
            program: argv(&["ls", "-l"]),
            env: vec![],
            stdin: None,
            workdir: None,
            timeout: None,
            silent: false,
            print: true,
            continue_on_error: false,
            output: None,
            limits: Default::default(),
            errors: vec![],
            retry: None,
        }]
    );
}

#[test]
fn direktiv_cmd_shape_continues_after_failures_by_default() {
    let plan = plan(json!({
        "files": [{"name": "run.sh", "content": "echo hi", "permission": 493}],
        "data": {"commands": [
            {"command": "bash run.sh"},
            {"command": "false", "stop": true, "suppress_command": true, "suppress_output": true,
             "envs": [{"name": "A", "value": "b"}]}
        ]}
    }));
    assert_eq!(plan.dialect, Dialect::DirektivCmd);
    assert_eq!(plan.files[0].data, b"echo hi");
    assert_eq!(plan.files[0].mode, 0o755);
    let (first, second) = (&plan.commands[0], &plan.commands[1]);
    assert!(first.continue_on_error && first.print && !first.silent);
    assert!(!second.continue_on_error && !second.print && second.silent);
    assert_eq!(second.env, [("A".to_string(), "b".to_string())]);
}

#[test]
fn direktiv_cmd_shape_takes_every_native_command_field() {
    let spec = command(json!({"data": {"commands": [
        {"args": ["echo", "a b"], "timeout": "5m", "workdir": "w", "continue": false}
    ]}}));
    assert_eq!(spec.program, argv(&["echo", "a b"]));
    assert_eq!(spec.display, "echo 'a b'");
    assert_eq!(spec.timeout, Some(Duration::from_secs(300)));
    assert_eq!(
        spec.workdir,
        Some(FieldPath {
            path: PathBuf::from("w"),
            field: "data.commands[0].workdir".into()
        })
    );
    assert!(!spec.continue_on_error);
}

#[test]
fn an_unrelated_data_object_beside_native_commands_stays_native() {
    let plan = plan(json!({"data": {"user": 1}, "commands": [{"command": "true"}]}));
    assert_eq!(plan.dialect, Dialect::Native);
    let message = refused(json!({"data": {"user": 1}}));
    assert!(
        message.starts_with("data.commands: is missing"),
        "{message}"
    );
}

#[test]
fn commands_in_both_shapes_at_once_are_refused() {
    for body in [
        json!({"data": {"commands": []}, "commands": []}),
        json!({"data": {"commands": []}, "command": "ls"}),
    ] {
        let message = refused(body);
        assert!(message.contains("both in \"data.commands\""), "{message}");
    }
}

#[test]
fn top_level_command_is_shorthand_for_one_command() {
    let plan = plan(json!({"command": "echo hi", "timeout": 3, "env": {"TOKEN": "abcd"}}));
    assert_eq!(plan.dialect, Dialect::Native);
    assert_eq!(plan.commands[0].program, argv(&["echo", "hi"]));
    assert_eq!(plan.commands[0].timeout, Some(Duration::from_secs(3)));
    assert!(
        plan.commands[0].env.is_empty(),
        "its env belongs to the request"
    );
    assert_eq!(plan.env, [("TOKEN".to_string(), "abcd".to_string())]);
    let message = refused(json!({"command": "a", "commands": []}));
    assert!(
        message.contains("both \"commands\" and \"command\""),
        "{message}"
    );
}

#[test]
fn empty_commands_is_valid_and_runs_nothing() {
    assert!(plan(json!({"commands": []})).commands.is_empty());
    assert!(plan(json!({"data": {"commands": []}})).commands.is_empty());
}

// --- unknown fields -------------------------------------------------------------------------

#[test]
fn unknown_top_level_fields_are_run_with_one_warning() {
    // direktiv-apps functions get fields of their own beside `commands`; state data passes.
    let apps = plan(json!({
        "access-key": "x", "awsRegion": "eu", "state": {"anything": [1, 2]},
        "timeout": 5,
        "commands": [{"command": "true"}]
    }));
    assert_eq!(apps.commands[0].program, argv(&["true"]));
    assert_eq!(
        apps.warning.as_deref(),
        Some(
            "ignored unknown fields: access-key, awsRegion, state, timeout (a field of a command)"
        )
    );
    assert_eq!(plan(json!({"commands": []})).warning, None);
}

#[test]
fn many_ignored_fields_are_counted_after_the_first_ten() {
    let mut body = serde_json::Map::new();
    for i in 0..25 {
        body.insert(format!("app_field_{i:02}"), json!(i));
    }
    body.insert("commands".into(), json!([]));
    let warning = plan(Value::Object(body)).warning.unwrap_or_default();
    assert!(warning.contains("app_field_09") && !warning.contains("app_field_10"));
    assert!(warning.ends_with(" and 15 more"), "{warning}");
}

#[test]
fn unknown_fields_of_a_native_command_are_refused_with_the_field_meant() {
    for (field, meant) in [
        ("timout", "timeout"),
        ("shel", "shell"),
        ("silnet", "silent"),
        ("Workdir", "workdir"),
        ("suppressOutput", "suppress_output"),
    ] {
        let body = json!({"commands": [{"command": "true", field: "5s"}]});
        let message = refused(body);
        assert!(
            message.starts_with(&format!(
                "commands[0].{field}: is not a field of a command; did you mean \"{meant}\"?"
            )),
            "{message}"
        );
        assert!(
            message.contains("the fields of a command are command, args,"),
            "{message}"
        );
    }
    let message = refused(json!({"commands": [{"command": "true", "comment": "x"}]}));
    assert!(
        message.starts_with("commands[0].comment: is not a field of a command; the fields"),
        "{message}"
    );
}

#[test]
fn the_single_command_shorthand_refuses_typos_at_the_top_level() {
    let message = refused(json!({"command": "echo hi", "timout": "5s"}));
    assert_eq!(
        message,
        "timout: is not a field of the request; did you mean \"timeout\"?"
    );
    // Other unknown fields are the top level's: said, not refused.
    let plan = plan(json!({"command": "echo hi", "state": 1}));
    assert_eq!(
        plan.warning.as_deref(),
        Some("ignored unknown field: state")
    );
}

#[test]
fn typos_of_request_fields_are_refused_too() {
    for (field, meant) in [("maks", "mask"), ("fiels", "files"), ("Envs", "envs")] {
        let message = refused(json!({"commands": [], field: []}));
        assert!(
            message.starts_with(&format!(
                "{field}: is not a field of the request; did you mean \"{meant}\"?"
            )),
            "{message}"
        );
    }
}

#[test]
fn a_field_in_the_wrong_object_says_where_it_belongs() {
    let message = refused(json!({"commands": [{"command": "true", "files": []}]}));
    assert!(
        message.starts_with("commands[0].files: is not a field of a command but of the request"),
        "{message}"
    );
    let message = refused(json!({"commands": [{"command": "true", "memory": "1Gi"}]}));
    assert!(
        message.contains("is not a field of a command but of limits"),
        "{message}"
    );
}

#[test]
fn unknown_fields_of_files_env_entries_limits_and_retry_are_refused() {
    let message = file_refused(json!({"name": "a", "dat": "x"}));
    assert!(
        message.starts_with("files[0].dat: is not a field of a file; did you mean \"data\"?"),
        "{message}"
    );
    let message = refused(json!({"commands": [{"command": "true",
        "envs": [{"name": "TOKEN", "value": "v", "secert": true}]}]}));
    assert!(
        message.starts_with(
            "commands[0].envs[0].secert: is not a field of an envs entry; did you mean \"secret\"?"
        ),
        "{message}"
    );
    let message = refused(json!({"limits": {"memroy": "1Gi"}, "commands": []}));
    assert!(
        message.starts_with("limits.memroy: is not a field of limits; did you mean \"memory\"?"),
        "{message}"
    );
    let message = refused(json!({"commands": [{"command": "true",
        "retry": {"attempts": 3, "dealy": "PT2S"}}]}));
    assert!(
        message.starts_with(
            "commands[0].retry.dealy: is not a field of retry; did you mean \"delay\"?"
        ),
        "{message}"
    );
}

#[test]
fn known_fields_and_nulls_are_not_unknown() {
    let plan = plan(json!({
        "files": [{"name": "f", "content": "x", "permission": 420, "type": null}],
        "envs": [{"name": "A", "value": "b", "secret": false}],
        "commands": [{"command": "true", "stop": true, "suppress_command": false,
                      "suppress_output": false, "retry": {"attempts": 2}, "errors": {},
                      "timout": null}]
    }));
    assert_eq!(plan.warning, None);
}

#[test]
fn the_direktiv_cmd_shape_only_notes_unknown_fields() {
    let plan = plan(json!({
        "files": [{"name": "run.sh", "content": "x", "owner": "me"}],
        "state": 1,
        "data": {"commands": [{"command": "true", "timout": 5,
                               "envs": [{"name": "A", "value": "b", "hidden": true}]}],
                 "comment": "x"}
    }));
    assert_eq!(plan.dialect, Dialect::DirektivCmd);
    assert_eq!(plan.commands[0].timeout, None);
    assert_eq!(
        plan.warning.as_deref(),
        Some(
            "ignored unknown fields: state, data.comment, \
             data.commands[0].timout (did you mean \"timeout\"?), \
             data.commands[0].envs[0].hidden, files[0].owner"
        )
    );
}

#[test]
fn odd_keys_are_quoted_in_messages() {
    let message = refused(json!({"commands": [{"command": "true", "a\nb": 1}]}));
    assert!(
        message.starts_with("commands[0].\"a\\nb\": is not"),
        "{message}"
    );
}

#[test]
fn bodies_of_the_wrong_shape_show_the_expected_one() {
    for body in [
        &b""[..],
        b"  \n",
        b"[]",
        b"42",
        b"\"x\"",
        b"{\"commands\": [",
        b"{}",
        b"\xff",
    ] {
        let message = refused_bytes(body);
        assert!(
            message.contains("{\"commands\": [{\"command\": \"ls -l\"}]}"),
            "{:?}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(refused_bytes(b"").contains("empty"));
    assert!(refused_bytes(b"[1]").contains("is an array"));
    assert!(refused_bytes(b"{").contains("not valid JSON"));
}

#[test]
fn commands_must_be_an_array_of_objects() {
    assert_eq!(
        refused(json!({"commands": {"command": "ls"}})),
        "commands: expected an array of commands, got an object"
    );
    let message = refused(json!({"commands": [{"command": "ls"}, "ls"]}));
    assert!(
        message.starts_with("commands[1]: expected a command like"),
        "{message}"
    );
    assert!(message.ends_with("got \"ls\""), "{message}");
    let message = refused(json!({"commands": [{"timeout": 1}]}));
    assert!(
        message.starts_with("commands[0]: a command needs \"command\""),
        "{message}"
    );
}

// --- command, args, shell -----------------------------------------------------------------

#[test]
fn args_give_argv_directly() {
    let spec = command(json!({"commands": [{"args": ["printf", "%s|%s", "a b", "it's"]}]}));
    assert_eq!(spec.program, argv(&["printf", "%s|%s", "a b", "it's"]));
    assert_eq!(spec.display, "printf '%s|%s' 'a b' 'it'\\''s'");
}

#[test]
fn exactly_one_of_command_and_args_and_args_not_empty() {
    let message = refused(json!({"commands": [{"command": "ls", "args": ["ls"]}]}));
    assert!(
        message.starts_with("commands[0].args: cannot be given together"),
        "{message}"
    );
    let message = refused(json!({"commands": [{"args": []}]}));
    assert!(
        message.starts_with("commands[0].args: is empty"),
        "{message}"
    );
    assert_eq!(
        refused(json!({"commands": [{"args": ["ls", 3]}]})),
        "commands[0].args[1]: expected a string, got 3"
    );
    assert_eq!(
        refused(json!({"commands": [{"args": ["", "x"]}]})),
        "commands[0].args[0]: the program name is empty"
    );
    assert_eq!(
        refused(json!({"commands": [{"command": 7}]})),
        "commands[0].command: expected a string, got 7"
    );
}

#[test]
fn shell_runs_the_command_text_as_a_script() {
    let spec =
        command(json!({"commands": [{"command": "echo $HOME | wc -c && true", "shell": true}]}));
    assert_eq!(
        spec.program,
        Program::Shell("echo $HOME | wc -c && true".into())
    );
    assert_eq!(spec.display, "echo $HOME | wc -c && true");
    let message = refused(json!({"commands": [{"args": ["ls"], "shell": true}]}));
    assert!(
        message.starts_with("commands[0].shell: works only with \"command\""),
        "{message}"
    );
    let message = refused(json!({"commands": [{"command": "  ", "shell": true}]}));
    assert!(
        message.starts_with("commands[0].command: the shell script is empty"),
        "{message}"
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "ls", "shell": "yes"}]})),
        "commands[0].shell: expected true or false, got \"yes\""
    );
}

#[test]
fn unquoted_operators_are_refused_with_the_path_and_a_hint() {
    let message =
        refused(json!({"commands": [{"command": "true"}, {"command": "touch x && cat x"}]}));
    assert!(
        message.starts_with("commands[1].command: the shell operator '&&'"),
        "{message}"
    );
    assert!(message.contains("\"shell\": true"), "{message}");
    let message = refused(json!({"data": {"commands": [{"command": "ls 2>&1"}]}}));
    assert!(
        message.starts_with("data.commands[0].command: the shell operator '2>&1'"),
        "{message}"
    );
}

#[test]
fn quoted_operators_and_dollar_signs_pass_through_literally() {
    let spec = command(json!({"data": {"commands": [{"command": "bash -c 'env | grep $X'"}]}}));
    assert_eq!(spec.program, argv(&["bash", "-c", "env | grep $X"]));
    assert_eq!(spec.display, "bash -c 'env | grep $X'");
}

#[test]
fn unbalanced_quotes_and_empty_commands_are_refused() {
    let message = refused(json!({"commands": [{"command": "echo 'x"}]}));
    assert!(
        message.starts_with("commands[0].command: missing closing quote"),
        "{message}"
    );
    assert_eq!(
        refused(json!({"commands": [{"command": ""}]})),
        "commands[0].command: the command is empty"
    );
}

#[test]
fn nul_bytes_in_arguments_are_refused() {
    let message = refused(json!({"commands": [{"command": "echo a\u{0}b"}]}));
    assert!(
        message.starts_with("commands[0].command: an argument contains a NUL"),
        "{message}"
    );
    let message = refused(json!({"commands": [{"args": ["echo", "\u{0}"]}]}));
    assert!(
        message.starts_with("commands[0].args: an argument contains a NUL"),
        "{message}"
    );
}

// --- other command fields -----------------------------------------------------------------

#[test]
fn stdin_workdir_and_output() {
    let spec = command(json!({"commands": [
        {"command": "cat", "stdin": "hello\n", "workdir": "sub/dir", "output": "out/result.json"}
    ]}));
    assert_eq!(spec.stdin.as_deref(), Some(&b"hello\n"[..]));
    let workdir = spec.workdir.as_ref().unwrap();
    assert_eq!(workdir.path, PathBuf::from("sub/dir"));
    assert_eq!(workdir.field, "commands[0].workdir");
    let output = spec.output.as_ref().unwrap();
    assert_eq!(output.path, PathBuf::from("out/result.json"));
    assert_eq!(output.field, "commands[0].output");
    let spec = command(json!({"commands": [
        {"command": "cat", "workdir": "./sub", "output": "./out.json"}
    ]}));
    assert_eq!(spec.workdir.map(|w| w.path), Some(PathBuf::from("sub")));
    assert_eq!(spec.output.map(|o| o.path), Some(PathBuf::from("out.json")));
    for (field, value, needle) in [
        ("workdir", "/etc", "absolute"),
        ("workdir", "../x", "'..'"),
        ("workdir", ".", "the temp dir itself"),
        ("output", "a/../../b", "'..'"),
        ("output", "", "empty"),
    ] {
        let message = refused(json!({"commands": [{"command": "true", field: value}]}));
        assert!(
            message.starts_with(&format!("commands[0].{field}: ")),
            "{message}"
        );
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(
        refused(json!({"commands": [{"command": "cat", "stdin": ["a"]}]})),
        "commands[0].stdin: expected a string, got an array"
    );
}

#[test]
fn timeout_in_seconds_or_as_a_duration() {
    let timeout = |value: Value| {
        command(json!({"commands": [{"command": "true", "timeout": value}]})).timeout
    };
    assert_eq!(timeout(json!(90)), Some(Duration::from_secs(90)));
    assert_eq!(timeout(json!(1.5)), Some(Duration::from_millis(1500)));
    assert_eq!(
        timeout(json!(0)),
        None,
        "0 falls back to the configured default"
    );
    assert_eq!(timeout(json!("0s")), None);
    assert_eq!(timeout(json!("90s")), Some(Duration::from_secs(90)));
    assert_eq!(timeout(json!("5m")), Some(Duration::from_secs(300)));
    assert_eq!(timeout(json!("1h")), Some(Duration::from_secs(3600)));
    assert_eq!(timeout(json!("30")), Some(Duration::from_secs(30)));
    assert_eq!(timeout(Value::Null), None);
}

#[test]
fn timeout_as_an_iso_8601_duration() {
    let timeout =
        |value: &str| command(json!({"commands": [{"command": "true", "timeout": value}]})).timeout;
    assert_eq!(timeout("PT10S"), Some(Duration::from_secs(10)));
    assert_eq!(timeout("PT10M"), Some(Duration::from_secs(600)));
    assert_eq!(timeout("PT1H30M"), Some(Duration::from_secs(5400)));
    assert_eq!(timeout("P1D"), Some(Duration::from_secs(86_400)));
    assert_eq!(timeout("PT0.5S"), Some(Duration::from_millis(500)));
    assert_eq!(timeout("PT0S"), None, "zero falls back to the default");
}

#[test]
fn bad_timeouts_name_the_path_and_the_expected_form() {
    const EXPECTED: &str = "expected seconds (300), a duration like \"90s\"/\"5m\"/\"1h30m\", \
                            or ISO 8601 like \"PT10M\"";
    assert_eq!(
        refused(json!({"commands": [{"command": "a"}, {"command": "b", "timeout": true}]})),
        format!("commands[1].timeout: {EXPECTED}, got true")
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "a", "timeout": -1}]})),
        format!("commands[0].timeout: {EXPECTED}, got -1")
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "a", "timeout": "soon"}]})),
        format!("commands[0].timeout: \"soon\" is not a duration; {EXPECTED}")
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "a", "timeout": "PT10X"}]})),
        format!("commands[0].timeout: \"PT10X\" is not a duration; {EXPECTED}")
    );
    for (huge, shown) in [
        (json!(1e15), "1000000000000000.0"),
        (json!("366d"), "\"366d\""),
        (json!("P400D"), "\"P400D\""),
        (json!("18446744073709551615s"), "\"18446744073709551615s\""),
    ] {
        assert_eq!(
            refused(json!({"commands": [{"command": "a", "timeout": huge}]})),
            format!(
                "commands[0].timeout: {shown} is more than a year, the longest duration accepted"
            )
        );
    }
}

#[test]
fn native_flag_defaults_and_values() {
    let spec = command(
        json!({"commands": [{"command": "a", "silent": true, "print": false, "continue": true}]}),
    );
    assert!(spec.silent && !spec.print && spec.continue_on_error);
    assert_eq!(
        refused(json!({"commands": [{"command": "a", "continue": 1}]})),
        "commands[0].continue: expected true or false, got 1"
    );
}

#[test]
fn aliases_mean_their_field() {
    let spec = command(json!({"commands": [
        {"command": "a", "stop": false, "suppress_command": true, "suppress_output": true}
    ]}));
    assert!(spec.continue_on_error && !spec.print && spec.silent);
    let spec = command(json!({"commands": [
        {"command": "a", "stop": true, "suppress_command": false, "suppress_output": false}
    ]}));
    assert!(!spec.continue_on_error && spec.print && !spec.silent);
}

#[test]
fn aliases_agreeing_with_their_field_are_fine() {
    let spec = command(json!({"commands": [{"command": "a",
        "continue": true, "stop": false,
        "print": false, "suppress_command": true,
        "silent": true, "suppress_output": true}]}));
    assert!(spec.continue_on_error && !spec.print && spec.silent);
}

#[test]
fn aliases_contradicting_their_field_are_refused() {
    for (field, alias, field_value, alias_value) in [
        ("continue", "stop", true, true),
        ("continue", "stop", false, false),
        ("print", "suppress_command", true, true),
        ("print", "suppress_command", false, false),
        ("silent", "suppress_output", true, false),
        ("silent", "suppress_output", false, true),
    ] {
        let message = refused(json!({"commands": [
            {"command": "a", field: field_value, alias: alias_value}
        ]}));
        assert_eq!(
            message,
            format!(
                "commands[0].{alias}: {alias_value} contradicts \"{field}\": {field_value}; \
                 give only one of them"
            )
        );
    }
}

// --- environment and secrets --------------------------------------------------------------

#[test]
fn env_and_envs_at_both_levels() {
    let plan = plan(json!({
        "env": {"REGION": "eu-central-1"},
        "envs": [{"name": "TOKEN", "value": "s3cret"}],
        "commands": [{"command": "a", "env": {"A": "1"}, "envs": [{"name": "B", "value": "two"}]}]
    }));
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        plan.env,
        pairs(&[("REGION", "eu-central-1"), ("TOKEN", "s3cret")])
    );
    assert_eq!(plan.commands[0].env, pairs(&[("A", "1"), ("B", "two")]));
}

#[test]
fn env_given_twice_must_agree() {
    let plan = plan(json!({"commands": [{"command": "a",
        "env": {"A": "1"}, "envs": [{"name": "A", "value": "1"}]}]}));
    assert_eq!(plan.commands[0].env.len(), 1);
    assert_eq!(
        refused(json!({"commands": [{"command": "a",
            "env": {"A": "1"}, "envs": [{"name": "A", "value": "2"}]}]})),
        "commands[0].envs[0].value: A is given twice with different values; give it once"
    );
    assert_eq!(
        refused(json!({"env": {"A": "1"}, "envs": [{"name": "A", "value": "2"}], "commands": []})),
        "envs[0].value: A is given twice with different values; give it once"
    );
}

#[test]
fn env_names_and_values_are_checked() {
    let message = refused(json!({"env": {"A=B": "x"}, "commands": []}));
    assert!(
        message.starts_with("env: \"A=B\" is not an environment variable name"),
        "{message}"
    );
    let message =
        refused(json!({"commands": [{"command": "a", "envs": [{"name": "", "value": "x"}]}]}));
    assert!(
        message.starts_with("commands[0].envs[0].name: an environment variable name is empty"),
        "{message}"
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "a", "envs": [{"value": "x"}]}]})),
        "commands[0].envs[0].name: is missing"
    );
    let message = refused(json!({"env": {"A": "x\u{0}y"}, "commands": []}));
    assert!(
        message.starts_with("env.A: the value contains a NUL"),
        "{message}"
    );
    assert_eq!(
        refused(json!({"env": {"A": {"b": 1}}, "commands": []})),
        "env.A: expected a string, got an object"
    );
    assert_eq!(
        refused(json!({"env": ["A=1"], "commands": []})),
        "env: expected an object like {\"NAME\": \"value\"}, got an array"
    );
}

#[test]
fn env_numbers_and_booleans_become_their_text() {
    let plan = plan(json!({"env": {"PORT": 8080, "DEBUG": true}, "commands": []}));
    assert_eq!(
        plan.env,
        [
            ("PORT".to_string(), "8080".to_string()),
            ("DEBUG".to_string(), "true".to_string())
        ],
        "in the order given"
    );
}

#[test]
fn secrets_are_the_mask_and_the_env_values_marked_secret() {
    let all = plan(json!({
        "env": {"API_TOKEN": "by-name-is-not-decided-here"},
        "envs": [{"name": "B", "value": "request-marked", "secret": true},
                 {"name": "C", "value": "not-marked", "secret": false}],
        "commands": [
            {"command": "a", "envs": [{"name": "D", "value": "command-marked", "secret": true},
                                      {"name": "E", "value": "", "secret": true}]},
            {"command": "b", "envs": [{"name": "F", "value": "extra", "secret": true}]}
        ],
        "mask": ["extra", "from-mask"]
    }));
    assert_eq!(
        all.secrets,
        ["extra", "from-mask", "command-marked", "request-marked"]
    );
    let numbers = plan(json!({"mask": ["pin", 123456], "commands": []}));
    assert_eq!(numbers.secrets, ["pin", "123456"]);
    assert_eq!(
        refused(json!({"mask": ["a", true], "commands": []})),
        "mask[1]: expected a string, got true"
    );
}

#[test]
fn a_value_overriding_a_variable_marked_secret_is_secret() {
    let body = json!({"envs": [{"name": "PIN", "value": "old-pin-1", "secret": true}],
                      "commands": []});
    let overrides = [("PIN".to_owned(), "new-pin-2".to_owned())];
    let plan = super::parse_with_env(body.to_string().as_bytes(), &overrides).unwrap();
    assert_eq!(plan.env, [("PIN".to_owned(), "new-pin-2".to_owned())]);
    assert_eq!(plan.secrets, ["old-pin-1", "new-pin-2"]);
}

#[test]
fn secret_must_be_a_boolean() {
    assert_eq!(
        refused(json!({"envs": [{"name": "A", "value": "x", "secret": "yes"}], "commands": []})),
        "envs[0].secret: expected true or false, got \"yes\""
    );
    assert_eq!(
        refused(json!({"commands": [{"command": "a",
            "envs": [{"name": "A", "value": "x", "secret": 1}]}]})),
        "commands[0].envs[0].secret: expected true or false, got 1"
    );
}

// --- files --------------------------------------------------------------------------------

#[test]
fn native_files_plain_and_base64() {
    let plain = file(json!({"name": "dir/hosts.ini", "data": "a=1\n"}));
    assert_eq!(
        plain,
        InputFile {
            path: "dir/hosts.ini".into(),
            data: b"a=1\n".to_vec(),
            mode: 0o644
        }
    );
    let decoded = file(json!({"name": "b", "data": "aGVs\nbG8=\r\n", "type": "base64"}));
    assert_eq!(decoded.data, b"hello");
    assert_eq!(
        file(json!({"name": "c", "data": "aGVsbG8", "type": "base64"})).data,
        b"hello"
    );
    assert_eq!(file(json!({"name": "d"})).data, b"");
    let message = file_refused(json!({"name": "x", "data": "a*b", "type": "base64"}));
    assert!(
        message.starts_with("files[0].data: is not valid base64"),
        "{message}"
    );
    assert_eq!(
        file_refused(json!({"name": "x", "type": "tar"})),
        "files[0].type: \"tar\" is not a file type; use \"plain\" or \"base64\""
    );
}

#[test]
fn file_modes_as_octal_strings_or_numbers() {
    let mode = |m: Value| file(json!({"name": "f", "mode": m})).mode;
    assert_eq!(mode(json!("0755")), 0o755);
    assert_eq!(mode(json!("755")), 0o755);
    assert_eq!(mode(json!("0o700")), 0o700);
    assert_eq!(mode(json!(493)), 0o755);
    assert_eq!(mode(json!(0)), 0);
    assert_eq!(mode(Value::Null), 0o644);
    assert_eq!(file(json!({"name": "f", "permission": 292})).mode, 0o444);
}

#[test]
fn decimal_looking_modes_are_refused_with_a_hint() {
    let message = file_refused(json!({"name": "f", "mode": 755}));
    assert!(
        message.starts_with("files[0].mode: 755 is not a permission mode"),
        "{message}"
    );
    assert!(message.contains("as a string: \"0755\""), "{message}");
    let message = file_refused(json!({"name": "f", "mode": 644}));
    assert!(message.contains("as a string: \"0644\""), "{message}");
    let message = file_refused(json!({"name": "f", "mode": 999}));
    assert!(message.contains("e.g. \"0755\""), "{message}");
    for bad in [
        json!("0999"),
        json!("1777"),
        json!("rwx"),
        json!(""),
        json!("+7"),
    ] {
        let message = file_refused(json!({"name": "f", "mode": bad}));
        assert!(message.starts_with("files[0].mode: "), "{message}");
        assert!(message.contains("is not a permission mode"), "{message}");
    }
    let message = file_refused(json!({"name": "f", "mode": 4.5}));
    assert!(message.starts_with("files[0].mode: expected"), "{message}");
    assert_eq!(
        file_refused(json!({"name": "f", "mode": true})),
        "files[0].mode: expected an octal string like \"0644\", got true"
    );
}

#[test]
fn file_aliases_must_agree() {
    assert_eq!(
        file(json!({"name": "f", "data": "x", "content": "x", "mode": "0755", "permission": 493}))
            .mode,
        0o755
    );
    let message = file_refused(json!({"name": "f", "data": "x", "content": "y"}));
    assert!(
        message.starts_with("files[0].content: differs from \"data\""),
        "{message}"
    );
    let message = file_refused(json!({"name": "f", "mode": "0755", "permission": 420}));
    assert!(
        message.starts_with("files[0].permission: 0o644 differs from \"mode\" 0o755"),
        "{message}"
    );
}

#[test]
fn file_names_are_checked_lexically() {
    for (name, needle) in [
        (json!("/etc/passwd"), "absolute"),
        (json!("../x"), "'..'"),
        (json!("./../x"), "'..'"),
        (json!(""), "empty"),
        (json!("a\u{0}b"), "NUL"),
    ] {
        let message = file_refused(json!({"name": name}));
        assert!(message.starts_with("files[0].name: "), "{message}");
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(
        file(json!({"name": "./run.sh"})).path,
        PathBuf::from("run.sh")
    );
    assert_eq!(
        refused(json!({"commands": [], "files": [{"name": "./a"}, {"name": "a"}]})),
        "files: files[0] and files[1] both write a"
    );
    assert_eq!(
        file_refused(json!({"data": "x"})),
        "files[0].name: is missing; every file needs a relative path"
    );
    assert_eq!(
        file_refused(json!({"name": 3})),
        "files[0].name: expected a string, got 3"
    );
}

#[test]
fn duplicate_and_nested_file_paths_are_refused() {
    let message = refused(json!({"commands": [], "files": [
        {"name": "a/b"}, {"name": "c"}, {"name": "a//b"}
    ]}));
    assert_eq!(message, "files: files[0] and files[2] both write a/b");
    let message = refused(json!({"commands": [], "files": [{"name": "a/b/c"}, {"name": "a/b"}]}));
    assert!(
        message.starts_with("files: a/b would be a file and the folder of a/b/c"),
        "{message}"
    );
    let plan =
        plan(json!({"commands": [], "files": [{"name": "a"}, {"name": "a0/b"}, {"name": "ab"}]}));
    assert_eq!(
        plan.files.len(),
        3,
        "a prefix of a name is not a parent folder"
    );
}

#[test]
fn files_must_be_an_array_of_objects() {
    let message = refused(json!({"commands": [], "files": {"name": "a"}}));
    assert!(
        message.starts_with("files: expected an array of files"),
        "{message}"
    );
    let message = refused(json!({"commands": [], "files": ["a"]}));
    assert!(
        message.starts_with("files[0]: expected a file like"),
        "{message}"
    );
}

#[test]
fn limits_of_the_request_are_defaults_for_its_commands() {
    use crate::limits::Limits;
    let both = plan(json!({
        "limits": {"memory": "1Gi", "cpu": 60},
        "commands": [
            {"command": "a"},
            {"command": "b", "limits": {"cpu": "5s", "open_files": 64}}
        ]
    }));
    assert_eq!(
        both.commands[0].limits,
        Limits {
            memory: Some(1 << 30),
            cpu: Some(60),
            ..Limits::default()
        }
    );
    assert_eq!(
        both.commands[1].limits,
        Limits {
            memory: Some(1 << 30),
            cpu: Some(5),
            open_files: Some(64),
            file_size: None,
        }
    );
    // The one-command shorthand and the direktiv-cmd shape read them too.
    assert_eq!(
        command(json!({"command": "a", "limits": {"file_size": "1Mi"}})).limits,
        Limits {
            file_size: Some(1 << 20),
            ..Limits::default()
        }
    );
    let direktiv = plan(json!({
        "limits": {"cpu": 2},
        "data": {"commands": [{"command": "a", "limits": {"memory": "64Mi"}}]}
    }));
    assert_eq!(direktiv.commands[0].limits.cpu, Some(2));
    assert_eq!(direktiv.commands[0].limits.memory, Some(64 << 20));
}

#[test]
fn bad_limits_name_their_field() {
    assert!(
        refused(json!({"commands": [{"command": "a", "limits": {"memory": "1m"}}]}))
            .starts_with("commands[0].limits.memory: ")
    );
    assert!(
        refused(json!({"limits": {"cpu": "soon"}, "commands": [{"command": "a"}]}))
            .starts_with("limits.cpu: ")
    );
    assert!(
        refused(json!({"data": {"commands": [{"command": "a", "limits": []}]}}))
            .starts_with("data.commands[0].limits: ")
    );
}
