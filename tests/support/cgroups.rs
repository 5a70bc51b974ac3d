//! Where the runner makes a cgroup per request: below its own cgroup v2, when that is
//! writable and has `cgroup.kill`. The runner is a child of the test process and starts in
//! its cgroup, so the test can tell beforehand, independently of the runner.
//!
//! A `CgroupSandbox` is a cgroup of a test's own to start a runner in: the request cgroups
//! that runner makes land inside it, apart from every other runner on the machine (as PID 1 of
//! a pid namespace every runner is pid 2, so their request cgroups would share names), and
//! whatever a test leaves in it is thawed, killed and removed, deepest first, when the sandbox
//! is dropped.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::runner::{binary, RunnerBuilder};

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

/// Shell lines that set `$name` and `$d` to the command's own memory cgroup: its name and its
/// folder below `$MEMDIR` (`memory_dir`, passed in the request's env). Followed by more lines.
pub const FIND_OWN_MEMORY_CGROUP: &str =
    "name=$(grep -o 'direktiv-cmd-[0-9]*-mem-[0-9]*' /proc/self/cgroup | head -n1); \
     d=$(find \"$MEMDIR\" -maxdepth 2 -type d -name \"$name\" | head -n1); ";

/// `memory_dir`, in a test that checked `Capability::MemoryCgroups` first.
pub fn expect_memory_dir() -> PathBuf {
    memory_dir().expect("Capability::MemoryCgroups without a memory cgroup directory")
}

/// Where a runner started by this test process makes its commands' memory cgroups: its own
/// cgroup v1 memory cgroup, when a limited cgroup can be made in it, or its cgroup v2 when that
/// delegates the memory controller (found once per test process).
pub fn memory_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_memory_dir).clone()
}

fn find_memory_dir() -> Option<PathBuf> {
    if let Some(own) = own_dir() {
        let delegated = std::fs::read_to_string(own.join("cgroup.subtree_control"))
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "memory"));
        if delegated {
            return Some(own);
        }
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let controllers = fields.nth(1)?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| fields.next())?
    })?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = mounts.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        let mut rest = rest.split_whitespace();
        let is_memory = rest.next() == Some("cgroup")
            && rest
                .nth(1)
                .is_some_and(|options| options.split(',').any(|o| o == "memory"));
        is_memory.then_some(())?;
        let mut fields = fields.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = Path::new(fields.next()?);
        let below = Path::new(own).strip_prefix(root).ok()?;
        let dir = mount_point.join(below);
        Some(if dir.is_dir() {
            dir
        } else {
            mount_point.to_owned()
        })
    })?;
    let probe = dir.join(format!("test-memory-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let usable = std::fs::write(probe.join("memory.limit_in_bytes"), "268435456").is_ok();
    let _ = std::fs::remove_dir(&probe);
    usable.then_some(dir)
}

/// The cgroup2 mount point `dir` (a cgroup directory) lies under.
fn mount_of(dir: &Path) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        (rest.split_whitespace().next() == Some("cgroup2")).then_some(())?;
        let mount = PathBuf::from(fields.split_whitespace().nth(4)?);
        dir.starts_with(&mount).then_some(mount)
    })
}

/// A fresh cgroup below the test's own, removed with everything in it on drop.
pub struct CgroupSandbox {
    dir: PathBuf,
    /// Where the cgroup2 file system is mounted (commands find their cgroup below it).
    mount: PathBuf,
}

impl CgroupSandbox {
    /// A new sandbox below the test's own cgroup; `None` where request cgroups cannot be made
    /// (a test checks `Capability::Cgroups` first).
    pub fn new() -> Option<CgroupSandbox> {
        let own = own_dir()?;
        let mount = mount_of(&own)?;
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = own.join(format!("dcmd-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(CgroupSandbox { dir, mount })
    }

    /// The sandbox's directory: the runner's own cgroup, and the parent of its request cgroups.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where cgroup2 is mounted: a command's cgroup is this joined with the `0::` path of its
    /// /proc/self/cgroup (`CG_MOUNT` in the `env` of `command_env`).
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Environment for a request whose commands look at their own cgroup: `CG_MOUNT`, and
    /// `CG_PARENT` (the sandbox, the parent of every request cgroup of the runner).
    pub fn command_env(&self) -> serde_json::Value {
        serde_json::json!({
            "CG_MOUNT": self.mount.display().to_string(),
            "CG_PARENT": self.dir.display().to_string(),
        })
    }

    /// A runner builder whose process moves into the sandbox before it execs `program` with
    /// `args` (`binary()` and nothing when `program` is `None`).
    pub fn runner(&self, program: Option<(&str, &[&str])>) -> RunnerBuilder {
        let binary = binary();
        let (program, args): (&str, Vec<&str>) = match program {
            Some((program, args)) => (program, args.to_vec()),
            None => (binary.to_str().expect("a UTF-8 binary path"), Vec::new()),
        };
        let mut builder = RunnerBuilder::default()
            .program("sh")
            .arg("-c")
            .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
            .arg(&self.dir)
            .arg(program);
        for arg in args {
            builder = builder.arg(arg);
        }
        builder
    }

    /// The folders directly below the sandbox (the runner's request cgroups and anything a
    /// test made there), sorted.
    pub fn children(&self) -> Vec<PathBuf> {
        subdirs(&self.dir)
    }

    /// The runner's request cgroups: `direktiv-cmd-*` folders directly below the sandbox.
    pub fn request_cgroups(&self) -> Vec<PathBuf> {
        self.children()
            .into_iter()
            .filter(|dir| name_of(dir).starts_with("direktiv-cmd-"))
            .collect()
    }

    /// Waits until `check` holds for the request cgroups, or `timeout` passes; returns them as
    /// they were last seen.
    pub fn wait_request_cgroups(
        &self,
        timeout: Duration,
        check: impl Fn(&[PathBuf]) -> bool,
    ) -> Vec<PathBuf> {
        let until = Instant::now() + timeout;
        loop {
            let now = self.request_cgroups();
            if check(&now) || Instant::now() >= until {
                return now;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether a process is in cgroup `dir` or below it (`populated` of its `cgroup.events`).
pub fn populated(dir: &Path) -> bool {
    !std::fs::read_to_string(dir.join("cgroup.events"))
        .unwrap_or_default()
        .contains("populated 0")
}

/// Whether cgroup `dir` is frozen (`frozen 1` in its `cgroup.events`).
pub fn frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .unwrap_or_default()
        .contains("frozen 1")
}

/// The folders directly below `dir` (nested cgroups), sorted.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Thaws and kills everything in `dir` and below, then removes the cgroups, deepest first.
fn tear_down(dir: &Path) {
    for child in subdirs(dir) {
        tear_down(&child);
    }
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let until = Instant::now() + Duration::from_secs(10);
    while populated(dir) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    while std::fs::remove_dir(dir).is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for CgroupSandbox {
    fn drop(&mut self) {
        tear_down(&self.dir);
        if self.dir.exists() {
            eprintln!("could not remove the test cgroup {}", self.dir.display());
        }
    }
}

/// The memory cgroups of the runner with `pid` below `dir`, two levels deep (v2 nests them in
/// request cgroups); with `pid` `None`, those of any runner (`direktiv-cmd-*-mem-*`).
pub fn memory_cgroups_of(pid: impl Into<Option<u32>>, dir: &Path) -> Vec<PathBuf> {
    let prefix = match pid.into() {
        Some(pid) => format!("direktiv-cmd-{pid}-mem-"),
        None => "direktiv-cmd-".to_owned(),
    };
    let folders = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    folders(dir)
        .into_iter()
        .flat_map(|child| folders(&child).into_iter().chain([child]))
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.contains("-mem-")
            })
        })
        .collect()
}
