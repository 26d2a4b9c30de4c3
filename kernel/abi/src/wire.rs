//! The structures processes pass by pointer, encoded and decoded field by
//! field in Linux's x86_64 layout (little-endian, LP64).
//!
//! Each encoder fills a byte array of exactly the structure's size, with
//! every byte written (padding is zero), so no kernel memory leaks to a
//! process. Each decoder takes the bytes copied in from the process and
//! returns plain values; the caller validates them. Host tests check every
//! offset and size against `linux-raw-sys`' `repr(C)` definitions.

use alloc::vec::Vec;

/// Little-endian field writes into a fixed buffer.
#[derive(Debug)]
pub struct Writer<'a>(pub &'a mut [u8]);

impl Writer<'_> {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    pub fn u8(&mut self, off: usize, v: u8) {
        self.put(off, &[v]);
    }
    pub fn u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn i32(&mut self, off: usize, v: i32) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn bytes(&mut self, off: usize, v: &[u8]) {
        self.put(off, v);
    }
}

/// Little-endian field reads from bytes copied in from a process. A read
/// past the end yields zero (decoders are only given buffers of the
/// structure's full size).
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        if let Some(src) = self.0.get(off..off + N) {
            b.copy_from_slice(src);
        }
        b
    }
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.get(off))
    }
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.get(off))
    }
    pub fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.get(off))
    }
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.get(off))
    }
    pub fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.get(off))
    }
}

/// `struct timespec` / `__kernel_timespec` (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub const SIZE: usize = 16;

    pub fn from_ns(ns: u64) -> Timespec {
        Timespec { sec: (ns / 1_000_000_000) as i64, nsec: (ns % 1_000_000_000) as i64 }
    }

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.i64(0, self.sec);
        w.i64(8, self.nsec);
        b
    }

    pub fn decode(b: &[u8]) -> Timespec {
        let r = Reader(b);
        Timespec { sec: r.i64(0), nsec: r.i64(8) }
    }

    /// Nanoseconds, if the value is a valid non-negative timespec
    /// (`nsec` in `0..1e9`), saturating at `u64::MAX`.
    pub fn to_ns(&self) -> Option<u64> {
        if self.sec < 0 || !(0..1_000_000_000).contains(&self.nsec) {
            return None;
        }
        Some((self.sec as u64).saturating_mul(1_000_000_000).saturating_add(self.nsec as u64))
    }
}

/// File type bits of `st_mode`.
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;

/// `struct stat` (144 bytes), what `fstat`, `stat` and `newfstatat` fill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    /// 512-byte units.
    pub blocks: i64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Stat {
    pub const SIZE: usize = 144;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.dev);
        w.u64(8, self.ino);
        w.u64(16, self.nlink);
        w.u32(24, self.mode);
        w.u32(28, self.uid);
        w.u32(32, self.gid);
        w.u64(40, self.rdev);
        w.i64(48, self.size);
        w.i64(56, self.blksize);
        w.i64(64, self.blocks);
        w.i64(72, self.atime.sec);
        w.i64(80, self.atime.nsec);
        w.i64(88, self.mtime.sec);
        w.i64(96, self.mtime.nsec);
        w.i64(104, self.ctime.sec);
        w.i64(112, self.ctime.nsec);
        b
    }
}

/// `statx` mask bits and attributes.
pub const STATX_BASIC_STATS: u32 = 0x7ff;
pub const STATX_BTIME: u32 = 0x800;
pub const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// `struct statx` (256 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statx {
    pub mask: u32,
    pub blksize: u32,
    pub attributes: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    pub ino: u64,
    pub size: u64,
    /// 512-byte units.
    pub blocks: u64,
    pub attributes_mask: u64,
    pub atime: Timespec,
    pub btime: Timespec,
    pub ctime: Timespec,
    pub mtime: Timespec,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
}

impl Statx {
    pub const SIZE: usize = 256;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u32(0, self.mask);
        w.u32(4, self.blksize);
        w.u64(8, self.attributes);
        w.u32(16, self.nlink);
        w.u32(20, self.uid);
        w.u32(24, self.gid);
        w.u16(28, self.mode);
        w.u64(32, self.ino);
        w.u64(40, self.size);
        w.u64(48, self.blocks);
        w.u64(56, self.attributes_mask);
        for (off, t) in [(64, self.atime), (80, self.btime), (96, self.ctime), (112, self.mtime)] {
            w.i64(off, t.sec);
            w.u32(off + 8, t.nsec as u32);
        }
        w.u32(128, self.rdev_major);
        w.u32(132, self.rdev_minor);
        w.u32(136, self.dev_major);
        w.u32(140, self.dev_minor);
        b
    }
}

/// `f_type` of fsdax in `statfs` ("FSDX").
pub const FSDAX_MAGIC: u64 = 0x4653_4458;

/// `struct statfs` (120 bytes), what `statfs` and `fstatfs` fill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statfs {
    pub fs_type: u64,
    pub bsize: u64,
    /// Data blocks (`bsize` units).
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: [u32; 2],
    pub namelen: u64,
    pub frsize: u64,
    /// `ST_*` mount flags.
    pub flags: u64,
}

impl Statfs {
    pub const SIZE: usize = 120;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.fs_type);
        w.u64(8, self.bsize);
        w.u64(16, self.blocks);
        w.u64(24, self.bfree);
        w.u64(32, self.bavail);
        w.u64(40, self.files);
        w.u64(48, self.ffree);
        w.u32(56, self.fsid[0]);
        w.u32(60, self.fsid[1]);
        w.u64(64, self.namelen);
        w.u64(72, self.frsize);
        w.u64(80, self.flags);
        b
    }
}

/// `struct rusage` (144 bytes); times as (seconds, microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rusage {
    pub utime_us: u64,
    pub stime_us: u64,
    pub maxrss_kib: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub nvcsw: u64,
    pub nivcsw: u64,
}

impl Rusage {
    pub const SIZE: usize = 144;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.utime_us / 1_000_000);
        w.u64(8, self.utime_us % 1_000_000);
        w.u64(16, self.stime_us / 1_000_000);
        w.u64(24, self.stime_us % 1_000_000);
        w.u64(32, self.maxrss_kib);
        w.u64(64, self.minflt);
        w.u64(72, self.majflt);
        w.u64(128, self.nvcsw);
        w.u64(136, self.nivcsw);
        b
    }
}

/// `struct new_utsname` (6 fields of 65 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utsname<'a> {
    pub sysname: &'a str,
    pub nodename: &'a str,
    pub release: &'a str,
    pub version: &'a str,
    pub machine: &'a str,
    pub domainname: &'a str,
}

/// Size of one `new_utsname` field.
pub const UTSNAME_FIELD: usize = 65;
/// Size of `new_utsname`.
pub const UTSNAME_SIZE: usize = 6 * UTSNAME_FIELD;

impl Utsname<'_> {
    /// Each field NUL-terminated, cut to 64 bytes.
    pub fn encode(&self) -> [u8; UTSNAME_SIZE] {
        const FIELD: usize = UTSNAME_FIELD;
        let mut b = [0u8; UTSNAME_SIZE];
        let fields = [self.sysname, self.nodename, self.release, self.version, self.machine, self.domainname];
        for (i, f) in fields.iter().enumerate() {
            let n = f.len().min(FIELD - 1);
            b[i * FIELD..i * FIELD + n].copy_from_slice(&f.as_bytes()[..n]);
        }
        b
    }
}

/// `struct iovec` (16 bytes): one element of a `readv`/`writev` vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iovec {
    pub base: u64,
    pub len: u64,
}

impl Iovec {
    pub const SIZE: usize = 16;

    pub fn decode(b: &[u8]) -> Iovec {
        let r = Reader(b);
        Iovec { base: r.u64(0), len: r.u64(8) }
    }
}

/// `d_type` values of `linux_dirent64`.
pub const DT_CHR: u8 = 2;
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;

/// Appends one `linux_dirent64` record to `out` if it fits in `room`
/// bytes: `d_ino` u64, `d_off` i64, `d_reclen` u16, `d_type` u8, the name
/// and a NUL, padded to 8 bytes. Returns false (and appends nothing) when
/// it does not fit.
pub fn push_dirent64(out: &mut Vec<u8>, room: usize, ino: u64, next_off: i64, d_type: u8, name: &[u8]) -> bool {
    let reclen = (19 + name.len() + 1).next_multiple_of(8);
    if reclen > room || reclen > usize::from(u16::MAX) {
        return false;
    }
    let start = out.len();
    out.resize(start + reclen, 0);
    let mut w = Writer(&mut out[start..]);
    w.u64(0, ino);
    w.i64(8, next_off);
    w.u16(16, reclen as u16);
    w.u8(18, d_type);
    w.bytes(19, name);
    true
}

/// The kernel's `struct sigaction` as `rt_sigaction` passes it (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    /// `SIG_DFL` (0), `SIG_IGN` (1) or the handler's address.
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl KernelSigaction {
    pub const SIZE: usize = 32;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.handler);
        w.u64(8, self.flags);
        w.u64(16, self.restorer);
        w.u64(24, self.mask);
        b
    }

    pub fn decode(b: &[u8]) -> KernelSigaction {
        let r = Reader(b);
        KernelSigaction { handler: r.u64(0), flags: r.u64(8), restorer: r.u64(16), mask: r.u64(24) }
    }
}

/// `stack_t` (24 bytes): an alternate signal stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackT {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

impl StackT {
    pub const SIZE: usize = 24;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.sp);
        w.i32(8, self.flags);
        w.u64(16, self.size);
        b
    }

    pub fn decode(b: &[u8]) -> StackT {
        let r = Reader(b);
        StackT { sp: r.u64(0), flags: r.i32(8), size: r.u64(16) }
    }
}

/// `siginfo_t` (128 bytes) for the signals fsdax generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Siginfo {
    pub signo: u32,
    pub errno: i32,
    pub code: i32,
    pub fields: SigFields,
}

/// The union part of `siginfo_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFields {
    /// `kill`, `tgkill`, `SI_USER`/`SI_TKILL`: sender's pid and uid.
    Kill {
        pid: u32,
        uid: u32,
    },
    /// SIGSEGV, SIGBUS, SIGILL, SIGFPE: the faulting address and, for
    /// machine-check SIGBUS, `si_addr_lsb` (12 for a 4 KiB page, 21 for a
    /// 2 MiB one).
    Fault {
        addr: u64,
        addr_lsb: u16,
    },
    /// SIGCHLD: the child's pid, uid and status.
    Child {
        pid: u32,
        uid: u32,
        status: i32,
        utime: i64,
        stime: i64,
    },
    None,
}

impl Siginfo {
    pub const SIZE: usize = 128;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u32(0, self.signo);
        w.i32(4, self.errno);
        w.i32(8, self.code);
        match self.fields {
            SigFields::Kill { pid, uid } => {
                w.u32(16, pid);
                w.u32(20, uid);
            }
            SigFields::Fault { addr, addr_lsb } => {
                w.u64(16, addr);
                w.u16(24, addr_lsb);
            }
            SigFields::Child { pid, uid, status, utime, stime } => {
                w.u32(16, pid);
                w.u32(20, uid);
                w.i32(24, status);
                w.i64(32, utime);
                w.i64(40, stime);
            }
            SigFields::None => {}
        }
        b
    }
}

/// `struct pollfd` (8 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollFd {
    pub fd: i32,
    pub events: u16,
    pub revents: u16,
}

impl PollFd {
    pub const SIZE: usize = 8;

    pub fn decode(b: &[u8]) -> PollFd {
        let r = Reader(b);
        PollFd { fd: r.i32(0), events: r.u16(4), revents: r.u16(6) }
    }

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.i32(0, self.fd);
        w.u16(4, self.events);
        w.u16(6, self.revents);
        b
    }
}

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)` (linux/fs.h).
pub const FS_IOC_FIEMAP: u32 = 0xc020_660b;
pub const FIEMAP_FLAG_SYNC: u32 = 1;
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// The header of `struct fiemap` (32 bytes), followed in user memory by
/// `extent_count` [`FiemapExtent`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fiemap {
    pub start: u64,
    pub length: u64,
    pub flags: u32,
    pub mapped_extents: u32,
    pub extent_count: u32,
}

impl Fiemap {
    pub const SIZE: usize = 32;

    pub fn decode(b: &[u8]) -> Fiemap {
        let r = Reader(b);
        Fiemap {
            start: r.u64(0),
            length: r.u64(8),
            flags: r.u32(16),
            mapped_extents: r.u32(20),
            extent_count: r.u32(24),
        }
    }

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.start);
        w.u64(8, self.length);
        w.u32(16, self.flags);
        w.u32(20, self.mapped_extents);
        w.u32(24, self.extent_count);
        b
    }
}

/// `struct fiemap_extent` (56 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiemapExtent {
    pub logical: u64,
    /// fsdax reports the byte offset on the pmem device.
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

impl FiemapExtent {
    pub const SIZE: usize = 56;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.u64(0, self.logical);
        w.u64(8, self.physical);
        w.u64(16, self.length);
        w.u32(40, self.flags);
        b
    }
}

/// `struct file_clone_range` (32 bytes), the argument of `FICLONERANGE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCloneRange {
    pub src_fd: i64,
    pub src_offset: u64,
    pub src_length: u64,
    pub dest_offset: u64,
}

impl FileCloneRange {
    pub const SIZE: usize = 32;

    pub fn decode(b: &[u8]) -> FileCloneRange {
        let r = Reader(b);
        FileCloneRange { src_fd: r.i64(0), src_offset: r.u64(8), src_length: r.u64(16), dest_offset: r.u64(24) }
    }
}

/// The header of `struct file_dedupe_range` (24 bytes), followed by
/// `dest_count` [`DedupeRangeInfo`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileDedupeRange {
    pub src_offset: u64,
    pub src_length: u64,
    pub dest_count: u16,
}

impl FileDedupeRange {
    pub const SIZE: usize = 24;

    /// The reserved fields must be zero (Linux: EINVAL otherwise).
    pub fn decode(b: &[u8]) -> Option<FileDedupeRange> {
        let r = Reader(b);
        (r.u16(18) == 0 && r.u32(20) == 0).then(|| FileDedupeRange {
            src_offset: r.u64(0),
            src_length: r.u64(8),
            dest_count: r.u16(16),
        })
    }
}

/// `FILE_DEDUPE_RANGE_DIFFERS`: the ranges' bytes differ.
pub const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

/// `struct file_dedupe_range_info` (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupeRangeInfo {
    pub dest_fd: i64,
    pub dest_offset: u64,
    pub bytes_deduped: u64,
    /// 0, `FILE_DEDUPE_RANGE_DIFFERS`, or `-errno`.
    pub status: i32,
}

impl DedupeRangeInfo {
    pub const SIZE: usize = 32;

    pub fn decode(b: &[u8]) -> DedupeRangeInfo {
        let r = Reader(b);
        DedupeRangeInfo { dest_fd: r.i64(0), dest_offset: r.u64(8), bytes_deduped: r.u64(16), status: r.i32(24) }
    }

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer(&mut b);
        w.i64(0, self.dest_fd);
        w.u64(8, self.dest_offset);
        w.u64(16, self.bytes_deduped);
        w.i32(24, self.status);
        b
    }
}

/// `/proc/PID/pagemap`: one little-endian 64-bit entry per virtual page
/// (Linux `Documentation/admin-guide/mm/pagemap.rst`).
pub mod pagemap {
    /// Bytes per entry.
    pub const ENTRY: u64 = 8;
    /// Bit 63: the page is present.
    pub const PRESENT: u64 = 1 << 63;
    /// Bit 61: a file page or shared anonymous memory.
    pub const FILE_OR_SHARED: u64 = 1 << 61;
    /// Bit 56: mapped by this process only (set for its private pages).
    pub const EXCLUSIVE: u64 = 1 << 56;
    /// Bits 0-54: the page frame number, when present.
    pub const PFN_MASK: u64 = (1 << 55) - 1;

    /// What one virtual page is, for its entry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Page {
        /// Nothing is mapped (or not yet faulted in).
        Absent,
        /// Mapped to frame `pfn`; `file`: a page of a file (DAX) or the
        /// shared zero page, else the process's own anonymous page.
        Present { pfn: u64, file: bool },
    }

    /// The entry of one page (every process is privileged here, so the
    /// frame number is shown, as Linux does for `CAP_SYS_ADMIN`).
    pub fn entry(page: Page) -> u64 {
        match page {
            Page::Absent => 0,
            Page::Present { pfn, file: true } => PRESENT | FILE_OR_SHARED | (pfn & PFN_MASK),
            Page::Present { pfn, file: false } => PRESENT | EXCLUSIVE | (pfn & PFN_MASK),
        }
    }
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use linux_raw_sys::{general as g, system as s};

    use super::*;

    #[test]
    fn sizes_match_linux() {
        assert_eq!(size_of::<g::stat>(), Stat::SIZE);
        assert_eq!(size_of::<g::statx>(), Statx::SIZE);
        assert_eq!(size_of::<g::rusage>(), Rusage::SIZE);
        assert_eq!(size_of::<g::__kernel_timespec>(), Timespec::SIZE);
        assert_eq!(size_of::<g::iovec>(), Iovec::SIZE);
        assert_eq!(size_of::<g::kernel_sigaction>(), KernelSigaction::SIZE);
        assert_eq!(size_of::<g::sigaltstack>(), StackT::SIZE);
        assert_eq!(size_of::<g::siginfo>(), Siginfo::SIZE);
        assert_eq!(size_of::<g::pollfd>(), PollFd::SIZE);
        assert_eq!(size_of::<s::new_utsname>(), UTSNAME_SIZE);
        assert_eq!(size_of::<g::file_clone_range>(), FileCloneRange::SIZE);
        assert_eq!(size_of::<g::file_dedupe_range>(), FileDedupeRange::SIZE);
        assert_eq!(size_of::<g::file_dedupe_range_info>(), DedupeRangeInfo::SIZE);
        assert_eq!(size_of::<g::statfs>(), Statfs::SIZE);
    }

    #[test]
    fn statfs_offsets_match_linux() {
        let f = Statfs {
            fs_type: 1,
            bsize: 2,
            blocks: 3,
            bfree: 4,
            bavail: 5,
            files: 6,
            ffree: 7,
            fsid: [8, 9],
            namelen: 10,
            frsize: 11,
            flags: 12,
        };
        let b = f.encode();
        let r = Reader(&b);
        assert_eq!(r.u64(offset_of!(g::statfs, f_type)), 1);
        assert_eq!(r.u64(offset_of!(g::statfs, f_bsize)), 2);
        assert_eq!(r.u64(offset_of!(g::statfs, f_blocks)), 3);
        assert_eq!(r.u64(offset_of!(g::statfs, f_bfree)), 4);
        assert_eq!(r.u64(offset_of!(g::statfs, f_bavail)), 5);
        assert_eq!(r.u64(offset_of!(g::statfs, f_files)), 6);
        assert_eq!(r.u64(offset_of!(g::statfs, f_ffree)), 7);
        assert_eq!(r.u32(offset_of!(g::statfs, f_fsid)), 8);
        assert_eq!(r.u32(offset_of!(g::statfs, f_fsid) + 4), 9);
        assert_eq!(r.u64(offset_of!(g::statfs, f_namelen)), 10);
        assert_eq!(r.u64(offset_of!(g::statfs, f_frsize)), 11);
        assert_eq!(r.u64(offset_of!(g::statfs, f_flags)), 12);
        assert!(b[88..].iter().all(|&x| x == 0), "f_spare is zero");
    }

    #[test]
    fn stat_offsets_match_linux() {
        let st = Stat {
            dev: 1,
            ino: 2,
            nlink: 3,
            mode: 4,
            uid: 5,
            gid: 6,
            rdev: 7,
            size: 8,
            blksize: 9,
            blocks: 10,
            atime: Timespec { sec: 11, nsec: 12 },
            mtime: Timespec { sec: 13, nsec: 14 },
            ctime: Timespec { sec: 15, nsec: 16 },
        };
        let b = st.encode();
        let r = Reader(&b);
        assert_eq!(r.u64(offset_of!(g::stat, st_dev)), 1);
        assert_eq!(r.u64(offset_of!(g::stat, st_ino)), 2);
        assert_eq!(r.u64(offset_of!(g::stat, st_nlink)), 3);
        assert_eq!(r.u32(offset_of!(g::stat, st_mode)), 4);
        assert_eq!(r.u32(offset_of!(g::stat, st_uid)), 5);
        assert_eq!(r.u32(offset_of!(g::stat, st_gid)), 6);
        assert_eq!(r.u64(offset_of!(g::stat, st_rdev)), 7);
        assert_eq!(r.i64(offset_of!(g::stat, st_size)), 8);
        assert_eq!(r.i64(offset_of!(g::stat, st_blksize)), 9);
        assert_eq!(r.i64(offset_of!(g::stat, st_blocks)), 10);
        assert_eq!(r.u64(offset_of!(g::stat, st_atime)), 11);
        assert_eq!(r.u64(offset_of!(g::stat, st_atime_nsec)), 12);
        assert_eq!(r.u64(offset_of!(g::stat, st_mtime)), 13);
        assert_eq!(r.u64(offset_of!(g::stat, st_mtime_nsec)), 14);
        assert_eq!(r.u64(offset_of!(g::stat, st_ctime)), 15);
        assert_eq!(r.u64(offset_of!(g::stat, st_ctime_nsec)), 16);
    }

    #[test]
    fn statx_offsets_match_linux() {
        let t = |s| Timespec { sec: s, nsec: s + 1 };
        let x = Statx {
            mask: 1,
            blksize: 2,
            attributes: 3,
            nlink: 4,
            uid: 5,
            gid: 6,
            mode: 7,
            ino: 8,
            size: 9,
            blocks: 10,
            attributes_mask: 11,
            atime: t(20),
            btime: t(30),
            ctime: t(40),
            mtime: t(50),
            rdev_major: 12,
            rdev_minor: 13,
            dev_major: 14,
            dev_minor: 15,
        };
        let b = x.encode();
        let r = Reader(&b);
        assert_eq!(r.u32(offset_of!(g::statx, stx_mask)), 1);
        assert_eq!(r.u32(offset_of!(g::statx, stx_blksize)), 2);
        assert_eq!(r.u64(offset_of!(g::statx, stx_attributes)), 3);
        assert_eq!(r.u32(offset_of!(g::statx, stx_nlink)), 4);
        assert_eq!(r.u32(offset_of!(g::statx, stx_uid)), 5);
        assert_eq!(r.u32(offset_of!(g::statx, stx_gid)), 6);
        assert_eq!(r.u16(offset_of!(g::statx, stx_mode)), 7);
        assert_eq!(r.u64(offset_of!(g::statx, stx_ino)), 8);
        assert_eq!(r.u64(offset_of!(g::statx, stx_size)), 9);
        assert_eq!(r.u64(offset_of!(g::statx, stx_blocks)), 10);
        assert_eq!(r.u64(offset_of!(g::statx, stx_attributes_mask)), 11);
        for (off, s) in [
            (offset_of!(g::statx, stx_atime), 20),
            (offset_of!(g::statx, stx_btime), 30),
            (offset_of!(g::statx, stx_ctime), 40),
            (offset_of!(g::statx, stx_mtime), 50),
        ] {
            assert_eq!(r.i64(off + offset_of!(g::statx_timestamp, tv_sec)), s);
            assert_eq!(r.u32(off + offset_of!(g::statx_timestamp, tv_nsec)), s as u32 + 1);
        }
        assert_eq!(r.u32(offset_of!(g::statx, stx_rdev_major)), 12);
        assert_eq!(r.u32(offset_of!(g::statx, stx_rdev_minor)), 13);
        assert_eq!(r.u32(offset_of!(g::statx, stx_dev_major)), 14);
        assert_eq!(r.u32(offset_of!(g::statx, stx_dev_minor)), 15);
        assert_eq!(u64::from(g::STATX_ATTR_DAX), STATX_ATTR_DAX);
        assert_eq!(g::STATX_BASIC_STATS, STATX_BASIC_STATS);
    }

    #[test]
    fn rusage_offsets_match_linux() {
        let u = Rusage {
            utime_us: 3_000_004,
            stime_us: 5_000_006,
            maxrss_kib: 7,
            minflt: 8,
            majflt: 9,
            nvcsw: 10,
            nivcsw: 11,
        };
        let b = u.encode();
        let r = Reader(&b);
        let tv = offset_of!(g::rusage, ru_utime);
        assert_eq!(r.u64(tv), 3);
        assert_eq!(r.u64(tv + 8), 4);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_stime)), 5);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_stime) + 8), 6);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_maxrss)), 7);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_minflt)), 8);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_majflt)), 9);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_nvcsw)), 10);
        assert_eq!(r.u64(offset_of!(g::rusage, ru_nivcsw)), 11);
    }

    #[test]
    fn signal_structures_match_linux() {
        let a = KernelSigaction { handler: 1, flags: 2, restorer: 3, mask: 4 };
        let b = a.encode();
        let r = Reader(&b);
        assert_eq!(r.u64(offset_of!(g::kernel_sigaction, sa_handler_kernel)), 1);
        assert_eq!(r.u64(offset_of!(g::kernel_sigaction, sa_flags)), 2);
        assert_eq!(r.u64(offset_of!(g::kernel_sigaction, sa_restorer)), 3);
        assert_eq!(r.u64(offset_of!(g::kernel_sigaction, sa_mask)), 4);
        assert_eq!(KernelSigaction::decode(&b), a);

        let s = StackT { sp: 0x1000, flags: 2, size: 8192 };
        let b = s.encode();
        let r = Reader(&b);
        assert_eq!(r.u64(offset_of!(g::sigaltstack, ss_sp)), 0x1000);
        assert_eq!(r.i32(offset_of!(g::sigaltstack, ss_flags)), 2);
        assert_eq!(r.u64(offset_of!(g::sigaltstack, ss_size)), 8192);
        assert_eq!(StackT::decode(&b), s);

        let i = Siginfo { signo: 7, errno: 0, code: 4, fields: SigFields::Fault { addr: 0xdead_b000, addr_lsb: 12 } };
        let b = i.encode();
        let r = Reader(&b);
        let head = offset_of!(g::siginfo__bindgen_ty_1__bindgen_ty_1, _sifields);
        assert_eq!(r.u32(offset_of!(g::siginfo__bindgen_ty_1__bindgen_ty_1, si_signo)), 7);
        assert_eq!(r.i32(offset_of!(g::siginfo__bindgen_ty_1__bindgen_ty_1, si_code)), 4);
        assert_eq!(r.u64(head + offset_of!(g::__sifields__bindgen_ty_5, _addr)), 0xdead_b000);
        // si_addr_lsb: the union after the 8-byte address.
        assert_eq!(r.u16(head + offset_of!(g::__sifields__bindgen_ty_5, __bindgen_anon_1)), 12);
        let c = Siginfo {
            signo: 17,
            errno: 0,
            code: 1,
            fields: SigFields::Child { pid: 5, uid: 0, status: 3, utime: 1, stime: 2 },
        };
        let b = c.encode();
        let r = Reader(&b);
        assert_eq!(r.u32(head + offset_of!(g::__sifields__bindgen_ty_4, _pid)), 5);
        assert_eq!(r.i32(head + offset_of!(g::__sifields__bindgen_ty_4, _status)), 3);
        assert_eq!(r.i64(head + offset_of!(g::__sifields__bindgen_ty_4, _utime)), 1);
        assert_eq!(r.i64(head + offset_of!(g::__sifields__bindgen_ty_4, _stime)), 2);
    }

    #[test]
    fn file_structures_match_linux() {
        assert_eq!(offset_of!(g::file_clone_range, src_fd), 0);
        assert_eq!(offset_of!(g::file_clone_range, src_offset), 8);
        assert_eq!(offset_of!(g::file_clone_range, src_length), 16);
        assert_eq!(offset_of!(g::file_clone_range, dest_offset), 24);
        assert_eq!(offset_of!(g::file_dedupe_range, dest_count), 16);
        assert_eq!(offset_of!(g::file_dedupe_range_info, dest_fd), 0);
        assert_eq!(offset_of!(g::file_dedupe_range_info, dest_offset), 8);
        assert_eq!(offset_of!(g::file_dedupe_range_info, bytes_deduped), 16);
        assert_eq!(offset_of!(g::file_dedupe_range_info, status), 24);
        assert_eq!(offset_of!(g::linux_dirent64, d_reclen), 16);
        assert_eq!(offset_of!(g::linux_dirent64, d_type), 18);
        assert_eq!(offset_of!(g::linux_dirent64, d_name), 19);
        assert_eq!(offset_of!(g::pollfd, revents), 6);
        assert_eq!(linux_raw_sys::ioctl::FICLONE, 0x4004_9409);
        // Reserved bytes of a dedupe request must be zero.
        let mut b = [0u8; 24];
        b[16] = 2;
        assert_eq!(FileDedupeRange::decode(&b).map(|d| d.dest_count), Some(2));
        b[20] = 1;
        assert_eq!(FileDedupeRange::decode(&b), None);
    }

    #[test]
    fn dirents_are_aligned_and_bounded() {
        let mut out = Vec::new();
        assert!(push_dirent64(&mut out, 4096, 5, 1, DT_REG, b"a"));
        assert_eq!(out.len(), 24);
        assert_eq!(Reader(&out).u16(16), 24);
        assert_eq!(out[19], b'a');
        assert_eq!(out[20], 0);
        assert!(!push_dirent64(&mut out, 10, 6, 2, DT_DIR, b"bb"));
        assert_eq!(out.len(), 24, "nothing appended when it does not fit");
    }

    #[test]
    fn timespec_validation() {
        assert_eq!(Timespec { sec: 1, nsec: 5 }.to_ns(), Some(1_000_000_005));
        assert_eq!(Timespec { sec: -1, nsec: 0 }.to_ns(), None);
        assert_eq!(Timespec { sec: 0, nsec: 1_000_000_000 }.to_ns(), None);
        assert_eq!(Timespec { sec: i64::MAX, nsec: 0 }.to_ns(), Some(u64::MAX));
        assert_eq!(
            Timespec::decode(&Timespec::from_ns(2_500_000_000).encode()),
            Timespec { sec: 2, nsec: 500_000_000 }
        );
    }

    #[test]
    fn utsname_fields_are_terminated() {
        let u = Utsname { sysname: "fsdax", machine: "x86_64", ..Default::default() };
        let b = u.encode();
        assert_eq!(&b[..6], b"fsdax\0");
        assert_eq!(&b[4 * 65..4 * 65 + 7], b"x86_64\0");
        assert_eq!(offset_of!(s::new_utsname, machine), 4 * 65);
    }
}
