//! Severity grading of machine-check bank records.
//!
//! [`RULES`] is an ordered table, modelled on Linux's `severities[]`
//! (`arch/x86/kernel/cpu/mce/severity.c`): the first rule whose conditions
//! all hold decides. A rule tests bits of `IA32_MCi_STATUS` (under a mask),
//! bits of `IA32_MCG_STATUS`, the interrupted context, and whether the CPU
//! supports software error recovery (`MCG_CAP.SER_P`).
//!
//! Differences from Linux, on purpose:
//! - A corrected error (UC=0) is [`Severity::Corrected`] on every CPU.
//! - An uncorrected error on a CPU without SER is fatal even in user mode:
//!   without SER the hardware promises no containment.
//! - A kernel context is either ordinary or machine-check safe (the RIP has
//!   an exception-table entry tagged machine-check safe). As in Linux's
//!   `error_context()`, a safe site counts only if RIPV and EIPV are both
//!   set; only a data load at such a site is recoverable in the kernel.
//! - The Skylake patrol-scrub CMCI quirk and the TDX (SEAM) rows are left
//!   out: neither exists under QEMU, and both need model/bank inputs.
#![forbid(unsafe_code)]

use super::registers::{BankRecord, McaCode, McgStatus, MciStatus};

/// Where the `#MC` interrupted execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptedContext {
    /// A task in user mode (CPL 3).
    User,
    /// Kernel mode.
    Kernel {
        /// The RIP is at an exception-table entry tagged machine-check safe
        /// (e.g. a load in the machine-check-safe copy). Grading honours it
        /// only when MCG_STATUS has both RIPV and EIPV; otherwise the RIP
        /// says nothing reliable and the context counts as ordinary.
        mc_safe: bool,
    },
}

/// Why an event is fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalReason {
    /// PCC: the processor context is corrupt.
    ProcessorContextCorrupt,
    /// MCG_STATUS.MCIP is clear inside the `#MC` handler.
    McipNotSet,
    /// Neither RIPV nor EIPV: no way to know where or how to resume.
    NeitherRestartNorErrorIp,
    /// In the kernel without RIPV: the kernel cannot be resumed.
    KernelNoRestartIp,
    /// UC without S but with AR: an illegal combination.
    IllegalUcnaWithAr,
    /// Action required, but an earlier error was lost (OVER).
    ActionRequiredWithLostEvents,
    /// Data load consumed poison in ordinary kernel code.
    DataLoadInKernel,
    /// Instruction fetch consumed poison in the kernel.
    InstructionFetchInKernel,
    /// Action required with an unknown error code or without an address.
    UnknownActionRequired,
    /// Uncorrected error with overflow.
    OverflowedUncorrected,
    /// Uncorrected error in the kernel (CPU without SER).
    UncorrectedInKernel,
    /// Uncorrected error on a CPU without SER.
    UncorrectedWithoutSer,
}

/// What to do about one bank's record, mildest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Nothing valid or nothing enabled.
    NoError,
    /// The hardware corrected the error (UC=0): count and log it.
    Corrected,
    /// UCNA (UC, !S, !AR): uncorrected, not signalled, nobody consumed it
    /// yet. Poison the address from normal context.
    Deferred,
    /// Not this CPU's to act on (not signalled here, or an action-required
    /// error of another thread that can continue): leave the bank alone.
    Keep,
    /// Action optional with no known action (unknown code or lost events):
    /// log only.
    Logged,
    /// SRAO (UC, !AR, memory scrub or cache write-back): the address is
    /// poisoned but nothing consumed it. Poison it from normal context.
    ActionOptional,
    /// SRAR in a user task: the task consumed poison. Unmap the page and
    /// signal the task (`BUS_MCEERR_AR`); if `!resumable` (RIPV clear) the
    /// task cannot return to the faulting instruction and must be killed.
    ActionRequiredTask {
        /// MCG_STATUS.RIPV: the task can be resumed.
        resumable: bool,
    },
    /// SRAR in the kernel at a machine-check-safe site with RIPV: jump to
    /// the fixup (the copy reports the bytes it did not copy).
    ActionRequiredKernelRecoverable,
    /// Stop the machine.
    Fatal {
        /// Why.
        reason: FatalReason,
    },
}

impl Severity {
    /// A total order for picking the worst of several banks.
    pub const fn rank(self) -> u8 {
        match self {
            Self::NoError => 0,
            Self::Corrected => 1,
            Self::Deferred => 2,
            Self::Keep => 3,
            Self::Logged => 4,
            Self::ActionOptional => 5,
            Self::ActionRequiredKernelRecoverable => 6,
            Self::ActionRequiredTask { resumable: true } => 6,
            Self::ActionRequiredTask { resumable: false } => 7,
            Self::Fatal { .. } => 8,
        }
    }

    /// Whether the machine must stop.
    pub const fn is_fatal(self) -> bool {
        matches!(self, Self::Fatal { .. })
    }
}

/// Which interrupted contexts a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextFilter {
    /// Any context.
    Any,
    /// User mode only.
    User,
    /// Kernel mode, safe or not.
    Kernel,
    /// Kernel mode at a machine-check-safe site.
    KernelMcSafe,
    /// Kernel mode at an ordinary site.
    KernelOrdinary,
}

impl ContextFilter {
    const fn admits(self, ctx: InterruptedContext) -> bool {
        match (self, ctx) {
            (Self::Any, _) => true,
            (Self::User, InterruptedContext::User) => true,
            (Self::Kernel, InterruptedContext::Kernel { .. }) => true,
            (Self::KernelMcSafe, InterruptedContext::Kernel { mc_safe }) => mc_safe,
            (Self::KernelOrdinary, InterruptedContext::Kernel { mc_safe }) => !mc_safe,
            _ => false,
        }
    }
}

/// Which CPUs a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerFilter {
    /// All CPUs.
    Any,
    /// CPUs with software error recovery (MCG_CAP.SER_P).
    Ser,
    /// CPUs without.
    NoSer,
}

/// One row of the grading table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Human-readable name, for the log.
    pub name: &'static str,
    /// The result if the rule matches.
    pub severity: Severity,
    /// `status & status_mask == status_value` must hold.
    pub status_mask: u64,
    /// See `status_mask`.
    pub status_value: u64,
    /// `mcg & mcg_mask == mcg_value` must hold.
    pub mcg_mask: u64,
    /// See `mcg_mask`.
    pub mcg_value: u64,
    /// Contexts the rule applies to.
    pub context: ContextFilter,
    /// CPUs the rule applies to.
    pub ser: SerFilter,
}

const VAL: u64 = MciStatus::VAL;
const OVER: u64 = MciStatus::OVER;
const UC: u64 = MciStatus::UC;
const EN: u64 = MciStatus::EN;
const PCC: u64 = MciStatus::PCC;
const S: u64 = MciStatus::S;
const AR: u64 = MciStatus::AR;
const UC_S: u64 = UC | S;
const UC_SAR: u64 = UC | S | AR;
const ADDR: u64 = MciStatus::ADDRV | MciStatus::MISCV;
/// The MCA code without the filter bit.
const CODE: u64 = 0xEFFF;
/// The MCA code without the filter bit and the channel nibble.
const CODE_NO_CHANNEL: u64 = 0xEFF0;
const RIPV: u64 = McgStatus::RIPV;
const EIPV: u64 = McgStatus::EIPV;
const MCIP: u64 = McgStatus::MCIP;

const fn rule(name: &'static str, severity: Severity, mask: u64, value: u64) -> Rule {
    Rule {
        name,
        severity,
        status_mask: mask,
        status_value: value,
        mcg_mask: 0,
        mcg_value: 0,
        context: ContextFilter::Any,
        ser: SerFilter::Any,
    }
}

impl Rule {
    const fn mcg(mut self, mask: u64, value: u64) -> Self {
        self.mcg_mask = mask;
        self.mcg_value = value;
        self
    }
    const fn ctx(mut self, context: ContextFilter) -> Self {
        self.context = context;
        self
    }
    const fn ser(mut self) -> Self {
        self.ser = SerFilter::Ser;
        self
    }
    const fn no_ser(mut self) -> Self {
        self.ser = SerFilter::NoSer;
        self
    }

    /// Whether the rule applies.
    pub const fn matches(&self, ser: bool, mcg: McgStatus, status: MciStatus, ctx: InterruptedContext) -> bool {
        let ser_ok = match self.ser {
            SerFilter::Any => true,
            SerFilter::Ser => ser,
            SerFilter::NoSer => !ser,
        };
        ser_ok
            && status.0 & self.status_mask == self.status_value
            && mcg.0 & self.mcg_mask == self.mcg_value
            && self.context.admits(ctx)
    }
}

const fn fatal(reason: FatalReason) -> Severity {
    Severity::Fatal { reason }
}

/// The grading table, first match wins.
pub const RULES: &[Rule] = &[
    rule("Invalid", Severity::NoError, VAL, 0),
    rule("Not enabled", Severity::NoError, EN, 0),
    rule("Processor context corrupt", fatal(FatalReason::ProcessorContextCorrupt), PCC, PCC),
    rule("MCIP not set in #MC handler", fatal(FatalReason::McipNotSet), 0, 0).mcg(MCIP, 0),
    rule("Neither restart nor error IP", fatal(FatalReason::NeitherRestartNorErrorIp), 0, 0).mcg(RIPV | EIPV, 0),
    rule("In kernel and no restart IP", fatal(FatalReason::KernelNoRestartIp), 0, 0)
        .mcg(RIPV, 0)
        .ctx(ContextFilter::Kernel),
    rule("Corrected error", Severity::Corrected, UC, 0),
    // --- CPUs with software error recovery ---
    // Known action-optional codes. As in Linux, S is not tested (SRAO may
    // also be reported through CMCI with S=0) and OVER is ignored: the
    // address of the latest error is still poisoned.
    rule(
        "Action optional: memory scrubbing error",
        Severity::ActionOptional,
        UC | AR | CODE_NO_CHANNEL,
        UC | McaCode::MEMORY_SCRUB as u64,
    )
    .ser(),
    rule(
        "Action optional: last-level cache write-back error",
        Severity::ActionOptional,
        UC | AR | CODE,
        UC | McaCode::L3_WRITEBACK as u64,
    )
    .ser(),
    rule("Uncorrected no action required (UCNA)", Severity::Deferred, UC_SAR, UC).ser(),
    rule("Illegal combination (UCNA with AR)", fatal(FatalReason::IllegalUcnaWithAr), OVER | UC_SAR, UC | AR).ser(),
    rule("Non-signalled machine check", Severity::Keep, S, 0).ser(),
    rule(
        "Action required with lost events",
        fatal(FatalReason::ActionRequiredWithLostEvents),
        OVER | UC_SAR,
        OVER | UC_SAR,
    )
    .ser(),
    rule(
        "Action required, but this thread is unaffected and can continue",
        Severity::Keep,
        OVER | UC_SAR | ADDR,
        UC_SAR | ADDR,
    )
    .mcg(RIPV | EIPV, RIPV)
    .ser(),
    rule(
        "Action required: data load at a machine-check-safe kernel site",
        Severity::ActionRequiredKernelRecoverable,
        OVER | UC_SAR | ADDR | CODE,
        UC_SAR | ADDR | McaCode::DATA_LOAD as u64,
    )
    .ctx(ContextFilter::KernelMcSafe)
    .ser(),
    rule(
        "Action required: data load in a user task",
        Severity::ActionRequiredTask { resumable: true },
        OVER | UC_SAR | ADDR | CODE,
        UC_SAR | ADDR | McaCode::DATA_LOAD as u64,
    )
    .ctx(ContextFilter::User)
    .ser(),
    rule(
        "Action required: instruction fetch in a user task",
        Severity::ActionRequiredTask { resumable: true },
        OVER | UC_SAR | ADDR | CODE,
        UC_SAR | ADDR | McaCode::INSTRUCTION_FETCH as u64,
    )
    .ctx(ContextFilter::User)
    .ser(),
    rule(
        "Data load in ordinary kernel code",
        fatal(FatalReason::DataLoadInKernel),
        OVER | UC_SAR | CODE,
        UC_SAR | McaCode::DATA_LOAD as u64,
    )
    .ctx(ContextFilter::KernelOrdinary)
    .ser(),
    rule(
        "Instruction fetch in the kernel",
        fatal(FatalReason::InstructionFetchInKernel),
        OVER | UC_SAR | CODE,
        UC_SAR | McaCode::INSTRUCTION_FETCH as u64,
    )
    .ctx(ContextFilter::Kernel)
    .ser(),
    rule(
        "Action required: unknown MCA code or no address",
        fatal(FatalReason::UnknownActionRequired),
        OVER | UC_SAR,
        UC_SAR,
    )
    .ser(),
    rule("Action optional: unknown MCA code", Severity::Logged, OVER | UC_SAR, UC_S).ser(),
    rule("Action optional with lost events", Severity::Logged, OVER | UC_SAR, OVER | UC_S).ser(),
    // --- everything left is uncorrected; with SER it was matched above ---
    rule("Overflowed uncorrected", fatal(FatalReason::OverflowedUncorrected), OVER | UC, OVER | UC),
    rule("Uncorrected in the kernel", fatal(FatalReason::UncorrectedInKernel), UC, UC).ctx(ContextFilter::Kernel),
    rule("Uncorrected without SER", fatal(FatalReason::UncorrectedWithoutSer), UC, UC).no_ser(),
];

/// The fallback if no rule matches (the table is total, so this is only
/// reached if it is edited badly).
const NO_MATCH: Grade = Grade { severity: Severity::Logged, rule: "No match" };

/// A severity and the name of the rule that gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grade {
    /// The severity.
    pub severity: Severity,
    /// The rule's name, for the log.
    pub rule: &'static str,
}

/// Grades one bank's status.
///
/// `ser` is `McgCap::ser_p()`; `mcg` is `IA32_MCG_STATUS` at the `#MC`.
pub fn grade_bank(ser: bool, mcg: McgStatus, status: MciStatus, ctx: InterruptedContext) -> Grade {
    // The exception table can only be trusted if the saved RIP is both the
    // faulting instruction (EIPV) and the place to resume (RIPV).
    let ctx = match ctx {
        InterruptedContext::Kernel { mc_safe: true } if !(mcg.ripv() && mcg.eipv()) => {
            InterruptedContext::Kernel { mc_safe: false }
        }
        other => other,
    };
    let Some(rule) = RULES.iter().find(|r| r.matches(ser, mcg, status, ctx)) else {
        return NO_MATCH;
    };
    let severity = match rule.severity {
        Severity::ActionRequiredTask { .. } => Severity::ActionRequiredTask { resumable: mcg.ripv() },
        other => other,
    };
    Grade { severity, rule: rule.name }
}

/// The worst grade among the banks of one `#MC` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventGrade {
    /// The worst grade (`NoError` if no bank holds anything).
    pub grade: Grade,
    /// Index into the `banks` slice of the bank that gave it (the first
    /// one on a tie), or `None` if no bank holds a valid error.
    pub worst: Option<usize>,
}

/// Grades every bank and returns the worst.
pub fn grade_event(ser: bool, mcg: McgStatus, ctx: InterruptedContext, banks: &[BankRecord]) -> EventGrade {
    let mut out = EventGrade { grade: Grade { severity: Severity::NoError, rule: "No valid bank" }, worst: None };
    for (i, bank) in banks.iter().enumerate() {
        if !bank.status.val() {
            continue;
        }
        let g = grade_bank(ser, mcg, bank.status, ctx);
        if out.worst.is_none() || g.severity.rank() > out.grade.severity.rank() {
            out = EventGrade { grade: g, worst: Some(i) };
        }
    }
    out
}
