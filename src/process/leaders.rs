//! The runner's live command leaders, each with the request that started it: what a look
//! through /proc for one request's mark may pass over without reading anything.
//!
//! A leader is noted once it has started and forgotten just before it is reaped. While it is
//! noted its zombie or the process itself holds its number, so no other process can have it:
//! a number noted for another request is that request's leader, which carries that request's
//! mark (set last, over the request's own `env`) and is stopped with that request's group.
//! Where no cgroup can be made, the runner's own commands are most of what /proc shows (all of
//! it in a pod), so a look skips nearly every `stat` and environment read this way.

use std::sync::Mutex;

/// (leader pid, the serial of the request that started it): as many as commands run at once.
static LEADERS: Mutex<Vec<(i32, u64)>> = Mutex::new(Vec::new());

/// Notes `pid`, just started, as a leader of request `request`.
pub(super) fn started(pid: i32, request: u64) {
    let mut leaders = crate::sync::lock(&LEADERS);
    leaders.retain(|&(noted, _)| noted != pid);
    leaders.push((pid, request));
}

/// Forgets `pid`: it is about to be reaped, after which its number is free again. Must come
/// before the reap: a number may be skipped only while its leader holds it.
pub(super) fn reaping(pid: i32) {
    crate::sync::lock(&LEADERS).retain(|&(noted, _)| noted != pid);
}

/// The leaders of requests other than `request`, now.
pub(super) fn of_other_requests(request: u64) -> Vec<i32> {
    crate::sync::lock(&LEADERS)
        .iter()
        .filter(|&&(_, by)| by != request)
        .map(|&(pid, _)| pid)
        .collect()
}

/// Whether `pid` is, now, the leader of a request other than `request`. A number that was
/// passed over because it was, and no longer is, may have been taken by a new process since:
/// it is looked at after all.
pub(super) fn held_by_other(pid: i32, request: u64) -> bool {
    crate::sync::lock(&LEADERS)
        .iter()
        .any(|&(noted, by)| noted == pid && by != request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_counts_for_other_requests_until_it_is_reaped() {
        // Numbers no process of the tests has (above the largest pid_max).
        let (mine, theirs) = (i32::MAX - 10, i32::MAX - 11);
        let (me, them) = (u64::MAX - 1, u64::MAX - 2);
        started(mine, me);
        started(theirs, them);
        let others = of_other_requests(me);
        assert!(
            others.contains(&theirs) && !others.contains(&mine),
            "{others:?}"
        );
        assert!(held_by_other(theirs, me));
        assert!(!held_by_other(mine, me));
        reaping(theirs);
        assert!(!of_other_requests(me).contains(&theirs));
        assert!(!held_by_other(theirs, me));
        reaping(mine);
        assert!(!of_other_requests(them).contains(&mine));
    }
}
