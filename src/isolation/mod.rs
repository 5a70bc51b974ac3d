//! Keeping concurrent requests apart (`CMD_ISOLATION`): their commands share the container's
//! uid, so without more any of them could read another's environment and memory through
//! /proc, signal its processes, or read its temp dir.
//!
//! With Landlock, each request gets a ruleset, built here once when its commands are about to
//! run (`Isolation::domain`), which each of its commands enters before exec (`process`): ptrace
//! access and (from ABI 6) signals and abstract unix sockets stay within the domain, and the
//! file rules (`grants`) leave the request only its own folder of the shared TempDir root and
//! of the runner's root of private temp dirs, and the writable cgroup mounts for reading only. The runner itself is non-dumpable from its
//! start (`main`), so no command can read its memory or environment either.

mod grants;
mod users;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use clap::ValueEnum;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cancel::Cancel;
use crate::error::Failure;
use crate::metrics::{IsolationLabels, METRICS};
use crate::process::{landlock_abi, Ruleset};
use grants::{Cover, Roots};
pub use users::FIRST_SLOT_UID;
pub(crate) use users::{hand_over, SlotUser};

/// `CMD_ISOLATION`: how concurrent requests are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationSetting {
    /// Landlock where the kernel has it; where it does not, requests run concurrently
    /// without (the start-up line and /metrics say so).
    Landlock,
    /// Landlock, and where the kernel lacks it, one request at a time instead of unisolated.
    Require,
    /// Root only: each concurrency slot's commands run as a uid of their own
    /// (`FIRST_SLOT_UID` + slot), owning the request's folder; Landlock as well where the
    /// kernel has it.
    Uid,
    /// No isolation between requests (the runner stays non-dumpable).
    Off,
}

/// The isolation in effect, decided at start from the setting and the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    /// A Landlock domain per request (the ABI version).
    Landlock(u32),
    /// No Landlock, `require`: one request at a time.
    Serial,
    /// No Landlock, `landlock`: concurrent and not isolated.
    Missing,
    /// `off`.
    Off,
}

impl Active {
    fn of(setting: IsolationSetting) -> Active {
        match (setting, landlock_abi()) {
            (IsolationSetting::Off, _) => Active::Off,
            (_, Some(abi)) => Active::Landlock(abi),
            (IsolationSetting::Require, None) => Active::Serial,
            (IsolationSetting::Landlock | IsolationSetting::Uid, None) => Active::Missing,
        }
    }

    /// The `mode` label of `direktiv_cmd_isolation`.
    fn label(self) -> &'static str {
        match self {
            Active::Landlock(_) => "landlock",
            Active::Serial => "serial",
            Active::Missing => "none",
            Active::Off => "off",
        }
    }
}

/// Why the runner cannot start with `setting`, if it cannot: `uid` needs root.
pub fn refusal(setting: IsolationSetting) -> Option<String> {
    let root = rustix::process::geteuid().is_root();
    (setting == IsolationSetting::Uid && !root).then(|| {
        "CMD_ISOLATION=uid needs the runner to run as root (it runs each request's commands as \
         a uid of their own); use landlock or require"
            .to_owned()
    })
}

/// The start-up line's phrase: which isolation is in effect, and what it covers.
pub(crate) fn phrase(setting: IsolationSetting) -> String {
    let mechanism = mechanism(setting);
    match setting {
        IsolationSetting::Uid => {
            format!("a uid per concurrency slot ({FIRST_SLOT_UID} + slot), and {mechanism}")
        }
        _ => mechanism,
    }
}

/// What Landlock (or its absence) does under `setting`.
fn mechanism(setting: IsolationSetting) -> String {
    match Active::of(setting) {
        Active::Landlock(abi) => {
            let scope = match abi >= 6 {
                true => "/proc, signals, abstract sockets and temp dirs",
                false => "/proc and temp dirs; signals are not scoped before ABI 6",
            };
            let private = match private_root() {
                Some(root) => format!("private temp dirs in {}", root.display()),
                None => {
                    "private temp dirs in the temp dir, not hidden (no place of the runner's own)"
                        .to_owned()
                }
            };
            format!("landlock ABI {abi}, a domain per request ({scope}); {private}")
        }
        Active::Serial => "one request at a time (CMD_ISOLATION=require, and this kernel has no \
                           Landlock)"
            .to_owned(),
        Active::Missing => "none: this kernel has no Landlock (CMD_ISOLATION=require runs \
                            requests one at a time instead)"
            .to_owned(),
        Active::Off => "off (CMD_ISOLATION=off)".to_owned(),
    }
}

/// The runner's isolation of requests: what every request asks before its commands run.
pub(crate) struct Isolation {
    active: Active,
    /// `CMD_ISOLATION=uid`: which slots' uids are in use.
    users: Option<Mutex<Vec<bool>>>,
    /// The folders holding the temp dirs `Direktiv-TempDir` named (canonical): the pod's shared
    /// volume (`/mnt/shared`). A request's domain leaves out everything beneath them but its
    /// own folder.
    shared_roots: Arc<Mutex<Vec<PathBuf>>>,
    /// One request at a time (`Active::Serial`).
    turn: Arc<Semaphore>,
    /// What the last ruleset granted besides its request's folder, for the next.
    cover: Arc<Mutex<Option<Arc<Kept>>>>,
}

/// A cover, and the ruleset granting it alone, made once the first request whose folder it
/// already covers asks for it.
struct Kept {
    cover: Cover,
    whole: OnceLock<Arc<Ruleset>>,
}

/// A request's ruleset as built before its folder is known to be made.
pub(crate) enum Domain {
    /// Its temp dir lies beside the hidden roots, where the cover grants it already: the
    /// cover's own ruleset, shared by every such request while the cover holds. Never granted
    /// anything more (each command's entry still makes a domain of its own).
    Whole(Arc<Ruleset>),
    /// Built for this request alone: its folder is still to be granted (`with_own_folder`).
    Own(Ruleset),
}

impl Isolation {
    /// The isolation `setting` asks for, on this kernel, for `slots` concurrent requests;
    /// shown in /metrics.
    pub(crate) fn new(setting: IsolationSetting, slots: usize) -> Isolation {
        let active = Active::of(setting);
        let users = (setting == IsolationSetting::Uid).then(|| Mutex::new(vec![false; slots]));
        let mode = match users {
            Some(_) => "uid",
            None => active.label(),
        };
        METRICS
            .isolation
            .get_or_create(&IsolationLabels { mode })
            .set(1);
        Isolation {
            active,
            users,
            shared_roots: Arc::default(),
            turn: Arc::new(Semaphore::new(1)),
            cover: Arc::default(),
        }
    }

    /// Where private temp dirs are made: the runner's own root when requests are isolated by
    /// Landlock (no other request's rules cover it), else the system temp dir (`None`).
    pub(crate) fn private_root(&self) -> Option<PathBuf> {
        match self.active {
            Active::Landlock(_) => private_root(),
            _ => None,
        }
    }

    /// Waits, where requests run one at a time, for this request's turn (held until the
    /// permit is dropped); `None` at once otherwise, and when the request is cancelled first.
    pub(crate) async fn turn(&self, cancel: &Cancel) -> Option<OwnedSemaphorePermit> {
        if self.active != Active::Serial {
            return None;
        }
        tokio::select! {
            permit = Arc::clone(&self.turn).acquire_owned() => permit.ok(),
            _ = cancel.cancelled() => None,
        }
    }

    /// A user of its own for a request (`CMD_ISOLATION=uid`): the uid of a free concurrency
    /// slot, held until the returned guard drops. `None` otherwise.
    pub(crate) fn user(&self) -> Option<SlotUser<'_>> {
        self.users.as_ref().map(SlotUser::claim)
    }

    /// The work that builds the Landlock ruleset of a request whose temp dir is `given` by
    /// `Direktiv-TempDir` (else private), granting all but the hidden roots; its own folder is
    /// added once made (`with_own_folder`). The ruleset is `None` when requests are not
    /// isolated by Landlock. Blocking work (it opens folders): for the blocking pool, in the
    /// trip that prepares the request's workspace.
    pub(crate) fn domain_work(
        &self,
        given: Option<&Path>,
    ) -> impl FnOnce() -> Result<Option<Domain>, Failure> + Send + 'static {
        let landlock = matches!(self.active, Active::Landlock(_));
        let given = given.map(Path::to_path_buf);
        let cover = Arc::clone(&self.cover);
        let shared_roots = Arc::clone(&self.shared_roots);
        let span = tracing::Span::current();
        move || {
            if !landlock {
                return Ok(None);
            }
            span.in_scope(|| {
                let (hidden, given) = hidden_roots(&shared_roots, given.as_deref());
                let roots = Roots {
                    hidden,
                    read_only: read_only_roots(),
                };
                build(&cover, &roots, given.as_deref())
            })
            .map(Some)
            .map_err(|e| Failure::io("cannot build the request's Landlock ruleset", e))
        }
    }

    /// `ruleset` with the request's own folder (its temp dir, open) granted: the ruleset each
    /// of its commands enters.
    pub(crate) fn with_own_folder(
        domain: Option<Domain>,
        folder: BorrowedFd<'_>,
    ) -> Result<Option<Arc<Ruleset>>, Failure> {
        match domain {
            None => Ok(None),
            Some(Domain::Whole(ruleset)) => Ok(Some(ruleset)),
            Some(Domain::Own(ruleset)) => {
                ruleset
                    .grant_folder(folder)
                    .map_err(|e| Failure::io("cannot grant the request its temp dir", e))?;
                Ok(Some(Arc::new(ruleset)))
            }
        }
    }
}

/// The roots to hide from a request: every shared root seen so far (that of the request's
/// `given` temp dir registered first) and the private root; with the given temp dir itself,
/// canonical, when it exists.
fn hidden_roots(
    shared_roots: &Mutex<Vec<PathBuf>>,
    given: Option<&Path>,
) -> (Vec<PathBuf>, Option<PathBuf>) {
    let (root, given) = match given {
        Some(given) => shared_root(given),
        None => (None, None),
    };
    let mut roots = shared_roots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(root) = root {
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    (roots.iter().cloned().chain(private_root()).collect(), given)
}

/// What a request may read but not change: the cgroup mounts a command could write through,
/// found once. Through them a command running as root could kill, freeze, limit or move any
/// process of the container, another request's or the runner's; an unprivileged pod mounts them
/// read-only anyway.
fn read_only_roots() -> Arc<[PathBuf]> {
    static ROOTS: std::sync::LazyLock<Arc<[PathBuf]>> = std::sync::LazyLock::new(|| {
        let mounts = crate::process::writable_cgroup_mounts()
            .into_iter()
            .filter_map(|mount| mount.canonicalize().ok());
        read_only_roots_of(mounts).into()
    });
    Arc::clone(&ROOTS)
}

/// The read-only roots that hold the writable cgroup `mounts` (canonical): all of `/sys` for
/// those beneath it, as an unprivileged pod mounts it, and a mount elsewhere itself. Every rule
/// of a ruleset is copied into each command's domain as it enters it, which is most of what the
/// entry costs: `/sys` whole is one rule where its entries and those of `/sys/fs` beside the way
/// to the mounts were some twenty.
fn read_only_roots_of(mounts: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let sys = Path::new("/sys");
    let mut roots: Vec<PathBuf> = Vec::new();
    for mount in mounts {
        let root = if mount.starts_with(sys) {
            sys.to_path_buf()
        } else {
            mount
        };
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots
}

/// The shared root of a given temp dir: the folder holding it (canonical), when it can be
/// hidden (`hideable`). A TempDir of `/tmp`, as Direktiv sends for external services, is shared
/// by every request anyway. With the temp dir itself, canonical, when it exists.
fn shared_root(given: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    // The temp dir itself may not exist yet (the runner makes a missing one).
    let (parent, given) = match given.canonicalize() {
        Ok(given) => (given.parent().map(Path::to_path_buf), Some(given)),
        Err(_) => (given.parent().and_then(|p| p.canonicalize().ok()), None),
    };
    (parent.filter(|parent| hideable(parent)), given)
}

/// Whether the file rules may leave out what is beneath `root`: not when it is `/`, the system
/// temp dir or a folder holding it, nor a folder inside it. The folders on the way to a hidden
/// root take no new entries, and commands expect to make files in `/tmp`. (A pod's shared
/// TempDir root is `/mnt/shared`.)
fn hideable(root: &Path) -> bool {
    let temp = std::env::temp_dir();
    let temp = temp.canonicalize().unwrap_or(temp);
    root != Path::new("/") && !temp.starts_with(root) && !root.starts_with(&temp)
}

/// The ruleset of a request whose temp dir is `given` (canonical; `None`: private, or not made
/// yet), granting the cover of `roots` (the last one when it still holds). Where the cover
/// already grants the temp dir, the cover's own ruleset, made once and shared.
fn build(
    last: &Mutex<Option<Arc<Kept>>>,
    roots: &Roots,
    given: Option<&Path>,
) -> io::Result<Domain> {
    let held = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .filter(|kept| kept.cover.holds_for(roots));
    let kept = match held {
        Some(kept) => kept,
        None => {
            let kept = Arc::new(Kept {
                cover: Cover::walk(roots)?,
                whole: OnceLock::new(),
            });
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&kept));
            kept
        }
    };
    if given.is_some_and(|given| kept.cover.covers(given)) {
        if let Some(whole) = kept.whole.get() {
            return Ok(Domain::Whole(Arc::clone(whole)));
        }
        let whole = Arc::new(granting(&kept.cover)?);
        return Ok(Domain::Whole(Arc::clone(kept.whole.get_or_init(|| whole))));
    }
    granting(&kept.cover).map(Domain::Own)
}

/// A new ruleset granting `cover`.
fn granting(cover: &Cover) -> io::Result<Ruleset> {
    let ruleset = Ruleset::new()?;
    for target in &cover.targets {
        ruleset.grant(target)?;
    }
    Ok(ruleset)
}

/// The runner's root of private temp dirs, made once: a folder of its own outside the system
/// temp dir (`/var/tmp/direktiv-cmd-<uid>`), since hiding a folder in `/tmp` from requests
/// would keep them from making files in `/tmp`. `None` where it cannot be made (or the
/// runner's temp dir is `/var/tmp`).
fn private_root() -> Option<PathBuf> {
    static ROOT: std::sync::LazyLock<Option<PathBuf>> = std::sync::LazyLock::new(|| {
        let uid = rustix::process::getuid().as_raw();
        let root = PathBuf::from(format!("/var/tmp/direktiv-cmd-{uid}"));
        let made = match std::fs::create_dir(&root) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        };
        if let Err(error) = made {
            tracing::debug!(%error, root = %root.display(), "no root of private temp dirs");
            return None;
        }
        // Ours and a real folder (not a link someone planted); other users may pass through
        // (a slot's user to its own folder, under CMD_ISOLATION=uid) but not list it.
        let meta = std::fs::symlink_metadata(&root).ok()?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !meta.is_dir() || meta.uid() != uid {
            return None;
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).ok()?;
        root.canonicalize().ok().filter(|root| hideable(root))
    });
    ROOT.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_holding_a_given_temp_dir_is_hidden_unless_commands_need_it() {
        let pod = tempfile::Builder::new().tempdir_in("/var/tmp").unwrap();
        let shared = pod.path().canonicalize().unwrap();
        // Made or not yet: the folder holding it is the shared root.
        std::fs::create_dir(shared.join("made")).unwrap();
        let made = shared.join("made");
        assert_eq!(shared_root(&made), (Some(shared.clone()), Some(made)));
        let not_yet = shared.join("not-yet");
        assert_eq!(shared_root(&not_yet), (Some(shared.clone()), None));
        // `/`, the temp dir, a folder in it, and what holds the temp dir stay granted.
        let temp = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(shared_root(Path::new("/tmp")).0, None);
        assert_eq!(shared_root(&temp.join("a")).0, None);
        assert!(!hideable(&temp.join("a")));
        assert!(!hideable(Path::new("/")));
    }

    #[test]
    fn writable_cgroup_mounts_under_sys_make_all_of_sys_read_only_once() {
        let v1 = [
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
        ];
        let roots = read_only_roots_of(v1.into_iter().map(PathBuf::from));
        assert_eq!(roots, [PathBuf::from("/sys")]);
        // A cgroup mount elsewhere is its own root; none, no root.
        let elsewhere = ["/sys/fs/cgroup", "/cgroup/memory"].map(PathBuf::from);
        assert_eq!(
            read_only_roots_of(elsewhere),
            [PathBuf::from("/sys"), PathBuf::from("/cgroup/memory")]
        );
        assert!(read_only_roots_of([]).is_empty());
        // A folder whose name only begins like `/sys` is not beneath it.
        assert_eq!(
            read_only_roots_of([PathBuf::from("/system/cgroup")]),
            [PathBuf::from("/system/cgroup")]
        );
    }
}
