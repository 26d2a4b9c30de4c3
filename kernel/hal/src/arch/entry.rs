//! Kernel entry and exit: the `SYSCALL` entry, the stubs of every IDT
//! vector that may interrupt user mode, the one register frame they all
//! build ([`TrapFrame`]), and the way back to user mode (`SYSRET` when it is
//! safe, `IRETQ` otherwise).
//!
//! ```text
//! user ──syscall──► fsdax_syscall_entry: swapgs, user RSP -> per-CPU, task's
//!                   kernel stack from per-CPU, push the frame (iretq layout
//!                   + vector 0x100 + GPRs) ─► syscall_dispatch(&mut frame)
//!                   ─► kernel's system-call handler ─► exit_to_user ─►
//!                   SYSRET (frame checked by `sysret_allowed`) or IRETQ
//! user ──int/exc──► stub (push 0 if the CPU pushed no error code, push the
//!                   vector) ─► fsdax_trap_common: swapgs if from user, push
//!                   GPRs ─► trap_dispatch(&mut frame) ─► exit_to_user if
//!                   returning to user ─► fsdax_trap_return: pop, swapgs if
//!                   to user, IRETQ
//! user ──#MC──────► fsdax_mc_entry on its IST stack: the frame is moved to
//!                   the task's kernel stack and handled like a trap (it may
//!                   kill the process at the exit to user mode); a #MC in
//!                   kernel mode stays on the IST stack and checks GS_BASE to
//!                   know whether to swapgs (it may hit the entry window)
//! ```
//!
//! Invariants: in kernel mode GS_BASE is the per-CPU area (swapgs on every
//! entry from and exit to user mode); RFLAGS.AC and DF are clear in kernel
//! code (SFMASK for SYSCALL, the stubs for everything else), so SMAP
//! protects every kernel access to user memory except inside the user-copy
//! routines; the kernel stack top the SYSCALL entry loads is the running
//! task's (written with TSS.rsp0 at every context switch).

use core::arch::{asm, global_asm, naked_asm};
use core::cell::UnsafeCell;

use crate::arch::{cpu, msr};

/// The vector number a SYSCALL frame carries (no IDT vector has it).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// User code selector (GDT index 4, RPL 3).
pub const USER_CS: u64 = 0x23;
/// User data/stack selector (GDT index 3, RPL 3).
pub const USER_SS: u64 = 0x1b;
/// Kernel code selector.
pub const KERNEL_CS: u64 = 0x08;

/// RFLAGS bits cleared on SYSCALL: TF, IF, DF, IOPL, NT, AC.
pub const SFMASK: u64 = 0x47700;
/// RFLAGS: trap flag.
pub const RFLAGS_TF: u64 = 1 << 8;
/// RFLAGS: resume flag.
pub const RFLAGS_RF: u64 = 1 << 16;
/// RFLAGS bits a process may hold: CF PF AF ZF SF TF DF OF AC ID, and RF.
const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x20_0000 | 0x1_0000;
/// RFLAGS of a process, always: IF and the reserved bit 1.
const RFLAGS_FIXED: u64 = 0x202;

/// One past the highest user address (the last page below the canonical
/// boundary stays unmapped; see `fsdax_mm::layout::USER_END`).
pub const USER_END: u64 = fsdax_mm::layout::USER_END;

/// The registers of a CPU that entered the kernel, as the entry stubs save
/// them on the kernel stack: general-purpose registers, the vector (or
/// [`SYSCALL_VECTOR`]), the error code (0 if the exception has none), and
/// the `IRETQ` frame. For a system call, `rcx` and `r11` hold the user's
/// RIP and RFLAGS as the SYSCALL instruction left them.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The IDT vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// The exception's error code (0 if it has none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 22 * 8 && FRAME_SIZE.is_multiple_of(16));

impl TrapFrame {
    /// Whether the CPU was in user mode (CPL 3) when it entered.
    pub fn from_user_mode(&self) -> bool {
        self.cs & 3 == 3
    }

    /// A frame that starts user code at `rip` with stack `rsp`, all other
    /// registers zero.
    pub fn new_user(rip: u64, rsp: u64) -> TrapFrame {
        TrapFrame { rip, rsp, cs: USER_CS, ss: USER_SS, rflags: RFLAGS_FIXED, ..TrapFrame::default() }
    }

    /// Forces what returning to user mode must never carry from a frame the
    /// kernel (or a process, through a signal frame) changed: user CS and SS,
    /// interrupts on, IOPL 0, no NT/VM flags.
    pub fn sanitize_for_user(&mut self) {
        self.cs = USER_CS;
        self.ss = USER_SS;
        self.rflags = (self.rflags & USER_RFLAGS) | RFLAGS_FIXED;
    }
}

/// Whether returning from a system call with this (sanitized) frame may use
/// SYSRET instead of IRETQ: RIP must be a user address below [`USER_END`]
/// (so it is canonical: SYSRET with a non-canonical RCX faults in ring 0 on
/// Intel CPUs, with the user's GS and stack), RCX and R11 must be what
/// SYSRET loads RIP and RFLAGS from (so every register the process sees is
/// the frame's), RFLAGS must not hold RF or TF (SYSRET cannot restore RF and
/// a TF set by SYSRET traps on the wrong instruction), and the segments must
/// be the user's (SYSRET loads fixed selectors).
pub fn sysret_allowed(f: &TrapFrame) -> bool {
    f.rip < USER_END
        && f.rcx == f.rip
        && f.r11 == f.rflags
        && f.rflags & (RFLAGS_RF | RFLAGS_TF) == 0
        && f.cs == USER_CS
        && f.ss == USER_SS
}

// ---------------------------------------------------------------- per-CPU

/// The per-CPU area GS points to in kernel mode. Offsets are used by the
/// entry assembly: 0 user RSP scratch (SYSCALL), 8 kernel stack top of the
/// running task, 16 scratch of the user-mode #MC entry.
#[repr(C, align(64))]
struct PerCpu {
    user_rsp: UnsafeCell<u64>,
    kernel_rsp: UnsafeCell<u64>,
    mc_scratch: UnsafeCell<u64>,
    /// A frame being handed to [`enter_user`] (interrupts off until it is
    /// copied onto the kernel stack).
    enter_frame: UnsafeCell<TrapFrame>,
}

// SAFETY: each CPU touches only its own slot (one CPU today: slot 0), with
// interrupts off: the entry assembly, `set_kernel_stack_top` and
// `enter_user`.
unsafe impl Sync for PerCpu {}

const MAX_CPUS: usize = 1;

static PERCPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        user_rsp: UnsafeCell::new(0),
        kernel_rsp: UnsafeCell::new(0),
        mc_scratch: UnsafeCell::new(0),
        enter_frame: UnsafeCell::new(TrapFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error_code: 0,
            rip: 0,
            cs: 0,
            rflags: 0,
            rsp: 0,
            ss: 0,
        }),
    }
}; MAX_CPUS];

fn this_cpu() -> &'static PerCpu {
    PERCPU.get(cpu::cpu_index()).unwrap_or(&PERCPU[0])
}

/// Records the running task's kernel stack top for the SYSCALL entry (the
/// context switch calls it with TSS.rsp0).
pub(crate) fn set_kernel_stack_top(top: u64) {
    cpu::without_interrupts(|| {
        // SAFETY: this CPU's slot, interrupts off: the SYSCALL entry, the
        // only reader, cannot run on this CPU meanwhile.
        unsafe { this_cpu().kernel_rsp.get().write_volatile(top) };
    });
}

/// The running task's kernel stack top (0 for the boot context).
pub fn kernel_stack_top() -> u64 {
    // SAFETY: this CPU's slot; a plain read of a word only this CPU writes.
    unsafe { this_cpu().kernel_rsp.get().read_volatile() }
}

/// Sets up SYSCALL/SYSRET and the per-CPU area. Boot, interrupts off,
/// after the GDT (whose selectors must match [`USER_CS`] and friends).
pub(crate) fn init() {
    let sel = crate::arch::gdt::selectors().expect("gdt::init ran first");
    assert!(
        u64::from(sel.kernel_code.0) == KERNEL_CS
            && u64::from(sel.user_code.0) == USER_CS
            && u64::from(sel.user_data.0) == USER_SS,
        "GDT order does not match SYSCALL/SYSRET"
    );
    let percpu = this_cpu() as *const PerCpu as u64;
    // STAR[47:32]: SYSCALL CS (SS = +8); STAR[63:48]: SYSRET base, CS =
    // base + 16, SS = base + 8, both with RPL 3.
    let star = (0x10u64 << 48) | (KERNEL_CS << 32);
    // SAFETY: these MSRs exist on every x86_64 CPU (SYSCALL is part of the
    // architecture); LSTAR is the entry below, which expects exactly this
    // STAR/SFMASK; GS_BASE points at this CPU's per-CPU area, which is what
    // kernel-mode code expects, and KERNEL_GS_BASE (the user's, swapped in
    // on exit to user mode) starts at 0. EFER.SCE only enables SYSCALL.
    unsafe {
        msr::write(msr::IA32_STAR, star);
        msr::write(msr::IA32_LSTAR, fsdax_syscall_entry as *const () as u64);
        msr::write(msr::IA32_FMASK, SFMASK);
        msr::write(msr::IA32_GS_BASE, percpu);
        msr::write(msr::IA32_KERNEL_GS_BASE, 0);
        msr::write(msr::IA32_EFER, msr::read(msr::IA32_EFER) | 1);
    }
}

// ---------------------------------------------------------------- stubs

// One stub per IDT vector, 16 bytes apart: push 0 where the CPU pushes no
// error code, push the vector, go to the common entry. Their addresses are
// listed, in vector order, in the `fsdax_trap_stubs` section for the IDT.
global_asm!(
    ".section .text.fsdax_trap_stubs,\"ax\"",
    ".balign 16",
    ".set fsdax_vec, 0",
    ".rept 256",
    ".balign 16",
    "1:",
    ".if (fsdax_vec == 8) || (fsdax_vec == 10) || (fsdax_vec == 11) || (fsdax_vec == 12) || (fsdax_vec == 13) || (fsdax_vec == 14) || (fsdax_vec == 17) || (fsdax_vec == 21) || (fsdax_vec == 29) || (fsdax_vec == 30)",
    ".else",
    "pushq $0",
    ".endif",
    "pushq $fsdax_vec",
    "jmp fsdax_trap_common",
    ".pushsection fsdax_trap_stubs,\"aw\"",
    ".quad 1b",
    ".popsection",
    ".set fsdax_vec, fsdax_vec + 1",
    ".endr",
    options(att_syntax)
);

// The common entry, the return path, SYSCALL, and the #MC entry. The
// general registers are saved and restored in one order everywhere (the
// macros below): `TrapFrame`'s.
global_asm!(
    ".macro fsdax_push_gprs",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    ".endm",
    ".macro fsdax_pop_gprs",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    ".endm",
    ".section .text.fsdax_entry,\"ax\"",
    ".global fsdax_trap_common",
    "fsdax_trap_common:",
    // [rsp] vector, [rsp+8] error code, [rsp+16] rip, [rsp+24] cs
    "    test byte ptr [rsp + 24], 3",
    "    jz fsdax_trap_common_saved",
    "    swapgs",
    ".global fsdax_trap_common_saved",
    "fsdax_trap_common_saved:",
    "    fsdax_push_gprs",
    "    cld",
    // Clear AC (an interrupt does not), so SMAP guards the handler.
    "    pushfq",
    "    and qword ptr [rsp], -0x40001",
    "    popfq",
    "    mov rdi, rsp",
    "    call {trap_dispatch}",
    ".global fsdax_trap_return",
    "fsdax_trap_return:",
    "    fsdax_pop_gprs",
    "    add rsp, 16",
    "    test byte ptr [rsp + 8], 3",
    "    jz 2f",
    "    swapgs",
    "2:  iretq",
    "",
    ".global fsdax_syscall_entry",
    "fsdax_syscall_entry:",
    "    swapgs",
    "    mov qword ptr gs:[0], rsp",
    "    mov rsp, qword ptr gs:[8]",
    "    push {user_ss}",
    "    push qword ptr gs:[0]",
    "    push r11",
    "    push {user_cs}",
    "    push rcx",
    "    push 0",
    "    push {syscall_vector}",
    "    fsdax_push_gprs",
    "    mov rdi, rsp",
    "    call {syscall_dispatch}",
    "    test rax, rax",
    "    jz fsdax_trap_return",
    "    fsdax_pop_gprs",
    "    add rsp, 16",
    "    mov rcx, qword ptr [rsp]",
    "    mov r11, qword ptr [rsp + 16]",
    "    mov rsp, qword ptr [rsp + 24]",
    "    swapgs",
    "    sysretq",
    "",
    ".global fsdax_mc_entry",
    "fsdax_mc_entry:",
    "    push 0",
    "    push 18",
    "    test byte ptr [rsp + 24], 3",
    "    jnz 3f",
    // Kernel mode: stay on the IST stack; swapgs only if GS_BASE is not
    // the kernel's already (the #MC may hit the entry window).
    "    fsdax_push_gprs",
    "    cld",
    "    pushfq",
    "    and qword ptr [rsp], -0x40001",
    "    popfq",
    "    mov ecx, 0xc0000101",
    "    rdmsr",
    "    xor ebx, ebx",
    "    test edx, edx",
    "    js 1f",
    "    swapgs",
    "    mov ebx, 1",
    "1:  mov rdi, rsp",
    "    call {mc_kernel}",
    "    test ebx, ebx",
    "    jz 2f",
    "    swapgs",
    "2:  fsdax_pop_gprs",
    "    add rsp, 16",
    "    iretq",
    // User mode: move vector..ss onto the task's kernel stack and continue
    // as an ordinary trap from user mode.
    "3:  swapgs",
    "    mov qword ptr gs:[16], rax",
    "    mov rax, rsp",
    "    mov rsp, qword ptr gs:[8]",
    "    push qword ptr [rax + 48]",
    "    push qword ptr [rax + 40]",
    "    push qword ptr [rax + 32]",
    "    push qword ptr [rax + 24]",
    "    push qword ptr [rax + 16]",
    "    push qword ptr [rax + 8]",
    "    push qword ptr [rax]",
    "    mov rax, qword ptr gs:[16]",
    "    jmp fsdax_trap_common_saved",
    trap_dispatch = sym trap_dispatch,
    syscall_dispatch = sym syscall_dispatch,
    mc_kernel = sym crate::mce::dispatch_kernel_mode,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
    syscall_vector = const SYSCALL_VECTOR,
);

extern "C" {
    fn fsdax_syscall_entry();
    fn fsdax_mc_entry();
}

linker_set!(fn trap_stubs() -> [u64], "__start_fsdax_trap_stubs", "__stop_fsdax_trap_stubs");

/// The entry stub of IDT vector `v`.
pub(crate) fn stub_address(v: u8) -> u64 {
    trap_stubs()[usize::from(v)]
}

/// The machine-check entry (installed with its IST stack).
pub(crate) fn mc_entry_address() -> u64 {
    fsdax_mc_entry as *const () as u64
}

/// Vectors whose exceptions push an error code.
pub(crate) fn has_error_code(v: u64) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

// ---------------------------------------------------------------- dispatch

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let from_user = frame.from_user_mode();
    crate::trap::dispatch(frame);
    if from_user {
        exit_to_user(frame);
    }
}

extern "C" fn syscall_dispatch(frame: &mut TrapFrame) -> u64 {
    cpu::enable_interrupts();
    crate::trap::dispatch_syscall(frame);
    exit_to_user(frame);
    u64::from(sysret_allowed(frame))
}

/// The last kernel code before a return to user mode: the kernel's hook
/// (signals, deferred kills) with interrupts on, then interrupts off and the
/// frame sanitized.
fn exit_to_user(frame: &mut TrapFrame) {
    cpu::enable_interrupts();
    crate::trap::dispatch_exit_to_user(frame);
    cpu::disable_interrupts();
    frame.sanitize_for_user();
}

extern "C" fn user_return_prepare(frame: &mut TrapFrame) {
    exit_to_user(frame);
}

/// Starts user mode with `frame` on the current task's kernel stack (the
/// frame a trap from user mode would have left there): the kernel's
/// exit-to-user hook runs first, then IRETQ. The current task must have a
/// kernel stack and its user address space loaded; everything on its
/// kernel stack is abandoned.
pub fn enter_user(frame: &TrapFrame) -> ! {
    cpu::disable_interrupts();
    let top = kernel_stack_top();
    if top == 0 {
        crate::console::emergency(format_args!("\nKERNEL PANIC: enter_user without a task kernel stack\n"));
        crate::power::exit_qemu(fsdax_ktest::protocol::ExitCode::KernelPanic);
    }
    let cell = this_cpu().enter_frame.get();
    // SAFETY: this CPU's scratch frame, interrupts off: nothing else uses it
    // until `fsdax_enter_user` copied it onto the kernel stack.
    unsafe { cell.write(*frame) };
    // SAFETY: `top` is the running task's kernel stack top (TSS.rsp0): the
    // task abandons its stack (this never returns) and the frame is built
    // at the top, where the CPU and the entry stubs put it; the source is
    // the per-CPU scratch, not on that stack.
    unsafe { fsdax_enter_user(cell, top) }
}

/// # Safety
/// `src` must be a frame outside the stack that `top` ends; `top` must be
/// the running task's kernel stack top; interrupts off.
#[unsafe(naked)]
unsafe extern "C" fn fsdax_enter_user(src: *const TrapFrame, top: u64) -> ! {
    naked_asm!(
        "mov rsp, rsi",
        "sub rsp, {size}",
        "mov rsi, rdi",
        "mov rdi, rsp",
        "mov ecx, {words}",
        "rep movsq",
        "mov rdi, rsp",
        "call {prepare}",
        "jmp fsdax_trap_return",
        size = const FRAME_SIZE,
        words = const FRAME_SIZE / 8,
        prepare = sym user_return_prepare,
    )
}

/// Reads CR2 (the page-fault address).
pub(crate) fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, ktest};

    use super::*;

    ktest!(sysret_only_for_frames_it_can_restore, {
        let mut f = TrapFrame::new_user(0x40_1000, 0x7fff_0000);
        f.rcx = f.rip;
        f.r11 = f.rflags;
        kassert!(sysret_allowed(&f), "an ordinary syscall return");
        let mut g = f;
        g.rip = USER_END;
        g.rcx = g.rip;
        kassert!(!sysret_allowed(&g), "RIP at the last (unmapped) page");
        g.rip = 0x8000_0000_0000;
        g.rcx = g.rip;
        kassert!(!sysret_allowed(&g), "non-canonical RIP");
        let mut g = f;
        g.rcx = 0x1234;
        kassert!(!sysret_allowed(&g), "RCX differs from RIP (exec, signal delivery)");
        let mut g = f;
        g.rflags |= RFLAGS_TF;
        g.r11 = g.rflags;
        kassert!(!sysret_allowed(&g), "trap flag");
        let mut g = f;
        g.rflags |= RFLAGS_RF;
        g.r11 = g.rflags;
        kassert!(!sysret_allowed(&g), "resume flag");
        let mut g = f;
        g.r11 = 0;
        kassert!(!sysret_allowed(&g), "R11 differs from RFLAGS");
        let mut g = f;
        g.cs = KERNEL_CS;
        kassert!(!sysret_allowed(&g), "kernel CS");
        Ok(())
    });

    ktest!(sanitize_forces_user_segments_and_flags, {
        let mut f =
            TrapFrame { cs: KERNEL_CS, ss: 0x10, rflags: 0x3000 | 0x4000 | 0x2_0000 | 0x1, ..Default::default() };
        f.sanitize_for_user();
        kassert_eq!(f.cs, USER_CS);
        kassert_eq!(f.ss, USER_SS);
        kassert_eq!(f.rflags, 0x203, "IOPL, NT and VM dropped; IF and bit 1 set; CF kept");
        Ok(())
    });

    ktest!(every_vector_has_a_stub, {
        kassert_eq!(trap_stubs().len(), 256);
        // 16 bytes apart, in order.
        for v in 1..256usize {
            kassert_eq!(trap_stubs()[v] - trap_stubs()[v - 1], 16);
        }
        kassert!(has_error_code(14) && has_error_code(8) && !has_error_code(3) && !has_error_code(0x30));
        Ok(())
    });
}
