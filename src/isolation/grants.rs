//! Which paths a request's Landlock ruleset grants: the whole file system but the hidden roots
//! (the shared TempDir root, the runner's root of private temp dirs), and the request's own
//! folder; the read-only roots (the cgroup mounts a command could write through) for reading
//! only, so that no command, root or not, kills, freezes, limits or moves another request's
//! processes (or the runner) through cgroup files: what an unprivileged pod gives it anyway.
//!
//! Landlock only allows, and a right granted on a folder holds for everything beneath it: a
//! grant on `/` would reach every other request's folder. So the grants walk down from `/`
//! towards each hidden root, granting every entry beside the way (each top-level entry but the
//! one holding a hidden root, then each entry of that one but the next step, ...) and nothing
//! at or beneath a hidden root. A read-only root is walked to the same way and granted for
//! reading (with everything beneath it but a hidden root). The folders on the way themselves
//! get no grant: a command can still reach everything through them, but not list them or make
//! new entries in them, which is why a hidden root is never `/` or the runner's temp dir
//! (`/tmp`), where commands expect to make files.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::process::{Access, GrantTarget};

/// What covers the file system but the hidden roots, opened: the same for every request until
/// a folder on the way to a hidden root changes (an entry made or removed there), so it is
/// built once and checked, not walked, per request.
pub(super) struct Cover {
    roots: Roots,
    /// The folders on the way, as they were when walked.
    walked: Vec<(PathBuf, Stamp)>,
    pub(super) targets: Vec<GrantTarget>,
}

/// What a cover leaves out (`hidden`) or grants for reading only (`read_only`): absolute,
/// canonical paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Roots {
    pub(super) hidden: Vec<PathBuf>,
    /// The same for every request (found at start): shared, not copied per request.
    pub(super) read_only: Arc<[PathBuf]>,
}

impl Roots {
    /// Every root, hidden or read-only.
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.hidden.iter().chain(self.read_only.iter())
    }
}

/// What changes when an entry of a folder is made, removed or renamed (or the folder replaced).
#[derive(PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(folder: &Path) -> io::Result<Stamp> {
        let meta = std::fs::symlink_metadata(folder)?;
        Ok(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

impl Cover {
    /// Walks from `/` towards the `roots`.
    pub(super) fn walk(roots: &Roots) -> io::Result<Cover> {
        let mut cover = Cover {
            roots: roots.clone(),
            walked: Vec::new(),
            targets: Vec::new(),
        };
        let mut paths = Vec::new();
        cover.step(Path::new("/"), Access::Full, &mut paths)?;
        for (path, access) in paths {
            match GrantTarget::open(&path, access) {
                Ok(Some(target)) => cover.targets.push(target),
                Ok(None) => {}
                // Gone since it was listed, or a file the runner may not even look at:
                // nothing to grant.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EACCES)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(cover)
    }

    /// Whether this cover still holds for `roots`: the same roots, and no folder on the way
    /// changed since the walk.
    pub(super) fn holds_for(&self, roots: &Roots) -> bool {
        self.roots == *roots
            && self
                .walked
                .iter()
                .all(|(folder, stamp)| Stamp::of(folder).is_ok_and(|now| now == *stamp))
    }

    /// Whether everything beneath `folder` (canonical: no symbolic link on its way) is granted
    /// in full by this cover: it is neither beneath a hidden or read-only root nor on the way to
    /// one, so a folder beside the way, granted whole, holds it (the folders on the way are as
    /// they were when walked: `holds_for`).
    pub(super) fn covers(&self, folder: &Path) -> bool {
        folder.is_absolute()
            && self
                .roots
                .all()
                .all(|root| !folder.starts_with(root) && !root.starts_with(folder))
    }

    /// Adds to `paths` what covers `dir` except the hidden roots, with `access` (`Read` from a
    /// read-only root down).
    fn step(
        &mut self,
        dir: &Path,
        access: Access,
        paths: &mut Vec<(PathBuf, Access)>,
    ) -> io::Result<()> {
        if self.roots.hidden.iter().any(|root| root == dir) {
            return Ok(());
        }
        let access = match self.roots.read_only.iter().any(|root| root == dir) {
            true => Access::Read,
            false => access,
        };
        // Granted whole unless a root lies beneath (a read-only root beneath another read-only
        // one, or beneath a folder already granted for reading, changes nothing).
        let beneath = |roots: &[PathBuf]| roots.iter().any(|root| root.starts_with(dir));
        let hidden_beneath = beneath(&self.roots.hidden);
        let read_only_beneath = access == Access::Full && beneath(&self.roots.read_only);
        if !hidden_beneath && !read_only_beneath {
            paths.push((dir.to_path_buf(), access));
            return Ok(());
        }
        // A hidden root lies beneath: one step down, entry by entry. A symbolic link is not
        // followed (its target is covered by its own path). Stamped first: an entry made while
        // the folder is read makes the next request walk again.
        self.walked.push((dir.to_path_buf(), Stamp::of(dir)?));
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                self.step(&path, access, paths)?;
            } else {
                paths.push((path, access));
            }
        }
        Ok(())
    }

    /// The paths the walk granted, for tests.
    #[cfg(test)]
    fn paths(roots: &Roots) -> Vec<(PathBuf, Access)> {
        let mut cover = Cover {
            roots: roots.clone(),
            walked: Vec::new(),
            targets: Vec::new(),
        };
        let mut paths = Vec::new();
        cover
            .step(Path::new("/"), Access::Full, &mut paths)
            .unwrap();
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hidden` roots only.
    fn hiding(hidden: &[PathBuf]) -> Roots {
        Roots {
            hidden: hidden.to_vec(),
            read_only: Arc::default(),
        }
    }

    /// The paths granted with `access`.
    fn with(grants: &[(PathBuf, Access)], access: Access) -> Vec<PathBuf> {
        grants
            .iter()
            .filter(|(_, a)| *a == access)
            .map(|(path, _)| path.clone())
            .collect()
    }

    #[test]
    fn without_hidden_roots_the_root_is_granted_whole() {
        assert_eq!(
            Cover::paths(&Roots::default()),
            [(PathBuf::from("/"), Access::Full)]
        );
    }

    #[test]
    fn a_hidden_root_is_left_out_and_everything_beside_the_way_is_granted() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let shared = top.join("shared");
        std::fs::create_dir_all(shared.join("other-request")).unwrap();
        std::fs::create_dir(top.join("beside")).unwrap();
        std::fs::write(top.join("file"), "").unwrap();

        let grants = with(
            &Cover::paths(&hiding(std::slice::from_ref(&shared))),
            Access::Full,
        );
        assert!(grants.contains(&top.join("beside")), "{grants:?}");
        assert!(grants.contains(&top.join("file")), "{grants:?}");
        assert!(grants.contains(&PathBuf::from("/proc")), "{grants:?}");
        // Nothing on the way, nothing beneath the hidden root.
        for refused in [Path::new("/"), &top, &shared] {
            assert!(
                !grants.iter().any(|g| g == refused),
                "{refused:?} in {grants:?}"
            );
        }
        assert!(!grants.iter().any(|g| g.starts_with(&shared)), "{grants:?}");
    }

    #[test]
    fn a_read_only_root_is_granted_for_reading_with_everything_beneath_but_hidden_roots() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let cgroups = top.join("cgroup");
        let unified = cgroups.join("unified");
        std::fs::create_dir_all(unified.join("direktiv-cmd-1-0")).unwrap();
        std::fs::create_dir_all(cgroups.join("memory")).unwrap();
        std::fs::create_dir(top.join("beside")).unwrap();
        let hidden = unified.join("hidden");
        std::fs::create_dir_all(hidden.join("inside")).unwrap();

        let roots = Roots {
            hidden: Vec::new(),
            read_only: vec![unified.clone(), cgroups.join("memory")].into(),
        };
        let grants = Cover::paths(&roots);
        let mut read = with(&grants, Access::Read);
        read.sort();
        assert_eq!(
            read,
            [cgroups.join("memory"), unified.clone()],
            "{grants:?}"
        );
        let full = with(&grants, Access::Full);
        assert!(full.contains(&top.join("beside")), "{grants:?}");
        // Nothing on the way, nothing beneath a read-only root in full.
        for refused in [Path::new("/"), &top, &cgroups, &unified] {
            assert!(
                !full.iter().any(|g| g == refused),
                "{refused:?} in {grants:?}"
            );
        }
        assert!(!full.iter().any(|g| g.starts_with(&cgroups)), "{grants:?}");

        // A hidden root beneath a read-only root stays hidden; what is beside it is read-only.
        let roots = Roots {
            hidden: vec![hidden.clone()],
            read_only: vec![unified.clone()].into(),
        };
        let grants = Cover::paths(&roots);
        assert!(
            !grants.iter().any(|(g, _)| g.starts_with(&hidden)),
            "{grants:?}"
        );
        assert!(!grants.iter().any(|(g, _)| g == &unified), "{grants:?}");
        assert!(
            grants.contains(&(unified.join("direktiv-cmd-1-0"), Access::Read)),
            "{grants:?}"
        );
        assert!(!with(&grants, Access::Full)
            .iter()
            .any(|g| g.starts_with(&unified)));
    }

    #[test]
    fn a_folder_is_covered_only_beside_the_way_to_the_hidden_roots() {
        let cover = Cover {
            roots: Roots {
                hidden: vec![PathBuf::from("/mnt/shared")],
                read_only: vec![PathBuf::from("/var/tmp/runner")].into(),
            },
            walked: Vec::new(),
            targets: Vec::new(),
        };
        for covered in [
            "/tmp",
            "/tmp/a/b",
            "/mnt/other",
            "/var/lib",
            "/var/tmp/runner2",
        ] {
            assert!(cover.covers(Path::new(covered)), "{covered}");
        }
        let hidden_or_on_the_way = [
            "/",
            "/mnt",
            "/mnt/shared",
            "/mnt/shared/request",
            "/var",
            "/var/tmp",
            "/var/tmp/runner/request",
            "tmp",
        ];
        for refused in hidden_or_on_the_way {
            assert!(!cover.covers(Path::new(refused)), "{refused}");
        }
    }

    #[test]
    fn a_cover_holds_until_a_folder_on_the_way_changes() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let shared = top.join("shared");
        std::fs::create_dir(&shared).unwrap();
        let hidden = hiding(std::slice::from_ref(&shared));
        // `/` and `/tmp` are on the way, and anything may make a file there meanwhile: a few
        // walks until one holds right after it.
        let cover = (0..5)
            .map(|_| Cover::walk(&hidden).unwrap())
            .find(|cover| cover.holds_for(&hidden))
            .expect("no walk held even right after it");
        assert!(!cover.holds_for(&Roots::default()));
        let read_only = Roots {
            hidden: Vec::new(),
            read_only: vec![shared.clone()].into(),
        };
        assert!(!cover.holds_for(&read_only));
        // Another entry beside the way: the next request must walk again to grant it.
        std::fs::create_dir(top.join("new")).unwrap();
        assert!(!cover.holds_for(&hidden));
    }
}
