//! Starting a command's process with `posix_spawn`, or — for a command with resource limits
//! or a cgroup to join, which need work of ours between fork and exec — with the vfork-style
//! child of `vfork.rs`. Either way the command becomes the OOM killer's first choice (`oom`).
//!
//! std's `Command` uses posix_spawn (a `CLONE_VM | CLONE_VFORK` child that only execs) unless a
//! working directory is set and `posix_spawn_file_actions_addchdir_np` cannot be found through
//! its weak-symbol lookup — which is always the case in a static glibc binary. It then forks,
//! copying the runner's page tables and paying copy-on-write faults afterwards: most of the
//! runner's per-command cost. Every command has a working directory, so the runner calls
//! posix_spawn itself, with the change of directory (`fchdir` to the open folder the workspace
//! checked: no path is looked up again), the new process group and the pipes as spawn
//! actions. The file to execute comes located (`launch`): nothing is searched here.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::LazyLock;

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::Pid;

use super::cgroup::CgroupEntry;
use super::{oom, usage, vfork};
use crate::limits::RlimitPlan;

/// What to start.
pub struct SpawnRequest<'a> {
    /// The file to execute, exactly (no PATH search); a relative path is taken from `cwd`.
    pub path: &'a OsStr,
    /// argv[0], as the user named the program.
    pub argv0: &'a str,
    /// argv[1..].
    pub args: &'a [String],
    /// The child's working directory, an open folder entered by descriptor.
    pub cwd: BorrowedFd<'a>,
    /// The child's environment.
    pub env: ChildEnv,
    /// Give the child a stdin pipe to write to; otherwise its stdin is at EOF at once.
    pub stdin: bool,
    /// Resource limits to set before exec; none (and no cgroup) keeps the posix_spawn path.
    pub limits: RlimitPlan,
    /// The request's cgroup: the child is created in it or moves itself there before exec,
    /// so not even its first fork starts outside. Takes the vfork path too.
    pub cgroup: Option<CgroupEntry<'a>>,
}

/// How a command is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// posix_spawn: no code of ours runs between fork and exec.
    PosixSpawn,
    /// Our own vfork-style child, which joins the cgroup and sets the limits before it
    /// execs (`vfork.rs`). As cheap as posix_spawn: no page-table copy either.
    Vfork,
}

impl Method {
    /// posix_spawn unless there are limits to set or a cgroup to join: then the command must
    /// never run a single instruction unlimited or outside, so the child does it before exec.
    fn for_command(limits: &RlimitPlan, cgroup: bool) -> Method {
        if limits.is_empty() && !cgroup {
            Method::PosixSpawn
        } else {
            Method::Vfork
        }
    }
}

/// A started process: the leader of its own new process group.
pub struct Spawned {
    pub pid: Pid,
    /// Whether the process joined the request's cgroup before exec (never on the posix_spawn
    /// path, which is taken only when there is no cgroup to join).
    pub joined_cgroup: bool,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts the process. Errors are the exec's (`NotFound`, `PermissionDenied`, `ENOEXEC`, ...).
pub fn spawn(request: SpawnRequest<'_>) -> io::Result<Spawned> {
    let env = request.env;
    let path = c_string(request.path.as_bytes())?;
    let argv: Vec<CString> = std::iter::once(request.argv0.as_bytes())
        .chain(request.args.iter().map(|a| a.as_bytes()))
        .map(c_string)
        .collect::<io::Result<_>>()?;

    // Pipes are close-on-exec: the child gets only the dup2'ed copies on 0, 1 and 2.
    let stdin = Stdin::for_request(request.stdin)?;
    let stdin_read = stdin.child_end();
    let (stdout_read, stdout_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stderr_read, stderr_write) = pipe_with(PipeFlags::CLOEXEC)?;

    // Linux counts the memory of the image exec replaces in the command's peak RSS: with
    // posix_spawn that is the runner's own, peak included. Resetting the runner's peak to its
    // current size keeps an earlier busy moment of the runner out of `max_rss_kib`.
    usage::reset_own_peak_rss();
    let method = Method::for_command(&request.limits, request.cgroup.is_some());
    let image = vfork::Image {
        path,
        argv,
        env,
        cwd: request.cwd,
    };
    let stdio = [stdin_read, &stdout_write, &stderr_write];
    let mut pause = TEXT_BUSY_FIRST_PAUSE;
    let mut tries = 1;
    let (pid, joined_cgroup) = loop {
        match start_once(method, &image, stdio, request.limits, request.cgroup) {
            Err(error)
                if error.raw_os_error() == Some(libc::ETXTBSY) && tries < TEXT_BUSY_TRIES =>
            {
                std::thread::sleep(pause);
                pause *= 2;
                tries += 1;
            }
            started => break started?,
        }
    };
    // The child's ends close here: EOF on stdout/stderr then means every holder is gone, and
    // a stdin pipe's reader is the child's alone.
    drop((stdout_write, stderr_write));
    Ok(Spawned {
        pid,
        joined_cgroup,
        stdin: stdin.into_writer(),
        stdout: stdout_read,
        stderr: stderr_read,
    })
}

/// How often a start refused with ETXTBSY ("text file busy") is tried, and the first pause
/// between tries (doubled each time: 127 ms in all, which a child descheduled on a loaded
/// machine between its fork and its exec may need). A file the request just wrote is closed
/// before its command starts, but a child another thread is starting at that moment holds a
/// copy of the writer's descriptor until its own exec closes it (close-on-exec applies at exec,
/// not at fork): for those microseconds the kernel refuses to execute the file.
const TEXT_BUSY_TRIES: u32 = 8;
const TEXT_BUSY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// One try at starting the process the way `method` says.
fn start_once(
    method: Method,
    image: &vfork::Image<'_>,
    stdio: [&OwnedFd; 3],
    limits: RlimitPlan,
    cgroup: Option<CgroupEntry<'_>>,
) -> io::Result<(Pid, bool)> {
    match method {
        Method::PosixSpawn => {
            let [stdin, stdout, stderr] = stdio;
            let pid = posix_spawn(&SpawnCall {
                path: &image.path,
                cwd: image.cwd.as_raw_fd(),
                argv: &image.argv,
                envp: &image.env.pointers(),
                stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            })?;
            // Only now can the score be raised; what the command forks in the microseconds
            // before inherits the runner's score (the vfork path has no such window).
            oom::raise_oom_score(pid);
            Ok((pid, false))
        }
        Method::Vfork => {
            let started = vfork::spawn(image, stdio, limits, cgroup)?;
            Ok((started.pid, started.joined_cgroup))
        }
    }
}

/// `/dev/null` for reading, opened once, for the stdin of every command given no stdin text:
/// EOF at once, like a pipe whose writer is gone, without making a pipe per command. `None`
/// where there is no usable one (a bare chroot, or something other than the null device at
/// that path): such commands get that pipe.
static DEV_NULL: LazyLock<Option<OwnedFd>> = LazyLock::new(|| {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    (FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice).then_some(fd)
});

/// A command's stdin: a pipe the runner writes the request's text to, or EOF at once.
enum Stdin {
    /// The reader goes to the child; the writer to the runner (`None`: nothing to write, the
    /// writer closes as soon as the child has its copy of the reader).
    Pipe(OwnedFd, Option<OwnedFd>),
    /// The shared `/dev/null`.
    Null(&'static OwnedFd),
}

impl Stdin {
    fn for_request(has_text: bool) -> io::Result<Stdin> {
        match DEV_NULL.as_ref() {
            Some(null) if !has_text => Ok(Stdin::Null(null)),
            _ => {
                let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
                Ok(Stdin::Pipe(read, has_text.then_some(write)))
            }
        }
    }

    /// The fd that becomes the child's 0.
    fn child_end(&self) -> &OwnedFd {
        match self {
            Stdin::Pipe(read, _) => read,
            Stdin::Null(null) => null,
        }
    }

    /// The runner's end, for the stdin text; the child's end closes here.
    fn into_writer(self) -> Option<OwnedFd> {
        match self {
            Stdin::Pipe(_, writer) => writer,
            Stdin::Null(_) => None,
        }
    }
}

/// The runner's own environment as `KEY=value` strings, built once: it never changes while
/// the runner runs, and rebuilding it for every command would be most of a spawn's allocations.
static BASE_ENV: LazyLock<Vec<(Vec<u8>, CString)>> = LazyLock::new(|| {
    std::env::vars_os()
        .filter_map(|(key, value)| {
            let entry = CString::new([key.as_bytes(), b"=", value.as_bytes()].concat()).ok()?;
            Some((key.into_vec(), entry))
        })
        .collect()
});

/// A child's environment: the runner's own, with the request's variables over it.
pub(super) struct ChildEnv {
    /// The request's variables, the last of each name only (later wins), as `KEY=value`.
    overrides: Vec<(Vec<u8>, CString)>,
}

impl ChildEnv {
    pub(super) fn new(variables: &[(&str, &str)]) -> io::Result<Self> {
        let mut overrides: Vec<(Vec<u8>, CString)> = Vec::with_capacity(variables.len());
        for (key, value) in variables.iter().rev() {
            if overrides.iter().all(|(k, _)| k != key.as_bytes()) {
                let entry = c_string(&[key.as_bytes(), b"=", value.as_bytes()].concat())?;
                overrides.push((key.as_bytes().to_vec(), entry));
            }
        }
        Ok(ChildEnv { overrides })
    }

    fn overridden(&self, key: &[u8]) -> bool {
        self.overrides.iter().any(|(k, _)| k == key)
    }

    /// The PATH the child will see.
    pub(super) fn path(&self) -> Option<&OsStr> {
        self.overrides
            .iter()
            .chain(BASE_ENV.iter())
            .find(|(k, _)| k == b"PATH")
            .map(|(_, entry)| OsStr::from_bytes(&entry.as_bytes()["PATH=".len()..]))
    }

    /// `envp` for posix_spawn (NUL-terminated); the pointers borrow from `self` and BASE_ENV.
    pub(super) fn pointers(&self) -> Vec<*const libc::c_char> {
        BASE_ENV
            .iter()
            .filter(|(k, _)| !self.overridden(k))
            .chain(self.overrides.iter())
            .map(|(_, entry)| entry.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes.to_vec()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in an argument or variable",
        )
    })
}

/// Everything `posix_spawn` reads, borrowed for the duration of the call.
struct SpawnCall<'a> {
    path: &'a CString,
    /// The working directory, an open folder.
    cwd: i32,
    argv: &'a [CString],
    /// NUL-terminated; the strings it points to outlive the call.
    envp: &'a [*const libc::c_char],
    /// The fds that become the child's 0, 1 and 2.
    stdio: [i32; 3],
}

/// The raw call, with its attribute and file-action objects.
fn posix_spawn(call: &SpawnCall<'_>) -> io::Result<Pid> {
    let argv = null_terminated(call.argv);
    let mut actions = FileActions::new()?;
    for (target, fd) in call.stdio.iter().enumerate() {
        actions.dup2(*fd, target as i32)?;
    }
    actions.fchdir(call.cwd)?;
    let attributes = Attributes::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: `pid` is a valid out-pointer; `path` is a NUL-terminated string; `actions` and
    // `attributes` were initialised by their `init` functions and are destroyed only when
    // they drop, after this call; `argv` and `envp` are NUL-terminated arrays of pointers into
    // CStrings (`call.argv`, the child's `ChildEnv` and BASE_ENV) that outlive the call.
    // glibc's posix_spawn runs the child on its own stack with CLONE_VFORK and is safe to call
    // from any thread.
    let result = unsafe {
        libc::posix_spawn(
            &mut pid,
            call.path.as_ptr(),
            actions.as_ptr(),
            attributes.as_ptr(),
            argv.as_ptr() as *const *mut libc::c_char,
            call.envp.as_ptr() as *const *mut libc::c_char,
        )
    };
    check(result)?;
    // A successful posix_spawn always stores the child's (positive) pid.
    Pid::from_raw(pid).ok_or_else(|| io::Error::other("posix_spawn gave no process id"))
}

pub(super) fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// posix_spawn functions return an errno value instead of setting errno.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(result))
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(Box<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero posix_spawn_file_actions_t is a valid value to pass to init,
        // which overwrites it; the Box gives it a stable address for its whole life.
        let mut actions =
            Box::new(unsafe { std::mem::zeroed::<libc::posix_spawn_file_actions_t>() });
        // SAFETY: `actions` points to writable memory of the right type.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut *actions) })?;
        Ok(FileActions(actions))
    }

    fn dup2(&mut self, fd: i32, target: i32) -> io::Result<()> {
        // SAFETY: the object was initialised in `new`; the fds are plain integers here.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut *self.0, fd, target) })
    }

    fn fchdir(&mut self, dir: i32) -> io::Result<()> {
        // SAFETY: the object was initialised in `new`; the descriptor is a plain integer here,
        // and the caller keeps it open until `posix_spawn` has returned.
        check(unsafe { libc::posix_spawn_file_actions_addfchdir_np(&mut *self.0, dir) })
    }

    fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
        &*self.0
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once, here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut *self.0) };
    }
}

/// `posix_spawnattr_t`: a new process group, an empty signal mask, and every signal at its
/// default disposition (the runner ignores SIGPIPE; commands must not inherit that).
struct Attributes(Box<libc::posix_spawnattr_t>);

impl Attributes {
    fn new() -> io::Result<Self> {
        // SAFETY: as for `FileActions::new`: zeroed memory handed to init, at a stable address.
        let mut attr = Box::new(unsafe { std::mem::zeroed::<libc::posix_spawnattr_t>() });
        // SAFETY: `attr` points to writable memory of the right type.
        check(unsafe { libc::posix_spawnattr_init(&mut *attr) })?;
        let mut attributes = Attributes(attr);
        let attr: *mut libc::posix_spawnattr_t = &mut *attributes.0;
        // SAFETY: sigset_t is plain data; sigemptyset/sigfillset initialise it fully.
        let (mut empty, mut all) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: the sets are valid, writable sigset_t values; `attr` points to the attribute
        // object initialised above, owned by `attributes` and not aliased elsewhere.
        unsafe {
            libc::sigemptyset(&mut empty);
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigmask(attr, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(attr, &all))?;
            check(libc::posix_spawnattr_setpgroup(attr, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(attr, flags as libc::c_short))?;
        }
        Ok(attributes)
    }

    fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
        &*self.0
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once, here.
        unsafe { libc::posix_spawnattr_destroy(&mut *self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Both ways of starting a command; each test checks that they behave the same.
    fn methods() -> [RlimitPlan; 2] {
        let limited = Limits {
            open_files: Some(512),
            ..Limits::default()
        };
        [RlimitPlan::default(), limited.rlimits()]
    }

    /// A folder, open as commands get their working directory.
    fn open_dir(path: &Path) -> io::Result<OwnedFd> {
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
        Ok(rustix::fs::open(path, flags, rustix::fs::Mode::empty())?)
    }

    /// Starts `program` (a path, as `launch` would locate it) in `cwd`.
    fn start(
        program: &str,
        args: &[String],
        cwd: &Path,
        env: Vec<(&str, &str)>,
        limits: RlimitPlan,
    ) -> io::Result<Spawned> {
        let dir = open_dir(cwd)?;
        spawn(SpawnRequest {
            path: OsStr::new(program),
            argv0: program.rsplit('/').next().unwrap_or(program),
            args,
            cwd: dir.as_fd(),
            env: ChildEnv::new(&env)?,
            stdin: false,
            limits,
            cgroup: None,
        })
    }

    fn run(
        program: &str,
        args: &[&str],
        cwd: &Path,
        env: Vec<(&str, &str)>,
        limits: RlimitPlan,
    ) -> (String, i32) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let spawned = start(program, &args, cwd, env, limits).unwrap();
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .unwrap();
        let status =
            rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty())
                .unwrap()
                .unwrap()
                .1;
        (out, status.exit_status().unwrap_or(-1))
    }

    #[test]
    fn commands_without_limits_or_cgroup_take_posix_spawn_and_others_vfork() {
        assert_eq!(
            Method::for_command(&RlimitPlan::default(), false),
            Method::PosixSpawn
        );
        assert_eq!(
            Method::for_command(&Limits::default().rlimits(), false),
            Method::PosixSpawn
        );
        assert_eq!(
            Method::for_command(&RlimitPlan::default(), true),
            Method::Vfork,
            "a cgroup to join"
        );
        for limits in [
            Limits {
                memory: Some(1 << 30),
                ..Limits::default()
            },
            Limits {
                cpu: Some(1),
                ..Limits::default()
            },
            Limits {
                file_size: Some(0),
                ..Limits::default()
            },
            Limits {
                open_files: Some(64),
                ..Limits::default()
            },
        ] {
            assert_eq!(
                Method::for_command(&limits.rlimits(), false),
                Method::Vfork,
                "{limits:?}"
            );
        }
    }

    #[test]
    fn runs_in_cwd_with_env_in_its_own_group_with_eof_stdin() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            let script = "pwd; echo $GREETING; cat; ps -o pgid= -p $$ | tr -d ' '; echo $$; \
                          head -c 3 /proc/$$/cmdline | tr '\\0' _; echo; ulimit -n";
            let (out, code) = run(
                "/bin/sh",
                &["-c", script],
                dir.path(),
                vec![("GREETING", "hi"), ("GREETING", "hello")],
                limits,
            );
            assert_eq!(code, 0);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(
                lines[0],
                dir.path().canonicalize().unwrap().to_str().unwrap()
            );
            assert_eq!(lines[1], "hello", "later variables win");
            assert_eq!(
                lines[2], lines[3],
                "the command leads its own process group"
            );
            assert_eq!(lines[4], "sh_", "argv[0] is the program as named");
            if limits.is_empty() {
                assert_ne!(lines[5], "512");
            } else {
                assert_eq!(lines[5], "512", "the limit is set before exec");
            }
        }
    }

    #[test]
    fn stdin_is_the_null_device_unless_there_is_text_to_feed() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            let (out, code) = run(
                "/bin/sh",
                &["-c", "readlink /proc/self/fd/0; cat"],
                dir.path(),
                vec![],
                limits,
            );
            assert_eq!((out.as_str(), code), ("/dev/null\n", 0));

            let cwd = open_dir(dir.path()).unwrap();
            let args = vec!["-c".to_owned(), "cat".to_owned()];
            let spawned = spawn(SpawnRequest {
                path: OsStr::new("/bin/sh"),
                argv0: "sh",
                args: &args,
                cwd: cwd.as_fd(),
                env: ChildEnv::new(&[]).unwrap(),
                stdin: true,
                limits,
                cgroup: None,
            })
            .unwrap();
            let mut writer = std::fs::File::from(spawned.stdin.unwrap());
            std::io::Write::write_all(&mut writer, b"fed\n").unwrap();
            drop(writer);
            let mut out = String::new();
            std::fs::File::from(spawned.stdout)
                .read_to_string(&mut out)
                .unwrap();
            rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty())
                .unwrap();
            assert_eq!(out, "fed\n");
        }
    }

    #[test]
    fn a_blocked_signal_of_the_runner_is_not_inherited() {
        // The runner blocks SIGCHLD in its threads; a command must start with nothing blocked.
        // SAFETY: plain sigset_t values initialised by sigemptyset/sigaddset; pthread_sigmask
        // changes only this test thread's mask, restored below.
        let previous = unsafe {
            let mut chld: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut chld);
            libc::sigaddset(&mut chld, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &chld, &mut previous);
            previous
        };
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            // grep itself, not a shell: dash clears the mask it was started with.
            let grep = ["/bin/grep", "/usr/bin/grep"]
                .into_iter()
                .find(|path| Path::new(path).exists())
                .unwrap();
            let (out, _) = run(
                grep,
                &["SigBlk", "/proc/self/status"],
                dir.path(),
                vec![],
                limits,
            );
            assert!(
                out.contains("SigBlk:\t0000000000000000"),
                "{limits:?}: {out}"
            );
        }
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    }

    #[test]
    fn signals_are_at_their_defaults() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            // SIGPIPE ignored in the runner must not be ignored in the command.
            let (out, _) = run(
                "/bin/sh",
                &["-c", "grep -E '^(SigIgn|SigBlk)' /proc/self/status"],
                dir.path(),
                vec![],
                limits,
            );
            let ignored = out
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:\t"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .unwrap();
            // Signals 1-31; 32 and 33 belong to glibc itself.
            assert_eq!(ignored & 0x7fff_ffff, 0, "{out}");
            assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        }
    }

    #[test]
    fn commands_are_the_oom_killers_first_choice() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            // What the command starts after its first moments inherits the raised score.
            let script = "sleep 0.5; cat /proc/$$/oom_score_adj";
            let (out, _) = run("/bin/sh", &["-c", script], dir.path(), vec![], limits);
            assert_eq!(out.trim(), "1000", "{limits:?}");
        }
        // With limits the score is raised before exec: there is no moment without it.
        let dir = tempfile::tempdir().unwrap();
        let limited = methods()[1];
        let (out, _) = run(
            "/bin/cat",
            &["/proc/self/oom_score_adj"],
            dir.path(),
            vec![],
            limited,
        );
        assert_eq!(out.trim(), "1000");
    }

    /// The calling thread's blocked signals (every signal is blocked around the clone).
    fn own_signal_mask() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:\t"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap()
    }

    /// What a command started with a cgroup to enter did: its stdout, whether it counts as in
    /// the cgroup, and what it wrote to `cgroup.procs`. A fresh folder stands in for the
    /// cgroup and a plain file in it for `cgroup.procs`: what the child writes there is what
    /// would move it (tests/hardening.rs checks a real cgroup where one can be made). With
    /// `offer_folder`, the folder is also offered to create the child in, which clone3 refuses:
    /// it is no cgroup.
    fn run_entering_cgroup(
        program: &str,
        args: &[&str],
        offer_folder: bool,
    ) -> (String, bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let procs_path = dir.path().join("cgroup.procs");
        let procs = std::fs::File::create(&procs_path).unwrap();
        let (cwd, not_a_cgroup) = (open_dir(dir.path()).unwrap(), open_dir(dir.path()).unwrap());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let spawned = spawn(SpawnRequest {
            path: OsStr::new(program),
            argv0: program.rsplit('/').next().unwrap_or(program),
            args: &args,
            cwd: cwd.as_fd(),
            env: ChildEnv::new(&[]).unwrap(),
            stdin: false,
            limits: RlimitPlan::default(),
            cgroup: Some(CgroupEntry {
                dir: offer_folder.then(|| not_a_cgroup.as_fd()),
                procs: procs.as_fd(),
            }),
        })
        .unwrap();
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .unwrap();
        rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty()).unwrap();
        let written = std::fs::read_to_string(&procs_path).unwrap();
        (out, spawned.joined_cgroup, written)
    }

    #[test]
    fn a_command_with_a_cgroup_moves_itself_there_before_exec() {
        let mask = own_signal_mask();
        let (out, _, written) =
            run_entering_cgroup("/bin/cat", &["/proc/self/oom_score_adj"], false);
        assert_eq!(written, "0");
        assert_eq!(out.trim(), "1000", "set up in the child, before exec");
        assert_eq!(own_signal_mask(), mask, "the caller's mask is restored");
    }

    #[test]
    fn a_command_that_cannot_be_created_in_its_cgroup_moves_itself_there() {
        // clone3 refuses to create the child in a plain folder, and the command starts all
        // the same, moving itself in through `cgroup.procs`.
        let (out, joined, written) = run_entering_cgroup("/bin/echo", &["started"], true);
        assert_eq!(out, "started\n");
        assert_eq!(written, "0");
        assert!(joined);
    }

    #[test]
    fn the_callers_signal_mask_is_restored_whether_the_exec_works_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let limited = methods()[1];
        let mask = own_signal_mask();
        let (_, code) = run("/bin/true", &[], dir.path(), vec![], limited);
        assert_eq!(code, 0);
        assert_eq!(own_signal_mask(), mask);
        let error = start("./no-such-program", &[], dir.path(), vec![], limited).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        assert_eq!(own_signal_mask(), mask);
    }

    #[test]
    fn a_file_still_open_for_writing_elsewhere_is_started_once_it_is_closed() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("run.sh");
            std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            // A writer that stays open: the kernel refuses to execute the file meanwhile.
            let writer = std::fs::OpenOptions::new()
                .append(true)
                .open(&script)
                .unwrap();
            let busy = start("./run.sh", &[], dir.path(), vec![], limits).err();
            assert_eq!(
                busy.and_then(|e| e.raw_os_error()),
                Some(libc::ETXTBSY),
                "{limits:?}"
            );
            drop(writer);
            // One that closes a moment later, as a child another thread was starting does
            // when it execs: the start waits for it.
            let writer = std::fs::OpenOptions::new()
                .append(true)
                .open(&script)
                .unwrap();
            let closer = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(5));
                drop(writer);
            });
            assert_eq!(run("./run.sh", &[], dir.path(), vec![], limits).0, "ran\n");
            closer.join().unwrap();
        }
    }

    #[test]
    fn relative_paths_are_taken_from_the_working_directory_and_errors_map_to_kinds() {
        for limits in methods() {
            let dir = tempfile::tempdir().unwrap();
            let executable = |name: &str, text: &str| {
                std::fs::write(dir.path().join(name), text).unwrap();
                std::fs::set_permissions(
                    dir.path().join(name),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            };
            executable("run.sh", "#!/bin/sh\necho ran\n");
            assert_eq!(run("./run.sh", &[], dir.path(), vec![], limits).0, "ran\n");
            assert_eq!(run("run.sh", &[], dir.path(), vec![], limits).0, "ran\n");

            let spawn_error = |program: &str| start(program, &[], dir.path(), vec![], limits).err();
            let kind = |program| spawn_error(program).map(|e| e.kind());
            assert_eq!(kind("./no-such-program"), Some(io::ErrorKind::NotFound));
            std::fs::write(dir.path().join("plain"), "x").unwrap();
            assert_eq!(kind("./plain"), Some(io::ErrorKind::PermissionDenied));
            // A script without a #! line is not run by some shell: exec refuses it.
            executable("no-shebang", "echo ran\n");
            assert_eq!(
                spawn_error("./no-shebang").and_then(|e| e.raw_os_error()),
                Some(libc::ENOEXEC),
                "{limits:?}"
            );
        }
    }
}
