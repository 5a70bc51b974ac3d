//! Removing a private temp dir, whatever its commands did to it.
//!
//! Most commands leave nothing behind, so the skeleton the runner made is removed with five
//! `rmdir`s. Otherwise the tree is removed; when that fails because a command took write or
//! search permission from a folder (`chmod 500 a`: only root ignores that), every folder of the
//! tree is given back its owner's `rwx` — walking by descriptors, never following a symlink,
//! so nothing outside the temp dir is touched — and the removal is tried once more. A tree that
//! still cannot be removed is logged and counted in `direktiv_cmd_temp_dir_removal_failures`.
//!
//! Blocking: the workspace calls it on the blocking pool. By then every process of the request
//! is gone, so nothing changes the tree while it is walked.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::direktiv::OUT_DIRS;
use crate::metrics::METRICS;

/// How deep the permission repair walks. Each level holds one open descriptor; a deeper tree
/// (made on purpose) is left to fail and be counted.
const MAX_DEPTH: usize = 256;

/// Removes the private temp dir `root`; never fails, but logs and counts what it leaves.
pub(super) fn remove_private(root: &Path) {
    if remove_skeleton(root) {
        return;
    }
    let error = match std::fs::remove_dir_all(root) {
        Ok(()) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => e,
    };
    tracing::debug!(%error, dir = %root.display(), "making the temp dir writable to remove it");
    give_back_permissions(root);
    if let Err(error) = std::fs::remove_dir_all(root) {
        METRICS.temp_dir_removal_failures.inc();
        tracing::warn!(%error, dir = %root.display(), "could not remove the request's private temp dir");
    }
}

/// The `out/` folders and the temp dir itself, when that is all there is.
fn remove_skeleton(root: &Path) -> bool {
    OUT_DIRS
        .iter()
        .map(|out| root.join(out))
        .chain([root.join("out"), root.to_path_buf()])
        .all(|dir| std::fs::remove_dir(dir).is_ok())
}

/// Gives the owner `rwx` on `root` and every folder below it (symlinks are not followed).
fn give_back_permissions(root: &Path) {
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return;
    };
    let Ok(parent) = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Some(top) = open_writable(parent.as_fd(), name) else {
        return;
    };
    let Ok(top) = Dir::new(top) else {
        return;
    };
    // One open folder per level: the descriptors in use stay bounded by the depth.
    let mut levels = vec![top];
    while let Some(level) = levels.last_mut() {
        let Some(entry) = level.next() else {
            levels.pop();
            continue;
        };
        let Ok(entry) = entry else {
            levels.pop();
            continue;
        };
        let name = entry.file_name();
        let may_be_dir = matches!(entry.file_type(), FileType::Directory | FileType::Unknown);
        if !may_be_dir || name == c"." || name == c".." || levels.len() >= MAX_DEPTH {
            continue;
        }
        let child = {
            let level = levels.last().map(Dir::fd);
            match level {
                Some(Ok(fd)) => open_writable(fd, name),
                _ => None,
            }
        };
        if let Some(dir) = child.and_then(|fd| Dir::new(fd).ok()) {
            levels.push(dir);
        }
    }
}

/// Opens the folder `name` in `parent` after giving its owner `rwx`; `None` for anything that
/// is not a folder (a symlink included) or cannot be changed.
fn open_writable(parent: BorrowedFd<'_>, name: impl rustix::path::Arg + Copy) -> Option<OwnedFd> {
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return None;
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o700 != 0o700 {
        // chmodat follows a symlink, but this name is a folder (statat said so without
        // following) and no process of the request is left to swap it.
        rustix::fs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(mode | 0o700),
            AtFlags::empty(),
        )
        .ok()?;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, Mode::empty()).ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn gives_back_permissions_without_following_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("tmp");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("a/link")).unwrap();
        chmod(&outside, 0o500);
        chmod(&root.join("a/b/c"), 0o000);
        chmod(&root.join("a/b"), 0o100);
        chmod(&root.join("a"), 0o500);
        chmod(&root, 0o500);
        give_back_permissions(&root);
        for dir in ["", "a", "a/b", "a/b/c"] {
            assert_eq!(mode(&root.join(dir)) & 0o700, 0o700, "{dir:?}");
        }
        assert_eq!(
            mode(&outside),
            0o500,
            "the folder behind the symlink is untouched"
        );
        chmod(&outside, 0o700);
    }

    #[test]
    fn removes_the_skeleton_and_whatever_commands_left() {
        let base = tempfile::tempdir().unwrap();
        let skeleton = base.path().join("skeleton");
        for out in OUT_DIRS {
            std::fs::create_dir_all(skeleton.join(out)).unwrap();
        }
        remove_private(&skeleton);
        assert!(!skeleton.exists());
        let full = base.path().join("full");
        std::fs::create_dir_all(full.join("x/y")).unwrap();
        std::fs::write(full.join("x/y/f"), "").unwrap();
        chmod(&full.join("x"), 0o500);
        remove_private(&full);
        assert!(!full.exists());
    }
}
