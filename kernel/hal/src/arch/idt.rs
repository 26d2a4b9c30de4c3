//! The IDT: every CPU exception gets an entry that builds a [`Fault`] and
//! hands it to the kernel's registered handler ([`crate::trap`]); the local
//! APIC timer's entry acknowledges the interrupt and hands the tick over.
//! Page faults at a user-copy instruction ([`crate::uaccess`]) are resolved
//! here, by resuming at the copy's fixup. The machine-check entry is in
//! [`crate::mce`].

use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};
use x86_64::VirtAddr;

use super::{gdt, vectors};
use crate::trap::{dispatch_fault, Fault};

fn fault(vector: u8, name: &'static str, frame: &InterruptStackFrame, error_code: Option<u64>) -> Fault {
    Fault {
        vector,
        name,
        error_code,
        rip: frame.instruction_pointer.as_u64(),
        rsp: frame.stack_pointer.as_u64(),
        rflags: frame.cpu_flags.bits(),
        cs: u64::from(frame.code_segment.0),
        cr2: None,
    }
}

macro_rules! exception {
    ($fn:ident, $vec:expr, $name:expr) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            dispatch_fault(&fault($vec, $name, &frame, None));
        }
    };
    ($fn:ident, $vec:expr, $name:expr, code) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            dispatch_fault(&fault($vec, $name, &frame, Some(code)));
        }
    };
}

exception!(divide_error, 0, "divide error");
exception!(overflow, 4, "overflow");
exception!(bound_range, 5, "bound range exceeded");
exception!(invalid_opcode, 6, "invalid opcode");
exception!(device_not_available, 7, "device not available");
exception!(invalid_tss, 10, "invalid TSS", code);
exception!(segment_not_present, 11, "segment not present", code);
exception!(stack_segment, 12, "stack-segment fault", code);
exception!(general_protection, 13, "general protection fault", code);
exception!(x87_fp, 16, "x87 floating-point exception");
exception!(alignment_check, 17, "alignment check", code);
exception!(simd_fp, 19, "SIMD floating-point exception");
exception!(virtualization, 20, "virtualization exception");
exception!(control_protection, 21, "control protection exception", code);
exception!(hv_injection, 28, "hypervisor injection exception");
exception!(vmm_communication, 29, "VMM communication exception", code);
exception!(security, 30, "security exception", code);

extern "x86-interrupt" fn debug(frame: InterruptStackFrame) {
    crate::console::emergency(format_args!("debug exception at RIP {:#x}\n", frame.instruction_pointer.as_u64()));
}

extern "x86-interrupt" fn breakpoint(frame: InterruptStackFrame) {
    crate::console::emergency(format_args!("breakpoint at RIP {:#x}\n", frame.instruction_pointer.as_u64()));
}

extern "x86-interrupt" fn nmi(frame: InterruptStackFrame) {
    crate::console::emergency(format_args!("NMI at RIP {:#x}\n", frame.instruction_pointer.as_u64()));
}

extern "x86-interrupt" fn page_fault(mut frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let cr2 = Cr2::read_raw();
    let rip = frame.instruction_pointer.as_u64();
    if let Some(fixup) = crate::uaccess::fixup_for(rip, cr2) {
        // SAFETY: `fixup` is the registered continuation of the user-copy
        // instruction at `rip`, in the same function with the same stack
        // layout (see `uaccess`); resuming there ends the copy with an error.
        unsafe { frame.as_mut().update(|f| f.instruction_pointer = VirtAddr::new(fixup)) };
        return;
    }
    let mut f = fault(14, "page fault", &frame, Some(code.bits()));
    f.cr2 = Some(cr2);
    dispatch_fault(&f);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    // Runs on its own IST stack: typically a kernel stack overflow into a
    // guard page. The handler may end the task; it cannot resume it.
    let mut f = fault(8, "double fault", &frame, Some(code));
    f.cr2 = Some(Cr2::read_raw());
    dispatch_fault(&f);
    crate::console::emergency(format_args!("\nKERNEL PANIC: {f}: the fault handler returned from a double fault\n"));
    crate::power::exit_qemu(fsdax_ktest::protocol::ExitCode::KernelPanic)
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    crate::time::eoi();
    crate::trap::dispatch_timer();
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}

extern "x86-interrupt" fn unexpected(frame: InterruptStackFrame) {
    crate::console::emergency(format_args!(
        "unexpected interrupt at RIP {:#x}; ignored\n",
        frame.instruction_pointer.as_u64()
    ));
    crate::time::eoi();
}

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

/// Builds and loads the IDT. Call once, after [`gdt::init`].
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available.set_handler_fn(device_not_available);
        idt.invalid_tss.set_handler_fn(invalid_tss);
        idt.segment_not_present.set_handler_fn(segment_not_present);
        idt.stack_segment_fault.set_handler_fn(stack_segment);
        idt.general_protection_fault.set_handler_fn(general_protection);
        idt.page_fault.set_handler_fn(page_fault);
        idt.x87_floating_point.set_handler_fn(x87_fp);
        idt.alignment_check.set_handler_fn(alignment_check);
        idt.simd_floating_point.set_handler_fn(simd_fp);
        idt.virtualization.set_handler_fn(virtualization);
        idt.cp_protection_exception.set_handler_fn(control_protection);
        idt.hv_injection_exception.set_handler_fn(hv_injection);
        idt.vmm_communication_exception.set_handler_fn(vmm_communication);
        idt.security_exception.set_handler_fn(security);
        // SAFETY: each IST index names a stack that `gdt::init` set up and
        // that only this one vector uses.
        unsafe {
            idt.double_fault.set_handler_fn(double_fault).set_stack_index(gdt::IST_DOUBLE_FAULT);
            idt.non_maskable_interrupt.set_handler_fn(nmi).set_stack_index(gdt::IST_NMI);
            // The #MC handler may return (recoverable events), so it is
            // installed by address: the IDT's type for vector 18 diverges.
            idt.machine_check
                .set_handler_addr(VirtAddr::new(crate::mce::machine_check_entry as *const () as u64))
                .set_stack_index(gdt::IST_MACHINE_CHECK);
        }
        for v in 32..=255u8 {
            idt[v].set_handler_fn(unexpected);
        }
        for v in vectors::PIC_BASE..vectors::PIC_BASE + 16 {
            idt[v].set_handler_fn(spurious);
        }
        idt[vectors::TIMER].set_handler_fn(timer);
        idt[vectors::SPURIOUS].set_handler_fn(spurious);
        idt
    });
    idt.load();
}
