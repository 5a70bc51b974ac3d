//! What the runner does to its own process at start-up where rustix has no call: fork into an
//! init and a server when it is PID 1 (`init`), cap glibc's malloc arenas, block SIGCHLD, and
//! keep its memory and environment from other processes of its uid (`become_undumpable`).

use std::io;

use rustix::process::{Pid, Signal};

use super::signals::SignalSet;

/// Which side of a fork this is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The calling process; the new one has this id.
    Parent(Pid),
}

/// Forks the calling process, which must have a single thread: the child gets a copy of memory
/// in which another thread might hold a lock (the allocator's, stdio's) forever. Refused with an
/// error when /proc shows another thread, or cannot tell.
pub(crate) fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "{threads} threads run: a fork would copy their locks"
        )));
    }
    // SAFETY: the process has exactly one thread (checked above, and only this thread could
    // start another meanwhile), so every lock in the child's copy of memory is in the state
    // this thread left it, none held by a thread that does not exist there. The child goes on
    // as a normal single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Pid::from_raw(pid)
            .map(Forked::Parent)
            .ok_or_else(|| io::Error::other("fork gave no process id")),
    }
}

/// The number of threads of this process (`Threads:` of /proc/self/status).
fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/status has no thread count"))
}

/// Caps the arenas glibc's malloc may create at `arenas`. Best effort.
pub fn limit_malloc_arenas(arenas: i32) {
    // SAFETY: mallopt only sets a parameter of the allocator under its own lock; M_ARENA_MAX
    // with a positive value is a documented use, valid at any time.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas.max(1)) };
}

/// Makes the runner non-dumpable: /proc/<pid>/environ, mem, maps and fd of the runner are then
/// readable only with CAP_SYS_PTRACE, not by every process of the same uid — the commands the
/// runner starts included. The runner holds every request's secrets in memory and the
/// container's in its environment. Inherited by the init's fork (the flag belongs to the
/// memory map, which fork copies); reset by exec, so commands start dumpable as usual.
pub fn become_undumpable() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Blocks SIGCHLD in the calling thread and every thread it starts later (the runtime's).
pub fn block_sigchld() -> io::Result<()> {
    SignalSet::of(&[Signal::CHILD]).block().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_threads_is_never_forked() {
        // The test harness runs this on a thread of its own, beside the main thread.
        assert!(thread_count().unwrap() > 1);
        let refused = fork_single_threaded().unwrap_err();
        assert!(refused.to_string().contains("threads run"), "{refused}");
    }
}
