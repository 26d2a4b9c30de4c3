//! Typed views of the machine-check MSRs.
#![forbid(unsafe_code)]

const fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 != 0
}

/// `IA32_MCG_CAP` (MSR 0x179): what the machine-check hardware offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McgCap(pub u64);

impl McgCap {
    /// Number of reporting banks.
    pub const fn bank_count(self) -> u8 {
        (self.0 & 0xFF) as u8
    }
    /// `IA32_MCG_CTL` is present.
    pub const fn ctl_p(self) -> bool {
        bit(self.0, 8)
    }
    /// Corrected machine-check interrupts (CMCI) are supported.
    pub const fn cmci_p(self) -> bool {
        bit(self.0, 10)
    }
    /// Threshold-based error status is present.
    pub const fn tes_p(self) -> bool {
        bit(self.0, 11)
    }
    /// Software error recovery (the S and AR status bits) is supported.
    pub const fn ser_p(self) -> bool {
        bit(self.0, 24)
    }
    /// Local machine checks (delivered to one CPU only) are supported.
    pub const fn lmce_p(self) -> bool {
        bit(self.0, 27)
    }
}

/// `IA32_MCG_STATUS` (MSR 0x17A): the state of the interrupted CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McgStatus(pub u64);

impl McgStatus {
    /// Restart IP valid: execution can resume at the saved RIP.
    pub const RIPV: u64 = 1 << 0;
    /// Error IP valid: the saved RIP is the instruction that hit the error.
    pub const EIPV: u64 = 1 << 1;
    /// Machine check in progress (a second one now shuts the CPU down).
    pub const MCIP: u64 = 1 << 2;
    /// Local machine check: only this CPU got the `#MC`.
    pub const LMCES: u64 = 1 << 3;

    /// Restart IP valid.
    pub const fn ripv(self) -> bool {
        self.0 & Self::RIPV != 0
    }
    /// Error IP valid.
    pub const fn eipv(self) -> bool {
        self.0 & Self::EIPV != 0
    }
    /// Machine check in progress.
    pub const fn mcip(self) -> bool {
        self.0 & Self::MCIP != 0
    }
    /// Local machine check signalled.
    pub const fn lmces(self) -> bool {
        self.0 & Self::LMCES != 0
    }
}

/// `IA32_MCi_STATUS`: one bank's error record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MciStatus(pub u64);

impl MciStatus {
    /// The register holds a valid error.
    pub const VAL: u64 = 1 << 63;
    /// An earlier error was lost (overwritten).
    pub const OVER: u64 = 1 << 62;
    /// Uncorrected error.
    pub const UC: u64 = 1 << 61;
    /// Error reporting was enabled for this error (it raised `#MC`).
    pub const EN: u64 = 1 << 60;
    /// `IA32_MCi_MISC` holds valid information.
    pub const MISCV: u64 = 1 << 59;
    /// `IA32_MCi_ADDR` holds a valid address.
    pub const ADDRV: u64 = 1 << 58;
    /// Processor context corrupt: the CPU cannot continue.
    pub const PCC: u64 = 1 << 57;
    /// Signalled: the error raised a `#MC` (SER CPUs only).
    pub const S: u64 = 1 << 56;
    /// Action required before continuing (SER CPUs only).
    pub const AR: u64 = 1 << 55;
    /// The MCA error code field (bits 15:0).
    pub const MCA_CODE_MASK: u64 = 0xFFFF;

    /// Valid.
    pub const fn val(self) -> bool {
        self.0 & Self::VAL != 0
    }
    /// Overflow.
    pub const fn over(self) -> bool {
        self.0 & Self::OVER != 0
    }
    /// Uncorrected.
    pub const fn uc(self) -> bool {
        self.0 & Self::UC != 0
    }
    /// Enabled.
    pub const fn en(self) -> bool {
        self.0 & Self::EN != 0
    }
    /// Misc register valid.
    pub const fn miscv(self) -> bool {
        self.0 & Self::MISCV != 0
    }
    /// Address register valid.
    pub const fn addrv(self) -> bool {
        self.0 & Self::ADDRV != 0
    }
    /// Processor context corrupt.
    pub const fn pcc(self) -> bool {
        self.0 & Self::PCC != 0
    }
    /// Signalled.
    pub const fn s(self) -> bool {
        self.0 & Self::S != 0
    }
    /// Action required.
    pub const fn ar(self) -> bool {
        self.0 & Self::AR != 0
    }
    /// The architectural MCA error code (bits 15:0).
    pub const fn mca_code(self) -> McaCode {
        McaCode((self.0 & Self::MCA_CODE_MASK) as u16)
    }
    /// The model-specific error code (bits 31:16).
    pub const fn model_code(self) -> u16 {
        ((self.0 >> 16) & 0xFFFF) as u16
    }
}

/// An architectural MCA error code (`IA32_MCi_STATUS[15:0]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McaCode(pub u16);

/// The broad class of an [`McaCode`] (SDM "Simple" and "Compound" error
/// codes). Raw sub-fields are kept as numbers: they are for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McaErrorKind {
    /// 0x0000.
    NoError,
    /// 0x0001.
    Unclassified,
    /// 0x0002.
    MicrocodeRomParity,
    /// 0x0003: BINIT# from another processor.
    External,
    /// 0x0004: functional redundancy check master/slave error.
    Frc,
    /// 0x0005.
    InternalParity,
    /// 0x0006: SMM handler code access violation.
    SmmHandlerCodeAccess,
    /// 0x0400.
    InternalTimer,
    /// 0x0401..=0x07FF.
    InternalUnclassified,
    /// `0000 0000 0000 11LL`.
    GenericCacheHierarchy {
        /// Cache level (0 = L0/L1, 3 = generic).
        level: u8,
    },
    /// `0000 0000 0001 TTLL`.
    Tlb {
        /// Transaction type: 0 instruction, 1 data, 2 generic.
        transaction: u8,
        /// Level.
        level: u8,
    },
    /// `0000 0000 1MMM CCCC`.
    MemoryController {
        /// Operation: 0 generic, 1 read, 2 write, 3 address/command,
        /// 4 memory scrubbing.
        operation: u8,
        /// Channel (15: unspecified).
        channel: u8,
    },
    /// `0000 0001 RRRR TTLL`.
    Cache {
        /// Request: 0 generic, 1 read, 2 write, 3 data read, 4 data write,
        /// 5 instruction fetch, 6 prefetch, 7 eviction, 8 snoop.
        request: u8,
        /// Transaction type.
        transaction: u8,
        /// Level.
        level: u8,
    },
    /// `0000 1PPT RRRR IILL`: bus and interconnect.
    Bus,
    /// Anything else.
    Other,
}

impl McaCode {
    /// The "corrected error filtering" bit (12), ignored when classifying.
    pub const FILTER: u16 = 1 << 12;
    /// Data load from the L0/L1 data cache (Linux `MCACOD_DATA`).
    pub const DATA_LOAD: u16 = 0x0134;
    /// Instruction fetch (Linux `MCACOD_INSTR`).
    pub const INSTRUCTION_FETCH: u16 = 0x0150;
    /// Memory scrubbing, channel 0 (Linux `MCACOD_SCRUB`).
    pub const MEMORY_SCRUB: u16 = 0x00C0;
    /// Last-level cache write-back (Linux `MCACOD_L3WB`).
    pub const L3_WRITEBACK: u16 = 0x017A;

    /// The code without the filter bit.
    pub const fn unfiltered(self) -> u16 {
        self.0 & !Self::FILTER
    }

    /// Classifies the code.
    pub const fn kind(self) -> McaErrorKind {
        let c = self.unfiltered();
        let ll = (c & 0x3) as u8;
        let tt = ((c >> 2) & 0x3) as u8;
        match c {
            0x0000 => McaErrorKind::NoError,
            0x0001 => McaErrorKind::Unclassified,
            0x0002 => McaErrorKind::MicrocodeRomParity,
            0x0003 => McaErrorKind::External,
            0x0004 => McaErrorKind::Frc,
            0x0005 => McaErrorKind::InternalParity,
            0x0006 => McaErrorKind::SmmHandlerCodeAccess,
            0x0400 => McaErrorKind::InternalTimer,
            0x0401..=0x07FF => McaErrorKind::InternalUnclassified,
            _ if c & 0xFFFC == 0x000C => McaErrorKind::GenericCacheHierarchy { level: ll },
            _ if c & 0xFFF0 == 0x0010 => McaErrorKind::Tlb { transaction: tt, level: ll },
            _ if c & 0xFF80 == 0x0080 => {
                McaErrorKind::MemoryController { operation: ((c >> 4) & 0x7) as u8, channel: (c & 0xF) as u8 }
            }
            _ if c & 0xFF00 == 0x0100 => {
                McaErrorKind::Cache { request: ((c >> 4) & 0xF) as u8, transaction: tt, level: ll }
            }
            _ if c & 0xF800 == 0x0800 => McaErrorKind::Bus,
            _ => McaErrorKind::Other,
        }
    }

    /// A data load consumed poison (the SRAR case).
    pub const fn is_data_load(self) -> bool {
        self.unfiltered() == Self::DATA_LOAD
    }
    /// An instruction fetch consumed poison.
    pub const fn is_instruction_fetch(self) -> bool {
        self.unfiltered() == Self::INSTRUCTION_FETCH
    }
    /// The patrol scrubber found poison, on any channel (the SRAO case).
    pub const fn is_memory_scrub(self) -> bool {
        self.unfiltered() & 0xFFF0 == Self::MEMORY_SCRUB
    }
    /// A last-level-cache write-back found poison.
    pub const fn is_l3_writeback(self) -> bool {
        self.unfiltered() == Self::L3_WRITEBACK
    }
}

/// How `IA32_MCi_ADDR` is to be read (`IA32_MCi_MISC[8:6]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressMode {
    /// Segment offset.
    SegmentOffset,
    /// Linear address.
    Linear,
    /// Physical address: the only mode that names poisoned memory.
    Physical,
    /// Memory address (DIMM-relative).
    Memory,
    /// Generic.
    Generic,
    /// Reserved encodings 4..=6.
    Reserved(u8),
}

/// `IA32_MCi_MISC`: where the address is, and how precise it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MciMisc(pub u64);

impl MciMisc {
    /// Least significant valid bit of `IA32_MCi_ADDR` (bits 5:0): the error
    /// covers `1 << lsb` bytes.
    pub const fn lsb(self) -> u8 {
        (self.0 & 0x3F) as u8
    }

    /// How the address is to be read (bits 8:6).
    pub const fn address_mode(self) -> AddressMode {
        match (self.0 >> 6) & 0x7 {
            0 => AddressMode::SegmentOffset,
            1 => AddressMode::Linear,
            2 => AddressMode::Physical,
            3 => AddressMode::Memory,
            7 => AddressMode::Generic,
            other => AddressMode::Reserved(other as u8),
        }
    }
}

/// A half-open range of physical addresses `[start, start + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes (a power of two, at least 1).
    pub len: u64,
}

impl PhysRange {
    /// One past the last byte (never overflows: checked on construction).
    pub const fn end(self) -> u64 {
        self.start + self.len
    }
}

/// One bank's registers, as read by the `#MC` handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BankRecord {
    /// Bank number (`i` in `IA32_MCi_*`).
    pub bank: u8,
    /// `IA32_MCi_STATUS`.
    pub status: MciStatus,
    /// `IA32_MCi_ADDR` (meaningful only if `status.addrv()`).
    pub addr: u64,
    /// `IA32_MCi_MISC` (meaningful only if `status.miscv()`).
    pub misc: MciMisc,
}

impl BankRecord {
    /// The poisoned physical range this record names, if it names one:
    /// the status must be valid with ADDRV and MISCV set, and the address
    /// physical. The range is `[addr & !((1 << lsb) - 1), + (1 << lsb))`.
    ///
    /// `None` also for a range that would end beyond 2^64 (not a real
    /// address). Large LSBs are returned as they are: deciding whether a
    /// coarse report is usable is policy, for the caller.
    pub const fn poisoned_range(&self) -> Option<PhysRange> {
        let s = self.status;
        if !(s.val() && s.addrv() && s.miscv()) {
            return None;
        }
        if !matches!(self.misc.address_mode(), AddressMode::Physical) {
            return None;
        }
        // lsb() is at most 63, so the shift cannot overflow.
        let len = 1u64 << self.misc.lsb();
        let start = self.addr & !(len - 1);
        match start.checked_add(len) {
            Some(_) => Some(PhysRange { start, len }),
            None => None,
        }
    }
}
