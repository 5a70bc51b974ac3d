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

/// In a child, while every signal is still blocked: every signal back to its default
/// disposition, as posix_spawn's `POSIX_SPAWN_SETSIGDEF` with every signal. The runner ignores
/// SIGPIPE and handles SIGTERM, SIGINT and SIGCHLD; a command inherits none of that. glibc's
/// own two signals are refused by its `sigaction` and keep their disposition until the exec
/// resets handlers; their handlers act only on signals the process sent itself (they check the
/// sender), so one arriving in between does nothing. Async-signal-safe: `sigaction` is a
/// system call wrapper that allocates nothing and takes no lock.
pub(super) fn default_dispositions() {
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue; // Cannot be changed.
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
