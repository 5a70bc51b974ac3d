//! The runner core against the real binary: request shapes and fields, the execution
//! environment and the temp dir (README, "Endpoints" and "Request format").

use std::path::Path;

use crate::support::{
    env_map, start_pair, within, CallOptions, FakeSidecar, Reply, Runner, TempDirHeader, PATIENCE,
};
use serde_json::{json, Value};

fn stdout_of(result: &Value) -> String {
    result["stdout"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn single_command_shorthand_runs_and_returns_its_output() {
    let (sidecar, runner) = start_pair(&[]);
    let reply = sidecar
        .call(&runner, "a1", json!({"command": "echo hi"}))
        .await;
    reply.assert_success();
    let result = reply.command(0);
    assert_eq!(result["command"], "echo hi");
    assert_eq!(result["success"], true);
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["result"], "hi");
    assert_eq!(result["stdout"], "hi\n");
    assert_eq!(result["stderr"], "");
    assert_eq!(result["truncated"], false);
    assert!(result["duration_ms"].is_u64(), "{result}");
    assert_eq!(reply.commands().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_one_after_another_in_order() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"command": "sh -c 'echo one > order.txt'"},
        {"command": "sh -c 'echo two >> order.txt'"},
        {"command": "cat order.txt"}
    ]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.commands().len(), 3);
    assert_eq!(reply.command(2)["stdout"], "one\ntwo\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_is_split_with_shell_words_and_nothing_is_expanded() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"command": r#"printf '%s|' "a  b" 'c d' e\ f $HOME * `id`"#});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "a  b|c d|e f|$HOME|*|`id`|");
}

#[tokio::test(flavor = "multi_thread")]
async fn args_give_argv_directly() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"args": ["printf", "%s|", "a b", "$HOME", "'q'", "x && y"]}]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "a b|$HOME|'q'|x && y|");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_and_args_together_or_neither_are_input_errors() {
    let (sidecar, runner) = start_pair(&[]);
    let both = json!({"commands": [{"command": "echo a", "args": ["echo", "b"]}]});
    sidecar
        .call(&runner, "a1", both)
        .await
        .assert_error("cmd.input", 400);
    let neither = json!({"commands": [{"timeout": 5}]});
    sidecar
        .call(&runner, "a2", neither)
        .await
        .assert_error("cmd.input", 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_true_runs_the_command_through_the_shell() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"command": "echo $((40 + 2)) | tr 4 x && echo \"$DIREKTIV_ACTION_ID\"", "shell": true}
    ]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "x2\na1\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn unquoted_shell_operators_are_refused_with_advice_to_use_shell_true() {
    let (sidecar, runner) = start_pair(&[]);
    let operators = ["&&", "||", "|", ";", ">", "<", "&"];
    for (i, op) in operators.iter().enumerate() {
        let aid = format!("op{i}");
        let command = format!("touch out/instance/ran {op} echo done");
        let reply = sidecar
            .call(&runner, &aid, json!({"command": command}))
            .await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(
            message.contains(r#"set "shell": true to run it through the shell"#),
            "message for {op} must point to `shell: true`: {message}"
        );
        assert!(
            !reply.vars.contains_key("instance/ran"),
            "nothing may run for a refused request ({op})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_operators_are_plain_arguments() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"command": "echo 'a && b' \"c | d\" 'e;f' '>'"});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "a && b c | d e;f >");
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_mode_is_refused_when_the_shell_is_disabled() {
    let (sidecar, runner) = start_pair(&[("CMD_SHELL", "")]);
    let body = json!({"commands": [{"command": "touch out/instance/ran", "shell": true}]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("shell mode is disabled on this runner (CMD_SHELL is empty)"),
        "{message}"
    );
    assert!(!reply.vars.contains_key("instance/ran"), "nothing may run");
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_layers_later_wins() {
    let sidecar = FakeSidecar::start();
    // Values under 4 bytes are never masked, so they come back verbatim.
    let runner = Runner::start_with(
        &sidecar,
        &[
            ("LAYER_A", "ct"),
            ("LAYER_B", "ct"),
            ("LAYER_C", "ct"),
            ("DIREKTIV_ACTION_ID", "ct"),
            ("DIREKTIV_TEMPDIR", "ct"),
        ],
    );
    let body = json!({
        "env": {"LAYER_B": "rq", "LAYER_C": "rq"},
        "commands": [{"command": "env", "env": {"LAYER_C": "cm"}}]
    });
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    let env = env_map(&stdout_of(&reply.command(0)));
    assert_eq!(env["LAYER_A"], "ct", "container environment is inherited");
    assert_eq!(env["LAYER_B"], "rq", "request env beats the container");
    assert_eq!(env["LAYER_C"], "cm", "command env beats the request");
    assert_eq!(env["DIREKTIV_ACTION_ID"], "a1");
    let dir = sidecar.action_dir("a1").to_string_lossy().into_owned();
    assert_eq!(env["DIREKTIV_TEMPDIR"], dir);
    assert_eq!(env["HOME"], dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_env_can_override_the_runner_variables() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"env": {"DIREKTIV_ACTION_ID": "zz"}, "command": "env"});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(
        env_map(&stdout_of(&reply.command(0)))["DIREKTIV_ACTION_ID"],
        "zz"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envs_alias_works_at_both_levels() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "envs": [{"name": "REQ_V", "value": "r"}],
        "commands": [{"command": "env", "envs": [{"name": "CMD_V", "value": "c"}]}]
    });
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    let env = env_map(&stdout_of(&reply.command(0)));
    assert_eq!(env["REQ_V"], "r");
    assert_eq!(env["CMD_V"], "c");
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_field_and_alias_are_input_errors() {
    let (sidecar, runner) = start_pair(&[]);
    let conflicts = [
        json!({"commands": [{"command": "true", "env": {"X": "a"}, "envs": [{"name": "X", "value": "b"}]}]}),
        json!({"commands": [{"command": "true", "continue": true, "stop": true}]}),
        json!({"commands": [{"command": "true", "print": true, "suppress_command": true}]}),
        json!({"commands": [{"command": "true", "silent": false, "suppress_output": true}]}),
    ];
    for (i, body) in conflicts.into_iter().enumerate() {
        let reply = sidecar.call(&runner, &format!("c{i}"), body).await;
        reply.assert_error("cmd.input", 400);
    }
    let agreeing = json!({"commands": [{"command": "true", "continue": true, "stop": false}]});
    sidecar.call(&runner, "ok", agreeing).await.assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_text_is_fed_to_the_command() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "cat", "stdin": "fed\nthrough stdin"}]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "fed\nthrough stdin");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stdin_the_command_reads_eof_at_once() {
    let (sidecar, runner) = start_pair(&[]);
    // A `cat` left waiting for input would end with `cmd.timeout`.
    let body = json!({"commands": [{"command": "cat", "timeout": 20}]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["stdout"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn workdir_is_relative_to_the_temp_dir() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"command": "mkdir -p sub/dir"},
        {"command": "pwd", "workdir": "sub/dir"}
    ]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    let expected = sidecar.action_dir("a1").join("sub/dir");
    assert_eq!(
        reply.command(1)["result"],
        expected.to_string_lossy().as_ref()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workdir_escaping_the_temp_dir_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    for (i, workdir) in ["..", "sub/../../..", "../other"].iter().enumerate() {
        let body = json!({"commands": [{"command": "pwd", "workdir": workdir}]});
        let reply = sidecar.call(&runner, &format!("w{i}"), body).await;
        reply.assert_error("cmd.input", 400);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_in_seconds_or_duration_string_stops_the_command() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    for (i, timeout) in [json!(1), json!("1s"), json!(0.5)].into_iter().enumerate() {
        let body = json!({"commands": [{"command": "sleep 600", "timeout": timeout}]});
        let aid = format!("t{i}");
        let call = sidecar.call(&runner, &aid, body);
        let reply = within(PATIENCE, &format!("timeout {timeout}"), call).await;
        reply.assert_error("cmd.timeout", 500);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_timeout_comes_from_configuration() {
    let (sidecar, runner) = start_pair(&[("CMD_TIMEOUT", "1"), ("CMD_KILL_GRACE", "1s")]);
    let call = sidecar.call(&runner, "a1", json!({"command": "sleep 600"}));
    let reply = within(PATIENCE, "CMD_TIMEOUT", call).await;
    reply.assert_error("cmd.timeout", 500);
    // A command's own timeout overrides the default.
    let body = json!({"commands": [{"command": "sleep 2", "timeout": "30s"}]});
    sidecar.call(&runner, "a2", body).await.assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_suppress_output_keep_output_out_of_the_log_only() {
    let (sidecar, runner) = start_pair(&[]);
    for (aid, field) in [("s1", "silent"), ("s2", "suppress_output")] {
        let body = json!({"commands": [{"command": "echo quiet-line", field: true}]});
        let reply = sidecar.call(&runner, aid, body).await;
        reply.assert_success();
        assert_eq!(reply.command(0)["stdout"], "quiet-line\n", "still returned");
        let lines = sidecar.lines(aid);
        assert_eq!(lines, ["running command 'echo quiet-line'"], "{field}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn print_false_and_suppress_command_do_not_log_the_command_line() {
    let (sidecar, runner) = start_pair(&[]);
    for (aid, body) in [
        (
            "p1",
            json!({"commands": [{"command": "echo shown", "print": false}]}),
        ),
        (
            "p2",
            json!({"commands": [{"command": "echo shown", "suppress_command": true}]}),
        ),
    ] {
        sidecar.call(&runner, aid, body).await.assert_success();
        assert_eq!(sidecar.lines(aid), ["shown"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn continue_goes_on_after_a_failed_command() {
    let (sidecar, runner) = start_pair(&[]);
    for (aid, first) in [
        ("c1", json!({"command": "sh -c 'exit 4'", "continue": true})),
        ("c2", json!({"command": "sh -c 'exit 4'", "stop": false})),
    ] {
        let body = json!({"commands": [first, {"command": "echo after"}]});
        let reply = sidecar.call(&runner, aid, body).await;
        reply.assert_success();
        let first = reply.command(0);
        assert_eq!(first["success"], false);
        assert_eq!(first["exit_code"], 4);
        assert_eq!(reply.command(1)["result"], "after");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_command_stops_the_request_by_default() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"command": "echo before"},
        {"command": "sh -c 'exit 4'"},
        {"command": "touch out/instance/ran"}
    ]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_error("cmd.exit.4", 500);
    assert_eq!(reply.commands().len(), 2, "results so far: {reply:?}");
    assert!(!reply.vars.contains_key("instance/ran"));
    let stop =
        json!({"commands": [{"command": "sh -c 'exit 4'", "stop": true}, {"command": "true"}]});
    let reply = sidecar.call(&runner, "a2", stop).await;
    reply.assert_error("cmd.exit.4", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_file_content_becomes_the_result() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        {"args": ["sh", "-c", "printf '{\"from\": \"file\"}' > res.json; echo ignored"],
         "output": "res.json"},
        {"args": ["sh", "-c", "printf '  plain text \\n' > sub.txt"], "output": "sub.txt"}
    ]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], json!({"from": "file"}));
    assert_eq!(reply.command(0)["stdout"], "ignored\n");
    assert_eq!(reply.command(1)["result"], "plain text");
}

#[tokio::test(flavor = "multi_thread")]
async fn temp_dir_header_is_working_dir_and_home() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "pwd"}, {"command": "env"}]});
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    let dir = sidecar.action_dir("a1").to_string_lossy().into_owned();
    assert_eq!(reply.command(0)["result"], dir.as_str());
    let env = env_map(&stdout_of(&reply.command(1)));
    assert_eq!(env["HOME"], dir);
    assert_eq!(env["DIREKTIV_TEMPDIR"], dir);
    assert_eq!(env["DIREKTIV_ACTION_ID"], "a1");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_folders_are_created_when_missing() {
    let (_sidecar, runner) = start_pair(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_string_lossy().into_owned();
    let headers = [
        ("Direktiv-ActionID", "a1"),
        ("Direktiv-TempDir", path.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = json!({"commands": [{"command": "ls out", "print": false}]});
    let reply = runner.post(body, &headers).await;
    reply.assert_success();
    assert_eq!(
        reply.command(0)["stdout"],
        "instance\nnamespace\nworkflow\n"
    );
    for scope in ["instance", "namespace", "workflow"] {
        assert!(dir.path().join("out").join(scope).is_dir());
    }
    assert!(
        dir.path().exists(),
        "a temp dir from the header is not removed"
    );
}

/// Sends `body` without `Direktiv-TempDir`; its first command must be `pwd`. Returns the
/// reply and the private temp dir the runner made for it.
async fn call_without_temp_dir(body: Value) -> (Reply, String) {
    let (sidecar, runner) = start_pair(&[]);
    let options = CallOptions {
        temp_dir: TempDirHeader::Omitted,
        ..CallOptions::default()
    };
    let reply = sidecar.call_with(&runner, "private", body, &options).await;
    let private = reply.command(0)["result"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!private.is_empty(), "{reply:?}");
    (reply, private)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_temp_dir_is_removed_with_what_the_commands_left_in_it() {
    let (reply, private) = call_without_temp_dir(json!({"commands": [
        {"command": "pwd"},
        {"command": "mkdir -p deep/er/still"},
        {"command": "touch deep/er/still/file out/workflow/var out/.hidden"}
    ]}))
    .await;
    reply.assert_success();
    assert!(
        !Path::new(&private).exists(),
        "the private temp dir {private} and its contents must be gone after the response"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_header_a_private_temp_dir_is_made_and_removed() {
    let (reply, private) = call_without_temp_dir(json!({"commands": [
        {"command": "pwd"}, {"command": "env"}, {"command": "ls out"}
    ]}))
    .await;
    reply.assert_success();
    assert!(private.contains("direktiv-cmd-"), "{private}");
    let env = env_map(&stdout_of(&reply.command(1)));
    assert_eq!(env["HOME"], private);
    assert_eq!(env["DIREKTIV_TEMPDIR"], private);
    assert_eq!(
        reply.command(2)["stdout"],
        "instance\nnamespace\nworkflow\n"
    );
    assert!(
        !Path::new(&private).exists(),
        "the private temp dir {private} must be gone after the response"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn out_files_become_variables_and_files_from_variables_are_placed() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar.set_var("workflow", "greeting", "hello from a variable");
    let options = CallOptions {
        files: vec![crate::support::ActionFile::new("workflow", "greeting")],
        ..CallOptions::default()
    };
    let body = json!({"commands": [
        {"command": "cp greeting out/instance/copied"},
        {"command": "cp greeting out/namespace/copied"}
    ]});
    let reply = sidecar.call_with(&runner, "a1", body, &options).await;
    reply.assert_success();
    assert_eq!(
        sidecar.var("instance", "copied").as_deref(),
        Some(&b"hello from a variable"[..])
    );
    assert!(reply.vars.contains_key("namespace/copied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn native_files_are_written_before_commands_run() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({
        "files": [
            {"name": "run.sh", "data": "#!/bin/sh\necho script says $1\n", "mode": "0755"},
            {"name": "nested/data.txt", "data": "aGVsbG8=", "type": "base64"}
        ],
        "commands": [{"command": "./run.sh hi"}, {"command": "cat nested/data.txt"}]
    });
    let reply = sidecar.call(&runner, "a1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "script says hi");
    assert_eq!(reply.command(1)["result"], "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn iterator_header_is_accepted() {
    let (sidecar, runner) = start_pair(&[]);
    let options = CallOptions {
        headers: vec![("Direktiv-Iterator".into(), "3".into())],
        ..CallOptions::default()
    };
    sidecar
        .call_with(&runner, "a1", json!({"command": "true"}), &options)
        .await
        .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_cancel_of_an_unknown_id() {
    let (sidecar, runner) = start_pair(&[]);
    assert_eq!(runner.get("/healthz").await.status, 200);
    assert_eq!(runner.get("/readyz").await.status, 200);
    let metrics = runner.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("# TYPE"),
        "Prometheus text: {}",
        metrics.text
    );
    assert_eq!(sidecar.cancel(&runner, "never-started").await, 200);
}

/// A `workdir` or `output` that a previous command turned into a symlink out of the temp dir
/// is refused when it is used, not followed.
#[tokio::test(flavor = "multi_thread")]
async fn workdir_and_output_cannot_escape_through_a_symlink_made_by_a_command() {
    let (sidecar, runner) = start_pair(&[]);
    let workdir = json!({"commands": [
        {"command": "ln -s / escape"},
        {"command": "pwd", "workdir": "escape"}
    ]});
    let reply = sidecar.call(&runner, "escape-workdir", workdir).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("commands[1].workdir: \"escape\" leads outside"),
        "{message}"
    );
    assert_eq!(reply.commands().len(), 2, "{reply:?}");

    let output = json!({"commands": [
        {"command": "ln -s /etc escape"},
        {"command": "true", "output": "escape/hostname"}
    ]});
    let reply = sidecar.call(&runner, "escape-output", output).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("commands[1].output: \"escape/hostname\" leads outside"),
        "{message}"
    );
}
