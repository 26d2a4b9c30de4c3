//! Machine checks: bank setup, the #MC handler, and its log.
//!
//! The handler runs on its own IST stack, at whatever instruction the CPU
//! was executing. It reads `MCG_STATUS` and every bank, clears them, grades
//! the event with `drivers::mce` (Linux's severity table), and then:
//!
//! - corrected / deferred-to-log events: logged;
//! - action optional (e.g. patrol scrub found poison): the poisoned range is
//!   queued for `memory_failure`, which runs in a kernel task;
//! - action required at a machine-check-safe copy (exception table): queued,
//!   and the copy resumes at its fixup and returns short (caller gets EIO);
//! - action required in an ordinary task: queued, and that task is killed
//!   (it consumed the poison);
//! - anything else (action required in ordinary kernel code, PCC, ...):
//!   fatal: a full report and QEMU exits with status 97.
//!
//! The handler takes no lock that normal code can hold and never allocates:
//! bank records live on its stack, the log is a fixed array of atomics, and
//! poison goes through lock-free rings (`PoisonRing`).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use fsdax_drivers::mce::{
    grade_event, BankRecord, InterruptedContext, McgCap, McgStatus, MciMisc, MciStatus, Severity,
};
use fsdax_drivers::pmem::{ByteRange, PoisonRing};
use fsdax_ktest::protocol::ExitCode;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::structures::idt::InterruptStackFrame;

use crate::arch::copy;
use crate::arch::cpu::{rdmsr, wrmsr};

const IA32_MCG_CAP: u32 = 0x179;
const IA32_MCG_STATUS: u32 = 0x17a;
const IA32_MCG_CTL: u32 = 0x17b;
const fn mci_ctl(i: u8) -> u32 {
    0x400 + 4 * i as u32
}
const fn mci_status(i: u8) -> u32 {
    0x401 + 4 * i as u32
}
const fn mci_addr(i: u8) -> u32 {
    0x402 + 4 * i as u32
}
const fn mci_misc(i: u8) -> u32 {
    0x403 + 4 * i as u32
}

const MAX_BANKS: usize = 32;
static BANKS: AtomicU8 = AtomicU8::new(0);
static SER: AtomicBool = AtomicBool::new(false);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Poison the #MC handler found, by kind, waiting for `memory_failure`.
pub static ACTION_REQUIRED: PoisonRing<64> = PoisonRing::new();
pub static ACTION_OPTIONAL: PoisonRing<64> = PoisonRing::new();

/// The poisoned physical range of the last action-required #MC that a
/// machine-check-safe copy absorbed (start, len; len 0 = none). The copy's
/// caller takes it to learn exactly where the poison is. One CPU.
static CONSUMED_START: AtomicU64 = AtomicU64::new(0);
static CONSUMED_LEN: AtomicU64 = AtomicU64::new(0);

/// Takes the range recorded by the last recovered action-required #MC.
pub fn take_consumed_poison() -> Option<ByteRange> {
    let len = CONSUMED_LEN.swap(0, Ordering::Acquire);
    ByteRange::from_len(CONSUMED_START.load(Ordering::Relaxed), len).filter(|_| len > 0)
}

/// Machine-check architecture setup, for the boot log and `mce`.
#[derive(Debug, Clone, Copy)]
pub struct McaSetup {
    pub cap: u64,
    pub banks: u8,
    pub ser: bool,
}

/// Enables machine checks: every bank's CTL to all ones, stale status
/// cleared, `MCG_CTL` (if present) to all ones, then `CR4.MCE`. Without
/// `CR4.MCE` QEMU turns an injected #MC into a triple fault; with `MCi_CTL`
/// zero the injection is dropped.
pub fn init(features: &crate::arch::cpu::Features) -> Option<McaSetup> {
    if !features.mca {
        return None;
    }
    // SAFETY: MCA is present (CPUID.1:EDX.MCA), so MCG_CAP exists.
    let cap = McgCap(unsafe { rdmsr(IA32_MCG_CAP) });
    let banks = cap.bank_count().min(MAX_BANKS as u8);
    // SAFETY: these MSRs exist for every bank MCG_CAP reports, and MCG_CTL
    // when MCG_CTL_P is set; all ones enables every error source, and zero
    // is always a valid status.
    unsafe {
        if cap.ctl_p() {
            wrmsr(IA32_MCG_CTL, u64::MAX);
        }
        for i in 0..banks {
            wrmsr(mci_ctl(i), u64::MAX);
            wrmsr(mci_status(i), 0);
        }
        Cr4::update(|c| c.insert(Cr4Flags::MACHINE_CHECK_EXCEPTION));
    }
    BANKS.store(banks, Ordering::Relaxed);
    SER.store(cap.ser_p(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Some(McaSetup { cap: cap.0, banks, ser: cap.ser_p() })
}

// ------------------------------------------------------------------ log

const LOG_SLOTS: usize = 16;

/// One logged machine check, stored as atomics so the handler can write it
/// without a lock (readers may see a slot mid-update; it is a diagnostic).
struct LogSlot {
    mcg: AtomicU64,
    bank: AtomicU64,
    status: AtomicU64,
    addr: AtomicU64,
    misc: AtomicU64,
    rip: AtomicU64,
    /// Severity code (see `severity_code`) | (task id << 8).
    outcome: AtomicU64,
}

static LOG: [LogSlot; LOG_SLOTS] = [const {
    LogSlot {
        mcg: AtomicU64::new(0),
        bank: AtomicU64::new(0),
        status: AtomicU64::new(0),
        addr: AtomicU64::new(0),
        misc: AtomicU64::new(0),
        rip: AtomicU64::new(0),
        outcome: AtomicU64::new(0),
    }
}; LOG_SLOTS];
static LOGGED: AtomicUsize = AtomicUsize::new(0);

fn severity_code(s: Severity) -> u64 {
    match s {
        Severity::NoError => 0,
        Severity::Corrected => 1,
        Severity::Deferred => 2,
        Severity::Keep => 3,
        Severity::Logged => 4,
        Severity::ActionOptional => 5,
        Severity::ActionRequiredTask { .. } => 6,
        Severity::ActionRequiredKernelRecoverable => 7,
        Severity::Fatal { .. } => 8,
    }
}

fn severity_name(code: u64) -> &'static str {
    match code {
        0 => "no error",
        1 => "corrected",
        2 => "deferred (UCNA)",
        3 => "kept",
        4 => "logged",
        5 => "action optional",
        6 => "action required in a task: task killed",
        7 => "action required at a machine-check-safe copy: recovered",
        _ => "fatal",
    }
}

fn log_event(mcg: McgStatus, bank: &BankRecord, rip: u64, severity: Severity, task: u64) {
    let n = LOGGED.fetch_add(1, Ordering::Relaxed);
    let slot = &LOG[n % LOG_SLOTS];
    slot.mcg.store(mcg.0, Ordering::Relaxed);
    slot.bank.store(u64::from(bank.bank), Ordering::Relaxed);
    slot.status.store(bank.status.0, Ordering::Relaxed);
    slot.addr.store(bank.addr, Ordering::Relaxed);
    slot.misc.store(bank.misc.0, Ordering::Relaxed);
    slot.rip.store(rip, Ordering::Relaxed);
    slot.outcome.store(severity_code(severity) | (task << 8), Ordering::Release);
}

// ------------------------------------------------------------------ handler

/// The #MC handler, installed with `set_handler_addr` because it may return
/// (recoverable events), which the IDT's diverging type for vector 18 does
/// not allow.
pub extern "x86-interrupt" fn machine_check_handler(mut frame: InterruptStackFrame) {
    // SAFETY: the MSRs exist (init ran before CR4.MCE was set, which is what
    // makes this vector reachable); reads have no side effects.
    let mcg = McgStatus(unsafe { rdmsr(IA32_MCG_STATUS) });
    let nbanks = BANKS.load(Ordering::Relaxed);
    let mut banks = [BankRecord { bank: 0, status: MciStatus(0), addr: 0, misc: MciMisc(0) }; MAX_BANKS];
    let mut n = 0;
    for i in 0..nbanks {
        // SAFETY: bank `i` exists (i < MCG_CAP.count).
        let status = MciStatus(unsafe { rdmsr(mci_status(i)) });
        if !status.val() {
            continue;
        }
        // SAFETY: ADDR/MISC are valid to read when ADDRV/MISCV say so.
        let addr = if status.addrv() { unsafe { rdmsr(mci_addr(i)) } } else { 0 };
        // SAFETY: as above.
        let misc = if status.miscv() { unsafe { rdmsr(mci_misc(i)) } } else { 0 };
        banks[n] = BankRecord { bank: i, status, addr, misc: MciMisc(misc) };
        n += 1;
    }
    let banks = &banks[..n];
    let rip = frame.instruction_pointer.as_u64();
    let fixup = copy::mc_fixup(rip);
    let interrupts_on = frame.cpu_flags.bits() & (1 << 9) != 0;
    let (task, killable) = crate::task::current_for_machine_check(interrupts_on);
    let ctx = if fixup.is_some() {
        InterruptedContext::Kernel { mc_safe: true }
    } else if killable {
        // A killable task consumed the poison: the analogue of a user task.
        InterruptedContext::User
    } else {
        InterruptedContext::Kernel { mc_safe: false }
    };
    let event = grade_event(SER.load(Ordering::Relaxed), mcg, ctx, banks);
    let severity = event.grade.severity;
    for b in banks {
        log_event(
            mcg,
            b,
            rip,
            if Some(b.bank) == event.worst.map(|w| banks[w].bank) { severity } else { Severity::Logged },
            task,
        );
    }
    if severity.is_fatal() {
        fatal_report(&frame, mcg, banks, event.grade.rule, task);
    }
    let poisoned =
        event.worst.and_then(|w| banks[w].poisoned_range()).and_then(|r| ByteRange::from_len(r.start, r.len));
    // Clear the banks we handled, then MCIP (a second #MC while MCIP is set
    // shuts the CPU down).
    for b in banks {
        // SAFETY: writing zero to a reported bank's status is always valid.
        unsafe { wrmsr(mci_status(b.bank), 0) };
    }
    // SAFETY: clearing MCG_STATUS ends this machine check.
    unsafe { wrmsr(IA32_MCG_STATUS, 0) };
    match severity {
        Severity::ActionRequiredKernelRecoverable => {
            if let Some(r) = poisoned {
                let _ = ACTION_REQUIRED.push(r);
                CONSUMED_START.store(r.start(), Ordering::Relaxed);
                CONSUMED_LEN.store(r.len(), Ordering::Release);
            }
            if let Some(fixup) = fixup {
                // SAFETY: the fixup belongs to the instruction that was
                // interrupted, in the same function and stack frame.
                unsafe {
                    frame.as_mut().update(|f| f.instruction_pointer = x86_64::VirtAddr::new(fixup));
                }
            }
        }
        Severity::ActionRequiredTask { .. } => {
            if let Some(r) = poisoned {
                let _ = ACTION_REQUIRED.push(r);
            }
            crate::task::kill_current_on_machine_check(rip, poisoned.map_or(0, |r| r.start()));
        }
        Severity::ActionOptional | Severity::Deferred => {
            if let Some(r) = poisoned {
                let _ = ACTION_OPTIONAL.push(r);
            }
        }
        _ => {}
    }
}

fn fatal_report(frame: &InterruptStackFrame, mcg: McgStatus, banks: &[BankRecord], rule: &str, task: u64) -> ! {
    use crate::log::emergency as e;
    e(format_args!("\nFATAL MACHINE CHECK: {rule}\n"));
    e(format_args!(
        "  RIP {:#x} (RIPV {} EIPV {}) RSP {:#x} RFLAGS {:#x}, task {task}\n",
        frame.instruction_pointer.as_u64(),
        mcg.ripv(),
        mcg.eipv(),
        frame.stack_pointer.as_u64(),
        frame.cpu_flags.bits()
    ));
    e(format_args!("  MCG_STATUS {:#x}\n", mcg.0));
    for b in banks {
        e(format_args!("  bank {}: STATUS {:#018x} ADDR {:#x} MISC {:#x}\n", b.bank, b.status.0, b.addr, b.misc.0));
    }
    crate::panic::exit_qemu(ExitCode::FatalMachineCheck)
}

crate::shell_command!(MCE_CMD, name: "mce", usage: "mce",
    help: "machine-check bank setup and the machine checks seen",
    run: |_| {
        if !ENABLED.load(Ordering::Relaxed) {
            crate::kprintln!("machine checks: not enabled (no MCA)");
            return;
        }
        // SAFETY: MCA is enabled, so MCG_CAP/MCG_STATUS exist.
        let (cap, status) = unsafe { (rdmsr(IA32_MCG_CAP), rdmsr(IA32_MCG_STATUS)) };
        crate::kprintln!(
            "MCG_CAP {cap:#x}: {} banks, MCG_CTL {}, SER {}; CR4.MCE on; MCG_STATUS {status:#x}",
            BANKS.load(Ordering::Relaxed),
            McgCap(cap).ctl_p(),
            SER.load(Ordering::Relaxed)
        );
        let seen = LOGGED.load(Ordering::Relaxed);
        crate::kprintln!("{seen} machine check(s) logged; queued poison dropped: AR {} AO {}",
            ACTION_REQUIRED.dropped(), ACTION_OPTIONAL.dropped());
        let first = seen.saturating_sub(LOG_SLOTS);
        for i in first..seen {
            let s = &LOG[i % LOG_SLOTS];
            let outcome = s.outcome.load(Ordering::Acquire);
            crate::kprintln!(
                "  #{i}: bank {} STATUS {:#018x} ADDR {:#x} MISC {:#x} MCG {:#x} RIP {:#x} task {}: {}",
                s.bank.load(Ordering::Relaxed),
                s.status.load(Ordering::Relaxed),
                s.addr.load(Ordering::Relaxed),
                s.misc.load(Ordering::Relaxed),
                s.mcg.load(Ordering::Relaxed),
                s.rip.load(Ordering::Relaxed),
                outcome >> 8,
                severity_name(outcome & 0xff)
            );
        }
    }
);

fsdax_ktest::ktest!(machine_checks_are_enabled, {
    use fsdax_ktest::kassert;
    kassert!(ENABLED.load(Ordering::Relaxed), "MCA not enabled");
    kassert!(Cr4::read().contains(Cr4Flags::MACHINE_CHECK_EXCEPTION));
    let banks = BANKS.load(Ordering::Relaxed);
    kassert!(banks > 0);
    for i in 0..banks {
        // SAFETY: bank i exists.
        kassert!(unsafe { rdmsr(mci_ctl(i)) } == u64::MAX, "a bank's CTL is not all ones");
    }
    Ok(())
});

/// In-kernel tests that stage a machine check in a bank and raise vector 18
/// with `int 0x12`, so the real handler grades and acts on it. QEMU accepts
/// software writes to `MCi_STATUS/ADDR/MISC` and `MCG_STATUS`; real CPUs do
/// not, so these tests only run under QEMU (fw_cfg present).
mod tests {
    use fsdax_drivers::pmem::device::MfFlags;
    use fsdax_ktest::{kassert, kassert_eq, ktest, Failure};

    use super::*;
    use crate::task::{self, ExitReason};

    const SRAR: u64 = 0xbd80_0000_0000_0134;
    const SRAO: u64 = 0xbd00_0000_0000_00c0;
    const CORRECTED: u64 = 0x9c00_0000_0000_0134; // VAL EN MISCV ADDRV, UC clear

    fn under_qemu() -> bool {
        // SAFETY: probing fw_cfg ports is harmless on a PC.
        unsafe { fsdax_drivers::fw_cfg::FwCfg::probe() }.is_some()
    }

    /// Stages bank 9 and raises #MC.
    fn raise(status: u64, mcg: u64, addr: u64) {
        // SAFETY: bank 9 exists under QEMU (10 banks); QEMU stores these
        // values as if the hardware had logged them; `int 0x12` enters the
        // #MC handler through its IDT gate.
        unsafe {
            wrmsr(mci_addr(9), addr);
            wrmsr(mci_misc(9), 0x86);
            wrmsr(mci_status(9), status);
            wrmsr(IA32_MCG_STATUS, mcg);
            core::arch::asm!("int 0x12");
        }
    }

    fn fail(message: &'static str) -> Failure {
        Failure { file: file!(), line: line!(), message }
    }

    fn pmem_phys(offset: u64) -> Result<(&'static crate::pmem::Device, u64), Failure> {
        let d = crate::pmem::devices().first().ok_or(fail("no pmem"))?;
        Ok((d, d.phys_base() + offset))
    }

    ktest!(action_required_in_a_task_kills_only_that_task, {
        if !under_qemu() {
            return Ok(());
        }
        let (d, phys) = pmem_phys(d_offset())?;
        let before = LOGGED.load(Ordering::Relaxed);
        let id = task::spawn("consumer", move || raise(SRAR, 0x7, phys)).map_err(|_| fail("spawn"))?;
        match task::join(id) {
            Some(ExitReason::MachineCheck { phys: p, .. }) => kassert_eq!(p, phys),
            _ => return Err(fail("the consuming task was not killed by its machine check")),
        }
        kassert_eq!(LOGGED.load(Ordering::Relaxed), before + 1);
        crate::pmem::drain_machine_check_poison();
        kassert!(d.is_poisoned(d_offset(), 64), "the consumed poison was not recorded");
        d.recovery_write(d_offset() & !4095, &[0; 4096]).map_err(|_| fail("recovery write"))?;
        kassert!(!d.is_poisoned(d_offset(), 64));
        Ok(())
    });

    ktest!(action_optional_is_queued_and_the_task_goes_on, {
        if !under_qemu() {
            return Ok(());
        }
        let (d, phys) = pmem_phys(d_offset() + 8192)?;
        raise(SRAO, 0x5, phys);
        // We are still running: action optional does not stop anyone.
        kassert_eq!(crate::pmem::drain_machine_check_poison(), 1);
        kassert!(d.is_poisoned(d_offset() + 8192, 64));
        d.recovery_write((d_offset() + 8192) & !4095, &[0; 4096]).map_err(|_| fail("recovery write"))?;
        kassert!(matches!(
            crate::pmem::memory_failure(
                ByteRange::from_len(0x1000, 64).ok_or(fail("range"))?,
                MfFlags::ACTION_OPTIONAL
            ),
            crate::pmem::Failure::NotPmem
        ));
        Ok(())
    });

    ktest!(corrected_errors_are_only_logged, {
        if !under_qemu() {
            return Ok(());
        }
        let (_, phys) = pmem_phys(d_offset() + 16384)?;
        let before = LOGGED.load(Ordering::Relaxed);
        raise(CORRECTED, 0x5, phys);
        kassert_eq!(LOGGED.load(Ordering::Relaxed), before + 1);
        kassert_eq!(crate::pmem::drain_machine_check_poison(), 0);
        let last = &LOG[before % LOG_SLOTS];
        kassert_eq!(last.outcome.load(Ordering::Relaxed) & 0xff, 1, "graded corrected");
        Ok(())
    });

    /// Where these tests poison pmem0: 200 MiB in, clear of other tests.
    fn d_offset() -> u64 {
        200 << 20
    }
}
