//! `CMD_ISOLATION=uid`: a user per concurrency slot. A request takes a free slot's uid for its
//! commands (the child switches to it before exec) and hands its folder to that user; the slot
//! is free again when the request ends.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::Failure;

/// The uid (and gid) of the first concurrency slot's commands under `CMD_ISOLATION=uid`: far
/// above the ids an image's own users have.
pub const FIRST_SLOT_UID: u32 = 100_000;

/// A concurrency slot's user, taken by one request; the slot is free again on drop.
pub(crate) struct SlotUser<'a> {
    users: &'a Mutex<Vec<bool>>,
    slot: usize,
    uid: u32,
}

impl<'a> SlotUser<'a> {
    /// The first free slot of `users` (which slots are taken), taken until the user drops.
    /// Admission lets in no more requests than slots; one more is never refused a user.
    pub(super) fn claim(users: &'a Mutex<Vec<bool>>) -> SlotUser<'a> {
        let mut taken = users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = match taken.iter().position(|used| !used) {
            Some(slot) => slot,
            None => {
                taken.push(false);
                taken.len() - 1
            }
        };
        taken[slot] = true;
        let uid = FIRST_SLOT_UID + u32::try_from(slot).unwrap_or(u32::MAX - FIRST_SLOT_UID);
        SlotUser { users, slot, uid }
    }

    /// The uid, also the gid, the request's commands run as.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

/// Gives a request's folder to the user `uid`: every file in it (the input files, the `out/`
/// folders, what the sidecar placed) and the folder itself, closed to other users. Blocking:
/// called in the trip that prepares the request's temp dir.
pub(crate) fn hand_over(folder: &Path, uid: u32) -> Result<(), Failure> {
    give(folder, uid).map_err(|e| Failure::io("cannot hand the temp dir to the request's user", e))
}

impl Drop for SlotUser<'_> {
    fn drop(&mut self) {
        let mut taken = self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(used) = taken.get_mut(self.slot) {
            *used = false;
        }
    }
}

/// Chowns `folder` and everything in it to `id`:`id` (never following a symbolic link), and
/// closes the folder to other users.
fn give(folder: &Path, id: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let owner = Some(id);
    for entry in walk(folder)? {
        std::os::unix::fs::lchown(&entry, owner, owner)?;
    }
    std::os::unix::fs::lchown(folder, owner, owner)?;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
}

/// Every path beneath `folder`, depth first, without following symbolic links.
fn walk(folder: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_in_flight_has_its_own_slot_and_a_freed_slot_is_taken_again() {
        let users = Mutex::new(vec![false; 2]);
        let first = SlotUser::claim(&users);
        let second = SlotUser::claim(&users);
        assert_eq!(
            (first.uid(), second.uid()),
            (FIRST_SLOT_UID, FIRST_SLOT_UID + 1)
        );
        drop(first);
        assert_eq!(SlotUser::claim(&users).uid(), FIRST_SLOT_UID);
        assert_eq!(second.uid(), FIRST_SLOT_UID + 1);
    }
}
