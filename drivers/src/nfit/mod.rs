//! ACPI NVDIMM Firmware Interface Table (NFIT) parser.
//!
//! The NFIT (ACPI 6.5, section 5.2.26) tells the OS which ranges of the
//! physical address space are persistent memory, which NVDIMMs back them,
//! how they are interleaved, and where the flush-hint registers are.
//!
//! [`Nfit::parse`] checks the whole table once (signature, length, checksum,
//! every sub-table's length against its type, counts against lengths, SPA
//! ranges that overflow or overlap) and then hands out a borrowed view:
//! decoding never allocates, so it can run before the kernel heap exists.
//! Malformed tables give an [`NfitError`]; no input can make the parser
//! panic, loop forever or read out of bounds (there is a property test for
//! that).
//!
//! ```
//! # fn demo(bytes: &[u8]) -> Result<(), fsdax_drivers::nfit::NfitError> {
//! use fsdax_drivers::nfit::Nfit;
//! let nfit = Nfit::parse(bytes)?;
//! for spa in nfit.pmem_ranges() {
//!     let _ = (spa.base, spa.length);
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod guid;
mod structures;
#[cfg(test)]
mod tests;

use core::fmt;

pub use guid::*;
use structures::{decode, Fields};
pub use structures::{
    min_len, ty, BlockControl, BlockDataWindow, ControlRegion, FlushHint, Interleave, PlatformCapabilities,
    RegionMapping, Smbios, SpaRange, Structure,
};

/// Size of the standard ACPI table header.
pub const ACPI_HEADER_LEN: usize = 36;
/// Size of the NFIT header: the ACPI header plus 4 reserved bytes.
pub const NFIT_HEADER_LEN: usize = 40;
/// Size of a sub-table header (type and length, both u16).
pub const SUBTABLE_HEADER_LEN: usize = 4;
/// More SPA ranges than this are refused: no platform has that many, and the
/// pairwise overlap check must stay cheap on hostile input.
pub const MAX_SPA_RANGES: usize = 1024;

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfitError {
    /// The bytes end before a field at `offset` (from the table start).
    Truncated {
        /// Offset of the first missing byte.
        offset: usize,
    },
    /// The signature is not `"NFIT"`.
    BadSignature,
    /// A length field is impossible: the table header's length is shorter
    /// than the NFIT header, or a sub-table is too short for its type or
    /// runs past the end of the table.
    BadLength {
        /// Offset of the table (0) or sub-table.
        offset: usize,
        /// The length found there.
        len: usize,
    },
    /// A sub-table's length is zero (which would loop forever).
    ZeroLength {
        /// Offset of the sub-table.
        offset: usize,
    },
    /// The bytes of the table do not sum to zero.
    BadChecksum,
    /// An element count (interleave lines, flush hints) does not fit in its
    /// sub-table.
    BadCount {
        /// Offset of the sub-table.
        offset: usize,
        /// The count found there.
        count: u32,
    },
    /// An SPA range has length zero.
    EmptyRange {
        /// Its SPA range index.
        index: u16,
    },
    /// An SPA range's base plus length overflows 64 bits.
    RangeOverflow {
        /// Its SPA range index.
        index: u16,
    },
    /// Two SPA ranges overlap.
    OverlappingRanges {
        /// SPA range index of the first.
        a: u16,
        /// SPA range index of the second.
        b: u16,
    },
    /// More than [`MAX_SPA_RANGES`] SPA ranges.
    TooManyRanges,
}

impl fmt::Display for NfitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { offset } => write!(f, "NFIT truncated at byte {offset}"),
            Self::BadSignature => write!(f, "not an NFIT (bad signature)"),
            Self::BadLength { offset, len } => {
                write!(f, "NFIT: impossible length {len} at byte {offset}")
            }
            Self::ZeroLength { offset } => {
                write!(f, "NFIT: zero-length sub-table at byte {offset}")
            }
            Self::BadChecksum => write!(f, "NFIT: bad checksum"),
            Self::BadCount { offset, count } => {
                write!(f, "NFIT: count {count} does not fit the sub-table at byte {offset}")
            }
            Self::EmptyRange { index } => write!(f, "NFIT: SPA range {index} is empty"),
            Self::RangeOverflow { index } => write!(f, "NFIT: SPA range {index} overflows"),
            Self::OverlappingRanges { a, b } => {
                write!(f, "NFIT: SPA ranges {a} and {b} overlap")
            }
            Self::TooManyRanges => write!(f, "NFIT: too many SPA ranges"),
        }
    }
}

/// The fields of the ACPI table header that identify the table's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfitHeader {
    /// Table length in bytes, header included.
    pub length: u32,
    /// Table revision (1 for every ACPI 6.x NFIT).
    pub revision: u8,
    /// OEM id (QEMU: `"BOCHS "`).
    pub oem_id: [u8; 6],
    /// OEM table id (QEMU: `"BXPC    "`).
    pub oem_table_id: [u8; 8],
    /// OEM revision.
    pub oem_revision: u32,
    /// ASL compiler / creator id.
    pub creator_id: [u8; 4],
    /// Creator revision.
    pub creator_revision: u32,
}

/// A validated NFIT, borrowing the table's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Nfit<'a> {
    header: NfitHeader,
    /// The sub-tables: `bytes[NFIT_HEADER_LEN..length]`.
    body: &'a [u8],
}

impl<'a> Nfit<'a> {
    /// Validates `bytes` as an NFIT (the 36-byte ACPI header included).
    ///
    /// Bytes beyond the header's length field are ignored, so a caller may
    /// pass a whole mapped page.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, NfitError> {
        let f = Fields::new(bytes, 0);
        let signature: [u8; 4] = [f.u8(0)?, f.u8(1)?, f.u8(2)?, f.u8(3)?];
        if &signature != b"NFIT" {
            return Err(NfitError::BadSignature);
        }
        let length = f.u32(4)?;
        let len = usize::try_from(length).map_err(|_| NfitError::Truncated { offset: 0 })?;
        if len < NFIT_HEADER_LEN {
            return Err(NfitError::BadLength { offset: 0, len });
        }
        let table = bytes.get(..len).ok_or(NfitError::Truncated { offset: bytes.len() })?;
        if table.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) != 0 {
            return Err(NfitError::BadChecksum);
        }
        let ident = |at: usize| f.u8(at);
        let header = NfitHeader {
            length,
            revision: f.u8(8)?,
            oem_id: [ident(10)?, ident(11)?, ident(12)?, ident(13)?, ident(14)?, ident(15)?],
            oem_table_id: [
                ident(16)?,
                ident(17)?,
                ident(18)?,
                ident(19)?,
                ident(20)?,
                ident(21)?,
                ident(22)?,
                ident(23)?,
            ],
            oem_revision: f.u32(24)?,
            creator_id: [ident(28)?, ident(29)?, ident(30)?, ident(31)?],
            creator_revision: f.u32(32)?,
        };
        let body = table.get(NFIT_HEADER_LEN..).ok_or(NfitError::Truncated { offset: NFIT_HEADER_LEN })?;
        let nfit = Nfit { header, body };
        nfit.validate()?;
        Ok(nfit)
    }

    /// Checks every sub-table, then the SPA ranges against each other.
    fn validate(&self) -> Result<(), NfitError> {
        let mut spa_count = 0usize;
        for item in RawStructures::new(self.body) {
            if let Structure::SpaRange(_) = item? {
                spa_count += 1;
                if spa_count > MAX_SPA_RANGES {
                    return Err(NfitError::TooManyRanges);
                }
            }
        }
        for (i, a) in self.spa_ranges().enumerate() {
            for b in self.spa_ranges().skip(i + 1) {
                if a.base < b.end() && b.base < a.end() {
                    return Err(NfitError::OverlappingRanges { a: a.index, b: b.index });
                }
            }
        }
        Ok(())
    }

    /// The table header.
    pub fn header(&self) -> &NfitHeader {
        &self.header
    }

    /// All sub-tables, in table order.
    pub fn structures(&self) -> Structures<'a> {
        Structures { raw: RawStructures::new(self.body) }
    }

    /// All SPA ranges, of every type.
    pub fn spa_ranges(&self) -> impl Iterator<Item = SpaRange> + 'a {
        self.structures().filter_map(|s| match s {
            Structure::SpaRange(r) => Some(r),
            _ => None,
        })
    }

    /// The byte-addressable persistent-memory SPA ranges.
    pub fn pmem_ranges(&self) -> impl Iterator<Item = SpaRange> + 'a {
        self.spa_ranges().filter(SpaRange::is_pmem)
    }

    /// The SPA range with the given (non-zero) index.
    pub fn spa_range(&self, index: u16) -> Option<SpaRange> {
        if index == 0 {
            return None;
        }
        self.spa_ranges().find(|r| r.index == index)
    }

    /// All region mappings.
    pub fn region_mappings(&self) -> impl Iterator<Item = RegionMapping> + 'a {
        self.structures().filter_map(|s| match s {
            Structure::RegionMapping(m) => Some(m),
            _ => None,
        })
    }

    /// The region mappings (one per NVDIMM in the interleave set) that back
    /// the SPA range with index `spa_index`.
    pub fn mappings_for(&self, spa_index: u16) -> impl Iterator<Item = RegionMapping> + 'a {
        self.region_mappings().filter(move |m| spa_index != 0 && m.spa_index == spa_index)
    }

    /// The control region with the given (non-zero) index.
    pub fn control_region(&self, index: u16) -> Option<ControlRegion> {
        if index == 0 {
            return None;
        }
        self.structures().find_map(|s| match s {
            Structure::ControlRegion(c) if c.index == index => Some(c),
            _ => None,
        })
    }

    /// The interleave structure with the given (non-zero) index.
    pub fn interleave(&self, index: u16) -> Option<Interleave<'a>> {
        if index == 0 {
            return None;
        }
        self.structures().find_map(|s| match s {
            Structure::Interleave(i) if i.index == index => Some(i),
            _ => None,
        })
    }

    /// All flush hint structures.
    pub fn flush_hints(&self) -> impl Iterator<Item = FlushHint<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            Structure::FlushHint(h) => Some(h),
            _ => None,
        })
    }

    /// The flush hint addresses of the NVDIMM with `device_handle` (empty
    /// if the platform gives none, as QEMU does: then a `sfence` after the
    /// cache flush is the whole persistence protocol).
    pub fn flush_hints_for(&self, device_handle: u32) -> impl Iterator<Item = u64> + 'a {
        self.flush_hints().filter(move |h| h.device_handle == device_handle).flat_map(|h| h.addresses())
    }

    /// The platform capabilities structure, if any.
    pub fn platform_capabilities(&self) -> Option<PlatformCapabilities> {
        self.structures().find_map(|s| match s {
            Structure::PlatformCapabilities(c) => Some(c),
            _ => None,
        })
    }
}

/// Iterator over the sub-tables of a validated [`Nfit`].
#[derive(Clone, Debug)]
pub struct Structures<'a> {
    raw: RawStructures<'a>,
}

impl<'a> Iterator for Structures<'a> {
    type Item = Structure<'a>;

    fn next(&mut self) -> Option<Structure<'a>> {
        // The table was validated, so an error cannot happen here; if it
        // did, stopping is the safe answer.
        self.raw.next()?.ok()
    }
}

/// Walks sub-tables, checking each header before decoding it. After the
/// first error it yields nothing more, so it always terminates: every
/// successful step advances by at least `SUBTABLE_HEADER_LEN` bytes.
#[derive(Clone, Debug)]
struct RawStructures<'a> {
    body: &'a [u8],
    /// Offset of the next sub-table in `body`.
    pos: usize,
    failed: bool,
}

impl<'a> RawStructures<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { body, pos: 0, failed: false }
    }

    fn step(&mut self) -> Result<Structure<'a>, NfitError> {
        let offset = NFIT_HEADER_LEN + self.pos;
        let rest = self.body.get(self.pos..).ok_or(NfitError::Truncated { offset })?;
        let f = Fields::new(rest, offset);
        let ty = f.u16(0)?;
        let len = usize::from(f.u16(2)?);
        if len == 0 {
            return Err(NfitError::ZeroLength { offset });
        }
        if len < SUBTABLE_HEADER_LEN {
            return Err(NfitError::BadLength { offset, len });
        }
        let bytes = rest.get(..len).ok_or(NfitError::BadLength { offset, len })?;
        let structure = decode(ty, bytes, offset)?;
        self.pos += len;
        Ok(structure)
    }
}

impl<'a> Iterator for RawStructures<'a> {
    type Item = Result<Structure<'a>, NfitError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.body.len() {
            return None;
        }
        let item = self.step();
        self.failed = item.is_err();
        Some(item)
    }
}
