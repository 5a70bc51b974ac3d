//! A command's `retry`: run it again while its failure is one worth another try, waiting
//! `delay` × `backoff`^n between attempts. Which failures count is Direktiv's own rule for
//! `catch` and `retries`: unanchored regular expressions over the error code.

use std::time::Duration;

use regex_lite::Regex;

use crate::error::Failure;

/// The codes never retried by default: nothing about them changes by trying again (the
/// request itself is wrong, the executable is missing or refused), or the request is ending.
const NOT_BY_DEFAULT: [&str; 4] = ["cmd.cancelled", "cmd.input", "cmd.denied", "cmd.notfound"];

/// Longest wait between two attempts, whatever `backoff` makes of `delay`.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a command is retried.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The codes retried; `None`: every failure but `NOT_BY_DEFAULT`.
    pub on: Option<Vec<Regex>>,
    /// The wait before the second attempt.
    pub delay: Duration,
    /// What each further wait is multiplied by (at least 1).
    pub backoff: f64,
}

/// Equal when written the same (the patterns compared as written).
impl PartialEq for Retry {
    fn eq(&self, other: &Self) -> bool {
        self.attempts == other.attempts
            && patterns(&self.on) == patterns(&other.on)
            && self.delay == other.delay
            && self.backoff == other.backoff
    }
}

/// The patterns as written.
fn patterns(on: &Option<Vec<Regex>>) -> Option<Vec<&str>> {
    on.as_ref().map(|on| on.iter().map(Regex::as_str).collect())
}

/// `backoff` is finite (checked when read), so equality is an equivalence.
impl Eq for Retry {}

impl Retry {
    /// The wait before attempt `next` (2 for the first retry), when the attempt that just
    /// ended with `failure` was attempt `next - 1` and another is wanted.
    pub fn wait_before(&self, next: u32, failure: &Failure) -> Option<Duration> {
        if next > self.attempts || !self.retries(failure) {
            return None;
        }
        let factor = self
            .backoff
            .powi(i32::try_from(next - 2).unwrap_or(i32::MAX));
        let wait = Duration::try_from_secs_f64(self.delay.as_secs_f64() * factor)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT);
        Some(wait)
    }

    /// Whether a failure with this code is tried again. A cancelled request never is: it is
    /// ending.
    fn retries(&self, failure: &Failure) -> bool {
        let code = failure.code();
        if matches!(failure, Failure::Cancelled { .. }) {
            return false;
        }
        match &self.on {
            Some(patterns) => patterns.iter().any(|pattern| pattern.is_match(&code)),
            None => !NOT_BY_DEFAULT.contains(&code.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(on: Option<&[&str]>) -> Retry {
        Retry {
            attempts: 4,
            on: on.map(|on| on.iter().map(|p| Regex::new(p).unwrap()).collect()),
            delay: Duration::from_secs(2),
            backoff: 2.0,
        }
    }

    #[test]
    fn waits_grow_by_the_backoff_up_to_the_attempts() {
        let exit = Failure::Exit { code: 75 };
        let retry = retry(None);
        assert_eq!(retry.wait_before(2, &exit), Some(Duration::from_secs(2)));
        assert_eq!(retry.wait_before(3, &exit), Some(Duration::from_secs(4)));
        assert_eq!(retry.wait_before(4, &exit), Some(Duration::from_secs(8)));
        assert_eq!(retry.wait_before(5, &exit), None);
        let huge = Retry {
            backoff: 1e300,
            ..retry
        };
        assert_eq!(huge.wait_before(4, &exit), Some(MAX_WAIT));
    }

    #[test]
    fn which_failures_are_retried() {
        let by_default = retry(None);
        assert!(by_default.retries(&Failure::Exit { code: 1 }));
        assert!(by_default.retries(&Failure::Timeout {
            after: Duration::from_secs(1)
        }));
        for never in [
            Failure::input("x"),
            Failure::NotFound("x".into()),
            Failure::Denied("x".into()),
            Failure::Cancelled {
                reason: crate::error::CancelReason::Delete,
            },
        ] {
            assert!(!by_default.retries(&never), "{never:?}");
        }
        let chosen = retry(Some(&[r"cmd\.exit\.75", "timeout"]));
        assert!(chosen.retries(&Failure::Exit { code: 75 }));
        assert!(
            chosen.retries(&Failure::Exit { code: 750 }),
            "unanchored, as Direktiv"
        );
        assert!(chosen.retries(&Failure::Timeout {
            after: Duration::from_secs(1)
        }));
        assert!(!chosen.retries(&Failure::Exit { code: 1 }));
        let everything = retry(Some(&[".*"]));
        assert!(!everything.retries(&Failure::Cancelled {
            reason: crate::error::CancelReason::Delete
        }));
        assert!(everything.retries(&Failure::input("x")));
    }
}
