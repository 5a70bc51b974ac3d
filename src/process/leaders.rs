//! The runner's live command leaders, each with the request that started it: what a look
//! through /proc for one request's mark may pass over without reading anything.
//!
//! A leader is noted once it has started and forgotten just before it is reaped. While it is
//! noted its zombie or the process itself holds its number, so no other process can have it:
//! a number noted for another request is that request's leader, which carries that request's
//! mark (set last, over the request's own `env`) and is stopped with that request's group.
//! Where no cgroup can be made, the runner's own commands are most of what /proc shows (all of
//! it in a pod), so a look skips nearly every `stat` and environment read this way.
//!
//! A child being started is passed over too, from the moment it exists: the kernel writes its
//! number into a `Starting` slot of its request as it creates it (`CLONE_PARENT_SETTID`), so
//! neither the child before its exec (which shows the runner's own environment) nor the command
//! in the moment before it is noted as a leader costs a look. A slot forgets its number before a
//! child that did not start is reaped, and is given up only once the leader is noted.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
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

/// The leaders of requests other than `request`, now, and the children they are starting.
pub(super) fn of_other_requests(request: u64) -> Vec<i32> {
    let mut others: Vec<i32> = crate::sync::lock(&LEADERS)
        .iter()
        .filter(|&&(_, by)| by != request)
        .map(|&(pid, _)| pid)
        .collect();
    others.extend(SLOTS.iter().filter_map(|slot| slot.held_for_other(request)));
    others
}

/// Whether `pid` is, now, the leader of a request other than `request` (or a child one is
/// starting). A number that was passed over because it was, and no longer is, may have been
/// taken by a new process since: it is looked at after all.
pub(super) fn held_by_other(pid: i32, request: u64) -> bool {
    crate::sync::lock(&LEADERS)
        .iter()
        .any(|&(noted, by)| noted == pid && by != request)
        || SLOTS
            .iter()
            .any(|slot| slot.held_for_other(request) == Some(pid))
}

/// Children being started at once, at most: one per command starting. A start that finds
/// every slot taken goes without one (its child is then looked at like any process).
const SLOT_COUNT: usize = 64;

/// Where the kernel writes a child's number as it creates it, for one start.
struct Slot {
    taken: AtomicBool,
    request: AtomicU64,
    /// Written by the kernel (a 4-byte store of the child's pid) while the clone runs; zero
    /// while no child holds it.
    pid: AtomicI32,
}

impl Slot {
    const fn free() -> Slot {
        Slot {
            taken: AtomicBool::new(false),
            request: AtomicU64::new(0),
            pid: AtomicI32::new(0),
        }
    }

    /// The child's number, when the slot holds one for a request other than `request`.
    fn held_for_other(&self, request: u64) -> Option<i32> {
        if !self.taken.load(Ordering::SeqCst) || self.request.load(Ordering::SeqCst) == request {
            return None;
        }
        Some(self.pid.load(Ordering::SeqCst)).filter(|pid| *pid > 0)
    }
}

static SLOTS: [Slot; SLOT_COUNT] = [const { Slot::free() }; SLOT_COUNT];

/// One start's slot: holds the child's number from its creation until it is given up, after
/// the leader was noted (`started`) or the child that did not start was forgotten.
pub(crate) struct Starting(&'static Slot);

impl Starting {
    /// A free slot for a child of `request`, if one is free.
    pub(super) fn claim(request: u64) -> Option<Starting> {
        let slot = SLOTS.iter().find(|slot| {
            slot.taken
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })?;
        slot.pid.store(0, Ordering::SeqCst);
        slot.request.store(request, Ordering::SeqCst);
        Some(Starting(slot))
    }

    /// Where the kernel is to write the child's number (`CLONE_PARENT_SETTID`): a 4-byte,
    /// 4-aligned `pid_t` that stays valid for the program's life (the slots are a static).
    pub(super) fn pid_location(&self) -> *mut libc::pid_t {
        self.0.pid.as_ptr()
    }

    /// Forgets the child's number: before a child that did not start is reaped.
    pub(super) fn forget(&self) {
        self.0.pid.store(0, Ordering::SeqCst);
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        // Forgotten before the slot is free, so a new claim never shows the old number.
        self.forget();
        self.0.taken.store(false, Ordering::SeqCst);
    }
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

    #[test]
    fn a_child_being_started_counts_for_other_requests_until_its_slot_is_given_up() {
        let (me, them) = (u64::MAX - 3, u64::MAX - 4);
        let starting = Starting::claim(them).expect("a free slot");
        let pid = i32::MAX - 12;
        // What the kernel does as it creates the child.
        // SAFETY: the location is a valid, aligned pid_t of a static.
        unsafe { starting.pid_location().write(pid) };
        assert!(of_other_requests(me).contains(&pid));
        assert!(!of_other_requests(them).contains(&pid));
        assert!(held_by_other(pid, me));
        starting.forget();
        assert!(!held_by_other(pid, me));
        // SAFETY: as above.
        unsafe { starting.pid_location().write(pid) };
        drop(starting);
        assert!(!of_other_requests(me).contains(&pid));
    }
}
