//! A command's process between its clone and its exec: the duties it performs, in a fixed
//! order, before it becomes the command (`DUTIES`), and the exec itself.
//!
//! The child shares the runner's memory (`clone.rs`), which is sound only because of what it
//! does not do: it runs no signal handler of the runner (every signal stays blocked until every
//! disposition is back at its default), takes no lock, allocates nothing, never returns or
//! unwinds into the runner's frames, and reads only the plan prepared before the clone, which
//! nothing changes or frees until the parent resumes. Every duty is made of system calls:
//! rustix's (raw system calls, which return their error instead of writing errno) where rustix
//! has the call, libc's thin wrappers for the others (`sigaction`, `execve`, `_exit`). Those may
//! write errno: the child runs on the calling thread's thread pointer, so that is the suspended
//! caller's errno, which nothing reads after the clone — glibc's own posix_spawn child does the
//! same.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use rustix::io::Errno;

use super::image::{ExecArgs, Image};
use super::signals::{self, ToDefault};
use super::{landlock, oom};
use crate::limits::RlimitPlan;

/// The exit status of a child whose preparation or exec failed, as posix_spawn's: the parent
/// reaps it and reports the error instead.
const SETUP_FAILED: libc::c_int = 127;

/// One thing the child does before it execs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duty {
    /// Every signal back to its default disposition, while all are still blocked (those the
    /// clone has not set back already: `ToDefault`).
    DefaultSignals,
    /// Lead a new process group: the unit the runner signals and stops.
    OwnProcessGroup,
    /// Enter the working directory, by descriptor.
    WorkingDirectory,
    /// Move into the request's cgroup (when not created in it), so not even the command's
    /// first fork starts outside. Failing is no error: the command is then tracked by the
    /// environment mark alone, and the parent is told.
    JoinCgroup,
    /// Move into the command's own memory cgroup (when not created in it): its `memory`
    /// limit. Failing is an error: the command would run without its limit.
    JoinMemoryCgroup,
    /// Become the OOM killer's first choice. Best effort; before the limits, since a tiny
    /// `open_files` would leave no descriptor to write with.
    OomScore,
    /// The pipes onto descriptors 0, 1 and 2.
    Stdio,
    /// The command's resource limits.
    Limits,
    /// Become the request's own user (`CMD_ISOLATION=uid`): no supplementary groups, then the
    /// gid, then the uid (after the limits: a raised hard limit needs the privilege this drops).
    SwitchUser,
    /// Enter the request's Landlock domain (no new privileges, then the ruleset), last before
    /// the signals open: from here on the child may touch only what the ruleset grants, and
    /// it needs nothing more but the exec.
    Landlock,
    /// Nothing blocked, as a command must start (the runner's threads block SIGCHLD).
    UnblockSignals,
}

/// The duties, in the order the child performs them before it execs; the first that fails
/// ends the child with its errno, which the parent reports.
const DUTIES: [Duty; 11] = [
    Duty::DefaultSignals,
    Duty::OwnProcessGroup,
    Duty::WorkingDirectory,
    Duty::JoinCgroup,
    Duty::JoinMemoryCgroup,
    Duty::OomScore,
    Duty::Stdio,
    Duty::Limits,
    Duty::SwitchUser,
    Duty::Landlock,
    Duty::UnblockSignals,
];

/// How a command is kept apart from other requests' commands: the Landlock ruleset it enters
/// and the user it becomes (both prepared before the clone).
#[derive(Clone, Copy, Default)]
pub(crate) struct Isolation<'a> {
    pub(crate) domain: Option<BorrowedFd<'a>>,
    pub(crate) user: Option<u32>,
}

/// Everything the child reads, prepared before the clone, and what it tells its parent.
pub(super) struct ChildPlan<'a> {
    exec: ExecArgs<'a>,
    cwd: BorrowedFd<'a>,
    /// Become descriptors 0, 1 and 2.
    stdio: [BorrowedFd<'a>; 3],
    /// The request cgroup's `cgroup.procs`, open for writing, when the child moves itself in.
    join_cgroup: Option<BorrowedFd<'a>>,
    /// The command's memory cgroup's `cgroup.procs`, open for writing, when the child moves
    /// itself in.
    join_memory: Option<BorrowedFd<'a>>,
    limits: RlimitPlan,
    /// The request's Landlock ruleset, when requests are isolated by Landlock.
    domain: Option<BorrowedFd<'a>>,
    /// The uid (and gid) the command runs as, when requests have users of their own.
    user: Option<u32>,
    /// The signals the child sets back to their default itself (a `ToDefault`'s bits): which
    /// depends on the clone that makes it (`set_signals_to_default`, before each).
    signals_to_default: AtomicU64,
    report: Report,
}

/// What the child tells its parent, in memory they share; read by the parent only once the
/// child has exec'd or exited (the kernel's wake-up of the parent orders the writes before).
#[derive(Default)]
struct Report {
    /// Set first thing: a child that never ran was killed before its first instruction.
    ran: AtomicBool,
    /// Set once the child is in the request's cgroup (by `JoinCgroup`).
    joined_cgroup: AtomicBool,
    /// The errno of the duty (or exec) that failed; 0 while none did.
    error: AtomicI32,
    /// Set when the duty that failed was `JoinMemoryCgroup`.
    memory_join_failed: AtomicBool,
    /// The signals that still had a handler of the runner's once `DefaultSignals` was done.
    #[cfg(test)]
    handled_after_reset: AtomicU64,
}

impl<'a> ChildPlan<'a> {
    /// The plan for `image`, with `stdio` on 0, 1 and 2, `limits`, `join_cgroup` and
    /// `join_memory` (each a `cgroup.procs`) to move into, and `isolation` (the user to become
    /// and the Landlock ruleset to enter) before exec.
    pub(super) fn new(
        image: &'a Image<'a>,
        stdio: [&'a OwnedFd; 3],
        limits: RlimitPlan,
        join_cgroup: Option<BorrowedFd<'a>>,
        join_memory: Option<BorrowedFd<'a>>,
        isolation: Isolation<'a>,
    ) -> Self {
        let [stdin, stdout, stderr] = stdio;
        ChildPlan {
            exec: image.exec_args(),
            cwd: image.cwd(),
            stdio: [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
            join_cgroup,
            join_memory,
            limits,
            domain: isolation.domain,
            user: isolation.user,
            signals_to_default: AtomicU64::new(ToDefault::ALL.bits()),
            report: Report::default(),
        }
    }

    /// The signals the child is to set back to their default itself, for the clone about to
    /// make it (`ToDefault`).
    pub(super) fn set_signals_to_default(&self, signals: ToDefault) {
        self.signals_to_default
            .store(signals.bits(), Ordering::SeqCst);
    }

    /// Whether the child ran at all (read once it has exec'd or exited).
    pub(super) fn child_ran(&self) -> bool {
        self.report.ran.load(Ordering::SeqCst)
    }

    /// Whether the child moved itself into the request's cgroup.
    pub(super) fn child_joined_cgroup(&self) -> bool {
        self.report.joined_cgroup.load(Ordering::SeqCst)
    }

    /// The error of the duty (or the exec) that failed in the child, if one did.
    pub(super) fn child_error(&self) -> Option<io::Error> {
        match self.report.error.load(Ordering::SeqCst) {
            0 => None,
            errno if self.report.memory_join_failed.load(Ordering::SeqCst) => {
                let why = io::Error::from_raw_os_error(errno);
                Some(io::Error::other(format!(
                    "cannot enter the command's memory cgroup (its memory limit): {why}"
                )))
            }
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }

    /// The signals that still had a handler of the runner's in the child once it had reset
    /// them (read once it has exec'd or exited).
    #[cfg(test)]
    pub(super) fn handled_after_reset(&self) -> u64 {
        self.report.handled_after_reset.load(Ordering::SeqCst)
    }

    /// Runs in the child: every duty, then the exec. Returns only when one of them failed,
    /// with its errno (positive).
    fn run(&self) -> i32 {
        self.report.ran.store(true, Ordering::SeqCst);
        for duty in DUTIES {
            if let Err(errno) = self.perform(duty) {
                return errno.raw_os_error();
            }
            #[cfg(test)]
            if duty == Duty::DefaultSignals {
                let handled = signals::handled();
                self.report
                    .handled_after_reset
                    .store(handled, Ordering::SeqCst);
            }
        }
        // SAFETY: `path` is a NUL-terminated string, `argv` and `envp` NUL-terminated arrays
        // of pointers to NUL-terminated strings, all owned by the parent's frame (or BASE_ENV)
        // and alive while the parent is suspended, which it is until this call succeeds.
        unsafe { libc::execve(self.exec.path(), self.exec.argv(), self.exec.envp()) };
        // execve returns only when it failed; errno says why (a read of the thread's errno:
        // no allocation).
        match io::Error::last_os_error().raw_os_error() {
            Some(errno) if errno > 0 => errno,
            _ => libc::EINVAL,
        }
    }

    fn perform(&self, duty: Duty) -> Result<(), Errno> {
        match duty {
            Duty::DefaultSignals => {
                signals::default_dispositions(self.signals_to_default.load(Ordering::SeqCst));
            }
            Duty::OwnProcessGroup => rustix::process::setpgid(None, None)?,
            Duty::WorkingDirectory => rustix::process::fchdir(self.cwd)?,
            Duty::JoinCgroup => {
                // "0" moves the writer itself.
                let joined = self
                    .join_cgroup
                    .is_some_and(|procs| rustix::io::write(procs, b"0").is_ok());
                if joined {
                    self.report.joined_cgroup.store(true, Ordering::SeqCst);
                }
            }
            Duty::JoinMemoryCgroup => {
                if let Some(procs) = self.join_memory {
                    if let Err(errno) = rustix::io::write(procs, b"0") {
                        self.report.memory_join_failed.store(true, Ordering::SeqCst);
                        return Err(errno);
                    }
                }
            }
            Duty::OomScore => oom::raise_own_oom_score(),
            Duty::Stdio => self.install_stdio()?,
            Duty::Limits => self.limits.apply()?,
            Duty::SwitchUser => {
                if let Some(id) = self.user {
                    use rustix::process::{Gid, Uid};
                    let (uid, gid) = (Uid::from_raw(id), Gid::from_raw(id));
                    rustix::thread::set_thread_groups(&[])?;
                    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
                    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
                }
            }
            Duty::Landlock => {
                if let Some(ruleset) = self.domain {
                    landlock::enter(ruleset)?;
                }
            }
            Duty::UnblockSignals => signals::unblock_all(),
        }
        Ok(())
    }

    /// The pipes onto 0, 1 and 2. A pipe end that is itself below 3 (a runner started with
    /// one of them closed) is first copied above 2, so that no dup2 overwrites a descriptor
    /// still to be copied, and none is dup2'ed onto itself (which would keep it
    /// close-on-exec). Such copies close at exec, like the pipe ends themselves.
    fn install_stdio(&self) -> Result<(), Errno> {
        let above_stdio = |fd: BorrowedFd<'_>| -> Result<Option<OwnedFd>, Errno> {
            if fd.as_raw_fd() < 3 {
                rustix::io::fcntl_dupfd_cloexec(fd, 3).map(Some)
            } else {
                Ok(None)
            }
        };
        let [stdin, stdout, stderr] = self.stdio;
        let copies = [
            above_stdio(stdin)?,
            above_stdio(stdout)?,
            above_stdio(stderr)?,
        ];
        let [stdin_copy, stdout_copy, stderr_copy] = &copies;
        rustix::stdio::dup2_stdin(stdin_copy.as_ref().map_or(stdin, AsFd::as_fd))?;
        rustix::stdio::dup2_stdout(stdout_copy.as_ref().map_or(stdout, AsFd::as_fd))?;
        rustix::stdio::dup2_stderr(stderr_copy.as_ref().map_or(stderr, AsFd::as_fd))?;
        Ok(())
    }
}

/// The child's entry point, on its own stack; `plan` is the `ChildPlan` the clone was given.
pub(super) extern "C" fn child_main(plan: *mut c_void) -> libc::c_int {
    // SAFETY: `plan` is the pointer `clone_child` passed to clone: a `ChildPlan` in the parent's
    // frame, alive and unchanged until this process has exec'd or exited (see the clone call).
    let plan = unsafe { &*plan.cast_const().cast::<ChildPlan<'_>>() };
    let errno = plan.run();
    plan.report.error.store(errno, Ordering::SeqCst);
    // SAFETY: `_exit` ends this process at once, running no destructors and no atexit
    // handlers (which would act on the runner's shared state) and flushing no stdio buffers.
    unsafe { libc::_exit(SETUP_FAILED) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_reset_while_blocked_and_unblocked_last() {
        let position = |duty| DUTIES.iter().position(|d| *d == duty).unwrap();
        assert_eq!(position(Duty::DefaultSignals), 0);
        assert_eq!(position(Duty::UnblockSignals), DUTIES.len() - 1);
        assert!(position(Duty::JoinCgroup) < position(Duty::Stdio));
        // Into the memory cgroup after the request's: on v2 it is nested in it.
        assert!(position(Duty::JoinCgroup) < position(Duty::JoinMemoryCgroup));
        assert!(position(Duty::JoinMemoryCgroup) < position(Duty::Limits));
        assert!(position(Duty::OomScore) < position(Duty::Limits));
        assert!(position(Duty::Limits) < position(Duty::SwitchUser));
        // Nothing after the domain is entered needs a file it could deny.
        assert_eq!(position(Duty::Landlock), DUTIES.len() - 2);
    }
}
