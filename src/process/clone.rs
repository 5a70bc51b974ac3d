//! Making a command's process the way glibc's posix_spawn makes one: a `CLONE_VM | CLONE_VFORK`
//! child on a small stack of its own (`stack`), which shares the runner's memory (no page
//! tables are copied, no copy-on-write faults follow) while the calling thread waits until it
//! has exec'd or exited. What the child does meanwhile is `child`'s; it is created in the
//! request's cgroup where clone3 allows it (`clone3`).
//!
//! `CLONE_VFORK` is needed for more than the stack and the plan: Linux treats a process that
//! shares another's memory without it as one with that process for `oom_score_adj`. Its first
//! such clone marks the runner's memory (`MMF_MULTIPROCESS`, for good), and from then on the
//! child's own raise of its score (`child`, before exec) raises the runner's as well, making
//! the runner the OOM killer's first choice. A vfork child's score is its own.
//!
//! A child that never ran a single instruction was killed before it could: Linux kills what
//! `clone3(CLONE_INTO_CGROUP)` creates in a cgroup that took a `cgroup.kill` — which no read of
//! the cgroup's files shows — so such a child is the proof that the cgroup must not be used
//! again (`Failed::KilledAtBirth`).

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

use super::child::{child_main, ChildPlan};
use super::clone3;
use super::leaders::Starting;
use super::signals::{AllSignalsBlocked, ToDefault};
use super::stack::PooledStack;

/// A child that has exec'd: the command runs.
pub(super) struct Born {
    pub(super) pid: Pid,
    /// Whether it is in the request's cgroup (created there, or moved in before exec).
    pub(super) in_cgroup: bool,
}

/// Why a start failed.
#[derive(Debug)]
pub(super) enum Failed {
    /// No child was made: the kernel (or seccomp) refused the clone.
    Refused(io::Error),
    /// A duty of the child, or its exec, failed (`NotFound`, `PermissionDenied`, ...); the
    /// child is reaped.
    Setup(io::Error),
    /// The child was killed before its first instruction; it is reaped.
    KilledAtBirth,
}

impl Failed {
    pub(super) fn into_error(self) -> io::Error {
        match self {
            Failed::Refused(error) | Failed::Setup(error) => error,
            Failed::KilledAtBirth => io::Error::other("the command was killed before it started"),
        }
    }
}

/// Clones a child that carries out `plan`, created in the cgroup `into` (a cgroup directory)
/// when given; returns once it has exec'd or exited. The kernel writes the child's number into
/// `starting` as it creates it; a child that did not start is forgotten there before it is
/// reaped. With clone3 (where the kernel offers it) the runner's signal handlers are cleared in
/// the child by the kernel; a cgroup to be created in needs clone3, so without it that start is
/// `Refused` and the caller has the child move in instead.
pub(super) fn clone_child(
    plan: &ChildPlan<'_>,
    into: Option<BorrowedFd<'_>>,
    starting: Option<&Starting>,
) -> Result<Born, Failed> {
    let stack = PooledStack::take().map_err(Failed::Refused)?;
    let blocked = AllSignalsBlocked::new();
    let plan_ptr = std::ptr::from_ref(plan).cast_mut().cast();
    let pid_slot = starting.map_or(std::ptr::null_mut(), Starting::pid_location);
    let settid = if pid_slot.is_null() {
        0
    } else {
        libc::CLONE_PARENT_SETTID
    };
    // Both clones below are sound because of the following. The child shares this process's
    // memory, so everything it touches must stay valid and unchanged while it runs, and it must
    // not disturb anything the runner uses:
    // - CLONE_VFORK suspends this thread until the child has exec'd or exited, so `plan`, the
    //   strings and pointer arrays it points to (the caller's image, and BASE_ENV, which is
    //   never changed) and `stack` are alive and unmoved for the child's whole use of them;
    //   only this thread owns them, so no other thread changes them meanwhile.
    // - `child_main` runs on `stack` (64 KiB, a guard page below), not on this thread's
    //   stack, and never returns into this frame: it execs or `_exit`s.
    // - Every signal is blocked (`blocked`) and the child inherits that mask, so no handler
    //   of the runner's (tokio's, std's) can run in it before they are all reset: by the
    //   kernel at the clone (clone3, `CLONE_CLEAR_SIGHAND`) or by the child itself (every
    //   signal, `ToDefault::ALL`, after `libc::clone`), each told to it in `plan` before its
    //   clone. Without CLONE_SIGHAND its dispositions are its own copy, so resetting them
    //   leaves the runner's alone.
    // - Without CLONE_FILES its descriptor table is its own copy: its dup2 and close calls
    //   leave the runner's descriptors alone.
    // - The child only makes system calls on values read from `plan`, writes nothing shared
    //   but `plan`'s report (atomics, read here only after it resumed) and the suspended
    //   thread's errno, allocates nothing and takes no lock; so no lock or allocator state
    //   another thread of the runner holds is touched.
    // - `pid_slot`, when not null, is a static `pid_t` (`Starting`) the kernel writes the
    //   child's number to (`CLONE_PARENT_SETTID`) before either process runs on.
    // `clone3::clone_into` makes the same clone with the same flags, plus the two of its own.
    let by_clone3 = if clone3::usable() {
        plan.set_signals_to_default(ToDefault::ignored_by_runner());
        // SAFETY: see above.
        match unsafe { clone3::clone_into(&stack, into, plan_ptr, pid_slot) } {
            raw if raw >= 0 => Some(raw),
            _ => {
                let error = io::Error::last_os_error();
                // Into a cgroup, the caller decides; otherwise `clone` makes it where clone3
                // is not offered at all.
                if into.is_some() || !clone3::refused(&error) {
                    return Err(Failed::Refused(error));
                }
                None
            }
        }
    } else if into.is_some() {
        return Err(Failed::Refused(io::Error::from_raw_os_error(libc::ENOSYS)));
    } else {
        None
    };
    let raw = match by_clone3 {
        Some(raw) => raw,
        None => {
            plan.set_signals_to_default(ToDefault::ALL);
            // SAFETY: see above.
            let raw = unsafe {
                libc::clone(
                    child_main,
                    stack.top(),
                    libc::CLONE_VM | libc::CLONE_VFORK | settid | libc::SIGCHLD,
                    plan_ptr,
                    pid_slot,
                )
            };
            if raw < 0 {
                return Err(Failed::Refused(io::Error::last_os_error()));
            }
            raw
        }
    };
    let pid = Pid::from_raw(raw)
        .ok_or_else(|| Failed::Refused(io::Error::other("clone gave no process id")))?;
    drop(blocked);
    // The child has exec'd or exited: whatever it wrote is visible (the kernel's wake-up of
    // this thread orders it).
    let reap = |pid| {
        // Before its number is free again (`leaders`).
        if let Some(starting) = starting {
            starting.forget();
        }
        reap(pid);
    };
    if !plan.child_ran() {
        reap(pid);
        return Err(Failed::KilledAtBirth);
    }
    if let Some(error) = plan.child_error() {
        reap(pid);
        return Err(Failed::Setup(error));
    }
    // A child killed after it ran but before its exec counts as started, as with posix_spawn:
    // its process group reaps it (with wait4, for its usage).
    Ok(Born {
        pid,
        in_cgroup: into.is_some() || plan.child_joined_cgroup(),
    })
}

/// Waits for a child that did not exec: it has exited or is about to (CLONE_VFORK resumes
/// the parent as the child releases its memory, a moment before it becomes a zombie).
fn reap(pid: Pid) {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Err(Errno::INTR) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RlimitPlan;
    use crate::process::child::Isolation;
    use crate::process::image::{ChildEnv, Image};
    use std::ffi::OsStr;
    use std::os::fd::{AsFd, OwnedFd};

    extern "C" fn runner_handler(_: libc::c_int) {}

    /// A handler of the runner's (as tokio installs them) is gone in the child before it
    /// unblocks signals: cleared by the kernel where clone3 makes the child (as on the test
    /// machines), reset by the child itself where `clone` does.
    #[test]
    fn no_handler_of_the_runner_is_left_in_a_child_before_it_unblocks_signals() {
        let signal = libc::SIGRTMIN() + 7;
        // SAFETY: installs a handler that does nothing for a real-time signal nothing else in
        // the tests uses; the zeroed action is valid, its handler set to a function.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = runner_handler as *const () as libc::sighandler_t;
            assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
        }
        let bit = 1u64 << (signal - 1);
        assert_ne!(
            super::super::signals::handled() & bit,
            0,
            "the probe sees no handler"
        );
        let root = std::fs::File::open("/").unwrap();
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let env = ChildEnv::new(&[]).unwrap();
        let image = Image::new(OsStr::new("/bin/true"), "true", &[], env, root.as_fd()).unwrap();
        let isolation = Isolation {
            domain: None,
            user: None,
        };
        let plan = ChildPlan::new(
            &image,
            [&null, &null, &null],
            RlimitPlan::default(),
            None,
            None,
            isolation,
        );
        let born = clone_child(&plan, None, None).unwrap();
        reap(born.pid);
        assert_eq!(
            plan.handled_after_reset() & bit,
            0,
            "the runner's handler was left in the child"
        );
        assert_eq!(plan.handled_after_reset(), 0);
    }
}
