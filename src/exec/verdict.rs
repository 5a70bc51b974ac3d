//! What a command's own ending means: success, `cmd.exit.N`, `cmd.signal.NAME`, or one of the
//! kernel's verdicts the runner can tell apart — an OOM kill (`cmd.oom`) or a passed limit
//! (`cmd.limit.memory`, `cmd.limit.cpu`, `cmd.limit.file_size`), also when a shell or script
//! reports its child's death by one as its exit status.

use crate::error::Failure;
use crate::limits::Limits;
use crate::process::{signal_name, ExitKind, Usage};

/// How a shell reports a child killed by SIGKILL (128 + 9): `sh -c 'python big.py; ...'`
/// killed in the middle by the OOM killer exits with it.
const SHELL_SAW_SIGKILL: i32 = 128 + libc::SIGKILL;

/// What is known about a command that ended by itself (not stopped by the runner).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ending {
    pub(super) exit: ExitKind,
    /// The limits it ran under.
    pub(super) limits: Limits,
    pub(super) usage: Option<Usage>,
    /// The memory cgroup counted an OOM kill while it ran (false when that cannot be read).
    pub(super) oom_killed: bool,
    /// The command's own memory cgroup counted an OOM kill: its limit, in bytes.
    pub(super) memory_limit_passed: Option<u64>,
}

/// Whether an ending could be the OOM killer's: only then is the OOM-kill count worth reading.
pub(super) fn may_be_oom_kill(exit: ExitKind) -> bool {
    matches!(
        exit,
        ExitKind::Signal(libc::SIGKILL) | ExitKind::Code(SHELL_SAW_SIGKILL)
    )
}

/// Success, or the failure the command's ending shows.
///
/// An OOM kill in the command's own memory cgroup is its `memory` limit, however the command
/// then ended: the kernel (v2's `memory.oom.group`) or the runner (v1) kills the whole command,
/// and one that still got to exit by itself first lost a process to its limit all the same.
///
/// A SIGKILL the runner did not send, while the OOM-kill count rose, is the OOM killer's
/// (the count is the container's, so a kill of another request's command at the same moment
/// would be taken for this one's: the two coincide only if something else SIGKILLed this
/// command then). A shell exiting 137 at such a moment had its child killed by it.
pub(super) fn verdict(ending: &Ending) -> Result<(), Failure> {
    let cpu_ms = ending.usage.map_or(0, |usage| usage.cpu_ms());
    if let Some(bytes) = ending.memory_limit_passed {
        return Err(Failure::MemoryLimit { bytes });
    }
    match ending.exit {
        ExitKind::Code(0) => Ok(()),
        ExitKind::Code(SHELL_SAW_SIGKILL) if ending.oom_killed => Err(Failure::Oom),
        ExitKind::Code(code) => Err(ending
            .limits
            .exceeded_in_child(code)
            .unwrap_or(Failure::Exit { code })),
        ExitKind::Signal(libc::SIGKILL) if ending.oom_killed => Err(Failure::Oom),
        ExitKind::Signal(signal) => {
            Err(ending
                .limits
                .exceeded(signal, cpu_ms)
                .unwrap_or_else(|| Failure::Signal {
                    name: signal_name(signal),
                }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(exit: ExitKind, limits: Limits, cpu_ms: u64, oom_killed: bool) -> Ending {
        Ending {
            memory_limit_passed: None,
            exit,
            limits,
            usage: Some(Usage {
                max_rss_kib: 1000,
                user_ms: cpu_ms,
                sys_ms: 0,
            }),
            oom_killed,
        }
    }

    fn code(ending: Ending) -> String {
        match verdict(&ending) {
            Ok(()) => "ok".into(),
            Err(failure) => failure.code(),
        }
    }

    const NONE: Limits = Limits {
        memory: None,
        cpu: None,
        file_size: None,
        open_files: None,
    };
    const CPU_2S: Limits = Limits {
        cpu: Some(2),
        ..NONE
    };

    #[test]
    fn exits_and_signals() {
        assert_eq!(code(ending(ExitKind::Code(0), NONE, 0, true)), "ok");
        assert_eq!(code(ending(ExitKind::Code(3), NONE, 0, true)), "cmd.exit.3");
        assert_eq!(
            code(ending(ExitKind::Code(137), NONE, 0, false)),
            "cmd.exit.137"
        );
        assert_eq!(
            code(ending(ExitKind::Signal(libc::SIGSEGV), NONE, 0, true)),
            "cmd.signal.SIGSEGV"
        );
    }

    #[test]
    fn a_sigkill_while_the_oom_count_rose_is_an_oom_kill() {
        let killed = ExitKind::Signal(libc::SIGKILL);
        assert_eq!(code(ending(killed, NONE, 0, true)), "cmd.oom");
        assert_eq!(code(ending(ExitKind::Code(137), NONE, 0, true)), "cmd.oom");
        // Unreadable or unchanged count: the plain signal.
        assert_eq!(code(ending(killed, NONE, 0, false)), "cmd.signal.SIGKILL");
        // The OOM kill wins over a CPU limit whose time was also used up.
        assert_eq!(code(ending(killed, CPU_2S, 5000, true)), "cmd.oom");
    }

    #[test]
    fn limits_are_told_apart_from_plain_signals() {
        let xcpu = ExitKind::Signal(libc::SIGXCPU);
        let killed = ExitKind::Signal(libc::SIGKILL);
        assert_eq!(code(ending(xcpu, CPU_2S, 2000, false)), "cmd.limit.cpu");
        assert_eq!(code(ending(killed, CPU_2S, 3000, false)), "cmd.limit.cpu");
        assert_eq!(
            code(ending(killed, CPU_2S, 100, false)),
            "cmd.signal.SIGKILL"
        );
        assert_eq!(code(ending(xcpu, NONE, 2000, false)), "cmd.signal.SIGXCPU");
        let file_size = Limits {
            file_size: Some(1 << 20),
            ..NONE
        };
        let xfsz = ExitKind::Signal(libc::SIGXFSZ);
        assert_eq!(
            code(ending(xfsz, file_size, 0, false)),
            "cmd.limit.file_size"
        );
        assert_eq!(code(ending(xfsz, NONE, 0, false)), "cmd.signal.SIGXFSZ");
        // A shell's report of its child's death by the same signals.
        let shell = |code| ExitKind::Code(code);
        assert_eq!(code(ending(shell(152), CPU_2S, 0, false)), "cmd.limit.cpu");
        assert_eq!(
            code(ending(shell(153), file_size, 0, false)),
            "cmd.limit.file_size"
        );
        assert_eq!(code(ending(shell(152), NONE, 0, false)), "cmd.exit.152");
        assert_eq!(code(ending(shell(153), CPU_2S, 0, false)), "cmd.exit.153");
    }

    #[test]
    fn a_kill_in_the_commands_memory_cgroup_is_its_memory_limit() {
        let in_limit = |exit, oom_killed| Ending {
            memory_limit_passed: Some(256 << 20),
            ..ending(exit, NONE, 0, oom_killed)
        };
        let killed = ExitKind::Signal(libc::SIGKILL);
        assert_eq!(code(in_limit(killed, false)), "cmd.limit.memory");
        // Also counted by the container's cgroup (v2 counts upwards): still the limit's.
        assert_eq!(code(in_limit(killed, true)), "cmd.limit.memory");
        assert_eq!(
            code(in_limit(ExitKind::Code(137), true)),
            "cmd.limit.memory"
        );
        assert_eq!(code(in_limit(ExitKind::Code(0), false)), "cmd.limit.memory");
        assert_eq!(
            verdict(&in_limit(killed, false)).unwrap_err().to_string(),
            "exceeded its memory limit of 256Mi and was killed"
        );
    }
}
