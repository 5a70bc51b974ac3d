//! Starting a command with resource limits: fork, set the limits, exec. posix_spawn runs no
//! code of ours between its fork and its exec, so a command with `limits` takes this slower
//! path; without it there would be a window in which the command runs unlimited.
//!
//! std's `Command` does the fork, the stdio pipes, the process group, the empty signal mask and
//! the reporting of an exec error back to the parent. Its `pre_exec` hook then resets every
//! signal's disposition, raises the OOM score, enters the working directory by descriptor
//! (`fchdir`, as the posix_spawn path does), sets the limits and execs with `execve` itself —
//! the same call posix_spawn makes. std's own exec would be
//! `execvp`, which runs a file without a `#!` line through /bin/sh instead of refusing it as
//! posix_spawn does; the hook never returns to it unless the exec failed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::process::Pid;

use super::oom;
use super::spawn::{null_terminated, ChildEnv};
use crate::limits::RlimitPlan;

/// Linux's highest signal number (`_NSIG - 1`).
const LAST_SIGNAL: libc::c_int = 64;

/// What to exec, prepared by `spawn` exactly as for posix_spawn.
pub(super) struct Image<'a> {
    /// The resolved executable.
    pub(super) path: CString,
    /// argv, argv[0] the program as the user named it.
    pub(super) argv: Vec<CString>,
    pub(super) env: ChildEnv,
    /// The working directory, an open folder.
    pub(super) cwd: BorrowedFd<'a>,
}

/// Starts `image` with `limits` set before exec, in the cgroup whose `cgroup.procs` is open as
/// `cgroup`; `stdio` become its fds 0, 1 and 2.
pub(super) fn spawn(
    image: Image<'_>,
    stdio: [&OwnedFd; 3],
    limits: RlimitPlan,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Pid> {
    let [stdin, stdout, stderr] = stdio;
    let mut command = Command::new(std::ffi::OsStr::from_bytes(image.path.as_bytes()));
    let cwd = image.cwd.as_raw_fd();
    let cgroup = cgroup.map(|fd| fd.as_raw_fd());
    command
        .process_group(0)
        .stdin(Stdio::from(stdin.try_clone()?))
        .stdout(Stdio::from(stdout.try_clone()?))
        .stderr(Stdio::from(stderr.try_clone()?));
    let exec = Exec::new(image.path, image.argv, image.env);
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // work is sound. It does no allocation and takes no lock: `default_signal_dispositions`
    // and `raise_own_oom_score` make system calls on constants, `fchdir` and the `write` to
    // `cgroup.procs` are system calls on descriptors the caller keeps open until `spawn`
    // returns (the child has its copies) and on a constant buffer,
    // `limits.apply` makes setrlimit calls on plain values copied into the closure,
    // `exec.execve` calls execve on pointers prepared before the fork, and `last_os_error`
    // only reads errno.
    unsafe {
        command.pre_exec(move || {
            default_signal_dispositions();
            empty_signal_mask();
            // Before the limits: a tiny `open_files` would leave no descriptor to write with.
            oom::raise_own_oom_score();
            if libc::fchdir(cwd) != 0 {
                return Err(io::Error::last_os_error());
            }
            // "0" moves the writer itself. Failing leaves the command to the mark alone.
            if let Some(procs) = cgroup {
                libc::write(procs, b"0".as_ptr().cast(), 1);
            }
            limits.apply()?;
            exec.execve();
            Err(io::Error::last_os_error())
        });
    }
    let child = command.spawn()?;
    // The child is reaped by its `ProcessGroup` (with wait4, for its usage), never through
    // std's handle, which does nothing when dropped.
    Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("fork gave no process id"))
}

/// `execve`'s arguments, built in the parent: the pointer arrays point into the strings owned
/// by the same value (and into the runner's environment, built once and never changed).
struct Exec {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    // Own what `argv` and `envp` point to.
    _argv: Vec<CString>,
    _env: ChildEnv,
}

// SAFETY: the raw pointers point only into heap buffers owned by this value (moving the
// `Vec`s and `CString`s does not move those buffers) or into the static BASE_ENV; nothing
// writes through them, and they are read only in the forked child. Sending or sharing the
// value between threads can therefore not race.
unsafe impl Send for Exec {}
// SAFETY: as for `Send`: the value is never mutated after it is built.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(path: CString, argv: Vec<CString>, env: ChildEnv) -> Self {
        Exec {
            path,
            argv: null_terminated(&argv),
            envp: env.pointers(),
            _argv: argv,
            _env: env,
        }
    }

    /// Replaces the process image; returns only when the exec failed (errno says why).
    fn execve(&self) {
        // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NUL-terminated arrays of
        // pointers to NUL-terminated strings, all kept alive by `self`.
        unsafe {
            libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
        }
    }
}

/// No signal blocked, as posix_spawn's `POSIX_SPAWN_SETSIGMASK` with an empty set: the
/// runner's threads block SIGCHLD (and, under the PID-1 init, the init's signals were blocked
/// at the fork), and a command must not inherit that. Async-signal-safe.
fn empty_signal_mask() {
    // SAFETY: an all-zero `sigset_t` is a valid value, and sigemptyset initialises it fully;
    // sigprocmask is async-signal-safe and only reads the set.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Every signal back to its default disposition, as posix_spawn's `POSIX_SPAWN_SETSIGDEF`
/// does: the runner ignores SIGPIPE and a command must not inherit that. Async-signal-safe.
/// glibc's own signals (32 and 33) cannot be set through it; posix_spawn leaves them ignored,
/// this path at their default, and every glibc program installs its handlers for them anyway.
fn default_signal_dispositions() {
    // SAFETY: an all-zero `sigaction` is a valid value: handler SIG_DFL (0), empty mask, no
    // flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    for signal in 1..=LAST_SIGNAL {
        // SAFETY: sigaction is async-signal-safe and only reads `default`; numbers that
        // cannot be changed (SIGKILL, SIGSTOP, glibc's internal ones) are refused with EINVAL,
        // which leaves them as they are.
        unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
    }
}
