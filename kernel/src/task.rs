//! Kernel tasks: the scheduler core (`fsdax_kcore::sched`) glued to the
//! hal's task contexts.
//!
//! Every task has its own kernel stack (above a guard page) and, optionally,
//! its own address space, both owned by its [`TaskContext`]. The local APIC
//! timer preempts the running task every tick; a task can also yield, sleep,
//! block on a wait queue, exit, be killed, or die of a fault. The boot
//! context is task 0 ("kernel"), which runs the console and is *critical*:
//! a fault there is a kernel panic. A fault in any other task kills only
//! that task, with a report, unless the kill rule (`fsdax_kcore::kill`)
//! says it cannot be contained (interrupts off, sleeping locks held).
//!
//! Switching: with interrupts off, the scheduler core picks the next task
//! under the scheduler lock; the lock is dropped and the hal switches
//! contexts. Nothing on the timer path allocates (the run queue's capacity
//! is reserved for [`MAX_TASKS`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_hal::arch::cpu;
use fsdax_hal::mm::AddressSpace;
use fsdax_hal::sync::IrqMutex;
use fsdax_hal::task::{TaskContext, UserCpuInit};
use fsdax_hal::trap::Fault;
use fsdax_kcore::kill::{PanicReason, Verdict};
use fsdax_kcore::sched::{BlockOutcome, Join, KillOutcome, Scheduler, State};
pub use fsdax_kcore::sched::{KillError, TaskId, BOOT_TASK as KERNEL_TASK};

/// Upper bound on live tasks (the stack area has as many slots).
pub const MAX_TASKS: usize = fsdax_hal::mm::MAX_STACKS;
/// Pages of each task's kernel stack.
pub const STACK_PAGES: u64 = 8;

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The task's function returned.
    Returned,
    /// Another task killed it.
    Killed,
    /// It faulted (the report names the exception).
    Fault(Fault),
    /// It consumed poisoned memory (action-required machine check at `rip`
    /// for physical address `phys`).
    MachineCheck {
        /// Where it consumed the poison.
        rip: u64,
        /// The poisoned physical address.
        phys: u64,
    },
    /// It panicked (the report was printed).
    Panicked,
}

impl ExitReason {
    /// A short word for listings.
    pub fn word(&self) -> &'static str {
        match self {
            ExitReason::Returned => "exited",
            ExitReason::Killed => "killed",
            ExitReason::Fault(_) => "faulted",
            ExitReason::MachineCheck { .. } => "poisoned",
            ExitReason::Panicked => "panicked",
        }
    }
}

type Sched = Scheduler<Option<Arc<TaskContext>>, ExitReason>;

static SCHED: IrqMutex<Option<Sched>> = IrqMutex::new(None);

/// Runs `f` on the scheduler core under its lock (interrupts off).
fn with_sched<R>(f: impl FnOnce(&mut Sched) -> R) -> R {
    let mut guard = SCHED.lock();
    f(guard.as_mut().expect("task::init ran"))
}

fn task_returned() -> ! {
    exit(ExitReason::Returned)
}

/// Makes the boot context task 0 and creates the idle task.
pub fn init() {
    let boot = TaskContext::adopt_boot();
    *SCHED.lock() = Some(Sched::new("kernel", Some(boot), MAX_TASKS));
    if fsdax_hal::task::register_exit_handler(task_returned).is_err() {
        crate::error!("task: an exit handler was already registered");
    }
    let idle = spawn_inner("idle", false, None, || loop {
        reap();
        cpu::idle_wait();
    })
    .expect("the idle task");
    // The idle task runs only when nothing else is ready, and it is part of
    // the kernel: a fault (or consumed poison) there is a kernel panic.
    with_sched(|s| s.set_idle(idle));
}

/// Options for [`Builder::spawn`].
#[derive(Debug)]
pub struct Builder {
    name: String,
    space: Option<AddressSpace>,
    user: Option<(Arc<AddressSpace>, UserCpuInit)>,
    joinable: bool,
}

impl Builder {
    /// A joinable task in the kernel address space.
    pub fn new(name: &str) -> Builder {
        Builder { name: String::from(name), space: None, user: None, joinable: true }
    }

    /// Gives the task its own address space.
    pub fn address_space(mut self, space: AddressSpace) -> Builder {
        self.space = Some(space);
        self
    }

    /// Makes the task a process's: it runs in `space` (shared) and has user
    /// CPU state starting as `init`.
    pub fn user(mut self, space: Arc<AddressSpace>, init: UserCpuInit) -> Builder {
        self.user = Some((space, init));
        self
    }

    /// Nobody will join the task: it is forgotten once it ends.
    pub fn detached(mut self) -> Builder {
        self.joinable = false;
        self
    }

    /// Creates the task; it runs when the scheduler picks it.
    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> Result<TaskId, SpawnError> {
        reap();
        if let Some((space, init)) = self.user {
            if with_sched(|s| s.len()) >= MAX_TASKS {
                return Err(SpawnError::TooManyTasks);
            }
            let ctx =
                TaskContext::new_user(STACK_PAGES, space, init, Box::new(f)).map_err(|_| SpawnError::OutOfMemory)?;
            return with_sched(|s| s.spawn(&self.name, Some(ctx), self.joinable)).map_err(|_| SpawnError::TooManyTasks);
        }
        spawn_inner(&self.name, self.joinable, self.space, f)
    }
}

/// Why a task could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The task table is full.
    TooManyTasks,
    /// No RAM (or no stack slot) for its stack.
    OutOfMemory,
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooManyTasks => "too many tasks",
            Self::OutOfMemory => "out of memory for a task stack",
        })
    }
}

/// Spawns a joinable task in the kernel address space.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<TaskId, SpawnError> {
    Builder::new(name).spawn(f)
}

fn spawn_inner(
    name: &str,
    joinable: bool,
    space: Option<AddressSpace>,
    f: impl FnOnce() + Send + 'static,
) -> Result<TaskId, SpawnError> {
    if with_sched(|s| s.len()) >= MAX_TASKS {
        return Err(SpawnError::TooManyTasks);
    }
    let ctx = TaskContext::new(STACK_PAGES, space, Box::new(f)).map_err(|_| SpawnError::OutOfMemory)?;
    with_sched(|s| s.spawn(name, Some(ctx), joinable)).map_err(|_| SpawnError::TooManyTasks)
}

/// Picks the next task and switches to it. The caller has already told the
/// scheduler core why the current task stops. Interrupts must be off.
fn reschedule() {
    let next = with_sched(|s| s.pick_next().and_then(|id| s.task(id).and_then(|t| t.payload.clone())));
    if let Some(ctx) = next {
        fsdax_hal::task::switch_to(ctx);
    }
}

/// The timer tick: wake sleepers, preempt the current task, or end it if a
/// deferred kill reached its safe point.
pub fn on_tick(now: u64, from_user: bool) {
    let out = with_sched(|s| {
        if from_user {
            s.count_user_tick();
        }
        s.tick(now)
    });
    if out.kill_current {
        exit(ExitReason::Killed);
    }
    reschedule();
}

/// Gives up the CPU to any other ready task.
pub fn yield_now() {
    cpu::without_interrupts(|| {
        with_sched(|s| s.yield_current());
        reschedule();
    });
}

/// Sleeps for at least `ticks` timer ticks (a safe point for pending kills).
pub fn sleep_ticks(ticks: u64) {
    let until = crate::time::ticks() + ticks.max(1);
    cpu::without_interrupts(|| match with_sched(|s| s.sleep_current(until)) {
        BlockOutcome::Blocked => reschedule(),
        BlockOutcome::KillInstead => exit(ExitReason::Killed),
    });
}

/// Blocks the current task until [`wake`]. For wait queues, which call it
/// with interrupts off while holding their own lock (lock order: wait queue,
/// then scheduler), then drop that lock and call [`block_switch`].
pub(crate) fn block_current() -> BlockOutcome {
    with_sched(|s| s.block_current())
}

/// Like [`block_current`], but the timer also wakes the task when the tick
/// count reaches `until` (timed waits on wait queues).
pub(crate) fn sleep_current_until(until: u64) -> BlockOutcome {
    with_sched(|s| s.sleep_current(until))
}

/// Second half of blocking: switch away (interrupts off). Returns when woken.
pub(crate) fn block_switch(outcome: BlockOutcome) {
    match outcome {
        BlockOutcome::Blocked => reschedule(),
        BlockOutcome::KillInstead => exit(ExitReason::Killed),
    }
}

/// Makes a blocked or sleeping task ready. False if it was not waiting.
pub(crate) fn wake(id: TaskId) -> bool {
    with_sched(|s| s.wake(id))
}

/// The current task took (or waits for) a sleeping lock. (Before the
/// scheduler exists there is only the boot context: nothing to count.)
pub(crate) fn sleeping_lock_acquired() {
    if let Some(s) = SCHED.lock().as_mut() {
        s.lock_acquired();
    }
}

/// The current task released a sleeping lock.
pub(crate) fn sleeping_lock_released() {
    // A pending kill now takes effect at the next safe point (tick or
    // block), not here in the middle of the caller's code.
    if let Some(s) = SCHED.lock().as_mut() {
        let _ = s.lock_released();
    }
}

/// Ends the current task.
pub fn exit(reason: ExitReason) -> ! {
    cpu::disable_interrupts();
    with_sched(|s| s.exit_current(reason));
    reschedule();
    crate::log::emergency(format_args!("\nKERNEL PANIC: a dead task was resumed\n"));
    fsdax_hal::power::exit_qemu(fsdax_ktest::protocol::ExitCode::KernelPanic)
}

/// The running task's id.
pub fn current() -> TaskId {
    SCHED.lock().as_ref().map_or(KERNEL_TASK, |s| s.current())
}

/// The running task's id, if the scheduler lock is free (fault paths).
pub fn try_current() -> Option<TaskId> {
    SCHED.try_lock().and_then(|s| s.as_ref().map(|s| s.current()))
}

/// Ticks task `id` ran at: (in user mode, in total).
pub fn cpu_ticks(id: TaskId) -> Option<(u64, u64)> {
    with_sched(|s| s.task(id).map(|t| (t.user_ticks, t.ticks)))
}

/// Kills task `id`. It never runs again (or, if it holds sleeping locks,
/// it ends at its next safe point); its stack and address space are freed
/// when it is reaped.
pub fn kill(id: TaskId) -> Result<KillOutcome, KillError> {
    let outcome = with_sched(|s| s.kill(id, ExitReason::Killed))?;
    if outcome == KillOutcome::KillSelf {
        exit(ExitReason::Killed);
    }
    Ok(outcome)
}

/// Waits for task `id` to end and returns why it ended (None: no such task,
/// or already joined).
pub fn join(id: TaskId) -> Option<ExitReason> {
    loop {
        match with_sched(|s| s.join(id)) {
            // The context (stack, address space) is freed here, outside the
            // scheduler lock.
            Join::Done(reason, ctx) => {
                drop(ctx);
                return Some(reason);
            }
            Join::NoSuchTask => return None,
            Join::Alive => sleep_ticks(1),
        }
    }
}

/// Frees the contexts of dead tasks (not the current one); forgets dead
/// detached tasks.
pub fn reap() {
    let freed = with_sched(|s| s.reap());
    drop(freed);
}

/// The current task, its name, and whether a failure in it (with
/// interrupts on or off) can be contained to it. Lock-free for the fault,
/// panic and machine-check paths: a held scheduler lock means the failure
/// happened inside the scheduler.
pub fn failure_verdict(interrupts_were_on: bool) -> (TaskId, TaskName, Verdict) {
    match SCHED.try_lock() {
        Some(guard) => match guard.as_ref() {
            Some(s) => {
                let t = s.current_task();
                (t.id, TaskName::new(&t.name), s.failure_verdict(interrupts_were_on))
            }
            None => (KERNEL_TASK, TaskName::new("kernel"), Verdict::Panic(PanicReason::CriticalTask)),
        },
        None => (KERNEL_TASK, TaskName::new("?"), Verdict::Panic(PanicReason::SchedulerBusy)),
    }
}

/// A task name copied without allocating (for reports from fault paths).
#[derive(Debug, Clone, Copy)]
pub struct TaskName {
    bytes: [u8; 32],
    len: usize,
}

impl TaskName {
    fn new(name: &str) -> Self {
        let mut bytes = [0u8; 32];
        let mut len = name.len().min(32);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        TaskName { bytes, len }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// The fault handler (registered with the hal): kills the current task if
/// the kill rule allows, otherwise a kernel panic with the report. Never
/// returns. No allocation and no blocking: the fault may have hit anywhere.
pub fn on_fault(fault: &Fault) {
    let (id, name, verdict) = failure_verdict(fault.interrupts_were_enabled());
    match verdict {
        Verdict::KillNow => {
            let name = name.as_str();
            if let Some(guard) = fault.stack_guard_page() {
                crate::log::emergency(format_args!(
                    "task {id} ({name}) overflowed its stack (guard page {guard:#x})\n"
                ));
            }
            crate::log::emergency(format_args!("task {id} ({name}) killed: {fault}\n"));
            exit(ExitReason::Fault(*fault))
        }
        Verdict::Panic(reason) => crate::panic::kernel_fault(fault, id, name.as_str(), reason),
        Verdict::Defer | Verdict::Refuse => {
            crate::panic::kernel_fault(fault, id, name.as_str(), PanicReason::CriticalTask)
        }
    }
}

/// One row of the `tasks` listing.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Id.
    pub id: TaskId,
    /// Name.
    pub name: String,
    /// State (`running`, `sleeping`, `killed`, ...).
    pub state: &'static str,
    /// Ticks it ran at.
    pub ticks: u64,
    /// It has its own address space.
    pub own_space: bool,
    /// Sleeping locks held.
    pub locks: u32,
    /// A kill waits for its safe point.
    pub kill_pending: bool,
}

/// The task table, for the `tasks` command.
pub fn rows() -> Vec<TaskRow> {
    let snapshot: Vec<(TaskId, String, &'static str, u64, bool, u32, bool)> = with_sched(|s| {
        s.tasks()
            .map(|t| {
                let state = match t.state {
                    State::Dead(r) => r.word(),
                    other => other.name(),
                };
                let own = t.payload.as_ref().is_some_and(|c| c.address_space().is_some());
                (t.id, t.name.clone(), state, t.ticks, own, t.sleeping_locks, t.kill_pending)
            })
            .collect()
    });
    snapshot
        .into_iter()
        .map(|(id, name, state, ticks, own_space, locks, kill_pending)| TaskRow {
            id,
            name,
            state,
            ticks,
            own_space,
            locks,
            kill_pending,
        })
        .collect()
}

// ---------------------------------------------------------------- console

fsdax_hal::shell_command!(TASKS_CMD, name: "tasks", usage: "tasks", help: "list tasks", run: |_| {
    crate::kprintln!("  ID  STATE      TICKS  SPACE   LOCKS  NAME");
    for r in rows() {
        crate::kprintln!(
            "{:4}  {:<9} {:6}  {:<6}  {:5}  {}{}",
            r.id,
            r.state,
            r.ticks,
            if r.own_space { "own" } else { "kernel" },
            r.locks,
            r.name,
            if r.kill_pending { "  (kill pending)" } else { "" }
        );
    }
});

fsdax_hal::shell_command!(KILL_CMD, name: "kill", usage: "kill ID [SIG]",
    help: "signal a process (SIGTERM unless SIG is given), or kill a kernel task", run: |args| {
    match args.first().and_then(|a| crate::shell::parse_num(a)) {
        Some(id) if crate::process::get(id).is_some() => crate::process::shell::kill_command(id, args.get(1).copied()),
        Some(id) => match kill(id) {
            Ok(KillOutcome::Killed | KillOutcome::KillSelf) => crate::kprintln!("killed task {id}"),
            Ok(KillOutcome::Deferred) => {
                crate::kprintln!("task {id} holds sleeping locks: it will be killed when it releases them")
            }
            Err(e) => crate::kprintln!("kill {id}: {e} (`tasks` lists the tasks)"),
        },
        None => crate::kprintln!("usage: kill ID (`tasks` lists the tasks)"),
    }
});

/// An address nothing maps (low canonical half, never used).
pub const UNMAPPED: u64 = 0xdead_0000;

fn fault_here() {
    let Err(e) = fsdax_hal::arch::probe::fault_at(UNMAPPED);
    crate::kprintln!("fault: {UNMAPPED:#x} is not a usable probe address: {e}");
}

fsdax_hal::shell_command!(FAULT_CMD, name: "fault", usage: "fault task|locked|kernel|spin",
    help: "page fault in a new task (killed), in a task holding a sleeping lock or in the kernel task (panic), or spawn a spinning task",
    run: |args| match args.first().copied() {
        Some("task") => match Builder::new("faulter").detached().spawn(fault_here) {
            Ok(id) => {
                crate::kprintln!("spawned task {id}, which reads {UNMAPPED:#x}");
                sleep_ticks(2);
            }
            Err(e) => crate::kprintln!("fault: cannot spawn a task: {e}"),
        },
        Some("locked") => match Builder::new("locker").detached().spawn(|| {
            static LOCK: crate::sync::Mutex<()> = crate::sync::Mutex::new(());
            let _held = LOCK.lock();
            fault_here();
        }) {
            Ok(id) => {
                crate::kprintln!("spawned task {id}, which reads {UNMAPPED:#x} while holding a sleeping lock");
                sleep_ticks(2);
            }
            Err(e) => crate::kprintln!("fault: cannot spawn a task: {e}"),
        },
        Some("kernel") => {
            crate::kprintln!("reading {UNMAPPED:#x} in the kernel task");
            fault_here();
        }
        Some("spin") => match Builder::new("spinner").detached().spawn(|| loop { core::hint::spin_loop() }) {
            Ok(id) => crate::kprintln!("spawned spinning task {id}"),
            Err(e) => crate::kprintln!("fault: cannot spawn a task: {e}"),
        },
        _ => crate::kprintln!("usage: fault task|locked|kernel|spin"),
    }
);

// ---------------------------------------------------------------- tests

mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use fsdax_hal::mm::Frame;
    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest};
    use fsdax_mm::paging::Flags;

    use super::*;

    ktest!(spawn_and_join, {
        let hit = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&hit);
        let id = spawn("child", move || {
            h.store(7, Ordering::SeqCst);
        })
        .map_err(|_| kfail!("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Returned));
        kassert_eq!(hit.load(Ordering::SeqCst), 7);
        kassert_eq!(join(id), None);
        Ok(())
    });

    ktest!(faulting_task_is_killed_and_reported, {
        let id = spawn("faulter", fault_here).map_err(|_| kfail!("spawn"))?;
        match join(id) {
            Some(ExitReason::Fault(f)) => {
                kassert_eq!(f.vector, 14);
                kassert_eq!(f.cr2, Some(UNMAPPED));
            }
            _ => return Err(kfail!("the task was not killed by its page fault")),
        }
        Ok(())
    });

    ktest!(stack_overflow_hits_the_guard_page, {
        fn recurse(n: u64) -> u64 {
            let pad = [n; 64];
            core::hint::black_box(&pad);
            if n == 0 {
                0
            } else {
                recurse(n - 1) + pad[3]
            }
        }
        let id = spawn("deep", || {
            core::hint::black_box(recurse(1_000_000));
        })
        .map_err(|_| kfail!("spawn"))?;
        match join(id) {
            Some(ExitReason::Fault(f)) => {
                kassert!(f.vector == 14 || f.vector == 8, "not a page/double fault");
                kassert!(f.stack_guard_page().is_some(), "the fault is not on a guard page");
            }
            _ => return Err(kfail!("stack overflow was not caught")),
        }
        Ok(())
    });

    ktest!(preemption_runs_busy_tasks_fairly, {
        // Two tasks that never yield both make progress: only the timer can
        // switch between them.
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let mut ids = [0; 2];
        for (i, slot) in ids.iter_mut().enumerate() {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            *slot = spawn("busy", move || {
                while !stop.load(Ordering::Relaxed) {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|_| kfail!("spawn"))?;
        }
        sleep_ticks(10);
        stop.store(true, Ordering::Relaxed);
        for id in ids {
            kassert_eq!(join(id), Some(ExitReason::Returned));
        }
        kassert!(counts[0].load(Ordering::Relaxed) > 0 && counts[1].load(Ordering::Relaxed) > 0);
        Ok(())
    });

    ktest!(yield_lets_a_ready_task_run, {
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        let id = spawn("yielder", move || r.store(true, Ordering::SeqCst)).map_err(|_| kfail!("spawn"))?;
        // Interrupts off: only yield_now can switch to the new task.
        cpu::without_interrupts(|| {
            for _ in 0..4 {
                if !ran.load(Ordering::SeqCst) {
                    yield_now();
                }
            }
        });
        kassert!(ran.load(Ordering::SeqCst), "yield_now did not run the ready task");
        kassert_eq!(join(id), Some(ExitReason::Returned));
        Ok(())
    });

    ktest!(panicking_task_is_killed, {
        let id = spawn("panicker", || {
            let v: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
            core::hint::black_box(v[core::hint::black_box(3)]);
        })
        .map_err(|_| kfail!("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Panicked));
        Ok(())
    });

    ktest!(kill_stops_a_spinning_task, {
        let id = spawn("spinner", || loop {
            core::hint::spin_loop();
        })
        .map_err(|_| kfail!("spawn"))?;
        sleep_ticks(2);
        kassert_eq!(kill(id), Ok(KillOutcome::Killed));
        kassert_eq!(join(id), Some(ExitReason::Killed));
        kassert_eq!(kill(KERNEL_TASK), Err(KillError::Protected));
        kassert_eq!(kill(id), Err(KillError::NoSuchTask));
        Ok(())
    });

    ktest!(kill_waits_until_sleeping_locks_are_released, {
        static LOCK: crate::sync::Mutex<u64> = crate::sync::Mutex::new(0);
        let holding = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let after = Arc::new(AtomicU64::new(0));
        let (h, r, a) = (Arc::clone(&holding), Arc::clone(&release), Arc::clone(&after));
        let id = spawn("holder", move || {
            let mut g = LOCK.lock();
            *g += 1;
            h.store(true, Ordering::SeqCst);
            while !r.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            drop(g);
            // Free of locks: the pending kill ends it at the next tick.
            loop {
                a.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| kfail!("spawn"))?;
        while !holding.load(Ordering::SeqCst) {
            sleep_ticks(1);
        }
        kassert_eq!(kill(id), Ok(KillOutcome::Deferred));
        sleep_ticks(3);
        kassert!(rows().iter().any(|r| r.id == id && r.kill_pending && r.locks == 1), "not pending");
        release.store(true, Ordering::SeqCst);
        kassert_eq!(join(id), Some(ExitReason::Killed));
        // The lock was released, not abandoned.
        kassert_eq!(*LOCK.lock(), 1);
        Ok(())
    });

    ktest!(task_with_own_address_space, {
        const VA: u64 = 0x5000_0000;
        let space = AddressSpace::new().ok_or(kfail!("space"))?;
        let frame = Frame::alloc_zeroed().ok_or(kfail!("frame"))?;
        space.map_frame(VA, frame, Flags::WRITABLE | Flags::NO_EXECUTE).map_err(|_| kfail!("map"))?;
        let seen = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&seen);
        let id = Builder::new("private")
            .address_space(space)
            .spawn(move || {
                // The task's own space maps VA: a user copy works there.
                if fsdax_hal::uaccess::copy_to_user(VA + 8, &0xabcdu64.to_le_bytes()).is_ok() {
                    let mut back = [0u8; 8];
                    if fsdax_hal::uaccess::copy_from_user(&mut back, VA + 8).is_ok() {
                        s.store(u64::from_le_bytes(back), Ordering::SeqCst);
                    }
                }
            })
            .map_err(|_| kfail!("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Returned));
        kassert_eq!(seen.load(Ordering::SeqCst), 0xabcd);
        // Without that space, the same address is unmapped: a user copy
        // fails (EFAULT), and a plain read faults and kills the task.
        kassert!(fsdax_hal::uaccess::copy_to_user(VA, &[1]).is_err(), "the kernel space maps VA");
        let id = spawn("other", || {
            let _ = fsdax_hal::arch::probe::fault_at(VA);
        })
        .map_err(|_| kfail!("spawn"))?;
        kassert!(matches!(join(id), Some(ExitReason::Fault(f)) if f.cr2 == Some(VA)));
        Ok(())
    });
}
