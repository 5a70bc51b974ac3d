//! Removing a private temp dir, whatever its commands did to it, without ever leaving it.
//!
//! Most commands leave nothing behind, so the skeleton the runner made is removed with five
//! `rmdir`s, once the temp dir and its `out` are seen to be folders on the temp dir's own
//! mount. Otherwise the tree is removed by descriptors, never following a symlink, and never
//! entering another file system: a mount a command left inside (a bind mount of a folder or
//! file from elsewhere, a tmpfs; a root command can make them), or over the temp dir itself,
//! is detached (`umount2(MNT_DETACH)`) and what was under it removed; one that cannot be
//! detached is left alone, entry and all. Mounts are told apart by mount id (statx
//! `STATX_MNT_ID`), which bind mounts do not share with the tree, unlike the device; a kernel
//! without it (< 5.8) is refused entry to another device only. A folder a command took write
//! or search permission from (`chmod 500 a`: only root ignores that) is given back its owner's
//! `rwx` before it is entered — on the temp dir's own mount only. What cannot be removed is
//! logged and counted in `direktiv_cmd_temp_dir_removal_failures`.
//!
//! Blocking: the workspace calls it on the blocking pool. By then every process of the request
//! is gone, so nothing changes the tree while it is walked.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, StatxFlags};
use rustix::mount::UnmountFlags;

use crate::direktiv::OUT_DIRS;
use crate::metrics::METRICS;

/// How deep the walk goes. Each level holds one open descriptor; a deeper tree (made on
/// purpose) is left to fail and be counted.
const MAX_DEPTH: usize = 256;

/// How many mounts stacked on one place are detached before giving up on it.
const MAX_STACKED_MOUNTS: usize = 64;

/// Removes the private temp dir `root`; never fails, but logs and counts what it leaves.
pub(super) fn remove_private(root: &Path) {
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return;
    };
    let Ok(name) = CString::new(name.as_bytes()) else {
        return;
    };
    let Ok(parent) = open_dir(rustix::fs::CWD, parent) else {
        return;
    };
    let Ok(home) = Place::of(parent.as_fd()) else {
        return;
    };
    if remove_skeleton(root, home) {
        return;
    }
    let removed = remove_tree(parent.as_fd(), &name, home);
    match removed {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            METRICS.temp_dir_removal_failures.inc();
            tracing::warn!(%error, dir = %root.display(), "could not remove the request's private temp dir");
        }
    }
}

/// Which mount (and device) something is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    /// The mount id, where the kernel tells it.
    mount: Option<u64>,
    device: (u32, u32),
}

impl Place {
    /// The place of the open folder `dir` itself.
    fn of(dir: BorrowedFd<'_>) -> io::Result<Place> {
        Ok(Entry::stat(dir, c"", AtFlags::EMPTY_PATH)?.place)
    }

    /// Whether `other` is on the same mount (the same device, where mount ids are unknown).
    fn same_mount(self, other: Place) -> bool {
        match (self.mount, other.mount) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => self.device == other.device,
        }
    }
}

/// What statx says of one entry (not following a symlink).
struct Entry {
    place: Place,
    kind: FileType,
    mode: u32,
}

impl Entry {
    fn stat(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> io::Result<Entry> {
        let wanted = StatxFlags::TYPE | StatxFlags::MODE | StatxFlags::MNT_ID;
        let stat = rustix::fs::statx(dir, name, flags | AtFlags::SYMLINK_NOFOLLOW, wanted)?;
        let mount = (stat.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stat.stx_mnt_id);
        Ok(Entry {
            place: Place {
                mount,
                device: (stat.stx_dev_major, stat.stx_dev_minor),
            },
            kind: FileType::from_raw_mode(u32::from(stat.stx_mode)),
            mode: u32::from(stat.stx_mode) & 0o7777,
        })
    }
}

/// The `out/` folders and the temp dir itself, when that is all there is: five `rmdir`s by
/// path, once the temp dir and `out` are folders on the temp dir's mount (a mount on either
/// would lead the paths elsewhere; one on a folder below makes its `rmdir` fail, never pass).
fn remove_skeleton(root: &Path, home: Place) -> bool {
    let own_folder = |path: &Path| {
        Entry::stat(rustix::fs::CWD, &path_c(path), AtFlags::empty())
            .is_ok_and(|entry| entry.kind == FileType::Directory && entry.place.same_mount(home))
    };
    own_folder(root)
        && own_folder(&root.join("out"))
        && OUT_DIRS
            .iter()
            .map(|out| root.join(out))
            .chain([root.join("out"), root.to_path_buf()])
            .all(|dir| std::fs::remove_dir(dir).is_ok())
}

fn path_c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Detaches whatever is mounted on `name` in `dir` (mounts stacked there, top first), until
/// the entry is on `home`'s mount again.
fn detach_mounts(dir: BorrowedFd<'_>, name: &CStr, home: Place) -> io::Result<()> {
    for _ in 0..MAX_STACKED_MOUNTS {
        let entry = Entry::stat(dir, name, AtFlags::empty())?;
        if entry.place.same_mount(home) {
            return Ok(());
        }
        if entry.place.mount.is_none() {
            return Err(io::Error::other(
                "another device is mounted in the temp dir",
            ));
        }
        // The path through the folder's descriptor: no path outside is looked up again.
        let target = format!(
            "/proc/self/fd/{}/{}",
            dir.as_raw_fd(),
            name.to_string_lossy()
        );
        rustix::mount::unmount(
            target.as_str(),
            UnmountFlags::DETACH | UnmountFlags::NOFOLLOW,
        )?;
        tracing::info!(name = %name.to_string_lossy(), "detached a mount a command left in its temp dir");
    }
    Err(io::Error::other("too many mounts stacked in the temp dir"))
}

/// One folder of the walk: being read, and its name in the folder above.
struct Level {
    dir: Dir,
    name: CString,
}

/// Removes the folder `name` in `parent` and everything below it, on `home`'s mount only. As
/// few system calls as `remove_dir_all` makes: an unlink per file (a mount on a file shows as
/// EBUSY, and is detached then), and per folder an open, one statx of the open folder (its
/// mount and mode), the reads of its entries and its removal.
fn remove_tree(parent: BorrowedFd<'_>, name: &CStr, home: Place) -> io::Result<()> {
    let top = enter(parent, name, home)?;
    let mut levels = vec![Level {
        dir: Dir::new(top)?,
        name: name.to_owned(),
    }];
    let mut first_error: Option<io::Error> = None;
    let mut note = |error: io::Error| {
        first_error.get_or_insert(error);
    };
    loop {
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        let next = level.dir.next();
        let Some(Ok(entry)) = next else {
            let Some(done) = levels.pop() else {
                break;
            };
            let above = levels.last().map(|level| level.dir.fd());
            let removed = match above {
                Some(Ok(above)) => rustix::fs::unlinkat(above, &done.name, AtFlags::REMOVEDIR),
                Some(Err(error)) => Err(error),
                None => rustix::fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR),
            };
            if let Err(error) = removed {
                note(error.into());
            }
            continue;
        };
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let Ok(here) = level.dir.fd() else {
            continue;
        };
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => Entry::stat(here, name, AtFlags::empty())
                .is_ok_and(|entry| entry.kind == FileType::Directory),
            _ => false,
        };
        if !is_dir {
            if let Err(error) = remove_file(here, name, home) {
                note(error);
            }
            continue;
        }
        if depth >= MAX_DEPTH {
            note(io::Error::other("the temp dir's tree is too deep"));
            continue;
        }
        match enter(here, name, home).and_then(|fd| Ok(Dir::new(fd)?)) {
            Ok(dir) => levels.push(Level {
                dir,
                name: name.to_owned(),
            }),
            // Neither entered nor removed: a mount that cannot be detached is not the
            // temp dir's.
            Err(error) => note(error),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Unlinks the entry `name` (not a folder) in `dir`; one a file is mounted on (EBUSY) is
/// detached first.
fn remove_file(dir: BorrowedFd<'_>, name: &CStr, home: Place) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(rustix::io::Errno::BUSY) => {
            detach_mounts(dir, name, home)?;
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
        }
        removed => Ok(removed?),
    }
}

/// Opens the folder `name` in `dir` to walk it: on `home`'s mount (what is mounted there is
/// detached first, never entered) and with its owner's `rwx` (given back where a command took
/// it; only ever on the temp dir's own mount).
fn enter(dir: BorrowedFd<'_>, name: &CStr, home: Place) -> io::Result<OwnedFd> {
    let opened = match open_dir(dir, name) {
        Err(error) if error.raw_os_error() == Some(libc::EACCES) => {
            // No search or read permission (only root ignores that): given back, on this
            // mount only.
            detach_mounts(dir, name, home)?;
            let entry = Entry::stat(dir, name, AtFlags::empty())?;
            // chmodat follows a symlink, but this name is a folder (statx said so without
            // following) and no process of the request is left to swap it.
            rustix::fs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(entry.mode | 0o700),
                AtFlags::empty(),
            )?;
            open_dir(dir, name)?
        }
        opened => opened?,
    };
    if let Some(on_home) = writable_on(home, opened)? {
        return Ok(on_home);
    }
    detach_mounts(dir, name, home)?;
    writable_on(home, open_dir(dir, name)?)?
        .ok_or_else(|| io::Error::other("a mount in the temp dir came back"))
}

/// The open folder, with its owner's `rwx`, when it is on `home`'s mount; `None` (and closed,
/// untouched) when it is not.
fn writable_on(home: Place, folder: OwnedFd) -> io::Result<Option<OwnedFd>> {
    let entry = Entry::stat(folder.as_fd(), c"", AtFlags::EMPTY_PATH)?;
    if !entry.place.same_mount(home) {
        return Ok(None);
    }
    if entry.mode & 0o700 != 0o700 {
        rustix::fs::fchmod(&folder, Mode::from_raw_mode(entry.mode | 0o700))?;
    }
    Ok(Some(folder))
}

fn open_dir(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
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
    fn removes_unwritable_folders_without_following_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("tmp");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("kept"), "").unwrap();
        std::fs::write(root.join("a/b/c/f"), "").unwrap();
        symlink(&outside, root.join("a/link")).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        chmod(&outside, 0o500);
        chmod(&root.join("a/b/c"), 0o000);
        chmod(&root.join("a/b"), 0o100);
        chmod(&root.join("a"), 0o500);
        chmod(&root, 0o500);
        remove_private(&root);
        assert!(!root.exists());
        assert_eq!(
            mode(&outside),
            0o500,
            "the folder behind the symlink is untouched"
        );
        assert!(outside.join("kept").exists());
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

    #[test]
    fn another_device_is_never_the_same_mount() {
        let here = Place {
            mount: Some(1),
            device: (0, 1),
        };
        let bind = Place {
            mount: Some(2),
            device: (0, 1),
        };
        let unknown = Place {
            mount: None,
            device: (0, 2),
        };
        assert!(here.same_mount(here));
        assert!(
            !here.same_mount(bind),
            "a bind mount shares the device, not the mount"
        );
        assert!(!here.same_mount(unknown));
        assert!(unknown.same_mount(Place {
            mount: None,
            device: (0, 2)
        }));
    }
}
