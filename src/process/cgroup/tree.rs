//! The cgroups nested in a request cgroup. A command running as root may make them and move
//! processes into them (`mkdir $CG/sub; echo $$ > $CG/sub/cgroup.procs`); they belong to the
//! request like the rest of its cgroup: their processes are found and thawed with it, killed
//! with it (`cgroup.kill` reaches the whole subtree), and the cgroups removed, deepest first.
//!
//! Walked by descriptors (a nesting too deep for a path is no problem), at most `MAX_DEPTH`
//! levels and `MAX_CGROUPS` cgroups: a request that nests more than that keeps its cgroup from
//! being removed (a warning), never from being stopped, since `cgroup.kill` needs no walk.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::files::{pids_in, write};

/// How deep the walk goes below the request cgroup (one open descriptor per level).
const MAX_DEPTH: usize = 64;

/// How many nested cgroups one walk visits.
const MAX_CGROUPS: usize = 4096;

/// The processes in every cgroup nested below `top` (not in `top` itself).
pub(super) fn members_below(top: BorrowedFd<'_>) -> Vec<i32> {
    let mut found = Vec::new();
    walk(top, |cgroup| {
        if let Ok(procs) = open(cgroup, c"cgroup.procs", OFlags::RDONLY) {
            found.extend(pids_in(procs.as_fd()));
        }
    });
    found
}

/// Thaws every cgroup nested below `top` (a frozen one holds its processes' SIGTERM).
pub(super) fn thaw_below(top: BorrowedFd<'_>) {
    walk(top, |cgroup| {
        if let Ok(freeze) = open(cgroup, c"cgroup.freeze", OFlags::WRONLY) {
            let _ = write(freeze.as_fd(), b"0");
        }
    });
}

/// Removes every (empty) cgroup nested below `top`, deepest first; true when none is left.
pub(super) fn remove_below(top: BorrowedFd<'_>) -> bool {
    // Removing entries while their folder is read may make the read skip some: a few passes.
    for _ in 0..4 {
        let mut left = false;
        walk_removing(top, &mut left);
        if !left {
            return true;
        }
    }
    false
}

/// One level of a walk: a nested cgroup being read, and its name in the level above.
struct Level {
    dir: Dir,
    name: Option<CString>,
}

/// Calls `visit` on every cgroup nested below `top`, each after those nested in it.
fn walk(top: BorrowedFd<'_>, mut visit: impl FnMut(BorrowedFd<'_>)) {
    walk_levels(top, |level, _| {
        if let Ok(fd) = level.dir.fd() {
            visit(fd);
        }
    });
}

/// `walk` that removes each cgroup once everything below it was visited; `left` is set when
/// one could not be removed.
fn walk_removing(top: BorrowedFd<'_>, left: &mut bool) {
    walk_levels(top, |level, parent| {
        let (Some(name), Some(parent)) = (&level.name, parent) else {
            return;
        };
        if rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::REMOVEDIR).is_err() {
            *left = true;
        }
    });
}

/// The walk itself: `done(level, parent)` for every nested level once its own entries are
/// all read, with the descriptor of the level above (`None` for `top` itself, which is not
/// passed).
fn walk_levels(top: BorrowedFd<'_>, mut done: impl FnMut(&Level, Option<BorrowedFd<'_>>)) {
    let Ok(top) = open(top, c".", OFlags::RDONLY | OFlags::DIRECTORY) else {
        return;
    };
    let Ok(top) = Dir::new(top) else {
        return;
    };
    let mut levels = vec![Level {
        dir: top,
        name: None,
    }];
    let mut visited = 0;
    loop {
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        let next = level.dir.next();
        let Some(Ok(entry)) = next else {
            let Some(finished) = levels.pop() else {
                break;
            };
            if finished.name.is_some() {
                let parent = levels.last().and_then(|level| level.dir.fd().ok());
                done(&finished, parent);
            }
            continue;
        };
        let name = entry.file_name();
        let is_dir = entry.file_type() == FileType::Directory;
        if !is_dir || is_dot(name) || depth > MAX_DEPTH || visited >= MAX_CGROUPS {
            continue;
        }
        let child = level
            .dir
            .fd()
            .ok()
            .and_then(|fd| open(fd, name, OFlags::RDONLY | OFlags::DIRECTORY).ok())
            .and_then(|fd| Dir::new(fd).ok());
        if let Some(dir) = child {
            visited += 1;
            levels.push(Level {
                dir,
                name: Some(name.to_owned()),
            });
        }
    }
}

fn is_dot(name: &CStr) -> bool {
    name == c"." || name == c".."
}

fn open(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in tree: `top/a/b`, `top/c` with `cgroup.procs` files, and a plain file.
    fn tree() -> tempfile::TempDir {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(top.path().join("a/b")).unwrap();
        std::fs::create_dir_all(top.path().join("c")).unwrap();
        std::fs::write(top.path().join("cgroup.procs"), "1\n").unwrap();
        std::fs::write(top.path().join("a/cgroup.procs"), "10\n11\n").unwrap();
        std::fs::write(top.path().join("a/b/cgroup.procs"), "12\n").unwrap();
        std::fs::write(top.path().join("c/cgroup.procs"), "").unwrap();
        top
    }

    fn open_top(top: &tempfile::TempDir) -> OwnedFd {
        rustix::fs::open(
            top.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn members_of_every_nested_cgroup_and_not_of_the_top() {
        let top = tree();
        let mut found = members_below(open_top(&top).as_fd());
        found.sort();
        assert_eq!(found, [10, 11, 12]);
    }

    #[test]
    fn nested_cgroups_are_removed_deepest_first() {
        let top = tree();
        // Like cgroupfs, where a cgroup's files go with it, rmdir of a stand-in needs it empty.
        for dir in ["a/b", "a", "c"] {
            std::fs::remove_file(top.path().join(dir).join("cgroup.procs")).unwrap();
        }
        assert!(remove_below(open_top(&top).as_fd()));
        let left: Vec<_> = std::fs::read_dir(top.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["cgroup.procs"]);
    }

    #[test]
    fn a_folder_that_cannot_be_removed_is_reported() {
        let top = tree();
        assert!(!remove_below(open_top(&top).as_fd()), "a/b holds a file");
    }
}
