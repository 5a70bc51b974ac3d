//! The secrets of every request in flight, so that each is masked in every request's output.
//!
//! Requests running at the same time share the container's uid: a command can read another
//! request's environment through /proc and print it. So each request masks, besides its own
//! secrets and the container's, those of every request that ran beside it, including requests
//! that ended while it still ran (a command may have read a value before its request ended and
//! print it later). Those are kept within a bound (`MAX_ENDED`, `MAX_ENDED_BYTES`), oldest
//! dropped first.
//!
//! The invariant, kept under one lock: every member's snapshot holds the container's segments,
//! its own, and those of every member that joined while it was a member (as they are now,
//! or as they were when it left), minus ended ones past the bound. Updates are cheap: segments
//! are shared (`Arc`), never rebuilt here, and a member's snapshot is a list of them.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use super::segment::Segment;
use super::snapshot::Snapshot;
use super::MAX_PATTERN_BYTES;

/// Most requests that ended whose secrets a running request still masks.
const MAX_ENDED: usize = 16;

/// Most bytes of patterns of ended requests a running request still masks.
const MAX_ENDED_BYTES: usize = MAX_PATTERN_BYTES;

/// The process's registry: its container secrets, its requests in flight.
#[derive(Debug, Default)]
pub struct Registry {
    /// The container's own environment, secret by the name rule; set once at start.
    container: Vec<Arc<Segment>>,
    members: Mutex<Vec<Arc<Member>>>,
    /// The container's secrets and those of every member: what the runner's own log lines and
    /// requests refused before they ran are masked with.
    everything: RwLock<Arc<Snapshot>>,
    /// Numbers members.
    next_id: std::sync::atomic::AtomicU64,
}

/// One request's place in the registry.
#[derive(Debug)]
pub(super) struct Member {
    id: u64,
    /// Changed only with the registry's member list locked.
    view: Mutex<View>,
    /// The snapshot of `view`, read without waiting for the registry.
    current: RwLock<Arc<Snapshot>>,
}

/// What one member masks.
#[derive(Debug, Default)]
struct View {
    own: Vec<Arc<Segment>>,
    /// The segments of the other members, in the order they joined.
    others: Vec<Other>,
    /// Set when the member declared more than it can mask: nothing of its output is shown.
    withhold: bool,
}

#[derive(Debug)]
struct Other {
    id: u64,
    segments: Vec<Arc<Segment>>,
    ended: bool,
}

static GLOBAL: OnceLock<Arc<Registry>> = OnceLock::new();

impl Registry {
    /// A registry whose every snapshot masks the container's `secrets` too.
    pub(super) fn with_container(container: Vec<Arc<Segment>>) -> Registry {
        let registry = Registry {
            container,
            ..Registry::default()
        };
        registry.refresh_everything(&registry.lock());
        registry
    }

    /// The process's registry (one with no container secrets until `install` set one).
    pub fn global() -> &'static Arc<Registry> {
        GLOBAL.get_or_init(Arc::default)
    }

    /// Makes `registry` the process's registry; false when one was already in use.
    pub(super) fn install(registry: Registry) -> bool {
        GLOBAL.set(Arc::new(registry)).is_ok()
    }

    /// The container's secrets and those of every request in flight.
    pub fn everything(&self) -> Arc<Snapshot> {
        Arc::clone(&crate::sync::read(&self.everything))
    }

    /// `everything`, and `own` segments besides.
    pub(super) fn everything_and(&self, own: &[Arc<Segment>]) -> Snapshot {
        let members = self.lock();
        let mut segments = self.container.clone();
        for member in members.iter() {
            segments.extend(crate::sync::lock(&member.view).own.iter().cloned());
        }
        segments.extend(own.iter().cloned());
        Snapshot::new(segments, false)
    }

    /// Adds a member with its own segments; from now on each member masks the others'.
    pub(super) fn join(&self, own: Vec<Arc<Segment>>) -> Arc<Member> {
        let mut members = self.lock();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let others = members
            .iter()
            .map(|member| Other {
                id: member.id,
                segments: crate::sync::lock(&member.view).own.clone(),
                ended: false,
            })
            .collect();
        for member in members.iter() {
            let mut view = crate::sync::lock(&member.view);
            view.others.push(Other {
                id,
                segments: own.clone(),
                ended: false,
            });
            member.publish(&self.container, &view);
        }
        let view = View {
            own,
            others,
            withhold: false,
        };
        let member = Arc::new(Member {
            id,
            current: RwLock::default(),
            view: Mutex::new(View::default()),
        });
        member.publish(&self.container, &view);
        *crate::sync::lock(&member.view) = view;
        members.push(Arc::clone(&member));
        self.refresh_everything(&members);
        member
    }

    /// Replaces a member's own segments (after a declaration), everywhere they are masked.
    pub(super) fn update(&self, member: &Member, own: Vec<Arc<Segment>>, withhold: bool) {
        let members = self.lock();
        {
            let mut view = crate::sync::lock(&member.view);
            view.own.clone_from(&own);
            view.withhold = withhold;
            member.publish(&self.container, &view);
        }
        for other in members.iter().filter(|other| other.id != member.id) {
            let mut view = crate::sync::lock(&other.view);
            if let Some(entry) = view.others.iter_mut().find(|o| o.id == member.id) {
                entry.segments.clone_from(&own);
            }
            other.publish(&self.container, &view);
        }
        self.refresh_everything(&members);
    }

    /// Removes a member. The others go on masking its secrets while they run, within bounds.
    pub(super) fn leave(&self, member: &Member) {
        let mut members = self.lock();
        members.retain(|other| other.id != member.id);
        for other in members.iter() {
            let mut view = crate::sync::lock(&other.view);
            if let Some(entry) = view.others.iter_mut().find(|o| o.id == member.id) {
                entry.ended = true;
            }
            forget_oldest_ended(&mut view.others);
            other.publish(&self.container, &view);
        }
        self.refresh_everything(&members);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Member>>> {
        crate::sync::lock(&self.members)
    }

    fn refresh_everything(&self, members: &[Arc<Member>]) {
        let mut segments = self.container.clone();
        for member in members {
            segments.extend(crate::sync::lock(&member.view).own.iter().cloned());
        }
        *crate::sync::write(&self.everything) = Arc::new(Snapshot::new(segments, false));
    }
}

impl Member {
    /// The member's snapshot as it is now.
    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&crate::sync::read(&self.current))
    }

    /// Replaces the snapshot with one of `view`.
    fn publish(&self, container: &[Arc<Segment>], view: &View) {
        let mut segments = container.to_vec();
        segments.extend(view.own.iter().cloned());
        for other in &view.others {
            segments.extend(other.segments.iter().cloned());
        }
        *crate::sync::write(&self.current) = Arc::new(Snapshot::new(segments, view.withhold));
    }
}

/// Drops the segments of the oldest ended members while more than the bounds are kept.
fn forget_oldest_ended(others: &mut Vec<Other>) {
    let bytes = |other: &Other| -> usize { other.segments.iter().map(|s| s.pattern_bytes()).sum() };
    loop {
        let ended: Vec<usize> = (0..others.len()).filter(|&i| others[i].ended).collect();
        let ended_bytes: usize = ended.iter().map(|&i| bytes(&others[i])).sum();
        match ended.first() {
            Some(&oldest) if ended.len() > MAX_ENDED || ended_bytes > MAX_ENDED_BYTES => {
                others.remove(oldest);
            }
            _ => return,
        }
    }
}
