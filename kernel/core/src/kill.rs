//! The kill rule: may this task be ended now?
//!
//! One rule for every way a task can end other than returning: another task
//! asks (`kill`), the task reaches a safe point with a kill pending, or the
//! task itself fails (a CPU fault, a Rust panic, consumed poison).
//!
//! The facts that matter:
//! - **critical** tasks (the boot context running the console, the idle
//!   task) are the kernel itself: they are never killed; their failure is a
//!   kernel panic.
//! - a task that holds **sleeping locks** (mutexes, reader-writer locks
//!   whose waiters sleep) must not die mid-way: the data they protect would
//!   stay half-changed and locked forever. A kill waits (deferred) until the
//!   task holds none; a *failure* while holding one cannot wait, so it is a
//!   kernel panic with a clear report.
//! - a task that failed with **interrupts off** was inside a spin-lock
//!   critical section (every kernel spin lock disables interrupts): killing
//!   it would leave that lock held. Kernel panic.
//! - a task preempted by the timer or about to sleep holds no spin lock
//!   (interrupts were on / it is about to block) and is at a **safe point**.
//!   For processes, "returning to user mode" is one too: the kernel's
//!   exit-to-user hook ends a process with a fatal signal pending there,
//!   and process kills never use [`Moment::Requested`] (they are signals).

/// What the rule needs to know about the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFacts {
    /// The task is part of the kernel (boot context, idle).
    pub critical: bool,
    /// Sleeping locks the task holds.
    pub sleeping_locks: u32,
}

/// When the question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Someone asked to kill the task. `running`: it runs on a CPU now;
    /// `by_itself`: the task asked to kill itself.
    Requested {
        /// The target runs on a CPU right now.
        running: bool,
        /// The target is the requester.
        by_itself: bool,
    },
    /// The task is at a safe point (preempted by the timer with interrupts
    /// on, or about to sleep) with a kill pending.
    SafePoint,
    /// The task failed (fault, panic, consumed poison) where it runs.
    Failed {
        /// Interrupts were enabled where it failed.
        interrupts_were_on: bool,
    },
}

/// Why a failure is a kernel panic instead of the end of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicReason {
    /// The task is part of the kernel.
    CriticalTask,
    /// It failed with interrupts off (inside a spin-lock critical section,
    /// or an interrupt handler).
    InterruptsOff,
    /// It failed while holding this many sleeping locks.
    HoldsSleepingLocks(u32),
    /// The scheduler itself was busy (its lock was held).
    SchedulerBusy,
}

impl core::fmt::Display for PanicReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::CriticalTask => f.write_str("it is part of the kernel"),
            Self::InterruptsOff => f.write_str("it ran with interrupts off (inside a spin-lock critical section)"),
            Self::HoldsSleepingLocks(1) => f.write_str("it holds a sleeping lock"),
            Self::HoldsSleepingLocks(n) => write!(f, "it holds {n} sleeping locks"),
            Self::SchedulerBusy => f.write_str("it was inside the scheduler"),
        }
    }
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// End the task now.
    KillNow,
    /// Mark a kill pending; the task ends at its next safe point.
    Defer,
    /// Never (the task is critical): the request is refused.
    Refuse,
    /// The failure cannot be contained to the task: stop the kernel.
    Panic(PanicReason),
}

/// The kill rule.
pub fn verdict(task: TaskFacts, moment: Moment) -> Verdict {
    match moment {
        Moment::Failed { interrupts_were_on } => {
            if task.critical {
                Verdict::Panic(PanicReason::CriticalTask)
            } else if !interrupts_were_on {
                Verdict::Panic(PanicReason::InterruptsOff)
            } else if task.sleeping_locks > 0 {
                Verdict::Panic(PanicReason::HoldsSleepingLocks(task.sleeping_locks))
            } else {
                Verdict::KillNow
            }
        }
        Moment::Requested { running, by_itself } => {
            if task.critical {
                Verdict::Refuse
            } else if task.sleeping_locks > 0 || (running && !by_itself) {
                Verdict::Defer
            } else {
                Verdict::KillNow
            }
        }
        Moment::SafePoint => {
            if task.critical {
                Verdict::Refuse
            } else if task.sleeping_locks > 0 {
                Verdict::Defer
            } else {
                Verdict::KillNow
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: TaskFacts = TaskFacts { critical: false, sleeping_locks: 0 };
    const LOCKED: TaskFacts = TaskFacts { critical: false, sleeping_locks: 2 };
    const CRITICAL: TaskFacts = TaskFacts { critical: true, sleeping_locks: 0 };

    #[test]
    fn failures() {
        let on = Moment::Failed { interrupts_were_on: true };
        let off = Moment::Failed { interrupts_were_on: false };
        assert_eq!(verdict(PLAIN, on), Verdict::KillNow);
        assert_eq!(verdict(PLAIN, off), Verdict::Panic(PanicReason::InterruptsOff));
        assert_eq!(verdict(LOCKED, on), Verdict::Panic(PanicReason::HoldsSleepingLocks(2)));
        assert_eq!(verdict(CRITICAL, on), Verdict::Panic(PanicReason::CriticalTask));
        // Critical wins over everything else.
        assert_eq!(
            verdict(TaskFacts { critical: true, sleeping_locks: 3 }, off),
            Verdict::Panic(PanicReason::CriticalTask)
        );
    }

    #[test]
    fn requests() {
        let suspended = Moment::Requested { running: false, by_itself: false };
        let running_elsewhere = Moment::Requested { running: true, by_itself: false };
        let itself = Moment::Requested { running: true, by_itself: true };
        assert_eq!(verdict(PLAIN, suspended), Verdict::KillNow);
        assert_eq!(verdict(PLAIN, running_elsewhere), Verdict::Defer);
        assert_eq!(verdict(PLAIN, itself), Verdict::KillNow);
        assert_eq!(verdict(LOCKED, suspended), Verdict::Defer);
        assert_eq!(verdict(LOCKED, itself), Verdict::Defer);
        assert_eq!(verdict(CRITICAL, suspended), Verdict::Refuse);
        assert_eq!(verdict(CRITICAL, itself), Verdict::Refuse);
    }

    #[test]
    fn safe_points() {
        assert_eq!(verdict(PLAIN, Moment::SafePoint), Verdict::KillNow);
        assert_eq!(verdict(LOCKED, Moment::SafePoint), Verdict::Defer);
        assert_eq!(verdict(CRITICAL, Moment::SafePoint), Verdict::Refuse);
    }

    #[test]
    fn panic_reasons_read_as_sentences() {
        assert_eq!(PanicReason::HoldsSleepingLocks(1).to_string(), "it holds a sleeping lock");
        assert_eq!(PanicReason::HoldsSleepingLocks(3).to_string(), "it holds 3 sleeping locks");
    }
}
