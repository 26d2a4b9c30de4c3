//! ACPI: the firmware's tables, enumerated once at boot with the `acpi`
//! crate (from the RSDP the bootloader found), and the raw bytes of a table
//! on request (e.g. the NFIT, which `fsdax_drivers::nfit` parses).
//!
//! [`KernelAcpi`], the `acpi::Handler` (physical mappings, ports, PCI
//! configuration), is private to the hal: its trait methods take arbitrary
//! physical addresses and ports, so only the `acpi` crate calls them, with
//! addresses firmware gave it.

use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};

use crate::arch::port;

/// Physical memory access for the `acpi` crate: tables are read through the
/// direct map (or a fresh read-only mapping if the direct map lacks them).
#[derive(Debug, Clone, Copy)]
struct KernelAcpi;

fn phys_ptr<T>(phys: usize, len: usize) -> *mut T {
    crate::mm::firmware_readable(phys as u64, len as u64) as *mut T
}

/// Firmware register writes go only to memory outside RAM.
fn writable(phys: usize, len: usize) -> Option<*mut u8> {
    if crate::mm::overlaps_ram(phys as u64, len as u64) {
        return None;
    }
    let virt = crate::mm::map_mmio(phys as u64, len as u64);
    Some(virt as *mut u8)
}

impl Handler for KernelAcpi {
    /// # Safety
    /// `acpi::Handler`'s contract: the `acpi` crate passes a physical range
    /// firmware described (here, always read through a read-only or direct
    /// mapping, never written through this mapping).
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let ptr = phys_ptr::<T>(physical_address, size);
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(ptr).expect("mapped addresses are never null"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    // The remaining methods serve AML and the fixed hardware registers, which
    // fsdax does not use; reads go through read-only firmware mappings,
    // writes only to non-RAM (register) addresses.
    fn read_u8(&self, a: usize) -> u8 {
        // SAFETY: `phys_ptr` made the byte readable; firmware registers and
        // tables are read volatile.
        unsafe { phys_ptr::<u8>(a, 1).read_volatile() }
    }
    fn read_u16(&self, a: usize) -> u16 {
        // SAFETY: `phys_ptr` made the 2 bytes readable (unaligned reads are
        // fine on x86).
        unsafe { phys_ptr::<u16>(a, 2).read_unaligned() }
    }
    fn read_u32(&self, a: usize) -> u32 {
        // SAFETY: `phys_ptr` made the 4 bytes readable.
        unsafe { phys_ptr::<u32>(a, 4).read_unaligned() }
    }
    fn read_u64(&self, a: usize) -> u64 {
        // SAFETY: `phys_ptr` made the 8 bytes readable.
        unsafe { phys_ptr::<u64>(a, 8).read_unaligned() }
    }
    fn write_u8(&self, a: usize, v: u8) {
        if let Some(p) = writable(a, 1) {
            // SAFETY: a fresh uncached mapping of a non-RAM address firmware
            // named as a register.
            unsafe { p.write_volatile(v) }
        }
    }
    fn write_u16(&self, a: usize, v: u16) {
        if let Some(p) = writable(a, 2) {
            // SAFETY: as for `write_u8`.
            unsafe { p.cast::<u16>().write_unaligned(v) }
        }
    }
    fn write_u32(&self, a: usize, v: u32) {
        if let Some(p) = writable(a, 4) {
            // SAFETY: as for `write_u8`.
            unsafe { p.cast::<u32>().write_unaligned(v) }
        }
    }
    fn write_u64(&self, a: usize, v: u64) {
        if let Some(p) = writable(a, 8) {
            // SAFETY: as for `write_u8`.
            unsafe { p.cast::<u64>().write_unaligned(v) }
        }
    }
    fn read_io_u8(&self, p: u16) -> u8 {
        // SAFETY: the `acpi` crate passes ports firmware describes.
        unsafe { port::read_u8(p) }
    }
    fn read_io_u16(&self, p: u16) -> u16 {
        // SAFETY: the `acpi` crate passes ports firmware describes.
        unsafe { port::read_u16(p) }
    }
    fn read_io_u32(&self, p: u16) -> u32 {
        // SAFETY: the `acpi` crate passes ports firmware describes.
        unsafe { port::read_u32(p) }
    }
    fn write_io_u8(&self, p: u16, v: u8) {
        // SAFETY: the `acpi` crate passes ports and values firmware describes.
        unsafe { port::write_u8(p, v) }
    }
    fn write_io_u16(&self, p: u16, v: u16) {
        // SAFETY: the `acpi` crate passes ports and values firmware describes.
        unsafe { port::write_u16(p, v) }
    }
    fn write_io_u32(&self, p: u16, v: u32) {
        // SAFETY: the `acpi` crate passes ports and values firmware describes.
        unsafe { port::write_u32(p, v) }
    }
    fn read_pci_u8(&self, a: PciAddress, off: u16) -> u8 {
        (pci_read(a, off) >> ((off & 3) * 8)) as u8
    }
    fn read_pci_u16(&self, a: PciAddress, off: u16) -> u16 {
        (pci_read(a, off) >> ((off & 2) * 8)) as u16
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
        // No scheduler at this layer: wait by spinning.
        crate::time::spin_us(ms.saturating_mul(1000));
    }
}

fn pci_read(a: PciAddress, off: u16) -> u32 {
    port::pci_config_read(a.bus(), a.device(), a.function(), off)
}

/// One table: signature, physical address, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    /// The four-letter signature ("NFIT").
    pub signature: [u8; 4],
    /// Physical address.
    pub phys: u64,
    /// Length in bytes.
    pub len: u32,
}

impl TableInfo {
    /// The signature as text.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.signature).unwrap_or("????")
    }
}

/// What the firmware's ACPI tables say, read once at boot.
#[derive(Debug, Clone)]
pub struct Acpi {
    /// The RSDP revision (0: RSDT, 2: XSDT).
    pub revision: u8,
    /// Every table the RSDT/XSDT lists.
    pub tables: Vec<TableInfo>,
}

/// A summary of [`Acpi`] for the boot log.
#[derive(Debug, Clone, Copy)]
pub struct AcpiSummary {
    /// Where the RSDP is.
    pub rsdp: u64,
    /// Its revision.
    pub revision: u8,
    /// How many tables.
    pub tables: usize,
}

/// The tables at the RSDP could not be read.
#[derive(Debug, Clone, Copy)]
pub struct AcpiInitError {
    /// Where the RSDP was said to be.
    pub rsdp: u64,
    what: &'static str,
}

impl fmt::Display for AcpiInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACPI tables at RSDP {:#x} unreadable: {}", self.rsdp, self.what)
    }
}

fn describe(e: &acpi::AcpiError) -> &'static str {
    use acpi::AcpiError as E;
    match e {
        E::NoValidRsdp | E::RsdpIncorrectSignature => "no valid RSDP signature",
        E::RsdpInvalidOemId => "invalid RSDP OEM id",
        E::RsdpInvalidChecksum => "RSDP checksum mismatch",
        E::SdtInvalidSignature(_) | E::SdtInvalidOemId(_) | E::SdtInvalidTableId(_) | E::SdtInvalidCreatorId(_) => {
            "a table header is invalid"
        }
        E::SdtInvalidChecksum(_) => "a table checksum mismatch",
        E::TableNotFound(_) => "a required table is missing",
        _ => "the acpi crate rejected the tables",
    }
}

static ACPI: spin::Once<Acpi> = spin::Once::new();

/// Enumerates the tables from the RSDP at `rsdp`. Called by [`crate::init`].
pub(crate) fn init(rsdp: u64) -> Result<AcpiSummary, AcpiInitError> {
    // SAFETY: the bootloader found the RSDP at this physical address (it
    // checked the signature and checksum); the handler maps what the
    // `acpi` crate reads.
    let tables = unsafe { AcpiTables::from_rsdp(KernelAcpi, rsdp as usize) }
        .map_err(|e| AcpiInitError { rsdp, what: describe(&e) })?;
    let mut list = Vec::new();
    for (phys, header) in tables.table_headers() {
        let sig = header.signature.as_str().as_bytes();
        let mut signature = [b'?'; 4];
        for (d, s) in signature.iter_mut().zip(sig) {
            *d = *s;
        }
        list.push(TableInfo { signature, phys: phys as u64, len: header.length });
    }
    let a = ACPI.call_once(|| Acpi { revision: tables.rsdp_revision, tables: list });
    Ok(AcpiSummary { rsdp, revision: a.revision, tables: a.tables.len() })
}

/// The tables found at boot (None if there was no RSDP or they were
/// unreadable).
pub fn get() -> Option<&'static Acpi> {
    ACPI.get()
}

/// The raw bytes of the first table with `signature`.
pub fn table_bytes(signature: &[u8; 4]) -> Option<&'static [u8]> {
    let t = get()?.tables.iter().find(|t| &t.signature == signature)?;
    let ptr = crate::mm::firmware_readable(t.phys, u64::from(t.len));
    // SAFETY: firmware tables stay in place and unchanged while the kernel
    // runs (ACPI reclaimable memory is never handed to the frame allocator
    // as usable); `firmware_readable` made all `len` bytes readable, for
    // good.
    Some(unsafe { core::slice::from_raw_parts(ptr as *const u8, t.len as usize) })
}
