//! The instant a command with a timeout will be stopped, both for the runner's own timer and
//! for the command itself (`DIREKTIV_DEADLINE`, RFC 3339 in UTC), so a script can budget its
//! work as it would under Lambda's or OpenWhisk's deadline.

use std::time::{Duration, Instant, SystemTime};

/// One deadline read from both clocks at the same moment: the monotonic instant the runner
/// waits for, and the wall-clock time the command is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    instant: Instant,
    wall: SystemTime,
}

impl Deadline {
    /// The deadline `timeout` from now; `None` when it cannot be represented.
    pub fn after(timeout: Duration) -> Option<Deadline> {
        Self::from(Instant::now(), SystemTime::now(), timeout)
    }

    fn from(now: Instant, wall_now: SystemTime, timeout: Duration) -> Option<Deadline> {
        Some(Deadline {
            instant: now.checked_add(timeout)?,
            wall: wall_now.checked_add(timeout)?,
        })
    }

    /// When the runner stops the command.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The deadline as the command sees it: RFC 3339 in UTC with milliseconds
    /// (`2026-12-01T12:00:05.250Z`). `None` for a time RFC 3339 cannot show (before 1970 on a
    /// badly set clock, or after the year 9999): the command then gets no variable rather
    /// than a wrong one.
    pub fn rfc3339(&self) -> Option<String> {
        use std::fmt::Write;
        self.wall.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let mut text = String::with_capacity(24);
        write!(text, "{}", humantime::format_rfc3339_millis(self.wall)).ok()?;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_timeout_from_now_in_utc() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_126_400);
        let deadline = Deadline::from(Instant::now(), epoch, Duration::from_millis(5_250)).unwrap();
        assert_eq!(
            deadline.rfc3339().as_deref(),
            Some("2026-12-01T12:00:05.250Z")
        );
    }

    #[test]
    fn both_clocks_move_by_the_timeout() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let timeout = Duration::from_secs(90);
        let deadline = Deadline::from(now, wall, timeout).unwrap();
        assert_eq!(deadline.instant() - now, timeout);
        let shown = humantime::parse_rfc3339(&deadline.rfc3339().unwrap()).unwrap();
        let delta = shown.duration_since(wall).unwrap();
        // Milliseconds are shown truncated.
        assert!(
            delta <= timeout && timeout - delta < Duration::from_millis(1),
            "{delta:?}"
        );
    }

    #[test]
    fn unrepresentable_deadlines_are_absent_not_wrong() {
        assert_eq!(Deadline::after(Duration::MAX), None);
        let far = Deadline::from(
            Instant::now(),
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(300_000_000_000),
        )
        .unwrap();
        assert_eq!(far.rfc3339(), None, "after the year 9999");
        let before_epoch = Deadline::from(
            Instant::now(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(10),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(before_epoch.rfc3339(), None);
    }
}
