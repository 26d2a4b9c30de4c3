//! Kernel time: the tick count, driven by the hal's local APIC timer, and
//! what each tick does (wake sleepers, preempt).

use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Timer ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Microseconds since boot.
pub fn uptime_us() -> u64 {
    fsdax_hal::time::uptime_us()
}

/// Nanoseconds since boot (TSC).
pub fn uptime_ns() -> u64 {
    fsdax_hal::time::uptime_ns()
}

static WALL_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Unix time (seconds) at boot, from the real-time clock (0 if it could not
/// be read).
pub fn wall_clock_at_boot() -> u64 {
    WALL_AT_BOOT.load(Ordering::Relaxed)
}

/// Reads the real-time clock once and fixes the wall clock at boot.
pub fn init_wall_clock() {
    match fsdax_hal::time::read_rtc() {
        Some(t) => {
            let now = fsdax_kcore::clock::unix_seconds(t.year, t.month, t.day, t.hour, t.minute, t.second);
            WALL_AT_BOOT.store(now.saturating_sub(uptime_us() / 1_000_000), Ordering::Relaxed);
            crate::info!(
                "clock: {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC from the real-time clock",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second
            );
        }
        None => crate::warn!("clock: no real-time clock; CLOCK_REALTIME starts at 1970"),
    }
}

/// The timer handler (registered with the hal): count, then let the
/// scheduler wake sleepers and preempt.
fn on_tick(from_user: bool) {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    crate::task::on_tick(now, from_user);
}

/// Registers the tick handler and starts the timer. Returns the APIC timer
/// frequency.
pub fn start() -> u64 {
    if fsdax_hal::trap::register_timer_handler(on_tick).is_err() {
        crate::error!("time: a timer handler was already registered");
    }
    fsdax_hal::time::start_timer(TICK_HZ)
}
