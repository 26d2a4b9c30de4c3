//! Persistent memory in the kernel: one [`Device`] per region the hal found
//! in the NFIT, who holds each device, memory failure, and the console
//! commands.
//!
//! ```text
//! NFIT ─► fsdax_hal::mm::PmemRegion (DAX window, largest pages; safe
//!         machine-check-safe read, flushing write, zeroing, flush, fence)
//!         └► KernelMedia (copy_mc reconciliation: fsdax_kcore::copy_mc)
//!            └► PmemDevice (drivers::pmem::device): read/write/flush/zero,
//!               poison list, recovery write, holder
//! #MC ─► poison rings ─► memory-failure task ─► memory_failure(phys)
//!        (route: fsdax_kcore::memfail) ─► device.record_poison
//!        ─► holder.notify_failure
//! ```
//!
//! Raw access: only the named raw-device commands (`pmem write`, `pmem
//! recover`) and claims ([`claim`]) write a device's bytes directly; a
//! device that holds a file system (mounted, or just formatted) is refused
//! to raw claims such as the pmem benchmark.

pub mod media;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use fsdax_drivers::pmem::device::{DeviceLock, DeviceState, Holder, HolderError, MfFlags, PmemDevice, PmemError};
use fsdax_drivers::pmem::ByteRange;
use fsdax_hal::mm::{discover_pmem, PmemDiscovery};
use fsdax_hal::sync::IrqMutex;
use fsdax_kcore::memfail::{route, DeviceSpan, Route, Source};

use self::media::KernelMedia;
use crate::shell::parse_num;

/// The kernel's device lock: a spin lock held with interrupts off for the
/// device's short bookkeeping (the copies run outside it).
#[derive(Debug)]
pub struct IrqLock<T>(IrqMutex<T>);

impl<T: Send> DeviceLock<T> for IrqLock<T> {
    fn new(value: T) -> Self {
        IrqLock(IrqMutex::new(value))
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock())
    }
}

/// A pmem device as the kernel uses it.
pub type Device = PmemDevice<KernelMedia, IrqLock<DeviceState>>;

static DEVICES: spin::Once<Vec<Device>> = spin::Once::new();

/// Every pmem device (empty before `init` or without NFIT).
pub fn devices() -> &'static [Device] {
    DEVICES.get().map_or(&[], Vec::as_slice)
}

/// A device by index (`0`) or name (`pmem0`).
pub fn device(name: &str) -> Option<&'static Device> {
    let idx = name.strip_prefix("pmem").unwrap_or(name).parse::<usize>().ok()?;
    devices().get(idx)
}

/// Who holds a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderKind {
    /// Nobody: memory failures are logged.
    Logging,
    /// The mounted file system.
    FileSystem,
    /// A raw user (the pmem benchmark), named.
    Raw(&'static str),
}

const MAX_DEVICES: usize = 8;
const DEVICE_NAMES: [&str; MAX_DEVICES] = ["pmem0", "pmem1", "pmem2", "pmem3", "pmem4", "pmem5", "pmem6", "pmem7"];
static HOLDERS: [IrqMutex<HolderKind>; MAX_DEVICES] = [const { IrqMutex::new(HolderKind::Logging) }; MAX_DEVICES];

/// Devices taken away with `unbind`: nothing uses them again until reboot.
static DEAD: [AtomicBool; MAX_DEVICES] = [const { AtomicBool::new(false) }; MAX_DEVICES];

/// Whether `dev` was unbound (removed). Sequentially consistent with
/// `unbind`'s mark: a fault that installed an entry and then finds the
/// device alive was seen by the removal's walk over the page tables.
pub fn is_dead(dev: &Device) -> bool {
    DEAD[index_of(dev)].load(Ordering::SeqCst)
}

/// Whether the device that holds physical address `phys` was unbound.
pub fn is_dead_at(phys: u64) -> bool {
    devices().iter().any(|d| (d.phys_base()..d.phys_base() + d.len()).contains(&phys) && is_dead(d))
}

/// What `unbind` says when someone asks for a removed device.
pub const DEAD_DEVICE: &str = "the device was unbound (removed); reboot to use it again";

fn index_of(dev: &Device) -> usize {
    devices().iter().position(|d| core::ptr::eq(d, dev)).unwrap_or(MAX_DEVICES - 1)
}

/// Who holds `dev` now.
pub fn holder_of(dev: &Device) -> HolderKind {
    *HOLDERS[index_of(dev)].lock()
}

/// The holder every device gets until someone claims it: it logs.
#[derive(Debug)]
pub struct LoggingHolder {
    name: &'static str,
}

impl Holder for LoggingHolder {
    fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), HolderError> {
        crate::info!("{}: memory failure at {offset:#x}+{len:#x} ({}): no holder; logged", self.name, mf_kind(flags));
        Ok(())
    }
}

fn mf_kind(flags: MfFlags) -> &'static str {
    if flags.contains(MfFlags::PRE_REMOVE) {
        "device going away"
    } else if flags.contains(MfFlags::ACTION_REQUIRED) {
        "action required"
    } else {
        "action optional"
    }
}

/// Why a claim failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Someone else holds the device.
    Held(HolderKind),
    /// The device holds an fsdax file system that is not mounted; raw
    /// writes would destroy it.
    HasFileSystem,
    /// The device was unbound.
    Removed,
}

impl core::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Held(HolderKind::FileSystem) => f.write_str("the mounted file system holds it (`fs umount` first)"),
            Self::Held(HolderKind::Raw(who)) => write!(f, "`{who}` holds it"),
            Self::Held(HolderKind::Logging) => f.write_str("busy"),
            Self::Removed => f.write_str(DEAD_DEVICE),
            Self::HasFileSystem => {
                f.write_str("it holds an fsdax file system, which raw writes would destroy (use a device without one)")
            }
        }
    }
}

/// Whether the device's primary or backup superblock says "fsdax".
pub fn has_file_system(dev: &Device) -> bool {
    let mut magic = [0u8; 8];
    let backup = dev.len().saturating_sub(fsdax_fs::BLOCK_SIZE);
    [0, backup].into_iter().any(|off| read(dev, off, &mut magic).is_ok() && magic == fsdax_fs::format::SB_MAGIC)
}

/// Makes `kind` the holder of `dev`, with `holder` receiving memory-failure
/// notifications. A raw claim is refused on a device with a file system.
pub fn claim(dev: &'static Device, kind: HolderKind, holder: Arc<dyn Holder>) -> Result<(), ClaimError> {
    if is_dead(dev) {
        return Err(ClaimError::Removed);
    }
    let current = *HOLDERS[index_of(dev)].lock();
    if current != HolderKind::Logging {
        return Err(ClaimError::Held(current));
    }
    // Read without the lock (it reads the media); `install` checks again.
    if matches!(kind, HolderKind::Raw(_)) && has_file_system(dev) {
        return Err(ClaimError::HasFileSystem);
    }
    install(dev, kind, holder)
}

/// Makes `kind` the holder of `dev` for the device file (`/dev/pmem0`):
/// as [`claim`], but a file system on the device that is not mounted does
/// not stop it (as on Linux, a process that opens the raw device owns its
/// bytes).
pub fn claim_device_file(dev: &'static Device, kind: HolderKind, holder: Arc<dyn Holder>) -> Result<(), ClaimError> {
    install(dev, kind, holder)
}

/// Installs `holder` if the device is alive and only the logging holder
/// has it (checked under the holder lock, so two claims cannot both win).
fn install(dev: &'static Device, kind: HolderKind, holder: Arc<dyn Holder>) -> Result<(), ClaimError> {
    if is_dead(dev) {
        return Err(ClaimError::Removed);
    }
    let mut current = HOLDERS[index_of(dev)].lock();
    if *current != HolderKind::Logging {
        return Err(ClaimError::Held(*current));
    }
    let old = dev.clear_holder();
    if dev.set_holder(holder).is_err() {
        if let Some(old) = old {
            let _ = dev.set_holder(old);
        }
        return Err(ClaimError::Held(*current));
    }
    *current = kind;
    Ok(())
}

/// Gives `dev` back to the logging holder.
pub fn release(dev: &'static Device) {
    let mut current = HOLDERS[index_of(dev)].lock();
    dev.clear_holder();
    let _ = dev.set_holder(Arc::new(LoggingHolder { name: DEVICE_NAMES[index_of(dev)] }));
    *current = HolderKind::Logging;
}

/// Finds the persistent-memory ranges the hal mapped and makes a device of
/// each.
pub fn init() {
    let mut devs = Vec::new();
    match discover_pmem() {
        PmemDiscovery::NoNfit => crate::info!("pmem: no NFIT: no persistent memory"),
        PmemDiscovery::NfitRejected(e) => crate::error!("pmem: NFIT rejected ({e}): no persistent memory"),
        PmemDiscovery::Ranges(ranges) => {
            for (range, mapped) in ranges {
                let Some(&name) = DEVICE_NAMES.get(devs.len()) else {
                    crate::warn!("pmem: more than {MAX_DEVICES} regions; ignoring the rest");
                    break;
                };
                match mapped {
                    Ok(region) => {
                        let s = region.stats();
                        crate::info!(
                            "pmem: {name}: SPA range {} at {:#x}, {} MiB, mapped at {:#x} ({}x1G {}x2M {}x4K)",
                            range.index,
                            range.base,
                            range.length >> 20,
                            region.virt(),
                            s.pages_1g,
                            s.pages_2m,
                            s.pages_4k
                        );
                        let dev = Device::new(name, range.base, KernelMedia::new(region));
                        let _ = dev.set_holder(Arc::new(LoggingHolder { name }));
                        devs.push(dev);
                    }
                    Err(e) => crate::error!("pmem: SPA range {:#x}+{:#x} not mapped: {e}", range.base, range.length),
                }
            }
        }
    }
    DEVICES.call_once(|| devs);
}

/// How a memory failure ended, for the log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Recorded in `device`'s poison list (`new`: not known before).
    Recorded {
        /// Device index.
        device: usize,
        /// Device-relative offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Not in the list before.
        new: bool,
        /// The holder was told.
        holder_notified: bool,
    },
    /// The address is not persistent memory.
    NotPmem,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Failure::Recorded { device, offset, len, new, holder_notified } => write!(
                f,
                "pmem{device} offset {offset:#x} len {len:#x}: {}; {}",
                if new { "recorded as bad block" } else { "already known" },
                if holder_notified { "holder notified" } else { "no holder" }
            ),
            Failure::NotPmem => f.write_str("not persistent memory; not handled"),
        }
    }
}

/// Handles poison at physical range `phys`: record it in the owning
/// device's bad-block list, tell the device's holder, log one line, then
/// tell the processes that map it ([`crate::memfail`]). Runs in task
/// context (the #MC handler only queues).
pub fn memory_failure(phys: ByteRange, flags: MfFlags) -> Failure {
    let source = if flags.contains(MfFlags::ACTION_REQUIRED) { Source::ActionRequired } else { Source::Scrub };
    memory_failure_with(phys, flags, source, None)
}

/// [`memory_failure`] from `source`, with the process that consumed the
/// poison and the address it touched, if one did.
pub fn memory_failure_from(phys: ByteRange, source: Source, consumer: Option<(crate::process::Pid, u64)>) -> Failure {
    let flags = match source {
        Source::ConsumedByProcess | Source::ActionRequired | Source::Madvise => MfFlags::ACTION_REQUIRED,
        Source::Scrub | Source::Software => MfFlags::ACTION_OPTIONAL,
        Source::PreRemove => MfFlags::PRE_REMOVE,
    };
    memory_failure_with(phys, flags, source, consumer)
}

fn memory_failure_with(
    phys: ByteRange,
    flags: MfFlags,
    source: Source,
    consumer: Option<(crate::process::Pid, u64)>,
) -> Failure {
    let mut result = Failure::NotPmem;
    crate::memfail::event(phys, source, consumer, || {
        let (index, offset, len, handled, new) = record_and_notify(phys, flags)?;
        result = Failure::Recorded { device: index, offset, len, new, holder_notified: handled };
        Some((index, offset, len, handled, new))
    });
    result
}

/// The device's part of a memory failure: route, record, tell the holder,
/// log one line. Returns the device's index, the offset and length in it,
/// whether the holder handled it and whether the poison was new.
fn record_and_notify(phys: ByteRange, flags: MfFlags) -> Option<(usize, u64, u64, bool, bool)> {
    let kind = mf_kind(flags);
    let spans: Vec<DeviceSpan> =
        devices().iter().map(|d| DeviceSpan { phys_base: d.phys_base(), len: d.len() }).collect();
    let Route::Device { index, offset, len } = route(phys.start(), phys.len(), &spans) else {
        crate::warn!(
            "memory failure at {:#x}+{:#x} ({kind}): not persistent memory; not handled",
            phys.start(),
            phys.len()
        );
        return None;
    };
    let dev = &devices()[index];
    let new = match dev.record_poison(offset, len) {
        Ok(new) => new,
        Err(e) => {
            crate::error!("{}: recording poison at {offset:#x}: {e}", dev.name());
            true
        }
    };
    let holder_notified = match dev.notify_failure(offset, len, flags) {
        Ok(()) => true,
        Err(PmemError::NoHolder) => false,
        Err(e) => {
            crate::error!("{}: the holder could not handle the failure: {e}", dev.name());
            false
        }
    };
    crate::warn!(
        "memory failure: {} offset {offset:#x} len {len} (phys {:#x}), {kind}: {}; {}",
        dev.name(),
        phys.start(),
        if new { "recorded as bad block" } else { "already known" },
        if holder_notified { "holder notified" } else { "no holder" }
    );
    Some((index, offset, len, holder_notified, new))
}

/// Handles everything the #MC handler queued. Returns how many ranges.
pub fn drain_machine_check_poison() -> usize {
    let mut n = 0;
    while let Some(r) = crate::mce::ACTION_REQUIRED.pop() {
        memory_failure(r, MfFlags::ACTION_REQUIRED);
        n += 1;
    }
    while let Some(r) = crate::mce::ACTION_OPTIONAL.pop() {
        memory_failure(r, MfFlags::ACTION_OPTIONAL);
        n += 1;
    }
    n
}

/// Starts the memory-failure task, which drains the #MC poison queues.
pub fn start_worker() {
    let spawned = crate::task::Builder::new("memory-failure").detached().spawn(|| loop {
        drain_machine_check_poison();
        crate::task::sleep_ticks(1);
    });
    if let Err(e) = spawned {
        crate::error!("pmem: cannot start the memory-failure task: {e}");
    }
}

/// A read through the device, after handling queued poison first.
pub fn read(dev: &Device, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
    drain_machine_check_poison();
    let r = dev.read(offset, buf);
    if r.is_err() {
        // The #MC that stopped the copy queued the exact range: record it.
        drain_machine_check_poison();
    }
    r
}

fn describe(e: PmemError) -> String {
    match e {
        PmemError::Poisoned { offset, len, copied } => {
            format!("EIO: poisoned range {offset:#x}+{len:#x} ({copied} bytes copied before it)")
        }
        other => format!("{other}"),
    }
}

/// A zero-filled buffer of `len` bytes, or a message if the heap cannot
/// provide it (the size comes from the command line).
pub fn buffer(len: usize, fill: u8) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| format!("out of memory for a {len}-byte buffer"))?;
    v.resize(len, fill);
    Ok(v)
}

/// Parses `REGION OFFSET BYTE LEN` into the device, offset and a fill
/// buffer (at most 64 MiB), after handling queued poison.
fn fill_args(dev: &str, off: &str, byte: &str, len: &str) -> Result<(&'static Device, u64, Vec<u8>), String> {
    let d = device(dev).ok_or_else(|| format!("no device {dev} (`pmem` lists them)"))?;
    let (Some(off), Some(byte), Some(len)) = (parse_num(off), parse_num(byte), parse_num(len)) else {
        return Err(String::from("OFFSET, BYTE and LEN are numbers (decimal or 0x hex, K/M/G suffixes)"));
    };
    if len == 0 || len > 64 << 20 || byte > 0xff {
        return Err(String::from("LEN is 1 byte to 64 MiB, BYTE 0..=255"));
    }
    drain_machine_check_poison();
    Ok((d, off, buffer(len as usize, byte as u8)?))
}

fn cmd_pmem(args: &[&str]) {
    if let Some(d) = args.get(1).and_then(|a| device(a)) {
        if is_dead(d) {
            return crate::kprintln!("{}: {DEAD_DEVICE}", d.name());
        }
    }
    match args {
        [] => {
            if devices().is_empty() {
                crate::kprintln!("no persistent memory (no NFIT, or its ranges could not be mapped)");
            }
            for d in devices() {
                let region = d.media().region();
                let s = region.stats();
                crate::kprintln!(
                    "{}  phys {:#x}  size {} MiB  mapped at {:#x} ({}x1G {}x2M {}x4K)  bad blocks {}  holder {}",
                    d.name(),
                    d.phys_base(),
                    d.len() >> 20,
                    region.virt(),
                    s.pages_1g,
                    s.pages_2m,
                    s.pages_4k,
                    d.poison_count(),
                    match holder_of(d) {
                        _ if is_dead(d) => "none (unbound: dead until reboot)",
                        HolderKind::Logging => "none",
                        HolderKind::FileSystem => "file system",
                        HolderKind::Raw(who) => who,
                    }
                );
            }
        }
        ["read", dev, off, len] => {
            let (Some(d), Some(off), Some(len)) = (device(dev), parse_num(off), parse_num(len)) else {
                return crate::kprintln!("usage: pmem read REGION OFFSET LEN");
            };
            if len > 1 << 20 {
                return crate::kprintln!("at most 1 MiB per read");
            }
            let mut buf = match buffer(len as usize, 0) {
                Ok(b) => b,
                Err(e) => return crate::kprintln!("pmem read: {e}"),
            };
            match read(d, off, &mut buf) {
                Ok(()) => crate::shell::hexdump(off, &buf, 10, true),
                Err(e) => crate::kprintln!("{}", describe(e)),
            }
        }
        ["write", dev, off, byte, len] => match fill_args(dev, off, byte, len) {
            Ok((d, off, buf)) => match d.write(off, &buf) {
                Ok(()) => {
                    crate::kprintln!("wrote {} bytes of {:#04x} at {off:#x} (flushed and fenced)", buf.len(), buf[0])
                }
                Err(e) => crate::kprintln!("{}", describe(e)),
            },
            Err(e) => crate::kprintln!("pmem write: {e}\nusage: pmem write REGION OFFSET BYTE LEN"),
        },
        ["recover", dev, off, byte, len] => match fill_args(dev, off, byte, len) {
            Ok((d, off, buf)) => match d.recovery_write(off, &buf) {
                Ok(cleared) => crate::kprintln!(
                    "recovery write of {} bytes at {off:#x}: {cleared} poisoned bytes cleared",
                    buf.len()
                ),
                Err(e) => crate::kprintln!("{}", describe(e)),
            },
            Err(e) => crate::kprintln!("pmem recover: {e}\nusage: pmem recover REGION OFFSET BYTE LEN (page aligned)"),
        },
        ["mcloop", dev, off, secs] => {
            let (Some(d), Some(off), Some(secs)) = (device(dev), parse_num(off), parse_num(secs)) else {
                return crate::kprintln!("usage: pmem mcloop REGION OFFSET SECONDS");
            };
            mcloop(d, off, secs.min(120));
        }
        _ => crate::kprintln!(
            "usage: pmem | pmem read R OFF LEN | pmem write R OFF BYTE LEN | pmem recover R OFF BYTE LEN | pmem mcloop R OFF SECS"
        ),
    }
}

/// Reads the 1 MiB around `off` with machine-check-safe copies, over and
/// over with interrupts off (so the CPU is nearly always inside the copy),
/// until a read fails or `secs` pass. For injecting action-required
/// machine checks into a machine-check-safe copy from the host.
fn mcloop(d: &Device, off: u64, secs: u64) {
    const SPAN: u64 = 1 << 20;
    let start = off.saturating_sub(SPAN / 2).min(d.len().saturating_sub(SPAN)) & !4095;
    let mut buf = match buffer(SPAN.min(d.len()) as usize, 0) {
        Ok(b) => b,
        Err(e) => return crate::kprintln!("mcloop: {e}"),
    };
    drain_machine_check_poison();
    crate::kprintln!("mcloop: running over {:#x}+{:#x} for up to {secs} s", start, buf.len());
    let deadline = fsdax_hal::time::rdtsc() + secs * fsdax_hal::time::tsc_hz();
    let mut rounds = 0u64;
    let result = fsdax_hal::arch::cpu::without_interrupts(|| loop {
        if let Err(e) = d.read(start, &mut buf) {
            break Err(e);
        }
        rounds += 1;
        if fsdax_hal::time::rdtsc() > deadline {
            break Ok(());
        }
    });
    match result {
        Ok(()) => crate::kprintln!("mcloop: {rounds} clean reads, no machine check"),
        Err(e) => {
            drain_machine_check_poison();
            crate::kprintln!("mcloop: after {rounds} clean reads: {}", describe(e));
        }
    }
}

fsdax_hal::shell_command!(PMEM_CMD, name: "pmem", usage: "pmem [read|write|recover|mcloop ...]",
    help: "persistent-memory regions; read (hex dump or EIO), durable raw write, recovery write",
    run: cmd_pmem);

fsdax_hal::shell_command!(POISON_CMD, name: "poison", usage: "poison", help: "the bad-block list of every region",
run: |_| {
    drain_machine_check_poison();
    for d in devices() {
        crate::kprintln!("{}: {} bad range(s)", d.name(), d.poison_count());
        d.for_each_poison(|r| {
            crate::kprintln!("  {:#x}+{:#x} (phys {:#x})", r.start(), r.len(), d.phys_base() + r.start());
        });
    }
});

/// How an unbind went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbound {
    /// Whether a mounted file system was made consistent and unmounted.
    pub unmounted: bool,
}

/// Removes `dev` (Linux's unbind of a pmem namespace, `MF_MEM_PRE_REMOVE`):
/// with its file system frozen (`crate::freeze::with_frozen`), every
/// process that maps it loses its mappings and is told
/// (`crate::memfail::pre_remove`), the holder makes its file system
/// consistent and unmounts it, the device goes back to no holder and is
/// marked dead: later system calls on its open files fail (EIO), mounts and
/// raw access are refused. The file system's lock is taken once, so a
/// system call in progress (a long `pwrite`) finishes first and the next
/// one fails: nothing waits for the device again.
pub fn unbind(dev: &'static Device) -> Result<Unbound, String> {
    let i = index_of(dev);
    if DEAD[i].swap(true, Ordering::SeqCst) {
        return Err(alloc::format!("{}: already unbound", dev.name()));
    }
    crate::warn!("{}: unbinding: unmapping every process that maps it, then unmounting", dev.name());
    let unmounted = holder_of(dev) == HolderKind::FileSystem;
    let remove = || {
        crate::memfail::pre_remove(i, dev.phys_base(), dev.len());
        match dev.notify_failure(0, u64::MAX, MfFlags::PRE_REMOVE) {
            Ok(()) | Err(PmemError::NoHolder) => {}
            Err(e) => crate::error!("{}: the holder failed at removal: {e}", dev.name()),
        }
    };
    if unmounted {
        // Frozen while its mappings go and it unmounts: new changes and
        // shared write faults wait at the gate and, after the thaw, find
        // the file system gone. The device leaves whatever happens, so a
        // freeze that fails (changes in flight that do not finish) is
        // logged and the removal goes on without it.
        if let Err(e) = crate::freeze::with_frozen(remove) {
            crate::warn!("{}: could not freeze before removal ({e}); removing anyway", dev.name());
            remove();
        }
    } else {
        remove();
    }
    release(dev);
    crate::warn!("{}: unbound: the device is dead until reboot", dev.name());
    Ok(Unbound { unmounted })
}

fsdax_hal::shell_command!(UNBIND_CMD, name: "unbind", usage: "unbind REGION",
help: "remove a pmem device: unmap and tell its mappers, unmount its file system, mark it dead",
run: |args| {
    let [dev] = args else { return crate::kprintln!("usage: unbind REGION (e.g. unbind pmem0)") };
    let Some(d) = device(dev) else { return crate::kprintln!("no device {dev} (`pmem` lists them)") };
    match unbind(d) {
        Ok(u) => crate::kprintln!(
            "{}: unbound{}; later use of its files fails with EIO",
            d.name(),
            if u.unmounted { " (file system made consistent and unmounted)" } else { "" }
        ),
        Err(e) => crate::kprintln!("unbind: {e}"),
    }
});

/// `mf inject REGION OFFSET [LEN]`: a software memory failure (action
/// optional), as a #MC would report it.
pub fn inject(args: &[&str]) {
    let (Some(d), Some(off)) = (args.first().and_then(|a| device(a)), args.get(1).and_then(|a| parse_num(a))) else {
        return crate::kprintln!("usage: mf inject REGION OFFSET [LEN]");
    };
    let len = args.get(2).and_then(|a| parse_num(a)).unwrap_or(64);
    match ByteRange::from_len(d.phys_base() + off, len) {
        Some(r) if off.checked_add(len).is_some_and(|e| e <= d.len()) => {
            let f = memory_failure_from(r, Source::Software, None);
            crate::kprintln!("memory failure: {f}");
        }
        _ => crate::kprintln!("mf: {off:#x}+{len:#x} is outside {} ({} MiB)", d.name(), d.len() >> 20),
    }
}

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure as KFailure};

    use super::*;

    /// Tests use the second half of pmem0.
    fn scratch() -> Result<(&'static Device, u64), KFailure> {
        let d = devices().first().ok_or(kfail!("no pmem device"))?;
        Ok((d, d.len() / 2))
    }

    ktest!(nfit_regions_are_mapped, {
        let d = devices().first().ok_or(kfail!("no pmem device (NFIT)"))?;
        let bytes = fsdax_hal::acpi::table_bytes(b"NFIT").ok_or(kfail!("no NFIT"))?;
        let nfit = fsdax_drivers::nfit::Nfit::parse(bytes).map_err(|_| kfail!("NFIT"))?;
        kassert_eq!(nfit.pmem_ranges().count(), devices().len());
        let first = nfit.pmem_ranges().next().ok_or(kfail!("no range"))?;
        kassert_eq!(d.phys_base(), first.base);
        kassert_eq!(d.len(), first.length);
        let m = d.media().region();
        // The mapping translates to the NFIT's physical addresses, with
        // huge pages where aligned.
        let leaf = fsdax_hal::mm::translate_kernel(m.virt() + d.len() / 2).ok_or(kfail!("unmapped"))?;
        kassert_eq!(leaf.phys + (m.virt() + d.len() / 2 - leaf.virt), first.base + d.len() / 2);
        if first.base % fsdax_mm::HUGE_2M == 0 && first.length % fsdax_mm::HUGE_2M == 0 {
            kassert_eq!(m.stats().pages_4k, 0);
        }
        kassert!(leaf.flags.contains(fsdax_mm::paging::Flags::NO_EXECUTE));
        Ok(())
    });

    ktest!(write_read_round_trips, {
        let (d, base) = scratch()?;
        for (off, len) in [(0u64, 1usize), (4093, 7), (64, 4096), (1 << 20, 300_000), (d.len() / 2 - 5, 5)] {
            let data: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + off) as u8).collect();
            d.write(base + off, &data).map_err(|_| kfail!("write"))?;
            let mut back = alloc::vec![0u8; len];
            read(d, base + off, &mut back).map_err(|_| kfail!("read"))?;
            kassert!(back == data, "read back differs");
        }
        d.zero(base, 8192).map_err(|_| kfail!("zero"))?;
        let mut z = alloc::vec![1u8; 8192];
        read(d, base, &mut z).map_err(|_| kfail!("read zero"))?;
        kassert!(z.iter().all(|&b| b == 0));
        d.flush(base, 4096).map_err(|_| kfail!("flush"))?;
        d.fence();
        Ok(())
    });

    ktest!(out_of_range_is_an_error, {
        let d = devices().first().ok_or(kfail!("no pmem"))?;
        let mut b = [0u8; 16];
        kassert!(matches!(d.read(d.len() - 8, &mut b), Err(PmemError::OutOfRange { .. })));
        kassert!(matches!(d.write(u64::MAX - 4, &b), Err(PmemError::OutOfRange { .. })));
        kassert!(d.flush(d.len(), 1).is_err());
        let region = d.media().region();
        kassert!(region.read_mc(region.len() - 8, &mut b).is_err());
        kassert!(region.write_flush(u64::MAX - 4, &b).is_err());
        Ok(())
    });

    ktest!(poison_gives_eio_and_recovery_write_clears_it, {
        let (d, base) = scratch()?;
        let page = base + (8 << 20);
        d.write(page - 4096, &[0x11; 3 * 4096]).map_err(|_| kfail!("write"))?;
        // A memory failure 256 bytes into the page, as a #MC would report.
        let phys = ByteRange::from_len(d.phys_base() + page + 256, 64).ok_or(kfail!("range"))?;
        let f = memory_failure(phys, MfFlags::ACTION_OPTIONAL);
        kassert!(matches!(f, Failure::Recorded { new: true, holder_notified: true, .. }));
        let mut buf = alloc::vec![0u8; 4096];
        match read(d, page, &mut buf) {
            Err(PmemError::Poisoned { offset, len, copied }) => {
                kassert_eq!(offset, page + 256);
                kassert_eq!(len, 64);
                kassert_eq!(copied, 256);
                kassert!(buf[..256].iter().all(|&b| b == 0x11));
            }
            _ => return Err(kfail!("read of a poisoned page did not fail with EIO")),
        }
        // Neighbours read fine; plain writes to the poison are refused.
        read(d, page - 4096, &mut buf).map_err(|_| kfail!("left neighbour"))?;
        read(d, page + 4096, &mut buf).map_err(|_| kfail!("right neighbour"))?;
        kassert!(matches!(d.write(page + 200, &[0; 100]), Err(PmemError::Poisoned { .. })));
        // A recovery write of the whole page clears it.
        let cleared = d.recovery_write(page, &[0x22; 4096]).map_err(|_| kfail!("recovery write"))?;
        kassert_eq!(cleared, 64);
        read(d, page, &mut buf).map_err(|_| kfail!("read after recovery"))?;
        kassert!(buf.iter().all(|&b| b == 0x22));
        kassert!(matches!(d.recovery_write(page + 1, &[0; 4096]), Err(PmemError::Unaligned)));
        Ok(())
    });
}
