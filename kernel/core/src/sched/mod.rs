//! The scheduler core: which task runs, and every task's state.
//!
//! Round robin over a run queue, with a tick that preempts the running task
//! and wakes sleepers, blocking and waking for wait queues, exits, joins, and
//! kills that wait for a safe point ([`crate::kill`]). The kernel keeps one
//! [`Scheduler`] behind its scheduler lock and carries out the decisions
//! (context switches, freeing resources) outside it.
//!
//! Generic over `P`, what the kernel attaches to a task (its context), and
//! `R`, why a task ended.
//!
//! # Invariants
//! - Exactly one task is [`State::Running`]: the current one.
//! - The run queue holds exactly the [`State::Ready`] tasks other than the
//!   current one and the idle task, each once. So it never holds more than
//!   `max_tasks` entries, and with its capacity reserved up front, the tick
//!   path never allocates.
//! - The idle task is never queued: it runs when nothing else is ready.
//! - A dead task never runs again; its record stays until it is joined (or,
//!   if detached, until reaped).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::kill::{self, Moment, TaskFacts, Verdict};

/// A task identifier; 0 is the boot context.
pub type TaskId = u64;

/// The boot context's id.
pub const BOOT_TASK: TaskId = 0;

/// A task's scheduling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<R> {
    /// Runnable, waiting for a CPU.
    Ready,
    /// On the CPU.
    Running,
    /// Sleeping until the tick `until`.
    Sleeping {
        /// The tick at which it becomes ready.
        until: u64,
    },
    /// Waiting on a wait queue until someone wakes it.
    Blocked,
    /// Ended, for this reason.
    Dead(R),
}

impl<R> State<R> {
    /// A short name for listings.
    pub fn name(&self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Running => "running",
            State::Sleeping { .. } => "sleeping",
            State::Blocked => "blocked",
            State::Dead(_) => "dead",
        }
    }
}

/// One task's record.
#[derive(Debug)]
pub struct Task<P, R> {
    /// Its id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: State<R>,
    /// Part of the kernel: never killed; a failure in it is a kernel panic.
    pub critical: bool,
    /// Someone will join it (else it is forgotten once dead and reaped).
    pub joinable: bool,
    /// Ticks it was running at.
    pub ticks: u64,
    /// Of those, ticks that interrupted it in user mode.
    pub user_ticks: u64,
    /// Sleeping locks it holds.
    pub sleeping_locks: u32,
    /// A kill is waiting for its next safe point.
    pub kill_pending: bool,
    /// What the kernel attached (its context).
    pub payload: P,
}

impl<P, R> Task<P, R> {
    fn facts(&self) -> TaskFacts {
        TaskFacts { critical: self.critical, sleeping_locks: self.sleeping_locks }
    }
}

/// Why a task could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The task table is full.
    TooManyTasks,
}

/// Why a kill request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillError {
    /// No task has this id.
    NoSuchTask,
    /// The task is part of the kernel.
    Protected,
    /// The task already ended.
    AlreadyDead,
}

impl core::fmt::Display for KillError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoSuchTask => "no such task",
            Self::Protected => "the task is part of the kernel and cannot be killed",
            Self::AlreadyDead => "the task has already ended",
        })
    }
}

/// What a kill request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The task is dead now.
    Killed,
    /// The task is the caller: it must end itself now (`exit_current`).
    KillSelf,
    /// The task holds sleeping locks (or runs elsewhere): it ends at its
    /// next safe point.
    Deferred,
}

/// What a tick decided about the current task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// Tasks woken from sleep.
    pub woken: usize,
    /// The current task has a pending kill and is at a safe point: end it
    /// (`exit_current`) instead of rescheduling.
    pub kill_current: bool,
}

/// What blocking decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The task is blocked (or sleeping): reschedule.
    Blocked,
    /// A kill is pending and the task is at a safe point: end it instead.
    KillInstead,
}

/// What joining found.
#[derive(Debug, PartialEq, Eq)]
pub enum Join<P, R> {
    /// The task ended; its record is removed and its payload handed back.
    Done(R, P),
    /// The task is still alive.
    Alive,
    /// No such task (never existed, already joined, or detached and reaped).
    NoSuchTask,
}

/// The scheduler core.
#[derive(Debug)]
pub struct Scheduler<P, R> {
    tasks: BTreeMap<TaskId, Task<P, R>>,
    run_queue: VecDeque<TaskId>,
    current: TaskId,
    idle: Option<TaskId>,
    next_id: TaskId,
    max_tasks: usize,
}

impl<P: Default, R: Copy> Scheduler<P, R> {
    /// A scheduler whose only task is the running boot context (id 0,
    /// critical). `max_tasks` bounds the live tasks (the run queue's
    /// capacity is reserved for it).
    pub fn new(boot_name: &str, boot_payload: P, max_tasks: usize) -> Self {
        let mut tasks = BTreeMap::new();
        tasks.insert(
            BOOT_TASK,
            Task {
                id: BOOT_TASK,
                name: String::from(boot_name),
                state: State::Running,
                critical: true,
                joinable: false,
                ticks: 0,
                user_ticks: 0,
                sleeping_locks: 0,
                kill_pending: false,
                payload: boot_payload,
            },
        );
        Scheduler {
            tasks,
            run_queue: VecDeque::with_capacity(max_tasks + 1),
            current: BOOT_TASK,
            idle: None,
            next_id: BOOT_TASK + 1,
            max_tasks,
        }
    }

    /// Adds a ready task.
    pub fn spawn(&mut self, name: &str, payload: P, joinable: bool) -> Result<TaskId, SpawnError> {
        if self.tasks.len() >= self.max_tasks {
            return Err(SpawnError::TooManyTasks);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tasks.insert(
            id,
            Task {
                id,
                name: String::from(name),
                state: State::Ready,
                critical: false,
                joinable,
                ticks: 0,
                user_ticks: 0,
                sleeping_locks: 0,
                kill_pending: false,
                payload,
            },
        );
        self.run_queue.push_back(id);
        Ok(id)
    }

    /// Makes `id` the idle task: critical, never queued, run when nothing
    /// else is ready.
    pub fn set_idle(&mut self, id: TaskId) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.critical = true;
            self.run_queue.retain(|&q| q != id);
            self.idle = Some(id);
        }
    }

    /// Marks a task critical (a failure in it is a kernel panic).
    pub fn set_critical(&mut self, id: TaskId) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.critical = true;
        }
    }

    /// The running task.
    pub fn current(&self) -> TaskId {
        self.current
    }

    /// The running task's record.
    pub fn current_task(&self) -> &Task<P, R> {
        self.tasks.get(&self.current).expect("the current task has a record")
    }

    fn current_mut(&mut self) -> &mut Task<P, R> {
        self.tasks.get_mut(&self.current).expect("the current task has a record")
    }

    /// A task's record.
    pub fn task(&self, id: TaskId) -> Option<&Task<P, R>> {
        self.tasks.get(&id)
    }

    /// Every task, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &Task<P, R>> {
        self.tasks.values()
    }

    /// Live tasks (records, dead ones included until removed).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there is no task at all (never: the boot context exists).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The run queue, front first (for tests and listings).
    pub fn queued(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.run_queue.iter().copied()
    }

    // ------------------------------------------------------- the current task

    /// The current task gives up the CPU but stays ready.
    pub fn yield_current(&mut self) {
        let t = self.current_mut();
        if matches!(t.state, State::Running) {
            t.state = State::Ready;
        }
    }

    /// The current task sleeps until tick `until`. Pending kills are
    /// decided as for [`Self::block_current`].
    pub fn sleep_current(&mut self, until: u64) -> BlockOutcome {
        self.suspend_current(State::Sleeping { until })
    }

    /// The current task waits until someone calls [`Self::wake`]. With a
    /// kill pending and no sleeping lock held, it is at a safe point: the
    /// answer is to end it instead.
    pub fn block_current(&mut self) -> BlockOutcome {
        self.suspend_current(State::Blocked)
    }

    fn suspend_current(&mut self, state: State<R>) -> BlockOutcome {
        let t = self.current_mut();
        if t.kill_pending && kill::verdict(t.facts(), Moment::SafePoint) == Verdict::KillNow {
            return BlockOutcome::KillInstead;
        }
        t.state = state;
        BlockOutcome::Blocked
    }

    /// The current task ends with `reason`. Call [`Self::pick_next`] next.
    pub fn exit_current(&mut self, reason: R) {
        let t = self.current_mut();
        t.state = State::Dead(reason);
        t.kill_pending = false;
    }

    /// The current task took a sleeping lock.
    pub fn lock_acquired(&mut self) {
        self.current_mut().sleeping_locks += 1;
    }

    /// The current task released a sleeping lock. True if a kill is pending
    /// and it now holds none (it will end at its next safe point).
    pub fn lock_released(&mut self) -> bool {
        let t = self.current_mut();
        t.sleeping_locks = t.sleeping_locks.saturating_sub(1);
        t.kill_pending && t.sleeping_locks == 0
    }

    /// Whether the current task may be ended for a failure (fault, panic,
    /// consumed poison) that happened with interrupts on or off.
    pub fn failure_verdict(&self, interrupts_were_on: bool) -> Verdict {
        kill::verdict(self.current_task().facts(), Moment::Failed { interrupts_were_on })
    }

    // ------------------------------------------------------- other tasks

    /// Makes a sleeping or blocked task ready. False if it was not waiting
    /// (already ready or running, dead, or gone).
    pub fn wake(&mut self, id: TaskId) -> bool {
        let Some(t) = self.tasks.get_mut(&id) else { return false };
        if !matches!(t.state, State::Sleeping { .. } | State::Blocked) {
            return false;
        }
        t.state = State::Ready;
        if Some(id) != self.idle {
            self.run_queue.push_back(id);
        }
        true
    }

    /// A timer tick at tick number `now`: counts it for the current task,
    /// wakes sleepers whose time came, and preempts the current task (it
    /// becomes ready). Does not allocate.
    pub fn tick(&mut self, now: u64) -> TickOutcome {
        let mut woken = 0;
        for t in self.tasks.values_mut() {
            if let State::Sleeping { until } = t.state {
                if until <= now {
                    t.state = State::Ready;
                    if Some(t.id) != self.idle {
                        self.run_queue.push_back(t.id);
                    }
                    woken += 1;
                }
            }
        }
        let t = self.current_mut();
        t.ticks += 1;
        // The timer interrupts only code running with interrupts on: the
        // current task is preempted at a safe point.
        let kill_current = t.kill_pending && kill::verdict(t.facts(), Moment::SafePoint) == Verdict::KillNow;
        if matches!(t.state, State::Running) {
            t.state = State::Ready;
        }
        TickOutcome { woken, kill_current }
    }

    /// The tick that is being handled interrupted the current task in user
    /// mode (call before [`Self::tick`]).
    pub fn count_user_tick(&mut self) {
        self.current_mut().user_ticks += 1;
    }

    /// Picks the task to run next. The current task's state must already
    /// say why it stops (ready after a yield or tick, sleeping, blocked,
    /// dead) or it keeps running. Returns the task to switch to, or None to
    /// keep running the current one.
    pub fn pick_next(&mut self) -> Option<TaskId> {
        let cur = self.current;
        let cur_state = self.current_task().state;
        if matches!(cur_state, State::Running) {
            return None;
        }
        if matches!(cur_state, State::Ready) && Some(cur) != self.idle {
            self.run_queue.push_back(cur);
        }
        let next = loop {
            match self.run_queue.pop_front() {
                Some(id) if self.tasks.get(&id).is_some_and(|t| matches!(t.state, State::Ready)) => break Some(id),
                Some(_) => continue,
                None => {
                    break self.idle.filter(|&i| self.tasks.get(&i).is_some_and(|t| matches!(t.state, State::Ready)))
                }
            }
        };
        let Some(next) = next else {
            // Nothing ready and no idle task: the current task goes on if it
            // is only yielding; otherwise nothing can run (the kernel always
            // has an idle task, so this is a bug upstream).
            return None;
        };
        if let Some(t) = self.tasks.get_mut(&next) {
            t.state = State::Running;
        }
        if next == cur {
            return None;
        }
        self.current = next;
        Some(next)
    }

    /// Asks to kill `id` (ending with `reason`).
    pub fn kill(&mut self, id: TaskId, reason: R) -> Result<KillOutcome, KillError> {
        let cur = self.current;
        let t = self.tasks.get_mut(&id).ok_or(KillError::NoSuchTask)?;
        if matches!(t.state, State::Dead(_)) {
            return Err(KillError::AlreadyDead);
        }
        let moment = Moment::Requested { running: matches!(t.state, State::Running), by_itself: id == cur };
        match kill::verdict(t.facts(), moment) {
            Verdict::Refuse | Verdict::Panic(_) => Err(KillError::Protected),
            Verdict::Defer => {
                t.kill_pending = true;
                Ok(KillOutcome::Deferred)
            }
            Verdict::KillNow if id == cur => Ok(KillOutcome::KillSelf),
            Verdict::KillNow => {
                t.state = State::Dead(reason);
                t.kill_pending = false;
                self.run_queue.retain(|&q| q != id);
                Ok(KillOutcome::Killed)
            }
        }
    }

    /// Joins `id`: if it ended, removes its record and hands back why and
    /// its payload.
    pub fn join(&mut self, id: TaskId) -> Join<P, R> {
        match self.tasks.get(&id).map(|t| t.state) {
            None => Join::NoSuchTask,
            Some(State::Dead(reason)) => match self.tasks.remove(&id) {
                Some(t) => Join::Done(reason, t.payload),
                None => Join::NoSuchTask,
            },
            Some(_) => Join::Alive,
        }
    }

    /// Takes the payloads of dead tasks (except the current one, which may
    /// still be switching away): detached ones are forgotten, joinable ones
    /// keep their record (state and reason) for `join`.
    pub fn reap(&mut self) -> Vec<P> {
        let cur = self.current;
        let dead: Vec<TaskId> =
            self.tasks.values().filter(|t| t.id != cur && matches!(t.state, State::Dead(_))).map(|t| t.id).collect();
        let mut out = Vec::with_capacity(dead.len());
        for id in dead {
            let joinable = self.tasks.get(&id).is_some_and(|t| t.joinable);
            if joinable {
                if let Some(t) = self.tasks.get_mut(&id) {
                    out.push(core::mem::take(&mut t.payload));
                }
            } else if let Some(t) = self.tasks.remove(&id) {
                out.push(t.payload);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
