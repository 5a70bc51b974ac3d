//! Prometheus metrics. The registry is the runner's only global: every part of the data path
//! counts into it without having a handle passed down.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Buckets of the CPU-time histograms (seconds).
const CPU_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0];

/// Labels of `direktiv_cmd_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `success` or `error`.
    pub outcome: &'static str,
    /// The `cmd.*` error code, empty on success.
    pub code: String,
}

/// Labels of `direktiv_cmd_console_lines_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
}

/// Labels of `direktiv_cmd_isolation`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IsolationLabels {
    /// `landlock`, `serial` (one request at a time), `none` (no Landlock here) or `off`.
    pub mode: &'static str,
}

/// Every metric the runner exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub command_duration: Histogram,
    /// Peak resident memory of each command (its largest process), from `usage`.
    pub command_max_rss: Histogram,
    /// CPU time of each command in user mode, from `usage`.
    pub command_user_cpu: Histogram,
    /// CPU time the kernel spent for each command, from `usage`.
    pub command_system_cpu: Histogram,
    pub inflight_requests: Gauge,
    pub running_processes: Gauge,
    pub log_lines: Counter,
    pub log_bytes: Counter,
    pub log_posts: Counter,
    pub log_post_failures: Counter,
    pub log_posts_coalesced: Counter,
    pub log_lines_to_stdout: Counter<u64, AtomicU64>,
    pub escaped_processes_killed: Counter,
    pub temp_dir_removal_failures: Counter,
    pub console_lines_dropped: Family<StreamLabels, Counter>,
    /// 1 for the isolation of requests in effect (`CMD_ISOLATION` on this kernel).
    pub isolation: Family<IsolationLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        // Knative tells a revision its service and revision names; carry them as labels so
        // dashboards can tell functions apart.
        let const_labels: Vec<(
            std::borrow::Cow<'static, str>,
            std::borrow::Cow<'static, str>,
        )> = [("K_SERVICE", "service"), ("K_REVISION", "revision")]
            .into_iter()
            .filter_map(|(var, label)| {
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (label.into(), v.into()))
            })
            .collect();
        let mut registry =
            Registry::with_prefix_and_labels("direktiv_cmd", const_labels.into_iter());

        let metrics = Metrics {
            requests: Family::default(),
            command_duration: Histogram::new([
                0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
            ]),
            // 1 MiB to 16 GiB, by factors of 4.
            command_max_rss: Histogram::new(exponential_buckets(1024.0 * 1024.0, 4.0, 8)),
            command_user_cpu: Histogram::new(CPU_BUCKETS),
            command_system_cpu: Histogram::new(CPU_BUCKETS),
            inflight_requests: Gauge::default(),
            running_processes: Gauge::default(),
            log_lines: Counter::default(),
            log_bytes: Counter::default(),
            log_posts: Counter::default(),
            log_post_failures: Counter::default(),
            log_posts_coalesced: Counter::default(),
            log_lines_to_stdout: Counter::default(),
            escaped_processes_killed: Counter::default(),
            temp_dir_removal_failures: Counter::default(),
            console_lines_dropped: Family::default(),
            isolation: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by outcome and cmd.* error code",
            metrics.requests.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Wall time of each command run",
            metrics.command_duration.clone(),
        );
        registry.register(
            "command_max_rss_bytes",
            "Peak resident memory of each command's largest process (usage.max_rss_kib)",
            metrics.command_max_rss.clone(),
        );
        registry.register(
            "command_user_cpu_seconds",
            "User-mode CPU time of each command (usage.user_ms)",
            metrics.command_user_cpu.clone(),
        );
        registry.register(
            "command_system_cpu_seconds",
            "Kernel CPU time of each command (usage.sys_ms)",
            metrics.command_system_cpu.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests running now",
            metrics.inflight_requests.clone(),
        );
        registry.register(
            "running_processes",
            "Command processes running now",
            metrics.running_processes.clone(),
        );
        registry.register(
            "log_lines",
            "Output lines shipped to the sidecar log endpoint",
            metrics.log_lines.clone(),
        );
        registry.register(
            "log_bytes",
            "Output bytes shipped to the sidecar log endpoint",
            metrics.log_bytes.clone(),
        );
        registry.register(
            "log_posts",
            "POSTs made to the sidecar log endpoint",
            metrics.log_posts.clone(),
        );
        registry.register(
            "log_post_failures",
            "Failed POSTs to the sidecar log endpoint (each try counts)",
            metrics.log_post_failures.clone(),
        );
        registry.register(
            "log_posts_coalesced",
            "POSTs that carried more than one line because the endpoint was behind",
            metrics.log_posts_coalesced.clone(),
        );
        registry.register(
            "log_lines_to_stdout",
            "Lines written to the container's stdout because the sidecar could not take them",
            metrics.log_lines_to_stdout.clone(),
        );
        registry.register(
            "escaped_processes_killed",
            "Processes of a request that had left their command's process group (setsid, \
             daemons) and were stopped when the command or request ended",
            metrics.escaped_processes_killed.clone(),
        );
        registry.register(
            "temp_dir_removal_failures",
            "Private temp dirs that could not be removed completely after their request",
            metrics.temp_dir_removal_failures.clone(),
        );
        // Both streams from the start, so a dashboard sees 0 rather than nothing.
        for stream in ["stdout", "stderr"] {
            drop(
                metrics
                    .console_lines_dropped
                    .get_or_create(&StreamLabels { stream }),
            );
        }
        registry.register(
            "console_lines_dropped",
            "Lines the runner dropped instead of waiting on a stdout or stderr nobody reads",
            metrics.console_lines_dropped.clone(),
        );
        registry.register(
            "isolation",
            "1 for how concurrent requests are isolated from each other (CMD_ISOLATION): \
             landlock, serial (one at a time), none (no Landlock on this kernel) or off",
            metrics.isolation.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts lines dropped on the process's `stream` (stdout or stderr).
    pub fn count_console_drop(&self, stream: &'static str, lines: u64) {
        self.console_lines_dropped
            .get_or_create(&StreamLabels { stream })
            .inc_by(lines);
    }

    /// Records what one command used: peak RSS in KiB, user and system CPU in milliseconds
    /// (plain numbers, so that metrics depend on no other module).
    pub(crate) fn observe_usage(&self, max_rss_kib: u64, user_ms: u64, sys_ms: u64) {
        self.command_max_rss.observe(max_rss_kib as f64 * 1024.0);
        self.command_user_cpu.observe(user_ms as f64 / 1000.0);
        self.command_system_cpu.observe(sys_ms as f64 / 1000.0);
    }

    /// Counts one answered request.
    pub fn count_request(&self, code: Option<&str>) {
        let labels = RequestLabels {
            outcome: if code.is_some() { "error" } else { "success" },
            code: code.unwrap_or_default().to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        METRICS.count_request(Some("cmd.exit.2"));
        METRICS.log_lines.inc();
        let text = METRICS.render();
        assert!(text.contains("direktiv_cmd_requests_total{outcome=\"error\",code=\"cmd.exit.2\"}"));
        assert!(text.contains("# TYPE direktiv_cmd_command_duration_seconds histogram"));
        METRICS.observe_usage(64 * 1024, 1500, 20);
        let text = METRICS.render();
        assert!(text.contains("# TYPE direktiv_cmd_command_max_rss_bytes histogram"));
        assert!(
            text.contains("direktiv_cmd_command_user_cpu_seconds_sum 1.5"),
            "{text}"
        );
        assert!(
            text.contains("direktiv_cmd_command_system_cpu_seconds_sum 0.02"),
            "{text}"
        );
        assert!(text.contains("direktiv_cmd_log_lines_total"));
        assert!(text.ends_with("# EOF\n"));
    }
}
