//! Emptied request cgroups kept for later requests, and the rule that keeps them from carrying
//! anything of one request into another: a kept cgroup is given out only while it is exactly as
//! the runner made it (`Files::unchanged`), checked when it is taken, since a command of
//! another request may change a kept cgroup meanwhile. One that is not is removed.
//!
//! Making a cgroup, opening its files and removing it again costs about 70 µs of kernel time
//! on this kind of machine; the check is a handful of reads of files kept open, about a tenth
//! of that. Killed cgroups, which no read shows, are found when a command created in one is
//! killed before its first instruction (`spawn`): such a cgroup is never kept again.

use std::path::PathBuf;
use std::sync::Arc;

use super::files::Files;
use super::spares::Spares;
use super::tree;

/// A kept cgroup: its directory and its open files.
pub(super) type Spare = (PathBuf, Arc<Files>);

/// The kept cgroups.
static SPARE: Spares<Spare> = Spares::new();

/// A kept cgroup that is still as it was made; those found changed are removed.
pub(super) fn take() -> Option<Spare> {
    let discard = |(dir, files): Spare, why: String| {
        tracing::info!(dir = %dir.display(), why, "a kept cgroup was changed; it is removed");
        remove(&dir, &files);
    };
    SPARE.take(|(_, files)| files.unchanged(), discard)
}

/// Keeps an emptied cgroup for a later request, or removes it when enough are kept or the
/// runner is exiting.
pub(super) fn give_back(dir: PathBuf, files: Arc<Files>) {
    if let Err((dir, files)) = SPARE.give_back((dir, files)) {
        remove(&dir, &files);
    }
}

/// Removes an emptied cgroup and whatever is nested in it; false when something is left (a
/// warning says what).
pub(super) fn remove(dir: &std::path::Path, files: &Files) -> bool {
    let nested_gone = tree::remove_below(std::os::fd::AsFd::as_fd(&files.dir));
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(error) => {
            tracing::warn!(%error, nested_gone, dir = %dir.display(), "could not remove a request's cgroup");
            false
        }
    }
}

/// Removes the kept cgroups; later emptied ones are removed, not kept. Called at exit, once no
/// request runs.
pub(crate) fn remove_spares() {
    for (dir, files) in SPARE.drain() {
        remove(&dir, &files);
    }
}
