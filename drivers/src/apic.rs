//! The local APIC (xAPIC, memory-mapped): enable, periodic timer, EOI.

use core::ptr::NonNull;

use volatile::VolatilePtr;

/// The `IA32_APIC_BASE` MSR.
pub const IA32_APIC_BASE: u32 = 0x1b;

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

/// The local APIC's register page, mapped uncached.
#[derive(Debug)]
pub struct LocalApic {
    base: NonNull<u8>,
}

// SAFETY: the register page is per-CPU hardware; the kernel keeps one
// `LocalApic` per CPU and only that CPU touches it.
unsafe impl Send for LocalApic {}

impl LocalApic {
    /// # Safety
    /// `base` must be the virtual address of this CPU's local APIC register
    /// page, mapped uncached for at least 4 KiB, for as long as the value lives.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        LocalApic { base }
    }

    fn reg(&self, offset: usize) -> VolatilePtr<'_, u32> {
        // SAFETY: `offset` is one of the 16-byte aligned register offsets
        // above, inside the mapped 4 KiB page (see `new`).
        unsafe { VolatilePtr::new(self.base.add(offset).cast::<u32>()) }
    }

    pub fn id(&self) -> u32 {
        self.reg(REG_ID).read() >> 24
    }

    /// Software-enables the APIC with `spurious_vector`.
    pub fn enable(&mut self, spurious_vector: u8) {
        self.reg(REG_SVR).write(SVR_ENABLE | u32::from(spurious_vector));
    }

    /// Starts a masked one-shot countdown from `u32::MAX` (for calibration).
    pub fn start_calibration(&mut self) {
        self.reg(REG_TIMER_DIVIDE).write(DIVIDE_BY_16);
        self.reg(REG_LVT_TIMER).write(LVT_MASKED);
        self.reg(REG_TIMER_INITIAL).write(u32::MAX);
    }

    /// Ticks elapsed since `start_calibration`, and stops the countdown.
    pub fn stop_calibration(&mut self) -> u32 {
        let elapsed = u32::MAX - self.reg(REG_TIMER_CURRENT).read();
        self.reg(REG_TIMER_INITIAL).write(0);
        elapsed
    }

    /// Periodic timer interrupts on `vector` every `ticks` (divide-by-16) ticks.
    pub fn start_periodic(&mut self, vector: u8, ticks: u32) {
        self.reg(REG_TIMER_DIVIDE).write(DIVIDE_BY_16);
        self.reg(REG_LVT_TIMER).write(LVT_PERIODIC | u32::from(vector));
        self.reg(REG_TIMER_INITIAL).write(ticks.max(1));
    }

    /// Signals end of interrupt.
    pub fn eoi(&mut self) {
        self.reg(REG_EOI).write(0);
    }
}
