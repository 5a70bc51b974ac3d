//! What /proc says about processes: which exist, their state, process group and start time,
//! and whether their environment holds a given entry. Blocking file reads (small ones; an
//! environment read waits for the target's memory map lock): callers that may meet a stuck
//! process read it off the async worker threads.

use std::path::Path;

/// The fields of `/proc/<pid>/stat` the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// R, S, D, T, Z (zombie), X (dead), ...
    pub(super) state: char,
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
pub(super) fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// `/proc/<pid>/stat`, when the process still exists.
pub(super) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses, so the
/// fields are counted from the last `)`. The start time is field 22.
fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    let start_time = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        start_time,
    })
}

/// Whether the environment of `pid` holds the entry `entry` (`NAME=value`) exactly.
/// False when it cannot be read (gone, a zombie, another user's process).
pub(super) fn environ_has(pid: i32, entry: &[u8]) -> bool {
    let path = format!("/proc/{pid}/environ");
    std::fs::read(Path::new(&path)).is_ok_and(|environ| {
        environ
            .split(|byte| *byte == 0)
            .any(|variable| variable == entry)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_names() {
        let line = "42 (a ) b (c) S 1 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 40,
                start_time: 12345
            })
        );
        assert_eq!(parse_stat("42 (x) Z 1 40"), None);
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
