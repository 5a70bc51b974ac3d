//! Landlock, the kernel's unprivileged sandbox, as the runner uses it to keep concurrent
//! requests apart: a ruleset is built in the runner once per request (`Ruleset`), and each
//! command's child enters it just before its exec (`enter`, a duty of `child`).
//!
//! A process that enters a ruleset gets a domain of its own, which it and its descendants keep
//! for good. The kernel then refuses, across domains: ptrace access (so /proc/<pid>/environ,
//! mem, maps and fd of a process of another request, or of the runner, cannot be read);
//! signals (from ABI 6, `SCOPE_SIGNAL`); connecting to abstract unix sockets made outside the
//! domain (from ABI 6); and every file access the ruleset does not grant. rustix has no
//! Landlock calls: the three system calls are made through `libc::syscall`, with the kernel's
//! structures declared here as the uapi header declares them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::LazyLock;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// `landlock_create_ruleset` flag: return the ABI version instead of a ruleset.
const CREATE_RULESET_VERSION: libc::c_uint = 1;
/// `landlock_add_rule` rule type: access beneath a file or folder.
const RULE_PATH_BENEATH: libc::c_int = 1;

/// File rights (`LANDLOCK_ACCESS_FS_*`), with the ABI that introduced them.
const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
/// Rights 3 to 12 of ABI 1 (read a folder, remove and make entries) concern folders only.
const FS_ABI1: u64 = (1 << 13) - 1;
/// ABI 1: list a folder.
const FS_READ_DIR: u64 = 1 << 3;
/// ABI 2: `REFER`, moving and linking across folders. Handled (and granted) so that such
/// moves work: where it is not handled, the kernel refuses every one of them.
const FS_REFER: u64 = 1 << 13;
/// ABI 3: `TRUNCATE`.
const FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5: `IOCTL_DEV`, ioctl on devices.
const FS_IOCTL_DEV: u64 = 1 << 15;
/// The rights that apply to a file that is not a folder (the kernel refuses the others there).
const FS_FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

/// ABI 6 scopes: abstract unix sockets and signals stay within the domain.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// `struct landlock_ruleset_attr` (ABI 6 layout; an older kernel accepts the longer struct as
/// long as the fields it does not know are zero).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`, packed like the kernel's.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel, asked once; `None` where Landlock is
/// missing (not built in, or not enabled in the boot's LSM list) or refused (a seccomp filter).
pub(crate) fn abi() -> Option<u32> {
    static ABI: LazyLock<Option<u32>> = LazyLock::new(|| {
        // SAFETY: with the VERSION flag and no attribute (null, size 0) the call reads and
        // writes no memory; it only returns the ABI version, or -1 with errno.
        let version = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0_usize,
                CREATE_RULESET_VERSION,
            )
        };
        u32::try_from(version).ok().filter(|abi| *abi >= 1)
    });
    *ABI
}

/// Every file right the ABI knows.
fn handled_fs(abi: u32) -> u64 {
    let mut rights = FS_ABI1;
    if abi >= 2 {
        rights |= FS_REFER;
    }
    if abi >= 3 {
        rights |= FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= FS_IOCTL_DEV;
    }
    rights
}

/// What the ABI scopes to the domain beyond ptrace (which every ABI scopes).
fn scopes(abi: u32) -> u64 {
    match abi >= 6 {
        true => SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL,
        false => 0,
    }
}

/// A request's ruleset: every file right handled (so only what is granted is allowed), signals
/// and abstract sockets scoped where the ABI can; built in the runner, entered by each of the
/// request's commands before exec.
#[derive(Debug)]
pub(crate) struct Ruleset {
    fd: OwnedFd,
    handled: u64,
}

impl Ruleset {
    /// An empty ruleset for this kernel's ABI: it allows no file access until `grant`.
    pub(crate) fn new() -> io::Result<Ruleset> {
        let abi = abi().ok_or_else(|| io::Error::from_raw_os_error(libc::EOPNOTSUPP))?;
        let attr = RulesetAttr {
            handled_access_fs: handled_fs(abi),
            handled_access_net: 0,
            scoped: scopes(abi),
        };
        // SAFETY: `attr` is a live, initialised `landlock_ruleset_attr` of the size passed;
        // the kernel only reads it. The result is a new descriptor or -1 with errno.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size_of::<RulesetAttr>(),
                0_u32,
            )
        };
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("bad ruleset descriptor"))?;
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned `fd` as a new descriptor, owned by nobody else; the
        // ruleset is close-on-exec (the kernel makes it so).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ruleset {
            fd,
            handled: handled_fs(abi),
        })
    }

    /// Allows what `target` was opened for beneath it (a folder), or on it (any other file).
    pub(crate) fn grant(&self, target: &GrantTarget) -> io::Result<()> {
        let rights = match (target.access, target.folder) {
            (Access::Full, true) => self.handled,
            (Access::Full, false) => self.handled & FS_FILE_RIGHTS,
            (Access::Read, true) => FS_READ_FILE | FS_READ_DIR,
            (Access::Read, false) => FS_READ_FILE,
        };
        self.add_rule(target.fd.as_fd(), rights)
    }

    /// Allows everything beneath `folder`, open (any descriptor of a folder).
    pub(crate) fn grant_folder(&self, folder: BorrowedFd<'_>) -> io::Result<()> {
        self.add_rule(folder, self.handled)
    }

    fn add_rule(&self, beneath: BorrowedFd<'_>, rights: u64) -> io::Result<()> {
        let attr = PathBeneathAttr {
            allowed_access: rights,
            parent_fd: beneath.as_raw_fd(),
        };
        // SAFETY: `attr` is a live, initialised `landlock_path_beneath_attr` naming an open
        // descriptor; the kernel only reads it (and takes its own reference to the file).
        let done = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0_u32,
            )
        };
        match done {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// The descriptor a child enters (`enter`).
    pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A file or folder a ruleset may grant, opened once (`O_PATH`: nothing is read) so that many
/// rulesets can grant it without looking it up again.
#[derive(Debug)]
pub(crate) struct GrantTarget {
    fd: OwnedFd,
    folder: bool,
    access: Access,
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Everything: read, write, execute, make and remove entries.
    Full,
    /// Reading files and listing folders, nothing else.
    Read,
}

impl GrantTarget {
    /// `path`, unless it is a symbolic link (`None`): a link is not followed, as its target is
    /// reached by its own path, and following one could grant what must stay hidden.
    pub(crate) fn open(path: &Path, access: Access) -> io::Result<Option<GrantTarget>> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        Ok(match kind {
            FileType::Symlink => None,
            kind => Some(GrantTarget {
                fd,
                folder: kind == FileType::Directory,
                access,
            }),
        })
    }
}

/// In the child, before exec: without the capabilities that pass the domain's ptrace scoping
/// (`PAST_THE_SCOPE`), with no new privileges (the kernel's
/// condition for an unprivileged process to restrict itself; exec of a set-uid file then gives
/// no privileges either), then in the domain of `ruleset`. Async-signal-safe: raw system calls,
/// no allocation.
pub(super) fn enter(ruleset: BorrowedFd<'_>) -> Result<(), Errno> {
    drop_capabilities_past_the_scope()?;
    rustix::thread::set_no_new_privs(true)?;
    // SAFETY: `landlock_restrict_self` takes a ruleset descriptor and flags and touches no
    // memory of the caller; `ruleset` is open (borrowed from the parent's plan, alive while the
    // parent is suspended). It returns 0 or -1 with errno (the child's thread errno, which
    // nothing of the runner reads: see `child`).
    let done = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
    match done {
        0 => Ok(()),
        _ => Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::PERM)),
    }
}

/// The capabilities that carry a process past Landlock's ptrace scoping: with `CAP_SYS_ADMIN`
/// or `CAP_PERFMON` a root command in a domain still reads the /proc environ and memory of
/// processes in sibling domains (measured on Linux 6.18), and `CAP_SYS_PTRACE` is the one that
/// overrides ptrace checks by design. Container runtimes leave all three out of a container's
/// default set, so commands lose nothing they would have in an ordinary pod.
const PAST_THE_SCOPE: [rustix::thread::CapabilitySet; 3] = [
    rustix::thread::CapabilitySet::SYS_ADMIN,
    rustix::thread::CapabilitySet::PERFMON,
    rustix::thread::CapabilitySet::SYS_PTRACE,
];

/// Gives up the capabilities `PAST_THE_SCOPE`: from the bounding set first (root's exec takes
/// its permitted set from there), then from the sets the child holds. A runner without
/// `CAP_SETPCAP` cannot touch the bounding set, and needs not: it holds none of them to hand
/// on, and with no new privileges no file capability grants one.
fn drop_capabilities_past_the_scope() -> Result<(), Errno> {
    use rustix::thread::CapabilitySet;
    let mut all = CapabilitySet::empty();
    for capability in PAST_THE_SCOPE {
        match rustix::thread::remove_capability_from_bounding_set(capability) {
            // EINVAL: a kernel older than the capability, which then grants nothing.
            Ok(()) | Err(Errno::PERM | Errno::INVAL) => {}
            Err(errno) => return Err(errno),
        }
        all |= capability;
    }
    let mut sets = rustix::thread::capabilities(None)?;
    if (sets.effective | sets.permitted | sets.inheritable).intersects(all) {
        sets.effective.remove(all);
        sets.permitted.remove(all);
        sets.inheritable.remove(all);
        rustix::thread::set_capabilities(None, sets)?;
    }
    Ok(())
}
