//! The loading plan of a static ELF64 executable.
//!
//! fsdax runs what `musl-gcc -static` and Rust's `x86_64-unknown-linux-musl`
//! produce: `ET_EXEC` (fixed address) and `ET_DYN` without an interpreter
//! (static-pie, which relocates itself). [`plan`] reads the ELF header and
//! the program headers (parsed by the `elf` crate, which is fuzzed against
//! malformed input) and returns what the kernel must map and copy, or an
//! error a person can act on ("dynamically linked: build with -static",
//! "not x86_64"). Nothing here trusts a field of the file: every offset,
//! size and address is checked with overflow-safe arithmetic against the
//! file and the user address range.

use alloc::vec::Vec;
use core::fmt;

use elf::endian::AnyEndian;
use elf::file::Class;
use elf::{abi, ElfBytes};

use crate::{USER_END, USER_MIN};

const PAGE: u64 = 4096;
/// More loadable segments than any toolchain emits (they make 2 to 5).
const MAX_LOADS: usize = 32;

/// Where a static-pie executable is loaded (Linux's `ELF_ET_DYN_BASE` for
/// x86_64, without randomisation: runs are reproducible).
pub const PIE_BASE: u64 = 0x5555_5555_4000;

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const NONE: Prot = Prot { read: false, write: false, exec: false };

    fn from_flags(f: u32) -> Prot {
        Prot { read: f & abi::PF_R != 0, write: f & abi::PF_W != 0, exec: f & abi::PF_X != 0 }
    }

    fn union(self, o: Prot) -> Prot {
        Prot { read: self.read || o.read, write: self.write || o.write, exec: self.exec || o.exec }
    }
}

/// Bytes to copy from the file into the new address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// Destination virtual address (already biased).
    pub vaddr: u64,
    pub file_offset: u64,
    pub len: u64,
}

/// A page-aligned range of fresh, zero-filled anonymous memory with its
/// final protection. Ranges are sorted and disjoint; a page that two
/// segments share gets the union of their rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
}

/// What the kernel does to start the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// Added to every virtual address of the file (0 for `ET_EXEC`).
    pub bias: u64,
    pub mappings: Vec<Mapping>,
    pub copies: Vec<Copy>,
    /// Entry point (biased).
    pub entry: u64,
    /// Address of the program headers in memory, for `AT_PHDR` (0 if they
    /// are not inside a loaded segment).
    pub phdr: u64,
    pub phent: u16,
    pub phnum: u16,
    /// Page-aligned end of the highest segment: where `brk` starts.
    pub brk: u64,
    /// `PT_GNU_STACK` asked for an executable stack.
    pub exec_stack: bool,
}

/// Why a file cannot be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The first bytes are not `\x7fELF`.
    NotElf,
    /// A 32-bit or big-endian ELF file.
    NotElf64,
    /// An ELF file for another machine (`e_machine`).
    NotX86_64 { machine: u16 },
    /// A relocatable object, core file or other non-executable type.
    NotExecutable { e_type: u16 },
    /// The file asks for a program interpreter (it is dynamically linked).
    NeedsInterpreter,
    /// The headers end beyond the bytes given: call again with at least
    /// this many bytes of the file.
    NeedMore(u64),
    /// The ELF or program headers do not parse.
    Malformed,
    /// Program header `index` is inconsistent (`why`).
    BadSegment { index: usize, why: &'static str },
    /// No `PT_LOAD` segment.
    NothingToLoad,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::NotElf => f.write_str("not an ELF executable"),
            LoadError::NotElf64 => f.write_str("not a 64-bit little-endian ELF file"),
            LoadError::NotX86_64 { machine } => write!(f, "not x86_64 (ELF machine {machine})"),
            LoadError::NotExecutable { e_type } => {
                write!(f, "not an executable (ELF type {e_type}: an object file or core dump)")
            }
            LoadError::NeedsInterpreter => {
                f.write_str("dynamically linked: it needs an interpreter, which fsdax does not have; build it static (musl-gcc -static, or Rust's x86_64-unknown-linux-musl target)")
            }
            LoadError::NeedMore(n) => write!(f, "program headers end at byte {n}: read more of the file"),
            LoadError::Malformed => f.write_str("malformed ELF headers"),
            LoadError::BadSegment { index, why } => write!(f, "program header {index}: {why}"),
            LoadError::NothingToLoad => f.write_str("no loadable segment"),
        }
    }
}

/// Splits possibly overlapping page ranges into sorted, disjoint ranges,
/// each with the union of the rights of the ranges covering it, merging
/// neighbours with equal rights.
fn union_of_rights(pages: &[Mapping]) -> Vec<Mapping> {
    let mut cuts: Vec<u64> = pages.iter().flat_map(|m| [m.start, m.end]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Mapping> = Vec::new();
    for w in cuts.windows(2) {
        let (start, end) = (w[0], w[1]);
        let covering = pages.iter().filter(|m| m.start <= start && end <= m.end);
        let mut prot = None;
        for m in covering {
            prot = Some(prot.map_or(m.prot, |p: Prot| p.union(m.prot)));
        }
        let Some(prot) = prot else { continue };
        match out.last_mut() {
            Some(last) if last.end == start && last.prot == prot => last.end = end,
            _ => out.push(Mapping { start, end, prot }),
        }
    }
    out
}

fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

/// Plans the loading of the executable whose first bytes are `head` and
/// whose total size is `file_len`. `head` must hold the ELF header and the
/// program headers (4 KiB is enough for every program the toolchains
/// produce; otherwise [`LoadError::NeedMore`] says how much).
pub fn plan(head: &[u8], file_len: u64) -> Result<LoadPlan, LoadError> {
    if head.len() < 16 || head[..4] != *b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    if head[4] != abi::ELFCLASS64 || head[5] != abi::ELFDATA2LSB {
        return Err(LoadError::NotElf64);
    }
    let file = ElfBytes::<AnyEndian>::minimal_parse(head).map_err(|e| match e {
        elf::ParseError::SliceReadError((_, end)) => LoadError::NeedMore(end as u64),
        _ => LoadError::Malformed,
    })?;
    let eh = &file.ehdr;
    if eh.class != Class::ELF64 {
        return Err(LoadError::NotElf64);
    }
    if eh.e_machine != abi::EM_X86_64 {
        return Err(LoadError::NotX86_64 { machine: eh.e_machine });
    }
    if eh.e_type != abi::ET_EXEC && eh.e_type != abi::ET_DYN {
        return Err(LoadError::NotExecutable { e_type: eh.e_type });
    }
    let ph_end = u64::from(eh.e_phnum)
        .checked_mul(u64::from(eh.e_phentsize))
        .and_then(|n| n.checked_add(eh.e_phoff))
        .ok_or(LoadError::Malformed)?;
    if ph_end > head.len() as u64 {
        return Err(if ph_end <= file_len { LoadError::NeedMore(ph_end) } else { LoadError::Malformed });
    }
    let segments = file.segments().ok_or(LoadError::NothingToLoad)?;

    let mut loads = Vec::new();
    let mut exec_stack = false;
    let mut phdr_vaddr = None;
    let mut max_align = PAGE;
    for (index, ph) in segments.iter().enumerate() {
        match ph.p_type {
            abi::PT_INTERP => return Err(LoadError::NeedsInterpreter),
            abi::PT_GNU_STACK => exec_stack = ph.p_flags & abi::PF_X != 0,
            abi::PT_PHDR => phdr_vaddr = Some(ph.p_vaddr),
            abi::PT_LOAD => {
                let bad = |why| LoadError::BadSegment { index, why };
                if ph.p_filesz > ph.p_memsz {
                    return Err(bad("file size larger than memory size"));
                }
                let file_end = ph.p_offset.checked_add(ph.p_filesz).ok_or(bad("file range overflows"))?;
                if file_end > file_len {
                    return Err(bad("file range beyond the end of the file"));
                }
                if ph.p_vaddr % PAGE != ph.p_offset % PAGE {
                    return Err(bad("address and file offset not congruent modulo the page size"));
                }
                ph.p_vaddr.checked_add(ph.p_memsz).ok_or(bad("address range overflows"))?;
                if ph.p_align.is_power_of_two() && ph.p_align > max_align {
                    max_align = ph.p_align.min(1 << 30);
                }
                if ph.p_memsz > 0 {
                    if loads.len() == MAX_LOADS {
                        return Err(bad("too many loadable segments"));
                    }
                    loads.push((index, ph));
                }
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(LoadError::NothingToLoad);
    }
    let bias = if eh.e_type == abi::ET_DYN {
        let lowest = loads.iter().map(|(_, p)| page_down(p.p_vaddr)).min().unwrap_or(0);
        PIE_BASE.next_multiple_of(max_align).checked_sub(lowest).ok_or(LoadError::Malformed)?
    } else {
        0
    };

    // Every segment, biased, inside the user range; page ranges merged
    // with the union of rights where segments share a page.
    let mut pages: Vec<Mapping> = Vec::new();
    let mut copies = Vec::new();
    let mut brk = 0;
    for &(index, ph) in &loads {
        let bad = |why| LoadError::BadSegment { index, why };
        let start = ph.p_vaddr.checked_add(bias).ok_or(bad("address range overflows"))?;
        let end = start.checked_add(ph.p_memsz).ok_or(bad("address range overflows"))?;
        if start < USER_MIN || end > USER_END {
            return Err(bad("outside the user address range"));
        }
        let map =
            Mapping { start: page_down(start), end: end.next_multiple_of(PAGE), prot: Prot::from_flags(ph.p_flags) };
        brk = brk.max(map.end);
        if ph.p_filesz > 0 {
            copies.push(Copy { vaddr: start, file_offset: ph.p_offset, len: ph.p_filesz });
        }
        pages.push(map);
    }
    let mappings = union_of_rights(&pages);
    let entry = eh.e_entry.checked_add(bias).ok_or(LoadError::Malformed)?;
    if !mappings.iter().any(|m| m.prot.exec && (m.start..m.end).contains(&entry)) {
        return Err(LoadError::BadSegment { index: 0, why: "the entry point is not inside an executable segment" });
    }
    // AT_PHDR: PT_PHDR if present, else the loaded segment that holds the
    // program headers' file bytes.
    let phdr = match phdr_vaddr {
        Some(v) => v.checked_add(bias).unwrap_or(0),
        None => loads
            .iter()
            .find(|(_, p)| p.p_offset <= eh.e_phoff && ph_end <= p.p_offset + p.p_filesz)
            .map_or(0, |(_, p)| p.p_vaddr + bias + (eh.e_phoff - p.p_offset)),
    };
    Ok(LoadPlan { bias, mappings, copies, entry, phdr, phent: eh.e_phentsize, phnum: eh.e_phnum, brk, exec_stack })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ELF64 x86_64 file: header + program headers.
    fn elf(e_type: u16, machine: u16, entry: u64, phdrs: &[(u32, u32, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * phdrs.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(ty, flags, off, vaddr, filesz, memsz)) in phdrs.iter().enumerate() {
            let p = &mut b[64 + 56 * i..64 + 56 * (i + 1)];
            p[0..4].copy_from_slice(&ty.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[24..32].copy_from_slice(&vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            p[48..56].copy_from_slice(&4096u64.to_le_bytes());
        }
        b
    }

    const RX: u32 = abi::PF_R | abi::PF_X;
    const RW: u32 = abi::PF_R | abi::PF_W;

    #[test]
    fn static_executable() {
        let f = elf(
            abi::ET_EXEC,
            abi::EM_X86_64,
            0x40_1000,
            &[(abi::PT_LOAD, RX, 0, 0x40_0000, 0x2000, 0x2000), (abi::PT_LOAD, RW, 0x2000, 0x40_2000, 0x100, 0x3000)],
        );
        let p = plan(&f, 0x3000).unwrap();
        assert_eq!(p.bias, 0);
        assert_eq!(p.entry, 0x40_1000);
        assert_eq!(p.mappings.len(), 2);
        assert_eq!((p.mappings[0].start, p.mappings[0].end), (0x40_0000, 0x40_2000));
        assert!(p.mappings[0].prot.exec && !p.mappings[0].prot.write);
        assert_eq!((p.mappings[1].start, p.mappings[1].end), (0x40_2000, 0x40_5000));
        assert_eq!(p.copies[1], Copy { vaddr: 0x40_2000, file_offset: 0x2000, len: 0x100 });
        assert_eq!(p.brk, 0x40_5000);
        // The program headers lie in the first segment's file bytes.
        assert_eq!(p.phdr, 0x40_0040);
        assert_eq!(p.phnum, 2);
    }

    #[test]
    fn static_pie_is_biased() {
        let f = elf(
            abi::ET_DYN,
            abi::EM_X86_64,
            0x1100,
            &[(abi::PT_PHDR, abi::PF_R, 64, 64, 112, 112), (abi::PT_LOAD, RX, 0, 0, 0x2000, 0x2000)],
        );
        let p = plan(&f, 0x2000).unwrap();
        assert_eq!(p.bias, PIE_BASE);
        assert_eq!(p.entry, PIE_BASE + 0x1100);
        assert_eq!(p.phdr, PIE_BASE + 64);
    }

    #[test]
    fn shared_page_gets_union_of_rights() {
        // Text ends mid-page and data starts in the same page.
        let f = elf(
            abi::ET_EXEC,
            abi::EM_X86_64,
            0x40_0100,
            &[(abi::PT_LOAD, RX, 0, 0x40_0000, 0x1800, 0x1800), (abi::PT_LOAD, RW, 0x1800, 0x40_1800, 0x100, 0x2000)],
        );
        let p = plan(&f, 0x2000).unwrap();
        let ranges: Vec<_> = p.mappings.iter().map(|m| (m.start, m.end, m.prot.write, m.prot.exec)).collect();
        assert_eq!(
            ranges,
            vec![
                (0x40_0000, 0x40_1000, false, true),
                (0x40_1000, 0x40_2000, true, true),
                (0x40_2000, 0x40_4000, true, false)
            ]
        );
    }

    #[test]
    fn clear_errors() {
        let ok = |t, m| elf(t, m, 0x40_0000, &[(abi::PT_LOAD, RX, 0, 0x40_0000, 0x1000, 0x1000)]);
        assert_eq!(plan(b"#!/bin/sh\n", 10), Err(LoadError::NotElf));
        assert_eq!(
            plan(&ok(abi::ET_EXEC, abi::EM_AARCH64), 0x1000),
            Err(LoadError::NotX86_64 { machine: abi::EM_AARCH64 })
        );
        assert_eq!(
            plan(&ok(abi::ET_REL, abi::EM_X86_64), 0x1000),
            Err(LoadError::NotExecutable { e_type: abi::ET_REL })
        );
        let mut f32 = ok(abi::ET_EXEC, abi::EM_X86_64);
        f32[4] = 1;
        assert_eq!(plan(&f32, 0x1000), Err(LoadError::NotElf64));
        let dynamic = elf(
            abi::ET_DYN,
            abi::EM_X86_64,
            0x1000,
            &[(abi::PT_INTERP, abi::PF_R, 0x200, 0x200, 28, 28), (abi::PT_LOAD, RX, 0, 0, 0x1000, 0x1000)],
        );
        assert_eq!(plan(&dynamic, 0x1000), Err(LoadError::NeedsInterpreter));
        assert!(LoadError::NeedsInterpreter.to_string().contains("static"));
        // Segment beyond the file, and one reaching into the kernel half.
        let past = elf(abi::ET_EXEC, abi::EM_X86_64, 0x40_0000, &[(abi::PT_LOAD, RX, 0, 0x40_0000, 0x5000, 0x5000)]);
        assert!(matches!(plan(&past, 0x1000), Err(LoadError::BadSegment { .. })));
        let kernel = elf(
            abi::ET_EXEC,
            abi::EM_X86_64,
            0xffff_8000_0000_0000,
            &[(abi::PT_LOAD, RX, 0, 0xffff_8000_0000_0000, 0x1000, 0x1000)],
        );
        assert!(matches!(plan(&kernel, 0x1000), Err(LoadError::BadSegment { .. })));
        let null = elf(abi::ET_EXEC, abi::EM_X86_64, 0x10, &[(abi::PT_LOAD, RX, 0, 0, 0x1000, 0x1000)]);
        assert!(matches!(plan(&null, 0x1000), Err(LoadError::BadSegment { .. })));
        // Entry outside any executable segment.
        let entry = elf(abi::ET_EXEC, abi::EM_X86_64, 0x90_0000, &[(abi::PT_LOAD, RX, 0, 0x40_0000, 0x1000, 0x1000)]);
        assert!(matches!(plan(&entry, 0x1000), Err(LoadError::BadSegment { .. })));
        // Headers cut short: ask for more.
        let full = ok(abi::ET_EXEC, abi::EM_X86_64);
        assert!(matches!(plan(&full[..80], 0x1000), Err(LoadError::NeedMore(_)) | Err(LoadError::Malformed)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes after a valid-looking ident never panic.
        #[test]
        fn hostile_headers_never_panic(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 16..600), len in 0u64..1 << 40) {
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = 2;
            bytes[5] = 1;
            let _ = plan(&bytes, len);
        }

        /// Mutated valid files either plan inside the user range or fail.
        #[test]
        fn mutated_files_plan_safely(idx in 0usize..176, val in proptest::prelude::any::<u8>()) {
            let mut f = elf(abi::ET_EXEC, abi::EM_X86_64, 0x40_1000, &[
                (abi::PT_LOAD, RX, 0, 0x40_0000, 0x2000, 0x2000),
                (abi::PT_LOAD, RW, 0x2000, 0x40_2000, 0x100, 0x3000),
            ]);
            f[idx] = val;
            if let Ok(p) = plan(&f, 0x3000) {
                for m in &p.mappings {
                    proptest::prop_assert!(m.start >= USER_MIN && m.end <= USER_END && m.start < m.end);
                    proptest::prop_assert!(m.start % PAGE == 0 && m.end % PAGE == 0);
                }
                for w in p.mappings.windows(2) {
                    proptest::prop_assert!(w[0].end <= w[1].start);
                }
                for c in &p.copies {
                    proptest::prop_assert!(c.file_offset + c.len <= 0x3000);
                    // Every page the copy touches is mapped (overlapping
                    // segments split it over mappings of different rights).
                    let mut page = c.vaddr / PAGE * PAGE;
                    while page < c.vaddr + c.len {
                        proptest::prop_assert!(p.mappings.iter().any(|m| m.start <= page && page < m.end));
                        page += PAGE;
                    }
                }
            }
        }
    }
}
