//! Starting a command that needs work of ours between fork and exec — resource limits to set,
//! the request's cgroup to join — the way glibc's posix_spawn starts one: a
//! `CLONE_VM | CLONE_VFORK` child on a small stack of its own. It shares the runner's memory
//! (no page tables are copied, no copy-on-write faults follow) and the calling thread waits
//! until it has exec'd or exited.
//!
//! The child is created in the request's cgroup where clone3 allows it (`into_cgroup`). It
//! sets every signal back to its default, leads a new process group, enters the working
//! directory by descriptor, joins the request's cgroup if it was not created there, raises its
//! OOM score, puts the pipes on 0, 1 and 2, sets the limits, unblocks every signal and execs
//! with `execve` — the call posix_spawn makes, so a file without a `#!` line is refused, not
//! run through /bin/sh.
//! A step that fails leaves its errno where the parent reads it once it resumes.
//!
//! Sharing memory with a running process is sound only because of what the child does not do:
//! it runs no signal handler of the runner (every signal stays blocked until every handler has
//! been replaced), takes no lock, allocates nothing, never returns or unwinds into the
//! runner's frames, and reads only data prepared before the clone that nothing changes or
//! frees until the parent resumes. Everything it calls is a system call: rustix's (raw system
//! calls, which return their error instead of writing errno) where rustix has the call, libc's
//! thin wrappers for the others (`rt_sigaction`, `rt_sigprocmask`, `execve`, `_exit`). Those
//! may write errno: the child runs on the calling thread's thread pointer, so that is the
//! suspended caller's errno, which nothing reads after the clone — glibc's own posix_spawn
//! child does the same.

use std::ffi::{c_void, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use linux_raw_sys::general::{kernel_sigaction, kernel_sigset_t};
use linux_raw_sys::signal_macros::{sig_ign, SIG_DFL};
use rustix::io::Errno;
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use rustix::process::{Pid, WaitOptions};

use super::cgroup::CgroupEntry;
use super::oom;
use super::spawn::{null_terminated, ChildEnv};
use crate::limits::RlimitPlan;
use crate::sync::lock;

/// The child's stack, above a guard page. What runs on it is a few frames of system call
/// wrappers, well under a page; glibc gives its posix_spawn child 32 KiB plus room for the
/// argument pointers, which here are prepared on the heap instead.
const STACK_SIZE: usize = 64 * 1024;

/// The exit status of a child whose preparation or exec failed, as posix_spawn's: the parent
/// reaps it and reports the error instead.
const SETUP_FAILED: libc::c_int = 127;

/// Linux's highest signal number (`_NSIG - 1`).
const LAST_SIGNAL: libc::c_int = 64;

/// glibc's own signals (SIGCANCEL and SIGSETXID), which its `sigaction` refuses to change:
/// posix_spawn's child sets them to ignored, and so does this one.
const GLIBC_SIGNALS: [libc::c_int; 2] = [32, 33];

/// What to exec, prepared by `spawn` exactly as for posix_spawn.
pub(super) struct Image<'a> {
    /// The resolved executable.
    pub(super) path: CString,
    /// argv, argv[0] the program as the user named it.
    pub(super) argv: Vec<CString>,
    pub(super) env: ChildEnv,
    /// The working directory, an open folder.
    pub(super) cwd: BorrowedFd<'a>,
}

/// A started child, and whether it joined the request's cgroup before exec.
pub(super) struct Started {
    pub(super) pid: Pid,
    pub(super) joined_cgroup: bool,
}

/// Starts `image` with `limits` set before exec, in the request's cgroup when given; `stdio`
/// become its fds 0, 1 and 2. Where it can, the child is created in the cgroup (clone3);
/// otherwise it moves itself in.
pub(super) fn spawn(
    image: &Image<'_>,
    stdio: [&OwnedFd; 3],
    limits: RlimitPlan,
    cgroup: Option<CgroupEntry<'_>>,
) -> io::Result<Started> {
    if let Some(dir) = cgroup.and_then(|entry| entry.dir) {
        if into_cgroup::usable() {
            match start(image, stdio, limits, Some(Entry::CreatedIn(dir))) {
                Ok(started) => return Ok(started),
                Err(Failed::Setup(error)) => return Err(error),
                // No child was made: the cgroup (or clone3 itself) refused. As when moving in
                // fails, the command runs all the same, moving itself in if it can.
                Err(Failed::Clone(error)) => {
                    if into_cgroup::unsupported(&error) {
                        into_cgroup::give_up(&error);
                    }
                }
            }
        }
    }
    start(
        image,
        stdio,
        limits,
        cgroup.map(|entry| Entry::MovesItself(entry.procs)),
    )
    .map_err(Failed::into_error)
}

/// Why a start failed: no child was made, or the child's setup or exec failed.
enum Failed {
    Clone(io::Error),
    Setup(io::Error),
}

impl Failed {
    fn into_error(self) -> io::Error {
        match self {
            Failed::Clone(error) | Failed::Setup(error) => error,
        }
    }
}

/// How the child gets into the request's cgroup.
#[derive(Clone, Copy)]
enum Entry<'a> {
    /// Created in the cgroup whose directory this is.
    CreatedIn(BorrowedFd<'a>),
    /// Writes `0` to this `cgroup.procs` before exec.
    MovesItself(BorrowedFd<'a>),
}

/// One start: the clone, and the child's setup up to its exec.
fn start(
    image: &Image<'_>,
    stdio: [&OwnedFd; 3],
    limits: RlimitPlan,
    entry: Option<Entry<'_>>,
) -> Result<Started, Failed> {
    // Everything the child reads, owned by this frame until the function returns.
    let argv = null_terminated(&image.argv);
    let envp = image.env.pointers();
    let [stdin, stdout, stderr] = stdio;
    let created_in = match entry {
        Some(Entry::CreatedIn(dir)) => Some(dir),
        _ => None,
    };
    let setup = Setup {
        path: image.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio: [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
        cwd: image.cwd,
        cgroup: match entry {
            Some(Entry::MovesItself(procs)) => Some(procs),
            _ => None,
        },
        limits,
        error: AtomicI32::new(0),
        joined_cgroup: AtomicBool::new(created_in.is_some()),
    };
    let stack = PooledStack::take().map_err(Failed::Clone)?;

    let blocked = AllSignalsBlocked::new();
    let setup_ptr = std::ptr::from_ref(&setup).cast_mut().cast();
    // SAFETY: the child shares this process's memory, so everything it touches must stay
    // valid and unchanged while it runs, and it must not disturb anything the runner uses:
    // - CLONE_VFORK suspends this thread until the child has exec'd or exited, so `setup`,
    //   the strings and pointer arrays it points to (`image`, `argv`, `envp`, and BASE_ENV,
    //   which is never changed) and `stack` are alive and unmoved for the child's whole use
    //   of them; only this thread owns them, so no other thread changes them meanwhile.
    // - `child_main` runs on `stack` (64 KiB, a guard page below), not on this thread's
    //   stack, and never returns into this frame: it execs or `_exit`s.
    // - Every signal is blocked (`blocked`) and the child inherits that mask, so no handler
    //   of the runner's (tokio's, std's) can run in it before it has reset them all; without
    //   CLONE_SIGHAND its dispositions are its own copy, so resetting them leaves the
    //   runner's alone.
    // - Without CLONE_FILES its descriptor table is its own copy: its dup2 and close calls
    //   leave the runner's descriptors alone.
    // - The child only makes system calls on values read from `setup`, writes nothing shared
    //   but `setup.error` (an atomic, read here only after it resumed) and the suspended
    //   thread's errno, allocates nothing and takes no lock; so no lock or allocator state
    //   another thread of the runner holds is touched.
    // `into_cgroup::clone` makes the same clone with the same flags, plus the cgroup.
    let raw = unsafe {
        match created_in {
            Some(dir) => into_cgroup::clone(&stack, dir, setup_ptr),
            None => libc::clone(
                child_main,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                setup_ptr,
            ),
        }
    };
    if raw < 0 {
        return Err(Failed::Clone(io::Error::last_os_error()));
    }
    let pid = Pid::from_raw(raw)
        .ok_or_else(|| Failed::Clone(io::Error::other("clone gave no process id")))?;
    // The child has exec'd or exited: whatever it wrote is visible (the kernel's wake-up of
    // this thread orders it). A child killed before it got that far counts as started, as
    // with posix_spawn; its process group reaps it.
    let error = setup.error.load(Ordering::SeqCst);
    if error != 0 {
        reap(pid);
        return Err(Failed::Setup(io::Error::from_raw_os_error(error)));
    }
    drop(blocked);
    // The child is reaped by its `ProcessGroup` (with wait4, for its usage).
    Ok(Started {
        pid,
        joined_cgroup: setup.joined_cgroup.load(Ordering::SeqCst),
    })
}

/// Everything the child reads, prepared before the clone. The raw pointers point into
/// `spawn`'s frame and BASE_ENV.
struct Setup<'a> {
    /// The executable, NUL-terminated.
    path: *const libc::c_char,
    /// NUL-terminated arrays of pointers to NUL-terminated strings.
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Become fds 0, 1 and 2.
    stdio: [BorrowedFd<'a>; 3],
    cwd: BorrowedFd<'a>,
    /// The request cgroup's `cgroup.procs`, open for writing.
    cgroup: Option<BorrowedFd<'a>>,
    limits: RlimitPlan,
    /// The errno of the step that failed, 0 while none did. Written by the child only.
    error: AtomicI32,
    /// Set by the child once it is in the request's cgroup; where it is not, the request's
    /// processes are also looked for through /proc.
    joined_cgroup: AtomicBool,
}

impl Setup<'_> {
    /// Runs in the child: prepares the process and execs. Returns only when that failed,
    /// with the errno (positive) of the step that did.
    fn exec(&self) -> i32 {
        default_signal_dispositions();
        if let Err(errno) = self.prepare() {
            return errno.raw_os_error();
        }
        // As posix_spawn's `POSIX_SPAWN_SETSIGMASK` with an empty set: the runner's threads
        // block SIGCHLD (and all signals were blocked for the clone); a command must not
        // inherit that.
        set_signal_mask(libc::SIG_SETMASK, &no_signals());
        // SAFETY: `path` is a NUL-terminated string, `argv` and `envp` NUL-terminated arrays
        // of pointers to NUL-terminated strings, all owned by `spawn`'s frame (or BASE_ENV)
        // and alive while the parent is suspended, which it is until this call succeeds.
        unsafe { libc::execve(self.path, self.argv, self.envp) };
        // execve returns only when it failed; errno says why (a read of the thread's errno:
        // no allocation).
        match io::Error::last_os_error().raw_os_error() {
            Some(errno) if errno > 0 => errno,
            _ => libc::EINVAL,
        }
    }

    /// Everything between the clone and the exec that can fail.
    fn prepare(&self) -> Result<(), Errno> {
        rustix::process::setpgid(None, None)?;
        rustix::process::fchdir(self.cwd)?;
        if let Some(procs) = self.cgroup {
            // "0" moves the writer itself. Failing leaves the command to the environment
            // mark alone, and the parent is told so.
            if rustix::io::write(procs, b"0").is_ok() {
                self.joined_cgroup.store(true, Ordering::SeqCst);
            }
        }
        // Before the limits: a tiny `open_files` would leave no descriptor to write with.
        oom::raise_own_oom_score();
        self.install_stdio()?;
        self.limits.apply()
    }

    /// The pipes onto 0, 1 and 2. A pipe end that is itself below 3 (a runner started with
    /// one of them closed) is first copied above 2, so that no dup2 overwrites a descriptor
    /// still to be copied, and none is dup2'ed onto itself (which would keep it
    /// close-on-exec). Such copies close at exec, like the pipe ends themselves.
    fn install_stdio(&self) -> Result<(), Errno> {
        let above_stdio = |fd: BorrowedFd<'_>| -> Result<Option<OwnedFd>, Errno> {
            if std::os::fd::AsRawFd::as_raw_fd(&fd) < 3 {
                rustix::io::fcntl_dupfd_cloexec(fd, 3).map(Some)
            } else {
                Ok(None)
            }
        };
        let [stdin, stdout, stderr] = self.stdio;
        let copies = [
            above_stdio(stdin)?,
            above_stdio(stdout)?,
            above_stdio(stderr)?,
        ];
        let [stdin_copy, stdout_copy, stderr_copy] = &copies;
        rustix::stdio::dup2_stdin(stdin_copy.as_ref().map_or(stdin, AsFd::as_fd))?;
        rustix::stdio::dup2_stdout(stdout_copy.as_ref().map_or(stdout, AsFd::as_fd))?;
        rustix::stdio::dup2_stderr(stderr_copy.as_ref().map_or(stderr, AsFd::as_fd))?;
        Ok(())
    }
}

/// The child's entry point, on its own stack.
extern "C" fn child_main(setup: *mut c_void) -> libc::c_int {
    // SAFETY: `setup` is the pointer `spawn` passed to clone: a `Setup` in the parent's frame,
    // alive and unchanged until this process has exec'd or exited (see the clone call).
    let setup = unsafe { &*setup.cast_const().cast::<Setup<'_>>() };
    let errno = setup.exec();
    setup.error.store(errno, Ordering::SeqCst);
    // SAFETY: `_exit` ends this process at once, running no destructors and no atexit
    // handlers (which would act on the runner's shared state) and flushing no stdio buffers.
    unsafe { libc::_exit(SETUP_FAILED) }
}

/// Waits for a child whose setup failed: it has exited or is about to (CLONE_VFORK resumes
/// the parent as the child releases its memory, a moment before it becomes a zombie).
fn reap(pid: Pid) {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Err(Errno::INTR) => continue,
            _ => return,
        }
    }
}

/// Every signal back to its default disposition, as posix_spawn's `POSIX_SPAWN_SETSIGDEF`
/// with every signal: the runner ignores SIGPIPE and handles SIGTERM, SIGINT and SIGCHLD,
/// and a command inherits none of that. glibc's own two are set to ignored, as posix_spawn
/// sets them. Runs in the child while every signal is still blocked: afterwards no handler
/// of the runner's is left to run in it. The raw system call, because glibc's `sigaction`
/// refuses glibc's signals.
fn default_signal_dispositions() {
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue; // Cannot be changed.
        }
        // SAFETY: all-zero is a valid `kernel_sigaction`: no handler (SIG_DFL), no flags,
        // no restorer, an empty mask.
        let mut action: kernel_sigaction = unsafe { std::mem::zeroed() };
        action.sa_handler_kernel = if GLIBC_SIGNALS.contains(&signal) {
            sig_ign()
        } else {
            SIG_DFL
        };
        // SAFETY: rt_sigaction reads the kernel's own `struct sigaction` layout, which is
        // `kernel_sigaction`, from a valid local, and writes nothing (no old action asked
        // for); the size is the kernel's signal set's. No handler is installed, only
        // SIG_DFL or SIG_IGN, so no restorer is needed.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &action,
                std::ptr::null_mut::<kernel_sigaction>(),
                std::mem::size_of::<kernel_sigset_t>(),
            )
        };
    }
}

fn no_signals() -> kernel_sigset_t {
    kernel_sigset_t {
        sig: Default::default(),
    }
}

/// `rt_sigprocmask` on the calling thread; returns the previous mask. The raw system call,
/// because glibc's wrappers leave its own two signals out. Cannot fail with valid arguments.
fn set_signal_mask(how: libc::c_int, set: &kernel_sigset_t) -> kernel_sigset_t {
    let mut previous = no_signals();
    // SAFETY: `set` and `previous` are valid kernel signal sets (the kernel reads one and
    // writes the other), and the size passed is theirs.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            set,
            &mut previous,
            std::mem::size_of::<kernel_sigset_t>(),
        )
    };
    previous
}

/// Every signal blocked in the calling thread, glibc's two included, until dropped — as
/// glibc's posix_spawn blocks them around its clone. The child starts with this mask.
struct AllSignalsBlocked {
    previous: kernel_sigset_t,
}

impl AllSignalsBlocked {
    fn new() -> Self {
        let mut all = no_signals();
        all.sig.fill(libc::c_ulong::MAX);
        AllSignalsBlocked {
            previous: set_signal_mask(libc::SIG_BLOCK, &all),
        }
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        set_signal_mask(libc::SIG_SETMASK, &self.previous);
    }
}

/// The child's stack: an anonymous mapping whose lowest page is a guard (no access), so an
/// overflow faults instead of writing into other memory. Unmapped on drop.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

// SAFETY: a `ChildStack` is the only owner of its mapping, which belongs to no thread: moving
// it to another thread (through the pool) moves that ownership and nothing else. Its pointer
// is never shared while the value is used.
unsafe impl Send for ChildStack {}

/// How many child stacks are kept for later starts: about as many as start at once. Mapping a
/// stack and unmapping it again (which makes every other CPU the runner ran on flush its TLB)
/// cost more per start than the rest of the parent's part of it.
const SPARE_STACKS: usize = 8;

/// Stacks of children that have exec'd or exited, ready for the next start.
static STACK_POOL: Mutex<Vec<ChildStack>> = Mutex::new(Vec::new());

/// A child stack taken from the pool (or mapped now), given back when dropped.
struct PooledStack(Option<ChildStack>);

impl PooledStack {
    fn take() -> io::Result<Self> {
        let spare = lock(&STACK_POOL).pop();
        Ok(PooledStack(Some(match spare {
            Some(stack) => stack,
            None => ChildStack::new()?,
        })))
    }

    fn top(&self) -> *mut c_void {
        self.0
            .as_ref()
            .map_or(std::ptr::null_mut(), ChildStack::top)
    }

    /// The lowest address and the size of the whole mapping, guard page included (clone3
    /// takes the stack that way and starts the child at its top).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn bounds(&self) -> (u64, u64) {
        self.0
            .as_ref()
            .map_or((0, 0), |stack| (stack.base as u64, stack.len as u64))
    }
}

impl Drop for PooledStack {
    /// Runs only once the child that used the stack has exec'd or exited (CLONE_VFORK), so
    /// the next child may have it. What the last one left on it is never read.
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

    /// The initial stack pointer: the stack grows down from the end of the mapping
    /// (page-aligned, so aligned for every ABI).
    fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once, here; the child that ran on it
        // has exec'd or exited (CLONE_VFORK), so nothing uses it any more.
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// Creating the child in the request's cgroup: clone3 with `CLONE_INTO_CGROUP` (Linux ≥ 5.7),
/// where the kernel and the seccomp profile allow it; the runner stops trying after the first
/// refusal (Docker's default profile answers ENOSYS, as for a kernel without clone3).
mod into_cgroup {
    use std::ffi::c_void;
    use std::io;
    use std::os::fd::BorrowedFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::PooledStack;

    static REFUSED: AtomicBool = AtomicBool::new(false);

    /// Whether to try: on x86-64 (the one architecture with the entry code below) until the
    /// kernel refused once.
    pub(super) fn usable() -> bool {
        cfg!(target_arch = "x86_64") && !REFUSED.load(Ordering::Relaxed)
    }

    /// Whether clone3 failed because the kernel (or seccomp) does not offer it here, rather
    /// than for this one child.
    pub(super) fn unsupported(error: &io::Error) -> bool {
        matches!(
            error.raw_os_error(),
            Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP)
        )
    }

    pub(super) fn give_up(error: &io::Error) {
        if !REFUSED.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, "commands cannot be created in their cgroup; they move in");
        }
    }

    /// `libc::clone(child_main, stack top, CLONE_VM | CLONE_VFORK | SIGCHLD, setup)` with the
    /// child created in the cgroup `dir`: the process id, or -1 with errno set.
    ///
    /// # Safety
    /// As for that `libc::clone` call (see `start`): `setup` must stay valid and unchanged
    /// until the child has exec'd or exited, and `stack` must be used by nothing else.
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn clone(
        stack: &PooledStack,
        dir: BorrowedFd<'_>,
        setup: *mut c_void,
    ) -> libc::c_int {
        use linux_raw_sys::general::{clone_args, CLONE_INTO_CGROUP, CLONE_VFORK, CLONE_VM};
        use std::os::fd::AsRawFd;

        let (stack_base, stack_size) = stack.bounds();
        let args = clone_args {
            flags: u64::from(CLONE_VM | CLONE_VFORK) | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack_base,
            stack_size,
            cgroup: dir.as_raw_fd() as u64,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
        };
        let entry: extern "C" fn(*mut c_void) -> libc::c_int = super::child_main;
        let ret: i64;
        // SAFETY: the clone3 system call. In this thread it returns the child's id or -errno
        // and changes nothing else but rcx and r11, which the syscall instruction clobbers
        // (declared). The child returns from it with every register as here except rax (0)
        // and the stack pointer, which the kernel set to the top of `stack` (page-aligned, so
        // 16-byte aligned as a call needs): there it calls `entry(setup)` — r13 and r12,
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
                in("rsi") std::mem::size_of::<clone_args>(),
                in("r12") setup,
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

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn clone(
        _stack: &PooledStack,
        _dir: BorrowedFd<'_>,
        _setup: *mut c_void,
    ) -> libc::c_int {
        // Never called: `usable` is false here.
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        -1
    }
}
