//! The machine-check dispatch: what the kernel does about one #MC event.
//!
//! The hal reads (and clears) the banks; `fsdax_drivers::mce` grades each
//! bank with Linux's severity table; this module decides, from the worst
//! grade and where the #MC hit, one [`McAction`]:
//!
//! | severity (worst bank)                 | action |
//! |---------------------------------------|--------|
//! | no error, corrected, kept, logged     | [`McAction::Log`] |
//! | deferred (UCNA), action optional      | [`McAction::QueueActionOptional`]: poison queued for memory failure |
//! | action required at a machine-check-safe copy | [`McAction::RecoverAtFixup`]: the copy returns short (EIO) |
//! | action required in a task             | [`McAction::KillTask`]: that task consumed poison |
//! | fatal                                 | [`McAction::Fatal`] |
//!
//! Where the #MC hit decides the grading context: user mode; a
//! machine-check-safe copy (the exception table has the instruction); an
//! ordinary kernel task that may be killed (the kill rule says so: it then
//! counts like a user task, it consumed the poison and can die alone); or
//! other kernel code.

use fsdax_drivers::mce::{grade_event, BankRecord, InterruptedContext, McgStatus, PhysRange, Severity};

/// What to do about one #MC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McAction {
    /// Record it in the log; nothing else.
    Log,
    /// Queue the poisoned range for memory failure (action optional), then
    /// resume.
    QueueActionOptional,
    /// Queue the range (action required) and resume the interrupted
    /// machine-check-safe copy at its fixup: it returns short, the caller
    /// gets EIO.
    RecoverAtFixup,
    /// Queue the range (action required) and end the interrupted task: it
    /// consumed poison.
    KillTask,
    /// Stop the machine with a report.
    Fatal,
}

/// The action for a severity (the table above).
pub fn action_for(severity: Severity) -> McAction {
    match severity {
        Severity::NoError | Severity::Corrected | Severity::Keep | Severity::Logged => McAction::Log,
        Severity::Deferred | Severity::ActionOptional => McAction::QueueActionOptional,
        Severity::ActionRequiredKernelRecoverable => McAction::RecoverAtFixup,
        Severity::ActionRequiredTask { .. } => McAction::KillTask,
        Severity::Fatal { .. } => McAction::Fatal,
    }
}

/// Where the #MC interrupted execution, as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// In user mode (CPL 3).
    pub user_mode: bool,
    /// At a machine-check-safe copy instruction (exception table).
    pub at_mc_safe_copy: bool,
    /// In a kernel task the kill rule lets die for a failure.
    pub killable_task: bool,
}

impl Interrupted {
    /// The grading context.
    pub fn context(self) -> InterruptedContext {
        if self.user_mode {
            InterruptedContext::User
        } else if self.at_mc_safe_copy {
            InterruptedContext::Kernel { mc_safe: true }
        } else if self.killable_task {
            InterruptedContext::User
        } else {
            InterruptedContext::Kernel { mc_safe: false }
        }
    }
}

/// The decision for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McDecision {
    /// What to do.
    pub action: McAction,
    /// The worst bank's severity.
    pub severity: Severity,
    /// The name of the grading rule, for the report.
    pub rule: &'static str,
    /// Index (into the banks) of the worst bank, if any was valid.
    pub worst: Option<usize>,
    /// The poisoned physical range the worst bank names, if any.
    pub poison: Option<PhysRange>,
}

/// Grades the banks of one event and decides.
///
/// `ser`: the CPU supports software error recovery (MCG_SER_P); `mcg`:
/// MCG_STATUS at the #MC.
pub fn decide(ser: bool, mcg: McgStatus, banks: &[BankRecord], at: Interrupted) -> McDecision {
    let event = grade_event(ser, mcg, at.context(), banks);
    let severity = event.grade.severity;
    McDecision {
        action: action_for(severity),
        severity,
        rule: event.grade.rule,
        worst: event.worst,
        poison: event.worst.and_then(|w| banks.get(w)).and_then(BankRecord::poisoned_range),
    }
}

/// A short description of a severity, for the `mce` log.
pub fn severity_text(s: Severity) -> &'static str {
    match s {
        Severity::NoError => "no error",
        Severity::Corrected => "corrected",
        Severity::Deferred => "deferred (UCNA)",
        Severity::Keep => "kept",
        Severity::Logged => "logged",
        Severity::ActionOptional => "action optional",
        Severity::ActionRequiredTask { .. } => "action required in a task: task killed",
        Severity::ActionRequiredKernelRecoverable => "action required at a machine-check-safe copy: recovered",
        Severity::Fatal { .. } => "fatal",
    }
}

#[cfg(test)]
mod tests {
    use fsdax_drivers::mce::{FatalReason, MciMisc, MciStatus};

    use super::*;

    const SRAR: u64 = 0xbd80_0000_0000_0134;
    const SRAO: u64 = 0xbd00_0000_0000_00c0;
    const CORRECTED: u64 = 0x9c00_0000_0000_0134;
    const PCC: u64 = 0xb200_0000_0000_0134;
    const RIPV_EIPV_MCIP: u64 = 0x7;
    const RIPV_MCIP: u64 = 0x5;

    fn bank(status: u64) -> BankRecord {
        BankRecord { bank: 9, status: MciStatus(status), addr: 0x1_0020_0140, misc: MciMisc(0x86) }
    }

    const KERNEL: Interrupted = Interrupted { user_mode: false, at_mc_safe_copy: false, killable_task: false };
    const COPY: Interrupted = Interrupted { user_mode: false, at_mc_safe_copy: true, killable_task: false };
    const TASK: Interrupted = Interrupted { user_mode: false, at_mc_safe_copy: false, killable_task: true };
    const USER: Interrupted = Interrupted { user_mode: true, at_mc_safe_copy: false, killable_task: false };

    #[test]
    fn the_table() {
        assert_eq!(action_for(Severity::NoError), McAction::Log);
        assert_eq!(action_for(Severity::Corrected), McAction::Log);
        assert_eq!(action_for(Severity::Keep), McAction::Log);
        assert_eq!(action_for(Severity::Logged), McAction::Log);
        assert_eq!(action_for(Severity::Deferred), McAction::QueueActionOptional);
        assert_eq!(action_for(Severity::ActionOptional), McAction::QueueActionOptional);
        assert_eq!(action_for(Severity::ActionRequiredKernelRecoverable), McAction::RecoverAtFixup);
        assert_eq!(action_for(Severity::ActionRequiredTask { resumable: true }), McAction::KillTask);
        assert_eq!(action_for(Severity::ActionRequiredTask { resumable: false }), McAction::KillTask);
        assert_eq!(action_for(Severity::Fatal { reason: FatalReason::ProcessorContextCorrupt }), McAction::Fatal);
    }

    #[test]
    fn contexts() {
        assert_eq!(USER.context(), InterruptedContext::User);
        assert_eq!(TASK.context(), InterruptedContext::User);
        assert_eq!(COPY.context(), InterruptedContext::Kernel { mc_safe: true });
        assert_eq!(KERNEL.context(), InterruptedContext::Kernel { mc_safe: false });
        // A machine-check-safe copy inside a killable task recovers rather
        // than kills.
        let both = Interrupted { at_mc_safe_copy: true, ..TASK };
        assert_eq!(both.context(), InterruptedContext::Kernel { mc_safe: true });
    }

    #[test]
    fn action_required_depends_on_where() {
        let mcg = McgStatus(RIPV_EIPV_MCIP);
        let banks = [bank(SRAR)];
        let at_copy = decide(true, mcg, &banks, COPY);
        assert_eq!(at_copy.action, McAction::RecoverAtFixup);
        assert_eq!(at_copy.poison, Some(PhysRange { start: 0x1_0020_0140, len: 64 }));
        assert_eq!(at_copy.worst, Some(0));
        assert_eq!(decide(true, mcg, &banks, TASK).action, McAction::KillTask);
        assert_eq!(decide(true, mcg, &banks, USER).action, McAction::KillTask);
        assert_eq!(decide(true, mcg, &banks, KERNEL).action, McAction::Fatal);
        // Without EIPV the error is not this instruction's (another thread's
        // action-required event, which this CPU can continue past): kept and
        // logged, as Linux does.
        assert_eq!(decide(true, McgStatus(RIPV_MCIP), &banks, COPY).severity, Severity::Keep);
        assert_eq!(decide(true, McgStatus(RIPV_MCIP), &banks, KERNEL).action, McAction::Log);
    }

    #[test]
    fn optional_corrected_and_fatal() {
        let mcg = McgStatus(RIPV_MCIP);
        assert_eq!(decide(true, mcg, &[bank(SRAO)], KERNEL).action, McAction::QueueActionOptional);
        assert_eq!(decide(true, mcg, &[bank(SRAO)], KERNEL).poison.map(|p| p.start), Some(0x1_0020_0140));
        assert_eq!(decide(true, mcg, &[bank(CORRECTED)], KERNEL).action, McAction::Log);
        assert_eq!(decide(true, mcg, &[bank(PCC)], TASK).action, McAction::Fatal);
        assert_eq!(decide(true, mcg, &[], KERNEL).action, McAction::Log, "no valid bank");
        // The worst bank wins.
        let d = decide(true, McgStatus(RIPV_EIPV_MCIP), &[bank(CORRECTED), bank(SRAR)], COPY);
        assert_eq!((d.action, d.worst), (McAction::RecoverAtFixup, Some(1)));
    }
}
