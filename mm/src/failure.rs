//! Memory failure on DAX pages: whom to tell, and what to unmap.
//!
//! The kernel finds the owners of a poisoned physical range through the
//! file system's reverse map (every reflink sharer included), and for each
//! owner the processes that map it through [`crate::mappers`]. This module
//! decides what happens to each of those mappings ([`plan`]); the kernel
//! carries it out.
//!
//! fsdax's rules, stricter than Linux's `collect_procs_fsdax`/`kill_proc`:
//!
//! - the poisoned page is unmapped from **every** mapping, at once and
//!   deterministically (Linux leaves "late" processes mapped); a 2 MiB
//!   mapping that contains it is split first, so its 511 good pages stay
//!   mapped with 4 KiB entries; so every signal reports `si_addr_lsb` 12;
//! - the process that consumed the poison (an action-required machine check
//!   in user mode, or the `madvise(MADV_HWPOISON)` caller) gets SIGBUS
//!   `BUS_MCEERR_AR` with the page's address in its own mapping;
//! - every other mapping process gets `BUS_MCEERR_AO` at once if its policy
//!   is "early" (the system default, or `prctl(PR_MCE_KILL_EARLY)`), and
//!   nothing now if "late": its next touch faults on the unmapped bad page
//!   and gets `BUS_MCEERR_AR` then;
//! - device removal (pre-remove) unmaps every mapping of the device's files
//!   and tells every mapping process once with `BUS_MCEERR_AO` (the memory
//!   is good; nothing is marked poisoned).

use alloc::vec::Vec;

use fsdax_pmem_api::{ByteRange, HUGE_2M, PAGE_SIZE};

/// `si_addr_lsb` of a 4 KiB page.
pub const LSB_4K: u16 = 12;

/// What caused the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause<P> {
    /// A machine check (or a software injection) found poison. `consumer`
    /// is the process that consumed it and the virtual address it touched,
    /// if a process did (action required).
    Poison { consumer: Option<(P, u64)> },
    /// The device is going away.
    PreRemove,
}

/// One mapping of an affected page, as the kernel found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped<P> {
    pub process: P,
    /// The virtual range that maps the affected bytes (for poison: the
    /// poisoned 4 KiB page in this process; for pre-remove: the whole
    /// mapped range).
    pub va: ByteRange,
    /// Whether a large page (2 MiB, or 1 GiB on the raw device) maps it now:
    /// it is split (a 1 GiB one unmapped whole) before the page goes.
    pub huge: bool,
    /// The process's effective policy: tell it at once (`true`) or on its
    /// next touch.
    pub early: bool,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<P> {
    /// Split the 2 MiB page at `va` into 4 KiB entries (before an unmap of
    /// part of it).
    Split { process: P, va: u64 },
    /// Unmap `va` from the process.
    Unmap { process: P, va: ByteRange },
    /// Send SIGBUS with this code, address and `si_addr_lsb`.
    Signal { process: P, code: Code, addr: u64, lsb: u16 },
}

/// The SIGBUS code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `BUS_MCEERR_AR` (4).
    ActionRequired,
    /// `BUS_MCEERR_AO` (5).
    ActionOptional,
}

impl Code {
    pub fn si_code(self) -> i32 {
        match self {
            Code::ActionRequired => 4,
            Code::ActionOptional => 5,
        }
    }
}

/// Decides the actions for the affected mappings, in order: splits and
/// unmaps first (so no process can touch the page again), then signals.
/// A process is signalled once per event, at the lowest address it maps
/// the page at (the consumer at the address it touched).
pub fn plan<P: Copy + Eq>(cause: Cause<P>, mapped: &[Mapped<P>]) -> Vec<Action<P>> {
    let mut unmaps = Vec::new();
    let mut signals: Vec<Action<P>> = Vec::new();
    let signalled = |signals: &Vec<Action<P>>, p: P| {
        signals.iter().any(|a| matches!(a, Action::Signal { process, .. } if *process == p))
    };
    if let Cause::Poison { consumer: Some((p, addr)) } = cause {
        signals.push(Action::Signal {
            process: p,
            code: Code::ActionRequired,
            addr: addr & !(PAGE_SIZE - 1),
            lsb: LSB_4K,
        });
    }
    let mut sorted: Vec<&Mapped<P>> = mapped.iter().collect();
    sorted.sort_by_key(|m| m.va.start());
    for m in sorted {
        match cause {
            Cause::Poison { .. } => {
                if m.huge {
                    unmaps.push(Action::Split { process: m.process, va: m.va.start() & !(HUGE_2M - 1) });
                }
                unmaps.push(Action::Unmap { process: m.process, va: m.va });
                if m.early && !signalled(&signals, m.process) {
                    signals.push(Action::Signal {
                        process: m.process,
                        code: Code::ActionOptional,
                        addr: m.va.start(),
                        lsb: LSB_4K,
                    });
                }
            }
            Cause::PreRemove => {
                unmaps.push(Action::Unmap { process: m.process, va: m.va });
                if !signalled(&signals, m.process) {
                    signals.push(Action::Signal {
                        process: m.process,
                        code: Code::ActionOptional,
                        addr: m.va.start(),
                        lsb: if m.huge { 21 } else { LSB_4K },
                    });
                }
            }
        }
    }
    unmaps.extend(signals);
    unmaps
}

/// Where a process touched poison: the user address of the 4 KiB page that
/// holds physical address `phys` inside the leaf mapping `leaf` (a 4 KiB,
/// 2 MiB or 1 GiB page of its page tables), if the leaf maps it. An
/// action-required machine check in user mode names only the physical
/// address (`IA32_MCi_ADDR`); walking the consumer's leaves with this gives
/// the `si_addr` of its `BUS_MCEERR_AR`.
pub fn page_in_leaf(leaf: &crate::paging::Leaf, phys: u64) -> Option<u64> {
    let size = leaf.size.bytes();
    let off = phys.checked_sub(leaf.phys)?;
    (off < size).then(|| leaf.virt + (off & !(PAGE_SIZE - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(va: u64) -> ByteRange {
        ByteRange::from_len(va, PAGE_SIZE).unwrap()
    }

    #[test]
    fn consumer_gets_ar_others_by_policy_and_everyone_is_unmapped() {
        let mapped = [
            Mapped { process: 1u32, va: page(0x7000_1000), huge: false, early: true },
            Mapped { process: 2, va: page(0x5020_3000), huge: true, early: true },
            Mapped { process: 3, va: page(0x6000_0000), huge: false, early: false },
        ];
        let acts = plan(Cause::Poison { consumer: Some((1, 0x7000_1abc)) }, &mapped);
        // Every mapping is unmapped, the huge one split first.
        let pos = |a: &Action<u32>| acts.iter().position(|x| x == a).unwrap();
        assert!(
            pos(&Action::Split { process: 2, va: 0x5020_0000 })
                < pos(&Action::Unmap { process: 2, va: page(0x5020_3000) })
        );
        for m in &mapped {
            assert!(acts.contains(&Action::Unmap { process: m.process, va: m.va }));
        }
        let signals: Vec<_> = acts.iter().filter(|a| matches!(a, Action::Signal { .. })).collect();
        assert_eq!(signals.len(), 2);
        assert!(acts.contains(&Action::Signal { process: 1, code: Code::ActionRequired, addr: 0x7000_1000, lsb: 12 }));
        assert!(acts.contains(&Action::Signal { process: 2, code: Code::ActionOptional, addr: 0x5020_3000, lsb: 12 }));
        // The late process is told nothing now.
        assert!(!acts.iter().any(|a| matches!(a, Action::Signal { process: 3, .. })));
        // Signals come after every unmap.
        let last_unmap = acts.iter().rposition(|a| !matches!(a, Action::Signal { .. })).unwrap();
        let first_signal = acts.iter().position(|a| matches!(a, Action::Signal { .. })).unwrap();
        assert!(last_unmap < first_signal);
    }

    #[test]
    fn one_signal_per_process_at_its_lowest_address() {
        let mapped = [
            Mapped { process: 7u32, va: page(0x9000_0000), huge: false, early: true },
            Mapped { process: 7, va: page(0x8000_0000), huge: false, early: true },
        ];
        let acts = plan(Cause::Poison { consumer: None }, &mapped);
        let signals: Vec<_> = acts.iter().filter(|a| matches!(a, Action::Signal { .. })).collect();
        assert_eq!(
            signals,
            vec![&Action::Signal { process: 7, code: Code::ActionOptional, addr: 0x8000_0000, lsb: 12 }]
        );
        // A consumer that maps the page too is told once, with AR.
        let acts = plan(Cause::Poison { consumer: Some((7, 0x9000_0010)) }, &mapped);
        let signals: Vec<_> = acts.iter().filter(|a| matches!(a, Action::Signal { .. })).collect();
        assert_eq!(
            signals,
            vec![&Action::Signal { process: 7, code: Code::ActionRequired, addr: 0x9000_0000, lsb: 12 }]
        );
    }

    #[test]
    fn the_consumers_page_is_found_in_any_leaf_size() {
        use crate::paging::{Flags, Leaf, PageSize};
        let leaf = |virt, phys, size| Leaf { virt, phys, size, flags: Flags::PRESENT };
        let small = leaf(0x40_3000, 0x1_0020_5000, PageSize::Size4K);
        assert_eq!(page_in_leaf(&small, 0x1_0020_5abc), Some(0x40_3000));
        assert_eq!(page_in_leaf(&small, 0x1_0020_6000), None, "one past the page");
        assert_eq!(page_in_leaf(&small, 0x1_0020_4fff), None, "one before");
        let huge = leaf(0x7f00_0020_0000, 0x1_0040_0000, PageSize::Size2M);
        assert_eq!(page_in_leaf(&huge, 0x1_0040_0000 + HUGE_2M / 2 + 0x40), Some(0x7f00_0020_0000 + HUGE_2M / 2));
        assert_eq!(page_in_leaf(&huge, 0x1_0060_0000), None);
        let giant = leaf(0x40_0000_0000, 0x1_0000_0000, PageSize::Size1G);
        assert_eq!(page_in_leaf(&giant, 0x1_3fff_ffff), Some(0x40_3fff_f000));
    }

    #[test]
    fn pre_remove_unmaps_and_tells_everyone() {
        let whole = ByteRange::from_len(0x4000_0000, 8 << 20).unwrap();
        let mapped = [
            Mapped { process: 1u32, va: whole, huge: true, early: false },
            Mapped { process: 2, va: page(0x1000_0000), huge: false, early: false },
        ];
        let acts = plan(Cause::PreRemove, &mapped);
        assert!(acts.contains(&Action::Unmap { process: 1, va: whole }));
        assert!(!acts.iter().any(|a| matches!(a, Action::Split { .. })), "whole mappings go, nothing to split");
        assert!(acts.contains(&Action::Signal { process: 1, code: Code::ActionOptional, addr: 0x4000_0000, lsb: 21 }));
        assert!(acts.contains(&Action::Signal { process: 2, code: Code::ActionOptional, addr: 0x1000_0000, lsb: 12 }));
    }
}
