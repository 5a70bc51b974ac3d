//! Pod mode: the servers run as a Direktiv pod runs them, unprivileged. The runner can make no
//! cgroup there, and /proc shows only the pod's processes, so it tracks a request's processes
//! by the mark in their environment, through /proc.
//!
//! Each server is started as
//! `unshare -m -p -f --mount-proc --propagation private --kill-child -- HARNESS pod-init
//! HOST_MNT_NS SERVER…`: a private mount namespace and a pid namespace with its own /proc, whose
//! init (pid 1) is this harness in `pod-init` mode. `HOST_MNT_NS` is the harness's own mount
//! namespace (`mnt:[<inode>]`): the init refuses to mount anything unless it is pid 1 with no
//! parent in its namespace and in a mount namespace other than that one, so the read-only
//! cgroup mounts can never land on the machine's own. The init re-binds every cgroup mount read-only (`mount --bind D
//! D`, then `mount -o remount,bind,ro D`), starts the server as its child, reaps whatever is
//! orphaned in the namespace, and exits with the server's status. The server itself is not
//! PID 1, as in a shell inside the pod.
//!
//! Stopping: SIGTERM to the server; the init exits when it has, and the namespace with it
//! (every process left in it is killed by the kernel when its init exits). Should the server
//! not exit in time, SIGKILL to the init ends the whole namespace. `--kill-child` makes the
//! init die with `unshare`, so a harness that dies leaves no namespace behind.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustix::process::{Pid, WaitOptions};

use crate::client::Error;

/// How this harness runs a server in its own namespaces: the `unshare` command line before the
/// server's own program and arguments.
pub fn wrapper(harness: &Path, host_mount_ns: &str) -> (&'static str, Vec<OsString>) {
    let args = [
        "-m",
        "-p",
        "-f",
        "--mount-proc",
        "--propagation",
        "private",
        "--kill-child",
        "--",
    ];
    let mut args: Vec<OsString> = args.iter().map(Into::into).collect();
    args.push(harness.into());
    args.push("pod-init".into());
    args.push(host_mount_ns.into());
    ("unshare", args)
}

/// The mount namespace of this process, as `mnt:[<inode>]`.
pub fn mount_namespace() -> Result<String, Error> {
    let link = std::fs::read_link("/proc/self/ns/mnt")?;
    link.into_os_string()
        .into_string()
        .map_err(|link| format!("mount namespace {link:?} is not UTF-8").into())
}

/// Why pod mode cannot run here, if it cannot: it needs root (to make the namespaces and mount)
/// and `unshare`. Whether the kernel lets it is seen when the first server starts.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root, to make the pod's mount and pid namespaces".to_owned());
    }
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("unshare").is_file()))
        .unwrap_or(false);
    (!found).then(|| "no `unshare` (util-linux) in PATH".to_owned())
}

/// `pod-init HOST_MNT_NS PROGRAM ARGS…`: the namespace's init. Makes every cgroup mount
/// read-only, runs the server, reaps orphans, and exits with the server's status.
pub fn init(args: &[String]) -> Result<ExitCode, Error> {
    let [host_mount_ns, program, args @ ..] = args else {
        return Err("usage: pod-init HOST_MNT_NS PROGRAM [ARGS…]".into());
    };
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    may_remount(pid, parent, &mount_namespace()?, host_mount_ns)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for dir in cgroup_mounts(&mountinfo) {
        read_only(&dir)?;
    }
    let server = std::process::Command::new(program).args(args).spawn()?;
    let server = Pid::from_raw(server.id() as i32).ok_or("the server has no pid")?;
    loop {
        // Every process orphaned in the namespace is reparented here; reap them all until the
        // server itself has exited.
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == server => {
                let code = status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|signal| 128 + signal))
                    .unwrap_or(1);
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("waiting for the server: {e}").into()),
        }
    }
}

/// Whether a process may make the cgroup mounts read-only: only as the init of a new pid
/// namespace (pid 1, its parent outside it: 0) in a mount namespace that is not the host's.
fn may_remount(pid: i32, parent: i32, mount_ns: &str, host_mount_ns: &str) -> Result<(), String> {
    if pid != 1 || parent != 0 {
        return Err(format!(
            "pod-init must be the init of a new pid namespace (pid 1 with parent 0), not pid \
             {pid} with parent {parent}"
        ));
    }
    if mount_ns == host_mount_ns {
        return Err(format!(
            "pod-init must run in a mount namespace of its own, not the host's {host_mount_ns}"
        ));
    }
    Ok(())
}

/// `mount --bind DIR DIR`, then `mount -o remount,bind,ro DIR`: `DIR` read-only in this mount
/// namespace only (the harness made it private).
fn read_only(dir: &Path) -> Result<(), Error> {
    let dir = dir.as_os_str();
    let bind = [OsStr::new("--bind"), dir, dir];
    let remount = [OsStr::new("-o"), OsStr::new("remount,bind,ro"), dir];
    for args in [&bind[..], &remount[..]] {
        let status = std::process::Command::new("mount").args(args).status()?;
        if !status.success() {
            return Err(format!("mount {args:?}: {status}").into());
        }
    }
    Ok(())
}

/// The mount points of every cgroup file system (v1 `cgroup` and v2 `cgroup2`) in a
/// /proc/<pid>/mountinfo text.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let fs_type = fs.split(' ').next()?;
            let point = mount.split(' ').nth(4)?;
            matches!(fs_type, "cgroup" | "cgroup2").then(|| PathBuf::from(unescape(point)))
        })
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space, …) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The processes whose parent is `parent`, from /proc (no `children` file needed).
pub fn children_of(parent: Pid) -> Vec<Pid> {
    let parent = parent.as_raw_nonzero().get();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
                == Some(parent)
        })
        .filter_map(Pid::from_raw)
        .collect()
}

/// Field 4 of a /proc/<pid>/stat line (counted after the name, which may hold anything).
fn parent_of(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_cgroup_mount_and_nothing_else() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:5 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:39 / /mnt/my\\040cgroups rw - cgroup2 none rw
43 23 0:40 / /mnt/cgroup-like rw - ext4 /dev/sda1 rw
";
        assert_eq!(
            cgroup_mounts(mountinfo),
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/mnt/my cgroups"
            ]
            .map(PathBuf::from)
        );
        assert!(cgroup_mounts("").is_empty());
    }

    #[test]
    fn unescapes_only_octal_escapes() {
        assert_eq!(unescape(r"a\040b\011c"), "a b\tc");
        assert_eq!(unescape(r"a\9b\04"), r"a\9b\04");
    }

    #[test]
    fn the_wrapper_runs_this_harness_as_init_in_new_namespaces() {
        let (program, args) = wrapper(Path::new("/h/bench"), "mnt:[1]");
        assert_eq!(program, "unshare");
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-m",
                "-p",
                "-f",
                "--mount-proc",
                "--propagation",
                "private",
                "--kill-child",
                "--",
                "/h/bench",
                "pod-init",
                "mnt:[1]"
            ]
        );
    }

    #[test]
    fn finds_a_childs_pid_by_its_parent() {
        assert_eq!(parent_of("42 (a) b) S 7 42 42 0"), Some(7));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let children = children_of(rustix::process::getpid());
        let pid = child.id() as i32;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            children.iter().any(|c| c.as_raw_nonzero().get() == pid),
            "{children:?} lacks {pid}"
        );
    }

    #[test]
    fn pod_init_remounts_only_as_the_init_of_new_namespaces() {
        assert_eq!(may_remount(1, 0, "mnt:[2]", "mnt:[1]"), Ok(()));
        // The machine's own init, a process of the host, the host's mount namespace.
        for (pid, parent, ns) in [(1, 1, "mnt:[2]"), (42, 7, "mnt:[2]"), (1, 0, "mnt:[1]")] {
            let refused = may_remount(pid, parent, ns, "mnt:[1]");
            assert!(refused.is_err(), "{pid} {parent} {ns}");
        }
        assert!(mount_namespace().unwrap().starts_with("mnt:["));
    }
}
