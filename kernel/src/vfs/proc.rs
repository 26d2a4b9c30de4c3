//! The two `/proc` files programs use to learn where their memory is:
//! `/proc/self/pagemap` (also `/proc/PID/pagemap`) and `/proc/iomem`.
//!
//! - pagemap: read-only, one 8-byte entry per virtual page of the process
//!   the path named at `open` (Linux's layout, `fsdax_abi::wire::pagemap`):
//!   bit 63 present, bit 61 a file page (DAX) or the shared zero page,
//!   bits 0-54 the page frame number (every process is privileged here, so
//!   it is shown). Reads must be whole entries at entry offsets (EINVAL);
//!   past the user half they return nothing. The file refers to the
//!   process's memory without keeping it alive (an `execve` or exit ends
//!   what it can show: nothing is present then).
//! - iomem: one line per persistent-memory device, `START-END : Persistent
//!   Memory`, as Linux lists namespaces in fsdax mode.

use alloc::string::String;
use alloc::sync::Weak;
use alloc::vec::Vec;

use fsdax_abi::request::pagemap_read;
use fsdax_abi::wire::pagemap::{entry, Page, ENTRY};
use fsdax_abi::Errno;
use fsdax_hal::mm::LeafKind;
use fsdax_mm::PAGE_SIZE;

use crate::process::vm::Vm;
use crate::process::{self, Pid};
use crate::sync::Mutex;

/// What a `/proc` file is.
#[derive(Debug)]
pub enum ProcKind {
    /// The pagemap of a process's memory.
    Pagemap(Weak<Vm>),
    /// The physical memory map (persistent memory only).
    Iomem,
}

/// An open `/proc` file: its kind and the file offset.
#[derive(Debug)]
pub struct ProcFile {
    pub kind: ProcKind,
    pub pos: Mutex<u64>,
}

/// Entries read per call at most (a read may return less than asked, as
/// any read may).
const MAX_ENTRIES: u64 = 1 << 16;

/// The `/proc` file `path` names (absolute; `.` and empty components are
/// ignored), as seen by process `me`: None if `path` is not one of them,
/// ENOENT for a pid that does not exist.
pub fn lookup(path: &[u8], me: Pid) -> Option<Result<ProcKind, Errno>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    match comps.as_slice() {
        [b"proc", b"iomem"] => Some(Ok(ProcKind::Iomem)),
        [b"proc", who, b"pagemap"] => {
            let pid = if *who == b"self" {
                Some(me)
            } else {
                core::str::from_utf8(who).ok().and_then(|s| s.parse::<Pid>().ok())
            };
            let vm = pid.and_then(process::get).and_then(|p| p.vm());
            Some(match vm {
                Some(vm) => Ok(ProcKind::Pagemap(alloc::sync::Arc::downgrade(&vm))),
                None => Err(Errno::ENOENT),
            })
        }
        _ => None,
    }
}

/// Reads up to `len` bytes at offset `off` into `out`.
pub fn read(kind: &ProcKind, off: u64, len: u64) -> Result<Vec<u8>, Errno> {
    match kind {
        ProcKind::Iomem => {
            let mut text = String::new();
            for d in crate::pmem::devices() {
                let end = d.phys_base() + d.len() - 1;
                text.push_str(&alloc::format!("{:08x}-{:08x} : Persistent Memory\n", d.phys_base(), end));
            }
            let b = text.as_bytes();
            let start = (off as usize).min(b.len());
            let end = start.saturating_add(len as usize).min(b.len());
            Ok(b[start..end].to_vec())
        }
        ProcKind::Pagemap(vm) => {
            let (first, n) = pagemap_read(off, len)?;
            let n = n.min(MAX_ENTRIES);
            let mut out = Vec::new();
            out.try_reserve_exact((n * ENTRY) as usize).map_err(|_| Errno::ENOMEM)?;
            let vm = vm.upgrade();
            let space = vm.as_ref().map(|v| v.space());
            let (lo, hi) = (first * PAGE_SIZE, (first + n) * PAGE_SIZE);
            let mut va = lo;
            while va < hi {
                // Skip what is not mapped a table at a time.
                let next = space.and_then(|s| s.first_leaf(va, hi));
                let upto = next.map_or(hi, |l| l.virt.max(va));
                while va < upto {
                    out.extend_from_slice(&entry(Page::Absent).to_le_bytes());
                    va += PAGE_SIZE;
                }
                if let Some(l) = next {
                    let leaf_end = (l.virt + l.size.bytes()).min(hi);
                    let file = LeafKind::of(l.flags) != LeafKind::Ram;
                    while va < leaf_end {
                        let pfn = (l.phys + (va - l.virt)) / PAGE_SIZE;
                        out.extend_from_slice(&entry(Page::Present { pfn, file }).to_le_bytes());
                        va += PAGE_SIZE;
                    }
                }
            }
            drop(vm);
            Ok(out)
        }
    }
}
