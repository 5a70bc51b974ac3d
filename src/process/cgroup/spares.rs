//! Emptied cgroups kept for reuse, of one kind each (request cgroups, `pool`; commands' v1
//! memory cgroups, `memory`, checked by `memory_pool`): a bounded list, a taker that checks
//! each one it pops before giving it out, and none kept once the runner is exiting.

use std::sync::Mutex;

use crate::sync::lock;

/// How many emptied cgroups of one kind are kept for reuse; more are removed.
const SPARE_MAX: usize = 16;

/// Kept cgroups of one kind. `None` once the runner is exiting: from then on an emptied one is
/// removed, not kept.
pub(super) struct Spares<T>(Mutex<Option<Vec<T>>>);

impl<T> Spares<T> {
    pub(super) const fn new() -> Self {
        Spares(Mutex::new(Some(Vec::new())))
    }

    /// The last kept one that `fit` makes ready (limited for its next command); those it
    /// refuses, with why, go to `discard`.
    pub(super) fn take(
        &self,
        mut fit: impl FnMut(&mut T) -> Result<(), String>,
        discard: impl Fn(T, String),
    ) -> Option<T> {
        loop {
            let mut kept = lock(&self.0).as_mut()?.pop()?;
            match fit(&mut kept) {
                Ok(()) => return Some(kept),
                Err(why) => discard(kept, why),
            }
        }
    }

    /// Keeps an emptied one for later; hands it back when it cannot be kept (enough are, or the
    /// runner is exiting).
    pub(super) fn give_back(&self, item: T) -> Result<(), T> {
        let mut spare = lock(&self.0);
        match spare.as_mut().filter(|spare| spare.len() < SPARE_MAX) {
            Some(spare) => {
                spare.push(item);
                Ok(())
            }
            None => Err(item),
        }
    }

    /// The kept ones, for removal at exit; none is kept from then on.
    pub(super) fn drain(&self) -> Vec<T> {
        lock(&self.0).take().unwrap_or_default()
    }
}
