//! Machine checks: the kernel's policy for the events the hal reads.
//!
//! The hal's #MC entry reads and clears the banks and calls
//! [`on_machine_check`] on its IST stack, at whatever instruction the CPU
//! was executing. The decision is `fsdax_kcore::mce::decide` (Linux's
//! severity grading, then the dispatch table); this module carries it out:
//!
//! - log: every event goes to a fixed log of atomics (`mce` prints it);
//! - action optional: the poisoned range is queued for memory failure,
//!   which runs in a kernel task (`pmem::start_worker`);
//! - action required at a machine-check-safe copy: queued, and the hal
//!   resumes the copy at its fixup with the range (the caller gets EIO);
//! - action required in a killable task: queued, and that task is killed
//!   (it consumed the poison);
//! - fatal: a full report, and QEMU exits with status 97.
//!
//! No lock, no allocation: the handler may have interrupted anything.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fsdax_drivers::mce::{BankRecord, Severity};
use fsdax_drivers::pmem::{ByteRange, PoisonRing};
use fsdax_hal::mce::{MachineCheck, McResolution};
use fsdax_kcore::kill::Verdict;
use fsdax_kcore::mce::{decide, severity_text, Interrupted, McAction};
use fsdax_ktest::protocol::ExitCode;

use crate::task::{self, ExitReason};

/// Poison the #MC handler found, by kind, waiting for memory failure.
pub static ACTION_REQUIRED: PoisonRing<64> = PoisonRing::new();
/// See [`ACTION_REQUIRED`].
pub static ACTION_OPTIONAL: PoisonRing<64> = PoisonRing::new();

/// Registers the handler with the hal.
pub fn register_handler() {
    if fsdax_hal::mce::register_handler(on_machine_check).is_err() {
        crate::error!("mce: a machine-check handler was already registered");
    }
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

const SEVERITIES: [Severity; 9] = [
    Severity::NoError,
    Severity::Corrected,
    Severity::Deferred,
    Severity::Keep,
    Severity::Logged,
    Severity::ActionOptional,
    Severity::ActionRequiredTask { resumable: true },
    Severity::ActionRequiredKernelRecoverable,
    Severity::Fatal { reason: fsdax_drivers::mce::FatalReason::ProcessorContextCorrupt },
];

fn severity_code(s: Severity) -> u64 {
    let same = |a: &Severity| core::mem::discriminant(a) == core::mem::discriminant(&s);
    SEVERITIES.iter().position(same).unwrap_or(SEVERITIES.len() - 1) as u64
}

fn log_event(mc: &MachineCheck, bank: &BankRecord, severity: Severity, task: u64) {
    let n = LOGGED.fetch_add(1, Ordering::Relaxed);
    let slot = &LOG[n % LOG_SLOTS];
    slot.mcg.store(mc.mcg.0, Ordering::Relaxed);
    slot.bank.store(u64::from(bank.bank), Ordering::Relaxed);
    slot.status.store(bank.status.0, Ordering::Relaxed);
    slot.addr.store(bank.addr, Ordering::Relaxed);
    slot.misc.store(bank.misc.0, Ordering::Relaxed);
    slot.rip.store(mc.rip, Ordering::Relaxed);
    slot.outcome.store(severity_code(severity) | (task << 8), Ordering::Release);
}

/// Machine checks logged since boot.
pub fn logged() -> usize {
    LOGGED.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------ handler

/// The machine-check handler (registered with the hal).
fn on_machine_check(mc: &MachineCheck) -> McResolution {
    let (task, name, verdict) = task::failure_verdict(mc.interrupts_were_enabled());
    let at = Interrupted {
        user_mode: mc.from_user_mode(),
        at_mc_safe_copy: mc.at_mc_safe_copy,
        killable_task: verdict == Verdict::KillNow,
    };
    let banks = mc.banks();
    let d = decide(mc.ser, mc.mcg, banks, at);
    for (i, b) in banks.iter().enumerate() {
        log_event(mc, b, if Some(i) == d.worst { d.severity } else { Severity::Logged }, task);
    }
    let poison = d.poison.and_then(|p| ByteRange::from_len(p.start, p.len));
    match d.action {
        McAction::Log => McResolution::Resume,
        McAction::QueueActionOptional => {
            if let Some(r) = poison {
                let _ = ACTION_OPTIONAL.push(r);
            }
            McResolution::Resume
        }
        McAction::RecoverAtFixup => {
            if let Some(r) = poison {
                let _ = ACTION_REQUIRED.push(r);
            }
            McResolution::RecoverAtCopyFixup { poison: poison.map(|r| (r.start(), r.len())) }
        }
        McAction::KillTask => {
            let phys = poison.map_or(0, |r| r.start());
            if mc.from_user_mode() && crate::process::on_user_machine_check(mc.rip, poison.map(|r| r.start())) {
                // The process consumed poison: its return to user mode
                // (the hal runs that next) runs memory failure with it as
                // the consumer (SIGBUS BUS_MCEERR_AR at its address).
                crate::log::emergency(format_args!(
                    "machine check: process {task} ({}) consumed poisoned memory at {phys:#x} (RIP {:#x}): SIGBUS\n",
                    name.as_str(),
                    mc.rip
                ));
                return McResolution::Resume;
            }
            if let Some(r) = poison {
                let _ = ACTION_REQUIRED.push(r);
            }
            crate::log::emergency(format_args!(
                "machine check: task {task} ({}) killed: it consumed poisoned memory at {phys:#x} (RIP {:#x})\n",
                name.as_str(),
                mc.rip
            ));
            task::exit(ExitReason::MachineCheck { rip: mc.rip, phys })
        }
        McAction::Fatal => fatal_report(mc, d.rule, task, name.as_str()),
    }
}

fn fatal_report(mc: &MachineCheck, rule: &str, task: u64, name: &str) -> ! {
    use crate::log::emergency as e;
    e(format_args!("\nFATAL MACHINE CHECK: {rule}\n"));
    e(format_args!(
        "  RIP {:#x} (RIPV {} EIPV {}) RSP {:#x} RFLAGS {:#x}, task {task} ({name})\n",
        mc.rip,
        mc.mcg.ripv(),
        mc.mcg.eipv(),
        mc.rsp,
        mc.rflags
    ));
    e(format_args!("  MCG_STATUS {:#x}\n", mc.mcg.0));
    for b in mc.banks() {
        e(format_args!("  bank {}: STATUS {:#018x} ADDR {:#x} MISC {:#x}\n", b.bank, b.status.0, b.addr, b.misc.0));
    }
    fsdax_hal::power::exit_qemu(ExitCode::FatalMachineCheck)
}

fsdax_hal::shell_command!(MCE_CMD, name: "mce", usage: "mce",
    help: "machine-check bank setup and the machine checks seen",
    run: |_| {
        let Some(setup) = fsdax_hal::mce::setup() else {
            crate::kprintln!("machine checks: not enabled (this CPU has no machine-check architecture)");
            return;
        };
        let status = fsdax_hal::mce::mcg_status().map_or(0, |s| s.0);
        crate::kprintln!(
            "MCG_CAP {:#x}: {} banks, MCG_CTL {}, software error recovery {}; CR4.MCE on; MCG_STATUS {status:#x}",
            setup.cap.0,
            setup.banks,
            if setup.cap.ctl_p() { "present" } else { "absent" },
            if setup.ser { "yes" } else { "no" }
        );
        let seen = logged();
        crate::kprintln!(
            "{seen} machine check(s) logged; queued poison dropped (queue full): action required {}, action optional {}",
            ACTION_REQUIRED.dropped(),
            ACTION_OPTIONAL.dropped()
        );
        let first = seen.saturating_sub(LOG_SLOTS);
        for i in first..seen {
            let s = &LOG[i % LOG_SLOTS];
            let outcome = s.outcome.load(Ordering::Acquire);
            let severity = SEVERITIES.get((outcome & 0xff) as usize).copied().unwrap_or(Severity::Logged);
            crate::kprintln!(
                "  #{i}: bank {} STATUS {:#018x} ADDR {:#x} MISC {:#x} MCG {:#x} RIP {:#x} task {}: {}",
                s.bank.load(Ordering::Relaxed),
                s.status.load(Ordering::Relaxed),
                s.addr.load(Ordering::Relaxed),
                s.misc.load(Ordering::Relaxed),
                s.mcg.load(Ordering::Relaxed),
                s.rip.load(Ordering::Relaxed),
                outcome >> 8,
                severity_text(severity)
            );
        }
    }
);

/// In-kernel tests that stage a machine check in a bank and raise vector 18
/// with `int 0x12`, so the real entry and handler grade and act on it. QEMU
/// accepts software writes to the bank registers; real CPUs do not, so
/// these tests are skipped elsewhere.
mod tests {
    use fsdax_drivers::pmem::device::MfFlags;
    use fsdax_hal::mce::StagingUnsupported;
    use fsdax_ktest::{kassert, kassert_eq, kfail, kskip, ktest, Failure};

    use super::*;
    use crate::task::{self, ExitReason};

    const SRAR: u64 = 0xbd80_0000_0000_0134;
    const SRAO: u64 = 0xbd00_0000_0000_00c0;
    const CORRECTED: u64 = 0x9c00_0000_0000_0134; // VAL EN MISCV ADDRV, UC clear

    /// Stages the last bank and raises #MC.
    fn raise(status: u64, mcg: u64, addr: u64) -> Result<(), StagingUnsupported> {
        fsdax_hal::mce::raise_staged(status, mcg, addr, 0x86)
    }

    fn pmem_phys(offset: u64) -> Result<(&'static crate::pmem::Device, u64), Failure> {
        let d = crate::pmem::devices().first().ok_or(kfail!("no pmem"))?;
        Ok((d, d.phys_base() + offset))
    }

    /// Where these tests poison pmem0: 200 MiB in, clear of other tests.
    const D_OFFSET: u64 = 200 << 20;

    ktest!(machine_checks_are_enabled, {
        kassert!(fsdax_hal::mce::armed(), "MCA not armed (CR4.MCE and every bank's CTL)");
        Ok(())
    });

    ktest!(action_required_in_a_task_kills_only_that_task, {
        if !fsdax_hal::firmware::under_qemu() {
            kskip!("staging machine checks needs QEMU");
        }
        let (d, phys) = pmem_phys(D_OFFSET)?;
        let before = logged();
        let id = task::spawn("consumer", move || {
            let _ = raise(SRAR, 0x7, phys);
        })
        .map_err(|_| kfail!("spawn"))?;
        match task::join(id) {
            Some(ExitReason::MachineCheck { phys: p, .. }) => kassert_eq!(p, phys),
            _ => return Err(kfail!("the consuming task was not killed by its machine check")),
        }
        kassert_eq!(logged(), before + 1);
        crate::pmem::drain_machine_check_poison();
        kassert!(d.is_poisoned(D_OFFSET, 64), "the consumed poison was not recorded");
        d.recovery_write(D_OFFSET & !4095, &[0; 4096]).map_err(|_| kfail!("recovery write"))?;
        kassert!(!d.is_poisoned(D_OFFSET, 64));
        Ok(())
    });

    ktest!(action_optional_is_queued_and_the_task_goes_on, {
        if !fsdax_hal::firmware::under_qemu() {
            kskip!("staging machine checks needs QEMU");
        }
        let (d, phys) = pmem_phys(D_OFFSET + 8192)?;
        raise(SRAO, 0x5, phys).map_err(|_| kfail!("staging"))?;
        // We are still running: action optional does not stop anyone.
        kassert_eq!(crate::pmem::drain_machine_check_poison(), 1);
        kassert!(d.is_poisoned(D_OFFSET + 8192, 64));
        d.recovery_write((D_OFFSET + 8192) & !4095, &[0; 4096]).map_err(|_| kfail!("recovery write"))?;
        kassert!(matches!(
            crate::pmem::memory_failure(
                ByteRange::from_len(0x1000, 64).ok_or(kfail!("range"))?,
                MfFlags::ACTION_OPTIONAL
            ),
            crate::pmem::Failure::NotPmem
        ));
        Ok(())
    });

    ktest!(corrected_errors_are_only_logged, {
        if !fsdax_hal::firmware::under_qemu() {
            kskip!("staging machine checks needs QEMU");
        }
        let (_, phys) = pmem_phys(D_OFFSET + 16384)?;
        let before = logged();
        raise(CORRECTED, 0x5, phys).map_err(|_| kfail!("staging"))?;
        kassert_eq!(logged(), before + 1);
        kassert_eq!(crate::pmem::drain_machine_check_poison(), 0);
        let last = &LOG[before % LOG_SLOTS];
        kassert_eq!(
            last.outcome.load(Ordering::Relaxed) & 0xff,
            severity_code(Severity::Corrected),
            "graded corrected"
        );
        Ok(())
    });
}
