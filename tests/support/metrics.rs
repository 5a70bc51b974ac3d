//! The runner's `/metrics`, read the way a test needs it: a metric that is not exported fails
//! the test, so a renamed or removed metric can never read as zero.

use super::runner::Runner;
use super::within;

/// One scrape of `/metrics`.
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Scrapes the runner's `/metrics` (200 required).
    pub async fn scrape(runner: &Runner) -> Metrics {
        let reply = within(super::PATIENCE, "GET /metrics", runner.get("/metrics")).await;
        assert_eq!(reply.status, 200, "GET /metrics: {reply:?}");
        Metrics { text: reply.text }
    }

    /// The sum of every sample of `name` (all label sets); panics when there is none.
    #[track_caller]
    pub fn sum(&self, name: &str) -> f64 {
        let values = self.samples(name, |_| true);
        assert!(!values.is_empty(), "/metrics has no {name}:\n{}", self.text);
        values.iter().sum()
    }

    /// The sample of `name` whose labels contain `label` (e.g. `stream="stdout"`); panics when
    /// there is none.
    #[track_caller]
    pub fn labelled(&self, name: &str, label: &str) -> f64 {
        let values = self.samples(name, |labels| labels.contains(label));
        match values.as_slice() {
            [value] => *value,
            _ => panic!(
                "/metrics has {} samples of {name} with {label}:\n{}",
                values.len(),
                self.text
            ),
        }
    }

    /// The values of `name`'s samples (`name 3` or `name{labels} 3`) whose labels pass `keep`.
    fn samples(&self, name: &str, keep: impl Fn(&str) -> bool) -> Vec<f64> {
        self.text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let (labels, value) = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                keep(labels).then(|| value.trim().parse().ok())?
            })
            .collect()
    }
}
