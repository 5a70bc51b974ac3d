//! Resource limits a command may not pass (`limits` in a request, `CMD_LIMIT_*` defaults):
//! reading them (for `request` and `config`), layering them, and setting them in the child
//! between fork and exec (for `exec`).
//!
//! `memory` is memory the command uses, never address space it reserves (the JVM, V8, Go and
//! Bun reserve gigabytes they never touch): where the runner can make memory cgroups, the
//! `memory.max` of a cgroup of the command's own (`crate::process::MemoryCgroup`; passing it
//! is `cmd.limit.memory`), elsewhere `RLIMIT_DATA` (writable private memory: an allocation past
//! it fails inside the program) — `MemoryBy`. The others are kernel resource limits of the
//! command's processes (inherited by everything it starts): `cpu` the CPU seconds of each
//! process (`RLIMIT_CPU`: SIGXCPU, then SIGKILL one second later), `file_size` the largest file
//! a process may write (`RLIMIT_FSIZE`: SIGXFSZ), and `open_files` the number of descriptors
//! (`RLIMIT_NOFILE`). Sizes are read by `crate::size`.

use rustix::process::{Resource, Rlimit};
use serde_json::Value;

use crate::error::Failure;

/// A command's resource limits; `None` leaves the runner's own limit in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory used (`MemoryBy`).
    pub memory: Option<u64>,
    /// CPU seconds of each process (`RLIMIT_CPU`).
    pub cpu: Option<u64>,
    /// Bytes: the largest file a process may write (`RLIMIT_FSIZE`).
    pub file_size: Option<u64>,
    /// Open descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// Below this no dynamically linked program can even be loaded: a smaller `memory` is
/// certainly a unit mistake (`256` meant as MiB), so it is refused rather than run to fail.
const MIN_MEMORY: u64 = 1 << 20;

/// `cpu` above a year is refused like any absurd duration (the same year as every other
/// duration, so `1y` is accepted here too); it also keeps `cpu + 1` (the hard limit) far from
/// overflow.
const MAX_CPU_SECONDS: u64 = crate::duration::MAX.as_secs();

/// The fields of a `limits` object, for the message about an unknown one.
const FIELDS: &str = "memory, cpu, file_size, open_files";

/// Why `pids` is refused rather than set: the one rlimit for it (`RLIMIT_NPROC`) counts every
/// process of the user — the runner's and every other request's — so it would fail commands
/// for what others run; a pids cgroup exists only where the runner may make cgroups, so the
/// same request would be limited on one host and not on the next.
const NO_PIDS: &str = "a process count per command is refused: it cannot be enforced the same \
    way everywhere (RLIMIT_NPROC counts every process of the user, other \
    requests' too); the container's own pids limit (Kubernetes podPidsLimit) applies to it";

/// How a shell (or a script's interpreter) reports a child killed by a signal: 128 + it.
const SHELL_SAW_SIGXCPU: i32 = 128 + libc::SIGXCPU;
const SHELL_SAW_SIGXFSZ: i32 = 128 + libc::SIGXFSZ;

/// How the `memory` limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBy {
    /// A memory cgroup per command: memory used, the whole command killed past it.
    Cgroup,
    /// `RLIMIT_DATA`: writable private memory (heap, anonymous mappings); an allocation past
    /// it fails. Reserved address space (`PROT_NONE`) does not count.
    Rlimit,
}

/// How limits are enforced, for the start-up line (`crate::startup`): `memory` is said by the
/// caller, which knows the mechanism.
pub fn enforcement(memory: &str) -> String {
    format!(
        "memory as {memory}; rlimits for cpu (RLIMIT_CPU), file_size (RLIMIT_FSIZE), \
         open_files (RLIMIT_NOFILE)"
    )
}

impl Limits {
    /// True when no limit is set: the command can take the fast posix_spawn path.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// These limits over `defaults`: each limit set here wins, the others come from there.
    /// Layering is command over request over configuration:
    /// `command.over(request.over(config))`.
    pub fn over(self, defaults: Limits) -> Limits {
        Limits {
            memory: self.memory.or(defaults.memory),
            cpu: self.cpu.or(defaults.cpu),
            file_size: self.file_size.or(defaults.file_size),
            open_files: self.open_files.or(defaults.open_files),
        }
    }

    /// Reads a `limits` object found at `path` (e.g. `commands[0].limits`). Every error is
    /// an input error naming the field (`commands[0].limits.memory: ...`). A field that is
    /// null counts as absent; an unknown field is refused, since a misspelt limit silently
    /// not applied is worse than a refused request.
    pub fn from_json(value: &Value, path: &str) -> Result<Limits, Failure> {
        let field_error =
            |key: &str, message: String| Failure::input(format!("{path}.{key}: {message}"));
        let Value::Object(map) = value else {
            return Err(Failure::input(format!(
                "{path}: expected an object like {{\"memory\": \"256Mi\", \"cpu\": \"30s\"}}, got {}",
                kind(value)
            )));
        };
        let mut limits = Limits::default();
        for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
            let (slot, parsed) = match key.as_str() {
                "memory" => (&mut limits.memory, json_memory(value)),
                "cpu" => (&mut limits.cpu, json_cpu(value)),
                "file_size" => (&mut limits.file_size, json_bytes(value)),
                "open_files" => (&mut limits.open_files, json_count(value)),
                "pids" => return Err(field_error(key, NO_PIDS.to_owned())),
                _ => {
                    return Err(field_error(
                        key,
                        format!("is not a limit; the limits are {FIELDS}"),
                    ))
                }
            };
            *slot = Some(parsed.map_err(|message| field_error(key, message))?);
        }
        Ok(limits)
    }

    /// The `setrlimit` calls that apply these limits, computed before the fork (the child may
    /// only do async-signal-safe work); `memory` is one of them (`RLIMIT_DATA`) only when
    /// `memory_by` says so. Each limit becomes both the soft and the hard limit,
    /// so the command cannot raise it again; CPU gets a hard limit one second above the soft
    /// one, so the command receives SIGXCPU first and SIGKILL after.
    ///
    /// A process cannot raise its hard limit without privilege, so a request above the
    /// runner's own hard limit is clamped to it: the command then runs under the stricter
    /// existing limit instead of failing to start.
    pub fn rlimits(&self, memory_by: MemoryBy) -> RlimitPlan {
        let entry = |resource: Resource, limit: Option<u64>, extra_hard: u64| {
            limit.map(|soft| {
                let ceiling = rustix::process::getrlimit(resource).maximum;
                let clamp = |value: u64| ceiling.map_or(value, |max| value.min(max));
                let rlimit = Rlimit {
                    current: Some(clamp(soft)),
                    maximum: Some(clamp(soft.saturating_add(extra_hard))),
                };
                (resource, rlimit)
            })
        };
        RlimitPlan {
            entries: [
                entry(
                    Resource::Data,
                    self.memory.filter(|_| memory_by == MemoryBy::Rlimit),
                    0,
                ),
                entry(Resource::Cpu, self.cpu, 1),
                entry(Resource::Fsize, self.file_size, 0),
                entry(Resource::Nofile, self.open_files, 0),
            ],
        }
    }

    /// The failure a command's death by `signal` shows, when it was one of these limits:
    /// SIGXCPU, or the SIGKILL of the hard CPU limit (for a command that ignored SIGXCPU) when
    /// its CPU time reached the limit, is `cmd.limit.cpu`; SIGXFSZ is `cmd.limit.file_size`.
    /// `cpu_ms` is the command's user + system time. `None`: not one of these limits.
    ///
    /// "Reached" allows for a difference of measure: the kernel enforces the limit on CPU
    /// time sampled at each scheduler tick, while `cpu_ms` (rusage) is the scheduler's exact
    /// time, which on a busy machine can be a tenth or more lower. A SIGKILL after three
    /// quarters of the limit is taken for the hard limit's (the OOM killer's is told apart
    /// before, by the cgroup's count).
    pub fn exceeded(&self, signal: i32, cpu_ms: u64) -> Option<Failure> {
        match (signal, self.cpu, self.file_size) {
            (libc::SIGXCPU, Some(seconds), _) => Some(Failure::CpuLimit { seconds }),
            (libc::SIGKILL, Some(seconds), _) if cpu_ms >= seconds.saturating_mul(750) => {
                Some(Failure::CpuLimit { seconds })
            }
            (libc::SIGXFSZ, _, Some(bytes)) => Some(Failure::FileSizeLimit { bytes }),
            _ => None,
        }
    }

    /// The failure a command's exit status `code` shows, when it is a shell's (or a script's)
    /// report of a child killed by one of these limits: 152 (128 + SIGXCPU) under a `cpu`
    /// limit is `cmd.limit.cpu`, 153 (128 + SIGXFSZ) under a `file_size` limit is
    /// `cmd.limit.file_size`. `None`: a plain exit status.
    pub fn exceeded_in_child(&self, code: i32) -> Option<Failure> {
        match (code, self.cpu, self.file_size) {
            (SHELL_SAW_SIGXCPU, Some(seconds), _) => Some(Failure::CpuLimit { seconds }),
            (SHELL_SAW_SIGXFSZ, _, Some(bytes)) => Some(Failure::FileSizeLimit { bytes }),
            _ => None,
        }
    }
}

/// Resource limits ready to be set in a child before exec: plain values, no allocation left to
/// do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RlimitPlan {
    entries: [Option<(Resource, Rlimit)>; 4],
}

impl RlimitPlan {
    /// True when there is no limit to set.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(Option::is_none)
    }

    /// Sets the limits on the calling process. Async-signal-safe: one `prlimit64` system
    /// call per limit, no allocation, no lock, no errno written, so it may run in a child
    /// between fork and exec, even one that shares the runner's memory.
    pub fn apply(&self) -> rustix::io::Result<()> {
        for (resource, rlimit) in self.entries.iter().flatten() {
            rustix::process::setrlimit(*resource, *rlimit)?;
        }
        Ok(())
    }
}

/// `memory` in a request: a size of at least 1 MiB.
fn json_memory(value: &Value) -> Result<u64, String> {
    json_bytes(value).and_then(memory)
}

/// `memory` as a setting (`CMD_LIMIT_MEMORY`): a size of at least 1 MiB.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    crate::size::parse(text).and_then(memory)
}

fn memory(bytes: u64) -> Result<u64, String> {
    if bytes < MIN_MEMORY {
        return Err(format!(
            "{bytes} bytes is too little to start any program; give at least 1Mi \
             (units: \"256Mi\", \"1Gi\", \"500M\")"
        ));
    }
    Ok(bytes)
}

/// A size: whole bytes as a number, or a quantity string.
fn json_bytes(value: &Value) -> Result<u64, String> {
    match value {
        Value::String(text) => crate::size::parse(text),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(64))
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("expected whole bytes or a size like \"256Mi\", got {n}")),
        other => Err(format!(
            "expected bytes or a size like \"256Mi\", \"1Gi\", \"500M\", got {}",
            kind(other)
        )),
    }
}

/// `cpu`: seconds as a number, or a duration string.
fn json_cpu(value: &Value) -> Result<u64, String> {
    match value {
        Value::String(text) => parse_cpu(text),
        Value::Number(n) => match n.as_f64() {
            Some(seconds) if seconds >= 0.0 => cpu_seconds(seconds, &n.to_string()),
            _ => Err(format!(
                "expected seconds or a duration like \"30s\", got {n}"
            )),
        },
        other => Err(format!(
            "expected seconds or a duration like \"30s\", got {}",
            kind(other)
        )),
    }
}

/// `open_files`: a count as a number (or a string of digits).
fn json_count(value: &Value) -> Result<u64, String> {
    match value {
        Value::String(text) => parse_open_files(text),
        Value::Number(n) => match n.as_u64() {
            Some(count) => open_files(count),
            None => Err(format!(
                "expected a whole number of files like 1024, got {n}"
            )),
        },
        other => Err(format!(
            "expected a number of files like 1024, got {}",
            kind(other)
        )),
    }
}

/// CPU time: seconds (`30`, `1.5`) or a duration (`30s`, `2m`), rounded up to whole seconds
/// (the kernel counts CPU limits in seconds); at least one second, at most a year.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let duration = crate::duration::parse(text)?;
    cpu_seconds(duration.as_secs_f64(), &format!("\"{}\"", text.trim()))
}

fn cpu_seconds(seconds: f64, shown: &str) -> Result<u64, String> {
    let whole = seconds.ceil();
    if whole < 1.0 {
        return Err(format!("{shown} is no CPU time; give at least 1s"));
    }
    if whole > MAX_CPU_SECONDS as f64 {
        return Err(format!("{shown} is more than a year of CPU time"));
    }
    Ok(whole as u64)
}

/// A number of open files: a positive whole number.
pub fn parse_open_files(text: &str) -> Result<u64, String> {
    let count = text
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("\"{text}\" is not a number of files; give a count like 1024"))?;
    open_files(count)
}

fn open_files(count: u64) -> Result<u64, String> {
    match count {
        0 => {
            Err("0 open files would leave a command unable to start; give a count like 1024".into())
        }
        count => Ok(count),
    }
}

/// The kind of a JSON value, for messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Whole: a cut value could be the first part of a secret, which masking would miss.
        Value::String(_) => format!("the string {value}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(value: Value) -> Result<Limits, String> {
        Limits::from_json(&value, "commands[0].limits").map_err(|e| e.to_string())
    }

    #[test]
    fn memory_is_at_least_a_mebibyte() {
        assert_eq!(parse_memory("1Mi"), Ok(1 << 20));
        assert!(parse_memory("1000").unwrap_err().contains("at least 1Mi"));
        assert!(parse_memory("256m").is_err());
        assert!(parse_memory("256MB")
            .unwrap_err()
            .contains("write 256Mi for 268435456 bytes or 256M for 256000000"));
    }

    #[test]
    fn cpu_takes_seconds_or_durations_rounded_up() {
        assert_eq!(parse_cpu("30"), Ok(30));
        assert_eq!(parse_cpu("30s"), Ok(30));
        assert_eq!(parse_cpu("2m"), Ok(120));
        assert_eq!(parse_cpu("1.2"), Ok(2));
        assert_eq!(parse_cpu("500ms"), Ok(1));
        assert!(parse_cpu("0").unwrap_err().contains("at least 1s"));
        assert!(parse_cpu("2years")
            .unwrap_err()
            .contains("more than a year"));
        assert!(parse_cpu("soon").is_err());
    }

    #[test]
    fn open_files_is_a_positive_count() {
        assert_eq!(parse_open_files("1024"), Ok(1024));
        assert!(parse_open_files("0").is_err());
        assert!(parse_open_files("many").is_err());
        assert!(parse_open_files("-3").is_err());
    }

    #[test]
    fn json_forms_of_every_limit() {
        let parsed = limits(json!({
            "memory": "256Mi", "cpu": "30s", "file_size": 4096, "open_files": 64
        }));
        assert_eq!(
            parsed,
            Ok(Limits {
                memory: Some(256 << 20),
                cpu: Some(30),
                file_size: Some(4096),
                open_files: Some(64),
            })
        );
        assert_eq!(
            limits(json!({"memory": 1e9, "cpu": 1.5, "file_size": "0", "open_files": "8"})),
            Ok(Limits {
                memory: Some(1_000_000_000),
                cpu: Some(2),
                file_size: Some(0),
                open_files: Some(8),
            })
        );
        assert_eq!(limits(json!({"memory": null})), Ok(Limits::default()));
        assert_eq!(limits(json!({})), Ok(Limits::default()));
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = |value| limits(value).unwrap_err();
        assert_eq!(
            error(json!("256Mi")),
            "commands[0].limits: expected an object like {\"memory\": \"256Mi\", \"cpu\": \"30s\"}, \
             got the string \"256Mi\""
        );
        assert!(error(json!({"memory": "256m"})).starts_with("commands[0].limits.memory: "));
        assert!(error(json!({"memory": 256})).contains("at least 1Mi"));
        assert!(error(json!({"memory": true})).starts_with("commands[0].limits.memory: expected"));
        assert!(error(json!({"memory": 1.5})).contains("whole bytes"));
        assert!(error(json!({"memory": -1})).starts_with("commands[0].limits.memory: "));
        assert!(error(json!({"cpu": 0})).starts_with("commands[0].limits.cpu: "));
        assert!(error(json!({"cpu": -1})).starts_with("commands[0].limits.cpu: "));
        assert!(error(json!({"cpu": [1]})).contains("got an array"));
        assert!(error(json!({"file_size": "big"})).starts_with("commands[0].limits.file_size: "));
        assert!(error(json!({"open_files": 2.5})).starts_with("commands[0].limits.open_files: "));
        assert!(error(json!({"open_files": 0})).starts_with("commands[0].limits.open_files: "));
        assert!(error(json!({"pids": 10}))
            .starts_with("commands[0].limits.pids: a process count per command is refused"));
        assert_eq!(
            error(json!({"mem": "1Gi"})),
            "commands[0].limits.mem: is not a limit; the limits are memory, cpu, file_size, open_files"
        );
    }

    #[test]
    fn command_limits_win_over_request_limits_over_configuration() {
        let config = Limits {
            memory: Some(1 << 30),
            cpu: Some(60),
            file_size: None,
            open_files: Some(100),
        };
        let request = Limits {
            cpu: Some(30),
            file_size: Some(1 << 20),
            ..Limits::default()
        };
        let command = Limits {
            cpu: Some(5),
            ..Limits::default()
        };
        assert_eq!(
            command.over(request.over(config)),
            Limits {
                memory: Some(1 << 30),
                cpu: Some(5),
                file_size: Some(1 << 20),
                open_files: Some(100),
            }
        );
        assert!(Limits::default().over(Limits::default()).is_empty());
        assert!(!command.is_empty());
    }

    #[test]
    fn cpu_gets_a_hard_limit_one_second_above_the_soft_one() {
        let plan = Limits {
            cpu: Some(10),
            memory: Some(1 << 30),
            ..Limits::default()
        }
        .rlimits(MemoryBy::Rlimit);
        let find = |resource| {
            plan.entries
                .iter()
                .flatten()
                .find(|(r, _)| *r == resource)
                .map(|(_, l)| *l)
        };
        let clamp = |resource, value: u64| {
            rustix::process::getrlimit(resource)
                .maximum
                .map_or(value, |max| value.min(max))
        };
        assert_eq!(
            find(Resource::Cpu),
            Some(Rlimit {
                current: Some(clamp(Resource::Cpu, 10)),
                maximum: Some(clamp(Resource::Cpu, 11)),
            })
        );
        assert_eq!(
            find(Resource::Data).map(|l| l.current),
            Some(Some(clamp(Resource::Data, 1 << 30)))
        );
        assert_eq!(find(Resource::As), None, "never the address space");
        assert_eq!(find(Resource::Fsize), None);
        assert_eq!(
            Limits::default().rlimits(MemoryBy::Rlimit),
            RlimitPlan::default()
        );
        // A memory cgroup holds the limit: no rlimit for it.
        let in_cgroup = Limits {
            memory: Some(1 << 30),
            ..Limits::default()
        };
        assert!(in_cgroup.rlimits(MemoryBy::Cgroup).is_empty());
    }

    #[test]
    fn limits_above_the_runners_hard_limit_are_clamped_to_it() {
        let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
        let plan = Limits {
            open_files: Some(u64::MAX - 1),
            ..Limits::default()
        }
        .rlimits(MemoryBy::Rlimit);
        let (_, rlimit) = plan.entries.iter().flatten().next().copied().unwrap();
        assert_eq!(rlimit.maximum, Some(hard.unwrap_or(u64::MAX - 1)));
    }

    #[test]
    fn signals_map_to_the_limit_they_enforce() {
        let limited = Limits {
            cpu: Some(2),
            file_size: Some(1),
            ..Limits::default()
        };
        let cpu = Some(Failure::CpuLimit { seconds: 2 });
        assert_eq!(limited.exceeded(libc::SIGXCPU, 2000), cpu);
        assert_eq!(limited.exceeded(libc::SIGKILL, 3010), cpu);
        // Measured a little under the limit (see `exceeded`).
        assert_eq!(limited.exceeded(libc::SIGKILL, 1600), cpu);
        // A SIGKILL before the CPU time was used up came from somewhere else.
        assert_eq!(limited.exceeded(libc::SIGKILL, 500), None);
        assert_eq!(
            limited.exceeded(libc::SIGXFSZ, 0),
            Some(Failure::FileSizeLimit { bytes: 1 })
        );
        assert_eq!(limited.exceeded(libc::SIGSEGV, 9000), None);
        // Without the limit, the same signal is just a signal.
        assert_eq!(Limits::default().exceeded(libc::SIGXCPU, 9000), None);
        assert_eq!(Limits::default().exceeded(libc::SIGKILL, 9000), None);
        assert_eq!(Limits::default().exceeded(libc::SIGXFSZ, 0), None);
        let file_only = Limits {
            file_size: Some(1),
            ..Limits::default()
        };
        assert!(file_only.exceeded(libc::SIGXFSZ, 0).is_some());
    }

    #[test]
    fn a_shells_report_of_a_limit_signal_is_the_limit() {
        let limited = Limits {
            cpu: Some(2),
            file_size: Some(1 << 20),
            ..Limits::default()
        };
        assert_eq!(
            limited.exceeded_in_child(152),
            Some(Failure::CpuLimit { seconds: 2 })
        );
        assert_eq!(
            limited.exceeded_in_child(153),
            Some(Failure::FileSizeLimit { bytes: 1 << 20 })
        );
        assert_eq!(limited.exceeded_in_child(1), None);
        assert_eq!(limited.exceeded_in_child(137), None);
        // Without the limit, 152 and 153 are exit statuses like any.
        assert_eq!(Limits::default().exceeded_in_child(152), None);
        assert_eq!(Limits::default().exceeded_in_child(153), None);
    }

    /// Starts a child with the limits the way a command gets them, and reads them back from
    /// its /proc/self/limits.
    #[test]
    fn the_limits_are_set_in_a_child_before_exec() {
        use crate::process::{spawn, ChildEnv, Image, SpawnRequest};
        use std::io::Read;
        use std::os::fd::AsFd;
        let plan = Limits {
            memory: Some(512 << 20),
            cpu: Some(7),
            file_size: Some(1 << 20),
            open_files: Some(64),
        }
        .rlimits(MemoryBy::Rlimit);
        let root = std::fs::File::open("/").unwrap();
        let args = ["/proc/self/limits".to_owned()];
        let env = ChildEnv::new(&[]).unwrap();
        let image = Image::new("/bin/cat".as_ref(), "cat", &args, env, root.as_fd()).unwrap();
        let spawned = spawn(SpawnRequest {
            image,
            stdin: false,
            limits: plan,
            cgroup: None,
            memory: None,
            domain: None,
            user: None,
            starting: None,
        })
        .unwrap();
        let mut text = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut text)
            .unwrap();
        rustix::process::waitpid(Some(spawned.pid), rustix::process::WaitOptions::empty()).unwrap();
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap()
        };
        assert!(row("Max cpu time").ends_with("7 8 seconds"), "{text}");
        assert!(
            row("Max data size").ends_with(&format!("{0} {0} bytes", 512u64 << 20)),
            "{text}"
        );
        assert!(
            row("Max address space").ends_with("unlimited unlimited bytes"),
            "{text}"
        );
        assert!(
            row("Max file size").ends_with(&format!("{0} {0} bytes", 1u64 << 20)),
            "{text}"
        );
        assert!(row("Max open files").ends_with("64 64 files"), "{text}");
    }
}
