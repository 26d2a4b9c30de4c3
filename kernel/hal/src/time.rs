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

/// Nanoseconds since boot.
pub fn uptime_ns() -> u64 {
    cycles_to_ns(cpu::rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed)))
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

/// A reading of the CMOS real-time clock (UTC on a PC under QEMU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Full year (2000-2099).
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59.
    pub second: u8,
}

fn cmos(reg: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index and data ports of every
    // PC; selecting a clock register (with NMIs left enabled: bit 7 clear)
    // and reading it changes nothing else. Only this function uses them.
    unsafe {
        crate::arch::port::write_u8(0x70, reg & 0x7f);
        crate::arch::port::read_u8(0x71)
    }
}

/// Reads the CMOS real-time clock (once, at boot: the wall clock is then
/// kept by the TSC). Waits out an update in progress and reads twice until
/// two readings agree; None if the clock looks absent.
pub fn read_rtc() -> Option<RtcTime> {
    let read = || {
        for _ in 0..1_000_000 {
            if cmos(0x0a) & 0x80 == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        [cmos(0x00), cmos(0x02), cmos(0x04), cmos(0x07), cmos(0x08), cmos(0x09)]
    };
    let mut a = read();
    let mut tries = 0;
    loop {
        let b = read();
        if a == b || tries > 8 {
            break;
        }
        a = b;
        tries += 1;
    }
    let status_b = cmos(0x0b);
    let bcd = status_b & 0x04 == 0;
    let conv = |v: u8| if bcd { (v & 0x0f) + (v >> 4) * 10 } else { v };
    let pm = a[2] & 0x80 != 0;
    let mut hour = conv(a[2] & 0x7f);
    if status_b & 0x02 == 0 {
        // 12-hour clock.
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let t = RtcTime {
        year: 2000 + u16::from(conv(a[5])),
        month: conv(a[4]),
        day: conv(a[3]),
        hour,
        minute: conv(a[1]),
        second: conv(a[0]),
    };
    let valid =
        (1..=12).contains(&t.month) && (1..=31).contains(&t.day) && t.hour < 24 && t.minute < 60 && t.second < 61;
    valid.then_some(t)
}
