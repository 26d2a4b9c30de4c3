//! Machine checks: bank setup, the #MC entry, and the registered handler.
//!
//! The entry runs on its own IST stack, at whatever instruction the CPU was
//! executing. It reads `MCG_STATUS` and every valid bank into a
//! [`MachineCheck`] on its stack, clears the banks and then `MCG_STATUS`
//! (a second #MC while MCIP is set shuts the CPU down), and hands the record
//! to the kernel's handler ([`register_handler`]), which grades it and
//! decides. The handler either returns a [`McResolution`] or does not return
//! (it ends the interrupted task, or stops the machine). For
//! [`McResolution::RecoverAtCopyFixup`] the hal checks that the interrupted
//! instruction is a machine-check-safe copy's, writes the poisoned range
//! into that copy's record and resumes at its fixup; the copy returns short
//! with the range (see [`crate::copy`]).
//!
//! Nothing on this path takes a lock or allocates before the handler runs.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

pub use fsdax_drivers::mce::{BankRecord, McgCap, McgStatus, MciMisc, MciStatus};
use fsdax_ktest::protocol::ExitCode;
use x86_64::registers::control::{Cr4, Cr4Flags};

use crate::arch::cpu::{Features, RFLAGS_IF};
use crate::arch::entry::TrapFrame;
use crate::arch::msr::{self, mci_addr, mci_ctl, mci_misc, mci_status, IA32_MCG_CAP, IA32_MCG_CTL, IA32_MCG_STATUS};
use crate::trap::AlreadyRegistered;

/// The most banks the handler reads.
pub const MAX_BANKS: usize = 32;
static BANKS: AtomicU8 = AtomicU8::new(0);
static SER: AtomicBool = AtomicBool::new(false);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Machine-check architecture setup, for the boot log and `mce`.
#[derive(Debug, Clone, Copy)]
pub struct McaSetup {
    /// `IA32_MCG_CAP`.
    pub cap: McgCap,
    /// Banks in use.
    pub banks: u8,
    /// Software error recovery (MCG_SER_P).
    pub ser: bool,
}

/// Enables machine checks: every bank's CTL to all ones, stale status
/// cleared, `MCG_CTL` (if present) to all ones, then `CR4.MCE`. Without
/// `CR4.MCE` QEMU turns an injected #MC into a triple fault; with `MCi_CTL`
/// zero the injection is dropped.
pub(crate) fn init(features: &Features) -> Option<McaSetup> {
    if !features.mca {
        return None;
    }
    // SAFETY: CPUID reports MCA, so IA32_MCG_CAP exists; reading it has no
    // side effect.
    let cap = McgCap(unsafe { msr::read(IA32_MCG_CAP) });
    let banks = cap.bank_count().min(MAX_BANKS as u8);
    // SAFETY: MCG_CTL exists when MCG_CTL_P is set, and MCi_CTL/MCi_STATUS
    // for every bank MCG_CAP counts; all ones enables every error source,
    // zero is always a valid status, and CR4.MCE only enables delivery of
    // #MC, whose IDT entry is installed (`idt::init` ran before).
    unsafe {
        if cap.ctl_p() {
            msr::write(IA32_MCG_CTL, u64::MAX);
        }
        for i in 0..banks {
            msr::write(mci_ctl(i), u64::MAX);
            msr::write(mci_status(i), 0);
        }
        Cr4::update(|c| c.insert(Cr4Flags::MACHINE_CHECK_EXCEPTION));
    }
    BANKS.store(banks, Ordering::Relaxed);
    SER.store(cap.ser_p(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Release);
    Some(McaSetup { cap, banks, ser: cap.ser_p() })
}

/// The setup, if machine checks are enabled.
pub fn setup() -> Option<McaSetup> {
    if !ENABLED.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: ENABLED means MCA is present, so IA32_MCG_CAP exists.
    let cap = McgCap(unsafe { msr::read(IA32_MCG_CAP) });
    Some(McaSetup { cap, banks: BANKS.load(Ordering::Relaxed), ser: SER.load(Ordering::Relaxed) })
}

/// `IA32_MCG_STATUS` now (None without MCA).
pub fn mcg_status() -> Option<McgStatus> {
    // SAFETY: ENABLED means MCA is present, so IA32_MCG_STATUS exists.
    ENABLED.load(Ordering::Acquire).then(|| McgStatus(unsafe { msr::read(IA32_MCG_STATUS) }))
}

/// Whether machine checks are armed: CR4.MCE set and every bank's CTL all
/// ones.
pub fn armed() -> bool {
    let Some(s) = setup() else { return false };
    // SAFETY: bank `i` < the count MCG_CAP reports, so MCi_CTL exists.
    let ctls = (0..s.banks).all(|i| unsafe { msr::read(mci_ctl(i)) } == u64::MAX);
    ctls && s.banks > 0 && Cr4::read().contains(Cr4Flags::MACHINE_CHECK_EXCEPTION)
}

/// One machine-check event as the hal read it (the banks are already
/// cleared when the handler sees this).
#[derive(Debug, Clone, Copy)]
pub struct MachineCheck {
    /// `IA32_MCG_STATUS` at entry.
    pub mcg: McgStatus,
    banks: [BankRecord; MAX_BANKS],
    count: usize,
    /// Where the #MC hit.
    pub rip: u64,
    /// The interrupted stack pointer.
    pub rsp: u64,
    /// The interrupted RFLAGS.
    pub rflags: u64,
    /// The interrupted code segment.
    pub cs: u64,
    /// The interrupted instruction is a machine-check-safe copy's (it has an
    /// exception-table fixup).
    pub at_mc_safe_copy: bool,
    /// Software error recovery is supported (MCG_SER_P).
    pub ser: bool,
}

impl MachineCheck {
    /// The valid banks.
    pub fn banks(&self) -> &[BankRecord] {
        &self.banks[..self.count]
    }

    /// Were interrupts enabled in the interrupted code?
    pub fn interrupts_were_enabled(&self) -> bool {
        self.rflags & RFLAGS_IF != 0
    }

    /// Did the #MC interrupt user mode (CPL 3)?
    pub fn from_user_mode(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// What the hal does after the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McResolution {
    /// Resume the interrupted code where it was.
    Resume,
    /// The interrupted machine-check-safe copy consumed poison: resume at
    /// its fixup, reporting `poison` (physical start and length) to it.
    RecoverAtCopyFixup {
        /// The poisoned physical range the banks named, if any.
        poison: Option<(u64, u64)>,
    },
}

/// The kernel's machine-check handler.
pub type McHandler = fn(&MachineCheck) -> McResolution;

static HANDLER: spin::Once<McHandler> = spin::Once::new();

/// Registers the machine-check handler (once).
pub fn register_handler(h: McHandler) -> Result<(), AlreadyRegistered> {
    crate::trap::register_once(&HANDLER, h)
}

/// Reads MCG_STATUS and the valid banks, then clears them.
fn read_and_clear(frame: &TrapFrame) -> MachineCheck {
    // SAFETY: this entry is reachable only with CR4.MCE set, which `init`
    // sets after checking MCA; reading MCG_STATUS has no side effect.
    let mcg = McgStatus(unsafe { msr::read(IA32_MCG_STATUS) });
    let nbanks = BANKS.load(Ordering::Relaxed);
    let mut banks = [BankRecord { bank: 0, status: MciStatus(0), addr: 0, misc: MciMisc(0) }; MAX_BANKS];
    let mut count = 0;
    for i in 0..nbanks {
        // SAFETY: bank `i` < the count MCG_CAP reported; reading a status has
        // no side effect.
        let status = MciStatus(unsafe { msr::read(mci_status(i)) });
        if !status.val() {
            continue;
        }
        // SAFETY: MCi_ADDR exists for every bank; it holds an address when
        // ADDRV says so, and reading it has no side effect.
        let addr = if status.addrv() { unsafe { msr::read(mci_addr(i)) } } else { 0 };
        // SAFETY: as for MCi_ADDR, with MISCV.
        let misc = if status.miscv() { unsafe { msr::read(mci_misc(i)) } } else { 0 };
        banks[count] = BankRecord { bank: i, status, addr, misc: MciMisc(misc) };
        count += 1;
    }
    for b in &banks[..count] {
        // SAFETY: writing zero to a reported bank's status is always valid;
        // it frees the bank for the next error.
        unsafe { msr::write(mci_status(b.bank), 0) };
    }
    // SAFETY: clearing MCG_STATUS (MCIP) ends this machine check; the record
    // above keeps what it said.
    unsafe { msr::write(IA32_MCG_STATUS, 0) };
    let rip = frame.rip;
    MachineCheck {
        mcg,
        banks,
        count,
        rip,
        rsp: frame.rsp,
        rflags: frame.rflags,
        cs: frame.cs,
        at_mc_safe_copy: crate::copy::mc_fixup(rip).is_some(),
        ser: SER.load(Ordering::Relaxed),
    }
}

fn fatal(mc: &MachineCheck, why: &str) -> ! {
    crate::console::emergency(format_args!(
        "\nFATAL MACHINE CHECK: {why}\n  RIP {:#x} RSP {:#x} RFLAGS {:#x} MCG_STATUS {:#x}\n",
        mc.rip, mc.rsp, mc.rflags, mc.mcg.0
    ));
    for b in mc.banks() {
        crate::console::emergency(format_args!(
            "  bank {}: STATUS {:#018x} ADDR {:#x} MISC {:#x}\n",
            b.bank, b.status.0, b.addr, b.misc.0
        ));
    }
    crate::power::exit_qemu(ExitCode::FatalMachineCheck)
}

/// A machine check in kernel mode, on its IST stack (called by the #MC
/// entry of [`crate::arch::entry`]).
pub(crate) extern "C" fn dispatch_kernel_mode(frame: &mut TrapFrame) {
    let mc = read_and_clear(frame);
    let Some(handler) = HANDLER.get() else { fatal(&mc, "machine check before the kernel registered a handler") };
    match handler(&mc) {
        McResolution::Resume => {}
        McResolution::RecoverAtCopyFixup { poison } => {
            let Some(fixup) = crate::copy::mc_fixup(mc.rip) else {
                fatal(&mc, "recovery asked for, but the interrupted instruction is not a machine-check-safe copy")
            };
            let (start, len) = poison.unwrap_or((0, 0));
            // SAFETY: `mc_fixup(rip)` found an entry, so the interrupted code
            // is a string move of `fsdax_copy_mc`, with its record's address
            // at [rsp] (the routine's contract).
            unsafe { crate::copy::record_stop(mc.rsp, start, len) };
            // The fixup belongs to the interrupted instruction: same
            // function, same stack layout; it returns the bytes not copied.
            frame.rip = fixup;
        }
    }
}

/// A machine check that interrupted user mode, moved by its entry onto the
/// task's kernel stack (interrupts off). The kernel's handler records it and
/// marks the process; the exit to user mode that follows acts on the mark.
pub(crate) fn dispatch_user_mode(frame: &mut TrapFrame) {
    let mc = read_and_clear(frame);
    let Some(handler) = HANDLER.get() else { fatal(&mc, "machine check before the kernel registered a handler") };
    if let McResolution::RecoverAtCopyFixup { .. } = handler(&mc) {
        fatal(&mc, "recovery at a copy fixup asked for a machine check in user mode");
    }
}

/// Why [`raise_staged`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingUnsupported {
    /// Not QEMU: real CPUs reject software writes to the bank registers.
    NotQemu,
    /// No machine-check architecture.
    NoMca,
}

/// Stages a machine-check record in the last bank and raises vector 18
/// (`int 0x12`), so the real entry and handler process it, as tests need.
/// QEMU accepts software writes to `MCi_STATUS/ADDR/MISC` and `MCG_STATUS`;
/// real CPUs do not, so this refuses anywhere but QEMU.
pub fn raise_staged(status: u64, mcg: u64, addr: u64, misc: u64) -> Result<(), StagingUnsupported> {
    let Some(s) = setup() else { return Err(StagingUnsupported::NoMca) };
    if !crate::firmware::under_qemu() || s.banks == 0 {
        return Err(StagingUnsupported::NotQemu);
    }
    let bank = s.banks - 1;
    // SAFETY: under QEMU, with MCA enabled: the bank exists and QEMU stores
    // these values as if the hardware had logged them; `int 0x12` enters the
    // #MC entry through its IDT gate, which reads and clears them.
    unsafe {
        msr::write(mci_addr(bank), addr);
        msr::write(mci_misc(bank), misc);
        msr::write(mci_status(bank), status);
        msr::write(IA32_MCG_STATUS, mcg);
        core::arch::asm!("int 0x12");
    }
    Ok(())
}
