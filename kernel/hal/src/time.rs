//! Time sources: the TSC (calibrated against the PIT) and the local APIC
//! timer, whose periodic interrupt the kernel's timer handler receives
//! ([`crate::trap::register_timer_handler`]).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_drivers::apic::LocalApic;

use crate::arch::{cpu, msr, vectors};
use crate::sync::IrqMutex;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// This CPU's local APIC (one CPU; with several, one per CPU).
static APIC: IrqMutex<Option<LocalApic>> = IrqMutex::new(None);

pub(crate) fn mark_boot() {
    BOOT_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency over 10 ms of PIT time. Boot only.
pub(crate) fn calibrate_tsc() -> u64 {
    let mut t0 = 0u64;
    // SAFETY: called once at boot, interrupts off, single CPU: nothing else
    // uses PIT channel 2 or port 0x61.
    let t1 = unsafe { fsdax_drivers::pit::measure(10, &mut t0, |t0| *t0 = cpu::rdtsc(), |_| cpu::rdtsc()) };
    let hz = (t1 - t0) * 100;
    TSC_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// TSC ticks per second (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    cpu::rdtsc()
}

/// Converts TSC cycles to nanoseconds.
pub fn cycles_to_ns(cycles: u64) -> u64 {
    match tsc_hz() {
        0 => 0,
        hz => (u128::from(cycles) * 1_000_000_000 / u128::from(hz)) as u64,
    }
}

/// Microseconds since boot.
pub fn uptime_us() -> u64 {
    cycles_to_ns(cpu::rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed))) / 1000
}

/// Busy-waits for `us` microseconds.
pub fn spin_us(us: u64) {
    let end = cpu::rdtsc().saturating_add(tsc_hz() / 1_000_000 * us);
    while cpu::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Masks the legacy PICs, maps and enables the local APIC, calibrates its
/// timer against the PIT and starts it at `tick_hz` interrupts per second.
/// Returns the APIC timer frequency (divided-by-16 ticks per second). Call
/// once, at boot, with interrupts off and after the timer handler is
/// registered.
pub fn start_timer(tick_hz: u64) -> u64 {
    // SAFETY: boot, interrupts off, one CPU: nothing else programs the PICs.
    unsafe { fsdax_drivers::pit::disable_legacy_pic() };
    let virt = crate::mm::map_mmio(msr::apic_base(), 4096);
    // SAFETY: `virt` maps this CPU's local APIC register page uncached
    // (`map_mmio`), permanently; this is the only `LocalApic` for it.
    let mut apic = unsafe { LocalApic::new(NonNull::new(virt as *mut u8).expect("MMIO addresses are never null")) };
    apic.enable(vectors::SPURIOUS);
    // SAFETY: boot, interrupts off, one CPU: nothing else uses PIT channel 2.
    let per_10ms = unsafe {
        fsdax_drivers::pit::measure(10, &mut apic, LocalApic::start_calibration, LocalApic::stop_calibration)
    };
    let hz = u64::from(per_10ms) * 100;
    let period = (hz / tick_hz.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
    apic.start_periodic(vectors::TIMER, period);
    *APIC.lock() = Some(apic);
    hz
}

/// Acknowledges the current interrupt at the local APIC.
pub(crate) fn eoi() {
    if let Some(apic) = APIC.lock().as_mut() {
        apic.eoi();
    }
}
