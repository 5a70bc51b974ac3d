//! Where the runner makes its commands' memory cgroups, found once at start-up: a cgroup v2
//! that delegates the memory controller (nested in each request's cgroup), or a writable
//! cgroup v1 memory hierarchy (below the runner's own memory cgroup), each tried with a first
//! memory cgroup; and how a memory cgroup's folder is named, made and opened.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use rustix::fs::{Mode, OFlags};

use super::files::{read_text, write};
use super::locate::{Hierarchy, OwnCgroups};
use super::NAME_TRIES;

/// Where commands' memory cgroups are made.
#[derive(Debug)]
pub(super) enum Place {
    /// Nested in each request's cgroup v2, whose parent delegates the memory controller.
    V2,
    /// Below the runner's own cgroup v1 memory cgroup, `dir`; `memsw`: swap is accounted
    /// (`memory.memsw.limit_in_bytes` exists).
    V1 { dir: PathBuf, memsw: bool },
}

/// Found (and tried with a first memory cgroup) once, at the first call.
pub(super) static PLACE: LazyLock<Option<Place>> = LazyLock::new(locate);

/// The memory cgroups of this runner's commands, for the start-up line: `None` where the
/// runner cannot make one (the `memory` limit is then `RLIMIT_DATA`).
pub(crate) fn mechanism() -> Option<String> {
    match PLACE.as_ref()? {
        Place::V2 => Some(
            "a cgroup v2 memory.max per command (swap off, OOM kills the whole command)".to_owned(),
        ),
        Place::V1 { dir, memsw } => Some(format!(
            "a cgroup v1 memory limit per command in {}{}",
            dir.display(),
            if *memsw { " (swap off)" } else { "" }
        )),
    }
}

fn locate() -> Option<Place> {
    if let Some(home) = super::HOME.as_ref() {
        if delegates_memory(&home.dir) {
            return Some(Place::V2);
        }
    }
    let own = OwnCgroups::at_start();
    own.candidates(Hierarchy::Controller("memory"))
        .into_iter()
        .find_map(|dir| try_v1(&dir))
}

/// Whether the cgroup v2 `dir` gives its children the memory controller.
fn delegates_memory(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.subtree_control"))
        .is_ok_and(|text| text.split_whitespace().any(|name| name == "memory"))
}

/// `dir` as the place of v1 memory cgroups, when one can be made there, limited, counted and
/// removed again.
fn try_v1(dir: &Path) -> Option<Place> {
    let made = make_dir(dir).ok()?;
    let works = (|| {
        let open = |name: &str, flags| open_in(&made, name, flags);
        write(
            open("memory.limit_in_bytes", OFlags::WRONLY)?.as_fd(),
            b"1073741824",
        )?;
        let counter = open("memory.oom_control", OFlags::RDONLY)?;
        // Kernels before 4.13 do not count OOM kills here: nothing to tell a passed limit by.
        let counts = crate::process::oom::parse_oom_kill(&read_text(counter.as_fd())?).is_some();
        let memsw = open("memory.memsw.limit_in_bytes", OFlags::WRONLY).is_ok();
        io::Result::Ok(counts.then_some(memsw))
    })();
    let _ = std::fs::remove_dir(&made);
    match works {
        Ok(Some(memsw)) => Some(Place::V1 {
            dir: dir.to_owned(),
            memsw,
        }),
        Ok(None) => None,
        Err(error) => {
            tracing::debug!(%error, dir = %dir.display(), "no memory cgroups for commands here");
            None
        }
    }
}

/// A new cgroup folder in `parent` under a name no cgroup has.
pub(super) fn make_dir(parent: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    for _ in 0..NAME_TRIES {
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("direktiv-cmd-{}-mem-{serial}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

pub(super) fn open_in(dir: &Path, name: &str, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir.join(name),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}
