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

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::process::{fork_single_threaded, ExitKind, Forked, SignalSet};

/// Signals the init passes on to the server: the ones a container runtime or a user sends to
/// ask for shutdown (`docker stop`, Kubernetes termination, Ctrl-C) or for an action.
const FORWARDED: [Signal; 6] = [
    Signal::TERM,
    Signal::INT,
    Signal::HUP,
    Signal::QUIT,
    Signal::USR1,
    Signal::USR2,
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
/// Must be called before any thread is started: a fork copies no other thread, but their
/// locks (the fork is refused when another thread runs).
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
    let previous = match watched.block() {
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
    match fork_single_threaded() {
        Ok(Forked::Child) => {
            UNDER_INIT.store(true, Ordering::Relaxed);
            restore_mask(&previous);
        }
        Ok(Forked::Parent(child)) => supervise(child, &watched),
        Err(err) => {
            eprintln!("direktiv-cmd: cannot fork from PID 1 ({err}); serving without init duties");
            restore_mask(&previous);
        }
    }
}

/// The signals the init waits for: the forwarded ones and SIGCHLD (a child ended).
fn watched_signals() -> SignalSet {
    let mut signals = FORWARDED.to_vec();
    signals.push(Signal::CHILD);
    SignalSet::of(&signals)
}

/// Gives the server the signal mask the process started with, so its own handlers (tokio's
/// SIGTERM listener) and its commands (which inherit the mask over exec) see signals normally.
fn restore_mask(previous: &SignalSet) {
    if let Err(err) = previous.set_as_mask() {
        eprintln!("direktiv-cmd: cannot restore the signal mask ({err})");
    }
}

/// The init's loop: waits for signals, forwards the termination ones, reaps on SIGCHLD, and
/// exits with the server's status once the server is gone.
fn supervise(server: Pid, watched: &SignalSet) -> ! {
    loop {
        // Reap after every wake-up, whatever the signal: it costs one syscall when there is
        // nothing to collect, and no ending can slip between two SIGCHLDs.
        if let Some(code) = reap_children(server) {
            std::process::exit(code);
        }
        // sigwait only fails with EINVAL for a bad set, which `watched_signals` rules out;
        // nothing to do but wait again.
        if let Some(signal) = watched.wait().ok().and_then(Signal::from_named_raw) {
            if signal != Signal::CHILD {
                forward(signal, server);
            }
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
    let _ = rustix::process::kill_process(server, signal);
}

/// Collects every child that has ended (orphans and the server) without blocking.
/// Returns the init's exit code when one of them was the server.
///
/// SIGCHLD is a standard signal, so several endings coalesce into one pending SIGCHLD:
/// `waitpid(-1, WNOHANG)` runs until nothing is left to collect (POSIX: standard signals are
/// not queued).
fn reap_children(server: Pid) -> Option<i32> {
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(None) | Err(Errno::CHILD) => return None,
            Err(Errno::INTR) => continue,
            Err(_) => return None,
            Ok(Some((pid, status))) if pid == server => {
                if let Some(code) = exit_code(status.as_raw()) {
                    return Some(code);
                }
            }
            Ok(Some(_)) => {} // an orphan: collecting its status was the whole point
        }
    }
}

/// The shell convention for a child's end: its exit status, or 128 + signal number when a
/// signal killed it. `None` when the raw wait status is not an ending (stopped, continued).
fn exit_code(status: i32) -> Option<i32> {
    ExitKind::from_wait_status(status).map(ExitKind::shell_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_shell_convention() {
        // Raw wait statuses: exited with 0 and 3, killed by SIGKILL, by SIGTERM with a core.
        assert_eq!(exit_code(0), Some(0));
        assert_eq!(exit_code(3 << 8), Some(3));
        assert_eq!(exit_code(libc::SIGKILL), Some(137));
        assert_eq!(exit_code(libc::SIGTERM | 0x80), Some(143));
    }

    #[test]
    fn stopped_or_continued_is_not_an_ending() {
        assert_eq!(exit_code((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(exit_code(0xffff), None);
    }

    #[test]
    fn watches_forwarded_signals_and_sigchld_only() {
        let watched = watched_signals();
        for signal in FORWARDED {
            assert!(watched.contains(signal), "{signal:?} must be forwarded");
        }
        assert!(watched.contains(Signal::CHILD));
        // Synchronous faults must keep their default action, or a bug would spin forever.
        for signal in [Signal::SEGV, Signal::BUS, Signal::FPE, Signal::ILL] {
            assert!(!watched.contains(signal));
        }
        // SIGKILL/SIGSTOP cannot be caught; SIGPIPE is not ours to forward.
        assert!(!watched.contains(Signal::KILL));
        assert!(!watched.contains(Signal::PIPE));
    }

    #[test]
    fn not_pid1_returns_at_once() {
        // The test process is never PID 1 here, so this must be a no-op that keeps the
        // signal mask untouched.
        let before = SignalSet::current_mask().unwrap();
        become_init_if_pid1();
        assert_eq!(SignalSet::current_mask().unwrap(), before);
    }
}
