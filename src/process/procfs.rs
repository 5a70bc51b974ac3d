//! What /proc says about processes: which exist, their state, parent, process group and start
//! time, and whether their environment holds a given entry. Blocking file reads (small ones; an
//! environment read waits for the target's memory map lock): callers that may meet a stuck
//! process read it off the async worker threads.

/// The fields of `/proc/<pid>/stat` the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// R, S, D, T, Z (zombie), X (dead), ...
    pub(super) state: char,
    pub(super) ppid: i32,
    pub(super) pgrp: i32,
    /// When the process started, in clock ticks since boot.
    pub(super) start_time: u64,
}

impl Stat {
    /// Exited (a zombie waiting to be reaped, or already dead).
    pub(super) fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Every process id in /proc (thread group leaders only); empty without /proc.
///
/// The listing starts where procfs puts its processes (`FIRST_PROCESS_ENTRY`): the fifty-odd
/// fixed entries before them (`cpuinfo`, `sys`, ...) cost the kernel more to list than a pod's
/// processes. Should a kernel place processes elsewhere, the runner would not find itself in
/// that part of the listing, and the whole of /proc is listed instead.
pub(super) fn pids() -> impl Iterator<Item = i32> + Send + 'static {
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    let listed = list_pids(Some(FIRST_PROCESS_ENTRY)).filter(|pids| pids.contains(&own));
    listed
        .or_else(|| list_pids(None))
        .unwrap_or_default()
        .into_iter()
}

/// Where procfs's listing of /proc turns to processes (`self`, `thread-self`, then one entry
/// per process): fixed since Linux 2.6.
const FIRST_PROCESS_ENTRY: i64 = 256;

/// The numeric entries of /proc, from the listing position `from` (else the start), read with
/// one `getdents` per `LISTING_BUFFER` bytes of entries (a pod's whole /proc at once).
fn list_pids(from: Option<i64>) -> Option<Vec<i32>> {
    use rustix::fs::{Mode, OFlags, SeekFrom};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = rustix::fs::open("/proc", flags, Mode::empty()).ok()?;
    if let Some(position) = from {
        rustix::fs::seek(&dir, SeekFrom::Start(position.unsigned_abs())).ok()?;
    }
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); LISTING_BUFFER];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    let mut pids = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry.ok()?;
        if let Some(pid) = entry.file_name().to_str().ok().and_then(|n| n.parse().ok()) {
            pids.push(pid);
        }
    }
    Some(pids)
}

/// Bytes of /proc entries read at once: about 700 processes.
const LISTING_BUFFER: usize = 16 * 1024;

/// Room for a `/proc/<pid>/stat` line: 52 numbers and a name of at most 64 bytes.
const STAT_MAX: usize = 2048;

/// `/proc/<pid>/stat`, when the process still exists. Read with one `read` into a buffer on
/// the stack (the kernel writes the whole line at once): open, read, close. Scans of /proc read
/// this for every process on the machine, twice a request.
pub(super) fn stat(pid: i32) -> Option<Stat> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/{pid}/stat");
    let fd = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut line = [0u8; STAT_MAX];
    let mut length = 0;
    while length < line.len() {
        match rustix::io::read(&fd, &mut line[length..]) {
            Ok(0) => break,
            Ok(read) => length += read,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
        // The line ends with a newline; stop without another read to hear the end.
        if line[..length].ends_with(b"\n") {
            break;
        }
    }
    // A name is any bytes a process chose; the fields after it are ASCII.
    parse_stat(&String::from_utf8_lossy(&line[..length]))
}

/// Parses `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses, so the
/// fields are counted from the last `)`. The start time is field 22.
fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let start_time = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        start_time,
    })
}

/// The start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) that a process
/// started now would show: none started after this call shows an earlier one. The kernel
/// counts it on the boot-time clock, which this reads (in the same time namespace), rounded
/// down to clock ticks as /proc rounds it. No file is read.
pub(super) fn start_time_now() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let nanos = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0);
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    nanos / (1_000_000_000 / ticks_per_second)
}

/// Whether the environment of `pid` holds the entry `entry` (`NAME=value`) exactly.
/// False when it cannot be read (gone, a zombie, another user's process).
/// Read in pieces into a buffer on the stack (no allocation, no size asked first), compared as
/// it comes.
pub(super) fn environ_has(pid: i32, entry: &[u8]) -> bool {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/{pid}/environ");
    let Ok(fd) = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut buf = [0u8; ENVIRON_PIECE];
    let mut variable = EntryMatch::new(entry);
    loop {
        let read = match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return variable.is_whole(),
            Ok(read) => read,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        };
        for piece in buf[..read].split_inclusive(|byte| *byte == 0) {
            if variable.take(piece) {
                return true;
            }
        }
    }
}

/// How much of an environment is read at once.
const ENVIRON_PIECE: usize = 4096;

/// The variable being read from an environment, against the entry looked for.
struct EntryMatch<'a> {
    entry: &'a [u8],
    /// How many bytes of `entry` the variable matched so far; `None` once it differs.
    matched: Option<usize>,
}

impl<'a> EntryMatch<'a> {
    fn new(entry: &'a [u8]) -> Self {
        EntryMatch {
            entry,
            matched: Some(0),
        }
    }

    /// Takes the next piece of the variable (ending with its NUL when the variable ends
    /// there); true when a variable just ended that is the entry exactly.
    fn take(&mut self, piece: &[u8]) -> bool {
        let (bytes, ends) = match piece.split_last() {
            Some((0, bytes)) => (bytes, true),
            _ => (piece, false),
        };
        self.matched = self.matched.and_then(|done| {
            let end = done + bytes.len();
            (self.entry.get(done..end) == Some(bytes)).then_some(end)
        });
        if !ends {
            return false;
        }
        let whole = self.is_whole();
        self.matched = Some(0);
        whole
    }

    /// Whether the variable read so far is the entry exactly.
    fn is_whole(&self) -> bool {
        self.matched == Some(self.entry.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_found_whole_across_pieces_and_nothing_else_is() {
        let entry = b"MARK=1-2";
        let matches = |environ: &[u8], piece: usize| {
            let mut variable = EntryMatch::new(entry);
            let found = environ.chunks(piece).any(|chunk| {
                chunk
                    .split_inclusive(|byte| *byte == 0)
                    .any(|part| variable.take(part))
            });
            found || variable.is_whole()
        };
        for piece in [1, 2, 3, 5, 64] {
            assert!(matches(b"A=1\0MARK=1-2\0B=2\0", piece), "{piece}");
            assert!(matches(b"MARK=1-2", piece), "last, without a NUL: {piece}");
            assert!(!matches(b"MARK=1-23\0", piece), "longer: {piece}");
            assert!(!matches(b"MARK=1-\0", piece), "shorter: {piece}");
            assert!(!matches(b"XMARK=1-2\0", piece), "inside another: {piece}");
            assert!(!matches(b"A=MARK=1-2\0", piece), "in a value: {piece}");
            assert!(!matches(b"", piece));
        }
    }

    #[test]
    fn the_listing_from_the_first_process_entry_holds_the_processes_and_nothing_else() {
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let child_pid = i32::try_from(child.id()).unwrap();
        let from_processes = list_pids(Some(FIRST_PROCESS_ENTRY)).unwrap();
        let whole = list_pids(None).unwrap();
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        let own = i32::try_from(std::process::id()).unwrap();
        for pid in [own, child_pid] {
            assert!(
                from_processes.contains(&pid),
                "{pid} not in {from_processes:?}"
            );
        }
        assert!(pids().any(|pid| pid == own));
        // Processes come and go between the two listings: the tail lists the same kind.
        assert!(whole.contains(&own));
        assert!(from_processes.len() <= whole.len() + 4);
    }

    #[test]
    fn parses_stat_lines_with_odd_names() {
        let line = "42 (a ) b (c) S 1 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 1,
                pgrp: 40,
                start_time: 12345
            })
        );
        assert_eq!(parse_stat("42 (x) Z 1 40"), None);
    }

    #[test]
    fn a_process_whose_name_is_not_utf8_is_read_too() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join(std::ffi::OsStr::from_bytes(b"sl\xffep"));
        std::os::unix::fs::symlink("/bin/sleep", &program).unwrap();
        let mut child = std::process::Command::new(&program)
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // The name is set by the exec, which the spawn has waited for.
        let stat = stat(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        let stat = stat.expect("the process is read");
        assert!(!stat.has_exited());
    }

    #[test]
    fn a_process_started_now_shows_no_earlier_start_time() {
        let before = start_time_now();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let shown = stat(child.id() as i32).map(|stat| stat.start_time);
        let after = start_time_now();
        child.kill().unwrap();
        child.wait().unwrap();
        let shown = shown.expect("the child is read");
        assert!(
            before <= shown && shown <= after,
            "{before} {shown} {after}"
        );
        let own = stat(std::process::id() as i32).unwrap().start_time;
        assert!(own <= before, "this process started before: {own} {before}");
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert!(pids().any(|pid| pid == me));
        let own = stat(me).unwrap();
        assert!(!own.has_exited());
        assert_eq!(own.pgrp, rustix::process::getpgrp().as_raw_nonzero().get());
        let (name, value) = std::env::vars().next().unwrap();
        assert!(environ_has(me, format!("{name}={value}").as_bytes()));
        assert!(!environ_has(me, b"SURELY_NOT_SET_ANYWHERE=1"));
    }
}
