//! GUIDs as ACPI stores them, and the SPA range address-range types.
#![forbid(unsafe_code)]

use core::fmt;

/// A GUID in the byte order ACPI and UEFI store it: the first three fields
/// little-endian, the last eight bytes as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds a GUID from its canonical text fields
    /// (`AAAAAAAA-BBBB-CCCC-DDDD-DDDDDDDDDDDD`).
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        let a = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        let b = u16::from_le_bytes([g[4], g[5]]);
        let c = u16::from_le_bytes([g[6], g[7]]);
        write!(f, "{a:08X}-{b:04X}-{c:04X}-{:02X}{:02X}-", g[8], g[9])?;
        for byte in &g[10..] {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Volatile memory range.
pub const GUID_VOLATILE_MEMORY: Guid =
    Guid::from_fields(0x7305_944F, 0xFDDA, 0x44E3, [0xB1, 0x6C, 0x3F, 0x22, 0xD2, 0x52, 0xE5, 0xD0]);
/// Byte-addressable persistent memory range.
pub const GUID_PERSISTENT_MEMORY: Guid =
    Guid::from_fields(0x66F0_D379, 0xB4F3, 0x4074, [0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB]);
/// NVDIMM control region (block mode command/status registers).
pub const GUID_CONTROL_REGION: Guid =
    Guid::from_fields(0x92F7_01F6, 0x13B4, 0x405D, [0x91, 0x0B, 0x29, 0x93, 0x67, 0xE8, 0x23, 0x4C]);
/// NVDIMM block data window region.
pub const GUID_BLOCK_DATA_WINDOW: Guid =
    Guid::from_fields(0x91AF_0530, 0x5D86, 0x470E, [0xA6, 0xB0, 0x0A, 0x2D, 0xB9, 0x40, 0x82, 0x49]);
/// RAM disk with a raw disk format in volatile memory.
pub const GUID_VOLATILE_VIRTUAL_DISK: Guid =
    Guid::from_fields(0x77AB_535A, 0x45FC, 0x624B, [0x55, 0x60, 0xF7, 0xB2, 0x81, 0xD1, 0xF9, 0x6E]);
/// RAM disk with an ISO image in volatile memory.
pub const GUID_VOLATILE_VIRTUAL_CD: Guid =
    Guid::from_fields(0x3D5A_BD30, 0x4175, 0x87CE, [0x6D, 0x64, 0xD2, 0xAD, 0xE5, 0x23, 0xC4, 0xBB]);
/// RAM disk with a raw disk format in persistent memory.
pub const GUID_PERSISTENT_VIRTUAL_DISK: Guid =
    Guid::from_fields(0x5CEA_02C9, 0x4D07, 0x69D3, [0x26, 0x9F, 0x44, 0x96, 0xFB, 0xE0, 0x96, 0xF9]);
/// RAM disk with an ISO image in persistent memory.
pub const GUID_PERSISTENT_VIRTUAL_CD: Guid =
    Guid::from_fields(0x0801_8188, 0x42CD, 0xBB48, [0x10, 0x0F, 0x53, 0x87, 0xD5, 0x3D, 0xED, 0x3D]);

/// What a System Physical Address Range holds (its Address Range Type GUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressRangeType {
    /// Ordinary volatile memory.
    Volatile,
    /// Byte-addressable persistent memory: what fsdax runs on.
    PersistentMemory,
    /// NVDIMM control region.
    ControlRegion,
    /// NVDIMM block data window.
    BlockDataWindow,
    /// Virtual disk in volatile memory.
    VolatileVirtualDisk,
    /// Virtual CD in volatile memory.
    VolatileVirtualCd,
    /// Virtual disk in persistent memory.
    PersistentVirtualDisk,
    /// Virtual CD in persistent memory.
    PersistentVirtualCd,
    /// A GUID this parser does not know.
    Unknown(Guid),
}

impl AddressRangeType {
    /// Classifies an address-range-type GUID.
    pub fn from_guid(guid: Guid) -> Self {
        match guid {
            GUID_VOLATILE_MEMORY => Self::Volatile,
            GUID_PERSISTENT_MEMORY => Self::PersistentMemory,
            GUID_CONTROL_REGION => Self::ControlRegion,
            GUID_BLOCK_DATA_WINDOW => Self::BlockDataWindow,
            GUID_VOLATILE_VIRTUAL_DISK => Self::VolatileVirtualDisk,
            GUID_VOLATILE_VIRTUAL_CD => Self::VolatileVirtualCd,
            GUID_PERSISTENT_VIRTUAL_DISK => Self::PersistentVirtualDisk,
            GUID_PERSISTENT_VIRTUAL_CD => Self::PersistentVirtualCd,
            other => Self::Unknown(other),
        }
    }

    /// The GUID that identifies this type in the table.
    pub fn guid(self) -> Guid {
        match self {
            Self::Volatile => GUID_VOLATILE_MEMORY,
            Self::PersistentMemory => GUID_PERSISTENT_MEMORY,
            Self::ControlRegion => GUID_CONTROL_REGION,
            Self::BlockDataWindow => GUID_BLOCK_DATA_WINDOW,
            Self::VolatileVirtualDisk => GUID_VOLATILE_VIRTUAL_DISK,
            Self::VolatileVirtualCd => GUID_VOLATILE_VIRTUAL_CD,
            Self::PersistentVirtualDisk => GUID_PERSISTENT_VIRTUAL_DISK,
            Self::PersistentVirtualCd => GUID_PERSISTENT_VIRTUAL_CD,
            Self::Unknown(g) => g,
        }
    }
}
