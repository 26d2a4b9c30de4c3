//! GDT and TSS with interrupt stacks (IST) for the faults that must not run
//! on a possibly broken stack: double fault, NMI, machine check.

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

/// Only the CPU uses these bytes (as a stack), hence never "read".
#[repr(align(16))]
#[allow(dead_code)]
struct IstStack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss_sel: SegmentSelector,
}

static TABLES: spin::Once<Tables> = spin::Once::new();
static TSS: spin::Once<TaskStateSegment> = spin::Once::new();

/// Builds and loads the GDT and TSS. Call once, early, with interrupts off.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().enumerate() {
            // SAFETY: only the address of the static stack is taken; the CPU
            // is the only writer (when it delivers the exception).
            let base = unsafe { core::ptr::addr_of!(IST_STACKS[i]) } as u64;
            tss.interrupt_stack_table[usize::from(slot)] = VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        tss
    });
    let t = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        Tables { gdt, code, data, tss_sel }
    });
    t.gdt.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // static and so outlives every use.
    unsafe {
        CS::set_reg(t.code);
        SS::set_reg(t.data);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        load_tss(t.tss_sel);
    }
}
