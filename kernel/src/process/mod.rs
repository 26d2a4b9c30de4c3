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
//! Signals ([`signal`]) are delivered, and kills carried out, at the
//! process's next return to user mode ([`exit_to_user`], registered with
//! the hal); a signal that will run a handler or kill also ends an
//! interruptible sleep (`wait4`, `nanosleep`, pipe and console reads,
//! `pause`; a vfork parent's wait only for a fatal one), which returns
//! EINTR (or restarts, `SA_RESTART`) and then meets the same hook. So
//! kernel code is never killed while it holds a lock.
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
use fsdax_abi::wire::{Rusage, SigFields, Siginfo};
use fsdax_abi::Errno;
use fsdax_hal::sync::IrqMutex;
use fsdax_hal::task::UserCpuInit;
use fsdax_hal::trap::{Fault, TrapFrame};
use fsdax_kcore::signal::{Sent, SignalState};

use self::exec::ExecError;
use self::fd::FdTable;
use self::signal::{FaultRegs, Signals};
use self::vm::{Access, FaultError, Vm};
use crate::sync::{Mutex, WaitQueue};
use crate::task::{self, TaskId};

/// A process id (the id of its task).
pub type Pid = TaskId;

/// The parent pid that programs the console starts, and orphans, see: the
/// console and the kernel stand in for init, as on Linux, where such a
/// process's parent is pid 1. No process has pid 1 (task 1 is the idle
/// task), so the number names nothing else.
pub const INIT_PID: Pid = 1;

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

/// The signal that killed a process, for the console and its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Death {
    /// The signal's `siginfo` (code, fault address, sender).
    pub info: Siginfo,
    /// Where the process was.
    pub rip: u64,
}

/// A reaped process: how it ended, what it used, and what killed it.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub how: Exit,
    pub usage: Rusage,
    pub death: Option<Death>,
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
    /// Process group (`kill(0, ..)`, `kill(-pgid, ..)`): a program the
    /// console starts leads its own; children join their parent's.
    pgid: AtomicU64,
    /// Signal actions, mask, alternate stack, pending signals.
    pub signals: Signals,
    /// The last CPU fault, for `sigcontext`.
    pub last_fault: IrqMutex<FaultRegs>,
    /// Poison this process consumed in user mode (a machine check), waiting
    /// for the return to user mode: the physical address with bit 0 set
    /// (0: none; 1: address unknown).
    consumed_poison: AtomicU64,
    death: IrqMutex<Option<Death>>,
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
            pgid: AtomicU64::new(0),
            signals: Signals::new(signals),
            last_fault: IrqMutex::new(FaultRegs::default()),
            consumed_poison: AtomicU64::new(0),
            death: IrqMutex::new(None),
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
            Parent::Console | Parent::Kernel => INIT_PID,
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

    /// Its process group.
    pub fn pgid(&self) -> Pid {
        self.pgid.load(Ordering::Acquire)
    }

    /// Sends a signal (`kill`, `tgkill`, the console, SIGCHLD, SIGPIPE):
    /// queued, merged or discarded as its action says, and the process is
    /// woken from an interruptible sleep. A process that ended takes none
    /// (Ok, as Linux does for a zombie).
    pub fn send(&self, info: Siginfo) -> Result<(), Errno> {
        if self.state() != State::Alive {
            return Ok(());
        }
        if self.signals.lock().send(info)? == Sent::Queued {
            self.wake();
        }
        Ok(())
    }

    /// Sends `sig` from the console (`kill PID SIG`; `SI_USER`, pid 0).
    pub fn signal(&self, sig: u32) {
        let _ = self.send(sig::kill_info(sig, sig::SI_USER, 0));
    }

    /// Forces a signal the process cannot go on without handling (a fault;
    /// Linux's `force_sig`): blocked or ignored, it kills.
    pub fn force(&self, info: Siginfo) {
        self.signals.lock().force(info);
        self.wake();
    }

    /// Records what killed the process, for the console.
    fn record_death(&self, info: Siginfo, rip: u64) {
        *self.death.lock() = Some(Death { info, rip });
    }

    /// What killed the process, if a signal did.
    pub fn death(&self) -> Option<Death> {
        *self.death.lock()
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

    /// Whether a signal that ends the process is pending (sleeps only a
    /// fatal signal may end check it: a vfork parent's).
    pub fn fatal_pending(&self) -> bool {
        self.signals.attention() && self.signals.lock().fatal_pending()
    }

    /// Whether an interruptible sleep must end: a signal will run a handler
    /// or end the process. The sleep returns EINTR, or `ERESTARTSYS` where
    /// Linux restarts the call for `SA_RESTART` handlers.
    pub fn signal_pending(&self) -> bool {
        self.signals.attention() && self.signals.lock().interrupts_sleep()
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
    if proc.pgid() == 0 {
        // A program the console or the kernel starts leads its own group
        // (a vfork child already joined its parent's).
        proc.pgid.store(id, Ordering::Release);
    }
    TABLE.lock().insert(id, Arc::clone(proc));
    proc.pid.store(id, Ordering::Release);
    Ok(id)
}

/// Loads `path` and starts it as a new process with `argv` and `envp`,
/// running `between` after the program is loaded (its memory is its own:
/// nothing of it stays on the file system) and before it starts; an error
/// there stops the start.
pub fn spawn_after_load(
    path: &str,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    parent: Parent,
    between: impl FnOnce() -> Result<(), String>,
) -> Result<Pid, SpawnError> {
    let root = fsdax_fs::ROOT_INO;
    let loaded = exec::load(root, path, argv, envp).map_err(SpawnError::Exec)?;
    between().map_err(|why| SpawnError::Exec(ExecError::new(fsdax_abi::Errno::EBUSY, why)))?;
    let proc = Process::new(
        basename(path).as_bytes(),
        parent,
        Arc::new(loaded.vm),
        fd::console_table(),
        SignalState::new(),
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
    let signals = parent.signals.lock().for_vfork_child();
    let cwd = parent.cwd.load(Ordering::Relaxed);
    let child = Process::new(&parent.name_raw(), Parent::Process(parent.pid()), vm, fds, signals, cwd);
    child.umask.store(parent.umask.load(Ordering::Relaxed), Ordering::Relaxed);
    child.pgid.store(parent.pgid(), Ordering::Release);
    let mut f = *frame;
    f.rax = 0;
    if stack != 0 {
        f.rsp = stack;
    }
    let pid = start_task(&child, f, UserCpuInit::snapshot()).map_err(|_| fsdax_abi::Errno::EAGAIN)?;
    parent.events.wait_until(|_, _| {
        // Only a fatal signal ends this wait (Linux's is killable, not
        // interruptible): the child runs on the parent's memory.
        (child.vfork_done.load(Ordering::Acquire) || parent.fatal_pending()).then_some(())
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
        report_kill(pid, &p.name(), s, p.death());
    }
    let usage = p.usage();
    *p.final_usage.lock() = usage;
    let closed = p.fds.lock().clear();
    drop(closed);
    p.release_vfork_parent();
    // Memory: load the kernel's tables, then drop this process's hold
    // (outside the spin lock: its file mappings may hold the last
    // references to in-memory inodes).
    drop(fsdax_hal::task::replace_address_space(None));
    let vm = p.vm.lock().take();
    drop(vm);
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
                // SIGCHLD (Linux's do_notify_parent): with SIGCHLD ignored
                // or SA_NOCLDWAIT, the child is reaped at once and `wait4`
                // reports ECHILD once none is left.
                let action = pp.signals.lock().action(sig::SIGCHLD);
                if action.handler == sig::SIG_IGN || action.flags & sig::SA_NOCLDWAIT != 0 {
                    TABLE.lock().remove(&pid);
                }
                if action.handler != sig::SIG_IGN {
                    let _ = pp.send(sigchld_info(pid, how, &usage));
                }
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

/// The `siginfo` of SIGCHLD for a child `pid` that ended with `how`.
pub fn sigchld_info(pid: Pid, how: Exit, usage: &Rusage) -> Siginfo {
    let (code, status) = match how {
        Exit::Code(v) => (sig::CLD_EXITED, i32::from(v)),
        Exit::Signal(s) => (sig::CLD_KILLED, s as i32),
    };
    Siginfo {
        signo: sig::SIGCHLD,
        errno: 0,
        code,
        fields: SigFields::Child {
            pid: pid as u32,
            uid: 0,
            status,
            utime: (usage.utime_us / 10_000) as i64,
            stime: (usage.stime_us / 10_000) as i64,
        },
    }
}

/// Keeps the drop of a reaped process out of the table's lock scope.
fn reaped_children_dropped(c: Arc<Process>) {
    // Dropped here, with the table lock held: a zombie holds no memory and
    // no descriptors, so dropping it takes no other lock.
    drop(c);
}

/// The kernel's line for a process a signal killed: the fault and where
/// (`killed by SIGSEGV at 0x0 (address not mapped, RIP 0x40104c)`), the
/// sender, or the kernel's reason.
fn report_kill(pid: Pid, name: &str, s: u32, death: Option<Death>) {
    let Some(Death { info, rip }) = death.filter(|d| d.info.signo == s) else {
        crate::kprintln!("process {pid} ({name}) killed by {}", sig::name(s));
        return;
    };
    let signame = sig::name(s);
    match info.fields {
        SigFields::Fault { addr, .. } if sig::has_fault_addr(&info) => crate::kprintln!(
            "process {pid} ({name}) killed by {signame} at {addr:#x} ({}, RIP {rip:#x})",
            sig::code_meaning(s, info.code).or(sig::code_name(s, info.code)).unwrap_or("fault")
        ),
        SigFields::Kill { pid: from, .. } if info.code == sig::SI_USER || info.code == sig::SI_TKILL => {
            if from == 0 {
                crate::kprintln!("process {pid} ({name}) killed by {signame} (sent from the console)")
            } else if u64::from(from) == pid {
                crate::kprintln!("process {pid} ({name}) killed by {signame} (sent by itself)")
            } else {
                crate::kprintln!("process {pid} ({name}) killed by {signame} (sent by process {from})")
            }
        }
        _ => crate::kprintln!("process {pid} ({name}) killed by {signame} (RIP {rip:#x})"),
    }
}

/// Takes the status of a zombie `pid` (its parent or the console reaps it).
pub fn reap(pid: Pid) -> Option<Ended> {
    let mut table = TABLE.lock();
    let p = table.get(&pid)?;
    let State::Zombie(how) = p.state() else { return None };
    let ended = Ended { how, usage: *p.final_usage.lock(), death: p.death() };
    table.remove(&pid);
    Some(ended)
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
/// forces the signal Linux would (delivered, or the process ended, at the
/// return to user mode that follows).
fn on_user_trap(frame: &mut TrapFrame, fault: &Fault) {
    let Some(p) = current() else {
        // A task without a process cannot be in user mode.
        crate::panic::kernel_fault(fault, task::current(), "?", fsdax_kcore::kill::PanicReason::CriticalTask)
    };
    let err = fault.error_code.unwrap_or(0);
    if fault.vector == 14 {
        let addr = fault.cr2.unwrap_or(0);
        let access = if err & 0x10 != 0 {
            Access::Exec
        } else if err & 2 != 0 {
            Access::Write
        } else {
            Access::Read
        };
        let vm = p.vm();
        let result = match &vm {
            Some(vm) => vm.fault(addr, access, true),
            None => Err(FaultError::NotMapped),
        };
        // The process's hold on its memory goes here, outside every lock.
        drop(vm);
        match result {
            Ok(r) => {
                count_fault(&p, r);
                return;
            }
            Err(e) => {
                *p.last_fault.lock() = FaultRegs { trapno: 14, err, cr2: addr };
                match e {
                    FaultError::OutOfMemory => {
                        crate::kprintln!("process {} ({}) is out of memory at {addr:#x}", p.pid(), p.name());
                        p.force(sig::kill_info(sig::SIGKILL, sig::SI_KERNEL, 0));
                    }
                    FaultError::BeyondEof => p.force(sig::bus_adrerr_info(addr)),
                    FaultError::Poisoned => p.force(sig::mce_info(sig::BUS_MCEERR_AR, addr & !0xfff, 12)),
                    // The fatal signal pending ends the process on its way
                    // back to user mode.
                    FaultError::Interrupted => {}
                    e => p.force(sig::page_fault_info(addr, e == FaultError::Denied)),
                }
            }
        }
        return;
    }
    *p.last_fault.lock() = FaultRegs { trapno: u64::from(fault.vector), err, cr2: 0 };
    p.force(sig::trap_info(fault.vector, frame.rip));
}

/// Before every return to user mode: an `exit` finishes here, consumed
/// poison becomes SIGBUS, and pending signals are delivered (or kill).
fn exit_to_user(frame: &mut TrapFrame) {
    let Some(p) = current() else { return };
    let requested = *p.exiting.lock();
    if let Some(how) = requested {
        exit(p, how);
    }
    if p.consumed_poison.load(Ordering::Acquire) != 0 {
        let poison = p.consumed_poison.swap(0, Ordering::AcqRel);
        if poison != 0 {
            memory_failure_consumed(&p, (poison > 1).then_some(poison & !1));
        }
    }
    signal::deliver(p, frame);
}

/// Counts a resolved page fault in the process's rusage (a DAX fault that
/// allocated blocks is a major fault, as Linux counts it).
pub fn count_fault(p: &Process, r: vm::Resolved) {
    if r.major {
        p.majflt.fetch_add(1, Ordering::Relaxed);
    } else {
        p.minflt.fetch_add(1, Ordering::Relaxed);
    }
}

/// A page fault inside a user copy: resolved only if no lock must be
/// waited for (the copy's caller may hold some).
fn resolve_copy_fault(addr: u64, write: bool) -> bool {
    let Some(p) = try_current() else { return false };
    let Some(vm) = p.vm.try_lock().and_then(|v| v.clone()) else { return false };
    let access = if write { Access::Write } else { Access::Read };
    match vm.fault(addr, access, false) {
        Ok(r) => {
            count_fault(&p, r);
            true
        }
        Err(_) => false,
    }
}

/// A machine check consumed poison in user mode (at `rip`, physical
/// address `phys` if the bank reported it): recorded for the return to
/// user mode that follows, which runs [`memory_failure_consumed`]. Runs in
/// the machine-check handler: takes no lock.
pub fn on_user_machine_check(rip: u64, phys: Option<u64>) -> bool {
    let _ = rip;
    let Some(p) = try_current() else { return false };
    p.consumed_poison.store(phys.map_or(1, |a| (a & !1) | 1), Ordering::Release);
    true
}

/// Memory failure for poison the current process consumed in user mode
/// (physical address `phys` if known), at its return to user mode: the
/// page's address in its own memory comes from its page tables, then
/// memory failure runs with it as the consumer: it gets SIGBUS
/// `BUS_MCEERR_AR` with that `si_addr` (0 if no page of it maps `phys`) and
/// `si_addr_lsb` 12, forced (Linux's `force_sig_mceerr`: a handler may run,
/// a blocked or ignored SIGBUS kills), and every other process that maps
/// the page is unmapped and told by its policy.
pub fn memory_failure_consumed(p: &Arc<Process>, phys: Option<u64>) {
    let Some(phys) = phys else {
        crate::warn!(
            "Memory failure: process {} (pid {}) consumed poison at an unknown address: SIGBUS BUS_MCEERR_AR at 0x0",
            p.name(),
            p.pid()
        );
        p.force(sig::mce_info(sig::BUS_MCEERR_AR, 0, 12));
        return;
    };
    let va = p.vm().and_then(|vm| vm.user_page_of(phys)).unwrap_or(0);
    // The bank names the cache line.
    if let Some(line) = fsdax_drivers::pmem::ByteRange::from_len(phys & !63, 64) {
        crate::pmem::memory_failure_from(line, fsdax_kcore::memfail::Source::ConsumedByProcess, Some((p.pid(), va)));
    }
}
