//! Processes: ring-3 programs that speak the Linux x86_64 system-call ABI.
//!
//! A process is one kernel task (its scheduler entity, kernel stack and
//! user CPU state) plus what this module keeps: its memory ([`vm::Vm`]),
//! file descriptors ([`fd::FdTable`]), signal state ([`signal`]), parent
//! and exit status, rusage counters and name. `pid == tid ==` the task id;
//! one task per process (no threads). pid 1 is not special: the kernel
//! reaps orphans, and processes the console started are reaped by the
//! console.
//!
//! Life cycle:
//! - [`spawn`] (console, kernel command line) loads a program
//!   ([`exec::load`]) and starts a task that enters user mode;
//! - `clone(CLONE_VM|CLONE_VFORK|SIGCHLD)` / `vfork` ([`vfork`]) start a
//!   child in the parent's memory; the parent sleeps until the child calls
//!   `execve` or ends;
//! - `execve` ([`Process::exec`]) replaces the memory; on failure the old
//!   program goes on with the error;
//! - every end goes through [`exit`], in the process's own task: status
//!   recorded, descriptors closed, memory released, a vfork parent
//!   released, children handed to the kernel, the parent (or the console)
//!   told.
//!
//! Kills are deferred: a fatal signal takes effect at the process's next
//! return to user mode ([`exit_to_user`], registered with the hal) or ends
//! an interruptible sleep (`wait4`, `nanosleep`, console reads, a vfork
//! parent's wait), which returns and then meets the same check. So kernel
//! code is never killed while it holds a lock.
//!
//! Lock order: the process table ([`TABLE`], a spin lock) is a leaf: it is
//! never held while taking a wait queue's lock or the scheduler's.

pub mod console;
pub mod exec;
pub mod fd;
pub mod shell;
pub mod signal;
mod tests;
pub mod vm;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use fsdax_abi::request::McePolicy;
use fsdax_abi::signal::{self as sig, Exit};
use fsdax_abi::wire::Rusage;
use fsdax_hal::sync::IrqMutex;
use fsdax_hal::task::UserCpuInit;
use fsdax_hal::trap::{Fault, TrapFrame};

use self::exec::ExecError;
use self::fd::FdTable;
use self::signal::{Pending, SignalState, Verdict};
use self::vm::{Access, FaultError, Vm};
use crate::sync::{Mutex, WaitQueue};
use crate::task::{self, TaskId};

/// A process id (the id of its task).
pub type Pid = TaskId;

/// Where a process's end is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// A process, which reaps it with `wait4`.
    Process(Pid),
    /// The console, which reaps it and prints how it ended.
    Console,
    /// Nobody (an orphan): the kernel reaps it when it ends.
    Kernel,
}

/// How a process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running (or ready, or sleeping in the kernel).
    Alive,
    /// Ended; its status waits for its parent.
    Zombie(Exit),
}

/// Why a signal was raised, for the console line of a process it kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalCause {
    /// The signal.
    pub sig: u32,
    /// `si_code`.
    pub code: i32,
    /// The faulting address (faults), if any.
    pub addr: Option<u64>,
    /// Where the process was.
    pub rip: u64,
}

/// A process.
pub struct Process {
    pid: AtomicU64,
    name: IrqMutex<[u8; 16]>,
    parent: IrqMutex<Parent>,
    state: IrqMutex<State>,
    /// Its memory (None once it ended).
    vm: IrqMutex<Option<Arc<Vm>>>,
    /// Descriptors.
    pub fds: Mutex<FdTable>,
    /// The current directory (an inode of the mounted file system).
    pub cwd: AtomicU64,
    /// The file-mode creation mask (`umask`): kept, and without effect (the
    /// file system has no permissions).
    pub umask: AtomicU32,
    /// Signal actions, mask, alternate stack.
    pub signals: IrqMutex<SignalState>,
    /// Pending signals.
    pub pending: Pending,
    cause: IrqMutex<Option<SignalCause>>,
    /// `exit`/`exit_group` asked to end with this status (carried out at
    /// the return to user mode, once the system call let go of everything).
    exiting: IrqMutex<Option<Exit>>,
    /// Wakes the process's interruptible sleeps (a child ended, a vfork
    /// child let go, a signal arrived); the value counts events.
    pub events: WaitQueue<u64>,
    /// A vfork child: set when it calls `execve` or ends.
    vfork_done: AtomicBool,
    /// `set_tid_address`.
    pub clear_child_tid: AtomicU64,
    /// `prctl(PR_MCE_KILL)`.
    pub mce_policy: IrqMutex<McePolicy>,
    /// Page faults resolved without I/O.
    pub minflt: AtomicU64,
    /// Page faults that needed I/O (DAX faults count here later).
    pub majflt: AtomicU64,
    /// Children's rusage, added when they are reaped (`RUSAGE_CHILDREN`).
    pub children_usage: IrqMutex<Rusage>,
    final_usage: IrqMutex<Rusage>,
}

impl core::fmt::Debug for Process {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid()).field("name", &self.name()).finish_non_exhaustive()
    }
}

/// Every process, zombies included, by pid.
static TABLE: IrqMutex<BTreeMap<Pid, Arc<Process>>> = IrqMutex::new(BTreeMap::new());
/// Woken when a process the console started ends.
pub static CONSOLE_EVENTS: WaitQueue<u64> = WaitQueue::new(0);

fn name_bytes(name: &[u8]) -> [u8; 16] {
    let mut n = [0u8; 16];
    let len = name.len().min(15);
    n[..len].copy_from_slice(&name[..len]);
    n
}

/// The last component of a path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

impl Process {
    fn new(name: &[u8], parent: Parent, vm: Arc<Vm>, fds: FdTable, signals: SignalState, cwd: u64) -> Arc<Process> {
        Arc::new(Process {
            pid: AtomicU64::new(0),
            name: IrqMutex::new(name_bytes(name)),
            parent: IrqMutex::new(parent),
            state: IrqMutex::new(State::Alive),
            vm: IrqMutex::new(Some(vm)),
            fds: Mutex::new(fds),
            cwd: AtomicU64::new(cwd),
            umask: AtomicU32::new(0o022),
            signals: IrqMutex::new(signals),
            pending: Pending::default(),
            cause: IrqMutex::new(None),
            exiting: IrqMutex::new(None),
            events: WaitQueue::new(0),
            vfork_done: AtomicBool::new(false),
            clear_child_tid: AtomicU64::new(0),
            mce_policy: IrqMutex::new(McePolicy::Default),
            minflt: AtomicU64::new(0),
            majflt: AtomicU64::new(0),
            children_usage: IrqMutex::new(Rusage::default()),
            final_usage: IrqMutex::new(Rusage::default()),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid.load(Ordering::Acquire)
    }

    /// Its name (`comm`: at most 15 bytes).
    pub fn name(&self) -> String {
        let n = *self.name.lock();
        let len = n.iter().position(|&b| b == 0).unwrap_or(n.len());
        String::from_utf8_lossy(&n[..len]).into_owned()
    }

    /// The raw 16-byte name (`PR_GET_NAME`).
    pub fn name_raw(&self) -> [u8; 16] {
        *self.name.lock()
    }

    /// Sets the name (`PR_SET_NAME`, `execve`).
    pub fn set_name(&self, name: &[u8]) {
        *self.name.lock() = name_bytes(name);
    }

    /// Its parent's pid for `getppid` (0 for the console or the kernel).
    pub fn ppid(&self) -> Pid {
        match *self.parent.lock() {
            Parent::Process(p) => p,
            _ => 0,
        }
    }

    /// Its state.
    pub fn state(&self) -> State {
        *self.state.lock()
    }

    /// Its memory (None once it ended).
    pub fn vm(&self) -> Option<Arc<Vm>> {
        self.vm.lock().clone()
    }

    /// `exit`/`exit_group`: the process ends with `how` as it returns from
    /// the system call.
    pub fn request_exit(&self, how: Exit) {
        *self.exiting.lock() = Some(how);
    }

    /// Raises `sig` and wakes the process if it sleeps interruptibly.
    pub fn signal(&self, sig: u32) {
        self.pending.raise(sig);
        self.wake();
    }

    /// Raises a signal the process cannot survive (a fault), with its
    /// cause for the console line.
    pub fn force_signal(&self, cause: SignalCause) {
        *self.cause.lock() = Some(cause);
        self.pending.force(cause.sig);
        self.wake();
    }

    fn wake(&self) {
        self.events.update_and_notify(true, |n| *n += 1);
        console::wake_readers();
        let pid = self.pid();
        if pid != 0 {
            // A process in nanosleep sleeps in the scheduler.
            let _ = task::wake(pid);
        }
    }

    /// Whether a signal that ends the process is pending (interruptible
    /// sleeps check it and return EINTR).
    pub fn fatal_pending(&self) -> bool {
        self.pending.any() && self.pending.fatal(&self.signals.lock())
    }

    /// The process's resource usage now.
    pub fn usage(&self) -> Rusage {
        if matches!(self.state(), State::Zombie(_)) {
            return *self.final_usage.lock();
        }
        let (user, total) = task::cpu_ticks(self.pid()).unwrap_or((0, 0));
        let us_per_tick = 1_000_000 / crate::time::TICK_HZ;
        let rss = self.vm().map_or(0, |v| v.mapped_bytes() / 1024);
        Rusage {
            utime_us: user * us_per_tick,
            stime_us: total.saturating_sub(user) * us_per_tick,
            maxrss_kib: rss,
            minflt: self.minflt.load(Ordering::Relaxed),
            majflt: self.majflt.load(Ordering::Relaxed),
            ..Rusage::default()
        }
    }
}

/// The running process (None in a kernel task).
pub fn current() -> Option<Arc<Process>> {
    let id = task::current();
    TABLE.lock().get(&id).cloned()
}

/// The running process, without waiting for any lock (fault paths).
pub fn try_current() -> Option<Arc<Process>> {
    let id = task::try_current()?;
    TABLE.try_lock()?.get(&id).cloned()
}

/// A process by pid.
pub fn get(pid: Pid) -> Option<Arc<Process>> {
    TABLE.lock().get(&pid).cloned()
}

/// Every process, by pid.
pub fn all() -> Vec<Arc<Process>> {
    TABLE.lock().values().cloned().collect()
}

/// Why a process could not be started.
#[derive(Debug, Clone)]
pub enum SpawnError {
    /// The program could not be loaded.
    Exec(ExecError),
    /// No task could be created.
    Task(task::SpawnError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::Exec(e) => write!(f, "{e}"),
            SpawnError::Task(e) => write!(f, "{e}"),
        }
    }
}

/// Starts the task of `proc`, which enters user mode with `frame`.
fn start_task(proc: &Arc<Process>, frame: TrapFrame, user: UserCpuInit) -> Result<Pid, task::SpawnError> {
    let space = proc.vm().ok_or(task::SpawnError::OutOfMemory)?.space().clone();
    let p = Arc::clone(proc);
    let name = proc.name();
    let id = task::Builder::new(&name).detached().user(space, user).spawn(move || {
        // The table must know us before our first system call.
        while p.pid() == 0 {
            task::yield_now();
        }
        drop(p);
        fsdax_hal::trap::enter_user(&frame)
    })?;
    TABLE.lock().insert(id, Arc::clone(proc));
    proc.pid.store(id, Ordering::Release);
    Ok(id)
}

/// Loads `path` and starts it as a new process with `argv` and `envp`.
pub fn spawn(path: &str, argv: &[Vec<u8>], envp: &[Vec<u8>], parent: Parent) -> Result<Pid, SpawnError> {
    let root = fsdax_fs::ROOT_INO;
    let loaded = exec::load(root, path, argv, envp).map_err(SpawnError::Exec)?;
    let proc = Process::new(
        basename(path).as_bytes(),
        parent,
        Arc::new(loaded.vm),
        fd::console_table(),
        SignalState::default(),
        root,
    );
    start_task(&proc, TrapFrame::new_user(loaded.entry, loaded.rsp), UserCpuInit::fresh()).map_err(SpawnError::Task)
}

/// `vfork` and `clone(CLONE_VM|CLONE_VFORK|SIGCHLD, stack)`: a child that
/// runs in the parent's memory from the system call's return (`rax` 0, the
/// given stack if any), while the parent sleeps until the child calls
/// `execve` or ends. Returns the child's pid (or EINTR if the parent was
/// killed meanwhile: it dies at its return to user mode).
pub fn vfork(parent: &Arc<Process>, frame: &TrapFrame, stack: u64) -> Result<Pid, fsdax_abi::Errno> {
    let vm = parent.vm().ok_or(fsdax_abi::Errno::ENOMEM)?;
    let fds = parent.fds.lock().clone();
    let signals = parent.signals.lock().clone();
    let cwd = parent.cwd.load(Ordering::Relaxed);
    let child = Process::new(&parent.name_raw(), Parent::Process(parent.pid()), vm, fds, signals, cwd);
    child.umask.store(parent.umask.load(Ordering::Relaxed), Ordering::Relaxed);
    let mut f = *frame;
    f.rax = 0;
    if stack != 0 {
        f.rsp = stack;
    }
    let pid = start_task(&child, f, UserCpuInit::snapshot()).map_err(|_| fsdax_abi::Errno::EAGAIN)?;
    parent.events.wait_until(|_, _| {
        (child.vfork_done.load(Ordering::Acquire) || parent.pending.any() && parent.fatal_pending()).then_some(())
    });
    Ok(pid)
}

impl Process {
    /// `execve` after its arguments were copied in: on success the process
    /// runs the new program from `frame` (its memory replaced, close-on-exec
    /// descriptors closed, handled signals reset, a vfork parent released).
    pub fn exec(&self, path: &str, argv: &[Vec<u8>], envp: &[Vec<u8>], frame: &mut TrapFrame) -> Result<(), ExecError> {
        let loaded = exec::load(self.cwd.load(Ordering::Relaxed), path, argv, envp)?;
        let vm = Arc::new(loaded.vm);
        let old_space = fsdax_hal::task::replace_address_space(Some(vm.space().clone()));
        let old_vm = self.vm.lock().replace(vm);
        drop(old_space);
        drop(old_vm);
        let closed = self.fds.lock().close_on_exec();
        drop(closed);
        self.signals.lock().reset_for_exec();
        self.set_name(basename(path).as_bytes());
        self.clear_child_tid.store(0, Ordering::Relaxed);
        fsdax_hal::task::reset_user_cpu();
        *frame = TrapFrame::new_user(loaded.entry, loaded.rsp);
        self.release_vfork_parent();
        Ok(())
    }

    fn release_vfork_parent(&self) {
        if self.vfork_done.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Parent::Process(ppid) = *self.parent.lock() {
            if let Some(p) = get(ppid) {
                p.events.update_and_notify(true, |n| *n += 1);
            }
        }
    }
}

/// Ends the current process with `exit`. Runs in its own task, at its
/// return to user mode (so nothing up the stack holds a reference to it or a
/// lock); never returns.
pub fn exit(p: Arc<Process>, how: Exit) -> ! {
    let pid = p.pid();
    if let Exit::Signal(s) = how {
        let cause = *p.cause.lock();
        report_kill(pid, &p.name(), s, cause);
    }
    *p.final_usage.lock() = p.usage();
    let closed = p.fds.lock().clear();
    drop(closed);
    p.release_vfork_parent();
    // Memory: load the kernel's tables, then drop this process's hold.
    drop(fsdax_hal::task::replace_address_space(None));
    drop(p.vm.lock().take());
    // Children: zombies are reaped, live ones become the kernel's.
    let mut reaped = Vec::new();
    {
        let mut table = TABLE.lock();
        for c in table.values() {
            if *c.parent.lock() == Parent::Process(pid) {
                *c.parent.lock() = Parent::Kernel;
                if matches!(c.state(), State::Zombie(_)) {
                    reaped.push(c.pid());
                }
            }
        }
        for c in &reaped {
            if let Some(c) = table.remove(c) {
                reaped_children_dropped(c);
            }
        }
    }
    *p.state.lock() = State::Zombie(how);
    let parent = *p.parent.lock();
    match parent {
        Parent::Process(ppid) => match get(ppid) {
            Some(pp) => {
                pp.pending.raise(sig::SIGCHLD);
                pp.events.update_and_notify(true, |n| *n += 1);
            }
            None => {
                TABLE.lock().remove(&pid);
            }
        },
        Parent::Console => CONSOLE_EVENTS.update_and_notify(true, |n| *n += 1),
        Parent::Kernel => {
            TABLE.lock().remove(&pid);
        }
    }
    drop(p);
    task::exit(task::ExitReason::Returned)
}

/// Keeps the drop of a reaped process out of the table's lock scope.
fn reaped_children_dropped(c: Arc<Process>) {
    // Dropped here, with the table lock held: a zombie holds no memory and
    // no descriptors, so dropping it takes no other lock.
    drop(c);
}

fn report_kill(pid: Pid, name: &str, s: u32, cause: Option<SignalCause>) {
    match cause.filter(|c| c.sig == s) {
        Some(SignalCause { addr: Some(a), rip, code, .. }) => crate::kprintln!(
            "process {pid} ({name}) killed by {} at {a:#x} ({}, RIP {rip:#x})",
            sig::name(s),
            match (s, code) {
                (sig::SIGSEGV, sig::SEGV_MAPERR) => "address not mapped",
                (sig::SIGSEGV, sig::SEGV_ACCERR) => "access not allowed",
                (sig::SIGBUS, sig::BUS_MCEERR_AR) => "poisoned memory",
                _ => "fault",
            }
        ),
        Some(SignalCause { rip, .. }) => {
            crate::kprintln!("process {pid} ({name}) killed by {} (RIP {rip:#x})", sig::name(s))
        }
        None => crate::kprintln!("process {pid} ({name}) killed by {}", sig::name(s)),
    }
}

/// Takes the status of a zombie `pid` (its parent or the console reaps it).
pub fn reap(pid: Pid) -> Option<(Exit, Rusage)> {
    let mut table = TABLE.lock();
    let p = table.get(&pid)?;
    let State::Zombie(how) = p.state() else { return None };
    let usage = *p.final_usage.lock();
    table.remove(&pid);
    Some((how, usage))
}

/// Children of `parent` (live and zombie) matching `want` (None: any).
pub fn children(parent: Pid, want: Option<Pid>) -> Vec<Arc<Process>> {
    TABLE
        .lock()
        .values()
        .filter(|c| *c.parent.lock() == Parent::Process(parent) && want.is_none_or(|w| c.pid() == w))
        .cloned()
        .collect()
}

// ------------------------------------------------------------------ hooks

/// Registers the process hooks with the hal.
pub fn init() {
    use fsdax_hal::trap;
    let r = [
        trap::register_user_trap_handler(on_user_trap),
        trap::register_exit_to_user_handler(exit_to_user),
        trap::register_user_copy_fault_resolver(resolve_copy_fault),
        trap::register_syscall_handler(crate::syscall::dispatch),
    ];
    if r.iter().any(Result::is_err) {
        crate::error!("process: a user-mode hook was already registered");
    }
}

/// An exception in user mode: a demand fault is resolved; anything else
/// raises the signal Linux would (its default action ends the process at
/// the return to user mode).
fn on_user_trap(frame: &mut TrapFrame, fault: &Fault) {
    let Some(p) = current() else {
        // A task without a process cannot be in user mode.
        crate::panic::kernel_fault(fault, task::current(), "?", fsdax_kcore::kill::PanicReason::CriticalTask)
    };
    if fault.vector == 14 {
        let addr = fault.cr2.unwrap_or(0);
        let code = fault.error_code.unwrap_or(0);
        let access = if code & 0x10 != 0 {
            Access::Exec
        } else if code & 2 != 0 {
            Access::Write
        } else {
            Access::Read
        };
        let result = match p.vm() {
            Some(vm) => vm.fault(addr, access, true),
            None => Err(FaultError::NotMapped),
        };
        match result {
            Ok(()) => {
                p.minflt.fetch_add(1, Ordering::Relaxed);
            }
            Err(FaultError::OutOfMemory) => {
                crate::kprintln!("process {} ({}) is out of memory at {addr:#x}", p.pid(), p.name());
                p.force_signal(SignalCause { sig: sig::SIGKILL, code: 0, addr: Some(addr), rip: frame.rip });
            }
            Err(e) => {
                let code = if e == FaultError::Denied { sig::SEGV_ACCERR } else { sig::SEGV_MAPERR };
                p.force_signal(SignalCause { sig: sig::SIGSEGV, code, addr: Some(addr), rip: frame.rip });
            }
        }
        return;
    }
    let (s, code) = sig::for_trap(fault.vector);
    p.force_signal(SignalCause { sig: s, code, addr: None, rip: frame.rip });
}

/// Before every return to user mode: a fatal signal ends the process here.
fn exit_to_user(_frame: &mut TrapFrame) {
    let Some(p) = current() else { return };
    let requested = *p.exiting.lock();
    if let Some(how) = requested {
        exit(p, how);
    }
    if !p.pending.any() {
        return;
    }
    let verdict = p.pending.decide(&p.signals.lock());
    if let Verdict::Die(how) = verdict {
        exit(p, how);
    }
}

/// A page fault inside a user copy: resolved only if no lock must be
/// waited for (the copy's caller may hold some).
fn resolve_copy_fault(addr: u64, write: bool) -> bool {
    let Some(p) = try_current() else { return false };
    let Some(vm) = p.vm.try_lock().and_then(|v| v.clone()) else { return false };
    let access = if write { Access::Write } else { Access::Read };
    let ok = vm.fault(addr, access, false).is_ok();
    if ok {
        p.minflt.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// A machine check consumed poison in user mode: the process is killed
/// with SIGBUS (BUS_MCEERR_AR) at its return to user mode.
pub fn on_user_machine_check(rip: u64) -> bool {
    let Some(p) = try_current() else { return false };
    p.force_signal(SignalCause { sig: sig::SIGBUS, code: sig::BUS_MCEERR_AR, addr: None, rip });
    true
}
