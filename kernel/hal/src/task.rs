//! Task contexts and the context switch.
//!
//! A [`TaskContext`] is what the CPU needs to run a task: its kernel stack,
//! the stack pointer saved while it is suspended, and its address space (or
//! the kernel's). Only this module builds contexts, so every saved stack
//! pointer is one [`switch_to`] saved or one [`TaskContext::new`] prepared.
//!
//! The kernel's scheduler decides *which* context runs; [`switch_to`]
//! carries it out. The preconditions the hal enforces (it checks them and
//! stops the machine rather than break them):
//! - interrupts are off on this CPU for the switch;
//! - the target is not running (each context carries a `running` flag, set
//!   by the switch that resumes it and cleared only after it has been
//!   switched away from and its stack pointer saved: the "on_cpu" protocol,
//!   so a context woken on another CPU is never resumed twice);
//! - a running context cannot be freed: this CPU's current context is held
//!   in a per-CPU slot, and the previous one until the next context has
//!   finished the switch (Linux's `finish_task_switch`), so a task that
//!   exits can be reaped by others at any time after.
//!
//! A new context starts in a trampoline that finishes the switch, enables
//! interrupts and runs its entry function; if the entry returns, the hal
//! calls the kernel's registered exit handler, which must not return.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use fsdax_ktest::protocol::ExitCode;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use crate::arch::fpu::{FxArea, FXSAVE_SIZE};
use crate::arch::{cpu, msr};
use crate::mm::{AddressSpace, KernelStack};
use crate::sync::IrqMutex;
use crate::trap::AlreadyRegistered;

/// The entry function of a new task.
pub type TaskEntry = Box<dyn FnOnce() + Send>;

/// Called when a task's entry function returns; must end the task (switch
/// away for good) and never return.
pub type ExitHandler = fn() -> !;

static EXIT_HANDLER: spin::Once<ExitHandler> = spin::Once::new();

/// Registers the handler for task entries that return (once).
pub fn register_exit_handler(f: ExitHandler) -> Result<(), AlreadyRegistered> {
    crate::trap::register_once(&EXIT_HANDLER, f)
}

/// What a task runs on.
pub struct TaskContext {
    /// The stack pointer saved by `switch_stack` while the task is
    /// suspended (or prepared by `new`). Written by the CPU switching away
    /// from it, read by the CPU resuming it; the `running` flag orders them.
    rsp: UnsafeCell<u64>,
    /// Set while some CPU runs this context (from the switch to it until the
    /// next context finished the switch away from it).
    running: AtomicBool,
    /// The task's kernel stack (None for the boot context, which runs on
    /// the bootloader's stack).
    stack: Option<KernelStack>,
    /// The task's own address space (None: the kernel's). Shared (a vfork
    /// child runs in its parent's) and replaceable (`execve`) by the task
    /// itself; `cr3` mirrors it for the lock-free context switch.
    space: IrqMutex<Option<Arc<AddressSpace>>>,
    /// The PML4 to load when switching to this context.
    cr3: AtomicU64,
    /// The CPU state of user mode that the kernel does not save on entry:
    /// FS base and x87/SSE registers (None: a kernel-only task).
    user: Option<UserCpu>,
    /// The entry function, taken by the trampoline.
    entry: IrqMutex<Option<TaskEntry>>,
}

/// The user-mode CPU state a context switch saves and restores.
struct UserCpu {
    /// IA32_FS_BASE of the task (processes set it with `arch_prctl`;
    /// without FSGSBASE in CR4 only the kernel changes it).
    fs_base: AtomicU64,
    /// The FXSAVE image, written by the switch away from the task and read
    /// by the switch to it (the `running` protocol orders them, as `rsp`).
    fpu: UnsafeCell<FxArea>,
}

/// How a user task's CPU state starts: FS base and x87/SSE registers.
#[derive(Debug, Clone)]
pub struct UserCpuInit {
    fs_base: u64,
    fpu: FxArea,
}

impl UserCpuInit {
    /// A new program's state: FS base 0, the initial FPU state.
    pub fn fresh() -> UserCpuInit {
        UserCpuInit { fs_base: 0, fpu: FxArea::initial() }
    }

    /// A copy of the running task's state (a vfork child starts with its
    /// parent's registers).
    pub fn snapshot() -> UserCpuInit {
        let mut fpu = FxArea::initial();
        cpu::without_interrupts(|| fpu.save());
        let fs_base = current().and_then(|c| c.user.as_ref().map(|u| u.fs_base.load(Ordering::Relaxed))).unwrap_or(0);
        UserCpuInit { fs_base, fpu }
    }
}

// SAFETY: `rsp` is the only field without its own synchronisation. It is
// written only by the CPU running the context (in `switch_stack`, when it
// switches away) and read only by `switch_to` after `running` was observed
// false (Acquire), which `finish_switch` sets (Release) after the write; so
// accesses never overlap.
unsafe impl Sync for TaskContext {}
// SAFETY: moving a context to another thread of execution moves owned
// resources only (stack slot, address space, boxed entry); `rsp` is handed
// over under the `running` protocol described for `Sync`.
unsafe impl Send for TaskContext {}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("running", &self.running.load(Ordering::Relaxed))
            .field("stack", &self.stack)
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}

/// Why a context could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// No stack slot or no RAM for the stack.
    OutOfMemory,
}

/// Slots of the per-CPU table (one CPU is brought up today).
const MAX_CPUS: usize = 1;

/// Per-CPU switch state.
struct CpuSlot {
    /// The context running on this CPU.
    current: IrqMutex<Option<Arc<TaskContext>>>,
    /// The context this CPU just switched away from, kept alive until the
    /// next context finishes the switch (`Arc::into_raw`).
    prev: AtomicPtr<TaskContext>,
}

static CPUS: [CpuSlot; MAX_CPUS] =
    [const { CpuSlot { current: IrqMutex::new(None), prev: AtomicPtr::new(core::ptr::null_mut()) } }; MAX_CPUS];

fn this_cpu() -> &'static CpuSlot {
    CPUS.get(cpu::cpu_index()).unwrap_or(&CPUS[0])
}

impl TaskContext {
    /// Makes the running boot code a context (the first task). Call once,
    /// before any [`switch_to`].
    pub fn adopt_boot() -> Arc<TaskContext> {
        let ctx = Arc::new(TaskContext {
            rsp: UnsafeCell::new(0),
            running: AtomicBool::new(true),
            stack: None,
            space: IrqMutex::new(None),
            cr3: AtomicU64::new(crate::mm::kernel_pml4()),
            user: None,
            entry: IrqMutex::new(None),
        });
        let mut current = this_cpu().current.lock();
        assert!(current.is_none(), "the boot context was adopted twice");
        *current = Some(Arc::clone(&ctx));
        ctx
    }

    /// A new context with a kernel stack of `stack_pages` pages (below its
    /// guard page), the given address space (None: the kernel's), that will
    /// run `entry` when first switched to.
    pub fn new(stack_pages: u64, space: Option<AddressSpace>, entry: TaskEntry) -> Result<Arc<Self>, ContextError> {
        Self::build(stack_pages, space.map(Arc::new), None, entry)
    }

    /// A new context for a task that will run user code: it shares `space`
    /// and starts with the user CPU state `user` (restored at every switch
    /// to it, saved at every switch away).
    pub fn new_user(
        stack_pages: u64,
        space: Arc<AddressSpace>,
        user: UserCpuInit,
        entry: TaskEntry,
    ) -> Result<Arc<Self>, ContextError> {
        Self::build(stack_pages, Some(space), Some(user), entry)
    }

    fn build(
        stack_pages: u64,
        space: Option<Arc<AddressSpace>>,
        user: Option<UserCpuInit>,
        entry: TaskEntry,
    ) -> Result<Arc<Self>, ContextError> {
        let stack = KernelStack::new(stack_pages).ok_or(ContextError::OutOfMemory)?;
        // Initial frame popped by `switch_stack`: r15 r14 r13 r12 rbx rbp,
        // then the return address (the trampoline), then an alignment slot.
        let frame: [u64; 8] = [0, 0, 0, 0, 0, 0, task_trampoline as *const () as u64, 0];
        let rsp = stack.top() - 8 * frame.len() as u64;
        // SAFETY: the stack was just mapped writable and nothing runs on it;
        // the frame fits in its top 64 bytes.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), rsp as *mut u64, frame.len()) };
        let cr3 = space.as_ref().map_or_else(crate::mm::kernel_pml4, |s| s.pml4());
        Ok(Arc::new(TaskContext {
            rsp: UnsafeCell::new(rsp),
            running: AtomicBool::new(false),
            stack: Some(stack),
            space: IrqMutex::new(space),
            cr3: AtomicU64::new(cr3),
            user: user.map(|u| UserCpu { fs_base: AtomicU64::new(u.fs_base), fpu: UnsafeCell::new(u.fpu) }),
            entry: IrqMutex::new(Some(entry)),
        }))
    }

    /// The task's own address space, if it has one.
    pub fn address_space(&self) -> Option<Arc<AddressSpace>> {
        self.space.lock().clone()
    }

    /// Whether the task runs user code (it has user CPU state).
    pub fn is_user(&self) -> bool {
        self.user.is_some()
    }

    /// Whether a CPU runs this context now.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    fn cr3(&self) -> u64 {
        self.cr3.load(Ordering::Acquire)
    }
}

fn write_cr3(pml4: u64) {
    if Cr3::read().0.start_address().as_u64() != pml4 {
        // SAFETY: `pml4` is the kernel's PML4 or the PML4 of a space a live
        // context holds (kept alive by that context while it is current);
        // every space shares the kernel half, which holds all code and data
        // the kernel runs on.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4)), Cr3Flags::empty()) };
    }
}

/// Replaces the running task's address space (`execve`, or a process that
/// ends and gives its memory back: None loads the kernel's tables). The
/// old space is returned, after CR3 no longer points at it, for the caller
/// to drop.
pub fn replace_address_space(space: Option<Arc<AddressSpace>>) -> Option<Arc<AddressSpace>> {
    let ctx = current()?;
    cpu::without_interrupts(|| {
        let mut slot = ctx.space.lock();
        let pml4 = space.as_ref().map_or_else(crate::mm::kernel_pml4, |s| s.pml4());
        ctx.cr3.store(pml4, Ordering::Release);
        write_cr3(pml4);
        core::mem::replace(&mut *slot, space)
    })
}

/// Sets the running task's FS base (its thread pointer). False if the task
/// has no user state or `base` is not a user address.
pub fn set_fs_base(base: u64) -> bool {
    let Some(ctx) = current() else { return false };
    let Some(user) = &ctx.user else { return false };
    if base >= crate::arch::entry::USER_END {
        return false;
    }
    cpu::without_interrupts(|| {
        user.fs_base.store(base, Ordering::Relaxed);
        // SAFETY: IA32_FS_BASE exists on every x86_64 CPU; `base` is a
        // canonical user address, and the kernel does not use FS.
        unsafe { msr::write(msr::IA32_FS_BASE, base) };
    });
    true
}

/// The running task's FS base (0 without user state).
pub fn fs_base() -> u64 {
    current().and_then(|c| c.user.as_ref().map(|u| u.fs_base.load(Ordering::Relaxed))).unwrap_or(0)
}

/// Resets the running task's x87/SSE registers and FS base to a new
/// program's (`execve`).
pub fn reset_user_cpu() {
    let _ = set_fs_base(0);
    cpu::without_interrupts(|| FxArea::initial().restore());
}

/// The running task's x87/SSE registers as an FXSAVE image (what a signal
/// frame saves). They stay live in the CPU while the task runs, since the
/// kernel never touches them, so this is what its user code left there.
pub fn user_fpu_image() -> [u8; FXSAVE_SIZE] {
    let mut a = FxArea::initial();
    cpu::without_interrupts(|| a.save());
    a.0
}

/// Loads an FXSAVE image a process supplied (`rt_sigreturn`) into the
/// running task's x87/SSE registers. MXCSR bits this CPU does not support
/// are cleared first: FXRSTOR would fault on them. Every other field is
/// loaded as given (FXRSTOR checks nothing else).
pub fn load_user_fpu_image(image: &[u8; FXSAVE_SIZE]) {
    let mut a = FxArea(*image);
    let mxcsr = u32::from_le_bytes([a.0[24], a.0[25], a.0[26], a.0[27]]) & crate::arch::fpu::mxcsr_mask();
    a.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    cpu::without_interrupts(|| a.restore());
}

/// Resets the running task's x87/SSE registers to a new program's (a
/// signal handler starts with them, as on Linux).
pub fn reset_user_fpu() {
    cpu::without_interrupts(|| FxArea::initial().restore());
}

/// The context running on this CPU.
pub fn current() -> Option<Arc<TaskContext>> {
    this_cpu().current.lock().clone()
}

fn fatal(why: &str) -> ! {
    crate::console::emergency(format_args!("\nKERNEL PANIC: context switch: {why}\n"));
    crate::power::exit_qemu(ExitCode::KernelPanic)
}

/// Switches this CPU to `next`; returns when the calling context is resumed.
/// A no-op if `next` is the current context.
///
/// `next` is taken by value: no reference to it stays on the suspended
/// caller's stack (a task killed while suspended never runs again, and
/// anything on its stack is abandoned).
///
/// Interrupts must be off (the scheduler holds its decision until the switch
/// is done); `next` must not be running. The hal stops the machine with a
/// report if either is violated.
pub fn switch_to(next: Arc<TaskContext>) {
    if cpu::interrupts_enabled() {
        fatal("called with interrupts on");
    }
    let slot = this_cpu();
    let (prev, next_rsp) = {
        let mut current = slot.current.lock();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &next)) {
            return;
        }
        if next.running.swap(true, Ordering::Acquire) {
            fatal("the next context is running");
        }
        if let Some(user) = current.as_ref().and_then(|c| c.user.as_ref()) {
            // SAFETY: the current context runs on this CPU and only it
            // touches its FPU image until its `running` flag is cleared
            // (after this switch completes).
            unsafe { (*user.fpu.get()).save() };
        }
        if let Some(stack) = &next.stack {
            crate::arch::gdt::set_kernel_stack(stack.top());
        }
        write_cr3(next.cr3());
        if let Some(user) = &next.user {
            // SAFETY: `next.running` was false (Acquire): its image was
            // written by the switch away from it (or by `build`), and nobody
            // writes it while it runs here.
            unsafe { (*user.fpu.get()).restore() };
            // SAFETY: IA32_FS_BASE exists on every x86_64 CPU; the value is
            // a user address `set_fs_base` checked (or 0 / the parent's).
            unsafe { msr::write(msr::IA32_FS_BASE, user.fs_base.load(Ordering::Relaxed)) };
        }
        // SAFETY: `next.running` was false (Acquire), so its `rsp` was
        // written by the switch away from it (or by `new`) and nobody
        // writes it now.
        let next_rsp = unsafe { *next.rsp.get() };
        match current.replace(next) {
            Some(prev) => (prev, next_rsp),
            None => fatal("no current context (adopt_boot first)"),
        }
    };
    let prev_rsp = prev.rsp.get();
    // Keep `prev` alive (and its stack mapped) until the next context
    // finishes the switch: the reference moves into the per-CPU slot.
    let old = slot.prev.swap(Arc::into_raw(prev).cast_mut(), Ordering::AcqRel);
    if !old.is_null() {
        fatal("a previous context was never released");
    }
    // SAFETY: `prev_rsp` points into the previous context, kept alive by the
    // slot above until the next context has run `finish_switch`; `next_rsp`
    // was saved by `switch_stack` on the next context's own stack (or built
    // by `new` for the trampoline), which that context keeps mapped while
    // the per-CPU current slot holds it; interrupts are off.
    unsafe { switch_stack(prev_rsp, next_rsp) };
    // Resumed: some other context switched back to us.
    finish_switch();
}

/// Run by the context that was just switched to: the previous context's
/// stack pointer is saved, so it may run elsewhere or be freed.
fn finish_switch() {
    let p = this_cpu().prev.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return;
    }
    // SAFETY: `p` came from `Arc::into_raw` in `switch_to`, and is taken
    // out of the slot exactly once (the swap above).
    let prev = unsafe { Arc::from_raw(p) };
    prev.running.store(false, Ordering::Release);
    drop(prev);
}

/// First code of every new context: finish the switch, enable interrupts,
/// run the entry, then hand over to the exit handler.
extern "C" fn task_start() -> ! {
    finish_switch();
    let entry = current().and_then(|c| c.entry.lock().take());
    cpu::enable_interrupts();
    match entry {
        Some(f) => f(),
        None => fatal("a new context has no entry function"),
    }
    match EXIT_HANDLER.get() {
        Some(exit) => exit(),
        None => fatal("a task returned before the kernel registered an exit handler"),
    }
}

#[unsafe(naked)]
extern "C" fn task_trampoline() -> ! {
    core::arch::naked_asm!("and rsp, -16", "call {start}", "ud2", start = sym task_start)
}

/// Saves the callee-saved registers and the stack pointer into `*old_rsp`,
/// then resumes the context whose stack pointer is `new_rsp`.
///
/// # Safety
/// `old_rsp` must be valid for a write and stay valid until the context is
/// resumed or abandoned; `new_rsp` must be a stack pointer saved by this
/// function (or prepared like `TaskContext::new` does) on a stack that is
/// mapped and not in use; interrupts must be off.
#[unsafe(naked)]
unsafe extern "C" fn switch_stack(old_rsp: *mut u64, new_rsp: u64) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}
