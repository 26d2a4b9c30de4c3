//! The 16550 UART on COM1: the kernel's console.

use uart_16550::SerialPort;

/// I/O port base of COM1.
pub const COM1: u16 = 0x3f8;

/// The console UART.
#[derive(Debug)]
pub struct Console {
    port: SerialPort,
}

impl Console {
    /// # Safety
    /// There must be a 16550-compatible UART at `base`, and no other code may
    /// program it while this value exists (a raw emergency writer aside).
    pub unsafe fn new(base: u16) -> Self {
        // SAFETY: the caller guarantees a 16550-compatible UART at `base` that
        // no other code programs while this value exists.
        let mut port = unsafe { SerialPort::new(base) };
        port.init();
        Console { port }
    }

    /// Writes bytes, translating `\n` to `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.port.send_raw(b'\r');
            }
            self.port.send_raw(b);
        }
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&mut self) -> Option<u8> {
        self.port.try_receive().ok()
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes straight to the UART without any lock: for panic and machine-check
/// reports, when the console lock may be held by the interrupted code. Output
/// may interleave with a line that was being written.
#[derive(Debug)]
pub struct RawWriter(pub u16);

impl core::fmt::Write for RawWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        use x86_64::instructions::port::Port;
        let mut data = Port::<u8>::new(self.0);
        let mut lsr = Port::<u8>::new(self.0 + 5);
        for &b in s.as_bytes() {
            let bytes: &[u8] = if b == b'\n' { b"\r\n" } else { core::slice::from_ref(&b) };
            for byte in bytes {
                // SAFETY: COM1's line-status and data registers; reading LSR
                // and writing a byte when the transmitter is empty has no
                // other effect.
                unsafe {
                    let mut spins = 0u32;
                    while lsr.read() & 0x20 == 0 && spins < 100_000 {
                        spins += 1;
                    }
                    data.write(*byte);
                }
            }
        }
        Ok(())
    }
}
