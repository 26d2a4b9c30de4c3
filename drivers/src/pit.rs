//! The 8254 PIT, used once at boot as a reference clock to calibrate the TSC
//! and the local APIC timer.

use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Busy-waits for `ms` milliseconds (at most 50) on PIT channel 2, calling
/// `start(ctx)` just before and returning `stop(ctx)` just after the wait.
///
/// # Safety
/// Programs PIT channel 2 and the speaker gate (port 0x61); nothing else may
/// use them concurrently.
pub unsafe fn measure<C, T>(ms: u64, ctx: &mut C, start: impl FnOnce(&mut C), stop: impl FnOnce(&mut C) -> T) -> T {
    let ms = ms.clamp(1, 50);
    let latch = (PIT_HZ * ms / 1000) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: the caller owns channel 2 and port 0x61. Gate on, speaker off;
    // channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count);
    // bit 5 of port 0x61 is the channel-2 output, set at terminal count.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        command.write(0xb0);
        ch2.write((latch & 0xff) as u8);
        ch2.write((latch >> 8) as u8);
        start(ctx);
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
    stop(ctx)
}

/// Masks every line of the legacy 8259 PICs after moving them to vectors
/// 0x20..0x30, so that a spurious IRQ never looks like a CPU exception.
///
/// # Safety
/// Reprograms the PICs; call once, with interrupts disabled.
pub unsafe fn disable_legacy_pic() {
    let mut m_cmd = Port::<u8>::new(0x20);
    let mut m_data = Port::<u8>::new(0x21);
    let mut s_cmd = Port::<u8>::new(0xa0);
    let mut s_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard ICW1-ICW4 initialisation sequence, then masks.
    unsafe {
        m_cmd.write(0x11);
        s_cmd.write(0x11);
        m_data.write(0x20);
        s_data.write(0x28);
        m_data.write(4);
        s_data.write(2);
        m_data.write(1);
        s_data.write(1);
        m_data.write(0xff);
        s_data.write(0xff);
    }
}
