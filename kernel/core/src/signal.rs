//! The signal state of a process and every decision taken on it: what a
//! sender's signal becomes (queued, merged, discarded), what the return to
//! user mode does next (run a handler, end the process, nothing), which
//! signals end an interruptible sleep, and what an interrupted system call
//! returns (EINTR, or a restart).
//!
//! The kernel keeps one [`SignalState`] per process under a lock and calls
//! these methods; writing the frame, changing registers and ending the
//! process are its part. Linux's rules are followed throughout
//! (`kernel/signal.c`, `arch/x86/kernel/signal.c`), and where fsdax differs
//! the method says so.
//!
//! # Invariants
//! - `pending` has a bit for each signal that waits for delivery: for a
//!   standard signal (below [`SIGRTMIN`]) `info[sig - 1]` holds its one
//!   `siginfo` (a second one sent while the first waits is merged into it,
//!   as Linux does); for a real-time signal the queue holds one entry per
//!   send, in order, and the bit is set while any entry of that number is
//!   queued.
//! - `blocked` never holds SIGKILL or SIGSTOP.
//! - SIGKILL and SIGSTOP keep `SIG_DFL`.
//!
//! # Job control
//! fsdax has none: a signal whose default action is to stop or continue
//! the process (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT) is discarded
//! unless a handler is installed (SIGSTOP cannot have one).

use alloc::collections::VecDeque;

use fsdax_abi::signal::{
    bit, default_action, handler_mask, next_deliverable, sanitize_mask, Action, AltStack, DefaultAction, SigSet,
    MINSIGSTKSZ, NSIG, SA_RESETHAND, SA_RESTART, SIGKILL, SIGRTMIN, SIGSEGV, SIG_BLOCK, SIG_DFL, SIG_IGN, SIG_SETMASK,
    SIG_UNBLOCK, SI_KERNEL, SS_DISABLE, SS_ONSTACK, UNBLOCKABLE,
};
use fsdax_abi::wire::{SigFields, Siginfo, StackT};
use fsdax_abi::Errno;

/// Real-time signals queued per process at most; a send beyond is EAGAIN
/// (Linux's `RLIMIT_SIGPENDING`, smaller).
pub const RT_QUEUE_MAX: usize = 256;

/// What became of a signal sent with [`SignalState::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// It waits for delivery (wake the process).
    Queued,
    /// The same standard signal already waited: merged into it.
    Merged,
    /// Ignored and not blocked: discarded at once.
    Discarded,
}

/// The system call a signal interrupted (it returned one of the
/// kernel-internal restart codes, [`Errno::is_restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// Its number (`RAX` at entry), for a restart.
    pub nr: u64,
    /// The restart code it returned.
    pub err: Errno,
}

/// How an interrupted system call resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Run it again: `RAX` = the number, `RIP` back over the 2-byte
    /// `syscall` instruction.
    Restart(u64),
    /// Return this error (EINTR).
    Fail(Errno),
}

/// Linux's rule for an interrupted system call (`handle_signal` and
/// `arch_do_signal_or_restart`): `handler` is the action of the handler
/// about to run, None if none runs.
pub fn resume(int: Interrupted, handler: Option<&Action>) -> Resume {
    let restart = match (int.err, handler) {
        (Errno::ERESTARTNOINTR, _) => true,
        (_, None) => true,
        (Errno::ERESTARTSYS, Some(a)) => a.flags & SA_RESTART != 0,
        _ => false,
    };
    if restart {
        Resume::Restart(int.nr)
    } else {
        Resume::Fail(Errno::EINTR)
    }
}

/// A handler to run, as [`SignalState::dequeue`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The signal and its `siginfo`.
    pub info: Siginfo,
    /// The action as it was registered (before `SA_RESETHAND` reset it).
    pub action: Action,
    /// The mask to save in the frame (`uc_sigmask`), which `rt_sigreturn`
    /// restores: the mask before delivery, or the one `rt_sigsuspend`
    /// replaced.
    pub frame_mask: SigSet,
    /// How the interrupted system call resumes, if one was: applied to the
    /// registers before they are saved in the frame.
    pub resume: Option<Resume>,
}

/// What the return to user mode does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing (more) to deliver.
    Nothing,
    /// The process ends, killed by this signal.
    Die(Siginfo),
    /// Run a handler: write its frame, then call [`SignalState::delivered`]
    /// (or [`SignalState::force_sigsegv`] if the frame cannot be written).
    Deliver(Delivery),
}

/// A process's signals: actions, blocked mask, alternate stack, pending
/// signals with their `siginfo`, and the bookkeeping of `rt_sigsuspend` and
/// interrupted system calls.
#[derive(Debug, Clone)]
pub struct SignalState {
    actions: [Action; NSIG as usize],
    blocked: SigSet,
    altstack: AltStack,
    pending: SigSet,
    info: [Option<Siginfo>; SIGRTMIN as usize - 1],
    queue: VecDeque<Siginfo>,
    /// The mask `rt_sigsuspend` replaced, restored after the handler (or at
    /// once if none runs).
    saved_mask: Option<SigSet>,
    interrupted: Option<Interrupted>,
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState {
            actions: [Action::default(); NSIG as usize],
            blocked: 0,
            altstack: AltStack { sp: 0, size: 0, disabled: true },
            pending: 0,
            info: [None; SIGRTMIN as usize - 1],
            queue: VecDeque::new(),
            saved_mask: None,
            interrupted: None,
        }
    }
}

/// `sig` is a signal number (1..=64).
fn idx(sig: u32) -> usize {
    debug_assert!((1..=NSIG).contains(&sig), "signal {sig}");
    (sig as usize).clamp(1, NSIG as usize) - 1
}

/// A `siginfo` for a signal that has none recorded (never expected: every
/// pending bit has one).
fn bare_info(sig: u32) -> Siginfo {
    Siginfo { signo: sig, errno: 0, code: SI_KERNEL, fields: SigFields::None }
}

impl SignalState {
    /// The state of a new program: every action `SIG_DFL`, nothing blocked
    /// or pending, no alternate stack.
    pub fn new() -> SignalState {
        SignalState::default()
    }

    /// The state a vfork child starts with: the parent's actions, mask and
    /// alternate stack (they share memory), nothing pending.
    pub fn for_vfork_child(&self) -> SignalState {
        SignalState { actions: self.actions, blocked: self.blocked, altstack: self.altstack, ..SignalState::default() }
    }

    /// `execve`: handlers go back to `SIG_DFL` (their addresses mean
    /// nothing in the new program), ignored signals stay ignored, every
    /// action loses its flags, mask and restorer; the mask and pending
    /// signals stay; the alternate stack is dropped (Linux's
    /// `flush_signal_handlers`).
    pub fn reset_for_exec(&mut self) {
        for a in &mut self.actions {
            let handler = if a.handler == SIG_IGN { SIG_IGN } else { SIG_DFL };
            *a = Action { handler, ..Action::default() };
        }
        self.altstack = AltStack { sp: 0, size: 0, disabled: true };
    }

    /// The action of `sig`.
    pub fn action(&self, sig: u32) -> Action {
        self.actions[idx(sig)]
    }

    /// `rt_sigaction`: sets the action of `sig` (the caller checked the
    /// number and refused SIGKILL/SIGSTOP) and returns the old one. A
    /// pending signal that the new action ignores is discarded (POSIX; as
    /// Linux).
    pub fn set_action(&mut self, sig: u32, action: Action) -> Action {
        let old = self.actions[idx(sig)];
        self.actions[idx(sig)] = Action { mask: sanitize_mask(action.mask), ..action };
        if self.ignores(sig) {
            self.discard(sig);
        }
        old
    }

    /// The blocked mask.
    pub fn blocked(&self) -> SigSet {
        self.blocked
    }

    /// Sets the blocked mask (SIGKILL and SIGSTOP are left out).
    pub fn set_blocked(&mut self, mask: SigSet) {
        self.blocked = sanitize_mask(mask);
    }

    /// `rt_sigprocmask(how, set)`: returns the old mask; EINVAL for an
    /// unknown `how`.
    pub fn procmask(&mut self, how: u32, set: SigSet) -> Result<SigSet, Errno> {
        let old = self.blocked;
        let new = match how {
            SIG_BLOCK => old | set,
            SIG_UNBLOCK => old & !set,
            SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        self.set_blocked(new);
        Ok(old)
    }

    /// The alternate stack.
    pub fn altstack(&self) -> AltStack {
        self.altstack
    }

    /// `sigaltstack(new, old)` for a process whose stack pointer is `rsp`:
    /// returns the old setting as `old` reports it. EPERM while running on
    /// the alternate stack, EINVAL for unknown flags (`SS_AUTODISARM`
    /// included: not supported), ENOMEM below `MINSIGSTKSZ`. The checks
    /// and their order are Linux's `do_sigaltstack`.
    pub fn sigaltstack(&mut self, new: Option<StackT>, rsp: u64) -> Result<StackT, Errno> {
        let old = self.altstack.report(rsp);
        if let Some(ss) = new {
            if self.altstack.contains(rsp) {
                return Err(Errno::EPERM);
            }
            if ss.flags != 0 && ss.flags != SS_DISABLE && ss.flags != SS_ONSTACK {
                return Err(Errno::EINVAL);
            }
            self.altstack = if ss.flags == SS_DISABLE {
                AltStack { sp: 0, size: 0, disabled: true }
            } else if ss.size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            } else {
                AltStack { sp: ss.sp, size: ss.size, disabled: false }
            };
        }
        Ok(old)
    }

    /// Whether `sig` delivered now would be thrown away: `SIG_IGN`, or
    /// `SIG_DFL` with a default action of ignore, stop or continue (no job
    /// control). SIGKILL never is.
    pub fn ignores(&self, sig: u32) -> bool {
        if sig == SIGKILL {
            return false;
        }
        match self.actions[idx(sig)].handler {
            SIG_IGN => true,
            SIG_DFL => !matches!(default_action(sig), DefaultAction::Terminate | DefaultAction::CoreDump),
            _ => false,
        }
    }

    /// Whether `sig` delivered now ends the process.
    fn kills(&self, sig: u32) -> bool {
        sig == SIGKILL || (self.actions[idx(sig)].handler == SIG_DFL && !self.ignores(sig))
    }

    /// The pending signals.
    pub fn pending(&self) -> SigSet {
        self.pending
    }

    /// `rt_sigpending`: the pending signals that are blocked.
    pub fn pending_blocked(&self) -> SigSet {
        self.pending & self.blocked
    }

    fn deliverable(&self) -> SigSet {
        self.pending & !self.blocked
    }

    /// A sender's signal (`kill`, `tgkill`, the console, SIGCHLD, SIGPIPE;
    /// Linux's `send_signal`). An ignored signal that is not blocked is
    /// discarded; a standard signal already pending is merged; a real-time
    /// one is queued, EAGAIN beyond [`RT_QUEUE_MAX`].
    pub fn send(&mut self, info: Siginfo) -> Result<Sent, Errno> {
        let sig = info.signo;
        if self.ignores(sig) && self.blocked & bit(sig) == 0 {
            return Ok(Sent::Discarded);
        }
        if sig < SIGRTMIN {
            if self.pending & bit(sig) != 0 {
                return Ok(Sent::Merged);
            }
            self.info[idx(sig)] = Some(info);
        } else {
            if self.queue.len() >= RT_QUEUE_MAX {
                return Err(Errno::EAGAIN);
            }
            self.queue.push_back(info);
        }
        self.pending |= bit(sig);
        Ok(Sent::Queued)
    }

    /// A signal the process cannot go on without handling (a fault, the
    /// out-of-memory kill, consumed poison; Linux's `force_sig_info`): if
    /// it is blocked or ignored, its action becomes `SIG_DFL` and it is
    /// unblocked, so it kills unless a handler can run now. A standard
    /// signal already pending keeps its `siginfo` (Linux's `legacy_queue`:
    /// a fault that finds `SIGBUS BUS_MCEERR_AO` pending lets that be
    /// delivered; the access faults again after the handler).
    pub fn force(&mut self, info: Siginfo) {
        let sig = info.signo;
        let i = idx(sig);
        if self.blocked & bit(sig) != 0 || self.actions[i].handler == SIG_IGN {
            self.actions[i].handler = SIG_DFL;
            self.blocked &= !bit(sig);
        }
        if sig < SIGRTMIN {
            if self.pending & bit(sig) == 0 || self.info[i].is_none() {
                self.info[i] = Some(info);
            }
        } else {
            self.queue.push_back(info);
        }
        self.pending |= bit(sig);
    }

    /// The frame of a handler for `failed` could not be written (bad
    /// stack): SIGSEGV is forced, and if the failed signal was SIGSEGV
    /// itself its handler is dropped first, so the process dies (Linux's
    /// `force_sigsegv`).
    pub fn force_sigsegv(&mut self, failed: u32) {
        if failed == SIGSEGV {
            self.actions[idx(SIGSEGV)].handler = SIG_DFL;
        }
        self.force(Siginfo {
            signo: SIGSEGV,
            errno: 0,
            code: SI_KERNEL,
            fields: SigFields::Fault { addr: 0, addr_lsb: 0 },
        });
    }

    /// Takes `sig` out of the pending set with its `siginfo`.
    fn take(&mut self, sig: u32) -> Siginfo {
        if sig < SIGRTMIN {
            self.pending &= !bit(sig);
            return self.info[idx(sig)].take().unwrap_or_else(|| bare_info(sig));
        }
        let info = self.queue.iter().position(|i| i.signo == sig).and_then(|at| self.queue.remove(at));
        if !self.queue.iter().any(|i| i.signo == sig) {
            self.pending &= !bit(sig);
        }
        info.unwrap_or_else(|| bare_info(sig))
    }

    /// Discards every pending `sig` (its action now ignores it).
    fn discard(&mut self, sig: u32) {
        if self.pending & bit(sig) != 0 {
            self.pending &= !bit(sig);
            if sig < SIGRTMIN {
                self.info[idx(sig)] = None;
            } else {
                self.queue.retain(|i| i.signo != sig);
            }
        }
    }

    /// At a return to user mode: the next thing to do (Linux's
    /// `get_signal`). Synchronous signals go first, then the lowest number;
    /// ignored ones are discarded on the way; `SA_RESETHAND` takes effect
    /// here. Call it until it says [`Next::Nothing`], then [`Self::finish`].
    pub fn dequeue(&mut self) -> Next {
        while let Some(sig) = next_deliverable(self.pending, self.blocked) {
            let info = self.take(sig);
            if self.kills(sig) {
                return Next::Die(info);
            }
            if self.ignores(sig) {
                continue;
            }
            let action = self.actions[idx(sig)];
            if action.flags & SA_RESETHAND != 0 {
                self.actions[idx(sig)].handler = SIG_DFL;
            }
            let resume = self.interrupted.take().map(|int| resume(int, Some(&action)));
            return Next::Deliver(Delivery {
                info,
                action,
                frame_mask: self.saved_mask.unwrap_or(self.blocked),
                resume,
            });
        }
        Next::Nothing
    }

    /// The handler's frame is written: the mask becomes the handler's
    /// (Linux's `signal_delivered`: its `sa_mask`, and the signal itself
    /// unless `SA_NODEFER`, added to the current mask).
    pub fn delivered(&mut self, sig: u32, action: &Action) {
        self.saved_mask = None;
        self.blocked = handler_mask(self.blocked, action, sig);
    }

    /// The end of a return to user mode: a mask `rt_sigsuspend` replaced
    /// comes back if no handler ran, and a system call that was
    /// interrupted without a handler running restarts.
    pub fn finish(&mut self) -> Option<Resume> {
        if let Some(m) = self.saved_mask.take() {
            self.blocked = m;
        }
        self.interrupted.take().map(|int| resume(int, None))
    }

    /// The system call `nr` returned the restart code `err` (a signal
    /// interrupted it): decided at the return to user mode.
    pub fn interrupt_syscall(&mut self, nr: u64, err: Errno) {
        self.interrupted = Some(Interrupted { nr, err });
    }

    /// `rt_sigsuspend`: `mask` replaces the blocked mask until a handler
    /// has run (then the old mask is in its frame) or the return to user
    /// mode finds none to run.
    pub fn suspend(&mut self, mask: SigSet) {
        self.saved_mask = Some(self.blocked);
        self.set_blocked(mask);
    }

    /// `rt_sigtimedwait`: takes the first pending signal of `set` (blocked
    /// or not; never SIGKILL or SIGSTOP), synchronous signals first.
    pub fn take_one_of(&mut self, set: SigSet) -> Option<Siginfo> {
        let ready = self.pending & set & !UNBLOCKABLE;
        let sig = next_deliverable(ready, 0)?;
        Some(self.take(sig))
    }

    /// Whether an interruptible sleep must end: a pending signal that is
    /// not blocked and will run a handler or end the process (ignored ones
    /// do not wake anybody).
    pub fn interrupts_sleep(&self) -> bool {
        let mut ready = self.deliverable();
        while let Some(sig) = next_deliverable(ready, 0) {
            ready &= !bit(sig);
            if !self.ignores(sig) {
                return true;
            }
        }
        false
    }

    /// Whether a pending signal will end the process (sleeps that only a
    /// fatal signal may end, like a vfork parent's, check this).
    pub fn fatal_pending(&self) -> bool {
        let mut ready = self.deliverable();
        while let Some(sig) = next_deliverable(ready, 0) {
            ready &= !bit(sig);
            if self.kills(sig) {
                return true;
            }
        }
        false
    }

    /// Whether the return to user mode has anything to do here: a signal
    /// to deliver (or discard), a mask to restore, a system call to resume.
    pub fn needs_attention(&self) -> bool {
        self.deliverable() != 0 || self.saved_mask.is_some() || self.interrupted.is_some()
    }
}

#[cfg(test)]
mod tests {
    use fsdax_abi::signal::{
        SA_NODEFER, SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGBUS, SIGCHLD, SIGCONT, SIGINT, SIGSTOP, SIGTERM, SIGUSR1,
        SIGUSR2, SI_TKILL, SI_USER,
    };
    use proptest::prelude::*;

    use super::*;

    fn user(sig: u32) -> Siginfo {
        Siginfo { signo: sig, errno: 0, code: SI_USER, fields: SigFields::Kill { pid: 7, uid: 0 } }
    }

    fn fault(sig: u32, addr: u64) -> Siginfo {
        Siginfo { signo: sig, errno: 0, code: 1, fields: SigFields::Fault { addr, addr_lsb: 0 } }
    }

    fn handler(flags: u64) -> Action {
        Action { handler: 0x40_1000, flags: SA_SIGINFO | SA_RESTORER | flags, restorer: 0x40_2000, mask: 0 }
    }

    fn delivery(next: Next) -> Delivery {
        match next {
            Next::Deliver(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[test]
    fn default_actions_kill_ignore_or_discard() {
        let mut s = SignalState::new();
        assert_eq!(s.send(user(SIGCHLD)), Ok(Sent::Discarded), "SIGCHLD: default ignore");
        assert_eq!(s.send(user(SIGCONT)), Ok(Sent::Discarded), "no job control");
        assert_eq!(s.send(user(SIGSTOP)), Ok(Sent::Discarded), "no job control");
        assert_eq!(s.pending(), 0);
        assert_eq!(s.send(user(SIGTERM)), Ok(Sent::Queued));
        assert!(s.interrupts_sleep() && s.fatal_pending());
        assert_eq!(s.dequeue(), Next::Die(user(SIGTERM)));
        assert_eq!(s.dequeue(), Next::Nothing);
        let mut s = SignalState::new();
        s.set_action(SIGINT, Action { handler: SIG_IGN, ..Action::default() });
        assert_eq!(s.send(user(SIGINT)), Ok(Sent::Discarded));
        assert!(!s.interrupts_sleep());
    }

    #[test]
    fn blocked_signals_wait_and_ignored_blocked_ones_are_dropped_on_unblock() {
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, handler(0));
        s.procmask(SIG_BLOCK, bit(SIGUSR1) | bit(SIGKILL)).unwrap();
        assert_eq!(s.blocked(), bit(SIGUSR1), "SIGKILL cannot be blocked");
        assert_eq!(s.send(user(SIGUSR1)), Ok(Sent::Queued));
        assert_eq!(s.send(user(SIGUSR1)), Ok(Sent::Merged), "standard signals do not queue");
        assert_eq!(s.pending_blocked(), bit(SIGUSR1));
        assert!(!s.interrupts_sleep() && !s.needs_attention());
        assert_eq!(s.dequeue(), Next::Nothing);
        // Blocked and ignored: kept while blocked (POSIX), but it does not
        // wake anybody and is thrown away when unblocked.
        s.set_action(SIGCHLD, Action::default());
        s.procmask(SIG_BLOCK, bit(SIGCHLD)).unwrap();
        assert_eq!(s.send(user(SIGCHLD)), Ok(Sent::Queued));
        s.procmask(SIG_SETMASK, 0).unwrap();
        assert!(s.interrupts_sleep(), "SIGUSR1 has a handler");
        let d = delivery(s.dequeue());
        assert_eq!(d.info.signo, SIGUSR1);
        assert_eq!(s.dequeue(), Next::Nothing, "SIGCHLD discarded");
        assert_eq!(s.pending(), 0);
        assert_eq!(s.procmask(99, 0), Err(Errno::EINVAL));
    }

    #[test]
    fn setting_sig_ign_discards_the_pending_signal() {
        let mut s = SignalState::new();
        s.set_blocked(bit(SIGTERM));
        s.send(user(SIGTERM)).unwrap();
        s.set_action(SIGTERM, Action { handler: SIG_IGN, ..Action::default() });
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn handler_delivery_masks_and_resethand() {
        let mut s = SignalState::new();
        let a = Action { mask: bit(SIGUSR2) | bit(SIGKILL), ..handler(SA_RESETHAND) };
        s.set_action(SIGUSR1, a);
        assert_eq!(s.action(SIGUSR1).mask, bit(SIGUSR2), "sa_mask is sanitized");
        s.set_blocked(bit(SIGINT));
        s.send(user(SIGUSR1)).unwrap();
        let d = delivery(s.dequeue());
        assert_eq!(d.frame_mask, bit(SIGINT), "the frame keeps the mask before delivery");
        assert_eq!(d.action.handler, 0x40_1000);
        assert_eq!(s.action(SIGUSR1).handler, SIG_DFL, "SA_RESETHAND");
        s.delivered(SIGUSR1, &d.action);
        assert_eq!(s.blocked(), bit(SIGINT) | bit(SIGUSR1) | bit(SIGUSR2));
        // SA_NODEFER: the signal itself stays unblocked in its handler.
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, handler(SA_NODEFER));
        s.send(user(SIGUSR1)).unwrap();
        let d = delivery(s.dequeue());
        s.delivered(SIGUSR1, &d.action);
        assert_eq!(s.blocked(), 0);
    }

    #[test]
    fn synchronous_signals_go_first() {
        let mut s = SignalState::new();
        for sig in [SIGUSR1, SIGBUS, SIGSEGV] {
            s.set_action(sig, handler(0));
        }
        s.send(user(SIGUSR1)).unwrap();
        s.force(fault(SIGSEGV, 8));
        assert_eq!(delivery(s.dequeue()).info.signo, SIGSEGV);
        assert_eq!(delivery(s.dequeue()).info.signo, SIGUSR1);
    }

    #[test]
    fn a_forced_fault_kills_when_blocked_ignored_or_in_its_own_handler() {
        // Blocked: unblocked and reset to SIG_DFL -> death.
        let mut s = SignalState::new();
        s.set_action(SIGSEGV, handler(0));
        s.set_blocked(bit(SIGSEGV));
        s.force(fault(SIGSEGV, 0x10));
        assert_eq!(s.dequeue(), Next::Die(fault(SIGSEGV, 0x10)));
        // Ignored: reset to SIG_DFL -> death.
        let mut s = SignalState::new();
        s.set_action(SIGBUS, Action { handler: SIG_IGN, ..Action::default() });
        s.force(fault(SIGBUS, 0x20));
        assert_eq!(s.dequeue(), Next::Die(fault(SIGBUS, 0x20)));
        // A fault inside its own handler (the signal is blocked there).
        let mut s = SignalState::new();
        s.set_action(SIGSEGV, handler(0));
        s.force(fault(SIGSEGV, 0x30));
        let d = delivery(s.dequeue());
        s.delivered(SIGSEGV, &d.action);
        s.force(fault(SIGSEGV, 0x40));
        assert_eq!(s.dequeue(), Next::Die(fault(SIGSEGV, 0x40)));
        // With SA_NODEFER the handler runs again.
        let mut s = SignalState::new();
        s.set_action(SIGSEGV, handler(SA_NODEFER));
        s.force(fault(SIGSEGV, 0x30));
        let d = delivery(s.dequeue());
        s.delivered(SIGSEGV, &d.action);
        s.force(fault(SIGSEGV, 0x40));
        assert_eq!(delivery(s.dequeue()).info, fault(SIGSEGV, 0x40));
        // A handled, unblocked fault runs its handler.
        let mut s = SignalState::new();
        s.set_action(SIGSEGV, handler(SA_ONSTACK));
        s.force(fault(SIGSEGV, 0x50));
        assert_eq!(delivery(s.dequeue()).info, fault(SIGSEGV, 0x50));
    }

    #[test]
    fn a_forced_signal_already_pending_keeps_the_first_siginfo() {
        // An action-optional notice is pending when the process faults on
        // the page: the notice is delivered; the access faults again later.
        let mut s = SignalState::new();
        s.set_action(SIGBUS, handler(0));
        assert_eq!(s.send(fault(SIGBUS, 0x1000)), Ok(Sent::Queued));
        s.force(fault(SIGBUS, 0x2000));
        assert_eq!(delivery(s.dequeue()).info, fault(SIGBUS, 0x1000));
        assert_eq!(s.dequeue(), Next::Nothing);
    }

    #[test]
    fn a_frame_that_cannot_be_written_ends_in_sigsegv() {
        // SIGUSR1's frame failed: SIGSEGV is forced; its handler may run.
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, handler(0));
        s.set_action(SIGSEGV, handler(0));
        s.force_sigsegv(SIGUSR1);
        assert_eq!(delivery(s.dequeue()).info.signo, SIGSEGV);
        // SIGSEGV's own frame failed: its handler is dropped, death.
        let mut s = SignalState::new();
        s.set_action(SIGSEGV, handler(0));
        s.force_sigsegv(SIGSEGV);
        match s.dequeue() {
            Next::Die(info) => assert_eq!((info.signo, info.code), (SIGSEGV, SI_KERNEL)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn real_time_signals_queue_in_order_up_to_a_limit() {
        let mut s = SignalState::new();
        let rt = SIGRTMIN + 3;
        s.set_action(rt, handler(0));
        s.set_blocked(bit(rt));
        for pid in 0..3 {
            let info = Siginfo { fields: SigFields::Kill { pid, uid: 0 }, ..user(rt) };
            assert_eq!(s.send(info), Ok(Sent::Queued));
        }
        s.set_blocked(0);
        for pid in 0..3 {
            let d = delivery(s.dequeue());
            assert_eq!(d.info.fields, SigFields::Kill { pid, uid: 0 });
            assert_eq!(s.pending() & bit(rt) != 0, pid < 2, "pending while queued");
        }
        s.set_blocked(bit(rt));
        for _ in 0..RT_QUEUE_MAX {
            s.send(user(rt)).unwrap();
        }
        assert_eq!(s.send(user(rt)), Err(Errno::EAGAIN));
    }

    #[test]
    fn interrupted_system_calls_restart_or_fail_as_linux_decides() {
        let int = |err| Interrupted { nr: 0, err };
        let plain = handler(0);
        let restart = handler(SA_RESTART);
        assert_eq!(resume(int(Errno::ERESTARTSYS), Some(&restart)), Resume::Restart(0));
        assert_eq!(resume(int(Errno::ERESTARTSYS), Some(&plain)), Resume::Fail(Errno::EINTR));
        assert_eq!(resume(int(Errno::ERESTARTSYS), None), Resume::Restart(0));
        assert_eq!(resume(int(Errno::ERESTARTNOHAND), Some(&restart)), Resume::Fail(Errno::EINTR));
        assert_eq!(resume(int(Errno::ERESTARTNOHAND), None), Resume::Restart(0));
        assert_eq!(resume(int(Errno::ERESTARTNOINTR), Some(&plain)), Resume::Restart(0));
        // Through the state: a read (nr 0) interrupted by a handler with
        // SA_RESTART restarts; the delivery carries the decision.
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, restart);
        s.send(user(SIGUSR1)).unwrap();
        s.interrupt_syscall(0, Errno::ERESTARTSYS);
        assert!(s.needs_attention());
        assert_eq!(delivery(s.dequeue()).resume, Some(Resume::Restart(0)));
        assert_eq!(s.finish(), None, "decided once");
        // Without a handler running it restarts at the end.
        s.interrupt_syscall(61, Errno::ERESTARTSYS);
        assert_eq!(s.dequeue(), Next::Nothing);
        assert_eq!(s.finish(), Some(Resume::Restart(61)));
    }

    #[test]
    fn sigsuspend_mask_is_saved_in_the_frame_or_restored() {
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, handler(0));
        s.set_blocked(bit(SIGUSR1) | bit(SIGUSR2));
        s.suspend(bit(SIGUSR2));
        assert!(!s.interrupts_sleep());
        s.send(user(SIGUSR1)).unwrap();
        assert!(s.interrupts_sleep());
        s.interrupt_syscall(130, Errno::ERESTARTNOHAND);
        let d = delivery(s.dequeue());
        assert_eq!(d.frame_mask, bit(SIGUSR1) | bit(SIGUSR2), "rt_sigreturn restores the old mask");
        assert_eq!(d.resume, Some(Resume::Fail(Errno::EINTR)));
        s.delivered(SIGUSR1, &d.action);
        assert_eq!(s.blocked(), bit(SIGUSR1) | bit(SIGUSR2), "the suspend mask plus the signal");
        assert_eq!(s.finish(), None);
        // No handler ran: the old mask comes back at once.
        let mut s = SignalState::new();
        s.set_blocked(bit(SIGUSR1));
        s.suspend(0);
        assert!(s.needs_attention());
        assert_eq!(s.dequeue(), Next::Nothing);
        s.finish();
        assert_eq!(s.blocked(), bit(SIGUSR1));
    }

    #[test]
    fn sigtimedwait_takes_from_its_set_only() {
        let mut s = SignalState::new();
        s.set_blocked(bit(SIGUSR1) | bit(SIGUSR2));
        s.send(user(SIGUSR2)).unwrap();
        assert_eq!(s.take_one_of(bit(SIGUSR1)), None);
        assert_eq!(s.take_one_of(bit(SIGUSR1) | bit(SIGUSR2)).map(|i| i.signo), Some(SIGUSR2));
        assert_eq!(s.pending(), 0);
        s.send(user(SIGKILL)).unwrap();
        assert_eq!(s.take_one_of(u64::MAX), None, "SIGKILL is never taken");
    }

    #[test]
    fn sigaltstack_follows_linux_checks() {
        let mut s = SignalState::new();
        let ss = |sp, size, flags| StackT { sp, flags, size };
        let old = s.sigaltstack(Some(ss(0x10_0000, 0x4000, 0)), 0x7fff_0000).unwrap();
        assert_eq!(old.flags, SS_DISABLE);
        assert_eq!(s.sigaltstack(None, 0x10_2000).unwrap().flags, SS_ONSTACK);
        assert_eq!(s.sigaltstack(Some(ss(0, 0, SS_DISABLE)), 0x10_2000), Err(Errno::EPERM), "on it");
        assert_eq!(s.sigaltstack(Some(ss(0x20_0000, 0x4000, 0x1234)), 0x7fff_0000), Err(Errno::EINVAL));
        assert_eq!(s.sigaltstack(Some(ss(0x20_0000, 0x4000, 1 << 31)), 0x7fff_0000), Err(Errno::EINVAL));
        assert_eq!(s.sigaltstack(Some(ss(0x20_0000, 512, 0)), 0x7fff_0000), Err(Errno::ENOMEM));
        assert_eq!(s.altstack().sp, 0x10_0000, "unchanged by failures");
        s.sigaltstack(Some(ss(0, 0, SS_DISABLE)), 0x7fff_0000).unwrap();
        assert!(s.altstack().disabled);
    }

    #[test]
    fn exec_and_vfork_keep_what_linux_keeps() {
        let mut s = SignalState::new();
        s.set_action(SIGUSR1, handler(0));
        s.set_action(SIGINT, Action { handler: SIG_IGN, flags: SA_RESTART, ..Action::default() });
        s.set_blocked(bit(SIGUSR2));
        s.sigaltstack(Some(StackT { sp: 0x10_0000, flags: 0, size: 0x4000 }), 0).unwrap();
        s.send(user(SIGUSR2)).unwrap();
        let child = s.for_vfork_child();
        assert_eq!(child.action(SIGUSR1), s.action(SIGUSR1));
        assert_eq!(child.blocked(), bit(SIGUSR2));
        assert_eq!(child.pending(), 0);
        assert!(!child.altstack().disabled);
        s.reset_for_exec();
        assert_eq!(s.action(SIGUSR1), Action::default());
        assert_eq!(s.action(SIGINT), Action { handler: SIG_IGN, ..Action::default() });
        assert_eq!(s.blocked(), bit(SIGUSR2));
        assert_eq!(s.pending(), bit(SIGUSR2));
        assert!(s.altstack().disabled);
    }

    #[test]
    fn tkill_info_is_kept() {
        let mut s = SignalState::new();
        s.set_action(SIGUSR2, handler(0));
        let info = Siginfo { code: SI_TKILL, ..user(SIGUSR2) };
        s.send(info).unwrap();
        assert_eq!(delivery(s.dequeue()).info, info);
    }

    fn any_action() -> impl Strategy<Value = Action> {
        prop_oneof![Just(SIG_DFL), Just(SIG_IGN), Just(0x40_1000u64)].prop_flat_map(|handler| {
            (any::<u64>(), any::<bool>()).prop_map(move |(mask, nodefer)| Action {
                handler,
                flags: SA_RESTORER | if nodefer { SA_NODEFER } else { 0 },
                restorer: 0x40_2000,
                mask,
            })
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Action(u32, Action),
        Mask(u64),
        Send(u32),
        Force(u32),
        Next,
    }

    fn any_op() -> impl Strategy<Value = Op> {
        let sig = prop_oneof![1u32..=64, Just(SIGSEGV), Just(SIGUSR1), Just(SIGKILL)];
        prop_oneof![
            (sig.clone(), any_action())
                .prop_filter("SIGKILL and SIGSTOP keep SIG_DFL", |(s, _)| *s != SIGKILL && *s != SIGSTOP)
                .prop_map(|(s, a)| Op::Action(s, a)),
            any::<u64>().prop_map(Op::Mask),
            sig.clone().prop_map(Op::Send),
            prop_oneof![Just(SIGSEGV), Just(SIGBUS), Just(4u32), Just(8u32)].prop_map(Op::Force),
            Just(Op::Next),
        ]
    }

    proptest! {
        /// Whatever happens: SIGKILL and SIGSTOP are never blocked and keep
        /// SIG_DFL; a handler never runs for a blocked signal; with a fatal
        /// signal pending the next step is not "nothing"; a forced signal
        /// is never lost (delivered, fatal, or still pending behind a mask
        /// a handler that ran first set).
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(any_op(), 1..60)) {
            let mut s = SignalState::new();
            for op in ops {
                match op {
                    Op::Action(sig, a) => { s.set_action(sig, a); }
                    Op::Mask(m) => s.set_blocked(m),
                    Op::Send(sig) => { let _ = s.send(user(sig)); }
                    Op::Force(sig) => {
                        s.force(fault(sig, 0x1000));
                        let mut seen = false;
                        loop {
                            match s.dequeue() {
                                Next::Nothing => break,
                                Next::Die(_) => { seen = true; s = SignalState::new(); break; }
                                Next::Deliver(d) => {
                                    if d.info.signo == sig { seen = true; }
                                    s.delivered(d.info.signo, &d.action);
                                }
                            }
                        }
                        // A handler that ran first may have blocked it
                        // (its sa_mask): then it still waits.
                        prop_assert!(seen || s.pending() & bit(sig) != 0, "forced signal {} lost", sig);
                    }
                    Op::Next => {
                        let fatal = s.fatal_pending();
                        let before = s.blocked();
                        match s.dequeue() {
                            Next::Die(_) => { s = SignalState::new(); }
                            Next::Deliver(d) => {
                                prop_assert_eq!(before & bit(d.info.signo), 0, "a blocked signal was delivered");
                                s.delivered(d.info.signo, &d.action);
                            }
                            Next::Nothing => prop_assert!(!fatal),
                        }
                    }
                }
                prop_assert_eq!(s.blocked() & UNBLOCKABLE, 0);
                prop_assert_eq!(s.action(SIGKILL).handler, SIG_DFL);
            }
        }
    }
}
