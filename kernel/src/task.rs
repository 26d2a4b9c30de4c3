//! Kernel tasks and the preemptive round-robin scheduler.
//!
//! Every task has its own kernel stack (with a guard page) and, optionally,
//! its own address space. The local APIC timer preempts the running task
//! every tick; a task can also yield, sleep, exit, be killed, or die of a
//! fault. The boot context is task 0 ("kernel"), which is *critical*: a
//! fault there is a kernel panic. A fault in any other task kills only that
//! task, with a report, and the kernel keeps running.
//!
//! Switching: with interrupts off, the scheduler picks the next task under
//! its lock, drops the lock and calls `switch_stack`, which saves the
//! callee-saved registers on the old stack and restores them from the new
//! one. The interrupted state itself was saved by the interrupt entry (or by
//! the ordinary call that led to `reschedule`). Nothing on the timer path
//! allocates: the run queue's capacity is reserved for [`MAX_TASKS`].

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use x86_64::instructions::interrupts::{self, without_interrupts};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use crate::arch::idt::Fault;
use crate::mem::{AddressSpace, KernelStack};

/// A task identifier; 0 is the boot context, 1 the idle task.
pub type TaskId = u64;

/// The boot context.
pub const KERNEL_TASK: TaskId = 0;
const IDLE_TASK: TaskId = 1;
/// Upper bound on live tasks (the stack area has as many slots).
pub const MAX_TASKS: usize = crate::mem::MAX_STACKS;
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
    MachineCheck { rip: u64, phys: u64 },
    /// It panicked (the report was printed).
    Panicked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Running,
    Sleeping { until_tick: u64 },
    Dead(ExitReason),
}

struct Task {
    id: TaskId,
    name: String,
    state: State,
    critical: bool,
    /// Saved stack pointer while not running.
    rsp: u64,
    stack: Option<KernelStack>,
    space: Option<AddressSpace>,
    /// Whether someone will `join` it (if not, it is removed when reaped).
    joinable: bool,
    ticks: u64,
}

struct Scheduler {
    tasks: BTreeMap<TaskId, Box<Task>>,
    run_queue: VecDeque<TaskId>,
    current: TaskId,
    next_id: TaskId,
}

static SCHED: Mutex<Option<Scheduler>> = Mutex::new(None);
static STARTED: AtomicBool = AtomicBool::new(false);

impl Scheduler {
    fn task(&mut self, id: TaskId) -> &mut Task {
        self.tasks.get_mut(&id).expect("scheduler lost a task")
    }
}

/// Makes the boot context task 0 and creates the idle task.
pub fn init() {
    let mut tasks = BTreeMap::new();
    let kernel = Task {
        id: KERNEL_TASK,
        name: String::from("kernel"),
        state: State::Running,
        critical: true,
        rsp: 0,
        stack: None,
        space: None,
        joinable: false,
        ticks: 0,
    };
    tasks.insert(KERNEL_TASK, Box::new(kernel));
    *SCHED.lock() = Some(Scheduler {
        tasks,
        run_queue: VecDeque::with_capacity(MAX_TASKS + 1),
        current: KERNEL_TASK,
        next_id: IDLE_TASK,
    });
    let idle = spawn_inner("idle", false, None, || loop {
        reap();
        crate::arch::cpu::idle_wait();
    })
    .expect("idle task");
    debug_assert_eq!(idle, IDLE_TASK);
    // The idle task runs only when nothing else is ready, and it is part of
    // the kernel: a fault (or consumed poison) there is a kernel panic.
    without_interrupts(|| {
        let mut s = SCHED.lock();
        let s = s.as_mut().expect("init");
        s.run_queue.retain(|&t| t != IDLE_TASK);
        s.task(IDLE_TASK).critical = true;
    });
    STARTED.store(true, Ordering::Release);
}

/// Options for [`Builder::spawn`].
pub struct Builder {
    name: String,
    space: Option<AddressSpace>,
    joinable: bool,
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder { name: String::from(name), space: None, joinable: true }
    }

    /// Gives the task its own address space.
    pub fn address_space(mut self, space: AddressSpace) -> Builder {
        self.space = Some(space);
        self
    }

    /// Nobody will join the task: it is forgotten once it ends.
    pub fn detached(mut self) -> Builder {
        self.joinable = false;
        self
    }

    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> Result<TaskId, SpawnError> {
        reap();
        let id = spawn_inner(&self.name, self.joinable, self.space, f)?;
        Ok(id)
    }
}

/// Why a task could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    TooManyTasks,
    OutOfMemory,
}

/// Spawns a joinable task in the kernel address space.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<TaskId, SpawnError> {
    Builder::new(name).spawn(f)
}

type Entry = Box<dyn FnOnce() + Send>;

fn spawn_inner(
    name: &str,
    joinable: bool,
    space: Option<AddressSpace>,
    f: impl FnOnce() + Send + 'static,
) -> Result<TaskId, SpawnError> {
    let live = without_interrupts(|| SCHED.lock().as_ref().map_or(0, |s| s.tasks.len()));
    if live >= MAX_TASKS {
        return Err(SpawnError::TooManyTasks);
    }
    let stack = KernelStack::new(STACK_PAGES).ok_or(SpawnError::OutOfMemory)?;
    let entry: Box<Entry> = Box::new(Box::new(f));
    let arg = Box::into_raw(entry) as u64;
    // Initial frame popped by `switch_stack`: r15 r14 r13 r12 rbx rbp, then
    // the return address (the trampoline), then a dummy slot.
    let top = stack.top();
    let frame: [u64; 8] = [0, 0, 0, arg, 0, 0, task_trampoline as *const () as u64, 0];
    let rsp = top - 8 * frame.len() as u64;
    // SAFETY: the stack was just mapped writable and is not in use; the frame
    // fits in its top 64 bytes.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), rsp as *mut u64, frame.len()) };
    without_interrupts(|| {
        let mut s = SCHED.lock();
        let s = s.as_mut().expect("task::init ran");
        let id = s.next_id;
        s.next_id += 1;
        s.tasks.insert(
            id,
            Box::new(Task {
                id,
                name: String::from(name),
                state: State::Ready,
                critical: false,
                rsp,
                stack: Some(stack),
                space,
                joinable,
                ticks: 0,
            }),
        );
        s.run_queue.push_back(id);
        Ok(id)
    })
}

/// First code of every new task: enable interrupts, run the entry, exit.
extern "C" fn task_start(arg: u64) -> ! {
    // SAFETY: `arg` is the `Box<Entry>` leaked by `spawn_inner` for exactly
    // this task, consumed once here.
    let entry: Box<Entry> = unsafe { Box::from_raw(arg as *mut Entry) };
    interrupts::enable();
    entry();
    exit(ExitReason::Returned)
}

#[unsafe(naked)]
extern "C" fn task_trampoline() -> ! {
    core::arch::naked_asm!(
        "mov rdi, r12",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym task_start,
    )
}

/// Saves callee-saved registers and the stack pointer into `*old_rsp`, then
/// resumes the context whose stack pointer is `new_rsp`.
#[unsafe(naked)]
unsafe extern "C" fn switch_stack(old_rsp: *mut u64, new_rsp: u64) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Picks the next task and switches to it. The caller has already set the
/// current task's state. Must run with interrupts off.
fn reschedule() {
    debug_assert!(!interrupts::are_enabled());
    let (old, new_rsp, cr3) = {
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else { return };
        let cur = s.current;
        if s.task(cur).state == State::Ready {
            s.run_queue.push_back(cur);
        }
        let next = loop {
            match s.run_queue.pop_front() {
                Some(id) if s.tasks.get(&id).is_some_and(|t| t.state == State::Ready) => break id,
                Some(_) => continue,
                None => break IDLE_TASK,
            }
        };
        if next == cur {
            s.task(cur).state = State::Running;
            return;
        }
        s.task(next).state = State::Running;
        s.current = next;
        let cr3 = s.task(next).space.as_ref().map_or(crate::mem::kernel_pml4(), AddressSpace::pml4);
        let old: *mut u64 = &mut s.task(cur).rsp;
        (old, s.task(next).rsp, cr3)
    };
    if Cr3::read().0.start_address().as_u64() != cr3 {
        // SAFETY: every address space shares the kernel half, which holds
        // all code and data the switch touches.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(cr3)), Cr3Flags::empty()) };
    }
    // SAFETY: `old` points into a boxed Task that stays in the map at least
    // until it is reaped, which never happens to the running task; `new_rsp`
    // was saved by `switch_stack` or built by `spawn_inner`.
    unsafe { switch_stack(old, new_rsp) };
}

/// Called from the timer interrupt: wake sleepers, preempt the current task.
pub fn on_tick(now: u64) {
    if !STARTED.load(Ordering::Acquire) {
        return;
    }
    {
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else { return };
        let cur = s.current;
        s.task(cur).ticks += 1;
        let mut woken = [0 as TaskId; 16];
        let mut n = 0;
        for t in s.tasks.values_mut() {
            if let State::Sleeping { until_tick } = t.state {
                if until_tick <= now && n < woken.len() {
                    t.state = State::Ready;
                    woken[n] = t.id;
                    n += 1;
                }
            }
        }
        for &id in &woken[..n] {
            s.run_queue.push_back(id);
        }
        if s.task(cur).state == State::Running {
            s.task(cur).state = State::Ready;
        }
    }
    reschedule();
}

/// Gives up the CPU to any other ready task.
pub fn yield_now() {
    without_interrupts(|| {
        if let Some(s) = SCHED.lock().as_mut() {
            let cur = s.current;
            s.task(cur).state = State::Ready;
        }
        reschedule();
    });
}

/// Sleeps for at least `ticks` timer ticks.
pub fn sleep_ticks(ticks: u64) {
    let until = crate::time::ticks() + ticks.max(1);
    without_interrupts(|| {
        if let Some(s) = SCHED.lock().as_mut() {
            let cur = s.current;
            s.task(cur).state = State::Sleeping { until_tick: until };
        }
        reschedule();
    });
}

/// Ends the current task.
pub fn exit(reason: ExitReason) -> ! {
    interrupts::disable();
    {
        let mut guard = SCHED.lock();
        let s = guard.as_mut().expect("task::init ran");
        let cur = s.current;
        s.task(cur).state = State::Dead(reason);
    }
    reschedule();
    unreachable!("a dead task was resumed");
}

/// The running task's id.
pub fn current() -> TaskId {
    without_interrupts(|| SCHED.lock().as_ref().map_or(KERNEL_TASK, |s| s.current))
}

/// Why killing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillError {
    NoSuchTask,
    /// The kernel and idle tasks cannot be killed.
    Protected,
    AlreadyDead,
}

/// Kills task `id`. It never runs again; its stack and address space are
/// freed when it is reaped.
pub fn kill(id: TaskId) -> Result<(), KillError> {
    if id == KERNEL_TASK || id == IDLE_TASK {
        return Err(KillError::Protected);
    }
    if id == current() {
        exit(ExitReason::Killed);
    }
    without_interrupts(|| {
        let mut guard = SCHED.lock();
        let s = guard.as_mut().ok_or(KillError::NoSuchTask)?;
        let t = s.tasks.get_mut(&id).ok_or(KillError::NoSuchTask)?;
        if matches!(t.state, State::Dead(_)) {
            return Err(KillError::AlreadyDead);
        }
        t.state = State::Dead(ExitReason::Killed);
        s.run_queue.retain(|&q| q != id);
        Ok(())
    })
}

/// Waits for task `id` to end and returns why it ended.
pub fn join(id: TaskId) -> Option<ExitReason> {
    loop {
        let state = without_interrupts(|| {
            let guard = SCHED.lock();
            guard.as_ref()?.tasks.get(&id).map(|t| t.state)
        })?;
        if let State::Dead(reason) = state {
            let task = without_interrupts(|| SCHED.lock().as_mut()?.tasks.remove(&id));
            drop(task); // frees stack and address space, outside the lock
            return Some(reason);
        }
        sleep_ticks(1);
    }
}

/// Frees the resources of dead tasks (not the current one); forgets dead
/// detached tasks.
pub fn reap() {
    let mut freed: Vec<Box<Task>> = Vec::new();
    let mut resources: Vec<(Option<KernelStack>, Option<AddressSpace>)> = Vec::new();
    without_interrupts(|| {
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else { return };
        let cur = s.current;
        let dead: Vec<TaskId> =
            s.tasks.values().filter(|t| t.id != cur && matches!(t.state, State::Dead(_))).map(|t| t.id).collect();
        for id in dead {
            if s.task(id).joinable {
                let t = s.task(id);
                resources.push((t.stack.take(), t.space.take()));
            } else if let Some(t) = s.tasks.remove(&id) {
                freed.push(t);
            }
        }
    });
    drop(resources);
    drop(freed);
}

/// Handles a CPU exception: kills the current task if it may be killed,
/// otherwise panics the kernel with the report. Never returns.
pub fn on_fault(fault: Fault) -> ! {
    // No allocation and no blocking here: the fault may have hit anywhere.
    // Every kernel lock is held with interrupts off, so a task that faulted
    // with interrupts on holds none of them and can be killed safely.
    let mut name = [0u8; 32];
    let mut name_len = 0;
    let (id, killable) = match SCHED.try_lock() {
        Some(guard) => match guard.as_ref() {
            Some(s) => {
                let t = s.tasks.get(&s.current);
                if let Some(t) = t {
                    name_len = t.name.len().min(name.len());
                    name[..name_len].copy_from_slice(&t.name.as_bytes()[..name_len]);
                }
                let critical = t.is_none_or(|t| t.critical);
                (s.current, !critical && fault.interrupts_were_enabled())
            }
            None => (KERNEL_TASK, false),
        },
        // A fault while the scheduler lock is held is a kernel bug.
        None => (KERNEL_TASK, false),
    };
    if !killable {
        crate::panic::kernel_fault(&fault, id);
    }
    let name = core::str::from_utf8(&name[..name_len]).unwrap_or("?");
    if let Some(guard) = fault.cr2.and_then(KernelStack::guard_page_of) {
        crate::error!("task {id} ({name}) overflowed its stack (guard page {guard:#x})");
    }
    crate::error!("task {id} ({name}) killed: {fault}");
    exit(ExitReason::Fault(fault))
}

/// For the #MC and panic handlers: the current task and whether it may be
/// killed (not critical, interrupts were on, scheduler lock free).
/// Lock-free: a held scheduler lock means "kernel context".
pub fn current_for_machine_check(interrupts_were_on: bool) -> (TaskId, bool) {
    match SCHED.try_lock() {
        Some(guard) => match guard.as_ref() {
            Some(s) => {
                let critical = s.tasks.get(&s.current).is_none_or(|t| t.critical);
                (s.current, interrupts_were_on && !critical)
            }
            None => (KERNEL_TASK, false),
        },
        None => (KERNEL_TASK, false),
    }
}

/// Kills the current task because it consumed poison (called from the #MC
/// handler for a task `current_for_machine_check` called killable, so no
/// kernel lock is held by the interrupted code).
///
/// The report goes through the lock-free writer; `exit` then takes the
/// scheduler lock, which `current_for_machine_check` found free, and nothing
/// else can run on this CPU before it does.
pub fn kill_current_on_machine_check(rip: u64, phys: u64) -> ! {
    let id = match SCHED.try_lock() {
        Some(guard) => guard.as_ref().map_or(KERNEL_TASK, |s| s.current),
        None => KERNEL_TASK,
    };
    crate::log::emergency(format_args!(
        "machine check: task {id} killed: it consumed poisoned memory at {phys:#x} (RIP {rip:#x})\n"
    ));
    exit(ExitReason::MachineCheck { rip, phys })
}

/// One line per task for the `tasks` command.
pub fn for_each(mut f: impl FnMut(TaskId, &str, &'static str, u64, bool)) {
    let rows: Vec<(TaskId, String, &'static str, u64, bool)> = without_interrupts(|| {
        let guard = SCHED.lock();
        let Some(s) = guard.as_ref() else { return Vec::new() };
        s.tasks
            .values()
            .map(|t| {
                let state = match t.state {
                    State::Ready => "ready",
                    State::Running => "running",
                    State::Sleeping { .. } => "sleeping",
                    State::Dead(ExitReason::Returned) => "exited",
                    State::Dead(ExitReason::Killed) => "killed",
                    State::Dead(ExitReason::Fault(_)) => "faulted",
                    State::Dead(ExitReason::MachineCheck { .. }) => "poisoned",
                    State::Dead(ExitReason::Panicked) => "panicked",
                };
                (t.id, t.name.clone(), state, t.ticks, t.space.is_some())
            })
            .collect()
    });
    for (id, name, state, ticks, own_space) in rows {
        f(id, &name, state, ticks, own_space);
    }
}

// ---------------------------------------------------------------- console

crate::shell_command!(TASKS_CMD, name: "tasks", usage: "tasks", help: "list tasks", run: |_| {
    crate::kprintln!("  ID  STATE     TICKS  SPACE   NAME");
    for_each(|id, name, state, ticks, own| {
        crate::kprintln!("{id:4}  {state:<8} {ticks:6}  {:<6}  {name}", if own { "own" } else { "kernel" });
    });
});

crate::shell_command!(KILL_CMD, name: "kill", usage: "kill ID", help: "kill a task", run: |args| {
    match args.first().and_then(|a| a.parse::<TaskId>().ok()) {
        Some(id) => match kill(id) {
            Ok(()) => crate::kprintln!("killed task {id}"),
            Err(e) => crate::kprintln!("kill {id}: {e:?}"),
        },
        None => crate::kprintln!("usage: kill ID"),
    }
});

/// An address nothing maps (low canonical half, never used).
const UNMAPPED: u64 = 0xdead_0000;

crate::shell_command!(FAULT_CMD, name: "fault", usage: "fault task|kernel|spin",
    help: "fault in a new task (killed), in the kernel (panic), or spawn a spinning task",
    run: |args| match args.first().copied() {
        Some("task") => {
            match Builder::new("faulter").detached().spawn(|| {
                // SAFETY: deliberately not sound: this reads an unmapped
                // address to demonstrate that the faulting task is killed.
                let v = unsafe { (UNMAPPED as *const u64).read_volatile() };
                crate::kprintln!("unreachable: read {v}");
            }) {
                Ok(id) => {
                    crate::kprintln!("spawned task {id}, which reads {UNMAPPED:#x}");
                    sleep_ticks(2);
                }
                Err(e) => crate::kprintln!("spawn: {e:?}"),
            }
        }
        Some("kernel") => {
            crate::kprintln!("reading {UNMAPPED:#x} in the kernel task");
            // SAFETY: deliberately not sound: a fault in the critical kernel
            // task, to demonstrate the panic report and exit status.
            let v = unsafe { (UNMAPPED as *const u64).read_volatile() };
            crate::kprintln!("unreachable: read {v}");
        }
        Some("spin") => match Builder::new("spinner").detached().spawn(|| loop { core::hint::spin_loop() }) {
            Ok(id) => crate::kprintln!("spawned spinning task {id}"),
            Err(e) => crate::kprintln!("spawn: {e:?}"),
        },
        _ => crate::kprintln!("usage: fault task|kernel|spin"),
    }
);

// ---------------------------------------------------------------- tests

mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use fsdax_ktest::{kassert, kassert_eq, ktest};

    use super::*;

    ktest!(spawn_and_join, {
        let hit = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&hit);
        let id = spawn("child", move || {
            h.store(7, Ordering::SeqCst);
        })
        .map_err(|_| fail("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Returned));
        kassert_eq!(hit.load(Ordering::SeqCst), 7);
        kassert_eq!(join(id), None);
        Ok(())
    });

    ktest!(faulting_task_is_killed_and_reported, {
        let id = spawn("faulter", || {
            // SAFETY: deliberately reads an unmapped address: the point of
            // the test is that this task dies and nothing else does.
            let _ = unsafe { (UNMAPPED as *const u64).read_volatile() };
        })
        .map_err(|_| fail("spawn"))?;
        match join(id) {
            Some(ExitReason::Fault(f)) => {
                kassert_eq!(f.vector, 14);
                kassert_eq!(f.cr2, Some(UNMAPPED));
            }
            _ => return Err(fail("the task was not killed by its page fault")),
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
        .map_err(|_| fail("spawn"))?;
        match join(id) {
            Some(ExitReason::Fault(f)) => kassert!(f.vector == 14 || f.vector == 8, "not a page/double fault"),
            _ => return Err(fail("stack overflow was not caught")),
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
            .map_err(|_| fail("spawn"))?;
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
        let id = spawn("yielder", move || r.store(true, Ordering::SeqCst)).map_err(|_| fail("spawn"))?;
        // Interrupts off: only yield_now can switch to the new task.
        x86_64::instructions::interrupts::without_interrupts(|| {
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
        .map_err(|_| fail("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Panicked));
        Ok(())
    });

    ktest!(kill_stops_a_spinning_task, {
        let id = spawn("spinner", || loop {
            core::hint::spin_loop();
        })
        .map_err(|_| fail("spawn"))?;
        sleep_ticks(2);
        kassert_eq!(kill(id), Ok(()));
        kassert_eq!(join(id), Some(ExitReason::Killed));
        kassert_eq!(kill(KERNEL_TASK), Err(KillError::Protected));
        Ok(())
    });

    ktest!(task_with_own_address_space, {
        use fsdax_mm::paging::{Flags, PageSize};
        let space = AddressSpace::new().ok_or(fail("space"))?;
        let frame = crate::mem::alloc_frame().ok_or(fail("frame"))?;
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        // SAFETY: a test-owned frame mapped into the task's private space;
        // the frame is freed only after the task (and space) are gone.
        unsafe { space.map(0x5000_0000, frame, 4096, flags, PageSize::Size4K) }.map_err(|_| fail("map"))?;
        let id = Builder::new("private")
            .address_space(space)
            .spawn(|| {
                // SAFETY: mapped in this task's own address space (above).
                unsafe { (0x5000_0000 as *mut u64).write_volatile(0xabcd) };
            })
            .map_err(|_| fail("spawn"))?;
        kassert_eq!(join(id), Some(ExitReason::Returned));
        // SAFETY: the frame through the direct map; the task is gone.
        kassert_eq!(unsafe { (crate::mem::phys_to_virt(frame) as *const u64).read_volatile() }, 0xabcd);
        // The same address in a task without that space faults.
        let id = spawn("other", || {
            // SAFETY: deliberately unmapped here; the task must be killed.
            unsafe { (0x5000_0000 as *mut u64).write_volatile(1) };
        })
        .map_err(|_| fail("spawn"))?;
        kassert!(matches!(join(id), Some(ExitReason::Fault(_))));
        crate::mem::free_frame(frame);
        Ok(())
    });

    fn fail(message: &'static str) -> fsdax_ktest::Failure {
        fsdax_ktest::Failure { file: file!(), line: line!(), message }
    }
}
