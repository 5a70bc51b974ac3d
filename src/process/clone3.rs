//! Creating a child with clone3, which two flags make worth it:
//! - `CLONE_INTO_CGROUP` (Linux ≥ 5.7): the child is created inside the request's cgroup. No
//!   process moves, so there is no task migration, whose lock's writer waits for an RCU grace
//!   period (5–20 ms on an idle machine): every move into a cgroup after a quiet moment paid
//!   that.
//! - `CLONE_CLEAR_SIGHAND` (Linux ≥ 5.5): the kernel sets every signal the runner handles back
//!   to its default in the child, so the child resets only those the runner ignores
//!   (`signals::ToDefault`): one `sigaction` instead of some sixty before every exec.
//!
//! Used where the kernel and the seccomp profile allow it; the runner stops trying after the
//! first refusal (Docker's default profile answers ENOSYS, as for a kernel without clone3), and
//! its children are made with `clone` and move themselves in instead.

use std::ffi::c_void;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::stack::PooledStack;

static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether to try: on x86-64 (the one architecture with the entry code below) until the kernel
/// refused once.
pub(super) fn usable() -> bool {
    cfg!(target_arch = "x86_64") && !REFUSED.load(Ordering::Relaxed)
}

/// Notes a refused clone3: when the kernel (or seccomp) does not offer it here, rather than
/// refusing it for this one child, it is not tried again. Whether it was such a refusal.
pub(super) fn refused(error: &io::Error) -> bool {
    let unsupported = matches!(
        error.raw_os_error(),
        Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP)
    );
    if unsupported && !REFUSED.swap(true, Ordering::Relaxed) {
        tracing::debug!(%error, "commands are made with clone; they move into their cgroup");
    }
    unsupported
}

/// The kernel's `struct clone_args` as far as `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes): the
/// kernel reads as many fields as the size it is given says, all 64-bit.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

/// `CLONE_CLEAR_SIGHAND` and `CLONE_INTO_CGROUP` of the kernel's `<linux/sched.h>`: clone3-only
/// flags past 32 bits (the libc crate's constants of them are `int`s that overflow).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `libc::clone(child_main, stack top, CLONE_VM | CLONE_VFORK | SIGCHLD, plan)` with the
/// runner's signal handlers cleared in the child (`CLONE_CLEAR_SIGHAND`) and, given a cgroup
/// `dir`, the child created in it: the process id, or -1 with errno set. Unless `pid_slot` is
/// null, the kernel writes the child's id there as it creates it (`CLONE_PARENT_SETTID`).
///
/// # Safety
/// As for that `libc::clone` call (see `clone_child`): `plan` must stay valid and unchanged
/// until the child has exec'd or exited, `stack` must be used by nothing else, and `pid_slot`
/// must be null or a valid, aligned `pid_t` for the kernel to write.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn clone_into(
    stack: &PooledStack,
    dir: Option<BorrowedFd<'_>>,
    plan: *mut c_void,
    pid_slot: *mut libc::pid_t,
) -> libc::c_int {
    use std::os::fd::AsRawFd;

    let (stack_base, stack_size) = stack.bounds();
    let settid = if pid_slot.is_null() {
        0
    } else {
        libc::CLONE_PARENT_SETTID as u64
    };
    let (into_cgroup, cgroup) = match dir {
        Some(dir) => (CLONE_INTO_CGROUP, dir.as_raw_fd() as u64),
        None => (0, 0),
    };
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64
            | CLONE_CLEAR_SIGHAND
            | into_cgroup
            | settid,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack_base,
        stack_size,
        cgroup,
        pidfd: 0,
        child_tid: 0,
        parent_tid: pid_slot as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
    };
    let entry: extern "C" fn(*mut c_void) -> libc::c_int = super::child::child_main;
    let ret: i64;
    // SAFETY: the clone3 system call. In this thread it returns the child's id or -errno
    // and changes nothing else but rcx and r11, which the syscall instruction clobbers
    // (declared). The child returns from it with every register as here except rax (0)
    // and the stack pointer, which the kernel set to the top of `stack` (page-aligned, so
    // 16-byte aligned as a call needs): there it calls `entry(plan)` — r13 and r12,
    // which the kernel copied — and never comes back, since `child_main` execs or
    // `_exit`s; were it to return, the child would exit at once. The child never touches
    // this thread's stack (`nostack` holds for it), and CLONE_VFORK keeps this thread
    // suspended until the child has exec'd or exited. `args` lives across the call.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(&args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") plan,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    match i32::try_from(ret) {
        Ok(pid) if pid >= 0 => pid,
        _ => {
            let errno = i32::try_from(-ret).unwrap_or(libc::EINVAL);
            // SAFETY: errno is this thread's; writing it is what libc's wrappers do.
            unsafe { *libc::__errno_location() = errno };
            -1
        }
    }
}

/// Never called: `usable` is false here.
///
/// # Safety
/// None needed; it makes no child.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn clone_into(
    _stack: &PooledStack,
    _dir: Option<BorrowedFd<'_>>,
    _plan: *mut c_void,
    _pid_slot: *mut libc::pid_t,
) -> libc::c_int {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}
