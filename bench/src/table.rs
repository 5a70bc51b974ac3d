//! The printed table: the floors and the runner side by side, the targets with their verdicts,
//! the figures for information, and what went wrong where something did.

use crate::delivery::Delivery;
use crate::measure::{LoadRun, PodServerReport, ServerReport};
use crate::report::{PodMode, Report, MIB};

impl Report {
    /// The table: the floors and the runner side by side with the `Direktiv-TempDir` each row
    /// used, then the targets and the figures for information.
    pub fn print(&self) {
        println!("\nspawn floor: spawns the command, answers with its stdout");
        println!(
            "protocol floor: the same, plus the one log POST the contract needs (the `running \
             command` line and the output, awaited before the response) and the contract's JSON \
             body; targets are judged on it"
        );
        println!("TempDir: the Direktiv-TempDir of the row's requests (the floors ignore it)");
        println!(
            "  fixed  {} on every request, made once (as Direktiv main sends /tmp)",
            self.direktiv_tempdir
        );
        println!("  none   no header: the runner makes and removes a private temp dir per request");
        println!(
            "\n{:<44} {:>7} {:>14} {:>18} {:>24}",
            "measurement", "TempDir", "spawn floor", "protocol floor", "direktiv-cmd"
        );
        print_rows(&self.rows());
        print_pod_rows(&self.pod_mode);
        println!(
            "{:<44} {:>65}",
            "load average before / after",
            format!("{} / {}", self.load_average[0], self.load_average[1])
        );
        println!(
            "\ntargets (ratios are direktiv-cmd / protocol floor, same run; TempDir fixed; \
             the ratio to the spawn floor is for reference)"
        );
        crate::report::print_checks(&self.targets);
        println!("\nfor information, no target (ratios to the protocol floor, as above)");
        for note in &self.information {
            println!("        {:<52} {:>10}", note.name, note.value);
        }
        self.print_problems();
    }

    /// The table rows.
    fn rows(&self) -> Vec<Row> {
        let (s, p, r) = (&self.spawn_floor, &self.protocol_floor, &self.runner);
        let us = |v: f64| format!("{v:.0} µs");
        let ms = |v: f64| format!("{v:.1} ms");
        let mib = |kib: u64| format!("{:.2} MiB", kib as f64 / 1024.0);
        let per_s = |run: &LoadRun| format!("{:.0}", run.stats.req_per_s);
        let errors = |x: &ServerReport| format!("{} / {}", x.c1.stats.errors, x.c16.stats.errors);
        let each = |name, temp_dir, f: &dyn Fn(&ServerReport) -> String| Row {
            name,
            temp_dir,
            spawn: f(s),
            protocol: f(p),
            runner: f(r),
        };
        let (slow, masking, limits) = (&self.slow_sidecar, &self.masking, &self.limits);
        let mut rows = vec![
            Row::runner_only("spawn+wait /bin/true p50", "", String::new())
                .with_spawn(us(self.spawn_true_p50_us)),
            each("ready: exec → /healthz 200", "", &|x| ms(x.ready_ms)),
            each("idle RSS", "", &|x| mib(x.idle_rss_kib)),
            each("peak RSS (VmHWM after c=16)", "fixed", &|x| {
                mib(x.peak_rss_kib)
            }),
            each("c=1 `true` p50", "fixed", &|x| us(x.c1.stats.p50_us)),
            each("c=1 `true` p99", "fixed", &|x| us(x.c1.stats.p99_us)),
            each("c=16 `true` req/s", "fixed", &|x| per_s(&x.c16)),
            each("c=16 `true` p50", "fixed", &|x| us(x.c16.stats.p50_us)),
            each("c=16 `true` p99", "fixed", &|x| us(x.c16.stats.p99_us)),
            each("errors c=1 / c=16", "fixed", &errors),
            each("server CPU per request c=1", "fixed", &|x| {
                us(x.c1.cpu_per_req_us)
            }),
            each("server CPU per request c=16", "fixed", &|x| {
                us(x.c16.cpu_per_req_us)
            }),
            each("c=16 `true` req/s, private temp dir", "none", &|x| {
                per_s(&x.c16_private_temp_dir)
            }),
            each("c=16 `true` p50, private temp dir", "none", &|x| {
                us(x.c16_private_temp_dir.stats.p50_us)
            }),
            each("errors c=16, private temp dir", "none", &|x| {
                x.c16_private_temp_dir.stats.errors.to_string()
            }),
            each("server CPU/request c=16, private temp dir", "none", &|x| {
                us(x.c16_private_temp_dir.cpu_per_req_us)
            }),
            each("seq 1 100000 → response", "fixed", &|x| delivery(&x.seq)),
            each("c=1 `true` after 250 ms idle, p50", "fixed", &|x| {
                us(x.after_idle.ms * 1e3)
            }),
        ];
        rows.extend([
            Row::runner_only(
                "50 ms sidecar: 2,000 lines",
                "fixed",
                delivery(&slow.lines_2000),
            ),
            Row::runner_only(
                "50 ms sidecar: 2 MB output",
                "fixed",
                delivery(&slow.output_2mb),
            ),
            Row::runner_only(
                "2 MB + 20 `key=` lines, no mask",
                "fixed",
                delivery(&masking.without),
            ),
            Row::runner_only(
                "the same, the 20 secrets in `mask`",
                "fixed",
                delivery(&masking.with),
            ),
            Row::runner_only(
                "2,000 `mask` entries, 19 MB of near-matches",
                "fixed",
                delivery(&self.near_matches.delivery),
            ),
            Row::runner_only(
                "  peak RSS meanwhile",
                "fixed",
                mib(self.near_matches.peak_rss_kib),
            ),
            Row::runner_only(
                "c=1 `true` p50, no limits",
                "fixed",
                us(limits.without.stats.p50_us),
            ),
            Row::runner_only(
                "c=1 `true` p50, with `limits`",
                "fixed",
                us(limits.with.stats.p50_us),
            ),
            Row::runner_only(
                "  the same after 250 ms idle, no limits",
                "fixed",
                us(limits.idle_without.ms * 1e3),
            ),
            Row::runner_only(
                "  the same after 250 ms idle, with `limits`",
                "fixed",
                us(limits.idle_with.ms * 1e3),
            ),
            Row::runner_only(
                "c=1 `true` p50, CMD_ISOLATION=off",
                "fixed",
                us(self.isolation.without.stats.p50_us),
            ),
            Row::runner_only(
                "c=1 `true` p50, isolated (Landlock)",
                "fixed",
                us(self.isolation.with.stats.p50_us),
            ),
            Row::runner_only(
                "stripped static binary",
                "",
                format!("{:.2} MiB", self.binary_stripped_bytes as f64 / MIB),
            ),
        ]);
        rows
    }

    /// Why a delivery or a load run failed, where one did.
    fn print_problems(&self) {
        let servers = [
            ("spawn floor", &self.spawn_floor),
            ("protocol floor", &self.protocol_floor),
            ("direktiv-cmd", &self.runner),
        ];
        let deliveries = servers.iter().map(|(name, s)| (*name, &s.seq)).chain([
            ("2,000 lines", &self.slow_sidecar.lines_2000),
            ("2 MB", &self.slow_sidecar.output_2mb),
            ("2 MB, no mask", &self.masking.without),
            ("2 MB, 20 secrets", &self.masking.with),
            ("19 MB of near-matches", &self.near_matches.delivery),
        ]);
        for (name, d) in deliveries {
            if !d.ok {
                println!("  {name}: status {}, {}", d.status, d.check);
            }
        }
        let limits = ("direktiv-cmd", [&self.limits.without, &self.limits.with]);
        for (name, runs) in servers
            .iter()
            .map(|(name, s)| (*name, [&s.c1, &s.c16, &s.c16_private_temp_dir]))
            .map(|(name, runs)| (name, runs.to_vec()))
            .chain([(limits.0, limits.1.to_vec())])
        {
            for e in runs
                .into_iter()
                .filter_map(|run| run.stats.first_error.as_ref())
            {
                println!("  {name} load error: {e}");
            }
        }
    }
}

/// The rows under the table's header.
fn print_rows(rows: &[Row]) {
    for row in rows {
        println!(
            "{:<44} {:>7} {:>14} {:>18} {:>24}",
            row.name, row.temp_dir, row.spawn, row.protocol, row.runner
        );
    }
}

/// The pod-mode rows, under a line saying what pod mode is (or why it did not run).
pub fn print_pod_rows(pod: &PodMode) {
    println!(
        "pod mode: every server in its own mount and pid namespaces (own /proc), the cgroup \
         mounts read-only: no cgroup per request"
    );
    print_rows(&pod_rows(pod));
    if let PodMode::Measured(servers) = pod {
        let servers = [
            ("spawn floor", &servers.spawn_floor),
            ("protocol floor", &servers.protocol_floor),
            ("direktiv-cmd", &servers.runner),
        ];
        for (name, server) in servers {
            for e in [&server.c1, &server.c16]
                .into_iter()
                .filter_map(|run| run.stats.first_error.as_ref())
            {
                println!("  {name} load error in pod mode: {e}");
            }
        }
    }
}

fn pod_rows(pod: &PodMode) -> Vec<Row> {
    let (s, p, r) = match pod {
        PodMode::Measured(servers) => (
            &servers.spawn_floor,
            &servers.protocol_floor,
            &servers.runner,
        ),
        PodMode::Unavailable { reason } => {
            return vec![Row::runner_only(
                "pod mode",
                "",
                format!("unavailable: {reason}"),
            )]
        }
    };
    let us = |v: f64| format!("{v:.0} µs");
    let mib = |kib: u64| format!("{:.2} MiB", kib as f64 / 1024.0);
    let each = |name, temp_dir, f: &dyn Fn(&PodServerReport) -> String| Row {
        name,
        temp_dir,
        spawn: f(s),
        protocol: f(p),
        runner: f(r),
    };
    vec![
        each("pod: ready: exec → /healthz 200", "", &|x| {
            format!("{:.1} ms", x.ready_ms)
        }),
        each("pod: idle RSS", "", &|x| mib(x.idle_rss_kib)),
        each("pod: peak RSS (VmHWM after c=16)", "fixed", &|x| {
            mib(x.peak_rss_kib)
        }),
        each("pod: c=1 `true` p50", "fixed", &|x| us(x.c1.stats.p50_us)),
        each("pod: c=1 `true` p99", "fixed", &|x| us(x.c1.stats.p99_us)),
        each("pod: c=16 `true` req/s", "fixed", &|x| {
            format!("{:.0}", x.c16.stats.req_per_s)
        }),
        each("pod: c=16 `true` p50", "fixed", &|x| us(x.c16.stats.p50_us)),
        each("pod: errors c=1 / c=16", "fixed", &|x| {
            format!("{} / {}", x.c1.stats.errors, x.c16.stats.errors)
        }),
        each("pod: server CPU per request c=1", "fixed", &|x| {
            us(x.c1.cpu_per_req_us)
        }),
        each("pod: server CPU per request c=16", "fixed", &|x| {
            us(x.c16.cpu_per_req_us)
        }),
    ]
}

/// One line of the table.
struct Row {
    name: &'static str,
    temp_dir: &'static str,
    spawn: String,
    protocol: String,
    runner: String,
}

impl Row {
    fn runner_only(name: &'static str, temp_dir: &'static str, runner: String) -> Self {
        Row {
            name,
            temp_dir,
            spawn: String::new(),
            protocol: String::new(),
            runner,
        }
    }

    fn with_spawn(self, spawn: String) -> Self {
        Row { spawn, ..self }
    }
}

/// Time to the response, and the sidecar posts it took where there were any.
fn delivery(d: &Delivery) -> String {
    let posts = match d.sidecar_posts {
        0 => String::new(),
        1 => " (1 post)".to_owned(),
        n => format!(" ({n} posts)"),
    };
    format!("{:.1} ms{posts}{}", d.ms, if d.ok { "" } else { " (!)" })
}
