//! The NFIT sub-table ("structure") types and their decoding.
//!
//! Layouts follow ACPI 6.5 section 5.2.26 (NVDIMM Firmware Interface
//! Table). All fields are little-endian. Every read goes through
//! [`Fields`], which checks bounds and reports the table offset of a short
//! read, so that malformed firmware gives an error and never a panic.
#![forbid(unsafe_code)]

use super::guid::{AddressRangeType, Guid};
use super::NfitError;

/// Sub-table type codes.
pub mod ty {
    /// System Physical Address (SPA) Range.
    pub const SPA_RANGE: u16 = 0;
    /// NVDIMM Region Mapping (memory device to SPA range).
    pub const REGION_MAPPING: u16 = 1;
    /// Interleave description.
    pub const INTERLEAVE: u16 = 2;
    /// SMBIOS management information.
    pub const SMBIOS: u16 = 3;
    /// NVDIMM Control Region.
    pub const CONTROL_REGION: u16 = 4;
    /// NVDIMM Block Data Window Region.
    pub const BLOCK_DATA_WINDOW: u16 = 5;
    /// Flush Hint Address.
    pub const FLUSH_HINT: u16 = 6;
    /// Platform Capabilities.
    pub const PLATFORM_CAPABILITIES: u16 = 7;
}

/// Minimum lengths of each sub-table type, in bytes.
pub mod min_len {
    /// SPA Range without the ACPI 6.3 location cookie.
    pub const SPA_RANGE: usize = 56;
    /// SPA Range with the location cookie.
    pub const SPA_RANGE_WITH_COOKIE: usize = 64;
    /// Region Mapping.
    pub const REGION_MAPPING: usize = 48;
    /// Interleave, without any line offsets.
    pub const INTERLEAVE: usize = 16;
    /// SMBIOS, without data.
    pub const SMBIOS: usize = 8;
    /// Control Region of a device without block data windows.
    pub const CONTROL_REGION_NO_WINDOWS: usize = 32;
    /// Control Region of a device with block data windows.
    pub const CONTROL_REGION: usize = 80;
    /// Block Data Window.
    pub const BLOCK_DATA_WINDOW: usize = 40;
    /// Flush Hint Address, without any addresses.
    pub const FLUSH_HINT: usize = 16;
    /// Platform Capabilities.
    pub const PLATFORM_CAPABILITIES: usize = 16;
}

/// Bounds-checked little-endian reads inside one sub-table.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fields<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` in the whole table, for error reports.
    table_offset: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(bytes: &'a [u8], table_offset: usize) -> Self {
        Self { bytes, table_offset }
    }

    fn array<const K: usize>(&self, at: usize) -> Result<[u8; K], NfitError> {
        let truncated = NfitError::Truncated { offset: self.table_offset.saturating_add(at) };
        let end = at.checked_add(K).ok_or(truncated)?;
        let slice = self.bytes.get(at..end).ok_or(truncated)?;
        <[u8; K]>::try_from(slice).map_err(|_| truncated)
    }

    pub(super) fn u8(&self, at: usize) -> Result<u8, NfitError> {
        Ok(self.array::<1>(at)?[0])
    }
    pub(super) fn u16(&self, at: usize) -> Result<u16, NfitError> {
        self.array(at).map(u16::from_le_bytes)
    }
    pub(super) fn u32(&self, at: usize) -> Result<u32, NfitError> {
        self.array(at).map(u32::from_le_bytes)
    }
    pub(super) fn u64(&self, at: usize) -> Result<u64, NfitError> {
        self.array(at).map(u64::from_le_bytes)
    }
    fn tail(&self, at: usize) -> Result<&'a [u8], NfitError> {
        self.bytes.get(at..).ok_or(NfitError::Truncated { offset: self.table_offset.saturating_add(at) })
    }
}

/// Type 0: a range of system physical addresses and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaRange {
    /// SPA Range Structure Index, referenced by [`RegionMapping::spa_index`].
    /// Zero means "not referenced by any region mapping".
    pub index: u16,
    /// Flags (see the `SPA_FLAG_*` constants).
    pub flags: u16,
    /// NUMA proximity domain, valid if [`SpaRange::proximity_valid`].
    pub proximity_domain: u32,
    /// What the range holds.
    pub range_type: AddressRangeType,
    /// First physical address.
    pub base: u64,
    /// Length in bytes (never zero in a parsed table).
    pub length: u64,
    /// EFI memory attributes (`EFI_MEMORY_WB` = 0x8, `EFI_MEMORY_NV` = 0x8000...).
    pub memory_attributes: u64,
    /// ACPI 6.3 location cookie, if the structure is long enough and the
    /// flag says it is valid.
    pub location_cookie: Option<u64>,
}

impl SpaRange {
    /// Flag: the control region is used only for hot add / online.
    pub const FLAG_ADD_ONLINE_ONLY: u16 = 1 << 0;
    /// Flag: the proximity domain field is valid.
    pub const FLAG_PROXIMITY_VALID: u16 = 1 << 1;
    /// Flag: the location cookie field is valid.
    pub const FLAG_LOCATION_COOKIE_VALID: u16 = 1 << 2;

    /// One past the last address. Never overflows in a parsed table.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }

    /// Whether `phys` lies inside the range.
    pub fn contains(&self, phys: u64) -> bool {
        phys >= self.base && phys < self.end()
    }

    /// Whether the proximity domain is meaningful.
    pub fn proximity_valid(&self) -> bool {
        self.flags & Self::FLAG_PROXIMITY_VALID != 0
    }

    /// Whether this is a byte-addressable persistent-memory range.
    pub fn is_pmem(&self) -> bool {
        self.range_type == AddressRangeType::PersistentMemory
    }
}

/// Type 1: how (part of) one NVDIMM maps into an SPA range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionMapping {
    /// NFIT device handle (what the NVDIMM's ACPI `_ADR` returns).
    pub device_handle: u32,
    /// Physical id of the NVDIMM (SMBIOS handle).
    pub physical_id: u16,
    /// Region id within the NVDIMM.
    pub region_id: u16,
    /// Index of the [`SpaRange`] this maps into (0: none).
    pub spa_index: u16,
    /// Index of the [`ControlRegion`] of this NVDIMM.
    pub control_region_index: u16,
    /// Size of the region on the device, in bytes.
    pub region_size: u64,
    /// Offset of this device's first byte in the SPA range (interleaved).
    pub region_offset: u64,
    /// Device Physical Address where the region starts on the NVDIMM.
    pub region_dpa: u64,
    /// Index of the [`Interleave`] structure (0: not interleaved).
    pub interleave_index: u16,
    /// Number of NVDIMMs in the interleave set.
    pub interleave_ways: u16,
    /// State flags (see the `FLAG_*` constants).
    pub flags: u16,
}

impl RegionMapping {
    /// The last save to the device failed.
    pub const FLAG_SAVE_FAILED: u16 = 1 << 0;
    /// The last restore from the device failed.
    pub const FLAG_RESTORE_FAILED: u16 = 1 << 1;
    /// The platform flush failed: data may not be persistent.
    pub const FLAG_FLUSH_FAILED: u16 = 1 << 2;
    /// The device is not armed: writes may not be persistent.
    pub const FLAG_NOT_ARMED: u16 = 1 << 3;
    /// The device observed SMART/health events.
    pub const FLAG_HEALTH_OBSERVED: u16 = 1 << 4;
    /// SMART/health event notifications are enabled.
    pub const FLAG_HEALTH_ENABLED: u16 = 1 << 5;
    /// The mapping failed (ACPI 6.1).
    pub const FLAG_MAP_FAILED: u16 = 1 << 6;
}

/// Type 2: the line layout of an interleave set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interleave<'a> {
    /// Interleave Structure Index.
    pub index: u16,
    /// Size of one line, in bytes.
    pub line_size: u32,
    /// Raw line offsets, 4 bytes each (length checked against the count).
    line_offsets: &'a [u8],
}

impl<'a> Interleave<'a> {
    /// Number of lines described.
    pub fn line_count(&self) -> usize {
        self.line_offsets.len() / 4
    }

    /// The line offsets, in units of `line_size`.
    pub fn line_offsets(&self) -> impl Iterator<Item = u32> + 'a {
        self.line_offsets.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Type 3: opaque SMBIOS management information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smbios<'a> {
    /// The SMBIOS data that follows the 8-byte header.
    pub data: &'a [u8],
}

/// Type 4: identity of an NVDIMM and its block-mode control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRegion {
    /// Control Region Structure Index, referenced by
    /// [`RegionMapping::control_region_index`].
    pub index: u16,
    /// Vendor id, as stored (little-endian field).
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Revision id.
    pub revision_id: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem device id.
    pub subsystem_device_id: u16,
    /// Subsystem revision id.
    pub subsystem_revision_id: u16,
    /// Bit 0: manufacturing location and date are valid.
    pub valid_fields: u8,
    /// Manufacturing location.
    pub manufacturing_location: u8,
    /// Manufacturing date.
    pub manufacturing_date: u16,
    /// Serial number.
    pub serial_number: u32,
    /// Region Format Interface Code (e.g. 0x0301: byte addressable).
    pub format_interface_code: u16,
    /// Number of block control windows (0 for a pure pmem device).
    pub windows: u16,
    /// Block window registers, present only if `windows > 0`.
    pub block_control: Option<BlockControl>,
}

/// The block-control-window part of a [`ControlRegion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockControl {
    /// Size of one block control window.
    pub window_size: u64,
    /// Offset of the command register in the window.
    pub command_offset: u64,
    /// Size of the command register.
    pub command_size: u64,
    /// Offset of the status register in the window.
    pub status_offset: u64,
    /// Size of the status register.
    pub status_size: u64,
    /// Bit 0: block data windows are buffered.
    pub flags: u16,
}

/// Type 5: block data windows of an NVDIMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockDataWindow {
    /// Index of the [`ControlRegion`] this belongs to.
    pub control_region_index: u16,
    /// Number of block data windows.
    pub windows: u16,
    /// Offset of the first window in the SPA range.
    pub offset: u64,
    /// Size of one window.
    pub size: u64,
    /// Block-accessible capacity.
    pub capacity: u64,
    /// Start address of the block-accessible capacity.
    pub start_address: u64,
}

/// Type 6: addresses to write to flush an NVDIMM's write-pending queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushHint<'a> {
    /// NFIT device handle of the NVDIMM.
    pub device_handle: u32,
    /// Raw addresses, 8 bytes each (length checked against the count).
    addresses: &'a [u8],
}

impl<'a> FlushHint<'a> {
    /// Number of flush hint addresses.
    pub fn count(&self) -> usize {
        self.addresses.len() / 8
    }

    /// The flush hint addresses (physical).
    pub fn addresses(&self) -> impl Iterator<Item = u64> + 'a {
        self.addresses.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
    }
}

/// Type 7: what the platform guarantees on power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformCapabilities {
    /// Highest valid capability bit.
    pub highest_capability: u8,
    /// Capability bits, masked to the valid ones.
    pub capabilities: u32,
}

impl PlatformCapabilities {
    /// CPU caches are flushed to the NVDIMMs on power loss (eADR).
    pub const CACHE_FLUSH: u32 = 1 << 0;
    /// The memory controller's queues are flushed on power loss (ADR).
    pub const MEMORY_FLUSH: u32 = 1 << 1;
    /// Hardware memory mirroring is supported.
    pub const MEMORY_MIRRORING: u32 = 1 << 2;

    /// Whether a store that reached the cache is already persistent
    /// (no `clwb` needed, only ordering).
    pub fn cpu_cache_is_persistent(&self) -> bool {
        self.capabilities & Self::CACHE_FLUSH != 0
    }
}

/// One decoded NFIT sub-table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure<'a> {
    /// Type 0.
    SpaRange(SpaRange),
    /// Type 1.
    RegionMapping(RegionMapping),
    /// Type 2.
    Interleave(Interleave<'a>),
    /// Type 3.
    Smbios(Smbios<'a>),
    /// Type 4.
    ControlRegion(ControlRegion),
    /// Type 5.
    BlockDataWindow(BlockDataWindow),
    /// Type 6.
    FlushHint(FlushHint<'a>),
    /// Type 7.
    PlatformCapabilities(PlatformCapabilities),
    /// A type this parser does not know; skipped.
    Unknown {
        /// The type code.
        ty: u16,
        /// The sub-table's length in bytes, header included.
        bytes_len: u16,
    },
}

/// Decodes one sub-table whose header says `ty` and whose bytes (header
/// included, exactly `length` of them) are `bytes`, found at `offset` in the
/// table.
pub(super) fn decode(ty: u16, bytes: &[u8], offset: usize) -> Result<Structure<'_>, NfitError> {
    let f = Fields::new(bytes, offset);
    let len = bytes.len();
    let need = |min: usize| {
        if len < min {
            Err(NfitError::BadLength { offset, len })
        } else {
            Ok(())
        }
    };
    let s = match ty {
        ty::SPA_RANGE => {
            need(min_len::SPA_RANGE)?;
            let index = f.u16(4)?;
            let flags = f.u16(6)?;
            let base = f.u64(32)?;
            let length = f.u64(40)?;
            if length == 0 {
                return Err(NfitError::EmptyRange { index });
            }
            if base.checked_add(length).is_none() {
                return Err(NfitError::RangeOverflow { index });
            }
            // A flagged location cookie must be present (as Linux checks).
            let location_cookie = if flags & SpaRange::FLAG_LOCATION_COOKIE_VALID != 0 {
                need(min_len::SPA_RANGE_WITH_COOKIE)?;
                Some(f.u64(56)?)
            } else {
                None
            };
            Structure::SpaRange(SpaRange {
                index,
                flags,
                proximity_domain: f.u32(12)?,
                range_type: AddressRangeType::from_guid(Guid(f.array(16)?)),
                base,
                length,
                memory_attributes: f.u64(48)?,
                location_cookie,
            })
        }
        ty::REGION_MAPPING => {
            need(min_len::REGION_MAPPING)?;
            Structure::RegionMapping(RegionMapping {
                device_handle: f.u32(4)?,
                physical_id: f.u16(8)?,
                region_id: f.u16(10)?,
                spa_index: f.u16(12)?,
                control_region_index: f.u16(14)?,
                region_size: f.u64(16)?,
                region_offset: f.u64(24)?,
                region_dpa: f.u64(32)?,
                interleave_index: f.u16(40)?,
                interleave_ways: f.u16(42)?,
                flags: f.u16(44)?,
            })
        }
        ty::INTERLEAVE => {
            need(min_len::INTERLEAVE)?;
            let count = f.u32(8)?;
            let lines = counted_tail(&f, min_len::INTERLEAVE, count, 4, offset)?;
            Structure::Interleave(Interleave { index: f.u16(4)?, line_size: f.u32(12)?, line_offsets: lines })
        }
        ty::SMBIOS => {
            need(min_len::SMBIOS)?;
            Structure::Smbios(Smbios { data: f.tail(8)? })
        }
        ty::CONTROL_REGION => {
            need(min_len::CONTROL_REGION_NO_WINDOWS)?;
            let windows = f.u16(30)?;
            let block_control = if windows > 0 {
                need(min_len::CONTROL_REGION)?;
                Some(BlockControl {
                    window_size: f.u64(32)?,
                    command_offset: f.u64(40)?,
                    command_size: f.u64(48)?,
                    status_offset: f.u64(56)?,
                    status_size: f.u64(64)?,
                    flags: f.u16(72)?,
                })
            } else {
                None
            };
            Structure::ControlRegion(ControlRegion {
                index: f.u16(4)?,
                vendor_id: f.u16(6)?,
                device_id: f.u16(8)?,
                revision_id: f.u16(10)?,
                subsystem_vendor_id: f.u16(12)?,
                subsystem_device_id: f.u16(14)?,
                subsystem_revision_id: f.u16(16)?,
                valid_fields: f.u8(18)?,
                manufacturing_location: f.u8(19)?,
                manufacturing_date: f.u16(20)?,
                serial_number: f.u32(24)?,
                format_interface_code: f.u16(28)?,
                windows,
                block_control,
            })
        }
        ty::BLOCK_DATA_WINDOW => {
            need(min_len::BLOCK_DATA_WINDOW)?;
            Structure::BlockDataWindow(BlockDataWindow {
                control_region_index: f.u16(4)?,
                windows: f.u16(6)?,
                offset: f.u64(8)?,
                size: f.u64(16)?,
                capacity: f.u64(24)?,
                start_address: f.u64(32)?,
            })
        }
        ty::FLUSH_HINT => {
            need(min_len::FLUSH_HINT)?;
            let count = f.u16(8)?;
            let addresses = counted_tail(&f, min_len::FLUSH_HINT, count.into(), 8, offset)?;
            Structure::FlushHint(FlushHint { device_handle: f.u32(4)?, addresses })
        }
        ty::PLATFORM_CAPABILITIES => {
            need(min_len::PLATFORM_CAPABILITIES)?;
            let highest_capability = f.u8(4)?;
            let raw = f.u32(8)?;
            // Bits above the highest valid one are reserved: ignore them.
            let valid_mask = 1u32.checked_shl(u32::from(highest_capability) + 1).map_or(u32::MAX, |bit| bit - 1);
            Structure::PlatformCapabilities(PlatformCapabilities { highest_capability, capabilities: raw & valid_mask })
        }
        other => Structure::Unknown {
            ty: other,
            // `len` came from a u16 header field, so this never saturates.
            bytes_len: u16::try_from(len).unwrap_or(u16::MAX),
        },
    };
    Ok(s)
}

/// Returns the `count * elem` bytes that follow a fixed header of `fixed`
/// bytes, or an error if they do not fit in the sub-table.
fn counted_tail<'a>(
    f: &Fields<'a>,
    fixed: usize,
    count: u32,
    elem: usize,
    offset: usize,
) -> Result<&'a [u8], NfitError> {
    let bad = NfitError::BadCount { offset, count };
    let bytes = usize::try_from(count).ok().and_then(|c| c.checked_mul(elem)).ok_or(bad)?;
    let end = fixed.checked_add(bytes).ok_or(bad)?;
    f.bytes.get(fixed..end).ok_or(bad)
}
