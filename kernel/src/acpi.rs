//! ACPI: enumerate the firmware's tables with the `acpi` crate (from the
//! RSDP the bootloader found) and hand out the raw bytes of a table, e.g.
//! the NFIT, which the `acpi` crate does not parse (`drivers::nfit` does).

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};
use x86_64::instructions::port::Port;

use crate::mem;

/// Physical memory access for the `acpi` crate: tables are read through the
/// direct map (or a fresh read-only mapping if the direct map lacks them).
#[derive(Debug, Clone, Copy)]
pub struct KernelAcpi;

fn phys_ptr<T>(phys: usize, len: usize) -> *mut T {
    mem::phys_readable(phys as u64, len as u64) as *mut T
}

impl Handler for KernelAcpi {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let ptr = phys_ptr::<T>(physical_address, size);
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(ptr).expect("direct map address is never null"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    // The remaining methods serve AML and the fixed registers, which fsdax
    // does not use; they are implemented plainly for completeness.
    fn read_u8(&self, a: usize) -> u8 {
        // SAFETY: the acpi crate reads firmware-described registers/tables.
        unsafe { phys_ptr::<u8>(a, 1).read_volatile() }
    }
    fn read_u16(&self, a: usize) -> u16 {
        // SAFETY: as above.
        unsafe { phys_ptr::<u16>(a, 2).read_volatile() }
    }
    fn read_u32(&self, a: usize) -> u32 {
        // SAFETY: as above.
        unsafe { phys_ptr::<u32>(a, 4).read_volatile() }
    }
    fn read_u64(&self, a: usize) -> u64 {
        // SAFETY: as above.
        unsafe { phys_ptr::<u64>(a, 8).read_volatile() }
    }
    fn write_u8(&self, a: usize, v: u8) {
        // SAFETY: as above, for firmware-described registers.
        unsafe { phys_ptr::<u8>(a, 1).write_volatile(v) }
    }
    fn write_u16(&self, a: usize, v: u16) {
        // SAFETY: as above.
        unsafe { phys_ptr::<u16>(a, 2).write_volatile(v) }
    }
    fn write_u32(&self, a: usize, v: u32) {
        // SAFETY: as above.
        unsafe { phys_ptr::<u32>(a, 4).write_volatile(v) }
    }
    fn write_u64(&self, a: usize, v: u64) {
        // SAFETY: as above.
        unsafe { phys_ptr::<u64>(a, 8).write_volatile(v) }
    }
    fn read_io_u8(&self, port: u16) -> u8 {
        // SAFETY: firmware-described I/O port.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        // SAFETY: as above.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        // SAFETY: as above.
        unsafe { Port::new(port).read() }
    }
    fn write_io_u8(&self, port: u16, v: u8) {
        // SAFETY: as above.
        unsafe { Port::new(port).write(v) }
    }
    fn write_io_u16(&self, port: u16, v: u16) {
        // SAFETY: as above.
        unsafe { Port::new(port).write(v) }
    }
    fn write_io_u32(&self, port: u16, v: u32) {
        // SAFETY: as above.
        unsafe { Port::new(port).write(v) }
    }
    fn read_pci_u8(&self, a: PciAddress, off: u16) -> u8 {
        (pci_read(a, off & !3) >> ((off & 3) * 8)) as u8
    }
    fn read_pci_u16(&self, a: PciAddress, off: u16) -> u16 {
        (pci_read(a, off & !3) >> ((off & 2) * 8)) as u16
    }
    fn read_pci_u32(&self, a: PciAddress, off: u16) -> u32 {
        pci_read(a, off)
    }
    fn write_pci_u8(&self, _a: PciAddress, _off: u16, _v: u8) {}
    fn write_pci_u16(&self, _a: PciAddress, _off: u16, _v: u16) {}
    fn write_pci_u32(&self, _a: PciAddress, _off: u16, _v: u32) {}
    fn nanos_since_boot(&self) -> u64 {
        crate::time::uptime_us() * 1000
    }
    fn stall(&self, us: u64) {
        crate::time::spin_us(us);
    }
    fn sleep(&self, ms: u64) {
        crate::task::sleep_ticks(ms.div_ceil(1000 / crate::time::TICK_HZ));
    }
}

/// PCI configuration read through the legacy 0xcf8/0xcfc mechanism.
fn pci_read(a: PciAddress, off: u16) -> u32 {
    let addr = 0x8000_0000u32
        | (u32::from(a.bus()) << 16)
        | (u32::from(a.device()) << 11)
        | (u32::from(a.function()) << 8)
        | u32::from(off & 0xfc);
    // SAFETY: the PC's PCI configuration ports; a read has no side effects.
    unsafe {
        Port::<u32>::new(0xcf8).write(addr);
        Port::<u32>::new(0xcfc).read()
    }
}

/// One table: signature, physical address, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    pub signature: [u8; 4],
    pub phys: u64,
    pub len: u32,
}

/// What the firmware's ACPI tables say, read once at boot.
#[derive(Debug, Clone)]
pub struct Acpi {
    pub revision: u8,
    pub tables: Vec<TableInfo>,
}

static ACPI: spin::Once<Acpi> = spin::Once::new();

/// Enumerates the tables from the RSDP.
pub fn init(rsdp: u64) -> Result<&'static Acpi, acpi::AcpiError> {
    // SAFETY: the bootloader found the RSDP at this physical address.
    let tables = unsafe { AcpiTables::from_rsdp(KernelAcpi, rsdp as usize)? };
    let mut list = Vec::new();
    for (phys, header) in tables.table_headers() {
        let sig = header.signature.as_str().as_bytes();
        let mut signature = [b'?'; 4];
        for (d, s) in signature.iter_mut().zip(sig) {
            *d = *s;
        }
        list.push(TableInfo { signature, phys: phys as u64, len: header.length });
    }
    Ok(ACPI.call_once(|| Acpi { revision: tables.rsdp_revision, tables: list }))
}

/// The tables found at boot (None if there was no RSDP).
pub fn get() -> Option<&'static Acpi> {
    ACPI.get()
}

/// The raw bytes of the first table with `signature`.
pub fn table_bytes(signature: &[u8; 4]) -> Option<&'static [u8]> {
    let t = get()?.tables.iter().find(|t| &t.signature == signature)?;
    let ptr = mem::phys_readable(t.phys, u64::from(t.len));
    // SAFETY: firmware tables stay in place and unchanged while the kernel
    // runs; `phys_readable` made all `len` bytes readable.
    Some(unsafe { core::slice::from_raw_parts(ptr as *const u8, t.len as usize) })
}

crate::shell_command!(ACPI_CMD, name: "acpi", usage: "acpi [dump SIG]",
    help: "list ACPI tables, or hex-dump one (e.g. acpi dump NFIT)",
    run: |args| {
        let Some(acpi) = get() else {
            crate::kprintln!("no ACPI tables (no RSDP)");
            return;
        };
        match args {
            ["dump", sig] if sig.len() == 4 => {
                let mut s = [0u8; 4];
                s.copy_from_slice(sig.as_bytes());
                match table_bytes(&s) {
                    Some(bytes) => {
                        crate::kprintln!("{sig}: {} bytes", bytes.len());
                        for (i, chunk) in bytes.chunks(16).enumerate() {
                            crate::kprint!("{:04x}:", i * 16);
                            for b in chunk {
                                crate::kprint!(" {b:02x}");
                            }
                            crate::kprintln!();
                        }
                    }
                    None => crate::kprintln!("no {sig} table"),
                }
            }
            _ => {
                crate::kprintln!("ACPI revision {}", acpi.revision);
                for t in &acpi.tables {
                    crate::kprintln!(
                        "  {}  at {:#x}, {} bytes",
                        core::str::from_utf8(&t.signature).unwrap_or("????"),
                        t.phys,
                        t.len
                    );
                }
            }
        }
    }
);
