//! Port I/O: the few ports the kernel uses, each behind a safe function that
//! knows what the port is.

use x86_64::instructions::port::Port;

/// QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4`).
const DEBUG_EXIT: u16 = 0xf4;
/// PCI configuration mechanism #1.
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

/// Writes `value` to QEMU's isa-debug-exit port: QEMU exits with status
/// `2 * value + 1`. On a machine without that device the write goes nowhere.
pub fn debug_exit(value: u32) {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit in the machine fsdax
    // configures (qemu/pc-nvdimm.args); on a PC without it the port is
    // unassigned and the write is ignored.
    unsafe { Port::<u32>::new(DEBUG_EXIT).write(value) };
}

/// Reads a 32-bit PCI configuration register through the legacy
/// 0xcf8/0xcfc mechanism (`offset` is rounded down to 4 bytes).
pub fn pci_config_read(bus: u8, device: u8, function: u8, offset: u16) -> u32 {
    let addr = 0x8000_0000u32
        | (u32::from(bus) << 16)
        | (u32::from(device & 0x1f) << 11)
        | (u32::from(function & 7) << 8)
        | u32::from(offset & 0xfc);
    // SAFETY: 0xcf8/0xcfc are the PC's PCI configuration ports; selecting a
    // register and reading it has no side effect on any device. The two
    // accesses run with interrupts off so no other configuration access on
    // this CPU can come between them.
    crate::arch::cpu::without_interrupts(|| unsafe {
        Port::<u32>::new(PCI_CONFIG_ADDRESS).write(addr);
        Port::<u32>::new(PCI_CONFIG_DATA).read()
    })
}

/// Reads an I/O port named by firmware (ACPI fixed hardware).
///
/// # Safety
/// The port must be one firmware describes for this purpose: reads of
/// arbitrary ports can have side effects on devices.
pub(crate) unsafe fn read_u8(port: u16) -> u8 {
    // SAFETY: the caller guarantees firmware describes this port for this
    // access, so reading it has only the effect firmware intends.
    unsafe { Port::new(port).read() }
}

/// # Safety
/// As for [`read_u8`].
pub(crate) unsafe fn read_u16(port: u16) -> u16 {
    // SAFETY: the caller guarantees firmware describes this port for this
    // access, so reading it has only the effect firmware intends.
    unsafe { Port::new(port).read() }
}

/// # Safety
/// As for [`read_u8`].
pub(crate) unsafe fn read_u32(port: u16) -> u32 {
    // SAFETY: the caller guarantees firmware describes this port for this
    // access, so reading it has only the effect firmware intends.
    unsafe { Port::new(port).read() }
}

/// Writes an I/O port named by firmware.
///
/// # Safety
/// The port must be one firmware describes for this purpose, and the value
/// one it expects there.
pub(crate) unsafe fn write_u8(port: u16, v: u8) {
    // SAFETY: the caller guarantees firmware describes this port and this
    // value for it, so the write has only the effect firmware intends.
    unsafe { Port::new(port).write(v) }
}

/// # Safety
/// As for [`write_u8`].
pub(crate) unsafe fn write_u16(port: u16, v: u16) {
    // SAFETY: the caller guarantees firmware describes this port and this
    // value for it, so the write has only the effect firmware intends.
    unsafe { Port::new(port).write(v) }
}

/// # Safety
/// As for [`write_u8`].
pub(crate) unsafe fn write_u32(port: u16, v: u32) {
    // SAFETY: the caller guarantees firmware describes this port and this
    // value for it, so the write has only the effect firmware intends.
    unsafe { Port::new(port).write(v) }
}
