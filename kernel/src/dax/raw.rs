//! `/dev/pmem0` as a file: the raw persistent-memory device, opened, read,
//! written and mapped whole by a process (the hypervisor use case: a guest's
//! memory straight on the NVDIMM).
//!
//! - Open: EBUSY while a file system is mounted on the device; otherwise
//!   the first open claims the device (the holder `/dev/pmem0`), so that
//!   `fs mount` and `fs mkfs` fail with a clear message while any
//!   descriptor or mapping of it lives; the last one gives it back. As on
//!   Linux, a device that holds an unmounted file system may be opened:
//!   its bytes are the opener's business.
//! - `read`/`pread` copy with the machine-check-safe read (EIO at poison,
//!   a short count first), `write`/`pwrite` with the flushing write
//!   (durable on return; EIO at known poison, a short count first).
//! - `mmap` (shared only, as Linux's device DAX): a page fault maps the
//!   device's frames directly, with the largest leaf that fits: 1 GiB
//!   where the virtual block and the device's physical address are 1 GiB
//!   aligned, the block lies inside the area and the device and nothing is
//!   mapped in it yet; else 2 MiB under the same conditions; else 4 KiB.
//!   `mmap` places the area so that its virtual address is congruent with
//!   the device's physical address modulo 1 GiB (2 MiB for mappings smaller
//!   than 1 GiB). Writable areas are mapped writable at once: there is no
//!   file system to tell, and stores reach the media as they leave the CPU
//!   cache (a program that needs them durable flushes its cache lines, as
//!   with Linux's device DAX). A fault on a page with known poison is
//!   SIGBUS `BUS_MCEERR_AR`, and such a block is never mapped with a large
//!   leaf.
//! - Memory failure: the device records who maps which of its bytes
//!   ([`RawDevice::mappers`], device offsets) from `mmap` to `munmap` or
//!   the end of the address space, so that poison reaches every process
//!   that maps the page (`dax::rmap::who_maps`), as for files: the
//!   consumer gets `BUS_MCEERR_AR`, early mappers `BUS_MCEERR_AO`, the page
//!   is unmapped everywhere (a 2 MiB leaf is split; a 1 GiB leaf goes
//!   whole and its good pages fault back with smaller leaves).
//! - `unbind`: every mapping goes and its process is told; afterwards
//!   `read`/`write` are ENXIO, `mmap` ENXIO and faults SIGBUS.

use alloc::sync::{Arc, Weak};
use alloc::vec;

use fsdax_abi::Errno;
use fsdax_drivers::pmem::device::{Holder, HolderError, MfFlags, PmemError};
use fsdax_hal::mm::AddressSpace;
use fsdax_mm::mappers::Mappers;
use fsdax_mm::paging::{Flags, MapError, PageSize};
use fsdax_mm::vma::Prot;
use fsdax_mm::{HUGE_1G, HUGE_2M, PAGE_SIZE};
use fsdax_pmem_api::ByteRange;

use crate::pmem::{self, Device, HolderKind};
use crate::process::vm::{pte_flags, Access, FaultError, Resolved, SpaceId};
use crate::process::Process;

/// The name processes open it by.
pub const PATH: &[u8] = b"/dev/pmem0";
/// The holder's name while it is open or mapped.
const HOLDER: &str = "/dev/pmem0";

/// The open (or mapped) raw device: the claim on it lasts as long as one
/// of these (descriptors and mappings share it).
#[derive(Debug)]
pub struct RawDevice {
    dev: &'static Device,
    /// Which address spaces map which of its bytes (device offsets), for
    /// memory failure and removal. Lock order: after the areas' lock,
    /// before the page tables.
    pub mappers: crate::sync::Mutex<Mappers<SpaceId>>,
}

static OPEN: crate::sync::Mutex<Option<Weak<RawDevice>>> = crate::sync::Mutex::new(None);

/// Memory failures on the raw device are logged (who maps it is the
/// processes' page tables; memory failure signals them).
#[derive(Debug)]
struct RawHolder;

impl Holder for RawHolder {
    fn notify_failure(&self, offset: u64, len: u64, _flags: MfFlags) -> Result<(), HolderError> {
        crate::warn!("{HOLDER}: memory failure at {offset:#x}+{len:#x} of the raw device");
        Ok(())
    }
}

/// Opens the raw device: EBUSY while a file system is mounted on it (or
/// another raw user holds it), ENXIO without an NVDIMM or after `unbind`.
pub fn open() -> Result<Arc<RawDevice>, Errno> {
    let dev = pmem::device("pmem0").ok_or(Errno::ENXIO)?;
    let mut open = OPEN.lock();
    if let Some(raw) = open.as_ref().and_then(Weak::upgrade) {
        return Ok(raw);
    }
    match pmem::holder_of(dev) {
        HolderKind::Logging => {}
        HolderKind::FileSystem | HolderKind::Raw(_) => return Err(Errno::EBUSY),
    }
    pmem::claim_device_file(dev, HolderKind::Raw(HOLDER), Arc::new(RawHolder)).map_err(|e| match e {
        pmem::ClaimError::Removed => Errno::ENXIO,
        _ => Errno::EBUSY,
    })?;
    let raw = Arc::new(RawDevice { dev, mappers: crate::sync::Mutex::new(Mappers::default()) });
    *open = Some(Arc::downgrade(&raw));
    Ok(raw)
}

/// The raw device while a descriptor or a mapping of it lives.
pub fn current() -> Option<Arc<RawDevice>> {
    OPEN.lock().as_ref().and_then(Weak::upgrade)
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        let mut open = OPEN.lock();
        // A new open may have claimed it again after this one's last
        // reference went: only the claim of no live handle is released.
        if open.as_ref().is_none_or(|w| w.strong_count() == 0) {
            *open = None;
            pmem::release(self.dev);
        }
    }
}

/// Bytes copied per step of `read`/`write` (a kernel buffer).
const CHUNK: usize = 64 << 10;

impl RawDevice {
    /// The device's size in bytes.
    pub fn len(&self) -> u64 {
        self.dev.len()
    }

    /// ENXIO once the device was unbound (removed).
    pub fn alive(&self) -> Result<(), Errno> {
        if pmem::is_dead(self.dev) {
            Err(Errno::ENXIO)
        } else {
            Ok(())
        }
    }

    /// Orders the device's writes before what follows (`fsync`).
    pub fn fence(&self) {
        self.dev.fence();
    }

    /// Physical address of device offset 0.
    fn phys_base(&self) -> u64 {
        self.dev.phys_base()
    }

    /// Reads up to `len` bytes at `off` into user memory at `buf`: fewer at
    /// the end of the device or before poison (EIO if none); EFAULT for a
    /// bad buffer (a short count first).
    pub fn read_at(&self, p: &Process, buf: u64, len: u64, off: u64) -> Result<u64, Errno> {
        self.alive()?;
        let end = off.saturating_add(len).min(self.len());
        if off >= end {
            return Ok(0);
        }
        let mut kbuf = vec![0u8; CHUNK.min((end - off) as usize)];
        let mut done = 0u64;
        while off + done < end {
            let n = kbuf.len().min((end - off - done) as usize);
            let (good, err) = match pmem::read(self.dev, off + done, &mut kbuf[..n]) {
                Ok(()) => (n, None),
                Err(PmemError::Poisoned { copied, .. }) => (copied, Some(Errno::EIO)),
                Err(_) => (0, Some(Errno::EIO)),
            };
            if good > 0 {
                if let Err(e) = to_user(p, buf + done, &kbuf[..good]) {
                    return short_or(done, e);
                }
                done += good as u64;
            }
            if let Some(e) = err {
                return short_or(done, e);
            }
        }
        Ok(done)
    }

    /// Writes up to `len` bytes from user memory at `buf` at `off`, durable
    /// on return: fewer at the end of the device (ENOSPC if none) or before
    /// known poison (EIO if none); EFAULT for a bad buffer.
    pub fn write_at(&self, buf: u64, len: u64, off: u64) -> Result<u64, Errno> {
        self.alive()?;
        if len == 0 {
            return Ok(0);
        }
        let end = off.saturating_add(len).min(self.len());
        if off >= end {
            return Err(Errno::ENOSPC);
        }
        let mut done = 0u64;
        while off + done < end {
            let n = CHUNK.min((end - off - done) as usize);
            let data = match crate::syscall::read_user(buf + done, n) {
                Ok(d) => d,
                Err(e) => return short_or(done, e),
            };
            let at = off + done;
            let good = match self.dev.first_poison(at, n as u64) {
                Some(bad) => bad.start().saturating_sub(at) as usize,
                None => n,
            };
            if good > 0 && self.dev.write(at, &data[..good]).is_err() {
                return short_or(done, Errno::EIO);
            }
            done += good as u64;
            if good < n {
                return short_or(done, Errno::EIO);
            }
        }
        Ok(done)
    }

    /// The alignment and phase `mmap` gives an area of `len` bytes at
    /// device offset `offset`: virtual addresses congruent with the
    /// physical ones, so that the largest leaves are possible.
    pub fn placement(&self, offset: u64, len: u64) -> (u64, u64) {
        let align = if len >= HUGE_1G { HUGE_1G } else { HUGE_2M };
        (align, (self.phys_base() + offset) % align)
    }
}

fn short_or(done: u64, e: Errno) -> Result<u64, Errno> {
    if done > 0 {
        Ok(done)
    } else {
        Err(e)
    }
}

/// Copies to user memory, faulting the pages in (waiting for locks) and
/// retrying once if the copy came back short.
fn to_user(p: &Process, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    if crate::syscall::write_user(addr, bytes).is_ok() {
        return Ok(());
    }
    let vm = p.vm().ok_or(Errno::EFAULT)?;
    vm.fault_in(addr, bytes.len() as u64, Access::Write).map_err(|_| Errno::EFAULT)?;
    drop(vm);
    crate::syscall::write_user(addr, bytes)
}

/// A mapping of the raw device: the device and the device offset of the
/// area's first byte.
#[derive(Debug, Clone)]
pub struct DeviceMap {
    pub raw: Arc<RawDevice>,
    pub offset: u64,
    /// Whether `mprotect` may add write access (the descriptor was opened
    /// for reading and writing).
    pub may_write: bool,
}

impl PartialEq for DeviceMap {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.raw, &o.raw) && self.offset == o.offset && self.may_write == o.may_write
    }
}

impl Eq for DeviceMap {}

/// One present leaf that maps bytes of the raw device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLeaf {
    pub space: SpaceId,
    /// Virtual address of the leaf's first byte.
    pub va: u64,
    pub size: PageSize,
    /// Device offset of the leaf's first byte.
    pub dev_offset: u64,
}

/// Every present leaf, in any address space, that maps part of device
/// range `range` through a mapping of the raw device (none while nobody
/// has it open or mapped). Call without locks held.
pub fn leaves_mapping(range: ByteRange) -> alloc::vec::Vec<RawLeaf> {
    let mut out = alloc::vec::Vec::new();
    let Some(raw) = current() else { return out };
    // Widened to whole 1 GiB blocks: a large leaf that maps the range may
    // start before it.
    let start = range.start() & !(HUGE_1G - 1);
    let end = range.end().checked_next_multiple_of(HUGE_1G).unwrap_or(!(HUGE_1G - 1));
    let Some(wide) = ByteRange::new(start, end) else { return out };
    let hits = raw.mappers.lock().query(wide);
    let base = raw.phys_base();
    for m in hits {
        let Some(space) = crate::process::vm::space_of(m.space) else { continue };
        let end = m.va + m.file.len();
        let mut at = m.va;
        while let Some(leaf) = space.first_leaf(at, end) {
            at = leaf.virt + leaf.size.bytes();
            if fsdax_hal::mm::LeafKind::of(leaf.flags) != fsdax_hal::mm::LeafKind::Pmem {
                continue;
            }
            let dev_offset = leaf.phys.wrapping_sub(base);
            if !ByteRange::from_len_saturating(dev_offset, leaf.size.bytes()).overlaps(&range) {
                continue;
            }
            if !out.iter().any(|l: &RawLeaf| l.space == m.space && l.va == leaf.virt) {
                out.push(RawLeaf { space: m.space, va: leaf.virt, size: leaf.size, dev_offset });
            }
        }
    }
    out
}

/// The leaf sizes a fault tries, largest first.
const SIZES: [PageSize; 3] = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K];

/// Resolves a fault at `addr` in the device mapping `d`, which covers the
/// virtual range `area` with rights `prot` (already checked). The caller
/// holds the areas' read lock.
pub fn fault(
    space: &AddressSpace,
    area: ByteRange,
    prot: Prot,
    d: &DeviceMap,
    addr: u64,
    access: Access,
) -> Result<Resolved, FaultError> {
    let dev = d.raw.dev;
    let region = dev.media().region();
    let off_of = |va: u64| d.offset + (va - area.start());
    let page = addr & !(PAGE_SIZE - 1);
    if off_of(page) >= dev.len() || pmem::is_dead(dev) {
        return Err(FaultError::BeyondEof);
    }
    if dev.is_poisoned(off_of(page), PAGE_SIZE) {
        return Err(FaultError::Poisoned);
    }
    // Mapped already: a store after `mprotect` added write access (the
    // page tables keep a persistent-memory leaf read-only until a fault
    // gives it write access), or a fault that raced another.
    if let Some(leaf) = space.translate(page) {
        if access == Access::Write && !leaf.flags.contains(Flags::WRITABLE) {
            space.make_writable(page).map_err(|_| FaultError::BeyondEof)?;
        }
        return Ok(Resolved::MINOR);
    }
    let flags = pte_flags(prot) & (Flags::WRITABLE | Flags::USER_ACCESSIBLE | Flags::NO_EXECUTE);
    for size in SIZES {
        let bytes = size.bytes();
        let va = addr & !(bytes - 1);
        let Some(block) = ByteRange::from_len(va, bytes) else { continue };
        if size != PageSize::Size4K {
            let off = off_of(va.max(area.start()));
            let fits = block.start() >= area.start()
                && block.end() <= area.end()
                && off.checked_add(bytes).is_some_and(|e| e <= dev.len())
                && (dev.phys_base() + off).is_multiple_of(bytes)
                && space.first_leaf(block.start(), block.end()).is_none()
                && !dev.is_poisoned(off, bytes);
            if !fits {
                continue;
            }
        }
        return match space.map_pmem(va, region, off_of(va), size, flags) {
            // `unbind` marks the device dead before it unmaps every
            // mapping: an entry installed after that walk goes again.
            Ok(()) if pmem::is_dead(dev) => {
                let _ = space.unmap_where(area.start(), area.len(), fsdax_hal::mm::Unmap::FileOnly);
                Err(FaultError::BeyondEof)
            }
            Ok(()) | Err(MapError::AlreadyMapped(_)) => Ok(Resolved::MINOR),
            Err(MapError::OutOfFrames) => Err(FaultError::OutOfMemory),
            Err(_) if size != PageSize::Size4K => continue,
            Err(_) => Err(FaultError::BeyondEof),
        };
    }
    Err(FaultError::BeyondEof)
}

mod tests {
    use alloc::sync::Arc;

    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure};
    use fsdax_mm::vma::Prot;

    use super::*;
    use crate::process::vm::{Backing, Vm};

    fn fresh_fs(d: &'static Device) -> Result<(), Failure> {
        let _ = crate::fsys::unmount();
        let fs = fsdax_fs::FileSystem::mkfs(d, fsdax_fs::MkfsOptions::default()).map_err(|_| kfail!("mkfs"))?;
        fs.unmount().map_err(|_| kfail!("unmount after mkfs"))?;
        crate::fsys::mount(d).map_err(|_| kfail!("mount"))
    }

    ktest!(the_raw_device_is_busy_while_mounted_and_mounting_fails_while_it_is_open, {
        let d = pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        fresh_fs(d)?;
        kassert_eq!(open().err(), Some(Errno::EBUSY));
        crate::fsys::unmount().map_err(|_| kfail!("unmount"))?;
        let raw = open().map_err(|_| kfail!("open"))?;
        let again = open().map_err(|_| kfail!("second open"))?;
        kassert_eq!(pmem::holder_of(d), HolderKind::Raw(HOLDER));
        let e = crate::fsys::mount(d).err().ok_or(kfail!("mounted while the raw device is open"))?;
        kassert!(e.contains("in raw use by `/dev/pmem0`"), "the refusal names the raw user");
        drop(raw);
        kassert!(crate::fsys::mount(d).is_err(), "mounted while one handle is still open");
        drop(again);
        kassert_eq!(pmem::holder_of(d), HolderKind::Logging);
        crate::fsys::mount(d).map_err(|_| kfail!("mount after the last close"))?;
        crate::fsys::unmount().map_err(|_| kfail!("unmount"))
    });

    ktest!(raw_faults_map_the_largest_leaf_that_fits, {
        let d = pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        let _ = crate::fsys::unmount();
        let raw = open().map_err(|_| kfail!("open"))?;
        let vm = Vm::new().ok_or(kfail!("vm"))?;
        let rw = Prot::READ | Prot::WRITE;
        // 4 MiB at a 2 MiB-aligned address, device offset 2 MiB: 2 MiB
        // leaves onto the device's frames, writable at once.
        const VA: u64 = 0x0040_0000_0000;
        let dm = |offset| Backing::Device(DeviceMap { raw: Arc::clone(&raw), offset, may_write: true });
        vm.write(|a, _| a.set.insert(VA, 4 << 20, rw, dm(2 << 20))).map_err(|_| kfail!("insert"))?;
        vm.fault(VA + 4096 * 3, Access::Write, true).map_err(|_| kfail!("fault"))?;
        let l = vm.space().translate(VA + 4096 * 3).ok_or(kfail!("not mapped"))?;
        kassert_eq!(l.size, PageSize::Size2M);
        kassert_eq!(l.phys, d.phys_base() + (2 << 20));
        kassert!(l.flags.contains(Flags::WRITABLE), "a writable area maps writable");
        // An area whose device offset is not congruent: 4 KiB leaves.
        const VB: u64 = 0x0050_0000_0000;
        vm.write(|a, _| a.set.insert(VB, 4 << 20, Prot::READ, dm(4096))).map_err(|_| kfail!("insert"))?;
        vm.fault(VB + 8192, Access::Read, true).map_err(|_| kfail!("fault"))?;
        let l = vm.space().translate(VB + 8192).ok_or(kfail!("not mapped"))?;
        kassert_eq!(l.size, PageSize::Size4K);
        kassert_eq!(l.phys, d.phys_base() + 4096 + 8192);
        kassert!(!l.flags.contains(Flags::WRITABLE), "a read-only area maps read-only");
        // mprotect adds write access: a store faults once and gets it.
        vm.write(|a, space| -> Result<(), Failure> {
            a.set.protect(VB, 4 << 20, rw).map_err(|_| kfail!("protect the area"))?;
            space.protect(VB, 4 << 20, pte_flags(rw)).map_err(|_| kfail!("protect the pages"))
        })?;
        vm.fault(VB + 8192, Access::Write, true).map_err(|_| kfail!("write fault after mprotect"))?;
        let l = vm.space().translate(VB + 8192).ok_or(kfail!("not mapped"))?;
        kassert!(l.flags.contains(Flags::WRITABLE), "the store got write access");
        // Beyond the device: SIGBUS.
        const VC: u64 = 0x0060_0000_0000;
        let last = d.len() - 4096;
        vm.write(|a, _| a.set.insert(VC, 8192, Prot::READ, dm(last))).map_err(|_| kfail!("insert"))?;
        kassert_eq!(vm.fault(VC + 4096, Access::Read, true).err(), Some(FaultError::BeyondEof));
        drop(vm);
        kassert_eq!(fsdax_hal::mm::pinned_pages(), 0);
        drop(raw);
        kassert_eq!(pmem::holder_of(d), HolderKind::Logging);
        Ok(())
    });
}
