//! What a test needs from the machine beyond the runner itself (pid namespaces through
//! `unshare`; the container tests' Docker engine, `support_docker`), and one rule for when it
//! is missing: under `CI=true` the test fails with a
//! message that says what to install or set, unless `CMD_SKIP_CONTAINER_TESTS=1` asks for the
//! skip on purpose; elsewhere it is skipped with a line the test harness does not hide.

use std::io::Write;
use std::process::Command;

/// Whether this machine lets a test create a pid namespace with its own /proc
/// (`unshare --pid --fork --mount-proc`, util-linux, as root). `test` names the caller in the
/// skip line or the failure.
pub fn pid_namespaces(test: &str) -> bool {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    let problem = match probe {
        Ok(status) if status.success() => return true,
        Ok(status) => {
            format!("`unshare --pid --fork --mount-proc true` failed ({status}); it needs root")
        }
        Err(error) => format!("`unshare` cannot be run ({error}); it comes with util-linux"),
    };
    missing(test, &problem)
}

/// Whether `CMD_SKIP_CONTAINER_TESTS=1` asks to skip `test` on purpose (said in a skip line).
pub fn skip_requested(test: &str) -> bool {
    let requested = std::env::var("CMD_SKIP_CONTAINER_TESTS").is_ok_and(|v| v == "1");
    if requested {
        skipped(test, "CMD_SKIP_CONTAINER_TESTS=1");
    }
    requested
}

/// Applies the rule above to a test whose need is not met (`problem` says what is missing
/// and where it comes from); returns false (the test should return) when it may skip.
pub fn missing(test: &str, problem: &str) -> bool {
    if skip_requested(test) {
        return false;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: {problem}. Under CI=true this test must run; set CMD_SKIP_CONTAINER_TESTS=1 \
         to skip it on purpose."
    );
    skipped(test, problem);
    false
}

/// Writes the skip straight to the process's stderr: the harness captures `eprintln!` of a
/// passing test, and a skip must not look like a pass.
fn skipped(test: &str, reason: &str) {
    let line = format!("\nSKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
