//! The GDT and the TSS.
//!
//! Segments, in the order SYSCALL/SYSRET need them: null, kernel code
//! (0x08), kernel data (0x10), user data (0x18), user code (0x20), TSS. The
//! TSS holds the interrupt stacks (IST) for the faults that must not run on a
//! possibly broken stack (double fault, NMI, machine check) and `rsp0`, the
//! stack the CPU switches to on an interrupt from user mode: the running
//! task's kernel stack, set by every context switch ([`set_kernel_stack`]).
//!
//! One GDT and one TSS per CPU; fsdax brings up one CPU.

use core::cell::UnsafeCell;

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot of the double-fault handler.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot of the NMI handler.
pub const IST_NMI: u16 = 1;
/// IST slot of the machine-check handler.
pub const IST_MACHINE_CHECK: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

/// Memory only the CPU uses, as a stack.
#[repr(C, align(16))]
struct IstStacks(UnsafeCell<[[u8; IST_STACK_SIZE]; 3]>);

// SAFETY: Rust code never reads or writes the stacks; only their addresses
// are taken (for the TSS). The CPU uses each as the stack of one vector.
unsafe impl Sync for IstStacks {}

static IST_STACKS: IstStacks = IstStacks(UnsafeCell::new([[0; IST_STACK_SIZE]; 3]));

/// The TSS, written by the CPU-local context switch (rsp0) and read by the
/// CPU on privilege changes.
#[repr(transparent)]
struct TssCell(UnsafeCell<TaskStateSegment>);

// SAFETY: the TSS is changed only by `init` (before it is loaded, interrupts
// off) and by `set_kernel_stack`, which the running CPU calls with
// interrupts off; each CPU has its own TSS (one today).
unsafe impl Sync for TssCell {}

static TSS: TssCell = TssCell(UnsafeCell::new(TaskStateSegment::new()));

/// The selectors of the GDT.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    /// Ring-0 code.
    pub kernel_code: SegmentSelector,
    /// Ring-0 data and stack.
    pub kernel_data: SegmentSelector,
    /// Ring-3 data and stack.
    pub user_data: SegmentSelector,
    /// Ring-3 64-bit code.
    pub user_code: SegmentSelector,
    /// The TSS.
    pub tss: SegmentSelector,
}

struct Tables {
    gdt: GlobalDescriptorTable,
    selectors: Selectors,
}

static TABLES: spin::Once<Tables> = spin::Once::new();

/// Builds and loads the GDT and TSS. Call once, early, with interrupts off.
pub fn init() {
    let tss = TSS.0.get();
    let stacks = IST_STACKS.0.get().cast::<[u8; IST_STACK_SIZE]>();
    for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().enumerate() {
        // One past the end of stack `i`: the stacks are an array of 3.
        let top = stacks.wrapping_add(i + 1) as u64;
        // SAFETY: the TSS is not loaded yet and nothing else refers to it;
        // writing one field through the cell's pointer is exclusive.
        unsafe { (*tss).interrupt_stack_table[usize::from(slot)] = VirtAddr::new(top) };
    }
    let t = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is a static, so the pointer stays valid for as long
        // as the descriptor is used.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        Tables { gdt, selectors: Selectors { kernel_code, kernel_data, user_data, user_code, tss } }
    });
    t.gdt.load();
    let s = t.selectors;
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // static; code and data segments are the kernel's flat segments, and the
    // TSS descriptor points to the static TSS, loaded once.
    unsafe {
        CS::set_reg(s.kernel_code);
        SS::set_reg(s.kernel_data);
        DS::set_reg(s.kernel_data);
        ES::set_reg(s.kernel_data);
        load_tss(s.tss);
    }
}

/// The GDT's selectors (after [`init`]).
pub fn selectors() -> Option<Selectors> {
    TABLES.get().map(|t| t.selectors)
}

/// Sets the stack the CPU switches to on an interrupt or exception from user
/// mode (TSS `rsp0`), and the one the SYSCALL entry loads: the top of the
/// running task's kernel stack.
pub(crate) fn set_kernel_stack(top: u64) {
    crate::arch::cpu::without_interrupts(|| {
        // SAFETY: this CPU's TSS; the CPU reads rsp0 only when it delivers an
        // interrupt from ring 3, which cannot happen while interrupts are off
        // on this CPU and it runs ring-0 code. The field is written through
        // the cell's pointer (no reference to the TSS exists).
        unsafe { core::ptr::addr_of_mut!((*TSS.0.get()).privilege_stack_table[0]).write(VirtAddr::new(top)) };
    });
    crate::arch::entry::set_kernel_stack_top(top);
}
