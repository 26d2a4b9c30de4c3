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

/// The timer handler (registered with the hal): count, then let the
/// scheduler wake sleepers and preempt.
fn on_tick() {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    crate::task::on_tick(now);
}

/// Registers the tick handler and starts the timer. Returns the APIC timer
/// frequency.
pub fn start() -> u64 {
    if fsdax_hal::trap::register_timer_handler(on_tick).is_err() {
        crate::error!("time: a timer handler was already registered");
    }
    fsdax_hal::time::start_timer(TICK_HZ)
}
