//! Time: TSC calibrated against the PIT, and the local APIC timer that drives
//! preemption.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_drivers::apic::{LocalApic, IA32_APIC_BASE};
use spin::Mutex;

use crate::arch::{cpu, vectors};

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
static APIC: Mutex<Option<LocalApic>> = Mutex::new(None);

/// Records the boot TSC. Call first thing.
pub fn mark_boot() {
    BOOT_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency over 10 ms of PIT time.
pub fn calibrate_tsc() -> u64 {
    let mut t0 = 0u64;
    // SAFETY: boot is single-threaded and nothing else uses PIT channel 2.
    let t1 = unsafe { fsdax_drivers::pit::measure(10, &mut t0, |t0| *t0 = cpu::rdtsc(), |_| cpu::rdtsc()) };
    let hz = (t1 - t0) * 100;
    TSC_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// TSC ticks per second (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
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

/// Timer ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Maps and enables the local APIC, calibrates its timer, and starts the
/// periodic tick. Returns the APIC timer frequency (divided-by-16 ticks/s).
pub fn init_apic_timer() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC.
    let base = unsafe { cpu::rdmsr(IA32_APIC_BASE) } & 0x000f_ffff_ffff_f000;
    let virt = crate::mem::map_mmio(base, 4096);
    // SAFETY: `virt` maps the APIC register page uncached (map_mmio), and the
    // mapping is never removed.
    let mut apic = unsafe { LocalApic::new(NonNull::new(virt as *mut u8).expect("mapped")) };
    apic.enable(vectors::SPURIOUS);
    // SAFETY: boot is single-threaded; nothing else uses PIT channel 2.
    let per_10ms = unsafe {
        fsdax_drivers::pit::measure(10, &mut apic, LocalApic::start_calibration, LocalApic::stop_calibration)
    };
    let hz = u64::from(per_10ms) * 100;
    let period = (hz / TICK_HZ).clamp(1, u64::from(u32::MAX)) as u32;
    apic.start_periodic(vectors::TIMER, period);
    *APIC.lock() = Some(apic);
    hz
}

/// Acknowledges the current interrupt at the local APIC.
pub fn eoi() {
    // Interrupt handlers run with interrupts off, and normal code only takes
    // this lock at boot, so this never spins.
    if let Some(apic) = APIC.lock().as_mut() {
        apic.eoi();
    }
}

/// The timer interrupt: count, acknowledge, maybe switch tasks.
pub fn on_timer_interrupt() {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    eoi();
    crate::task::on_tick(now);
}

/// Busy-waits for `us` microseconds.
pub fn spin_us(us: u64) {
    let end = cpu::rdtsc() + tsc_hz() / 1_000_000 * us;
    while cpu::rdtsc() < end {
        core::hint::spin_loop();
    }
}
