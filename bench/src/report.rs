//! The results of one run: the targets judged against the protocol floor measured in the same
//! run (with the spawn floor's ratio beside them for reference), and the JSON written to
//! `bench-results/latest.json` (the printed table is in table.rs).

use std::path::Path;

use serde::Serialize;

use crate::client::Error;
use crate::compare::{IsolationReport, LimitsReport, MaskingReport, NearMatchReport};
use crate::delivery::Delivery;
use crate::measure::{PodServerReport, ServerReport, SlowReport};

pub const MIB: f64 = 1024.0 * 1024.0;

/// Everything one `make bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The fixed `Direktiv-TempDir` sent with every request except the private-temp-dir run.
    pub direktiv_tempdir: String,
    pub spawn_true_p50_us: f64,
    /// Spawns the command and answers with its stdout.
    pub spawn_floor: ServerReport,
    /// The spawn floor plus the one awaited log POST the contract needs: the reference.
    pub protocol_floor: ServerReport,
    pub runner: ServerReport,
    pub slow_sidecar: SlowReport,
    pub masking: MaskingReport,
    pub near_matches: NearMatchReport,
    pub limits: LimitsReport,
    pub isolation: IsolationReport,
    /// The floors and the runner again, in pod mode (pod.rs).
    pub pod_mode: PodMode,
    pub binary_stripped_bytes: u64,
    /// /proc/loadavg before and after the run: how busy the machine was with other work.
    pub load_average: [String; 2],
    /// Whether this run was to fail (exit non-zero) on a missed target.
    pub strict: bool,
    /// How long the measurements took, in seconds (builds not included).
    pub run_s: f64,
    pub targets: Vec<Check>,
    /// Figures with no target: the private temp dir per request, `limits`.
    pub information: Vec<Note>,
}

/// The pod-mode measurements, or why there are none.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PodMode {
    Measured(Box<PodServers>),
    Unavailable { reason: String },
}

/// The three servers measured in pod mode.
#[derive(Debug, Serialize)]
pub struct PodServers {
    pub spawn_floor: PodServerReport,
    pub protocol_floor: PodServerReport,
    pub runner: PodServerReport,
}

impl PodMode {
    /// The targets judged in pod mode, against the protocol floor in pod mode: the same limits
    /// as on the host. None when pod mode could not run.
    pub fn targets(&self) -> Vec<Check> {
        let PodMode::Measured(servers) = self else {
            return Vec::new();
        };
        let (s, p, r) = (
            &servers.spawn_floor,
            &servers.protocol_floor,
            &servers.runner,
        );
        let clean = [r, p]
            .iter()
            .all(|x| x.c1.stats.errors == 0 && x.c16.stats.errors == 0);
        let floors = |f: &dyn Fn(&PodServerReport) -> f64| (f(r) / f(p), f(r) / f(s));
        vec![
            ratio(
                "pod: c=1 p50 latency",
                floors(&|x| x.c1.stats.p50_us),
                "≤",
                1.05,
                clean,
            ),
            ratio(
                "pod: c=16 throughput",
                floors(&|x| x.c16.stats.req_per_s),
                "≥",
                0.95,
                clean,
            ),
            ratio(
                "pod: server CPU per request (c=16)",
                floors(&|x| x.c16.cpu_per_req_us),
                "≤",
                1.3,
                clean,
            ),
            memory("pod: idle RSS", r.idle_rss_kib as f64 * 1024.0, 3.5),
            memory("pod: peak RSS at c=16", r.peak_rss_kib as f64 * 1024.0, 6.0),
        ]
    }
}

/// One target: the measured value (a ratio to the protocol floor, or an absolute), its limit,
/// the verdict, and for ratios the same ratio against the spawn floor, for reference.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub limit: String,
    pub pass: bool,
    pub vs_spawn_floor: Option<String>,
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
        let (r, p, s) = (&self.runner, &self.protocol_floor, &self.spawn_floor);
        let (slow, masking) = (&self.slow_sidecar, &self.masking);
        let clean = [r, p]
            .iter()
            .all(|x| x.c1.stats.errors == 0 && x.c16.stats.errors == 0);
        let p50 = |x: &ServerReport| x.c1.stats.p50_us;
        let per_s = |x: &ServerReport| x.c16.stats.req_per_s;
        let cpu = |x: &ServerReport| x.c16.cpu_per_req_us;
        let seq = |x: &ServerReport| x.seq.ms;
        let ready = |x: &ServerReport| x.ready_ms;
        let floors = |f: &dyn Fn(&ServerReport) -> f64| (f(r) / f(p), f(r) / f(s));
        self.targets = vec![
            ratio("c=1 p50 latency", floors(&p50), "≤", 1.05, clean),
            ratio("c=16 throughput", floors(&per_s), "≥", 0.95, clean),
            ratio(
                "server CPU per request (c=16)",
                floors(&cpu),
                "≤",
                1.3,
                clean,
            ),
            ratio(
                "seq 1 100000 delivered",
                floors(&seq),
                "≤",
                1.25,
                r.seq.ok && p.seq.ok,
            ),
            ratio(
                "masking: 20 secrets vs none, 2 MB",
                (masking.with.ms / masking.without.ms, f64::NAN),
                "≤",
                1.10,
                masking.with.ok && masking.without.ok,
            ),
            absolute("50 ms sidecar: 2,000 lines", &slow.lines_2000, 500.0),
            absolute("50 ms sidecar: 2 MB output", &slow.output_2mb, 1000.0),
            memory("idle RSS", r.idle_rss_kib as f64 * 1024.0, 3.5),
            memory("peak RSS at c=16", r.peak_rss_kib as f64 * 1024.0, 6.0),
            memory(
                "stripped static binary",
                self.binary_stripped_bytes as f64,
                5.0,
            ),
            ratio(
                "ready (exec → /healthz 200)",
                floors(&ready),
                "≤",
                1.2,
                true,
            ),
        ];
        self.targets.extend(self.pod_mode.targets());
        self.information = information(r, p, &self.limits, &self.isolation);
        if let PodMode::Unavailable { reason } = &self.pod_mode {
            self.information.push(Note {
                name: "pod mode (its targets are not judged)".to_owned(),
                value: format!("unavailable: {reason}"),
            });
        }
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
}

/// One line per target: verdict, value, limit, and the ratio to the spawn floor if any.
pub fn print_checks(checks: &[Check]) {
    for check in checks {
        let verdict = if check.pass { "PASS" } else { "FAIL" };
        let reference = check
            .vs_spawn_floor
            .as_ref()
            .map(|v| format!("   (spawn floor: {v})"))
            .unwrap_or_default();
        println!(
            "  {verdict}  {:<36} {:>10}   target {}{reference}",
            check.name, check.value, check.limit
        );
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

/// The c=16 run without `Direktiv-TempDir` against the protocol floor and against the
/// runner's own run with the fixed one (what a temp dir per request costs), and what `limits`
/// and isolating requests cost.
fn information(
    r: &ServerReport,
    p: &ServerReport,
    limits: &LimitsReport,
    isolation: &IsolationReport,
) -> Vec<Note> {
    let (rp, pp) = (&r.c16_private_temp_dir, &p.c16_private_temp_dir);
    let note = |name: &str, value: String| Note {
        name: name.to_owned(),
        value,
    };
    let (with, without) = (&limits.with, &limits.without);
    vec![
        note(
            "c=1 `true` after 250 ms idle, p50",
            format!("{:.2}×", r.after_idle.ms / p.after_idle.ms),
        ),
        note(
            "c=16 throughput, private temp dir",
            format!("{:.2}×", rp.stats.req_per_s / pp.stats.req_per_s),
        ),
        note(
            "server CPU per request (c=16), private temp dir",
            format!("{:.2}×", rp.cpu_per_req_us / pp.cpu_per_req_us),
        ),
        note(
            "runner CPU per request c=16, none − fixed",
            format!("{:+.0} µs", rp.cpu_per_req_us - r.c16.cpu_per_req_us),
        ),
        note(
            "`limits` vs none: c=1 p50 (runner / runner)",
            format!("{:.2}×", with.stats.p50_us / without.stats.p50_us),
        ),
        note(
            "`limits` vs none: server CPU per request c=1",
            format!("{:+.0} µs", with.cpu_per_req_us - without.cpu_per_req_us),
        ),
        note(
            "`limits` vs none: after 250 ms idle, p50 (runner / runner)",
            format!("{:.2}×", limits.idle_with.ms / limits.idle_without.ms),
        ),
        note(
            "isolated vs CMD_ISOLATION=off: c=1 p50 (runner / runner)",
            format!(
                "{:.2}×",
                isolation.with.stats.p50_us / isolation.without.stats.p50_us
            ),
        ),
        note(
            "isolated vs CMD_ISOLATION=off: server CPU per request c=1",
            format!(
                "{:+.0} µs",
                isolation.with.cpu_per_req_us - isolation.without.cpu_per_req_us
            ),
        ),
    ]
}

/// A ratio target on `(against the protocol floor, against the spawn floor)` (NaN: no spawn
/// floor figure); `valid` false (errors, missing lines) fails it whatever the number.
fn ratio(name: &str, (value, vs_spawn): (f64, f64), op: &str, limit: f64, valid: bool) -> Check {
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
        vs_spawn_floor: (!vs_spawn.is_nan()).then(|| format!("{vs_spawn:.2}×")),
    }
}

fn absolute(name: &str, d: &Delivery, limit_ms: f64) -> Check {
    Check {
        name: name.to_owned(),
        value: format!("{:.0} ms", d.ms),
        limit: format!("≤ {limit_ms:.0} ms, all lines delivered"),
        pass: d.ok && d.ms <= limit_ms,
        vs_spawn_floor: None,
    }
}

fn memory(name: &str, bytes: f64, limit_mib: f64) -> Check {
    Check {
        name: name.to_owned(),
        value: format!("{:.2} MiB", bytes / MIB),
        limit: format!("≤ {limit_mib} MiB"),
        pass: bytes <= limit_mib * MIB,
        vs_spawn_floor: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_targets_respect_their_direction_and_validity() {
        assert!(ratio("latency", (1.05, 1.2), "≤", 1.05, true).pass);
        assert!(!ratio("latency", (1.06, 1.0), "≤", 1.05, true).pass);
        assert!(ratio("throughput", (0.95, 0.8), "≥", 0.95, true).pass);
        assert!(!ratio("throughput", (0.94, 1.0), "≥", 0.95, true).pass);
        assert!(!ratio("throughput", (0.99, 1.0), "≥", 0.95, false).pass);
        assert!(!ratio("latency", (f64::NAN, 1.0), "≤", 1.05, true).pass);
    }

    #[test]
    fn the_spawn_floor_ratio_is_shown_only_where_there_is_one() {
        let check = ratio("latency", (1.0, 1.234), "≤", 1.05, true);
        assert_eq!(check.vs_spawn_floor.as_deref(), Some("1.23×"));
        assert_eq!(
            ratio("m", (1.0, f64::NAN), "≤", 1.1, true).vs_spawn_floor,
            None
        );
    }

    fn pod_server(p50_us: f64, req_per_s: f64, cpu_per_req_us: f64) -> PodServerReport {
        let run = |p50_us, req_per_s, cpu_per_req_us| crate::measure::LoadRun {
            direktiv_tempdir: Some("/tmp".to_owned()),
            stats: crate::load::LoadStats {
                concurrency: 1,
                requests: 100,
                errors: 0,
                elapsed_s: 1.0,
                req_per_s,
                p50_us,
                p99_us: p50_us,
                first_error: None,
            },
            cpu_per_req_us,
        };
        PodServerReport {
            ready_ms: 1.0,
            idle_rss_kib: 3 * 1024,
            peak_rss_kib: 7 * 1024,
            c1: run(p50_us, 1000.0, cpu_per_req_us),
            c16: run(p50_us, req_per_s, cpu_per_req_us),
        }
    }

    #[test]
    fn pod_targets_are_ratios_to_the_protocol_floor_in_pod_mode() {
        let pod = PodMode::Measured(Box::new(PodServers {
            spawn_floor: pod_server(500.0, 4000.0, 100.0),
            protocol_floor: pod_server(1000.0, 2000.0, 200.0),
            runner: pod_server(1040.0, 1800.0, 300.0),
        }));
        let checks: Vec<_> = pod
            .targets()
            .into_iter()
            .map(|c| (c.name, c.value, c.pass))
            .collect();
        let expected = [
            ("pod: c=1 p50 latency", "1.04×", true),
            ("pod: c=16 throughput", "0.90×", false),
            ("pod: server CPU per request (c=16)", "1.50×", false),
            ("pod: idle RSS", "3.00 MiB", true),
            ("pod: peak RSS at c=16", "7.00 MiB", false),
        ]
        .map(|(n, v, p)| (n.to_owned(), v.to_owned(), p));
        assert_eq!(checks, expected);
        let unavailable = PodMode::Unavailable {
            reason: "needs root".to_owned(),
        };
        assert!(unavailable.targets().is_empty());
        let json = serde_json::to_value(&unavailable).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "unavailable", "reason": "needs root"})
        );
    }

    #[test]
    fn memory_limits_are_in_mebibytes() {
        assert!(memory("rss", 3.5 * MIB, 3.5).pass);
        assert!(!memory("rss", 3.5 * MIB + 1.0, 3.5).pass);
    }
}
