//! `direktiv-cmd-bench layout PROBE OUT`: which of the runner's functions run, for the linker
//! to place them together (`layout/functions.txt`, read by the runner's `build.rs`).
//!
//! Why: the kernel maps a binary's code 64 KiB around every page touched (fault-around), and
//! functions that run sit all over the text, so nearly all of it was resident from start-up
//! on, whether it ran or not. Placed together, only the part that runs is mapped.
//!
//! How it finds them, exactly: `PROBE` is the runner built with every function on a page of
//! its own (`-C llvm-args=-align-all-functions=12`, `make layout`). A copy of it is started
//! with its page cache dropped and the readahead of its block device at 0, so a page is read,
//! and so mapped, only when touched. The functions on mapped pages are the ones that ran: at
//! idle (start-up), then after requests of the common kinds. `OUT` lists the first, then the
//! rest of the second, each in the probe's address order. C code (glibc) is not aligned: its
//! functions that share a touched page are listed with it.
//!
//! Needs root (the readahead setting, the page map of a process that is not dumpable) and a
//! file system on a block device for the copy (`target/`).

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use bytes::Bytes;

use crate::client::Error;
use crate::load::{self, Load, LoadStats};
use crate::sidecar::Sidecar;
use crate::target::{Mode, Target};

const PAGE: u64 = 4096;

/// How long the started probe stays without requests before its start-up set is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The requests run before the second set is read: what functions commonly meet.
struct Requests {
    concurrency: usize,
    count: usize,
    body: &'static str,
    /// Sent with `Direktiv-TempDir` (as Direktiv sends every request), or without.
    with_temp_dir: bool,
    /// The error code each must answer with, or `None` for 200: a body the runner refused
    /// would leave its paths out of the list unnoticed.
    fails_with: Option<&'static str>,
}

const WORKLOAD: &[Requests] = &[
    Requests {
        concurrency: 1,
        count: 300,
        body: r#"{"commands":[{"command":"true"}]}"#,
        with_temp_dir: true,
        fails_with: None,
    },
    Requests {
        concurrency: 16,
        count: 3000,
        body: r#"{"commands":[{"command":"true"}]}"#,
        with_temp_dir: true,
        fails_with: None,
    },
    Requests {
        concurrency: 4,
        count: 100,
        body: r#"{"commands":[{"command":"echo hi; echo oops >&2; exit 3","shell":true}],"mask":["a-secret-value"]}"#,
        with_temp_dir: true,
        fails_with: Some("cmd.exit.3"),
    },
    Requests {
        concurrency: 4,
        count: 100,
        body: r#"{"commands":[{"command":"seq 1 2000","limits":{"memory":"256Mi","cpu":"10s"}}]}"#,
        with_temp_dir: true,
        fails_with: None,
    },
    Requests {
        concurrency: 4,
        count: 100,
        body: r#"{"files":[{"name":"in.txt","data":"hello"}],"env":{"A":"b"},"commands":[{"command":"echo '{\"a\":1}' > \"$DIREKTIV_RESULT\"","shell":true},{"command":"false","continue":true},{"command":"cat in.txt"}]}"#,
        with_temp_dir: true,
        fails_with: None,
    },
    Requests {
        concurrency: 4,
        count: 100,
        body: r##"{"files":[{"name":"run.sh","content":"#!/bin/sh\necho hi","permission":493}],"data":{"commands":[{"command":"./run.sh","stop":true}]}}"##,
        with_temp_dir: true,
        fails_with: None,
    },
    Requests {
        concurrency: 4,
        count: 50,
        body: r#"{"commands":[{"command":"true"}]}"#,
        with_temp_dir: false,
        fails_with: None,
    },
];

pub fn run(args: &[String]) -> Result<(), Error> {
    let [probe, out] = args else {
        return Err("usage: layout PROBE OUT (see `make layout`)".into());
    };
    if !rustix::process::geteuid().is_root() {
        return Err(
            "layout needs root: it sets a block device's readahead and reads the page \
                    map of a process that is not dumpable"
                .into(),
        );
    }
    let copy = Path::new("target").join("layout-probe");
    std::fs::copy(probe, &copy).map_err(|e| format!("cannot copy {probe}: {e}"))?;
    let copy = copy.canonicalize()?;
    let _no_readahead = Readahead::off_for(&copy)?;
    drop_page_cache(&copy)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (idle, busy) = runtime.block_on(trace(&copy))?;
    let symbols = functions(&copy)?;
    let ran_idle = on_pages(&symbols, &idle);
    let at_start: HashSet<u64> = ran_idle.iter().map(|s| s.address).collect();
    let later: Vec<&Symbol> = on_pages(&symbols, &busy)
        .into_iter()
        .filter(|s| !at_start.contains(&s.address))
        .collect();
    let kib = |found: &[&Symbol]| found.iter().map(|s| s.size).sum::<u64>() / 1024;
    eprintln!(
        "{} functions ran at start-up ({} KiB), {} more under requests ({} KiB), of {}",
        ran_idle.len(),
        kib(&ran_idle),
        later.len(),
        kib(&later),
        symbols.len()
    );
    let mut text = String::from(HEADER);
    text.push_str(&format!("# rustc: {}\n", rustc_version()));
    for symbol in ran_idle.iter().chain(&later) {
        text.push_str(&symbol.name);
        text.push('\n');
    }
    std::fs::write(out, text).map_err(|e| format!("cannot write {out}: {e}"))?;
    let _ = std::fs::remove_file(&copy);
    Ok(())
}

const HEADER: &str = "\
# The runner's functions that run, in the order the linker places them (build.rs): those of
# start-up first, then those requests of the common kinds add. Made by `make layout`; the
# names carry hashes of the toolchain and the dependencies, so remake it after changing
# either (with other names the build still works, the code just is not placed together).
";

/// Starts the probe against a sidecar and returns the pages of its code mapped at idle and
/// after the workload.
async fn trace(probe: &Path) -> Result<(BTreeSet<u64>, BTreeSet<u64>), Error> {
    let sidecar = Sidecar::start().await?;
    let target = Target::Runner {
        binary: probe.to_path_buf(),
        sidecar: sidecar.url(),
        env: Vec::new(),
    };
    let server = target.start(&Mode::Host).await?;
    let traced = async {
        tokio::time::sleep(SETTLE).await;
        let idle = code_pages(server.pid(), probe)?;
        let temp_dir =
            std::env::temp_dir().join(format!("direktiv-cmd-layout-{}", std::process::id()));
        std::fs::create_dir_all(&temp_dir)?;
        let temp_dir = temp_dir.to_string_lossy().into_owned();
        for (n, requests) in WORKLOAD.iter().enumerate() {
            let load = Load {
                concurrency: requests.concurrency,
                requests: requests.count,
                body: Bytes::from_static(requests.body.as_bytes()),
                id_prefix: format!("layout-{n}"),
                temp_dir: requests.with_temp_dir.then(|| temp_dir.clone()),
            };
            let stats = load::run(server.addr, &load)
                .await?
                .stats(requests.concurrency);
            sidecar.clear();
            requests.check(&stats)?;
        }
        let _ = std::fs::remove_dir_all(&temp_dir);
        let busy = code_pages(server.pid(), probe)?;
        Ok::<_, Error>((idle, busy))
    }
    .await;
    server.stop().await?;
    traced
}

impl Requests {
    /// Whether every request was answered as it should be.
    fn check(&self, stats: &LoadStats) -> Result<(), Error> {
        let first = stats.first_error.as_deref().unwrap_or_default();
        let as_expected = match self.fails_with {
            None => stats.errors == 0,
            Some(code) => stats.errors == stats.requests && first.contains(code),
        };
        match as_expected {
            true => Ok(()),
            false => Err(format!(
                "{}: {} of {} requests failed (expected: {}); the first: {first}",
                self.body,
                stats.errors,
                stats.requests,
                self.fails_with.unwrap_or("none")
            )
            .into()),
        }
    }
}

/// The pages of `binary`'s executable mappings in process `pid` that are mapped, as offsets
/// from where the binary is loaded (its addresses as the symbol table gives them).
fn code_pages(pid: i32, binary: &Path) -> Result<BTreeSet<u64>, Error> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mappings = binary_mappings(&maps, binary);
    let base = mappings
        .iter()
        .find(|m| m.offset == 0)
        .map(|m| m.start)
        .ok_or("the binary's first mapping is not in the maps")?;
    let mut pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
    let mut pages = BTreeSet::new();
    for mapping in mappings.iter().filter(|m| m.executable) {
        let count = ((mapping.end - mapping.start) / PAGE) as usize;
        let mut entries = vec![0u8; count * 8];
        pagemap.seek(SeekFrom::Start(mapping.start / PAGE * 8))?;
        pagemap.read_exact(&mut entries)?;
        for (i, entry) in entries.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(entry.try_into()?);
            // Bit 63: the page is present.
            if entry >> 63 == 1 {
                pages.insert((mapping.start - base) / PAGE + i as u64);
            }
        }
    }
    Ok(pages)
}

#[derive(Debug, PartialEq)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    executable: bool,
}

/// The lines of a /proc/PID/maps text that map `binary`.
fn binary_mappings(maps: &str, binary: &Path) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
            let path = fields.nth(2)?;
            if Path::new(path) != binary {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                executable: perms.contains('x'),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Symbol {
    address: u64,
    size: u64,
    name: String,
}

/// The binary's functions, in address order (`nm`, names as the linker sees them).
fn functions(binary: &Path) -> Result<Vec<Symbol>, Error> {
    let output = StdCommand::new("nm")
        .args(["--defined-only", "--print-size"])
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run nm (binutils): {e}"))?;
    if !output.status.success() {
        return Err(format!("nm failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(parse_nm(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_nm(text: &str) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (address, size, kind, name) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            if !matches!(kind, "t" | "T" | "w" | "W") {
                return None;
            }
            Some(Symbol {
                address: u64::from_str_radix(address, 16).ok()?,
                size: u64::from_str_radix(size, 16)
                    .ok()
                    .filter(|&size| size > 0)?,
                name: name.to_owned(),
            })
        })
        .collect();
    symbols.sort_by_key(|symbol| symbol.address);
    symbols
}

/// The functions any of whose bytes lie on one of `pages`, in address order.
fn on_pages<'a>(symbols: &'a [Symbol], pages: &BTreeSet<u64>) -> Vec<&'a Symbol> {
    symbols
        .iter()
        .filter(|s| {
            let (first, last) = (s.address / PAGE, (s.address + s.size - 1) / PAGE);
            pages.range(first..=last).next().is_some()
        })
        .collect()
}

/// Sets the readahead of the block device holding a file to 0 while it lives, so that a page
/// fault reads that page alone; the old value comes back on drop.
struct Readahead {
    setting: PathBuf,
    was: String,
}

impl Readahead {
    fn off_for(file: &Path) -> Result<Readahead, Error> {
        let dev = std::fs::metadata(file)?.dev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let device = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        // A partition has no queue of its own: its disk's is one folder up.
        let setting = [device.join("queue"), device.join("../queue")]
            .into_iter()
            .map(|queue| queue.join("read_ahead_kb"))
            .find(|setting| setting.exists())
            .ok_or_else(|| {
                format!(
                    "{} is not on a block device (device {major}:{minor}); put target/ on one",
                    file.display()
                )
            })?;
        let was = std::fs::read_to_string(&setting)?.trim().to_owned();
        std::fs::write(&setting, "0")?;
        Ok(Readahead { setting, was })
    }
}

impl Drop for Readahead {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.setting, &self.was);
    }
}

/// Writes the file out and drops it from the page cache, so that its pages are read (and
/// mapped) only when touched.
fn drop_page_cache(file: &Path) -> Result<(), Error> {
    let file = File::open(file)?;
    file.sync_all()?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

fn rustc_version() -> String {
    StdCommand::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binarys_mappings_count_and_the_first_is_the_base() {
        let maps = "\
7f0000000000-7f00000e2000 r--p 00000000 fe:00 42 /work/target/layout-probe
7f00000e2000-7f0000489000 r-xp 000e1000 fe:00 42 /work/target/layout-probe
7f0000489000-7f00004a2000 r--p 00487000 fe:00 42 /work/target/layout-probe-old
7f00004a2000-7f00004a7000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let found = binary_mappings(maps, Path::new("/work/target/layout-probe"));
        assert_eq!(
            found,
            vec![
                Mapping {
                    start: 0x7f0000000000,
                    end: 0x7f00000e2000,
                    offset: 0,
                    executable: false
                },
                Mapping {
                    start: 0x7f00000e2000,
                    end: 0x7f0000489000,
                    offset: 0xe1000,
                    executable: true
                },
            ]
        );
    }

    #[test]
    fn a_workload_answered_otherwise_than_expected_stops_the_layout() {
        let stats = |requests, errors, first_error: Option<&str>| LoadStats {
            concurrency: 1,
            requests,
            errors,
            elapsed_s: 1.0,
            req_per_s: 1.0,
            p50_us: 1.0,
            p99_us: 1.0,
            first_error: first_error.map(str::to_owned),
        };
        let succeeds = &WORKLOAD[0];
        let fails = WORKLOAD.iter().find(|r| r.fails_with.is_some()).unwrap();
        assert!(succeeds.check(&stats(10, 0, None)).is_ok());
        let refused = Some("status 400: cmd.input commands[0].continue_on_error");
        assert!(succeeds.check(&stats(10, 1, refused)).is_err());
        let exit = Some("status 500: {\"error\":{\"code\":\"cmd.exit.3\"}}");
        assert!(fails.check(&stats(10, 10, exit)).is_ok());
        assert!(fails.check(&stats(10, 10, refused)).is_err());
        assert!(fails.check(&stats(10, 9, exit)).is_err());
    }

    #[test]
    fn a_function_ran_when_any_of_its_pages_is_mapped() {
        let nm = "\
0000000000003000 0000000000000010 T on_page_three
0000000000001000 0000000000002000 t spans_pages_one_and_two
0000000000004ff0 0000000000000020 T ends_on_page_five
0000000000006000 0000000000000010 T on_page_six
0000000000007000 0000000000000000 T no_size
0000000000008000 0000000000000010 r not_code
";
        let symbols = parse_nm(nm);
        assert_eq!(
            symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [
                "spans_pages_one_and_two",
                "on_page_three",
                "ends_on_page_five",
                "on_page_six"
            ]
        );
        let pages = BTreeSet::from([2, 5, 8]);
        let found: Vec<&str> = on_pages(&symbols, &pages)
            .into_iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(found, ["spans_pages_one_and_two", "ends_on_page_five"]);
    }
}
