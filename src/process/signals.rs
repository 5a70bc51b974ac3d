//! Signal masks and dispositions, where rustix has no call for a process that also links libc:
//! the whole-mask blocking around a child's clone and the child's reset to defaults
//! (`AllSignalsBlocked`, `default_dispositions`, `unblock_all`), and a set of signals to block
//! and wait for (`SignalSet`: the runner's blocked SIGCHLD, the PID-1 init's loop).

use std::io;
use std::mem::MaybeUninit;

use rustix::process::Signal;

/// Linux's highest signal number (`_NSIG - 1`).
const LAST_SIGNAL: libc::c_int = 64;

/// The kernel's own signal set on every architecture with 64 signals (x86-64, arm64, riscv64):
/// one bit per signal, signal n at bit n - 1. The raw system calls take it, not glibc's
/// 1024-bit `sigset_t`.
type KernelSigset = u64;

/// `rt_sigprocmask` on the calling thread, as the raw system call: glibc's wrappers leave its
/// own two signals (SIGCANCEL, SIGSETXID) out, and around a clone every signal must be blocked.
/// Returns the previous mask; cannot fail with these arguments. Async-signal-safe: one system
/// call on values on the stack.
fn set_thread_mask(how: libc::c_int, set: KernelSigset) -> KernelSigset {
    let mut previous: KernelSigset = 0;
    // SAFETY: `set` and `previous` are valid kernel signal sets (the kernel reads one and writes
    // the other) of the size passed, `size_of::<KernelSigset>()`, which is the kernel's.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &set,
            &mut previous,
            std::mem::size_of::<KernelSigset>(),
        )
    };
    previous
}

/// Every signal blocked in the calling thread, glibc's two included, until dropped — as glibc's
/// posix_spawn blocks them around its clone. A child cloned meanwhile starts with this mask, so
/// no handler of the runner's (tokio's, std's) can run in it before `default_dispositions`.
pub(super) struct AllSignalsBlocked {
    previous: KernelSigset,
}

impl AllSignalsBlocked {
    pub(super) fn new() -> Self {
        AllSignalsBlocked {
            previous: set_thread_mask(libc::SIG_BLOCK, KernelSigset::MAX),
        }
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        set_thread_mask(libc::SIG_SETMASK, self.previous);
    }
}

/// In a child about to exec: nothing blocked, as posix_spawn's `POSIX_SPAWN_SETSIGMASK` with an
/// empty set (the runner's threads block SIGCHLD; a command must not inherit that).
pub(super) fn unblock_all() {
    set_thread_mask(libc::SIG_SETMASK, 0);
}

/// The signals a child sets back to their default disposition itself, before it unblocks any
/// (`default_dispositions`), as a kernel signal set.
///
/// A clone with `CLONE_CLEAR_SIGHAND` (clone3, Linux ≥ 5.5) gives the child every signal the
/// runner handles at its default already, in the kernel, and keeps only what the runner ignores
/// (SIG_IGN survives the clear, and an exec too): then only those are left to the child, one
/// `sigaction` each (SIGPIPE, which std ignores, and whatever the runner was started with
/// ignored) instead of one per signal. Without the flag (`libc::clone`) the child resets every
/// signal, as posix_spawn does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ToDefault(KernelSigset);

impl ToDefault {
    /// Every signal: after a clone that kept the runner's handlers.
    pub(super) const ALL: ToDefault = ToDefault(KernelSigset::MAX);

    /// After a clone that cleared the runner's handlers: the signals the runner ignores, read
    /// once, at the first start. Nothing in the runner ignores a signal after it has started
    /// (std ignores SIGPIPE before `main`; tokio only installs handlers, which the clear
    /// covers whenever they were installed), so the first reading holds; were a signal ignored
    /// later, its commands would start with it ignored, never with a handler of the runner's.
    pub(super) fn ignored_by_runner() -> ToDefault {
        static IGNORED: std::sync::OnceLock<ToDefault> = std::sync::OnceLock::new();
        *IGNORED.get_or_init(|| {
            let ignored = (1..=LAST_SIGNAL)
                .filter(|&signal| disposition(signal) == Some(libc::SIG_IGN))
                .fold(0, |set, signal| set | bit(signal));
            ToDefault(ignored)
        })
    }

    /// As stored in the child's plan.
    pub(super) fn bits(self) -> KernelSigset {
        self.0
    }
}

/// The signals with a handler (neither `SIG_DFL` nor `SIG_IGN`) in this process, as a kernel
/// signal set; glibc's own two, which its `sigaction` does not show, left out.
/// Async-signal-safe: a `sigaction` query per signal.
#[cfg(test)]
pub(super) fn handled() -> KernelSigset {
    (1..=LAST_SIGNAL)
        .filter(|&signal| {
            disposition(signal).is_some_and(|h| h != libc::SIG_DFL && h != libc::SIG_IGN)
        })
        .fold(0, |set, signal| set | bit(signal))
}

/// The bit of `signal` in a kernel signal set.
fn bit(signal: libc::c_int) -> KernelSigset {
    1 << (signal - 1)
}

/// The handler of `signal` in this process (`SIG_DFL`, `SIG_IGN` or a function), or `None`
/// where glibc does not say (its own two signals).
fn disposition(signal: libc::c_int) -> Option<libc::sighandler_t> {
    let mut action = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action sigaction only writes the current one into `action`,
    // a valid, writable `sigaction`.
    let status = unsafe { libc::sigaction(signal, std::ptr::null(), action.as_mut_ptr()) };
    // SAFETY: zeroed is a valid `sigaction`, and sigaction filled it in where it succeeded.
    (status == 0).then(|| unsafe { action.assume_init() }.sa_sigaction)
}

/// In a child, while every signal is still blocked: the signals of `to_default` (a
/// `ToDefault`'s bits) back to their default disposition, as posix_spawn's
/// `POSIX_SPAWN_SETSIGDEF`. The runner ignores SIGPIPE and handles SIGTERM, SIGINT and
/// SIGCHLD; a command inherits none of that. glibc's own two signals are refused by its
/// `sigaction` and keep their disposition until the exec resets handlers (or the clone cleared
/// them); their handlers act only on signals the process sent itself (they check the sender),
/// so one arriving in between does nothing. Async-signal-safe: `sigaction` is a system call
/// wrapper that allocates nothing and takes no lock.
pub(super) fn default_dispositions(to_default: KernelSigset) {
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || to_default & bit(signal) == 0 {
            continue; // Cannot be changed, or nothing to change.
        }
        // SAFETY: an all-zero `sigaction` is SIG_DFL with no flags and an empty mask: valid,
        // and it installs no handler. sigaction reads it from the stack and writes nothing back
        // (no old action asked for); glibc's two signals fail with EINVAL, which is fine.
        unsafe {
            let action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// A set of signals (glibc's `sigset_t`).
#[derive(Clone, Copy)]
pub(crate) struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// The set holding exactly `signals`.
    pub(crate) fn of(signals: &[Signal]) -> Self {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole set it is given, and sigaddset only sets a
        // bit of that initialised set; a named signal is always valid for it.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for signal in signals {
                libc::sigaddset(set.as_mut_ptr(), signal.as_raw());
            }
            SignalSet(set.assume_init())
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, signal: Signal) -> bool {
        // SAFETY: reads a bit of an initialised set.
        unsafe { libc::sigismember(&self.0, signal.as_raw()) == 1 }
    }

    /// Blocks these signals in the calling thread (and the threads it starts later); returns
    /// the mask it had before.
    pub(crate) fn block(&self) -> io::Result<SignalSet> {
        self.change_mask(libc::SIG_BLOCK)
    }

    /// Makes this set the calling thread's whole mask; returns the one before.
    pub(crate) fn set_as_mask(&self) -> io::Result<SignalSet> {
        self.change_mask(libc::SIG_SETMASK)
    }

    /// The calling thread's mask now.
    #[cfg(test)]
    pub(crate) fn current_mask() -> io::Result<SignalSet> {
        let mut previous = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: with a null set pthread_sigmask changes nothing and writes the current mask
        // into `previous`, initialising it when it returns 0.
        let result = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), previous.as_mut_ptr())
        };
        check(result)?;
        // SAFETY: initialised by the successful call above.
        Ok(SignalSet(unsafe { previous.assume_init() }))
    }

    fn change_mask(&self, how: libc::c_int) -> io::Result<SignalSet> {
        let mut previous = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `self.0` is an initialised set; `previous` is written in full by a call that
        // returns 0.
        let result = unsafe { libc::pthread_sigmask(how, &self.0, previous.as_mut_ptr()) };
        check(result)?;
        // SAFETY: initialised by the successful call above.
        Ok(SignalSet(unsafe { previous.assume_init() }))
    }

    /// Waits until one of these signals (blocked by the caller) is pending and takes it.
    pub(crate) fn wait(&self) -> io::Result<i32> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `self.0` is an initialised set and `signal` a valid place for the number.
        check(unsafe { libc::sigwait(&self.0, &mut signal) })?;
        Ok(signal)
    }
}

impl PartialEq for SignalSet {
    /// The same signals 1..=64 (what lies past them in glibc's set is never used).
    fn eq(&self, other: &Self) -> bool {
        (1..=LAST_SIGNAL).all(|signal| {
            // SAFETY: reads bits of two initialised sets.
            unsafe { libc::sigismember(&self.0, signal) == libc::sigismember(&other.0, signal) }
        })
    }
}

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<i32> = (1..=LAST_SIGNAL)
            // SAFETY: reads bits of an initialised set.
            .filter(|&signal| unsafe { libc::sigismember(&self.0, signal) } == 1)
            .collect();
        f.debug_tuple("SignalSet").field(&members).finish()
    }
}

/// pthread functions return an errno value instead of setting errno.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(result))
    }
}

/// The calling thread's blocked signals as /proc shows them (for tests).
#[cfg(test)]
pub(crate) fn own_blocked() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:\t"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_blocked_while_the_guard_lives_and_restored_after() {
        let before = own_blocked();
        {
            let _blocked = AllSignalsBlocked::new();
            // All but SIGKILL and SIGSTOP, which cannot be blocked; glibc's own two included.
            let unblockable = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));
            assert_eq!(own_blocked(), !unblockable);
        }
        assert_eq!(own_blocked(), before);
    }

    #[test]
    fn sets_block_and_restore_the_thread_mask() {
        let usr1 = SignalSet::of(&[Signal::USR1]);
        assert!(usr1.contains(Signal::USR1));
        assert!(!usr1.contains(Signal::USR2));
        let before = SignalSet::current_mask().unwrap();
        let previous = usr1.block().unwrap();
        assert_eq!(previous, before);
        assert!(SignalSet::current_mask().unwrap().contains(Signal::USR1));
        assert_eq!(
            own_blocked() & (1 << (libc::SIGUSR1 - 1)),
            1 << (libc::SIGUSR1 - 1)
        );
        previous.set_as_mask().unwrap();
        assert_eq!(SignalSet::current_mask().unwrap(), before);
    }
}
