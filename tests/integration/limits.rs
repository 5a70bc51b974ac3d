//! `limits` as real runtimes meet them (README: "Limits"): `memory` is memory used — a memory
//! cgroup per command where the runner can make one, `RLIMIT_DATA` elsewhere, never address
//! space — so the JVM, node and a 4 GiB `PROT_NONE` reservation start under 256Mi; passing a
//! cgroup limit is `cmd.limit.memory`; a shell's 152/153 after its child passed `cpu` /
//! `file_size` is that limit; every size is read by one grammar; `pids` is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::capability::skip_without;
use crate::support::cgroups::{self, FIND_OWN_MEMORY_CGROUP};
use crate::support::{sh, start_pair, within, Capability, Runner, PATIENCE};

/// Reserves 4 GiB of address space it never touches, as the JVM, V8 and Go do.
const RESERVE_4G: &str = "import mmap; m = mmap.mmap(-1, 4 << 30, prot=0); print('reserved')";

/// A shell function `limit` printing the memory limit of the cgroup in `$d` (v1 or v2).
const READ_LIMIT: &str =
    "limit() { cat \"$d/memory.limit_in_bytes\" 2>/dev/null || cat \"$d/memory.max\"; }; ";

/// Touches 1 GiB.
const TOUCH_1G: &str = "b = bytearray(1 << 30); print(len(b))";

fn python(code: &str) -> Value {
    json!({"args": ["python3", "-c", code]})
}

/// The runner's `limits: ...` part of its start-up line.
fn limits_line(runner: &Runner) -> String {
    assert!(runner.wait_stderr(PATIENCE, |l| l.contains("listening on")));
    let line = runner
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap_or_default();
    let start = line.find("limits: ").unwrap_or(0);
    line[start..].to_owned()
}

/// Waits until the runner has no memory cgroup left below `dir`.
fn wait_memory_cgroups_gone(runner: &Runner, dir: &Path) -> Vec<PathBuf> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = cgroups::memory_cgroups_of(runner.pid(), dir);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runtimes_that_reserve_address_space_start_under_a_memory_cgroup() {
    skip_without!(Capability::MemoryCgroups);
    let (sidecar, runner) = start_pair(&[]);
    let line = limits_line(&runner);
    assert!(line.starts_with("limits: memory as a cgroup v"), "{line}");
    let body = json!({"limits": {"memory": "256Mi"}, "commands": [
        {"command": "node -e 'console.log(1)'"},
        {"command": "java -version"},
        python(RESERVE_4G),
    ]});
    let reply = within(
        PATIENCE,
        "runtimes under 256Mi",
        sidecar.call(&runner, "m1", body),
    )
    .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], 1);
    assert!(
        reply.command(1)["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("version")),
        "{reply:?}"
    );
    assert_eq!(reply.command(2)["result"], "reserved");
}

#[tokio::test(flavor = "multi_thread")]
async fn passing_a_memory_cgroup_limit_is_cmd_limit_memory_and_ends_the_whole_command() {
    skip_without!(Capability::MemoryCgroups);
    let memory_dir = cgroups::expect_memory_dir();
    let (sidecar, runner) = start_pair(&[]);
    let script = format!("python3 -c '{TOUCH_1G}'; sleep 60");
    let body = json!({"commands": [
        {"command": script, "shell": true, "timeout": 120, "limits": {"memory": "256Mi"}}
    ]});
    let started = Instant::now();
    let reply = within(
        PATIENCE,
        "a 1 GiB allocation",
        sidecar.call(&runner, "m2", body),
    )
    .await;
    reply.assert_error("cmd.limit.memory", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("exceeded its memory limit of 256Mi"),
        "{message}"
    );
    // The shell's `sleep 60` went with the allocation: the whole command is killed.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // Removed with the command.
    let left = wait_memory_cgroups_gone(&runner, &memory_dir);
    assert!(left.is_empty(), "memory cgroups left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raised_limit_and_a_nested_cgroup_do_not_reach_the_next_limited_command() {
    skip_without!(Capability::MemoryCgroups);
    let memory_dir = cgroups::expect_memory_dir();
    // Without isolation: in a request's Landlock domain cgroup files are read-only
    // (`an_isolated_command_cannot_raise_its_own_memory_limit`).
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "off")]);
    // Finds its own memory cgroup, then (as root) raises the limit — memsw first on v1, which
    // must stay above it — and nests a cgroup in it; says its name and limit before and after.
    let look = format!(
        "{FIND_OWN_MEMORY_CGROUP}{READ_LIMIT}\
                before=$(limit); \
                if [ -e \"$d/memory.limit_in_bytes\" ]; then \
                  echo 2147483648 > \"$d/memory.memsw.limit_in_bytes\" 2>/dev/null; \
                  echo 1073741824 > \"$d/memory.limit_in_bytes\"; \
                else echo max > \"$d/memory.max\"; fi && \
                mkdir \"$d/nested\" && echo \"$name $before $(limit)\""
    );
    let limited = json!({"command": look, "shell": true, "limits": {"memory": "256Mi"}});
    let unlimited = sh("grep -c 'direktiv-cmd-[0-9]*-mem-' /proc/self/cgroup || true");
    let body = json!({
        "env": {"MEMDIR": memory_dir.display().to_string()},
        "commands": [limited.clone(), limited, unlimited]
    });
    let reply = sidecar.call(&runner, "m3", body).await;
    reply.assert_success();
    let seen = |i: usize| {
        reply.command(i)["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let fields = |seen: String| seen.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (first, second) = (fields(seen(0)), fields(seen(1)));
    let limit = (256u64 << 20).to_string();
    assert_eq!(first.get(1), Some(&limit), "{first:?}");
    let raised = first.get(2).map(String::as_str);
    assert!(
        raised == Some("1073741824") || raised == Some("max"),
        "the first command raised its limit: {first:?}"
    );
    assert_eq!(
        second.get(1),
        Some(&limit),
        "the raised limit did not carry over: {second:?}"
    );
    assert_ne!(first.first(), second.first(), "a fresh cgroup each");
    let first = first.join(" ");
    assert!(
        first.starts_with(&format!("direktiv-cmd-{}-mem-", runner.pid())),
        "{first}"
    );
    assert_eq!(
        seen(2),
        "0",
        "a command without a memory limit has no memory cgroup"
    );
    // A clean one may be kept for a later command (v1); none is left once the runner exits.
    let pid = runner.pid();
    runner.stop();
    let left = cgroups::memory_cgroups_of(pid, &memory_dir);
    assert!(left.is_empty(), "memory cgroups left at exit: {left:?}");
}

/// In a request's Landlock domain (the default) a command, root or not, can read its memory
/// cgroup but not raise the limit set on it, nor nest a cgroup in it.
#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_command_cannot_raise_its_own_memory_limit() {
    skip_without!(Capability::MemoryCgroups);
    skip_without!(Capability::Landlock);
    let memory_dir = cgroups::expect_memory_dir();
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "landlock")]);
    let raise = format!(
        "{FIND_OWN_MEMORY_CGROUP}{READ_LIMIT}\
                 echo 1073741824 2>/dev/null > \"$d/memory.limit_in_bytes\" && echo RAISED; \
                 echo max 2>/dev/null > \"$d/memory.max\" && echo RAISED; \
                 mkdir \"$d/nested\" 2>/dev/null && echo NESTED; limit"
    );
    let body = json!({
        "env": {"MEMDIR": memory_dir.display().to_string()},
        "commands": [{"command": raise, "shell": true, "limits": {"memory": "256Mi"}}]
    });
    let reply = sidecar.call(&runner, "m-isolated", body).await;
    reply.assert_success();
    assert_eq!(
        reply.command(0)["stdout"],
        format!("{}\n", 256u64 << 20),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_rlimit_data_reservations_start_and_a_big_allocation_fails_in_the_program() {
    let (sidecar, runner) = start_pair(&[("CMD_LIMITS_MECHANISM", "rlimit")]);
    let line = limits_line(&runner);
    assert!(
        line.starts_with("limits: memory as writable private memory (RLIMIT_DATA"),
        "{line}"
    );
    let limits_of = "grep -E '^Max (data size|address space)' /proc/self/limits";
    let body = json!({"limits": {"memory": "256Mi"}, "commands": [
        {"command": "node -e 'console.log(1)'"},
        // The JVM's initial heap is 1/64 of the host's memory: -Xms keeps it under the limit.
        {"command": "java -Xms16m -version"},
        python(RESERVE_4G),
        sh(limits_of),
        python(TOUCH_1G),
    ]});
    let reply = within(
        PATIENCE,
        "runtimes under RLIMIT_DATA",
        sidecar.call(&runner, "r1", body),
    )
    .await;
    reply.assert_error("cmd.exit.1", 500);
    for i in 0..4 {
        assert_eq!(reply.command(i)["success"], true, "{}", reply.command(i));
    }
    assert_eq!(reply.command(2)["result"], "reserved");
    let limits = reply.command(3)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let row = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let bytes = 256u64 << 20;
    assert_eq!(
        row("Max data size"),
        format!("Max data size {bytes} {bytes} bytes")
    );
    assert_eq!(
        row("Max address space"),
        "Max address space unlimited unlimited bytes",
        "never RLIMIT_AS"
    );
    assert!(
        reply
            .error_message()
            .unwrap_or_default()
            .contains("MemoryError"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shells_152_and_153_after_its_child_passed_a_limit_are_that_limit() {
    let (sidecar, runner) = start_pair(&[]);
    let cpu = json!({"commands": [{
        "command": "python3 -c 'while True: pass'; exit $?", "shell": true, "timeout": 120,
        "limits": {"cpu": "1s"}
    }]});
    let reply = within(
        PATIENCE,
        "a CPU-limited child",
        sidecar.call(&runner, "x1", cpu),
    )
    .await;
    reply.assert_error("cmd.limit.cpu", 500);
    assert_eq!(reply.command(0)["exit_code"], 152);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("exceeded its cpu limit of 1s"),
        "{message}"
    );

    let file_size = json!({"commands": [{
        "command": "dd if=/dev/zero of=big bs=1M count=4; exit $?", "shell": true,
        "limits": {"file_size": "1Mi"}
    }]});
    let reply = sidecar.call(&runner, "x2", file_size).await;
    reply.assert_error("cmd.limit.file_size", 500);
    assert_eq!(reply.command(0)["exit_code"], 153);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.contains("exceeded its file_size limit of 1Mi"),
        "{message}"
    );

    // Without the limit, 152 is an exit status like any.
    let reply = sidecar
        .call(&runner, "x3", json!({"commands": [sh("exit 152")]}))
        .await;
    reply.assert_error("cmd.exit.152", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_size_is_refused_with_both_readings() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "true", "limits": {"memory": "256MB"}}]});
    let reply = sidecar.call(&runner, "s1", body).await;
    reply.assert_error("cmd.input", 400);
    assert_eq!(
        reply.error_message().unwrap_or_default(),
        "commands[0].limits.memory: \"256MB\": the unit 'MB' is ambiguous; write 256Mi for \
         268435456 bytes or 256M for 256000000"
    );
    let body = json!({"limits": {"file_size": "1GiB"}, "commands": [{"command": "true"}]});
    sidecar.call(&runner, "s2", body).await.assert_success();
}

#[test]
fn an_ambiguous_size_setting_stops_start_up_with_both_readings() {
    for (variable, value, hint) in [
        (
            "CMD_MAX_OUTPUT",
            "1MB",
            "write 1Mi for 1048576 bytes or 1M for 1000000",
        ),
        (
            "CMD_MAX_BODY",
            "32mb",
            "write 32Mi for 33554432 bytes or 32M for 32000000",
        ),
        (
            "CMD_LIMIT_MEMORY",
            "2GB",
            "write 2Gi for 2147483648 bytes or 2G for 2000000000",
        ),
        (
            "CMD_LIMIT_FILE_SIZE",
            "4KB",
            "write 4Ki for 4096 bytes or 4k for 4000",
        ),
    ] {
        let finished = Runner::builder()
            .env(variable, value)
            .run_to_exit(b"", PATIENCE);
        assert!(
            finished.status.is_some_and(|status| !status.success()),
            "{variable}={value} was accepted"
        );
        assert!(
            finished.stderr.contains(variable) && finished.stderr.contains(hint),
            "{variable}: {}",
            finished.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pids_limit_is_refused_with_the_reason() {
    let (sidecar, runner) = start_pair(&[]);
    let body = json!({"commands": [{"command": "true", "limits": {"pids": 10}}]});
    let reply = sidecar.call(&runner, "p1", body).await;
    reply.assert_error("cmd.input", 400);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.starts_with("commands[0].limits.pids: a process count per command is refused"),
        "{message}"
    );
}
