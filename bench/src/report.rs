//! The results of one run: the targets judged against the floor measured in the same run, one
//! table printer, and the JSON written to `bench-results/latest.json`.

use std::path::Path;

use serde::Serialize;

use crate::client::Error;
use crate::measure::{Delivery, LoadRun, ServerReport, SlowReport};

const MIB: f64 = 1024.0 * 1024.0;

/// Everything one `make bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The fixed `Direktiv-TempDir` sent with every request except the private-temp-dir run.
    pub direktiv_tempdir: String,
    pub spawn_true_p50_us: f64,
    pub floor: ServerReport,
    pub runner: ServerReport,
    pub slow_sidecar: SlowReport,
    pub binary_stripped_bytes: u64,
    /// /proc/loadavg before and after the run: how busy the machine was with other work.
    pub load_average: [String; 2],
    pub targets: Vec<Check>,
    /// Figures with no target: what the private temp dir per request costs.
    pub information: Vec<Note>,
}

/// One target: the measured value (a ratio to the floor, or an absolute), its limit, verdict.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub limit: String,
    pub pass: bool,
}

/// A figure reported for information, with no target.
#[derive(Debug, Serialize)]
pub struct Note {
    pub name: String,
    pub value: String,
}

impl Report {
    /// Judges every target (on the runs with the fixed `Direktiv-TempDir`) and works out the
    /// figures for information; called once all numbers are in.
    pub fn judge(&mut self) {
        let (r, f, slow) = (&self.runner, &self.floor, &self.slow_sidecar);
        let clean = r.c1.stats.errors == 0 && r.c16.stats.errors == 0;
        self.targets = vec![
            ratio(
                "c=1 p50 latency",
                r.c1.stats.p50_us / f.c1.stats.p50_us,
                "≤",
                1.12,
                clean,
            ),
            ratio(
                "c=16 throughput",
                r.c16.stats.req_per_s / f.c16.stats.req_per_s,
                "≥",
                0.85,
                clean,
            ),
            ratio(
                "server CPU per request (c=16)",
                r.c16.cpu_per_req_us / f.c16.cpu_per_req_us,
                "≤",
                2.0,
                clean,
            ),
            ratio(
                "seq 1 100000 delivered",
                r.seq.ms / f.seq.ms,
                "≤",
                2.0,
                r.seq.ok,
            ),
            absolute("50 ms sidecar: 2,000 lines", &slow.lines_2000, 500.0),
            absolute("50 ms sidecar: 2 MB output", &slow.output_2mb, 1000.0),
            memory("idle RSS", r.idle_rss_kib as f64 * 1024.0, 4.0),
            memory("peak RSS at c=16", r.peak_rss_kib as f64 * 1024.0, 8.0),
            memory(
                "stripped static binary",
                self.binary_stripped_bytes as f64,
                5.0,
            ),
            ratio(
                "ready (exec → /healthz 200)",
                r.ready_ms / f.ready_ms,
                "≤",
                1.5,
                true,
            ),
        ];
        self.information = private_temp_dir_cost(r, f);
    }

    /// How many targets failed.
    pub fn failed(&self) -> usize {
        self.targets.iter().filter(|c| !c.pass).count()
    }

    pub fn write_json(&self, path: &Path) -> Result<(), Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// The table: floor and runner side by side with the `Direktiv-TempDir` each row used,
    /// then the targets and the figures for information.
    pub fn print(&self) {
        println!(
            "\nTempDir: the Direktiv-TempDir of the row's requests (the floor server ignores it)"
        );
        println!(
            "  fixed  {} on every request, made once (as Direktiv main sends /tmp)",
            self.direktiv_tempdir
        );
        println!("  none   no header: the runner makes and removes a private temp dir per request");
        println!(
            "\n{:<42} {:>7} {:>18} {:>26}",
            "measurement", "TempDir", "floor server", "direktiv-cmd"
        );
        for (name, header, floor, runner) in self.rows() {
            println!("{name:<42} {header:>7} {floor:>18} {runner:>26}");
        }
        println!(
            "{:<42} {:>53}",
            "load average before / after",
            format!("{} / {}", self.load_average[0], self.load_average[1])
        );
        println!("\ntargets (ratios are direktiv-cmd / floor server, same run; TempDir fixed)");
        for check in &self.targets {
            let verdict = if check.pass { "PASS" } else { "FAIL" };
            println!(
                "  {verdict}  {:<32} {:>10}   target {}",
                check.name, check.value, check.limit
            );
        }
        println!("\nfor information, no target (c=16 `true` with TempDir none; ratios as above)");
        for note in &self.information {
            println!("        {:<48} {:>10}", note.name, note.value);
        }
        self.print_problems();
    }

    /// The table rows: name, `Direktiv-TempDir` (fixed, none, or empty for rows without
    /// requests), floor server, runner.
    fn rows(&self) -> Vec<(&'static str, &'static str, String, String)> {
        let (f, r) = (&self.floor, &self.runner);
        let (fp, rp) = (&f.c16_private_temp_dir, &r.c16_private_temp_dir);
        let us = |v: f64| format!("{v:.0} µs");
        let ms = |v: f64| format!("{v:.1} ms");
        let mib = |kib: u64| format!("{:.2} MiB", kib as f64 / 1024.0);
        let per_s = |run: &LoadRun| format!("{:.0}", run.stats.req_per_s);
        let slow = &self.slow_sidecar;
        vec![
            (
                "spawn+wait /bin/true p50",
                "",
                us(self.spawn_true_p50_us),
                String::new(),
            ),
            (
                "ready: exec → /healthz 200",
                "",
                ms(f.ready_ms),
                ms(r.ready_ms),
            ),
            ("idle RSS", "", mib(f.idle_rss_kib), mib(r.idle_rss_kib)),
            (
                "peak RSS (VmHWM after c=16)",
                "fixed",
                mib(f.peak_rss_kib),
                mib(r.peak_rss_kib),
            ),
            (
                "c=1 `true` p50",
                "fixed",
                us(f.c1.stats.p50_us),
                us(r.c1.stats.p50_us),
            ),
            (
                "c=1 `true` p99",
                "fixed",
                us(f.c1.stats.p99_us),
                us(r.c1.stats.p99_us),
            ),
            ("c=16 `true` req/s", "fixed", per_s(&f.c16), per_s(&r.c16)),
            (
                "c=16 `true` p50",
                "fixed",
                us(f.c16.stats.p50_us),
                us(r.c16.stats.p50_us),
            ),
            (
                "c=16 `true` p99",
                "fixed",
                us(f.c16.stats.p99_us),
                us(r.c16.stats.p99_us),
            ),
            ("errors c=1 / c=16", "fixed", errors(f), errors(r)),
            (
                "server CPU per request c=1",
                "fixed",
                us(f.c1.cpu_per_req_us),
                us(r.c1.cpu_per_req_us),
            ),
            (
                "server CPU per request c=16",
                "fixed",
                us(f.c16.cpu_per_req_us),
                us(r.c16.cpu_per_req_us),
            ),
            (
                "c=16 `true` req/s, private temp dir",
                "none",
                per_s(fp),
                per_s(rp),
            ),
            (
                "c=16 `true` p50, private temp dir",
                "none",
                us(fp.stats.p50_us),
                us(rp.stats.p50_us),
            ),
            (
                "c=16 `true` p99, private temp dir",
                "none",
                us(fp.stats.p99_us),
                us(rp.stats.p99_us),
            ),
            (
                "errors c=16, private temp dir",
                "none",
                fp.stats.errors.to_string(),
                rp.stats.errors.to_string(),
            ),
            (
                "server CPU/request c=16, private temp dir",
                "none",
                us(fp.cpu_per_req_us),
                us(rp.cpu_per_req_us),
            ),
            (
                "seq 1 100000 → response",
                "fixed",
                delivery(&f.seq),
                delivery(&r.seq),
            ),
            (
                "50 ms sidecar: 2,000 lines",
                "fixed",
                String::new(),
                delivery(&slow.lines_2000),
            ),
            (
                "50 ms sidecar: 2 MB output",
                "fixed",
                String::new(),
                delivery(&slow.output_2mb),
            ),
            (
                "stripped static binary",
                "",
                String::new(),
                format!("{:.2} MiB", self.binary_stripped_bytes as f64 / MIB),
            ),
        ]
    }

    /// Why a delivery or a load run failed, where one did.
    fn print_problems(&self) {
        let (f, r) = (&self.floor, &self.runner);
        for (name, d) in [("seq (floor)", &f.seq), ("seq (direktiv-cmd)", &r.seq)]
            .into_iter()
            .chain([
                ("2,000 lines", &self.slow_sidecar.lines_2000),
                ("2 MB", &self.slow_sidecar.output_2mb),
            ])
        {
            if !d.ok {
                println!("  {name}: status {}, {}", d.status, d.check);
            }
        }
        for (name, s) in [("floor", f), ("direktiv-cmd", r)] {
            for e in [&s.c1, &s.c16, &s.c16_private_temp_dir]
                .into_iter()
                .filter_map(|run| run.stats.first_error.as_ref())
            {
                println!("  {name} load error: {e}");
            }
        }
    }
}

/// The first three fields of /proc/loadavg (1, 5 and 15 minutes), or "?" without /proc.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.is_empty() {
        "?".to_owned()
    } else {
        fields.join(" ")
    }
}

fn errors(s: &ServerReport) -> String {
    format!("{} / {}", s.c1.stats.errors, s.c16.stats.errors)
}

/// The c=16 run without `Direktiv-TempDir` against the floor, and against the runner's own
/// run with the fixed one: what making and removing a temp dir per request costs.
fn private_temp_dir_cost(r: &ServerReport, f: &ServerReport) -> Vec<Note> {
    let (rp, fp) = (&r.c16_private_temp_dir, &f.c16_private_temp_dir);
    let note = |name: &str, value: String| Note {
        name: name.to_owned(),
        value,
    };
    vec![
        note(
            "c=16 throughput, private temp dir",
            format!("{:.2}×", rp.stats.req_per_s / fp.stats.req_per_s),
        ),
        note(
            "server CPU per request (c=16), private temp dir",
            format!("{:.2}×", rp.cpu_per_req_us / fp.cpu_per_req_us),
        ),
        note(
            "runner CPU per request c=16, none − fixed",
            format!("{:+.0} µs", rp.cpu_per_req_us - r.c16.cpu_per_req_us),
        ),
    ]
}

/// Time to the response, and the sidecar posts it took where there were any.
fn delivery(d: &Delivery) -> String {
    let posts = match d.sidecar_posts {
        0 => String::new(),
        n => format!(" ({n} posts)"),
    };
    format!("{:.1} ms{posts}{}", d.ms, if d.ok { "" } else { " (!)" })
}

/// A ratio target; `valid` false (errors, missing lines) fails it whatever the number.
fn ratio(name: &str, value: f64, op: &str, limit: f64, valid: bool) -> Check {
    let within = if op == "≥" {
        value >= limit
    } else {
        value <= limit
    };
    Check {
        name: name.to_owned(),
        value: format!("{value:.2}×"),
        limit: format!(
            "{op} {limit}×{}",
            if valid { "" } else { " (and a clean run)" }
        ),
        pass: valid && within,
    }
}

fn absolute(name: &str, d: &Delivery, limit_ms: f64) -> Check {
    Check {
        name: name.to_owned(),
        value: format!("{:.0} ms", d.ms),
        limit: format!("≤ {limit_ms:.0} ms, all lines delivered"),
        pass: d.ok && d.ms <= limit_ms,
    }
}

fn memory(name: &str, bytes: f64, limit_mib: f64) -> Check {
    Check {
        name: name.to_owned(),
        value: format!("{:.2} MiB", bytes / MIB),
        limit: format!("≤ {limit_mib} MiB"),
        pass: bytes <= limit_mib * MIB,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_targets_respect_their_direction_and_validity() {
        assert!(ratio("latency", 1.10, "≤", 1.12, true).pass);
        assert!(!ratio("latency", 1.13, "≤", 1.12, true).pass);
        assert!(ratio("throughput", 0.90, "≥", 0.85, true).pass);
        assert!(!ratio("throughput", 0.80, "≥", 0.85, true).pass);
        assert!(!ratio("throughput", 0.90, "≥", 0.85, false).pass);
    }

    #[test]
    fn memory_limits_are_in_mebibytes() {
        assert!(memory("rss", 4.0 * MIB, 4.0).pass);
        assert!(!memory("rss", 4.0 * MIB + 1.0, 4.0).pass);
    }
}
