//! Registration hooks: how the hal hands events to the kernel without
//! calling up into it.
//!
//! The kernel registers one handler per event, once, at boot (Asterinas
//! OSTD's `register_bottom_half_handler` is the model): CPU faults
//! ([`register_fault_handler`]), the timer tick ([`register_timer_handler`]),
//! machine checks ([`crate::mce::register_handler`]) and the end of a task's
//! entry function ([`crate::task::register_exit_handler`]). Before a handler
//! is registered the hal treats the event as fatal (faults) or ignores it
//! (ticks).

use core::fmt;

use x86_64::structures::idt::PageFaultErrorCode;

use crate::arch::cpu::RFLAGS_IF;

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
/// hal acknowledged it; it may switch tasks.
pub type TimerHandler = fn();

static FAULT_HANDLER: spin::Once<FaultHandler> = spin::Once::new();
static TIMER_HANDLER: spin::Once<TimerHandler> = spin::Once::new();

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
pub(crate) fn dispatch_timer() {
    if let Some(handler) = TIMER_HANDLER.get() {
        handler();
    }
}
