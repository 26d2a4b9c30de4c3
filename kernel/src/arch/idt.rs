//! The IDT: every CPU exception gets a handler with a clear report; the
//! local APIC timer drives preemption.
//!
//! A fault in an ordinary task (not critical, interrupts enabled) kills that
//! task and the kernel keeps running; a fault anywhere else is a kernel
//! panic with a report and a distinct QEMU exit status.

use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use super::{gdt, vectors};

/// What the CPU reported for an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub name: &'static str,
    pub error_code: Option<u64>,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    /// The faulting address, for page faults.
    pub cr2: Option<u64>,
}

impl Fault {
    fn new(vector: u8, name: &'static str, frame: &InterruptStackFrame, error_code: Option<u64>) -> Fault {
        Fault {
            vector,
            name,
            error_code,
            rip: frame.instruction_pointer.as_u64(),
            rsp: frame.stack_pointer.as_u64(),
            rflags: frame.cpu_flags.bits(),
            cr2: None,
        }
    }

    /// Were interrupts enabled where the fault happened?
    pub fn interrupts_were_enabled(&self) -> bool {
        self.rflags & (1 << 9) != 0
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (vector {})", self.name, self.vector)?;
        if let Some(code) = self.error_code {
            write!(f, " error code {code:#x}")?;
        }
        write!(f, " at RIP {:#x} RSP {:#x}", self.rip, self.rsp)?;
        if let Some(cr2) = self.cr2 {
            write!(f, " CR2 {cr2:#x}")?;
            if let Some(code) = self.error_code {
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
                write!(f, " ({what}, {why})")?;
            }
        }
        Ok(())
    }
}

/// Kills the current task or panics the kernel; never returns.
fn fatal(fault: Fault) -> ! {
    crate::task::on_fault(fault)
}

macro_rules! exception {
    ($fn:ident, $vec:expr, $name:expr) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            fatal(Fault::new($vec, $name, &frame, None));
        }
    };
    ($fn:ident, $vec:expr, $name:expr, code) => {
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            fatal(Fault::new($vec, $name, &frame, Some(code)));
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
    crate::warn!("debug exception at RIP {:#x}", frame.instruction_pointer.as_u64());
}

extern "x86-interrupt" fn breakpoint(frame: InterruptStackFrame) {
    crate::warn!("breakpoint at RIP {:#x}", frame.instruction_pointer.as_u64());
}

extern "x86-interrupt" fn nmi(frame: InterruptStackFrame) {
    crate::warn!("NMI at RIP {:#x}", frame.instruction_pointer.as_u64());
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let mut fault = Fault::new(14, "page fault", &frame, Some(code.bits()));
    fault.cr2 = Some(Cr2::read_raw());
    fatal(fault);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    // Runs on its own IST stack: typically a kernel stack overflow into a
    // guard page. In an ordinary task that kills the task.
    let mut fault = Fault::new(8, "double fault", &frame, Some(code));
    fault.cr2 = Some(Cr2::read_raw());
    fatal(fault)
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    crate::time::on_timer_interrupt();
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}

extern "x86-interrupt" fn unexpected(frame: InterruptStackFrame) {
    crate::warn!("unexpected interrupt at RIP {:#x}", frame.instruction_pointer.as_u64());
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
        // SAFETY: each IST index names a stack set up in `gdt::init`, used by
        // this one vector only.
        unsafe {
            idt.double_fault.set_handler_fn(double_fault).set_stack_index(gdt::IST_DOUBLE_FAULT);
            idt.non_maskable_interrupt.set_handler_fn(nmi).set_stack_index(gdt::IST_NMI);
            // The #MC handler may return (recoverable events), so it is
            // installed by address: the IDT's type for vector 18 diverges.
            idt.machine_check
                .set_handler_addr(x86_64::VirtAddr::new(crate::mce::machine_check_handler as *const () as u64))
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
