//! Signals, the kernel's part: the lock around a process's signal state
//! (`fsdax_kcore::signal::SignalState`, where every decision lives), and
//! what the return to user mode does with those decisions: end the process,
//! or write a handler's frame (`fsdax_abi::signal::build_frame`) on its
//! stack and start the handler; and `rt_sigreturn`, which takes the frame
//! back.
//!
//! Delivery happens in [`deliver`], from the exit-to-user hook, so before
//! every return to user mode (system calls, exceptions, interrupts, the
//! first entry of a program); nothing is held there, so a process killed
//! there holds no lock. A frame holds the interrupted registers, the
//! signal mask to restore, the alternate-stack setting, the `siginfo` and
//! the x87/SSE state (FXSAVE image); the handler starts with the initial
//! x87/SSE state, as on Linux.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use fsdax_abi::signal::{self as sig, AltStack, Exit, UserRegs, FRAME_SIZE, FXSAVE_SIZE};
use fsdax_abi::wire::{SigFields, Siginfo};
use fsdax_hal::arch::entry::{USER_CS, USER_SS};
use fsdax_hal::sync::{IrqMutex, IrqMutexGuard};
use fsdax_hal::trap::TrapFrame;
use fsdax_hal::uaccess;
use fsdax_kcore::signal::{Delivery, Next, Resume, SignalState};

use super::vm::{Access, Vm};
use super::Process;

/// A process's signal state under its lock, with a flag the return to user
/// mode reads without the lock ("anything to do?"), kept equal to
/// `SignalState::needs_attention` by every change (the guard recomputes it
/// when it is dropped).
#[derive(Debug, Default)]
pub struct Signals {
    state: IrqMutex<Box<SignalState>>,
    attention: AtomicBool,
}

/// The locked signal state; dropping it updates the attention flag.
#[derive(Debug)]
pub struct SignalsGuard<'a> {
    guard: IrqMutexGuard<'a, Box<SignalState>>,
    attention: &'a AtomicBool,
}

impl core::ops::Deref for SignalsGuard<'_> {
    type Target = SignalState;
    fn deref(&self) -> &SignalState {
        &self.guard
    }
}

impl core::ops::DerefMut for SignalsGuard<'_> {
    fn deref_mut(&mut self) -> &mut SignalState {
        &mut self.guard
    }
}

impl Drop for SignalsGuard<'_> {
    fn drop(&mut self) {
        self.attention.store(self.guard.needs_attention(), Ordering::Release);
    }
}

impl Signals {
    /// Signals starting from `state`.
    pub fn new(state: SignalState) -> Signals {
        let attention = AtomicBool::new(state.needs_attention());
        Signals { state: IrqMutex::new(Box::new(state)), attention }
    }

    /// Locks the state (a leaf lock: nothing else is taken while it is
    /// held).
    pub fn lock(&self) -> SignalsGuard<'_> {
        SignalsGuard { guard: self.state.lock(), attention: &self.attention }
    }

    /// Whether the return to user mode has something to do (a lock-free
    /// hint, exact after any change was unlocked).
    pub fn attention(&self) -> bool {
        self.attention.load(Ordering::Acquire)
    }
}

/// The trap number, error code and CR2 of the last fault of a process
/// (written to `sigcontext`, as Linux's `thread.trap_nr`, `error_code`,
/// `cr2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultRegs {
    pub trapno: u64,
    pub err: u64,
    pub cr2: u64,
}

/// The user registers in a trap frame.
pub fn regs_of(f: &TrapFrame) -> UserRegs {
    UserRegs {
        rax: f.rax,
        rbx: f.rbx,
        rcx: f.rcx,
        rdx: f.rdx,
        rsi: f.rsi,
        rdi: f.rdi,
        rbp: f.rbp,
        rsp: f.rsp,
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rip: f.rip,
        rflags: f.rflags,
    }
}

/// Puts user registers into a trap frame (the hal sanitizes segments and
/// flags on the way out).
pub fn set_regs(f: &mut TrapFrame, r: &UserRegs) {
    f.rax = r.rax;
    f.rbx = r.rbx;
    f.rcx = r.rcx;
    f.rdx = r.rdx;
    f.rsi = r.rsi;
    f.rdi = r.rdi;
    f.rbp = r.rbp;
    f.rsp = r.rsp;
    f.r8 = r.r8;
    f.r9 = r.r9;
    f.r10 = r.r10;
    f.r11 = r.r11;
    f.r12 = r.r12;
    f.r13 = r.r13;
    f.r14 = r.r14;
    f.r15 = r.r15;
    f.rip = r.rip;
    f.rflags = r.rflags;
}

/// Whether `addr` is canonical. Returning to a non-canonical `RIP` would
/// fault on the `IRETQ` itself, in the kernel; Linux turns that into
/// SIGSEGV for the process, and so does fsdax, before it returns.
fn canonical(addr: u64) -> bool {
    !(0x0000_8000_0000_0000..0xffff_8000_0000_0000).contains(&addr)
}

/// What a #GP raises (SIGSEGV, `SI_KERNEL`): for a return to a
/// non-canonical address.
fn gp_info() -> Siginfo {
    Siginfo { signo: sig::SIGSEGV, errno: 0, code: sig::SI_KERNEL, fields: SigFields::Fault { addr: 0, addr_lsb: 0 } }
}

/// How an interrupted system call resumes, applied to its registers.
fn apply(frame: &mut TrapFrame, r: Resume) {
    match r {
        Resume::Restart(nr) => {
            frame.rax = nr;
            // Back over the 2-byte `syscall` instruction.
            frame.rip = frame.rip.wrapping_sub(2);
        }
        Resume::Fail(e) => frame.rax = e.as_return(),
    }
}

/// Writes `bytes` at the user address `addr`; a page the copy's
/// non-blocking fault path could not bring in (a stack that must grow, a
/// busy lock) is faulted in with waiting allowed, and the copy retried.
fn put_user(vm: &Vm, addr: u64, bytes: &[u8]) -> bool {
    if uaccess::copy_to_user(addr, bytes).is_ok() {
        return true;
    }
    vm.fault_in(addr, bytes.len() as u64, Access::Write).is_ok() && uaccess::copy_to_user(addr, bytes).is_ok()
}

/// Why a handler's frame could not be set up (the process gets SIGSEGV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameFailure {
    NoRestorer,
    BadStack,
    BadHandler,
    Unwritable,
}

impl FrameFailure {
    fn describe(self) -> &'static str {
        match self {
            FrameFailure::NoRestorer => "the action has no SA_RESTORER",
            FrameFailure::BadStack => "no room for the frame on the stack",
            FrameFailure::BadHandler => "the handler address is not canonical",
            FrameFailure::Unwritable => "the stack is not writable",
        }
    }
}

/// Writes the frame of `d` on the user stack (or the alternate stack) and
/// points the registers at the handler (Linux's `setup_rt_frame` and
/// `handle_signal`).
fn setup_frame(p: &Process, frame: &mut TrapFrame, d: &Delivery) -> Result<(), FrameFailure> {
    let altstack: AltStack = p.signals.lock().altstack();
    let fpu: [u8; FXSAVE_SIZE] = fsdax_hal::task::user_fpu_image();
    let fault = *p.last_fault.lock();
    let delivery = sig::Delivery {
        regs: regs_of(frame),
        fpu: &fpu,
        info: d.info,
        action: d.action,
        saved_mask: d.frame_mask,
        altstack,
        trapno: fault.trapno,
        err: fault.err,
        cr2: fault.cr2,
        user_cs: USER_CS as u16,
        user_ss: USER_SS as u16,
    };
    let f = sig::build_frame(&delivery).map_err(|e| match e {
        sig::FrameError::NoRestorer => FrameFailure::NoRestorer,
        sig::FrameError::BadStack => FrameFailure::BadStack,
    })?;
    if !canonical(f.regs.rip) {
        return Err(FrameFailure::BadHandler);
    }
    let vm = p.vm().ok_or(FrameFailure::Unwritable)?;
    if !put_user(&vm, f.fpstate_addr, &fpu) || !put_user(&vm, f.addr, &f.bytes) {
        return Err(FrameFailure::Unwritable);
    }
    set_regs(frame, &f.regs);
    fsdax_hal::task::reset_user_fpu();
    Ok(())
}

/// At a return to user mode: delivers what is pending (handlers run in
/// order, each frame above the previous one, as on Linux), ends the
/// process if a signal kills it, and resumes an interrupted system call.
pub fn deliver(p: Arc<Process>, frame: &mut TrapFrame) {
    if !p.signals.attention() && canonical(frame.rip) {
        return;
    }
    loop {
        let next = p.signals.lock().dequeue();
        match next {
            Next::Nothing => {
                if canonical(frame.rip) {
                    break;
                }
                // A return to a non-canonical address: SIGSEGV, as the
                // IRETQ's #GP would give on Linux.
                p.signals.lock().force(gp_info());
            }
            Next::Die(info) => {
                p.record_death(info, frame.rip);
                super::exit(p, Exit::Signal(info.signo));
            }
            Next::Deliver(d) => {
                if let Some(r) = d.resume {
                    apply(frame, r);
                }
                match setup_frame(&p, frame, &d) {
                    Ok(()) => p.signals.lock().delivered(d.info.signo, &d.action),
                    Err(why) => {
                        crate::kprintln!(
                            "process {} ({}): cannot deliver {}: {} (RSP {:#x}): SIGSEGV",
                            p.pid(),
                            p.name(),
                            sig::name(d.info.signo),
                            why.describe(),
                            frame.rsp
                        );
                        p.signals.lock().force_sigsegv(d.info.signo);
                    }
                }
            }
        }
    }
    let resume = p.signals.lock().finish();
    if let Some(r) = resume {
        apply(frame, r);
    }
}

/// `rt_sigreturn`: takes back the frame a handler returned through (its
/// restorer popped the return address, so it starts at `RSP - 8`):
/// registers (flags limited to what a process may set), x87/SSE state
/// (MXCSR masked with the CPU's `MXCSR_MASK`), signal mask and
/// alternate-stack setting. A frame that cannot be read is SIGSEGV.
/// Returns the restored `RAX`.
pub fn sigreturn(p: &Process, frame: &mut TrapFrame) -> u64 {
    let at = frame.rsp.wrapping_sub(8);
    let mut bytes = [0u8; FRAME_SIZE];
    if uaccess::copy_from_user(&mut bytes, at).is_err() {
        return bad_frame(p, at);
    }
    let r = sig::parse_sigreturn(&bytes, frame.rflags);
    if r.fpstate != 0 {
        let mut image = [0u8; FXSAVE_SIZE];
        if uaccess::copy_from_user(&mut image, r.fpstate).is_err() {
            return bad_frame(p, r.fpstate);
        }
        sig::sanitize_fxsave(&mut image, fsdax_hal::arch::fpu::mxcsr_mask());
        fsdax_hal::task::load_user_fpu_image(&image);
    } else {
        fsdax_hal::task::reset_user_fpu();
    }
    set_regs(frame, &r.regs);
    {
        let mut st = p.signals.lock();
        st.set_blocked(r.mask);
        // Linux ignores every error but EFAULT here (a handler that moved
        // the alternate stack while on it keeps the current one).
        let _ = st.sigaltstack(Some(r.stack), r.regs.rsp);
    }
    r.regs.rax
}

fn bad_frame(p: &Process, at: u64) -> u64 {
    crate::kprintln!("process {} ({}): rt_sigreturn with an unreadable frame at {at:#x}: SIGSEGV", p.pid(), p.name());
    p.force(gp_info());
    0
}

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, ktest};

    use super::*;

    ktest!(the_attention_flag_follows_every_change, {
        let s = Signals::new(SignalState::new());
        kassert!(!s.attention());
        s.lock().set_blocked(sig::bit(sig::SIGUSR1));
        let _ = s.lock().send(sig::kill_info(sig::SIGUSR1, sig::SI_USER, 0));
        kassert!(!s.attention(), "blocked: nothing to do");
        s.lock().set_blocked(0);
        kassert!(s.attention(), "unblocked: deliver it");
        let next = s.lock().dequeue();
        kassert_eq!(next, Next::Die(sig::kill_info(sig::SIGUSR1, sig::SI_USER, 0)));
        kassert!(!s.attention());
        Ok(())
    });

    ktest!(trap_frame_registers_round_trip, {
        let f = TrapFrame {
            rax: 1,
            rbx: 2,
            r15: 15,
            rip: 0x40_1000,
            rsp: 0x7fff_0000,
            rflags: 0x246,
            ..TrapFrame::default()
        };
        let mut g = TrapFrame::default();
        set_regs(&mut g, &regs_of(&f));
        kassert_eq!((g.rax, g.rbx, g.r15, g.rip, g.rsp, g.rflags), (1, 2, 15, 0x40_1000, 0x7fff_0000, 0x246));
        kassert!(canonical(0x7fff_ffff_f000) && canonical(0xffff_8000_0000_0000));
        kassert!(!canonical(0x8000_0000_0000_0000));
        Ok(())
    });
}
