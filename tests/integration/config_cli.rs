//! Configuration and command line of the real binary (README, "Configuration"): `--help`
//! documents every variable with its default, invalid values stop start-up naming the
//! variable, flags and variables configure the same thing, and `run` executes one request
//! without HTTP.

use std::time::Duration;

use crate::support::{strip_ansi, FakeSidecar, Finished, Runner, PATIENCE};
use serde_json::{json, Value};

/// How long a binary that should exit at once may take before it counts as hanging.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut builder = Runner::builder().envs(env);
    for arg in args {
        builder = builder.arg(*arg);
    }
    builder.run_to_exit(b"", EXIT_TIMEOUT)
}

/// `text` without `<...>` value placeholders such as clap's `<PORT>`.
fn without_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let finished = run(&["--help"], &[]);
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    let help = strip_ansi(&finished.stdout);
    let expected = [
        ("PORT", "8080"),
        ("DIREKTIV_HTTP_BACKEND", "http://127.0.0.1:8889"),
        ("DIREKTIV_DEV_MODE", ""),
        ("CMD_TIMEOUT", "0"),
        ("CMD_KILL_GRACE", "5s"),
        ("CMD_GRACE", "20s"),
        ("CMD_MAX_INFLIGHT", "10"),
        ("CMD_MAX_OUTPUT", "1MiB"),
        ("CMD_MAX_BODY", "32MiB"),
        ("CMD_MAX_RESULT", "64MiB"),
        ("CMD_DEV_VARS", ""),
        ("CMD_ALLOW", ""),
        ("CMD_SHELL", "/bin/sh"),
        ("CMD_RESULT_KEY", "commands"),
        ("CMD_LOG_FORMAT", "text"),
        ("CMD_MASK_NAMES", "KEY|SECRET|TOKEN|PASSWORD"),
        ("CMD_MASK_RESPONSE", "true"),
    ];
    // clap wraps long help; join the lines so a variable and its default can be searched as one.
    let flat: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for (var, default) in expected {
        assert!(flat.contains(var), "--help must mention {var}:\n{help}");
        if !default.is_empty() {
            // The text from the variable up to the next option's `[env: ...]`.
            let at = flat.find(&format!("{var}=")).or_else(|| flat.rfind(var));
            let section = &flat[at.unwrap_or(0)..];
            let end = section[1..].find("[env:").map_or(section.len(), |i| i + 1);
            let section = &section[..end];
            assert!(
                section.contains(default),
                "--help must show the default {default} of {var}:\n{help}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_as_help_says() {
    let help = strip_ansi(&run(&["--help"], &[]).stdout);
    let flat: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Exit status: 0 after a drain on SIGTERM; 2 when the command line or a setting is invalid"),
        "{help}"
    );
    for args in [&["--no-such-flag"][..], &["run"], &["run", "-", "extra"]] {
        let finished = run(args, &[]);
        assert_eq!(
            finished.status.and_then(|s| s.code()),
            Some(2),
            "{args:?}: {finished:?}"
        );
        assert_eq!(finished.stdout, "", "{args:?}: no JSON on stdout");
    }
}

#[test]
fn version_prints_the_package_version() {
    let finished = run(&["--version"], &[]);
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    assert!(
        finished.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{finished:?}"
    );
}

#[test]
fn invalid_values_stop_startup_with_a_message_naming_the_variable() {
    let cases = [
        ("CMD_TIMEOUT", "soon"),
        ("PORT", "x"),
        ("CMD_KILL_GRACE", "-3"),
        ("CMD_MAX_OUTPUT", "lots"),
        ("CMD_MAX_RESULT", "big"),
        ("CMD_MAX_INFLIGHT", "0"),
        ("CMD_LOG_FORMAT", "xml"),
        ("DIREKTIV_HTTP_BACKEND", "not a url"),
        ("CMD_MASK_NAMES", "TOKEN|(unclosed"),
        ("CMD_MASK_RESPONSE", "maybe"),
        // Durations that would overflow time arithmetic: more than a year.
        ("CMD_GRACE", "2y"),
        ("CMD_KILL_GRACE", "P400D"),
        ("CMD_TIMEOUT", "99999999999"),
        ("CMD_READ_TIMEOUT", "10000h"),
        ("CMD_LIMIT_CPU", "2y"),
        // A shell that is not an executable file here.
        ("CMD_SHELL", "/bin/nosuchshell"),
        ("CMD_SHELL", "/etc/passwd"),
        ("CMD_SHELL", "/tmp"),
        ("CMD_SHELL", "nosuchshell"),
        ("CMD_SHELL", "bin/sh"),
    ];
    let mut problems = Vec::new();
    for (var, value) in cases {
        let finished = run(&[], &[(var, value)]);
        let stderr = strip_ansi(&finished.stderr);
        // `--port <PORT>` names the flag's value, not the variable: look outside placeholders.
        let outside_placeholders = without_placeholders(&stderr);
        match finished.status {
            None => problems.push(format!("{var}={value}: kept running instead of stopping")),
            Some(status) if status.code() != Some(2) => problems.push(format!(
                "{var}={value}: exited with {status} instead of 2, a usage error"
            )),
            Some(_) if !outside_placeholders.contains(var) => problems.push(format!(
                "{var}={value}: the message does not name {var}: {}",
                stderr.trim()
            )),
            Some(_) => {}
        }
        if stderr.contains("listening on") {
            problems.push(format!("{var}={value}: started serving"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The one start-up line: port, where logs go, the shell, how limits are enforced, how
/// processes are tracked, PID 1 or not (SPEC §8), and nothing else before it.
#[test]
fn one_start_up_line_says_how_the_runner_will_behave() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, &[("CMD_LIMIT_MEMORY", "256Mi")]);
    let lines = runner.stderr_lines();
    let line = strip_ansi(lines.first().map(String::as_str).unwrap_or_default());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let port = runner.addr().port();
    assert!(
        line.contains(&format!("listening on [::]:{port}; ")),
        "{line}"
    );
    for part in [
        format!(
            "; logs: sidecar {}/log (stdout for action id \"development\"); ",
            sidecar.url()
        ),
        "; shell: /bin/sh; ".to_owned(),
        "; limits: memory as ".to_owned(),
        "; rlimits for cpu (RLIMIT_CPU)".to_owned(),
        "(defaults: memory 256Mi); ".to_owned(),
        "; processes: a process group per command".to_owned(),
        "; pid 1: no ".to_owned(),
    ] {
        assert!(line.contains(&part), "{part:?} missing: {line}");
    }

    let runner = Runner::start_with(&sidecar, &[("DIREKTIV_DEV_MODE", "1"), ("CMD_SHELL", "")]);
    let line = strip_ansi(&runner.stderr_lines().join("\n"));
    assert!(line.contains("; logs: stdout (development mode"), "{line}");
    assert!(
        line.contains("; shell: off (CMD_SHELL is empty); "),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_named_by_its_name_in_path_runs_shell_commands() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, &[("CMD_SHELL", "sh")]);
    let reply = sidecar
        .call(
            &runner,
            "sh",
            json!({"command": "echo $((2+3))", "shell": true}),
        )
        .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_configure_the_same_settings_as_variables() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .arg("--result-key")
        .arg("aws-cli")
        .arg("--timeout")
        .arg("1")
        .arg("--kill-grace")
        .arg("1s")
        .start();
    let reply = sidecar
        .call(&runner, "f1", json!({"command": "echo hi"}))
        .await;
    reply.assert_success();
    assert_eq!(reply.results_under("aws-cli")[0]["result"], "hi");
    let reply = sidecar
        .call(&runner, "f2", json!({"command": "sleep 60"}))
        .await;
    reply.assert_error("cmd.timeout", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn durations_accept_seconds_and_units() {
    for value in ["1", "1s", "1000ms"] {
        let sidecar = FakeSidecar::start();
        let runner =
            Runner::start_with(&sidecar, &[("CMD_TIMEOUT", value), ("CMD_KILL_GRACE", "1")]);
        let reply = sidecar
            .call(&runner, "d1", json!({"command": "sleep 60"}))
            .await;
        reply.assert_error("cmd.timeout", 500);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_format_writes_json_lines() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, &[("CMD_LOG_FORMAT", "json")]);
    assert!(runner.wait_stderr(PATIENCE, |l| l.contains("listening on")));
    for line in runner.stderr_lines() {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
}

#[test]
fn run_subcommand_executes_one_request_without_http() {
    let request = json!({"commands": [{"command": "echo from-run"}]}).to_string();
    let finished = Runner::builder()
        .arg("run")
        .arg("-")
        .run_to_exit(request.as_bytes(), EXIT_TIMEOUT);
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    let body: Value = serde_json::from_str(&finished.stdout).expect("response JSON on stdout");
    assert_eq!(body["commands"][0]["result"], "from-run");
    // The output line itself, after the echoed command line that holds the same word (the
    // runner's own log lines may come between them).
    let logged: Vec<&str> = finished.stderr.lines().collect();
    let at = |line: &str| logged.iter().position(|l| *l == line);
    assert!(
        matches!(
            (at("running command 'echo from-run'"), at("from-run")),
            (Some(echoed), Some(output)) if echoed < output
        ),
        "logs go to stderr: {logged:?}"
    );

    let failing = json!({"command": "sh -c 'exit 3'"}).to_string();
    let finished = Runner::builder()
        .arg("run")
        .arg("-")
        .run_to_exit(failing.as_bytes(), EXIT_TIMEOUT);
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(3),
        "the failing command's exit status: {finished:?}"
    );
    let body: Value = serde_json::from_str(&finished.stdout).expect("error JSON on stdout");
    assert_eq!(body["errorCode"], "cmd.exit.3");
}

#[test]
fn run_subcommand_reads_a_request_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("request.json");
    std::fs::write(&path, json!({"command": "echo from-file"}).to_string()).expect("write");
    let finished = Runner::builder()
        .arg("run")
        .arg(path.as_os_str())
        .run_to_exit(b"", EXIT_TIMEOUT);
    assert!(finished.status.is_some_and(|s| s.success()), "{finished:?}");
    let body: Value = serde_json::from_str(&finished.stdout).expect("response JSON on stdout");
    assert_eq!(body["commands"][0]["result"], "from-file");
}
