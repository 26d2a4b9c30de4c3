//! The IDT: every exception and interrupt vector enters through a stub of
//! [`super::entry`], which saves the full register frame and hands it to
//! [`crate::trap`] (exceptions go to the kernel's fault or user-trap
//! handler; page faults at a user-copy instruction are resolved or end the
//! copy; the timer's tick goes to the timer handler). The machine check has
//! its own entry on an IST stack ([`super::entry`], [`crate::mce`]); the
//! double fault and NMI keep plain handlers on their IST stacks: neither
//! returns to user mode with anything to do.

use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};
use x86_64::{PrivilegeLevel, VirtAddr};

use super::{entry, gdt};
use crate::trap::{dispatch_fault, Fault};

extern "x86-interrupt" fn nmi(frame: InterruptStackFrame) {
    crate::console::emergency(format_args!("NMI at RIP {:#x}\n", frame.instruction_pointer.as_u64()));
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    // Runs on its own IST stack: typically a kernel stack overflow into a
    // guard page. The handler may end the task; it cannot resume it.
    let f = Fault {
        vector: 8,
        name: "double fault",
        error_code: Some(code),
        rip: frame.instruction_pointer.as_u64(),
        rsp: frame.stack_pointer.as_u64(),
        rflags: frame.cpu_flags.bits(),
        cs: u64::from(frame.code_segment.0),
        cr2: Some(Cr2::read_raw()),
    };
    dispatch_fault(&f);
    crate::console::emergency(format_args!("\nKERNEL PANIC: {f}: the fault handler returned from a double fault\n"));
    crate::power::exit_qemu(fsdax_ktest::protocol::ExitCode::KernelPanic)
}

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

/// Builds and loads the IDT. Call once, after [`gdt::init`].
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        let stub = |v: u8| VirtAddr::new(entry::stub_address(v));
        // SAFETY: each address is the entry stub of its vector, which saves
        // the frame (pushing a zero error code exactly for the vectors the
        // CPU pushes none for) and returns with IRETQ after the dispatch;
        // the IST indexes name stacks `gdt::init` set up for one vector each.
        unsafe {
            idt.divide_error.set_handler_addr(stub(0));
            idt.debug.set_handler_addr(stub(1));
            // `int3` (and `into`) may be executed in user mode, as on
            // Linux: their gates have DPL 3, so a process gets SIGTRAP
            // rather than a #GP. Every other gate keeps DPL 0: a software
            // `int N` from user mode is a #GP (SIGSEGV).
            idt.breakpoint.set_handler_addr(stub(3)).set_privilege_level(PrivilegeLevel::Ring3);
            idt.overflow.set_handler_addr(stub(4)).set_privilege_level(PrivilegeLevel::Ring3);
            idt.bound_range_exceeded.set_handler_addr(stub(5));
            idt.invalid_opcode.set_handler_addr(stub(6));
            idt.device_not_available.set_handler_addr(stub(7));
            idt.invalid_tss.set_handler_addr(stub(10));
            idt.segment_not_present.set_handler_addr(stub(11));
            idt.stack_segment_fault.set_handler_addr(stub(12));
            idt.general_protection_fault.set_handler_addr(stub(13));
            idt.page_fault.set_handler_addr(stub(14));
            idt.x87_floating_point.set_handler_addr(stub(16));
            idt.alignment_check.set_handler_addr(stub(17));
            idt.simd_floating_point.set_handler_addr(stub(19));
            idt.virtualization.set_handler_addr(stub(20));
            idt.cp_protection_exception.set_handler_addr(stub(21));
            idt.hv_injection_exception.set_handler_addr(stub(28));
            idt.vmm_communication_exception.set_handler_addr(stub(29));
            idt.security_exception.set_handler_addr(stub(30));
            for v in 32..=255u8 {
                idt[v].set_handler_addr(stub(v));
            }
            idt.double_fault.set_handler_fn(double_fault).set_stack_index(gdt::IST_DOUBLE_FAULT);
            idt.non_maskable_interrupt.set_handler_fn(nmi).set_stack_index(gdt::IST_NMI);
            idt.machine_check
                .set_handler_addr(VirtAddr::new(entry::mc_entry_address()))
                .set_stack_index(gdt::IST_MACHINE_CHECK);
        }
        idt
    });
    idt.load();
}
