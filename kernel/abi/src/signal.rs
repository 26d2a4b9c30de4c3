//! Signals: numbers, default actions, masks, and the frame a handler runs
//! on (`struct rt_sigframe` of Linux x86_64), built and taken apart here so
//! the kernel only copies bytes.
//!
//! Frame layout, from the handler's `RSP` upwards (`RSP` is 8 mod 16, as
//! after a `call`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | return address: `sa_restorer` (which calls `rt_sigreturn`) |
//! | 8 | 304 | `ucontext`: flags, link, `uc_stack`, `uc_mcontext` (`struct sigcontext`), `uc_sigmask` |
//! | 312 | 128 | `siginfo` |
//!
//! and above it, 64-byte aligned, the 512-byte FXSAVE image that
//! `uc_mcontext.fpstate` points to. The frame goes below the interrupted
//! `RSP` minus the 128-byte red zone, or at the top of the alternate stack
//! (`SA_ONSTACK`).

use alloc::vec::Vec;

use crate::wire::{Reader, SigFields, Siginfo, StackT, Writer};

/// Signal numbers (Linux x86_64).
pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGQUIT: u32 = 3;
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGABRT: u32 = 6;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGKILL: u32 = 9;
pub const SIGUSR1: u32 = 10;
pub const SIGSEGV: u32 = 11;
pub const SIGUSR2: u32 = 12;
pub const SIGPIPE: u32 = 13;
pub const SIGALRM: u32 = 14;
pub const SIGTERM: u32 = 15;
pub const SIGSTKFLT: u32 = 16;
pub const SIGCHLD: u32 = 17;
pub const SIGCONT: u32 = 18;
pub const SIGSTOP: u32 = 19;
pub const SIGTSTP: u32 = 20;
pub const SIGTTIN: u32 = 21;
pub const SIGTTOU: u32 = 22;
pub const SIGURG: u32 = 23;
pub const SIGXCPU: u32 = 24;
pub const SIGXFSZ: u32 = 25;
pub const SIGVTALRM: u32 = 26;
pub const SIGPROF: u32 = 27;
pub const SIGWINCH: u32 = 28;
pub const SIGIO: u32 = 29;
pub const SIGPWR: u32 = 30;
pub const SIGSYS: u32 = 31;
/// Highest signal number (`_NSIG`).
pub const NSIG: u32 = 64;
/// The first real-time signal as the kernel counts them (musl's `SIGRTMIN`
/// is 35: it keeps 32-34 for itself).
pub const SIGRTMIN: u32 = 32;

/// `si_code` values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_TKILL: i32 = -6;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const BUS_ADRALN: i32 = 1;
pub const BUS_ADRERR: i32 = 2;
pub const BUS_OBJERR: i32 = 3;
pub const BUS_MCEERR_AR: i32 = 4;
pub const BUS_MCEERR_AO: i32 = 5;
pub const ILL_ILLOPC: i32 = 1;
pub const ILL_ILLOPN: i32 = 2;
pub const ILL_PRVOPC: i32 = 5;
pub const FPE_INTDIV: i32 = 1;
pub const TRAP_BRKPT: i32 = 1;
pub const TRAP_TRACE: i32 = 2;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;

/// `sa_flags`.
pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
/// Every flag fsdax accepts (others: EINVAL).
pub const SA_KNOWN: u64 =
    SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_RESTORER | SA_ONSTACK | SA_RESTART | SA_NODEFER | SA_RESETHAND;

/// `sigaltstack` flags.
pub const SS_ONSTACK: i32 = 1;
pub const SS_DISABLE: i32 = 2;
/// Smallest alternate stack (`MINSIGSTKSZ`).
pub const MINSIGSTKSZ: u64 = 2048;

/// `rt_sigprocmask` operations.
pub const SIG_BLOCK: u32 = 0;
pub const SIG_UNBLOCK: u32 = 1;
pub const SIG_SETMASK: u32 = 2;

/// A set of signals: bit `n - 1` for signal `n`.
pub type SigSet = u64;

/// The bit of signal `sig` (1..=64).
pub const fn bit(sig: u32) -> SigSet {
    1u64 << (sig - 1)
}

/// Signals that can be neither caught, blocked nor ignored.
pub const UNBLOCKABLE: SigSet = bit(SIGKILL) | bit(SIGSTOP);

/// Signals the CPU raises for the instruction that just ran: delivered
/// before any other pending signal (Linux `SYNCHRONOUS_MASK`).
pub const SYNCHRONOUS: SigSet = bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS);

/// Whether `sig` is a valid signal number.
pub fn valid(sig: u32) -> bool {
    (1..=NSIG).contains(&sig)
}

/// A mask as a process may set it: SIGKILL and SIGSTOP cannot be blocked.
pub fn sanitize_mask(m: SigSet) -> SigSet {
    m & !UNBLOCKABLE
}

/// What happens to a process when a signal with `SIG_DFL` arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// The process ends, killed by the signal.
    Terminate,
    /// Same as `Terminate` for fsdax (no core files; the status has no
    /// core-dump bit, as on Linux with a core size limit of 0).
    CoreDump,
    Ignore,
    /// Job control: fsdax has none, so stopping is treated as ignoring.
    Stop,
    Continue,
}

/// The default action of `sig` (Linux's table).
pub fn default_action(sig: u32) -> DefaultAction {
    match sig {
        SIGCHLD | SIGURG | SIGWINCH => DefaultAction::Ignore,
        SIGCONT => DefaultAction::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => DefaultAction::Stop,
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ | SIGSYS => {
            DefaultAction::CoreDump
        }
        _ => DefaultAction::Terminate,
    }
}

/// The signal's name, for people ("SIGSEGV"); real-time signals are
/// `SIGRTMIN+n` with SIGRTMIN = 32 (the kernel's view).
pub fn name(sig: u32) -> &'static str {
    const NAMES: [&str; 32] = [
        "SIG0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("SIGRT")
}

/// The signal to deliver next: synchronous signals first, then the lowest
/// number; `None` if every pending signal is blocked.
pub fn next_deliverable(pending: SigSet, blocked: SigSet) -> Option<u32> {
    let ready = pending & !sanitize_mask(blocked);
    let pick = if ready & SYNCHRONOUS != 0 { ready & SYNCHRONOUS } else { ready };
    (pick != 0).then(|| pick.trailing_zeros() + 1)
}

/// The signal and `si_code` Linux sends a process for a CPU exception it
/// raised in user mode (`vector`), other than a page fault (whose code
/// depends on the address: `SEGV_MAPERR`/`SEGV_ACCERR`). A privileged
/// instruction, I/O port access or other #GP is SIGSEGV with `SI_KERNEL`,
/// as on Linux.
pub fn for_trap(vector: u8) -> (u32, i32) {
    match vector {
        0 => (SIGFPE, FPE_INTDIV),
        1 | 3 => (SIGTRAP, SI_KERNEL),
        6 => (SIGILL, ILL_ILLOPN),
        16 | 19 => (SIGFPE, SI_KERNEL),
        17 => (SIGBUS, BUS_ADRALN),
        11 | 12 => (SIGBUS, SI_KERNEL),
        _ => (SIGSEGV, SI_KERNEL),
    }
}

/// The `siginfo` of a CPU exception raised in user mode at `rip` (not a
/// page fault: see [`for_trap`]). As on Linux, `si_addr` is the faulting
/// instruction for SIGILL and SIGFPE with a precise code, and 0 for
/// `SI_KERNEL` signals (#GP and the like) and SIGBUS.
pub fn trap_info(vector: u8, rip: u64) -> Siginfo {
    let (signo, code) = for_trap(vector);
    let addr = if matches!(signo, SIGILL | SIGFPE) && code != SI_KERNEL { rip } else { 0 };
    Siginfo { signo, errno: 0, code, fields: SigFields::Fault { addr, addr_lsb: 0 } }
}

/// The `siginfo` of a page fault at `addr` (`mapped`: the address lies in
/// an area whose rights forbid the access, `SEGV_ACCERR`; otherwise
/// `SEGV_MAPERR`).
pub fn page_fault_info(addr: u64, mapped: bool) -> Siginfo {
    let code = if mapped { SEGV_ACCERR } else { SEGV_MAPERR };
    Siginfo { signo: SIGSEGV, errno: 0, code, fields: SigFields::Fault { addr, addr_lsb: 0 } }
}

/// The `siginfo` of SIGBUS `BUS_ADRERR` at `addr`: an access to a file
/// mapping at or beyond the end of the file (or a page the file system
/// could not provide).
pub fn bus_adrerr_info(addr: u64) -> Siginfo {
    Siginfo { signo: SIGBUS, errno: 0, code: BUS_ADRERR, fields: SigFields::Fault { addr, addr_lsb: 0 } }
}

/// The `siginfo` of consumed poison (`BUS_MCEERR_AR`) or poison found in a
/// page the process maps (`BUS_MCEERR_AO`): `si_addr` is the page's user
/// address, `si_addr_lsb` its size (12: 4 KiB, 21: 2 MiB).
pub fn mce_info(code: i32, addr: u64, addr_lsb: u16) -> Siginfo {
    Siginfo { signo: SIGBUS, errno: 0, code, fields: SigFields::Fault { addr, addr_lsb } }
}

/// The `siginfo` of `kill` (`SI_USER`) or `tkill`/`tgkill` (`SI_TKILL`)
/// from process `pid` (0: the kernel's console).
pub fn kill_info(signo: u32, code: i32, pid: u32) -> Siginfo {
    Siginfo { signo, errno: 0, code, fields: SigFields::Kill { pid, uid: 0 } }
}

/// The signal carries a fault address (`si_addr` is meaningful).
pub fn has_fault_addr(info: &Siginfo) -> bool {
    matches!(info.signo, SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP)
        && info.code > 0
        && info.code != SI_KERNEL
        && matches!(info.fields, SigFields::Fault { .. })
}

/// The symbolic name of `si_code` for signal `sig` (`SEGV_MAPERR`), for
/// people; None for a code this table does not know.
pub fn code_name(sig: u32, code: i32) -> Option<&'static str> {
    Some(match (sig, code) {
        (_, SI_USER) => "SI_USER",
        (_, SI_KERNEL) => "SI_KERNEL",
        (_, SI_TKILL) => "SI_TKILL",
        (_, -1) => "SI_QUEUE",
        (SIGSEGV, SEGV_MAPERR) => "SEGV_MAPERR",
        (SIGSEGV, SEGV_ACCERR) => "SEGV_ACCERR",
        (SIGBUS, BUS_ADRALN) => "BUS_ADRALN",
        (SIGBUS, BUS_ADRERR) => "BUS_ADRERR",
        (SIGBUS, BUS_OBJERR) => "BUS_OBJERR",
        (SIGBUS, BUS_MCEERR_AR) => "BUS_MCEERR_AR",
        (SIGBUS, BUS_MCEERR_AO) => "BUS_MCEERR_AO",
        (SIGILL, ILL_ILLOPC) => "ILL_ILLOPC",
        (SIGILL, ILL_ILLOPN) => "ILL_ILLOPN",
        (SIGILL, ILL_PRVOPC) => "ILL_PRVOPC",
        (SIGFPE, FPE_INTDIV) => "FPE_INTDIV",
        (SIGTRAP, TRAP_BRKPT) => "TRAP_BRKPT",
        (SIGTRAP, TRAP_TRACE) => "TRAP_TRACE",
        (SIGCHLD, CLD_EXITED) => "CLD_EXITED",
        (SIGCHLD, CLD_KILLED) => "CLD_KILLED",
        (SIGCHLD, CLD_DUMPED) => "CLD_DUMPED",
        _ => return None,
    })
}

/// What a fault's `si_code` means, in words (`address not mapped`).
pub fn code_meaning(sig: u32, code: i32) -> Option<&'static str> {
    Some(match (sig, code) {
        (SIGSEGV, SEGV_MAPERR) => "address not mapped",
        (SIGSEGV, SEGV_ACCERR) => "access not allowed",
        (SIGBUS, BUS_ADRALN) => "misaligned address",
        (SIGBUS, BUS_ADRERR) => "no memory behind the address",
        (SIGBUS, BUS_OBJERR) => "hardware error",
        (SIGBUS, BUS_MCEERR_AR) => "poisoned memory",
        (SIGBUS, BUS_MCEERR_AO) => "poisoned memory, action optional",
        (SIGILL, ILL_ILLOPC) => "illegal opcode",
        (SIGILL, ILL_ILLOPN) => "illegal operand",
        (SIGILL, ILL_PRVOPC) => "privileged opcode",
        (SIGFPE, FPE_INTDIV) => "integer divide by zero",
        (SIGTRAP, TRAP_BRKPT) => "breakpoint",
        (SIGTRAP, TRAP_TRACE) => "single step",
        _ => return None,
    })
}

/// The status word `wait4` reports (`WIFEXITED`/`WIFSIGNALED` encoding).
pub fn wait_status(exit: Exit) -> i32 {
    match exit {
        Exit::Code(c) => i32::from(c) << 8,
        Exit::Signal(s) => (s & 0x7f) as i32,
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)` (the low 8 bits of the argument).
    Code(u8),
    /// Killed by a signal.
    Signal(u32),
}

impl Exit {
    /// The status a shell shows: the code, or 128 + the signal number.
    pub fn shell_status(self) -> u32 {
        match self {
            Exit::Code(c) => u32::from(c),
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// The user registers saved when a process entered the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// RFLAGS bits a process may change through `rt_sigreturn` (Linux
/// `FIX_EFLAGS`): CF PF AF ZF SF TF DF OF AC RF. IF stays set, IOPL 0.
pub const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x1_0000;
/// RFLAGS of a process: IF and the always-one bit 1.
pub const RFLAGS_BASE: u64 = 0x202;
const TF: u64 = 0x100;
const DF: u64 = 0x400;

/// Size of the FXSAVE image.
pub const FXSAVE_SIZE: usize = 512;
const UC_SIZE: usize = 304;
const SIGCONTEXT: usize = 8 + 40; // within the frame: pretcode + uc_mcontext offset
/// Size of `struct rt_sigframe` without the FPU image.
pub const FRAME_SIZE: usize = 8 + UC_SIZE + 128;
const INFO: usize = 8 + UC_SIZE;
const RED_ZONE: u64 = 128;
/// `uc_flags`: SS is saved, and restored strictly (what Linux sets).
const UC_FLAGS: u64 = 0x2 | 0x4;

/// A handler's registration (the decoded `rt_sigaction` argument).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}

/// `SIG_DFL` and `SIG_IGN`.
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

/// The alternate signal stack of a thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub size: u64,
    pub disabled: bool,
}

impl AltStack {
    /// Whether `rsp` lies on this alternate stack.
    pub fn contains(&self, rsp: u64) -> bool {
        !self.disabled && rsp > self.sp && rsp - self.sp <= self.size
    }

    /// `stack_t` as `sigaltstack` and `uc_stack` report it for a thread
    /// whose stack pointer is `rsp`.
    pub fn report(&self, rsp: u64) -> StackT {
        let flags = if self.disabled {
            SS_DISABLE
        } else if self.contains(rsp) {
            SS_ONSTACK
        } else {
            0
        };
        StackT { sp: self.sp, flags, size: self.size }
    }
}

/// Everything needed to set up a handler's frame.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub regs: UserRegs,
    pub fpu: &'a [u8; FXSAVE_SIZE],
    pub info: Siginfo,
    pub action: Action,
    /// The mask before delivery (saved in `uc_sigmask`, restored by
    /// `rt_sigreturn`).
    pub saved_mask: SigSet,
    pub altstack: AltStack,
    /// For faults: the trap number, error code and CR2 in `sigcontext`.
    pub trapno: u64,
    pub err: u64,
    pub cr2: u64,
    /// User CS and SS selectors, recorded in `sigcontext`.
    pub user_cs: u16,
    pub user_ss: u16,
}

/// The frame to write and the registers the handler starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where `bytes` go (the handler's initial `RSP`).
    pub addr: u64,
    /// The `rt_sigframe`, `FRAME_SIZE` bytes.
    pub bytes: Vec<u8>,
    /// Where the FPU image goes (64-byte aligned).
    pub fpstate_addr: u64,
    pub regs: UserRegs,
}

/// Why a frame cannot be set up; the process is then killed with SIGSEGV
/// (Linux `force_sigsegv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// x86_64 handlers need `SA_RESTORER` (libc always sets it).
    NoRestorer,
    /// The alternate stack is too small, or the frame would leave the user
    /// address range.
    BadStack,
}

/// Builds the frame for delivering `d` (Linux `setup_rt_frame`).
pub fn build_frame(d: &Delivery<'_>) -> Result<Frame, FrameError> {
    if d.action.flags & SA_RESTORER == 0 || d.action.restorer == 0 {
        return Err(FrameError::NoRestorer);
    }
    let mut sp = d.regs.rsp.wrapping_sub(RED_ZONE);
    let on_alt = d.action.flags & SA_ONSTACK != 0 && !d.altstack.disabled && !d.altstack.contains(d.regs.rsp);
    if on_alt {
        sp = d.altstack.sp.checked_add(d.altstack.size).ok_or(FrameError::BadStack)?;
    }
    let fpstate = sp.checked_sub(FXSAVE_SIZE as u64).ok_or(FrameError::BadStack)? & !63;
    let addr = (fpstate.checked_sub(FRAME_SIZE as u64).ok_or(FrameError::BadStack)? & !15).wrapping_sub(8);
    if !crate::is_user_range(addr, fpstate + FXSAVE_SIZE as u64 - addr) {
        return Err(FrameError::BadStack);
    }
    if on_alt && addr < d.altstack.sp {
        return Err(FrameError::BadStack);
    }

    let mut bytes = alloc::vec![0u8; FRAME_SIZE];
    let mut w = Writer(&mut bytes);
    w.u64(0, d.action.restorer);
    w.u64(8, UC_FLAGS);
    w.u64(16, 0); // uc_link
    let st = d.altstack.report(d.regs.rsp).encode();
    w.bytes(24, &st);
    let r = &d.regs;
    let sc = SIGCONTEXT;
    for (i, v) in [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.rflags,
    ]
    .into_iter()
    .enumerate()
    {
        w.u64(sc + 8 * i, v);
    }
    w.u16(sc + 144, d.user_cs);
    w.u16(sc + 150, d.user_ss);
    w.u64(sc + 152, d.err);
    w.u64(sc + 160, d.trapno);
    w.u64(sc + 168, d.saved_mask);
    w.u64(sc + 176, d.cr2);
    w.u64(sc + 184, fpstate);
    w.u64(8 + 296, d.saved_mask); // uc_sigmask
    w.bytes(INFO, &d.info.encode());

    let mut regs = d.regs;
    regs.rip = d.action.handler;
    regs.rsp = addr;
    regs.rdi = u64::from(d.info.signo);
    regs.rsi = addr + INFO as u64;
    regs.rdx = addr + 8;
    regs.rax = 0;
    regs.rflags &= !(TF | DF);
    Ok(Frame { addr, bytes, fpstate_addr: fpstate, regs })
}

/// The mask while the handler runs: the handler's `sa_mask`, plus the
/// signal itself unless `SA_NODEFER`, added to the mask before delivery.
pub fn handler_mask(saved: SigSet, action: &Action, sig: u32) -> SigSet {
    let mut m = saved | action.mask;
    if action.flags & SA_NODEFER == 0 {
        m |= bit(sig);
    }
    sanitize_mask(m)
}

/// What `rt_sigreturn` restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub regs: UserRegs,
    pub mask: SigSet,
    /// Address of the FXSAVE image to restore, if any (0 = none).
    pub fpstate: u64,
    /// The `uc_stack` the process left there (Linux restores the
    /// alternate-stack setting from it).
    pub stack: StackT,
}

/// Decodes the `rt_sigframe` that `rt_sigreturn` finds at `RSP - 8`
/// (`frame` holds [`FRAME_SIZE`] bytes copied from there). `current_rflags`
/// are the flags at the system call; only [`USER_RFLAGS`] bits come from
/// the frame, so a process cannot raise IOPL or clear IF.
pub fn parse_sigreturn(frame: &[u8], current_rflags: u64) -> Restored {
    let r = Reader(frame);
    let sc = SIGCONTEXT;
    let g = |i: usize| r.u64(sc + 8 * i);
    let regs = UserRegs {
        r8: g(0),
        r9: g(1),
        r10: g(2),
        r11: g(3),
        r12: g(4),
        r13: g(5),
        r14: g(6),
        r15: g(7),
        rdi: g(8),
        rsi: g(9),
        rbp: g(10),
        rbx: g(11),
        rdx: g(12),
        rax: g(13),
        rcx: g(14),
        rsp: g(15),
        rip: g(16),
        rflags: (current_rflags & !USER_RFLAGS) | (g(17) & USER_RFLAGS) | RFLAGS_BASE,
    };
    Restored {
        regs,
        mask: sanitize_mask(r.u64(8 + 296)),
        fpstate: r.u64(sc + 184),
        stack: StackT::decode(&frame[24.min(frame.len())..]),
    }
}

/// Makes an FXSAVE image from a process safe to load: MXCSR bits outside
/// `mxcsr_mask` would make `fxrstor` fault in the kernel.
pub fn sanitize_fxsave(image: &mut [u8; FXSAVE_SIZE], mxcsr_mask: u32) {
    let mxcsr = u32::from_le_bytes([image[24], image[25], image[26], image[27]]) & mxcsr_mask;
    image[24..28].copy_from_slice(&mxcsr.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_map_to_linux_signals() {
        assert_eq!(for_trap(13), (SIGSEGV, SI_KERNEL), "#GP: cli, hlt, CR3, port I/O");
        assert_eq!(for_trap(6), (SIGILL, ILL_ILLOPN));
        assert_eq!(for_trap(0), (SIGFPE, FPE_INTDIV));
        assert_eq!(for_trap(3).0, SIGTRAP);
        assert_eq!(for_trap(17).0, SIGBUS);
        assert_eq!(Exit::Signal(SIGSEGV).shell_status(), 139);
        assert_eq!(wait_status(Exit::Signal(SIGSEGV)), 11);
        assert_eq!(wait_status(Exit::Code(3)), 3 << 8);
    }

    fn delivery(fpu: &[u8; 512]) -> Delivery<'_> {
        Delivery {
            regs: UserRegs {
                rsp: 0x7fff_0000_1008,
                rip: 0x40_1234,
                rflags: 0x202 | TF,
                rax: 99,
                rbx: 5,
                ..Default::default()
            },
            fpu,
            info: Siginfo {
                signo: SIGSEGV,
                errno: 0,
                code: SEGV_MAPERR,
                fields: SigFields::Fault { addr: 0, addr_lsb: 0 },
            },
            action: Action {
                handler: 0x40_2000,
                flags: SA_SIGINFO | SA_RESTORER,
                restorer: 0x40_3000,
                mask: bit(SIGUSR1),
            },
            saved_mask: bit(SIGUSR2),
            altstack: AltStack { sp: 0, size: 0, disabled: true },
            trapno: 14,
            err: 4,
            cr2: 0,
            user_cs: 0x2b,
            user_ss: 0x23,
        }
    }

    #[test]
    fn frame_is_aligned_and_below_the_red_zone() {
        let fpu = [0u8; 512];
        let d = delivery(&fpu);
        let f = build_frame(&d).unwrap();
        assert_eq!(f.addr % 16, 8, "handler entry looks like after a call");
        assert_eq!(f.fpstate_addr % 64, 0);
        assert!(f.fpstate_addr + 512 <= d.regs.rsp - RED_ZONE);
        assert!(f.addr + FRAME_SIZE as u64 <= f.fpstate_addr);
        assert_eq!(f.regs.rip, 0x40_2000);
        assert_eq!(f.regs.rdi, u64::from(SIGSEGV));
        assert_eq!(f.regs.rsi, f.addr + INFO as u64);
        assert_eq!(f.regs.rdx, f.addr + 8);
        assert_eq!(f.regs.rflags & TF, 0);
        let r = Reader(&f.bytes);
        assert_eq!(r.u64(0), 0x40_3000, "returns into the restorer");
        assert_eq!(r.u32(INFO), SIGSEGV);
        assert_eq!(r.i32(INFO + 8), SEGV_MAPERR);
        // musl's gregs[REG_RIP] (16) and gregs[REG_RSP] (15).
        assert_eq!(r.u64(SIGCONTEXT + 16 * 8), 0x40_1234);
        assert_eq!(r.u64(SIGCONTEXT + 15 * 8), 0x7fff_0000_1008);
        assert_eq!(r.u64(SIGCONTEXT + 13 * 8), 99, "REG_RAX");
    }

    #[test]
    fn sigreturn_restores_and_sanitizes() {
        let fpu = [0u8; 512];
        let d = delivery(&fpu);
        let f = build_frame(&d).unwrap();
        let mut bytes = f.bytes.clone();
        // The process tries to set IOPL 3 and clear IF.
        let fl = SIGCONTEXT + 17 * 8;
        bytes[fl..fl + 8].copy_from_slice(&(0x3000u64 | 0x1).to_le_bytes());
        let back = parse_sigreturn(&bytes, 0x202);
        assert_eq!(back.regs.rip, 0x40_1234);
        assert_eq!(back.regs.rsp, 0x7fff_0000_1008);
        assert_eq!(back.regs.rbx, 5);
        assert_eq!(back.regs.rflags & 0x3000, 0, "no IOPL");
        assert_eq!(back.regs.rflags & 0x200, 0x200, "IF stays on");
        assert_eq!(back.regs.rflags & 1, 1, "CF comes from the frame");
        assert_eq!(back.mask, bit(SIGUSR2));
        assert_eq!(back.fpstate, f.fpstate_addr);
        // A mask with SIGKILL is cleaned.
        let m = 8 + 296;
        bytes[m..m + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_sigreturn(&bytes, 0x202).mask, !UNBLOCKABLE);
    }

    #[test]
    fn alternate_stack() {
        let fpu = [0u8; 512];
        let mut d = delivery(&fpu);
        d.action.flags |= SA_ONSTACK;
        d.altstack = AltStack { sp: 0x10_0000, size: 0x4000, disabled: false };
        let f = build_frame(&d).unwrap();
        assert!(f.addr >= 0x10_0000 && f.addr < 0x10_4000);
        let st = StackT::decode(&f.bytes[24..48]);
        assert_eq!(st, StackT { sp: 0x10_0000, flags: 0, size: 0x4000 });
        // Already on the alternate stack: nest below the current RSP.
        d.regs.rsp = 0x10_3000;
        let g = build_frame(&d).unwrap();
        assert!(g.addr < 0x10_3000 - RED_ZONE);
        // Too small: no frame fits.
        d.regs.rsp = 0x7fff_0000_1008;
        d.altstack.size = 256;
        assert_eq!(build_frame(&d), Err(FrameError::BadStack));
    }

    #[test]
    fn no_restorer_or_bad_stack_is_an_error() {
        let fpu = [0u8; 512];
        let mut d = delivery(&fpu);
        d.action.flags &= !SA_RESTORER;
        assert_eq!(build_frame(&d), Err(FrameError::NoRestorer));
        let mut d = delivery(&fpu);
        d.regs.rsp = 0x100;
        assert_eq!(build_frame(&d), Err(FrameError::BadStack));
        d.regs.rsp = 0xffff_8000_0000_1000;
        assert_eq!(build_frame(&d), Err(FrameError::BadStack));
    }

    #[test]
    fn delivery_order_and_masks() {
        assert_eq!(next_deliverable(bit(SIGUSR1) | bit(SIGSEGV), 0), Some(SIGSEGV));
        assert_eq!(next_deliverable(bit(SIGUSR1) | bit(SIGTERM), 0), Some(SIGUSR1));
        assert_eq!(next_deliverable(bit(SIGUSR1), bit(SIGUSR1)), None);
        assert_eq!(next_deliverable(bit(SIGKILL), u64::MAX), Some(SIGKILL));
        assert_eq!(next_deliverable(bit(64), 0), Some(64));
        let a = Action { mask: bit(SIGUSR2), ..Default::default() };
        assert_eq!(handler_mask(0, &a, SIGUSR1), bit(SIGUSR1) | bit(SIGUSR2));
        let a = Action { flags: SA_NODEFER, ..a };
        assert_eq!(handler_mask(0, &a, SIGUSR1), bit(SIGUSR2));
    }

    #[test]
    fn fault_siginfo_follows_linux() {
        // #UD and #DE report the instruction; #GP is SI_KERNEL without an
        // address (Linux's force_sig); #AC is BUS_ADRALN.
        let ud = trap_info(6, 0x40_1000);
        assert_eq!((ud.signo, ud.code), (SIGILL, ILL_ILLOPN));
        assert_eq!(ud.fields, SigFields::Fault { addr: 0x40_1000, addr_lsb: 0 });
        assert!(has_fault_addr(&ud));
        let de = trap_info(0, 0x40_2000);
        assert_eq!((de.signo, de.code), (SIGFPE, FPE_INTDIV));
        assert_eq!(de.fields, SigFields::Fault { addr: 0x40_2000, addr_lsb: 0 });
        let gp = trap_info(13, 0x40_3000);
        assert_eq!((gp.signo, gp.code), (SIGSEGV, SI_KERNEL));
        assert_eq!(gp.fields, SigFields::Fault { addr: 0, addr_lsb: 0 });
        assert!(!has_fault_addr(&gp));
        assert_eq!(trap_info(3, 1).code, SI_KERNEL);
        let pf = page_fault_info(0x1008, false);
        assert_eq!((pf.signo, pf.code), (SIGSEGV, SEGV_MAPERR));
        assert_eq!(page_fault_info(0x1008, true).code, SEGV_ACCERR);
        let mc = mce_info(BUS_MCEERR_AR, 0x7000_0000, 12);
        let b = mc.encode();
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0x7000_0000, "si_addr at 16");
        assert_eq!(u16::from_le_bytes([b[24], b[25]]), 12, "si_addr_lsb at 24");
        let k = kill_info(SIGUSR1, SI_TKILL, 5);
        assert!(!has_fault_addr(&k));
        assert_eq!(code_name(SIGSEGV, SEGV_MAPERR), Some("SEGV_MAPERR"));
        assert_eq!(code_name(SIGBUS, BUS_MCEERR_AR), Some("BUS_MCEERR_AR"));
        assert_eq!(code_name(SIGUSR1, SI_TKILL), Some("SI_TKILL"));
        assert_eq!(code_name(SIGSEGV, 99), None);
        assert_eq!(code_meaning(SIGSEGV, SEGV_ACCERR), Some("access not allowed"));
    }

    #[test]
    fn statuses() {
        assert_eq!(wait_status(Exit::Code(3)), 0x300);
        assert_eq!(wait_status(Exit::Signal(SIGSEGV)), 11);
        assert_eq!(Exit::Signal(SIGSEGV).shell_status(), 139);
        assert_eq!(Exit::Signal(SIGBUS).shell_status(), 135);
        assert_eq!(default_action(SIGCHLD), DefaultAction::Ignore);
        assert_eq!(default_action(SIGBUS), DefaultAction::CoreDump);
        assert_eq!(default_action(40), DefaultAction::Terminate);
        assert_eq!(name(SIGBUS), "SIGBUS");
    }

    #[test]
    fn fxsave_mxcsr_is_masked() {
        let mut img = [0u8; 512];
        img[24..28].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        sanitize_fxsave(&mut img, 0xffbf);
        assert_eq!(u32::from_le_bytes([img[24], img[25], img[26], img[27]]), 0xffbf);
    }
}
