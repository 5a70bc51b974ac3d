//! Where the runner makes a cgroup per request: below its own cgroup v2, when that is
//! writable and has `cgroup.kill`. The runner is a child of the test process and starts in
//! its cgroup, so the test can tell beforehand, independently of the runner.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This test process's cgroup v2 directory, when request cgroups can be made in it (found
/// once per test process).
pub fn own_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_own_dir).clone()
}

fn find_own_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = mounts.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        (rest.split_whitespace().next() == Some("cgroup2")).then_some(())?;
        let mut fields = fields.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        let below = Path::new(own).strip_prefix(root).ok()?;
        Some(Path::new(mount_point).join(below))
    })?;
    let probe = dir.join(format!("test-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    usable.then_some(dir)
}
