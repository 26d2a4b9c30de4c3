//! Table-driven tests of the grading rules, including QEMU's injected values.

use std::collections::BTreeSet;
use std::vec::Vec;

use super::severity::RULES;
use super::*;

const SRAO_STATUS: u64 = 0xbd00_0000_0000_00c0;
const SRAO_MCG: u64 = 0x5;
const SRAR_STATUS: u64 = 0xbd80_0000_0000_0134;
const SRAR_MCG: u64 = 0x7;
const QEMU_MISC: u64 = 0x86;
const QEMU_MCG_CAP: u64 = 0x0100_010a;

const VAL: u64 = MciStatus::VAL;
const OVER: u64 = MciStatus::OVER;
const UC: u64 = MciStatus::UC;
const EN: u64 = MciStatus::EN;
const MISCV: u64 = MciStatus::MISCV;
const ADDRV: u64 = MciStatus::ADDRV;
const PCC: u64 = MciStatus::PCC;
const S: u64 = MciStatus::S;
const AR: u64 = MciStatus::AR;
const ADDR: u64 = ADDRV | MISCV;
/// A valid, enabled error with address.
const BASE: u64 = VAL | EN | ADDR;
const DATA: u64 = McaCode::DATA_LOAD as u64;
const INSTR: u64 = McaCode::INSTRUCTION_FETCH as u64;
const SCRUB: u64 = McaCode::MEMORY_SCRUB as u64;
const L3WB: u64 = McaCode::L3_WRITEBACK as u64;
const FILTER: u64 = McaCode::FILTER as u64;

const RIPV: u64 = McgStatus::RIPV;
const EIPV: u64 = McgStatus::EIPV;
const MCIP: u64 = McgStatus::MCIP;
const GOOD_MCG: u64 = RIPV | EIPV | MCIP;

const USER: InterruptedContext = InterruptedContext::User;
const KERNEL: InterruptedContext = InterruptedContext::Kernel { mc_safe: false };
const KERNEL_SAFE: InterruptedContext = InterruptedContext::Kernel { mc_safe: true };

use FatalReason as F;
use Severity as Sev;

const fn fatal(reason: FatalReason) -> Severity {
    Severity::Fatal { reason }
}

struct Case {
    ser: bool,
    mcg: u64,
    status: u64,
    ctx: InterruptedContext,
    expect: Severity,
    rule: &'static str,
}

const fn case(ser: bool, mcg: u64, status: u64, ctx: InterruptedContext, expect: Severity, rule: &'static str) -> Case {
    Case { ser, mcg, status, ctx, expect, rule }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // QEMU's injected values first.
    case(true, SRAO_MCG, SRAO_STATUS, USER, Sev::ActionOptional, "Action optional: memory scrubbing error"),
    case(true, SRAO_MCG, SRAO_STATUS, KERNEL, Sev::ActionOptional, "Action optional: memory scrubbing error"),
    case(true, SRAR_MCG, SRAR_STATUS, USER, Sev::ActionRequiredTask { resumable: true }, "Action required: data load in a user task"),
    case(true, SRAR_MCG, SRAR_STATUS, KERNEL_SAFE, Sev::ActionRequiredKernelRecoverable, "Action required: data load at a machine-check-safe kernel site"),
    case(true, SRAR_MCG, SRAR_STATUS, KERNEL, fatal(F::DataLoadInKernel), "Data load in ordinary kernel code"),
    // Not an error.
    case(true, GOOD_MCG, EN | UC | S | AR | DATA, USER, Sev::NoError, "Invalid"),
    case(true, GOOD_MCG, VAL | UC | S | AR | DATA, USER, Sev::NoError, "Not enabled"),
    // Always fatal.
    case(true, GOOD_MCG, BASE | UC | PCC, USER, fatal(F::ProcessorContextCorrupt), "Processor context corrupt"),
    case(true, GOOD_MCG, BASE | PCC, USER, fatal(F::ProcessorContextCorrupt), "Processor context corrupt"),
    case(true, RIPV | EIPV, SRAR_STATUS, USER, fatal(F::McipNotSet), "MCIP not set in #MC handler"),
    case(true, MCIP, SRAR_STATUS, USER, fatal(F::NeitherRestartNorErrorIp), "Neither restart nor error IP"),
    case(true, MCIP | EIPV, SRAR_STATUS, KERNEL_SAFE, fatal(F::KernelNoRestartIp), "In kernel and no restart IP"),
    case(true, MCIP | EIPV, BASE, KERNEL, fatal(F::KernelNoRestartIp), "In kernel and no restart IP"),
    // Corrected.
    case(true, GOOD_MCG, BASE | 0x9f, USER, Sev::Corrected, "Corrected error"),
    case(false, GOOD_MCG, BASE | 0x9f, KERNEL, Sev::Corrected, "Corrected error"),
    // UCNA and friends.
    case(true, GOOD_MCG, BASE | UC | 0x9f, KERNEL, Sev::Deferred, "Uncorrected no action required (UCNA)"),
    case(true, GOOD_MCG, BASE | OVER | UC | 0x9f, KERNEL, Sev::Deferred, "Uncorrected no action required (UCNA)"),
    case(true, GOOD_MCG, BASE | UC | AR | DATA, USER, fatal(F::IllegalUcnaWithAr), "Illegal combination (UCNA with AR)"),
    case(true, GOOD_MCG, BASE | OVER | UC | AR | DATA, USER, Sev::Keep, "Non-signalled machine check"),
    // Action required.
    case(true, GOOD_MCG, BASE | OVER | UC | S | AR | DATA, USER, fatal(F::ActionRequiredWithLostEvents), "Action required with lost events"),
    case(true, RIPV | MCIP, BASE | UC | S | AR | DATA, USER, Sev::Keep, "Action required, but this thread is unaffected and can continue"),
    case(true, RIPV | MCIP, BASE | UC | S | AR | DATA, KERNEL, Sev::Keep, "Action required, but this thread is unaffected and can continue"),
    case(true, GOOD_MCG, BASE | UC | S | AR | DATA | FILTER, KERNEL_SAFE, Sev::ActionRequiredKernelRecoverable, "Action required: data load at a machine-check-safe kernel site"),
    case(true, EIPV | MCIP, BASE | UC | S | AR | DATA, USER, Sev::ActionRequiredTask { resumable: false }, "Action required: data load in a user task"),
    case(true, GOOD_MCG, BASE | UC | S | AR | INSTR, USER, Sev::ActionRequiredTask { resumable: true }, "Action required: instruction fetch in a user task"),
    case(true, GOOD_MCG, VAL | EN | UC | S | AR | DATA, KERNEL, fatal(F::DataLoadInKernel), "Data load in ordinary kernel code"),
    case(true, GOOD_MCG, BASE | UC | S | AR | INSTR, KERNEL, fatal(F::InstructionFetchInKernel), "Instruction fetch in the kernel"),
    case(true, GOOD_MCG, BASE | UC | S | AR | INSTR, KERNEL_SAFE, fatal(F::InstructionFetchInKernel), "Instruction fetch in the kernel"),
    case(true, GOOD_MCG, VAL | EN | UC | S | AR | DATA, USER, fatal(F::UnknownActionRequired), "Action required: unknown MCA code or no address"),
    case(true, GOOD_MCG, VAL | EN | UC | S | AR | DATA, KERNEL_SAFE, fatal(F::UnknownActionRequired), "Action required: unknown MCA code or no address"),
    case(true, GOOD_MCG, BASE | UC | S | AR | 0x0135, USER, fatal(F::UnknownActionRequired), "Action required: unknown MCA code or no address"),
    // Action optional.
    case(true, GOOD_MCG, BASE | UC | S | (SCRUB | 0x3), USER, Sev::ActionOptional, "Action optional: memory scrubbing error"),
    case(true, GOOD_MCG, BASE | UC | S | L3WB, KERNEL, Sev::ActionOptional, "Action optional: last-level cache write-back error"),
    case(true, GOOD_MCG, BASE | UC | S | 0x0135, USER, Sev::Logged, "Action optional: unknown MCA code"),
    case(true, GOOD_MCG, BASE | OVER | UC | S | 0x0135, USER, Sev::Logged, "Action optional with lost events"),
    // Known AO codes ignore OVER and S (CMCI-reported SRAO).
    case(true, GOOD_MCG, BASE | OVER | UC | S | SCRUB, USER, Sev::ActionOptional, "Action optional: memory scrubbing error"),
    case(true, GOOD_MCG, BASE | UC | SCRUB, KERNEL, Sev::ActionOptional, "Action optional: memory scrubbing error"),
    // A machine-check-safe site counts only with RIPV and EIPV.
    case(true, RIPV | MCIP, VAL | EN | UC | S | AR | DATA, KERNEL_SAFE, fatal(F::DataLoadInKernel), "Data load in ordinary kernel code"),
    // CPUs without SER.
    case(false, GOOD_MCG, BASE | OVER | UC | DATA, USER, fatal(F::OverflowedUncorrected), "Overflowed uncorrected"),
    case(false, GOOD_MCG, BASE | UC | DATA, KERNEL_SAFE, fatal(F::UncorrectedInKernel), "Uncorrected in the kernel"),
    case(false, GOOD_MCG, BASE | UC | DATA, USER, fatal(F::UncorrectedWithoutSer), "Uncorrected without SER"),
    // The S/AR bits mean nothing without SER.
    case(false, SRAR_MCG, SRAR_STATUS, USER, fatal(F::UncorrectedWithoutSer), "Uncorrected without SER"),
];

#[test]
fn every_case_grades_as_expected() {
    for (i, c) in CASES.iter().enumerate() {
        let g = grade_bank(c.ser, McgStatus(c.mcg), MciStatus(c.status), c.ctx);
        assert_eq!(
            (g.severity, g.rule),
            (c.expect, c.rule),
            "case {i}: status {:#018x} mcg {:#x} {:?} ser {}",
            c.status,
            c.mcg,
            c.ctx,
            c.ser
        );
    }
}

#[test]
fn every_rule_is_exercised() {
    let hit: BTreeSet<&str> = CASES.iter().map(|c| c.rule).collect();
    let missing: Vec<&str> = RULES.iter().map(|r| r.name).filter(|n| !hit.contains(n)).collect();
    assert!(missing.is_empty(), "rules without a test case: {missing:?}");
}

#[test]
fn rule_names_are_unique() {
    let names: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len());
}

/// The table is total: any status/mcg/context combination matches a rule
/// (the "No match" fallback is never used).
#[test]
fn table_is_total_over_the_architectural_bits() {
    let bits = [VAL, OVER, UC, EN, MISCV, ADDRV, PCC, S, AR];
    let codes = [0u64, DATA, INSTR, SCRUB, L3WB, 0x0135];
    for combo in 0u32..(1 << bits.len()) {
        let mut status = 0;
        for (i, b) in bits.iter().enumerate() {
            if combo & (1 << i) != 0 {
                status |= b;
            }
        }
        for code in codes {
            for mcg in 0..16u64 {
                for ctx in [USER, KERNEL, KERNEL_SAFE] {
                    for ser in [false, true] {
                        let g = grade_bank(ser, McgStatus(mcg), MciStatus(status | code), ctx);
                        assert_ne!(g.rule, "No match", "status {:#x} mcg {mcg:#x}", status | code);
                    }
                }
            }
        }
    }
}

#[test]
fn qemu_register_decoding() {
    let cap = McgCap(QEMU_MCG_CAP);
    assert_eq!(cap.bank_count(), 10);
    assert!(cap.ctl_p() && cap.ser_p());
    assert!(!cap.lmce_p() && !cap.cmci_p() && !cap.tes_p());

    let srao = MciStatus(SRAO_STATUS);
    assert!(srao.val() && srao.uc() && srao.en() && srao.miscv() && srao.addrv() && srao.s());
    assert!(!srao.over() && !srao.pcc() && !srao.ar());
    assert!(srao.mca_code().is_memory_scrub());
    assert_eq!(srao.mca_code().kind(), McaErrorKind::MemoryController { operation: 4, channel: 0 });
    let srar = MciStatus(SRAR_STATUS);
    assert!(srar.ar() && srar.s() && srar.uc());
    assert!(srar.mca_code().is_data_load());
    assert_eq!(srar.mca_code().kind(), McaErrorKind::Cache { request: 3, transaction: 1, level: 0 });
    assert_eq!(MciStatus(0xABCD_0000 | SRAR_STATUS).model_code(), 0xABCD);

    let mcg = McgStatus(SRAR_MCG);
    assert!(mcg.ripv() && mcg.eipv() && mcg.mcip() && !mcg.lmces());
    let mcg = McgStatus(SRAO_MCG);
    assert!(mcg.ripv() && !mcg.eipv() && mcg.mcip());

    let misc = MciMisc(QEMU_MISC);
    assert_eq!(misc.lsb(), 6);
    assert_eq!(misc.address_mode(), AddressMode::Physical);
}

#[test]
fn mca_code_kinds() {
    let k = |c: u16| McaCode(c).kind();
    assert_eq!(k(0), McaErrorKind::NoError);
    assert_eq!(k(0x0005), McaErrorKind::InternalParity);
    assert_eq!(k(0x0400), McaErrorKind::InternalTimer);
    assert_eq!(k(0x0455), McaErrorKind::InternalUnclassified);
    assert_eq!(k(0x000F), McaErrorKind::GenericCacheHierarchy { level: 3 });
    assert_eq!(k(0x0016), McaErrorKind::Tlb { transaction: 1, level: 2 });
    assert_eq!(k(0x109F), McaErrorKind::MemoryController { operation: 1, channel: 15 });
    assert_eq!(k(0x0E0B), McaErrorKind::Bus);
    assert_eq!(k(0x2000), McaErrorKind::Other);
    assert!(McaCode(0x10C5).is_memory_scrub());
    assert!(!McaCode(0x00D0).is_memory_scrub());
}

fn bank(status: u64, addr: u64, misc: u64) -> BankRecord {
    BankRecord { bank: 9, status: MciStatus(status), addr, misc: MciMisc(misc) }
}

#[test]
fn poisoned_range_from_qemu_values() {
    let b = bank(SRAR_STATUS, 0x1_0000_1234, QEMU_MISC);
    let r = b.poisoned_range().unwrap();
    assert_eq!(r, PhysRange { start: 0x1_0000_1200, len: 64 });
    assert_eq!(r.end(), 0x1_0000_1240);
    assert!(r.start <= b.addr && b.addr < r.end());
}

#[test]
fn poisoned_range_needs_valid_physical_address() {
    assert_eq!(bank(SRAR_STATUS & !ADDRV, 0x1000, QEMU_MISC).poisoned_range(), None);
    assert_eq!(bank(SRAR_STATUS & !MISCV, 0x1000, QEMU_MISC).poisoned_range(), None);
    assert_eq!(bank(SRAR_STATUS & !VAL, 0x1000, QEMU_MISC).poisoned_range(), None);
    // Linear address mode (1 << 6) with LSB 6.
    assert_eq!(bank(SRAR_STATUS, 0x1000, 0x46).poisoned_range(), None);
    assert_eq!(MciMisc(0x46).address_mode(), AddressMode::Linear);
    assert_eq!(MciMisc(5 << 6).address_mode(), AddressMode::Reserved(5));
    // LSB 12: a whole page.
    assert_eq!(
        bank(SRAR_STATUS, 0x12_3456, 0x80 | 12).poisoned_range(),
        Some(PhysRange { start: 0x12_3000, len: 4096 })
    );
    // LSB 0: one byte.
    assert_eq!(bank(SRAR_STATUS, 0x12_3456, 0x80).poisoned_range(), Some(PhysRange { start: 0x12_3456, len: 1 }));
    // LSB 63 at the top half: the range would end at 2^64.
    assert_eq!(bank(SRAR_STATUS, u64::MAX, 0x80 | 63).poisoned_range(), None);
    assert_eq!(
        bank(SRAR_STATUS, 0x7FFF_FFFF_FFFF_FFFF, 0x80 | 63).poisoned_range(),
        Some(PhysRange { start: 0, len: 1 << 63 })
    );
}

#[test]
fn grade_event_returns_the_worst_bank() {
    let mcg = McgStatus(SRAR_MCG);
    let banks = [
        bank(0, 0, 0),                        // empty
        bank(BASE | 0x9f, 0x2000, QEMU_MISC), // corrected
        bank(SRAO_STATUS, 0x3000, QEMU_MISC), // action optional
        bank(SRAR_STATUS, 0x4000, QEMU_MISC), // action required
        bank(SRAO_STATUS, 0x5000, QEMU_MISC), // action optional again
    ];
    let e = grade_event(true, mcg, USER, &banks);
    assert_eq!(e.worst, Some(3));
    assert_eq!(e.grade.severity, Severity::ActionRequiredTask { resumable: true });
    assert_eq!(banks[3].poisoned_range(), Some(PhysRange { start: 0x4000, len: 64 }));

    // The same event in ordinary kernel code is fatal.
    let e = grade_event(true, mcg, KERNEL, &banks);
    assert_eq!(e.worst, Some(3));
    assert!(e.grade.severity.is_fatal());

    // Ties keep the first bank.
    let e = grade_event(true, McgStatus(SRAO_MCG), USER, &banks[..3]);
    assert_eq!((e.worst, e.grade.severity), (Some(2), Severity::ActionOptional));
    let two_ao = [banks[2], banks[4]];
    assert_eq!(grade_event(true, McgStatus(SRAO_MCG), USER, &two_ao).worst, Some(0));

    // Nothing valid.
    let e = grade_event(true, mcg, USER, &banks[..1]);
    assert_eq!((e.worst, e.grade.severity), (None, Severity::NoError));
    assert_eq!(grade_event(true, mcg, USER, &[]).worst, None);
}

#[test]
fn rank_orders_severities() {
    let order = [
        Severity::NoError,
        Severity::Corrected,
        Severity::Deferred,
        Severity::Keep,
        Severity::Logged,
        Severity::ActionOptional,
        Severity::ActionRequiredTask { resumable: true },
        Severity::ActionRequiredTask { resumable: false },
        Severity::Fatal { reason: FatalReason::McipNotSet },
    ];
    for w in order.windows(2) {
        assert!(w[0].rank() < w[1].rank(), "{:?} !< {:?}", w[0], w[1]);
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn ctx() -> impl Strategy<Value = InterruptedContext> {
        prop_oneof![Just(USER), Just(KERNEL), Just(KERNEL_SAFE)]
    }

    proptest! {
        /// The reported range is aligned, 2^lsb long and holds the address.
        #[test]
        fn poisoned_range_holds_the_address(addr in 0u64..(1 << 52), lsb in 0u64..=40) {
            let b = bank(SRAR_STATUS, addr, 0x80 | lsb);
            let r = b.poisoned_range().unwrap();
            prop_assert_eq!(r.len, 1u64 << lsb);
            prop_assert_eq!(r.start % r.len, 0);
            prop_assert!(r.start <= addr && addr < r.end());
        }

        /// grade_event picks a bank whose grade is the maximum rank, and
        /// the first such bank.
        #[test]
        fn grade_event_is_the_first_maximum(
            statuses in prop::collection::vec(any::<u64>(), 0..10),
            mcg in 0u64..16,
            ctx in ctx(),
            ser in any::<bool>(),
        ) {
            let banks: Vec<_> = statuses.iter().map(|&s| bank(s, 0x1000, QEMU_MISC)).collect();
            let e = grade_event(ser, McgStatus(mcg), ctx, &banks);
            let ranks: Vec<Option<u8>> = banks
                .iter()
                .map(|b| b.status.val().then(|| {
                    grade_bank(ser, McgStatus(mcg), b.status, ctx).severity.rank()
                }))
                .collect();
            let best = ranks.iter().flatten().max().copied();
            match e.worst {
                None => prop_assert!(best.is_none()),
                Some(i) => {
                    prop_assert_eq!(ranks[i], best);
                    prop_assert!(ranks[..i].iter().flatten().all(|r| Some(*r) < best));
                    prop_assert_eq!(e.grade, grade_bank(ser, McgStatus(mcg), banks[i].status, ctx));
                }
            }
        }
    }
}
