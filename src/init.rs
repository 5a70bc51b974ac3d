//! PID 1 duties (what tini does), for when the runner is a container's init process.
//!
//! `become_init_if_pid1()` is called first thing in `main`, before any thread exists. When the
//! process is not PID 1 it returns at once. When it is PID 1 it forks: the child returns and
//! runs the server; the parent stays behind as a tiny init that forwards termination signals
//! to the server, reaps every orphan, and exits with the server's status.
//!
//! Why a separate process instead of reaping inside the server: the server waits for its own
//! commands by pid (`waitpid(pid)`), and an init must also `waitpid(-1)` for orphans the kernel
//! hands it. Doing both in one process races: a `waitpid(-1)` may collect a command's status
//! before the command's owner asks for it, and the command's exit code is lost. With two
//! processes the server's commands are the *server's* children, while the init's only direct
//! child is the server; everything else it ever sees is an orphan that nobody waits for.
//!
//! Why no `PR_SET_CHILD_SUBREAPER`: it only matters for a process that is *not* the pid
//! namespace's init. PID 1 already is the reaper of its namespace: the kernel reparents every
//! orphan to it (`find_new_reaper()` in kernel/exit.c falls back to the namespace's
//! `child_reaper`, which is PID 1). When the runner is not PID 1 (e.g. `docker run --init`, or
//! a local shell), whoever is PID 1 there reaps orphans, and we stay out of the way.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Signals the init passes on to the server: the ones a container runtime or a user sends to
/// ask for shutdown (`docker stop`, Kubernetes termination, Ctrl-C) or for an action.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Set in the server process forked by the init: the process above it is the runner as PID 1.
static UNDER_INIT: AtomicBool = AtomicBool::new(false);

/// Whether the runner is PID 1 and what that means, for the start-up line (`crate::startup`).
pub fn role() -> &'static str {
    if UNDER_INIT.load(Ordering::Relaxed) {
        "yes (a tiny init reaps orphans and forwards signals to this server)"
    } else if std::process::id() == 1 {
        "yes, without init duties (the init could not start: see above)"
    } else {
        "no (whoever is PID 1 reaps orphans)"
    }
}

/// Becomes a tiny init when running as PID 1; returns in the process that runs the server.
///
/// Must be called before any thread is started (see the safety argument at `fork`).
pub fn become_init_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    let watched = watched_signals();
    // Block before forking so that no signal sent between the fork and the init's first
    // `sigwait` is lost: a blocked signal stays pending. For PID 1 this is also what makes
    // signals arrive at all: the kernel drops signals a namespace init has left at SIG_DFL
    // (SIGNAL_UNKILLABLE in `sig_task_ignored()`), but never a blocked one ("Blocked signals
    // are never ignored", `sig_ignored()` in kernel/signal.c). tini relies on the same rule.
    let previous = match block(&watched) {
        Ok(previous) => previous,
        Err(err) => {
            // Without a blocked mask the init would miss signals; run the server in this
            // process instead, as if there were no init duty at all.
            eprintln!(
                "direktiv-cmd: cannot block signals as PID 1 ({err}); serving without init duties"
            );
            return;
        }
    };
    match spawn_server() {
        Ok(ForkResult::Child) => {
            UNDER_INIT.store(true, Ordering::Relaxed);
            restore_mask(&previous);
        }
        Ok(ForkResult::Parent { child }) => supervise(child, &watched),
        Err(err) => {
            eprintln!("direktiv-cmd: cannot fork from PID 1 ({err}); serving without init duties");
            restore_mask(&previous);
        }
    }
}

/// The signals the init waits for: the forwarded ones and SIGCHLD (a child ended).
fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks `signals` for the (single-threaded) process and returns the mask it had before.
fn block(signals: &SigSet) -> nix::Result<SigSet> {
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(signals), Some(&mut previous))?;
    Ok(previous)
}

/// Gives the server the signal mask the process started with, so its own handlers (tokio's
/// SIGTERM listener) and its commands (which inherit the mask over exec) see signals normally.
fn restore_mask(previous: &SigSet) {
    if let Err(err) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(previous), None) {
        eprintln!("direktiv-cmd: cannot restore the signal mask ({err})");
    }
}

/// Forks the process that will run the server.
fn spawn_server() -> nix::Result<ForkResult> {
    // SAFETY: `fork` is only unsound when other threads exist, because the child gets a copy
    // of memory in which another thread may hold a lock (allocator, stdio) forever. This runs
    // first thing in `main`: the Rust runtime starts no threads before `main`, and nothing
    // before this call (a getpid and a sigprocmask) starts one, so the process has exactly one
    // thread and the child's copy of every lock is in a consistent, unlocked state.
    unsafe { fork() }
}

/// The init's loop: waits for signals, forwards the termination ones, reaps on SIGCHLD, and
/// exits with the server's status once the server is gone.
fn supervise(server: Pid, watched: &SigSet) -> ! {
    loop {
        // Reap after every wake-up, whatever the signal: it costs one syscall when there is
        // nothing to collect, and no ending can slip between two SIGCHLDs.
        if let Some(code) = reap_children(server) {
            std::process::exit(code);
        }
        match watched.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(signal) => forward(signal, server),
            // sigwait only fails with EINVAL for a bad set, which `watched_signals` rules
            // out; nothing to do but wait again.
            Err(_) => {}
        }
    }
}

/// Passes `signal` on to the server. Only the server itself: it stops its commands' process
/// groups on its own terms (SIGTERM, grace, SIGKILL), which a group-wide signal would bypass.
///
/// A signal that arrives before the server has installed its handlers takes its default
/// action there (SIGTERM ends it), and the init then exits with 128 + signal, as tini does:
/// nothing was in flight yet, so there was nothing to drain.
fn forward(signal: Signal, server: Pid) {
    // ESRCH (the server just ended) is fine: the next SIGCHLD makes the init exit.
    let _ = kill(server, signal);
}

/// Collects every child that has ended (orphans and the server) without blocking.
/// Returns the init's exit code when one of them was the server.
///
/// SIGCHLD is a standard signal, so several endings coalesce into one pending SIGCHLD:
/// `waitpid(-1, WNOHANG)` runs until nothing is left to collect (POSIX: standard signals are
/// not queued).
fn reap_children(server: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(status) if status.pid() == Some(server) => {
                if let Some(code) = exit_code(status) {
                    return Some(code);
                }
            }
            Ok(_) => {} // an orphan: collecting its status was the whole point
        }
    }
}

/// The shell convention for a child's end: its exit status, or 128 + signal number when a
/// signal killed it. `None` when the status is not an ending (stopped, continued).
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_shell_convention() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some(143)
        );
    }

    #[test]
    fn stopped_or_continued_is_not_an_ending() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(exit_code(WaitStatus::Continued(pid)), None);
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn watches_forwarded_signals_and_sigchld_only() {
        let watched = watched_signals();
        for signal in FORWARDED {
            assert!(watched.contains(signal), "{signal} must be forwarded");
        }
        assert!(watched.contains(Signal::SIGCHLD));
        // Synchronous faults must keep their default action, or a bug would spin forever.
        for signal in [
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGFPE,
            Signal::SIGILL,
        ] {
            assert!(!watched.contains(signal));
        }
        // SIGKILL/SIGSTOP cannot be caught; SIGPIPE is not ours to forward.
        assert!(!watched.contains(Signal::SIGKILL));
        assert!(!watched.contains(Signal::SIGPIPE));
    }

    #[test]
    fn not_pid1_returns_at_once() {
        // The test process is never PID 1 here, so this must be a no-op that keeps the
        // signal mask untouched.
        let before = SigSet::thread_get_mask().unwrap();
        become_init_if_pid1();
        assert_eq!(SigSet::thread_get_mask().unwrap(), before);
    }
}
