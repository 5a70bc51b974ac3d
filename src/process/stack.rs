//! The stacks children run on between their clone and their exec, kept in a small pool.
//!
//! Mapping a stack and unmapping it again (which makes every other CPU the runner ran on flush
//! its TLB) cost more per start than the rest of the parent's part of it, so a stack a child is
//! done with (it has exec'd or exited: CLONE_VFORK) is kept for the next start. A stack holds
//! nothing between uses: what the last child left on it is never read.

use std::ffi::c_void;
use std::io;
use std::sync::Mutex;

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

use crate::sync::lock;

/// The child's stack, above a guard page. What runs on it is a few frames of system call
/// wrappers, well under a page; glibc gives its posix_spawn child 32 KiB plus room for the
/// argument pointers, which here are prepared on the heap instead.
const STACK_SIZE: usize = 64 * 1024;

/// How many child stacks are kept for later starts: about as many as start at once.
const SPARE_STACKS: usize = 8;

/// Stacks of children that have exec'd or exited, ready for the next start.
static STACK_POOL: Mutex<Vec<ChildStack>> = Mutex::new(Vec::new());

/// An anonymous mapping whose lowest page is a guard (no access), so an overflow faults instead
/// of writing into other memory. Unmapped on drop.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

// SAFETY: a `ChildStack` is the only owner of its mapping, which belongs to no thread: moving
// it to another thread (through the pool) moves that ownership and nothing else. Its pointer
// is never shared while the value is used.
unsafe impl Send for ChildStack {}

impl ChildStack {
    fn new() -> io::Result<Self> {
        let guard = rustix::param::page_size();
        let len = STACK_SIZE + guard;
        // SAFETY: a new private anonymous mapping at an address the kernel chooses: it
        // overlaps no memory in use.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK,
            )
        }?;
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made, which only `stack` refers to.
        unsafe { rustix::mm::mprotect(base, guard, MprotectFlags::empty()) }?;
        Ok(stack)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once, here; the child that ran on it
        // has exec'd or exited (CLONE_VFORK), so nothing uses it any more.
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// A child stack taken from the pool (or mapped now), given back when dropped. Drop it only
/// once the child that used it has exec'd or exited.
pub(super) struct PooledStack(Option<ChildStack>);

impl PooledStack {
    pub(super) fn take() -> io::Result<Self> {
        let spare = lock(&STACK_POOL).pop();
        Ok(PooledStack(Some(match spare {
            Some(stack) => stack,
            None => ChildStack::new()?,
        })))
    }

    /// The initial stack pointer: the stack grows down from the end of the mapping
    /// (page-aligned, so aligned for every ABI).
    pub(super) fn top(&self) -> *mut c_void {
        self.0.as_ref().map_or(std::ptr::null_mut(), |stack| {
            stack.base.wrapping_byte_add(stack.len)
        })
    }

    /// The lowest address and the size of the whole mapping, guard page included (clone3
    /// takes the stack that way and starts the child at its top).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn bounds(&self) -> (u64, u64) {
        self.0
            .as_ref()
            .map_or((0, 0), |stack| (stack.base as u64, stack.len as u64))
    }
}

impl Drop for PooledStack {
    /// Runs only once the child that used the stack has exec'd or exited (CLONE_VFORK), so
    /// the next child may have it.
    fn drop(&mut self) {
        let Some(stack) = self.0.take() else {
            return;
        };
        let mut pool = lock(&STACK_POOL);
        if pool.len() < SPARE_STACKS {
            pool.push(stack);
            return;
        }
        drop(pool);
        drop(stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_starts_at_the_top_of_a_stack_above_its_guard_page() {
        let stack = PooledStack::take().unwrap();
        let (base, len) = stack.bounds();
        assert_eq!(len as usize, STACK_SIZE + rustix::param::page_size());
        assert_eq!(stack.top() as u64, base + len);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let guard = format!(
            "{base:x}-{:x} ---p",
            base + rustix::param::page_size() as u64
        );
        assert!(maps.contains(&guard), "no guard page {guard} in\n{maps}");
    }
}
