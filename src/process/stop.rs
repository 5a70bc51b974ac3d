//! The one way the runner stops processes: SIGTERM, a grace period for them to end, SIGKILL for
//! whatever is left, and a bounded wait for that to take effect. A command's process group
//! (`group`) and a request's processes that left it (`tracker`) are stopped by it alike, so
//! both get the same grace (`CMD_KILL_GRACE`) and the same patience after SIGKILL; what differs
//! is only how each finds and signals its members (`Members`).

use std::time::Duration;

use rustix::process::Signal;
use tokio::time::Instant;

/// How long what is left gets to disappear after SIGKILL: it takes effect within milliseconds;
/// this only bounds the wait for processes stuck in the kernel (a hung NFS read).
const KILLED_WAIT: Duration = Duration::from_secs(2);

/// Processes the policy stops.
pub(crate) trait Members {
    /// Sends `signal` to the live members that have not had it yet (SIGKILL: to every one,
    /// each time) and says how many are alive; `None` when they could not be looked at, which
    /// ends the stop.
    async fn signal(&mut self, signal: Signal) -> Option<usize>;

    /// Waits before the next look, at most `limit`: a short poll, or less when the members
    /// can announce their end.
    async fn pause(&self, limit: Duration);
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// None was (or is) left after SIGTERM and the grace period.
    Gone,
    /// Gone after SIGKILL.
    Killed,
    /// Some were still there after SIGKILL and the wait for it.
    Stuck,
    /// They could not be looked at.
    Unknown,
}

/// SIGTERM, `grace`, SIGKILL, a bounded wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopPolicy {
    grace: Duration,
    killed_wait: Duration,
}

impl StopPolicy {
    /// The policy with `grace` between SIGTERM and SIGKILL (`CMD_KILL_GRACE`).
    pub(crate) fn with_grace(grace: Duration) -> Self {
        StopPolicy {
            grace,
            killed_wait: KILLED_WAIT,
        }
    }

    /// Stops `members`; returns once none is left, or the waits are over.
    pub(crate) async fn stop(&self, members: &mut impl Members) -> Stopped {
        if let Some(ended) = phase(members, Signal::TERM, self.grace).await {
            return ended;
        }
        phase(members, Signal::KILL, self.killed_wait)
            .await
            .unwrap_or(Stopped::Stuck)
    }
}

/// Signals `members` and looks again until none is left (`Some`) or `within` has passed
/// (`None`).
async fn phase(members: &mut impl Members, signal: Signal, within: Duration) -> Option<Stopped> {
    let until = Instant::now() + within;
    loop {
        match members.signal(signal).await {
            None => return Some(Stopped::Unknown),
            Some(0) if signal == Signal::KILL => return Some(Stopped::Killed),
            Some(0) => return Some(Stopped::Gone),
            Some(_) => {}
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        members.pause(until - now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members that die on the n-th signal of a kind (never: `None`), recording what they got.
    struct Scripted {
        die_on_term: Option<usize>,
        die_on_kill: Option<usize>,
        got: Vec<(Signal, Duration)>,
        started: Instant,
    }

    impl Scripted {
        fn new(die_on_term: Option<usize>, die_on_kill: Option<usize>) -> Self {
            Scripted {
                die_on_term,
                die_on_kill,
                got: Vec::new(),
                started: Instant::now(),
            }
        }

        fn count(&self, signal: Signal) -> usize {
            self.got.iter().filter(|(s, _)| *s == signal).count()
        }
    }

    impl Members for Scripted {
        async fn signal(&mut self, signal: Signal) -> Option<usize> {
            self.got.push((signal, self.started.elapsed()));
            let dies_after = match signal {
                Signal::TERM => self.die_on_term,
                _ => self.die_on_kill,
            };
            let dead = dies_after.is_some_and(|n| self.count(signal) > n);
            Some(if dead { 0 } else { 3 })
        }

        async fn pause(&self, limit: Duration) {
            tokio::time::sleep(limit.min(Duration::from_millis(5))).await;
        }
    }

    fn policy() -> StopPolicy {
        StopPolicy {
            grace: Duration::from_millis(100),
            killed_wait: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn members_that_end_on_sigterm_never_get_sigkill() {
        let mut members = Scripted::new(Some(2), None);
        assert_eq!(policy().stop(&mut members).await, Stopped::Gone);
        assert_eq!(members.count(Signal::KILL), 0);
        assert_eq!(members.count(Signal::TERM), 3, "looked at until gone");
    }

    #[tokio::test]
    async fn sigkill_comes_after_the_grace_period() {
        let mut members = Scripted::new(None, Some(1));
        assert_eq!(policy().stop(&mut members).await, Stopped::Killed);
        let first_kill = members
            .got
            .iter()
            .find(|(s, _)| *s == Signal::KILL)
            .unwrap()
            .1;
        assert!(first_kill >= Duration::from_millis(100), "{first_kill:?}");
        assert_eq!(members.count(Signal::KILL), 2);
    }

    #[tokio::test]
    async fn members_that_outlive_sigkill_are_given_up_on_in_time() {
        let mut members = Scripted::new(None, None);
        let started = Instant::now();
        assert_eq!(policy().stop(&mut members).await, Stopped::Stuck);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
