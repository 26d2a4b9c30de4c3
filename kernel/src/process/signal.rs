//! A process's signal state: the actions (`rt_sigaction`), the blocked
//! mask (`rt_sigprocmask`), the alternate stack (`sigaltstack`) and the
//! pending set, and the decision taken at every return to user mode.
//!
//! Delivery to handlers (the `rt_sigframe`, `rt_sigreturn`) is not here
//! yet: until it is, a signal whose action is a handler takes its default
//! action, and a signal raised by a fault always does (Linux's
//! `force_sig`, which also ignores blocking). `SIG_IGN` and default-ignore
//! signals are discarded. `kill`/`tgkill` from processes come with
//! delivery; the console's `kill` and faults raise signals today.

use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_abi::signal::{self, bit, default_action, next_deliverable, Action, AltStack, DefaultAction, Exit, SigSet};

/// Actions, mask and alternate stack (under the process's lock).
#[derive(Debug, Clone)]
pub struct SignalState {
    /// `actions[sig - 1]`.
    pub actions: [Action; signal::NSIG as usize],
    /// Blocked signals.
    pub blocked: SigSet,
    /// The alternate signal stack.
    pub altstack: AltStack,
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState {
            actions: [Action::default(); signal::NSIG as usize],
            blocked: 0,
            altstack: AltStack { sp: 0, size: 0, disabled: true },
        }
    }
}

impl SignalState {
    /// `execve`: handled signals go back to their default action (a
    /// handler's address means nothing in the new program); ignored ones
    /// stay ignored; the mask stays; the alternate stack is dropped.
    pub fn reset_for_exec(&mut self) {
        for a in &mut self.actions {
            if a.handler != signal::SIG_IGN {
                *a = Action::default();
            }
        }
        self.altstack = AltStack { sp: 0, size: 0, disabled: true };
    }

    /// The action of `sig`.
    pub fn action(&self, sig: u32) -> Action {
        self.actions.get(sig as usize - 1).copied().unwrap_or_default()
    }
}

/// What the pending set says at a return to user mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Continue,
    /// The process ends, killed by this signal.
    Die(Exit),
}

/// Pending signals: a lock-free set (the #MC handler and other tasks raise
/// signals), and the fatal signal a fault forced, if any.
#[derive(Debug, Default)]
pub struct Pending {
    set: AtomicU64,
    forced: AtomicU64,
}

impl Pending {
    /// Raises `sig`.
    pub fn raise(&self, sig: u32) {
        self.set.fetch_or(bit(sig), Ordering::AcqRel);
    }

    /// Raises `sig` so that it kills whatever the action and mask (a fault
    /// the process cannot continue from).
    pub fn force(&self, sig: u32) {
        let _ = self.forced.compare_exchange(0, u64::from(sig), Ordering::AcqRel, Ordering::Acquire);
        self.raise(sig);
    }

    /// Whether anything is pending.
    pub fn any(&self) -> bool {
        self.set.load(Ordering::Acquire) != 0
    }

    /// Whether a signal that will end the process is pending (for
    /// interruptible sleeps: they return EINTR and the return to user mode
    /// ends the process).
    pub fn fatal(&self, state: &SignalState) -> bool {
        self.peek_verdict(state) != Verdict::Continue
    }

    fn peek_verdict(&self, state: &SignalState) -> Verdict {
        let forced = self.forced.load(Ordering::Acquire);
        if forced != 0 {
            return Verdict::Die(Exit::Signal(forced as u32));
        }
        let mut pending = self.set.load(Ordering::Acquire);
        while let Some(sig) = next_deliverable(pending, state.blocked) {
            pending &= !bit(sig);
            if takes_default_kill(state, sig) {
                return Verdict::Die(Exit::Signal(sig));
            }
        }
        Verdict::Continue
    }

    /// At a return to user mode: discards what is ignored and says whether
    /// the process dies.
    pub fn decide(&self, state: &SignalState) -> Verdict {
        let v = self.peek_verdict(state);
        if v == Verdict::Continue {
            // Every deliverable signal is ignored (or handled, which is not
            // possible yet and so takes the default: see `takes_default_kill`).
            let mut pending = self.set.load(Ordering::Acquire);
            while let Some(sig) = next_deliverable(pending, state.blocked) {
                pending &= !bit(sig);
                self.set.fetch_and(!bit(sig), Ordering::AcqRel);
            }
        }
        v
    }
}

/// Whether `sig`, delivered now, ends the process: its default action is to
/// terminate and it is not ignored. A handler cannot run yet (no signal
/// frames), so a handled terminating signal ends the process too.
fn takes_default_kill(state: &SignalState, sig: u32) -> bool {
    let action = state.action(sig);
    if sig == signal::SIGKILL {
        return true;
    }
    if action.handler == signal::SIG_IGN {
        return false;
    }
    matches!(default_action(sig), DefaultAction::Terminate | DefaultAction::CoreDump)
}

mod tests {
    use fsdax_ktest::{kassert_eq, ktest};

    use super::*;

    ktest!(pending_signals_follow_actions_and_mask, {
        let mut st = SignalState::default();
        let p = Pending::default();
        p.raise(signal::SIGCHLD);
        kassert_eq!(p.decide(&st), Verdict::Continue, "SIGCHLD is ignored by default");
        kassert_eq!(p.any(), false, "and discarded");
        st.blocked = bit(signal::SIGTERM);
        p.raise(signal::SIGTERM);
        kassert_eq!(p.decide(&st), Verdict::Continue, "blocked");
        st.blocked = 0;
        kassert_eq!(p.decide(&st), Verdict::Die(Exit::Signal(signal::SIGTERM)));
        let q = Pending::default();
        st.actions[signal::SIGINT as usize - 1].handler = signal::SIG_IGN;
        q.raise(signal::SIGINT);
        kassert_eq!(q.decide(&st), Verdict::Continue, "SIG_IGN");
        st.blocked = bit(signal::SIGSEGV);
        q.force(signal::SIGSEGV);
        kassert_eq!(q.decide(&st), Verdict::Die(Exit::Signal(signal::SIGSEGV)), "forced despite the mask");
        Ok(())
    });
}
