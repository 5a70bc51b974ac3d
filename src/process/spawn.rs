//! Starting a command's process: its pipes, its child (`clone`, doing `child`'s duties), and
//! where it may, in the request's cgroup.
//!
//! std's `Command` uses posix_spawn unless a working directory is set and
//! `posix_spawn_file_actions_addchdir_np` cannot be found through its weak-symbol lookup —
//! which is always the case in a static glibc binary. It then forks, copying the runner's page
//! tables and paying copy-on-write faults afterwards: most of the runner's per-command cost.
//! The runner's own child is as cheap as posix_spawn's (no page-table copy either), and does
//! what posix_spawn cannot between the clone and the exec: join the request's cgroup, raise
//! its OOM score before anything runs, set limits. So every command starts that one way. The
//! file to execute comes located (`exec`'s `launch`): nothing is searched here.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::LazyLock;

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::Pid;

use super::cgroup::{MemoryCgroup, RequestCgroup};
use super::child::{ChildPlan, Isolation};
use super::clone::{clone_child, Born, Failed};
use super::image::Image;
use super::landlock::Ruleset;
use super::leaders::Starting;
use super::{clone3, reap};
use crate::limits::RlimitPlan;

/// What to start.
pub(crate) struct SpawnRequest<'a> {
    pub(crate) image: Image<'a>,
    /// Give the child a stdin pipe to write to; otherwise its stdin is at EOF at once.
    pub(crate) stdin: bool,
    /// Resource limits to set before exec.
    pub(crate) limits: RlimitPlan,
    /// The request's cgroup: the child is created in it or moves itself there before exec,
    /// so not even its first fork starts outside.
    pub(crate) cgroup: Option<&'a RequestCgroup>,
    /// The command's own memory cgroup (its `memory` limit): the child is created in it (v2)
    /// or moves itself there before exec (v1), and does not start when it cannot.
    pub(crate) memory: Option<&'a MemoryCgroup>,
    /// The request's Landlock ruleset, entered by the child just before exec.
    pub(crate) domain: Option<&'a Ruleset>,
    /// The uid and gid the command runs as (`CMD_ISOLATION=uid`), else the runner's.
    pub(crate) user: Option<u32>,
    /// Where the child's number is kept from its creation (`RequestTracker::starting`), so
    /// that other requests' looks through /proc pass it over.
    pub(crate) starting: Option<&'a Starting>,
}

/// A started process: the leader of its own new process group.
pub(crate) struct Spawned {
    pub(crate) pid: Pid,
    /// Whether the process is in the request's cgroup (created there or moved in before exec).
    pub(crate) in_cgroup: bool,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Starts the process. Errors are the exec's (`NotFound`, `PermissionDenied`, `ENOEXEC`, ...).
pub(crate) fn spawn(request: SpawnRequest<'_>) -> io::Result<Spawned> {
    // Pipes are close-on-exec: the child gets only the dup2'ed copies on 0, 1 and 2.
    let stdin = Stdin::for_request(request.stdin)?;
    let stdin_read = stdin.child_end();
    let (stdout_read, stdout_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stderr_read, stderr_write) = pipe_with(PipeFlags::CLOEXEC)?;

    // Linux counts the memory of the image exec replaces in the command's peak RSS: the
    // runner's own, peak included (the child shares it until its exec). Resetting the runner's
    // peak to its current size keeps an earlier busy moment of the runner out of `max_rss_kib`.
    reap::reset_own_peak_rss();
    let stdio = [stdin_read, &stdout_write, &stderr_write];
    let mut pause = TEXT_BUSY_FIRST_PAUSE;
    let mut tries = 1;
    let born = loop {
        match start_once(&request, stdio) {
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
    // A command that joined a memory cgroup nested in the request's is in the request's.
    let in_memory_cgroup = request.memory.is_some_and(MemoryCgroup::in_request_cgroup);
    Ok(Spawned {
        pid: born.pid,
        in_cgroup: born.in_cgroup || in_memory_cgroup,
        stdin: stdin.into_writer(),
        stdout: stdout_read,
        stderr: stderr_read,
    })
}

/// How often a start refused with ETXTBSY ("text file busy") is tried, and the first pause
/// between tries (doubled each time: 127 ms in all, which a child descheduled on a loaded
/// machine between its clone and its exec may need). A file the request just wrote is closed
/// before its command starts, but a child another thread is starting at that moment holds a
/// copy of the writer's descriptor until its own exec closes it (close-on-exec applies at exec,
/// not at clone): for those microseconds the kernel refuses to execute the file.
const TEXT_BUSY_TRIES: u32 = 8;
const TEXT_BUSY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// One try at starting the process: created in the request's cgroup (or the command's memory
/// cgroup nested in it) where clone3 allows it, else moving itself in. A child created in the
/// cgroup and killed before its first instruction proves the cgroup was killed: from then on
/// the request's commands move in. A v1 memory cgroup is always moved into.
fn start_once(request: &SpawnRequest<'_>, stdio: [&OwnedFd; 3]) -> io::Result<Born> {
    let (image, limits, cgroup) = (&request.image, request.limits, request.cgroup);
    let isolation = Isolation {
        domain: request.domain.map(Ruleset::as_fd),
        user: request.user,
    };
    let nested_memory = request.memory.and_then(MemoryCgroup::dir_to_create_in);
    let create_in = cgroup
        .and_then(RequestCgroup::dir_to_create_in)
        .map(|dir| nested_memory.unwrap_or(dir));
    let v1_memory = request
        .memory
        .filter(|memory| !memory.in_request_cgroup())
        .map(MemoryCgroup::procs_to_join);
    if let (Some(cgroup), Some(dir)) = (cgroup, create_in.filter(|_| clone3::usable())) {
        let plan = ChildPlan::new(image, stdio, limits, None, v1_memory, isolation);
        match clone_child(&plan, Some(dir), request.starting) {
            Ok(born) => return Ok(born),
            Err(Failed::Setup(error)) => return Err(error),
            Err(Failed::KilledAtBirth) => cgroup.killed_by_someone(),
            // No child was made: the cgroup (or clone3 itself) refused. As when moving in
            // fails, the command runs all the same, moving itself in if it can.
            Err(Failed::Refused(error)) => {
                clone3::refused(&error);
            }
        }
    }
    let plan = ChildPlan::new(
        image,
        stdio,
        limits,
        cgroup.map(RequestCgroup::procs_to_join),
        request.memory.map(MemoryCgroup::procs_to_join),
        isolation,
    );
    clone_child(&plan, None, request.starting).map_err(Failed::into_error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::process::image::ChildEnv;
    use crate::process::signals::SignalSet;
    use std::ffi::OsStr;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Without limits and with them; each test checks that they behave the same.
    fn methods() -> [RlimitPlan; 2] {
        let limited = Limits {
            open_files: Some(512),
            ..Limits::default()
        };
        [
            RlimitPlan::default(),
            limited.rlimits(crate::limits::MemoryBy::Rlimit),
        ]
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
        let argv0 = program.rsplit('/').next().unwrap_or(program);
        let env = ChildEnv::new(&env)?;
        spawn(SpawnRequest {
            image: Image::new(OsStr::new(program), argv0, args, env, dir.as_fd())?,
            stdin: false,
            limits,
            cgroup: None,
            memory: None,
            domain: None,
            user: None,
            starting: None,
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
            let env = ChildEnv::new(&[]).unwrap();
            let spawned = spawn(SpawnRequest {
                image: Image::new(OsStr::new("/bin/sh"), "sh", &args, env, cwd.as_fd()).unwrap(),
                stdin: true,
                limits,
                cgroup: None,
                memory: None,
                domain: None,
                user: None,
                starting: None,
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
        let previous = SignalSet::of(&[rustix::process::Signal::CHILD])
            .block()
            .unwrap();
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
        previous.set_as_mask().unwrap();
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
            // Raised before exec: there is no moment without it.
            let (out, _) = run(
                "/bin/cat",
                &["/proc/self/oom_score_adj"],
                dir.path(),
                vec![],
                limits,
            );
            assert_eq!(out.trim(), "1000", "{limits:?}");
            let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
            assert_ne!(
                own.trim(),
                "1000",
                "the starter's own score was raised with it"
            );
        }
    }

    /// What a command started with a cgroup to enter did: its stdout, whether it counts as in
    /// the cgroup, and what it wrote to `cgroup.procs`. A fresh folder stands in for the
    /// cgroup and a plain file in it for `cgroup.procs`: what the child writes there is what
    /// would move it (tests/process_layer.rs checks real cgroups where they can be made).
    /// Unless `killed`, the folder is also offered to create the child in, which clone3
    /// refuses: it is no cgroup.
    fn run_entering_cgroup(program: &str, args: &[&str], killed: bool) -> (String, bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let cgroup = RequestCgroup::stand_in(dir.path());
        if killed {
            cgroup.mark_killed();
        }
        let cwd = open_dir(dir.path()).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let argv0 = program.rsplit('/').next().unwrap_or(program);
        let env = ChildEnv::new(&[]).unwrap();
        let spawned = spawn(SpawnRequest {
            image: Image::new(OsStr::new(program), argv0, &args, env, cwd.as_fd()).unwrap(),
            stdin: false,
            limits: RlimitPlan::default(),
            cgroup: Some(&cgroup),
            memory: None,
            domain: None,
            user: None,
            starting: None,
        })
        .unwrap();
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .unwrap();
        rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty()).unwrap();
        let written = std::fs::read_to_string(dir.path().join("cgroup.procs")).unwrap();
        (out, spawned.in_cgroup, written)
    }

    #[test]
    fn a_command_with_a_cgroup_moves_itself_there_before_exec() {
        let mask = crate::process::signals::own_blocked();
        let (out, joined, written) =
            run_entering_cgroup("/bin/cat", &["/proc/self/oom_score_adj"], true);
        assert!(joined);
        assert_eq!(written, "0");
        assert_eq!(out.trim(), "1000", "set up in the child, before exec");
        assert_eq!(
            crate::process::signals::own_blocked(),
            mask,
            "the caller's mask is restored"
        );
    }

    #[test]
    fn a_command_that_cannot_be_created_in_its_cgroup_moves_itself_there() {
        // clone3 refuses to create the child in a plain folder, and the command starts all
        // the same, moving itself in through `cgroup.procs`.
        let (out, joined, written) = run_entering_cgroup("/bin/echo", &["started"], false);
        assert_eq!(out, "started\n");
        assert_eq!(written, "0");
        assert!(joined);
    }

    #[test]
    fn the_callers_signal_mask_is_restored_whether_the_exec_works_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let limited = methods()[1];
        let mask = crate::process::signals::own_blocked();
        let (_, code) = run("/bin/true", &[], dir.path(), vec![], limited);
        assert_eq!(code, 0);
        assert_eq!(crate::process::signals::own_blocked(), mask);
        let error = start("./no-such-program", &[], dir.path(), vec![], limited).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        assert_eq!(crate::process::signals::own_blocked(), mask);
    }

    #[test]
    fn the_kernel_keeps_the_childs_number_for_other_requests_from_its_creation() {
        use crate::process::leaders::{held_by_other, Starting};
        let (mine, another) = (u64::MAX - 20, u64::MAX - 21);
        let dir = tempfile::tempdir().unwrap();
        let cwd = open_dir(dir.path()).unwrap();
        let start_with = |program: &str, starting: &Starting| {
            let env = ChildEnv::new(&[]).unwrap();
            spawn(SpawnRequest {
                image: Image::new(OsStr::new(program), "x", &[], env, cwd.as_fd()).unwrap(),
                stdin: false,
                limits: RlimitPlan::default(),
                cgroup: None,
                memory: None,
                domain: None,
                user: None,
                starting: Some(starting),
            })
        };
        for program in ["/bin/true", "/bin/sh"] {
            let starting = Starting::claim(mine).unwrap();
            let spawned = start_with(program, &starting).unwrap();
            let pid = spawned.pid.as_raw_nonzero().get();
            assert!(
                held_by_other(pid, another),
                "{program}: {pid} not in the slot"
            );
            assert!(
                !held_by_other(pid, mine),
                "{program}: its own request looks at it"
            );
            drop(starting);
            assert!(!held_by_other(pid, another));
            rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty())
                .unwrap();
        }
        // A child that did not start is forgotten before it is reaped.
        let starting = Starting::claim(mine).unwrap();
        assert!(start_with("./no-such-program", &starting).is_err());
        // SAFETY: the slot is a valid, aligned pid_t of a static.
        let kept = unsafe { starting.pid_location().read() };
        assert_eq!(kept, 0, "a reaped child's number is still kept");
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
