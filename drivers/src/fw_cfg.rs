//! QEMU's firmware configuration device (fw_cfg), legacy I/O port interface.
//!
//! The host passes the kernel command line as the fw_cfg file
//! `opt/fsdax/cmdline` (`-fw_cfg name=...,string=...`), so one disk image
//! serves every mode without being rebuilt. Works the same under BIOS and
//! UEFI.

use x86_64::instructions::port::Port;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;

/// The fw_cfg device.
#[derive(Debug)]
pub struct FwCfg {
    selector: Port<u16>,
    data: Port<u8>,
}

impl FwCfg {
    /// Probes for the device: `None` when the "QEMU" signature is absent.
    ///
    /// # Safety
    /// Ports 0x510/0x511 must be fw_cfg or unused (true on PC machines).
    pub unsafe fn probe() -> Option<Self> {
        let mut cfg = FwCfg { selector: Port::new(SELECTOR), data: Port::new(DATA) };
        let mut sig = [0u8; 4];
        cfg.select(KEY_SIGNATURE);
        cfg.read(&mut sig);
        (&sig == b"QEMU").then_some(cfg)
    }

    fn select(&mut self, key: u16) {
        // SAFETY: selecting an item only changes which item DATA reads.
        unsafe { self.selector.write(key) };
    }

    fn read(&mut self, buf: &mut [u8]) {
        for b in buf {
            // SAFETY: reading DATA returns the next byte of the selected item.
            *b = unsafe { self.data.read() };
        }
    }

    fn read_be32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.read(&mut b);
        u32::from_be_bytes(b)
    }

    /// Reads the file `name` into `buf`; returns its length (which may be
    /// larger than `buf`: the rest is not read), or `None` if absent.
    pub fn read_file(&mut self, name: &str, buf: &mut [u8]) -> Option<usize> {
        self.select(KEY_FILE_DIR);
        let count = self.read_be32();
        let mut found = None;
        for _ in 0..count.min(4096) {
            let size = self.read_be32();
            let mut sel = [0u8; 2];
            self.read(&mut sel);
            let mut reserved = [0u8; 2];
            self.read(&mut reserved);
            let mut fname = [0u8; 56];
            self.read(&mut fname);
            let len = fname.iter().position(|&c| c == 0).unwrap_or(fname.len());
            if found.is_none() && &fname[..len] == name.as_bytes() {
                found = Some((u16::from_be_bytes(sel), size as usize));
            }
        }
        let (key, size) = found?;
        self.select(key);
        let n = size.min(buf.len());
        self.read(&mut buf[..n]);
        Some(size)
    }
}
