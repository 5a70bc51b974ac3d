//! The runner's one lock-poison policy: recover.
//!
//! A mutex is poisoned when a thread panicked while holding it. Every lock in the runner guards
//! bookkeeping that stays consistent between statements (a count, a map of running requests, a
//! queue of log lines, an output capture), so the data is still usable; refusing it would leak
//! an admission slot, lose log lines or hang a request instead.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, taking the data over from a panicked holder if need be.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `lock`, taking the data over from a panicked writer if need be.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `lock`, taking the data over from a panicked holder if need be.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
