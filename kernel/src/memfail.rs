//! Memory failure reaching processes: after the device recorded the poison
//! and its holder (the file system) said whose bytes they are, find every
//! process that maps the page, decide with `fsdax_mm::failure::plan` who
//! gets what, and carry it out: splits, unmaps, SIGBUS `BUS_MCEERR_AR` to
//! the consumer and `BUS_MCEERR_AO` to every "early" mapper. Every event is
//! logged like Linux's (`Memory failure: 0x<pfn>: recovery action for dax
//! page: Recovered`, one line per signal) and kept for the console's `mf`
//! report.
//!
//! ```text
//! #MC in user mode ─► (return to user) consumer = current, VA from its page tables ─┐
//! #MC in a kernel copy / action optional ─► poison rings ─► memory-failure task ────┤
//! `mf inject` (console), madvise(MADV_HWPOISON) (consumer = caller) ────────────────┤
//!   ─► pmem::memory_failure: device poison list, holder.notify_failure (fs: rmap,   ◄┘
//!      persistent bad block) ─► handle(): DAX mappings of the range ─► plan ─► carry out
//! ```
//!
//! Who maps a device range comes from the DAX side through [`DaxMappings`]
//! (registered once with [`register_dax`] at boot by `dax::rmap`: the file
//! system's reverse map, each file's mappers, their page tables).
//! Events are serialised by one sleeping lock (Linux's `mf_mutex`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use fsdax_abi::signal as sig;
use fsdax_drivers::pmem::ByteRange;
use fsdax_hal::sync::IrqMutex;
use fsdax_kcore::memfail::{early, recovery_line, signal_line, Delivery, Event, EventLog, Hit, Outcome, Source};
use fsdax_mm::failure::{plan, Action, Cause, Mapped};

use crate::process::{self, Pid};
use crate::sync::Mutex;

/// One mapping of a device range by a process, as the DAX side found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaxMapping {
    /// The process.
    pub pid: Pid,
    /// The virtual range that maps the affected bytes (for poison: the
    /// poisoned 4 KiB page; for pre-remove: the whole mapped range).
    pub va: ByteRange,
    /// Whether a large entry (2 MiB, or 1 GiB on the raw device) maps it now.
    pub huge: bool,
}

/// Why a mapping change failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingError {
    /// The process ended meanwhile (nothing to do).
    Gone,
    /// The page tables could not be changed (out of memory for a split).
    Failed,
}

/// The DAX side of memory failure: the in-memory reverse map of file
/// mappings ("device range -> every (process, VA, PMD/PTE) that maps it")
/// and the page-table changes a plan asks for.
pub trait DaxMappings: Sync {
    /// Every mapping of `device`'s bytes `[offset, offset + len)`.
    /// `whole`: the device is going away; report whole mapped ranges.
    fn mapped(&self, device: usize, offset: u64, len: u64, whole: bool) -> Vec<DaxMapping>;
    /// Splits the 2 MiB entry at `va` of `pid` into 4 KiB entries.
    fn split(&self, pid: Pid, va: u64) -> Result<(), MappingError>;
    /// Unmaps `va` from `pid` and flushes its TLB entries.
    fn unmap(&self, pid: Pid, va: ByteRange) -> Result<(), MappingError>;
}

static DAX: spin::Once<&'static dyn DaxMappings> = spin::Once::new();

/// Registers the DAX side (once, when file mappings are set up).
pub fn register_dax(dax: &'static dyn DaxMappings) {
    DAX.call_once(|| dax);
}

/// The system default for processes that did not choose with
/// `prctl(PR_MCE_KILL)`: early (told at once).
static DEFAULT_EARLY: AtomicBool = AtomicBool::new(true);

/// Whether processes without their own policy are told at once.
pub fn default_early() -> bool {
    DEFAULT_EARLY.load(Ordering::Relaxed)
}

/// Sets the system default (console `mf policy`).
pub fn set_default_early(early: bool) {
    DEFAULT_EARLY.store(early, Ordering::Relaxed);
}

/// Whether `p` is told at once about poison in a page it maps.
fn is_early(p: &process::Process) -> bool {
    early(*p.mce_policy.lock(), default_early())
}

/// The events since boot.
static LOG: IrqMutex<EventLog> = IrqMutex::new(EventLog::new(32));
/// Serialises events (Linux's `mf_mutex`).
static EVENTS: Mutex<()> = Mutex::new(());
/// What the holder said the current event hit (see [`note_hit`]).
static HIT: AtomicU8 = AtomicU8::new(0);

/// The holder says whose bytes the current event hit (called from inside
/// `notify_failure`, under the event lock).
pub fn note_hit(hit: Hit) {
    let code = match hit {
        Hit::Unknown => 0,
        Hit::Free => 1,
        Hit::Metadata => 2,
        Hit::FileData => 3,
    };
    // File data outranks metadata outranks free space in one range.
    HIT.fetch_max(code, Ordering::Relaxed);
}

fn take_hit() -> Hit {
    match HIT.swap(0, Ordering::Relaxed) {
        1 => Hit::Free,
        2 => Hit::Metadata,
        3 => Hit::FileData,
        _ => Hit::Unknown,
    }
}

/// Runs one event under the event lock: `record` records the poison and
/// tells the holder (returning `None` when the range is not persistent
/// memory, else the device's index, offset, length, whether the holder
/// handled it and whether the poison was new), then the mappers are told.
/// Returns the mappings removed and the processes signalled.
pub fn event(
    phys: ByteRange,
    source: Source,
    consumer: Option<(Pid, u64)>,
    record: impl FnOnce() -> Option<(usize, u64, u64, bool, bool)>,
) -> (u32, usize) {
    event_with(DAX.get().copied(), phys, source, consumer, record)
}

fn event_with(
    dax: Option<&dyn DaxMappings>,
    phys: ByteRange,
    source: Source,
    consumer: Option<(Pid, u64)>,
    record: impl FnOnce() -> Option<(usize, u64, u64, bool, bool)>,
) -> (u32, usize) {
    let _serial = EVENTS.lock();
    HIT.store(0, Ordering::Relaxed);
    let Some((device, offset, len, handled, new)) = record() else {
        // Not persistent memory: the consumer still consumed poison.
        if let Some((pid, va)) = consumer {
            deliver_consumer_only(dax, phys.start(), pid, va);
        }
        return (0, 0);
    };
    let hit = take_hit();
    let whole = source == Source::PreRemove;
    let mapped: Vec<Mapped<Pid>> = dax
        .map(|d| d.mapped(device, offset, len, whole))
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            // A process that ended meanwhile is still unmapped (the DAX side
            // says it is gone) and gets no signal.
            let early = process::get(m.pid).is_some_and(|p| is_early(&p));
            Mapped { process: m.pid, va: m.va, huge: m.huge, early }
        })
        .collect();
    let cause = if whole { Cause::PreRemove } else { Cause::Poison { consumer } };
    let actions = plan(cause, &mapped);
    let (unmapped, deliveries) = carry_out(dax, &actions);
    for d in &deliveries {
        crate::warn!("{}", signal_line(phys.start(), d));
    }
    let outcome = if !handled {
        Outcome::Failed
    } else if !new && deliveries.is_empty() && unmapped == 0 && !whole {
        Outcome::Ignored
    } else {
        Outcome::Recovered
    };
    if !whole {
        crate::warn!("{}", recovery_line(phys.start(), hit, outcome));
    }
    let signalled = deliveries.len();
    LOG.lock().record(Event {
        device,
        offset,
        len,
        phys: phys.start(),
        source,
        hit,
        outcome,
        unmapped,
        deliveries,
        at_ns: crate::time::uptime_ns(),
    });
    (unmapped, signalled)
}

/// Device removal, before the holder unmounts: every process that maps
/// device `device` (physical `phys_base`, `len` bytes) loses those mappings
/// and gets SIGBUS `BUS_MCEERR_AO` once (no poison is recorded).
///
/// Every present entry that maps the device is walked
/// (`DaxMappings::mapped(.., whole)`), `plan(PreRemove)`, unmap + AO; then
/// the holder unmounts (`pmem::unbind` runs both with the file system
/// frozen).
pub fn pre_remove(device: usize, phys_base: u64, len: u64) {
    let Some(whole) = ByteRange::from_len(phys_base, len) else { return };
    let (unmapped, signalled) = event(whole, Source::PreRemove, None, || Some((device, 0, len, true, false)));
    crate::warn!(
        "Memory failure: device removal: {unmapped} mapping(s) removed, {signalled} process(es) got SIGBUS BUS_MCEERR_AO"
    );
}

/// Poison outside persistent memory consumed by a process: only it is told.
fn deliver_consumer_only(dax: Option<&dyn DaxMappings>, phys: u64, pid: Pid, va: u64) {
    let (_, deliveries) = carry_out(dax, &plan(Cause::Poison { consumer: Some((pid, va)) }, &[]));
    for d in &deliveries {
        crate::warn!("{}", signal_line(phys, d));
    }
}

/// Carries out a plan: splits and unmaps through the DAX side, then the
/// signals (`BUS_MCEERR_AR` forced, as Linux's `force_sig_mceerr`: blocked
/// or ignored, it kills; `BUS_MCEERR_AO` sent, as `send_sig_mceerr`).
/// Returns the mappings removed and the signals sent.
pub fn carry_out(dax: Option<&dyn DaxMappings>, actions: &[Action<Pid>]) -> (u32, Vec<Delivery>) {
    let mut unmapped = 0;
    let mut deliveries = Vec::new();
    for a in actions {
        match *a {
            Action::Split { process, va } => {
                if let Some(Err(MappingError::Failed)) = dax.map(|d| d.split(process, va)) {
                    crate::error!("memory failure: splitting the 2 MiB page at {va:#x} of pid {process} failed");
                }
            }
            Action::Unmap { process, va } => match dax.map(|d| d.unmap(process, va)) {
                Some(Ok(())) => unmapped += 1,
                Some(Err(MappingError::Gone)) | None => {}
                Some(Err(MappingError::Failed)) => {
                    crate::error!("memory failure: unmapping {:#x}+{:#x} of pid {process} failed", va.start(), va.len())
                }
            },
            Action::Signal { process, code, addr, lsb } => {
                let Some(p) = process::get(process) else { continue };
                if p.state() != process::State::Alive {
                    continue;
                }
                // A standard signal is not queued twice (Linux's
                // `legacy_queue`): with SIGBUS already pending (the first
                // page of a two-page `madvise`), the first one stands.
                if p.signals.lock().pending() & sig::bit(sig::SIGBUS) != 0 {
                    crate::warn!(
                        "Memory failure: {:#x}: SIGBUS already pending for {} (pid {process}): not queued again",
                        addr,
                        p.name()
                    );
                    continue;
                }
                let info = sig::mce_info(code.si_code(), addr, lsb);
                if code.si_code() == sig::BUS_MCEERR_AR {
                    p.force(info);
                } else if p.send(info).is_err() {
                    continue;
                }
                deliveries.push(Delivery { pid: process, name: p.name(), code: code.si_code(), addr, lsb });
            }
        }
    }
    (unmapped, deliveries)
}

/// `madvise(MADV_HWPOISON)` of the page at `va` by `p`: a persistent-memory
/// page it maps (a DAX file page) fails as if a machine check found it,
/// with `p` as the consumer. Anything else is refused (EPERM: poisoning
/// DRAM is not offered to processes).
pub fn madvise_hwpoison(p: &process::Process, va: u64) -> Result<(), fsdax_abi::Errno> {
    let leaf = p.vm().and_then(|vm| vm.space().translate(va)).ok_or(fsdax_abi::Errno::EPERM)?;
    let phys = leaf.phys + (va - leaf.virt);
    if !crate::pmem::devices().iter().any(|d| (d.phys_base()..d.phys_base() + d.len()).contains(&phys)) {
        return Err(fsdax_abi::Errno::EPERM);
    }
    let page = ByteRange::from_len(phys & !4095, 4096).ok_or(fsdax_abi::Errno::EINVAL)?;
    crate::pmem::memory_failure_from(page, Source::Madvise, Some((p.pid(), va)));
    Ok(())
}

/// The console's `mf` report.
fn report(persistent: Option<u64>) {
    let names: Vec<&str> = crate::pmem::devices().iter().map(|d| d.name()).collect();
    let mut media: Vec<Option<u64>> = alloc::vec![None; names.len()];
    if let Some(m) = media.first_mut() {
        *m = persistent;
    }
    let lines = fsdax_kcore::memfail::report(&LOG.lock().clone(), &names, default_early(), &media);
    for l in lines {
        crate::kprintln!("{l}");
    }
}

fn usage() {
    crate::kprintln!(
        "usage: mf                          events per device, and who got what\n       \
         mf policy [early|late]       the default for processes without prctl(PR_MCE_KILL)\n       \
         mf inject REGION OFFSET [LEN] software memory failure (action optional), as a #MC would\n       \
         mf REGION OFFSET [LEN]       the same"
    );
}

fn cmd_mf(args: &[&str]) {
    match args {
        [] | ["report"] => {
            crate::pmem::drain_machine_check_poison();
            report(crate::fsys::memory_failure_count());
        }
        ["policy"] => crate::kprintln!(
            "default memory-failure policy: {}",
            if default_early() {
                "early (mapping processes get SIGBUS BUS_MCEERR_AO at once)"
            } else {
                "late (mapping processes get SIGBUS BUS_MCEERR_AR on their next touch)"
            }
        ),
        ["policy", "early"] => {
            set_default_early(true);
            crate::kprintln!("default memory-failure policy: early");
        }
        ["policy", "late"] => {
            set_default_early(false);
            crate::kprintln!("default memory-failure policy: late");
        }
        ["inject", rest @ ..] if !rest.is_empty() => crate::pmem::inject(rest),
        [dev, ..] if crate::pmem::device(dev).is_some() => crate::pmem::inject(args),
        _ => usage(),
    }
}

fsdax_hal::shell_command!(MF_CMD, name: "mf", usage: "mf [policy [early|late] | inject REGION OFFSET [LEN]]",
    help: "memory failures: the report (events per device, who got what), the default policy, software injection",
    run: cmd_mf);

mod tests {
    use alloc::vec;

    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest};

    use super::*;

    /// A DAX side that reports one 2 MiB mapping of the page by a process
    /// that has ended, cannot split, and records what it is asked to do.
    struct Fake {
        calls: IrqMutex<Vec<(&'static str, u64)>>,
    }

    const GONE: Pid = 0xfff0;

    impl DaxMappings for Fake {
        fn mapped(&self, _device: usize, offset: u64, _len: u64, _whole: bool) -> Vec<DaxMapping> {
            let va = ByteRange::from_len(0x7f00_0020_0000 + (offset & 0x1f_f000), 4096);
            va.map(|va| vec![DaxMapping { pid: GONE, va, huge: true }]).unwrap_or_default()
        }
        fn split(&self, _pid: Pid, va: u64) -> Result<(), MappingError> {
            self.calls.lock().push(("split", va));
            Err(MappingError::Failed)
        }
        fn unmap(&self, _pid: Pid, va: ByteRange) -> Result<(), MappingError> {
            self.calls.lock().push(("unmap", va.start()));
            Err(MappingError::Gone)
        }
    }

    ktest!(a_plan_splits_then_unmaps_through_the_dax_side_and_is_logged, {
        let fake = Fake { calls: IrqMutex::new(Vec::new()) };
        let phys = ByteRange::from_len(0x1_0000_0000 + 0x23_4040, 64).ok_or(kfail!("range"))?;
        let before = LOG.lock().count();
        event_with(Some(&fake), phys, Source::Software, None, || Some((0, 0x23_4040, 64, true, true)));
        let calls = fake.calls.lock().clone();
        kassert_eq!(calls.len(), 2);
        kassert!(calls[0] == ("split", 0x7f00_0020_0000), "split the 2 MiB entry first");
        kassert!(calls[1] == ("unmap", 0x7f00_0023_4000), "then unmap the page, even after a failed split");
        let log = LOG.lock().clone();
        kassert_eq!(log.count(), before + 1);
        let (_, e) = log.recent().last().ok_or(kfail!("no event"))?;
        kassert!(e.deliveries.is_empty(), "an ended process gets no signal");
        kassert_eq!(e.unmapped, 0);
        kassert!(e.outcome == Outcome::Recovered);
        Ok(())
    });

    ktest!(the_default_policy_is_early_and_can_be_set, {
        kassert!(default_early());
        set_default_early(false);
        let late = default_early();
        set_default_early(true);
        kassert!(!late);
        Ok(())
    });
}
