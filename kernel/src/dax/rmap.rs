//! Who maps a range of the pmem device: for memory failure, every
//! (process, virtual address, 1 GiB, 2 MiB or 4 KiB entry) that maps it
//! now, through a file or through the raw device (`dax::raw`).
//!
//! Three lookups, never a walk over every process: the file system's
//! persistent reverse map gives the owners of the device range (every
//! reflink sharer: inode and file offset); each owner's in-memory inode
//! gives the address spaces that map that file range and where
//! ([`KInode::mappers`]); each space's page tables say whether a present
//! entry maps the device range there, and at which size. Private copies in
//! RAM and zero pages are not the device's, so they are not reported.

use alloc::vec::Vec;

use fsdax_fs::{Ino, RmapOwner};
use fsdax_hal::mm::{LeafKind, Unmap};
use fsdax_mm::paging::PageSize;
use fsdax_mm::PAGE_SIZE;
use fsdax_pmem_api::ByteRange;

use crate::fsys;
use crate::process::vm::{space_of, SpaceId};
use crate::process::{self, Pid};
use crate::vfs::inode;

/// One page-table entry that maps part of the device range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaxMapper {
    /// The address space.
    pub space: SpaceId,
    /// The processes whose memory it is (a vfork child shares its
    /// parent's until it calls `execve`); empty for a space whose process
    /// is ending.
    pub pids: Vec<Pid>,
    /// Virtual address of the entry (a 2 MiB entry's start).
    pub va: u64,
    /// 4 KiB, 2 MiB or (the raw device) 1 GiB.
    pub size: PageSize,
    /// The file and the file offset the entry maps (of its first byte);
    /// no file for a mapping of the raw device.
    pub ino: Option<Ino>,
    pub file_offset: u64,
    /// Device offset of the entry's first byte.
    pub dev_offset: u64,
}

/// Every present entry, in any address space, that maps part of the
/// device range `range` (device offsets of pmem0), through a file of the
/// mounted file system or a mapping of the raw device. Sorted by space and
/// address, each entry once. Call without locks held.
pub fn who_maps(range: ByteRange) -> Vec<DaxMapper> {
    if range.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<DaxMapper> = Vec::new();
    if let Some((owners, base)) =
        fsys::with_fs_read(|fs| (fs.rmap_query(range.start(), range.len()), fs.pmem().phys_base()))
    {
        files_mapping(range, owners, base, &mut out);
    }
    for l in super::raw::leaves_mapping(range) {
        out.push(DaxMapper {
            space: l.space,
            pids: Vec::new(),
            va: l.va,
            size: l.size,
            ino: None,
            file_offset: l.dev_offset,
            dev_offset: l.dev_offset,
        });
    }
    if !out.is_empty() {
        for p in process::all() {
            let Some(vm) = p.vm() else { continue };
            for d in out.iter_mut().filter(|d| d.space == vm.id()) {
                d.pids.push(p.pid());
            }
        }
    }
    out.sort_by_key(|d| (d.space, d.va));
    out
}

/// The present entries of the mounted file system's files that map part of
/// `range`, from the reverse map's `owners` of it (`base`: the device's
/// physical address).
fn files_mapping(range: ByteRange, owners: Vec<fsdax_fs::RmapRecord>, base: u64, out: &mut Vec<DaxMapper>) {
    for rec in owners {
        let RmapOwner::File { ino, offset } = rec.owner else { continue };
        let rec_range = ByteRange::from_len_saturating(rec.phys, rec.len);
        let Some(part) = rec_range.intersection(&range) else { continue };
        let file = ByteRange::from_len_saturating(offset + (part.start() - rec.phys), part.len());
        let Some(k) = inode::lookup(ino) else { continue };
        let hits = k.mappers.lock().query(super::layout::pages_around(file));
        for m in hits {
            let Some(space) = space_of(m.space) else { continue };
            let end = m.va + m.file.len();
            let mut at = m.va;
            while let Some(leaf) = space.first_leaf(at, end) {
                at = leaf.virt + leaf.size.bytes();
                if LeafKind::of(leaf.flags) != LeafKind::Pmem {
                    continue;
                }
                let dev_offset = leaf.phys.wrapping_sub(base);
                let entry = ByteRange::from_len_saturating(dev_offset, leaf.size.bytes());
                if !entry.overlaps(&range) {
                    continue;
                }
                if out.iter().any(|d| d.space == m.space && d.va == leaf.virt) {
                    continue;
                }
                out.push(DaxMapper {
                    space: m.space,
                    pids: Vec::new(),
                    va: leaf.virt,
                    size: leaf.size,
                    ino: Some(ino),
                    file_offset: if leaf.virt >= m.va {
                        m.file.start() + (leaf.virt - m.va)
                    } else {
                        m.file.start().saturating_sub(m.va - leaf.virt)
                    },
                    dev_offset,
                });
            }
        }
        drop(k);
    }
}

fn cmd_dax(args: &[&str]) {
    let usage = "usage: dax maps OFFSET [LEN] (who maps pmem0's bytes OFFSET..+LEN, default one page) | dax pins";
    match args {
        ["maps", off, rest @ ..] => {
            let (Some(off), Some(len)) =
                (crate::shell::parse_num(off), rest.first().map_or(Some(4096), |l| crate::shell::parse_num(l)))
            else {
                return crate::kprintln!("{usage}");
            };
            let Some(range) = ByteRange::from_len(off, len.max(1)) else { return crate::kprintln!("{usage}") };
            let found = who_maps(range);
            if found.is_empty() {
                crate::kprintln!("nobody maps pmem0 {off:#x}+{len:#x}");
            }
            crate::kprintln!("  PIDS        VA                  SIZE  INODE  FILE OFFSET   DEVICE OFFSET");
            for d in found {
                let pids: Vec<alloc::string::String> = d.pids.iter().map(|p| alloc::format!("{p}")).collect();
                let (ino, file_offset) = match d.ino {
                    Some(ino) => (alloc::format!("{ino}"), alloc::format!("{:#x}", d.file_offset)),
                    None => (alloc::string::String::from("raw"), alloc::string::String::from("-")),
                };
                crate::kprintln!(
                    "  {:<10}  {:#018x}  {:>4}  {:>5}  {:>12}  {:#13x}",
                    if pids.is_empty() { alloc::string::String::from("-") } else { pids.join(",") },
                    d.va,
                    match d.size {
                        PageSize::Size1G => "1G",
                        PageSize::Size2M => "2M",
                        PageSize::Size4K => "4K",
                    },
                    ino,
                    file_offset,
                    d.dev_offset
                );
            }
        }
        ["pins"] => crate::kprintln!("{} persistent-memory pages pinned", fsdax_hal::mm::pinned_pages()),
        _ => crate::kprintln!("{usage}"),
    }
}

fsdax_hal::shell_command!(DAX_CMD, name: "dax", usage: "dax maps OFFSET [LEN] | dax pins",
    help: "who maps pmem0's bytes (process, address, 2 MiB or 4 KiB entry); pinned pages",
    run: cmd_dax);

/// Memory failure's view of DAX mappings: who maps a device range (through
/// [`who_maps`]), and the page-table changes its plan asks for. Neither
/// takes a file's mapping lock nor a process's area lock: page tables are
/// changed under the page-table lock alone (as [`super::layout`] unmaps),
/// so an event never waits for a fault holding the mapping lock. The poison
/// is recorded before the mappers are looked up, and the fault path checks
/// the bad blocks before it maps a page, so a fault that starts after the
/// event cannot map the poisoned page again.
struct MemoryFailure;

impl crate::memfail::DaxMappings for MemoryFailure {
    fn mapped(&self, _device: usize, offset: u64, len: u64, whole: bool) -> Vec<crate::memfail::DaxMapping> {
        let Some(range) = ByteRange::from_len(offset, len.max(1)) else { return Vec::new() };
        let mut out = Vec::new();
        for d in who_maps(range) {
            let bytes = d.size.bytes();
            let va = if whole {
                ByteRange::from_len_saturating(d.va, bytes)
            } else {
                // The poisoned 4 KiB page inside the entry (the range is
                // one page or less for poison).
                let first = range.start().max(d.dev_offset) & !(PAGE_SIZE - 1);
                ByteRange::from_len_saturating(d.va + (first - d.dev_offset), PAGE_SIZE)
            };
            for &pid in &d.pids {
                out.push(crate::memfail::DaxMapping { pid, va, huge: d.size != PageSize::Size4K });
            }
        }
        out
    }

    fn split(&self, pid: Pid, va: u64) -> Result<(), crate::memfail::MappingError> {
        let vm = process::get(pid).and_then(|p| p.vm()).ok_or(crate::memfail::MappingError::Gone)?;
        if let Some(leaf) = vm.space().translate(va).filter(|l| l.size == PageSize::Size1G) {
            // A 1 GiB leaf (the raw device) goes whole: its good pages fault
            // back with 2 MiB and 4 KiB leaves, around the poison.
            return vm.space().unmap_where(leaf.virt, leaf.size.bytes(), Unmap::FileOnly).map_err(|e| {
                crate::warn!(
                    "memory failure: unmapping the 1 GiB page at {:#x} of pid {pid} failed ({})",
                    leaf.virt,
                    map_error(&e)
                );
                crate::memfail::MappingError::Failed
            });
        }
        vm.space().split_pmem_2m(va & !(fsdax_mm::HUGE_2M - 1)).map(|_| ()).map_err(|e| {
            crate::warn!("memory failure: splitting the 2 MiB page at {va:#x} of pid {pid} failed ({})", map_error(&e));
            crate::memfail::MappingError::Failed
        })
    }

    fn unmap(&self, pid: Pid, va: ByteRange) -> Result<(), crate::memfail::MappingError> {
        let vm = process::get(pid).and_then(|p| p.vm()).ok_or(crate::memfail::MappingError::Gone)?;
        vm.space().unmap_where(va.start(), va.len(), Unmap::FileOnly).map_err(|e| {
            crate::warn!(
                "memory failure: unmapping {:#x}+{:#x} of pid {pid} failed ({})",
                va.start(),
                va.len(),
                map_error(&e)
            );
            crate::memfail::MappingError::Failed
        })
    }
}

static MEMORY_FAILURE: MemoryFailure = MemoryFailure;

/// Registers the DAX mappings with memory failure (at boot).
pub fn register_memory_failure() {
    crate::memfail::register_dax(&MEMORY_FAILURE);
}

fn map_error(e: &fsdax_mm::paging::MapError) -> &'static str {
    use fsdax_mm::paging::MapError::*;
    match e {
        Unaligned => "unaligned",
        AlreadyMapped(_) => "already mapped",
        OutOfFrames => "out of memory for a page table",
        NotMapped(_) => "not mapped",
        SplitsHugePage(_) => "would cut a huge page",
    }
}
