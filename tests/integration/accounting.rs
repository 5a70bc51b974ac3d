//! Accounting and context against the real binary (README: "Limits", "Environment of a
//! command", the `usage` field under "Response format", "Error codes"): what each command
//! used, the limits it may not pass, the OOM score it runs with, the trace context and the
//! deadline it is told.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::support::{
    env_map, sh, start_pair, within, CallOptions, FakeSidecar, Reply, Runner, PATIENCE,
};
use serde_json::{json, Value};

fn with_limits(mut command: Value, limits: Value) -> Value {
    command["limits"] = limits;
    command
}

/// A shell busy loop of about half a second of CPU on an idle machine.
const BUSY: &str = "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done";

/// Fills a 64 MiB buffer (dd allocates its block size and reads into it).
const ALLOC_64M: &str = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null";

fn usage(result: &Value) -> (u64, u64, u64) {
    let usage = &result["usage"];
    let field = |name: &str| {
        usage[name]
            .as_u64()
            .unwrap_or_else(|| panic!("usage.{name} is a number: {result}"))
    };
    (field("max_rss_kib"), field("user_ms"), field("sys_ms"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_reports_what_it_used() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        sh(&format!("{ALLOC_64M}; {BUSY}")),
        {"command": "true"}
    ]});
    let reply = sidecar.call(&runner, "u1", body).await;
    reply.assert_success();

    let (rss, user, _) = usage(&reply.command(0));
    assert!(rss > 50_000, "64 MiB were touched: max_rss_kib {rss}");
    assert!(user > 100, "a busy loop ran: user_ms {user}");

    let (rss, user, sys) = usage(&reply.command(1));
    assert!(rss > 0 && rss < 50_000, "true is small: {rss}");
    assert!(user + sys < 100, "true does nothing: {user} + {sys} ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_commands_report_usage_too() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [sh(&format!("{BUSY}; exit 3"))]});
    let reply = sidecar.call(&runner, "u2", body).await;
    reply.assert_error("cmd.exit.3", 500);
    let (_, user, _) = usage(&reply.command(0));
    assert!(user > 100, "{}", reply.command(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_export_usage_histograms() {
    let (sidecar, runner) = start_pair(&[]);
    sidecar
        .call(&runner, "m1", json!({"commands": [sh(ALLOC_64M)]}))
        .await
        .assert_success();
    let metrics = runner.get("/metrics").await;
    let text = metrics.text;
    for name in [
        "direktiv_cmd_command_max_rss_bytes",
        "direktiv_cmd_command_user_cpu_seconds",
        "direktiv_cmd_command_system_cpu_seconds",
    ] {
        let count = text
            .lines()
            .find(|line| line.starts_with(&format!("{name}_count")))
            .unwrap_or_else(|| panic!("{name} is exported:\n{text}"));
        assert!(count.ends_with(" 1"), "{count}");
    }
    // The 64 MiB command lands above the 16 MiB bucket and within the 256 MiB one.
    let bucket = |bytes: u64| {
        text.lines()
            .find(|line| {
                line.starts_with("direktiv_cmd_command_max_rss_bytes_bucket")
                    && line.contains(&format!("le=\"{bytes}."))
            })
            .unwrap_or_else(|| panic!("a {bytes} bucket:\n{text}"))
            .to_owned()
    };
    assert!(bucket(16 << 20).ends_with(" 0"), "{}", bucket(16 << 20));
    assert!(bucket(256 << 20).ends_with(" 1"), "{}", bucket(256 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cpu_limited_busy_loop_ends_with_cmd_limit_cpu() {
    let (sidecar, runner) = start_pair(&[]);
    // Stopped by its CPU limit, not by its timeout (which would be `cmd.timeout`).
    let body = json!({"commands": [
        with_limits(json!({"args": ["sh", "-c", "while :; do :; done"], "timeout": 600}), json!({"cpu": 1}))
    ]});
    let reply = within(
        PATIENCE,
        "a CPU-limited loop",
        sidecar.call(&runner, "c1", body),
    )
    .await;
    reply.assert_error("cmd.limit.cpu", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("exceeded its cpu limit of 1s"),
        "{message}"
    );
    // The kernel enforces the limit on tick-sampled CPU time; rusage reports the scheduler's
    // exact time, which on a busy machine can be lower.
    let (_, user, sys) = usage(&reply.command(0));
    assert!(user + sys >= 750, "one CPU second was used: {user} + {sys}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ignoring_sigxcpu_does_not_escape_the_cpu_limit() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [
        with_limits(
            json!({"args": ["sh", "-c", "trap '' XCPU; while :; do :; done"], "timeout": 60}),
            json!({"cpu": "1s"})
        )
    ]});
    let reply = sidecar.call(&runner, "c2", body).await;
    // SIGKILL at the hard limit, one second after the ignored SIGXCPU.
    reply.assert_error("cmd.limit.cpu", 500);
    let (_, user, sys) = usage(&reply.command(0));
    assert!(user + sys >= 1500, "about two CPU seconds: {user} + {sys}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_size_limited_write_ends_with_cmd_limit_file_size() {
    let (sidecar, runner) = start_pair(&[]);
    let write = json!({"args": ["dd", "if=/dev/zero", "of=big.bin", "bs=1M", "count=4"]});
    let reply = sidecar
        .call(
            &runner,
            "f1",
            json!({"limits": {"file_size": "1Mi"}, "commands": [write]}),
        )
        .await;
    reply.assert_error("cmd.limit.file_size", 500);
    assert!(
        reply
            .error_message()
            .unwrap_or_default()
            .contains("exceeded its file_size limit of 1Mi"),
        "{reply:?}"
    );
}

/// The limits a command sees, from its /proc/self/limits.
async fn limits_seen(
    sidecar: &FakeSidecar,
    runner: &Runner,
    request_limits: Option<Value>,
    command_limits: Option<Value>,
) -> HashMap<String, String> {
    let mut command = json!({"args": ["cat", "/proc/self/limits"]});
    if let Some(limits) = command_limits {
        command["limits"] = limits;
    }
    let mut body = json!({"commands": [command]});
    if let Some(limits) = request_limits {
        body["limits"] = limits;
    }
    let reply = sidecar.call(runner, "l1", body).await;
    reply.assert_success();
    let stdout = reply.command(0)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    [
        "Max cpu time",
        "Max file size",
        "Max open files",
        "Max data size",
        "Max address space",
    ]
    .iter()
    .filter_map(|name| {
        let line = stdout.lines().find(|l| l.starts_with(name))?;
        let soft = line[name.len()..].split_whitespace().next()?;
        Some((name.to_string(), soft.to_string()))
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_layer_command_over_request_over_configuration() {
    // `memory` as an rlimit, which /proc/self/limits shows (a memory cgroup is tested in
    // `limits`).
    let (sidecar, runner) = start_pair(&[
        ("CMD_LIMIT_OPEN_FILES", "100"),
        ("CMD_LIMIT_CPU", "1m"),
        ("CMD_LIMIT_MEMORY", "4Gi"),
        ("CMD_LIMITS_MECHANISM", "rlimit"),
    ]);
    let seen = limits_seen(&sidecar, &runner, None, None).await;
    assert_eq!(seen["Max open files"], "100");
    assert_eq!(seen["Max cpu time"], "60");
    assert_eq!(seen["Max data size"], (4u64 << 30).to_string());
    assert_eq!(seen["Max address space"], "unlimited");

    let seen = limits_seen(
        &sidecar,
        &runner,
        Some(json!({"cpu": 30, "file_size": "1Mi"})),
        Some(json!({"cpu": "5s"})),
    )
    .await;
    assert_eq!(seen["Max cpu time"], "5");
    assert_eq!(seen["Max file size"], (1u64 << 20).to_string());
    assert_eq!(seen["Max open files"], "100");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_limits_are_input_errors_naming_the_field() {
    let (sidecar, runner) = start_pair(&[]);
    let cases = [
        (
            json!({"commands": [{"command": "true", "limits": {"memory": "256m"}}]}),
            "commands[0].limits.memory",
        ),
        (
            json!({"commands": [{"command": "true"}, {"command": "true", "limits": {"cpu": "soon"}}]}),
            "commands[1].limits.cpu",
        ),
        (
            json!({"limits": {"open_files": -1}, "commands": [{"command": "true"}]}),
            "limits.open_files",
        ),
        (
            json!({"limits": {"disk": "1Gi"}, "commands": [{"command": "true"}]}),
            "limits.disk",
        ),
        (
            json!({"commands": [{"command": "true", "limits": "1Gi"}]}),
            "commands[0].limits",
        ),
    ];
    for (body, field) in cases {
        let reply = sidecar.call(&runner, "bad", body).await;
        reply.assert_error("cmd.input", 400);
        let message = reply.error_message().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{field}: {message}"
        );
    }
}

#[test]
fn bad_limit_settings_stop_start_up_naming_the_variable() {
    for (variable, value) in [
        ("CMD_LIMIT_MEMORY", "256m"),
        ("CMD_LIMIT_CPU", "0"),
        ("CMD_LIMIT_FILE_SIZE", "huge"),
        ("CMD_LIMIT_OPEN_FILES", "0"),
    ] {
        let finished = Runner::builder()
            .env(variable, value)
            .run_to_exit(b"", PATIENCE);
        assert!(
            finished.status.is_some_and(|status| !status.success()),
            "{variable}={value} was accepted"
        );
        assert!(
            finished.stderr.contains(variable),
            "{variable}: {}",
            finished.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_are_the_oom_killers_first_choice() {
    let (sidecar, runner) = start_pair(&[]);
    // Without limits the score is raised right after posix_spawn: what the command does after
    // its first moments has it. With limits it is raised before exec.
    let later = sh("sleep 0.5; cat /proc/$$/oom_score_adj");
    let at_once = json!({"args": ["cat", "/proc/self/oom_score_adj"]});
    let body = json!({"commands": [
        later.clone(),
        with_limits(later, json!({"open_files": 64})),
        with_limits(at_once, json!({"open_files": 64})),
    ]});
    let reply = sidecar.call(&runner, "o1", body).await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], 1000, "posix_spawn path");
    assert_eq!(reply.command(1)["result"], 1000, "limited (fork) path");
    assert_eq!(reply.command(2)["result"], 1000, "raised before exec");
    let own = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", runner.pid())).unwrap();
    assert_ne!(own.trim(), "1000", "the runner itself is not raised");
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn env_with_headers(headers: &[(&str, &str)], command: Value) -> HashMap<String, String> {
    let (sidecar, runner) = start_pair(&[]);
    let options = CallOptions {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..CallOptions::default()
    };
    let reply = sidecar
        .call_with(&runner, "t1", json!({"commands": [command]}), &options)
        .await;
    reply.assert_success();
    env_map(reply.command(0)["stdout"].as_str().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_headers_reach_every_command() {
    let env = env_with_headers(
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ("baggage", "userId=alice,isProduction=false"),
        ],
        json!({"args": ["env"]}),
    )
    .await;
    assert_eq!(
        env.get("TRACEPARENT").map(String::as_str),
        Some(TRACEPARENT)
    );
    assert_eq!(
        env.get("TRACESTATE").map(String::as_str),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_eq!(
        env.get("BAGGAGE").map(String::as_str),
        Some("userId=alice,isProduction=false")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_traceparent_is_not_passed_on() {
    let env = env_with_headers(
        &[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "userId=alice"),
        ],
        json!({"args": ["env"]}),
    )
    .await;
    assert!(!env.contains_key("TRACEPARENT"), "{env:?}");
    assert!(!env.contains_key("TRACESTATE"), "{env:?}");
    assert_eq!(env.get("BAGGAGE").map(String::as_str), Some("userId=alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runners_json_log_lines_carry_the_trace_id() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start_with(&sidecar, &[("CMD_LOG_FORMAT", "json")]);
    let options = CallOptions {
        headers: vec![("traceparent".into(), TRACEPARENT.into())],
        ..CallOptions::default()
    };
    sidecar
        .call_with(&runner, "t2", json!({"command": "false"}), &options)
        .await
        .assert_error("cmd.exit.1", 500);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert!(
        runner.wait_stderr(PATIENCE, |line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|v| v["span"]["trace_id"] == trace_id && v["span"]["action_id"] == "t2")
        }),
        "{:#?}",
        runner.stderr_lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_with_a_timeout_is_told_its_deadline() {
    let before = SystemTime::now();
    let env = env_with_headers(&[], json!({"args": ["env"], "timeout": 30})).await;
    let after = SystemTime::now();
    let deadline = env
        .get("DIREKTIV_DEADLINE")
        .unwrap_or_else(|| panic!("DIREKTIV_DEADLINE is set: {env:?}"));
    assert!(deadline.ends_with('Z'), "UTC: {deadline}");
    let deadline = humantime::parse_rfc3339(deadline).unwrap();
    let timeout = Duration::from_secs(30);
    // Shown to the millisecond, truncated.
    assert!(
        deadline + Duration::from_millis(1) >= before + timeout,
        "{deadline:?}"
    );
    assert!(deadline <= after + timeout, "{deadline:?}");

    let env = env_with_headers(&[], json!({"args": ["env"]})).await;
    assert!(
        !env.contains_key("DIREKTIV_DEADLINE"),
        "no timeout, no deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configured_default_timeout_gives_a_deadline_too() {
    let (sidecar, runner) = start_pair(&[("CMD_TIMEOUT", "2m")]);
    let reply: Reply = sidecar
        .call(
            &runner,
            "d1",
            json!({"commands": [{"args": ["printenv", "DIREKTIV_DEADLINE"]}]}),
        )
        .await;
    reply.assert_success();
    let shown = reply.command(0)["result"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = humantime::parse_rfc3339(&shown).unwrap();
    let left = deadline.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(60) && left <= Duration::from_secs(120),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_limit_settings_set_no_limit() {
    let (sidecar, runner) = start_pair(&[("CMD_LIMIT_OPEN_FILES", ""), ("CMD_LIMIT_CPU", "")]);
    let seen = limits_seen(&sidecar, &runner, None, None).await;
    let own = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or("unlimited".to_owned(), |n| n.to_string());
    assert_eq!(seen["Max open files"], own, "inherited from the runner");
    assert_eq!(seen["Max cpu time"], "unlimited");
}

/// The vfork path taken for limits gives a command what posix_spawn gives it.
#[tokio::test(flavor = "multi_thread")]
async fn a_limited_command_runs_like_any_other() {
    let (sidecar, runner) = start_pair(&[]);
    let script = "pwd; echo \"$GREETING\"; cat; echo; ps -o pgid= -p $$ | tr -d ' '; echo $$; \
                  grep -E '^Sig(Ign|Blk)' /proc/self/status";
    let command = json!({
        "args": ["sh", "-c", script],
        "workdir": "sub",
        "env": {"GREETING": "hi"},
        "stdin": "fed",
    });
    let body =
        json!({"commands": [command.clone(), with_limits(command, json!({"open_files": 256}))]});
    let reply = sidecar.call(&runner, "same", body).await;
    reply.assert_success();
    let spawned = reply.command(0)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let forked = reply.command(1)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let lines: Vec<&str> = forked.lines().collect();
    assert!(lines[0].ends_with("/sub"), "{forked}");
    assert_eq!(lines[1..3], ["hi", "fed"], "{forked}");
    assert_eq!(lines[3], lines[4], "leads its own process group: {forked}");
    // Everything but the process ids is the same on both paths; of the ignored signals, 1-31
    // (32 and 33 are glibc's own, which every glibc program sets up again when it starts).
    let without_pids = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.drain(3..5);
        for line in &mut lines {
            if let Some(hex) = line.strip_prefix("SigIgn:\t") {
                let ignored = u64::from_str_radix(hex.trim(), 16).unwrap_or(u64::MAX);
                *line = format!("SigIgn 1-31: {:x}", ignored & 0x7fff_ffff);
            }
        }
        lines
    };
    assert_eq!(without_pids(&forked), without_pids(&spawned));
}
