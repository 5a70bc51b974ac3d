//! What some tests need from the machine beyond the runner itself, and the one rule for when
//! it is missing: [`skip_without!`] ends the test with a `SKIPPED <test>: <reason>` line the
//! test harness does not hide; under `CI=true` it fails the test instead, unless a person set
//! that capability's `CMD_SKIP_<NAME>=1` to skip it on purpose. Nothing else may skip a test.
//!
//! Each capability has its own opt-out, so that a machine without Docker still runs the
//! PID-1 tests, and a machine whose pid namespaces are forbidden still runs the Docker tests.

use std::io::Write;
use std::process::Command;

/// Something a test needs that not every machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// A Docker engine that answers `docker info` (the container tests).
    Docker,
    /// Pid and mount namespaces with their own /proc (`unshare --pid --fork --mount-proc`):
    /// the runner as PID 1.
    PidNamespaces,
    /// A writable cgroup v2 with `cgroup.kill` where the tests run, so that the runner makes
    /// a cgroup per request.
    Cgroups,
    /// A memory cgroup per command: a writable cgroup v1 memory hierarchy, or a cgroup v2
    /// that delegates the memory controller, where the tests run.
    MemoryCgroups,
    /// Root: files only root may remove, `chroot`, running the runner as another user.
    Root,
    /// Landlock with ABI 6 or later (signal scoping): requests isolated from each other.
    Landlock,
}

impl Capability {
    /// Every capability some test needs.
    pub const ALL: [Capability; 6] = [
        Capability::Docker,
        Capability::PidNamespaces,
        Capability::Cgroups,
        Capability::MemoryCgroups,
        Capability::Root,
        Capability::Landlock,
    ];

    /// The variable a person sets to `1` to skip the tests that need this on purpose.
    pub fn opt_out(self) -> &'static str {
        match self {
            Capability::Docker => "CMD_SKIP_DOCKER",
            Capability::PidNamespaces => "CMD_SKIP_PIDNS",
            Capability::Cgroups => "CMD_SKIP_CGROUPS",
            Capability::MemoryCgroups => "CMD_SKIP_MEMORY_CGROUPS",
            Capability::Root => "CMD_SKIP_ROOT",
            Capability::Landlock => "CMD_SKIP_LANDLOCK",
        }
    }

    /// `Err` says what is missing and where it comes from.
    fn probe(self) -> Result<(), String> {
        match self {
            Capability::Docker => probe_docker(),
            Capability::PidNamespaces => probe_pid_namespaces(),
            Capability::Cgroups => super::cgroups::own_dir()
                .map(|_| ())
                .ok_or_else(|| "no writable cgroup v2 with cgroup.kill where the tests run".into()),
            Capability::MemoryCgroups => super::cgroups::memory_dir().map(|_| ()).ok_or_else(|| {
                "no writable cgroup v1 memory hierarchy, nor a cgroup v2 delegating memory, where \
                 the tests run"
                    .into()
            }),
            Capability::Root => rustix::process::geteuid()
                .is_root()
                .then_some(())
                .ok_or_else(|| "the tests do not run as root".into()),
            Capability::Landlock => probe_landlock(),
        }
    }
}

/// Whether the running test may go on: `false` after it printed why it is skipped. Panics
/// under `CI=true` when the capability is missing and nobody opted out. Use
/// [`skip_without!`], which returns from the test.
pub fn present(capability: Capability) -> bool {
    let test = current_test();
    let opt_out = capability.opt_out();
    if std::env::var(opt_out).is_ok_and(|value| value == "1") {
        skipped(&test, &format!("{opt_out}=1"));
        return false;
    }
    let Err(problem) = capability.probe() else {
        return true;
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: {problem}. Under CI=true this test must run; set {opt_out}=1 to skip it on \
         purpose."
    );
    skipped(&test, &problem);
    false
}

/// Returns from the test (after a visible `SKIPPED` line) when the machine lacks
/// `$capability`; under `CI=true` fails the test instead unless its `CMD_SKIP_*` is set.
macro_rules! skip_without {
    ($capability:expr) => {
        if !$crate::support::capability::present($capability) {
            return;
        }
    };
}
pub(crate) use skip_without;

/// The test's name: the harness runs each test on a thread named after it.
fn current_test() -> String {
    std::thread::current().name().unwrap_or("a test").to_owned()
}

/// Writes the skip straight to the process's stderr: the harness captures `eprintln!` of a
/// passing test, and a skip must not look like a pass.
fn skipped(test: &str, reason: &str) {
    let line = format!("\nSKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn probe_docker() -> Result<(), String> {
    let output = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|error| format!("`docker` cannot be run ({error}): no Docker engine here"))?;
    if output.status.success() {
        return Ok(());
    }
    let error = String::from_utf8_lossy(&output.stderr);
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(format!(
        "no Docker engine answers (`docker info` failed: {error})"
    ))
}

fn probe_pid_namespaces() -> Result<(), String> {
    let status = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .map_err(|error| format!("`unshare` cannot be run ({error}); it comes with util-linux"))?;
    status.success().then_some(()).ok_or_else(|| {
        format!("`unshare --pid --fork --mount-proc true` failed ({status}); it needs root")
    })
}

/// Landlock's ABI version, asked of the kernel (`landlock_create_ruleset` with the VERSION
/// flag): 6 or later scopes signals.
fn probe_landlock() -> Result<(), String> {
    // SAFETY: with a null attribute, size 0 and the VERSION flag the call touches no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0_usize,
            1_u32,
        )
    };
    match abi {
        abi if abi >= 6 => Ok(()),
        abi if abi >= 1 => Err(format!("Landlock ABI {abi}: signals are scoped from ABI 6")),
        _ => Err("no Landlock in this kernel".into()),
    }
}
