//! Registration hooks: how the hal hands events to the kernel without
//! calling up into it, and the dispatch of every trap the entry stubs
//! ([`crate::arch::entry`]) save a [`TrapFrame`] for.
//!
//! The kernel registers one handler per event, once, at boot (Asterinas
//! OSTD's `register_bottom_half_handler` is the model): CPU faults in kernel
//! mode ([`register_fault_handler`]), exceptions from user mode
//! ([`register_user_trap_handler`]), system calls
//! ([`register_syscall_handler`]), the last step before every return to
//! user mode ([`register_exit_to_user_handler`]), page faults inside user
//! copies ([`register_user_copy_fault_resolver`]), the timer tick
//! ([`register_timer_handler`]), machine checks
//! ([`crate::mce::register_handler`]) and the end of a task's entry function
//! ([`crate::task::register_exit_handler`]). Before a handler is registered
//! the hal treats the event as fatal (faults) or ignores it (ticks).

use core::fmt;

use x86_64::structures::idt::PageFaultErrorCode;

use crate::arch::cpu::RFLAGS_IF;
pub use crate::arch::entry::{enter_user, TrapFrame, SYSCALL_VECTOR};
use crate::arch::{cpu, entry, vectors};

/// What the CPU reported for an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The exception vector.
    pub vector: u8,
    /// Its name ("page fault").
    pub name: &'static str,
    /// The error code, for the exceptions that push one.
    pub error_code: Option<u64>,
    /// Where it happened.
    pub rip: u64,
    /// The stack pointer when it happened.
    pub rsp: u64,
    /// RFLAGS when it happened.
    pub rflags: u64,
    /// The code segment (its low two bits are the privilege level).
    pub cs: u64,
    /// The faulting address (CR2), for page faults and double faults.
    pub cr2: Option<u64>,
}

impl Fault {
    /// Were interrupts enabled where the fault happened?
    pub fn interrupts_were_enabled(&self) -> bool {
        self.rflags & RFLAGS_IF != 0
    }

    /// Did the fault happen in user mode (CPL 3)?
    pub fn from_user_mode(&self) -> bool {
        self.cs & 3 == 3
    }

    /// If the faulting address is a kernel stack's guard page: that page
    /// (a kernel stack overflowed).
    pub fn stack_guard_page(&self) -> Option<u64> {
        self.cr2.and_then(crate::mm::KernelStack::guard_page_of)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (vector {})", self.name, self.vector)?;
        if let Some(code) = self.error_code {
            write!(f, " error code {code:#x}")?;
        }
        write!(f, " at RIP {:#x} RSP {:#x}", self.rip, self.rsp)?;
        if let Some(cr2) = self.cr2 {
            write!(f, " CR2 {cr2:#x}")?;
            if let (14, Some(code)) = (self.vector, self.error_code) {
                let c = PageFaultErrorCode::from_bits_truncate(code);
                let what = if c.contains(PageFaultErrorCode::INSTRUCTION_FETCH) {
                    "fetch"
                } else if c.contains(PageFaultErrorCode::CAUSED_BY_WRITE) {
                    "write"
                } else {
                    "read"
                };
                let why = if c.contains(PageFaultErrorCode::PROTECTION_VIOLATION) {
                    "protection violation"
                } else {
                    "not present"
                };
                let mode = if c.contains(PageFaultErrorCode::USER_MODE) { ", user mode" } else { "" };
                write!(f, " ({what}, {why}{mode})")?;
            }
        }
        Ok(())
    }
}

/// The kernel's fault handler. It returns only if it resolved the fault
/// (e.g. mapped the missing page), and the faulting instruction is retried;
/// otherwise it does not return (it ends the task or stops the machine).
pub type FaultHandler = fn(&Fault);

/// The kernel's timer-tick handler. Runs in the timer interrupt after the
/// hal acknowledged it (the flag: it interrupted user mode); it may switch
/// tasks.
pub type TimerHandler = fn(bool);

/// The kernel's handler of exceptions from user mode: it resolves the fault
/// (demand paging) or decides the signal; it always returns, and the
/// exit-to-user hook then acts (delivers the signal, ends the process).
/// Called with interrupts on.
pub type UserTrapHandler = fn(&mut TrapFrame, &Fault);

/// The kernel's system-call handler: reads the number and arguments from
/// the frame and writes the result to `rax`. Called with interrupts on.
pub type SyscallHandler = fn(&mut TrapFrame);

/// Runs before every return to user mode (system calls, exceptions and
/// interrupts from user mode, user-mode machine checks, a new process's
/// first entry), with interrupts on: deferred kills, signal delivery,
/// `execve`. It may rewrite the frame; the hal sanitizes it afterwards.
pub type ExitToUserHandler = fn(&mut TrapFrame);

/// Tries to resolve a page fault that a user-copy routine took at the
/// lower-half address `addr` (`write`: a store), without blocking: it may
/// run with interrupts off and must only try locks. True if the page is
/// now mapped (the copy instruction is retried); false ends the copy short.
pub type UserCopyFaultResolver = fn(addr: u64, write: bool) -> bool;

static FAULT_HANDLER: spin::Once<FaultHandler> = spin::Once::new();
static TIMER_HANDLER: spin::Once<TimerHandler> = spin::Once::new();
static USER_TRAP_HANDLER: spin::Once<UserTrapHandler> = spin::Once::new();
static SYSCALL_HANDLER: spin::Once<SyscallHandler> = spin::Once::new();
static EXIT_TO_USER_HANDLER: spin::Once<ExitToUserHandler> = spin::Once::new();
static USER_COPY_RESOLVER: spin::Once<UserCopyFaultResolver> = spin::Once::new();

/// A handler was already registered for this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyRegistered;

fn register<T: Copy>(cell: &spin::Once<T>, f: T) -> Result<(), AlreadyRegistered> {
    let mut fresh = false;
    cell.call_once(|| {
        fresh = true;
        f
    });
    if fresh {
        Ok(())
    } else {
        Err(AlreadyRegistered)
    }
}

/// Registers the fault handler (once).
pub fn register_fault_handler(f: FaultHandler) -> Result<(), AlreadyRegistered> {
    register(&FAULT_HANDLER, f)
}

/// Registers the timer-tick handler (once).
pub fn register_timer_handler(f: TimerHandler) -> Result<(), AlreadyRegistered> {
    register(&TIMER_HANDLER, f)
}

/// Registers the handler of exceptions from user mode (once).
pub fn register_user_trap_handler(f: UserTrapHandler) -> Result<(), AlreadyRegistered> {
    register(&USER_TRAP_HANDLER, f)
}

/// Registers the system-call handler (once).
pub fn register_syscall_handler(f: SyscallHandler) -> Result<(), AlreadyRegistered> {
    register(&SYSCALL_HANDLER, f)
}

/// Registers the exit-to-user hook (once).
pub fn register_exit_to_user_handler(f: ExitToUserHandler) -> Result<(), AlreadyRegistered> {
    register(&EXIT_TO_USER_HANDLER, f)
}

/// Registers the resolver of page faults in user copies (once).
pub fn register_user_copy_fault_resolver(f: UserCopyFaultResolver) -> Result<(), AlreadyRegistered> {
    register(&USER_COPY_RESOLVER, f)
}

pub(crate) fn register_once<T: Copy>(cell: &spin::Once<T>, f: T) -> Result<(), AlreadyRegistered> {
    register(cell, f)
}

/// Hands a fault to the kernel, or stops the machine if no handler is
/// registered yet.
pub(crate) fn dispatch_fault(fault: &Fault) {
    match FAULT_HANDLER.get() {
        Some(handler) => handler(fault),
        None => {
            crate::console::emergency(format_args!("\nKERNEL PANIC: {fault} (early boot, no fault handler yet)\n"));
            crate::power::exit_qemu(fsdax_ktest::protocol::ExitCode::KernelPanic)
        }
    }
}

/// Hands a timer tick to the kernel.
pub(crate) fn dispatch_timer(from_user: bool) {
    if let Some(handler) = TIMER_HANDLER.get() {
        handler(from_user);
    }
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug exception",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved exception",
    "x87 floating-point exception",
    "alignment check",
    "machine check",
    "SIMD floating-point exception",
    "virtualization exception",
    "control protection exception",
    "reserved exception",
    "reserved exception",
    "reserved exception",
    "reserved exception",
    "reserved exception",
    "reserved exception",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved exception",
];

impl Fault {
    /// The fault a CPU exception frame describes.
    pub fn from_frame(f: &TrapFrame) -> Fault {
        let vector = (f.vector & 0xff) as u8;
        Fault {
            vector,
            name: EXCEPTION_NAMES.get(usize::from(vector)).copied().unwrap_or("exception"),
            error_code: entry::has_error_code(f.vector).then_some(f.error_code),
            rip: f.rip,
            rsp: f.rsp,
            rflags: f.rflags,
            cs: f.cs,
            cr2: None,
        }
    }
}

/// Every trap the stubs save a frame for (not SYSCALL, not the kernel-mode
/// #MC): exceptions, the timer, spurious and unexpected interrupts.
pub(crate) fn dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        v if v < 32 => dispatch_exception(frame),
        v if v == u64::from(vectors::TIMER) => {
            crate::time::eoi();
            dispatch_timer(frame.from_user_mode());
        }
        v if v == u64::from(vectors::SPURIOUS)
            || (u64::from(vectors::PIC_BASE)..u64::from(vectors::PIC_BASE) + 16).contains(&v) => {}
        v => {
            crate::console::emergency(format_args!("unexpected interrupt {v:#x} at RIP {:#x}; ignored\n", frame.rip));
            crate::time::eoi();
        }
    }
}

fn dispatch_exception(frame: &mut TrapFrame) {
    let mut fault = Fault::from_frame(frame);
    if fault.vector == 14 {
        fault.cr2 = Some(entry::cr2());
    }
    if fault.vector == 18 {
        // A machine check from user mode, moved here by its entry.
        crate::mce::dispatch_user_mode(frame);
        return;
    }
    if frame.from_user_mode() {
        match USER_TRAP_HANDLER.get() {
            Some(handler) => {
                cpu::enable_interrupts();
                handler(frame, &fault);
                cpu::disable_interrupts();
            }
            None => dispatch_fault(&fault),
        }
        return;
    }
    match fault.vector {
        1 => crate::console::emergency(format_args!("debug exception at RIP {:#x}\n", frame.rip)),
        3 => crate::console::emergency(format_args!("breakpoint at RIP {:#x}\n", frame.rip)),
        14 => {
            let addr = fault.cr2.unwrap_or(0);
            if let Some(fixup) = crate::uaccess::fixup_for(frame.rip, addr) {
                // A user copy faulted: resolve it like a user fault if that
                // can be done without blocking, else end the copy short.
                let write = frame.error_code & 2 != 0;
                if USER_COPY_RESOLVER.get().is_some_and(|r| r(addr, write)) {
                    return;
                }
                frame.rip = fixup;
                return;
            }
            dispatch_fault(&fault);
        }
        _ => dispatch_fault(&fault),
    }
}

/// A system call: the kernel's handler, or ENOSYS before there is one.
pub(crate) fn dispatch_syscall(frame: &mut TrapFrame) {
    match SYSCALL_HANDLER.get() {
        Some(handler) => handler(frame),
        None => frame.rax = (-38i64) as u64,
    }
}

/// The exit-to-user hook, if registered.
pub(crate) fn dispatch_exit_to_user(frame: &mut TrapFrame) {
    if let Some(handler) = EXIT_TO_USER_HANDLER.get() {
        handler(frame);
    }
}
