//! The results of one run: the targets judged against the floor measured in the same run, one
//! table printer, and the JSON written to `bench-results/latest.json`.

use std::path::Path;

use serde::Serialize;

use crate::client::Error;
use crate::measure::{Delivery, ServerReport, SlowReport};

const MIB: f64 = 1024.0 * 1024.0;

/// Everything one `make bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub spawn_true_p50_us: f64,
    pub floor: ServerReport,
    pub runner: ServerReport,
    pub slow_sidecar: SlowReport,
    pub binary_stripped_bytes: u64,
    /// /proc/loadavg before and after the run: how busy the machine was with other work.
    pub load_average: [String; 2],
    pub targets: Vec<Check>,
}

/// One target: the measured value (a ratio to the floor, or an absolute), its limit, verdict.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub limit: String,
    pub pass: bool,
}

impl Report {
    /// Judges every target; called once all numbers are in.
    pub fn judge(&mut self) {
        let (r, f, slow) = (&self.runner, &self.floor, &self.slow_sidecar);
        let clean = r.c1.errors == 0 && r.c16.errors == 0;
        self.targets = vec![
            ratio(
                "c=1 p50 latency",
                r.c1.p50_us / f.c1.p50_us,
                "≤",
                1.12,
                clean,
            ),
            ratio(
                "c=16 throughput",
                r.c16.req_per_s / f.c16.req_per_s,
                "≥",
                0.85,
                clean,
            ),
            ratio(
                "server CPU per request (c=16)",
                r.cpu_per_req_us_c16 / f.cpu_per_req_us_c16,
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

    /// The table: floor and runner side by side, then the targets.
    pub fn print(&self) {
        let (f, r) = (&self.floor, &self.runner);
        let us = |v: f64| format!("{v:.0} µs");
        let ms = |v: f64| format!("{v:.1} ms");
        let mib = |kib: u64| format!("{:.2} MiB", kib as f64 / 1024.0);
        let rows: Vec<(&str, String, String)> = vec![
            (
                "spawn+wait /bin/true p50",
                us(self.spawn_true_p50_us),
                String::new(),
            ),
            ("ready: exec → /healthz 200", ms(f.ready_ms), ms(r.ready_ms)),
            ("idle RSS", mib(f.idle_rss_kib), mib(r.idle_rss_kib)),
            (
                "peak RSS (VmHWM after c=16)",
                mib(f.peak_rss_kib),
                mib(r.peak_rss_kib),
            ),
            ("c=1 `true` p50", us(f.c1.p50_us), us(r.c1.p50_us)),
            ("c=1 `true` p99", us(f.c1.p99_us), us(r.c1.p99_us)),
            (
                "c=16 `true` req/s",
                format!("{:.0}", f.c16.req_per_s),
                format!("{:.0}", r.c16.req_per_s),
            ),
            ("c=16 `true` p50", us(f.c16.p50_us), us(r.c16.p50_us)),
            ("c=16 `true` p99", us(f.c16.p99_us), us(r.c16.p99_us)),
            ("errors c=1 / c=16", errors(f), errors(r)),
            (
                "server CPU per request c=1",
                us(f.cpu_per_req_us_c1),
                us(r.cpu_per_req_us_c1),
            ),
            (
                "server CPU per request c=16",
                us(f.cpu_per_req_us_c16),
                us(r.cpu_per_req_us_c16),
            ),
            (
                "seq 1 100000 → response",
                delivery(&f.seq),
                delivery(&r.seq),
            ),
            (
                "50 ms sidecar: 2,000 lines",
                String::new(),
                delivery(&self.slow_sidecar.lines_2000),
            ),
            (
                "50 ms sidecar: 2 MB output",
                String::new(),
                delivery(&self.slow_sidecar.output_2mb),
            ),
            (
                "stripped static binary",
                String::new(),
                format!("{:.2} MiB", self.binary_stripped_bytes as f64 / MIB),
            ),
        ];
        println!(
            "\n{:<30} {:>18} {:>26}",
            "measurement", "floor server", "direktiv-cmd"
        );
        for (name, floor, runner) in rows {
            println!("{name:<30} {floor:>18} {runner:>26}");
        }
        println!(
            "{:<30} {:>45}",
            "load average before / after",
            format!("{} / {}", self.load_average[0], self.load_average[1])
        );
        println!("\ntargets (ratios are direktiv-cmd / floor server, same run)");
        for check in &self.targets {
            let verdict = if check.pass { "PASS" } else { "FAIL" };
            println!(
                "  {verdict}  {:<32} {:>10}   target {}",
                check.name, check.value, check.limit
            );
        }
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
            for e in [&s.c1.first_error, &s.c16.first_error]
                .into_iter()
                .flatten()
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
    format!("{} / {}", s.c1.errors, s.c16.errors)
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
