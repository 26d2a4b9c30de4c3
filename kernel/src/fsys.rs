//! The fsdax file system on pmem0, in the kernel.
//!
//! `fs mount` mounts the file system found on pmem0 (the same bytes the host
//! tool formats in the NVDIMM's backing file) through the device's
//! machine-check-safe reads and flushing writes (the device implements the
//! persistent-memory trait the file system uses), and makes it the
//! device's **holder**: from then on a memory failure on pmem0 reaches
//! [`FsHolder::notify_failure`], which asks the file system's reverse map who
//! owns the poisoned bytes, records them in the persistent bad-block list,
//! and reports every owner (file inode and offset, or metadata). The mapping
//! tasks that would be signalled come with DAX mappings (a later step).
//!
//! The mounted file system sits behind a sleeping reader-writer lock
//! ([`crate::sync::RwLock`]): reads (`ls`, `cat`, `stat`, `fsck`, `df`,
//! reverse-map queries) share it, changes take it alone, and a long
//! operation keeps interrupts on, so the timer and other tasks run while it
//! works.

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_drivers::pmem::device::{Holder, HolderError, MfFlags};
use fsdax_fs::cli::{self, Command, Tool};
use fsdax_fs::{FileSystem, MemoryEstimate, MkfsOptions, MountOptions, RmapOwner, RmapRecord};
use fsdax_kcore::memfail::Hit;

use crate::pmem::{self, Device, HolderKind};
use crate::sync::RwLock;

/// The file system on a kernel pmem device.
pub type KernelFs = FileSystem<&'static Device>;

static FS: RwLock<Option<KernelFs>> = RwLock::new(None);

/// Counts mounts: what a process holds open (an in-memory inode, a
/// directory) belongs to one mount and fails with EIO under another.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Unix time (ns) of the mount: the file system stores no timestamps, so
/// `stat` reports this one for every file.
static MOUNTED_AT_NS: AtomicU64 = AtomicU64::new(0);

/// The current mount's number (0: never mounted). Stable while the file
/// system's lock is held.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// When the current file system was mounted (Unix time, nanoseconds).
pub fn mounted_at_ns() -> u64 {
    MOUNTED_AT_NS.load(Ordering::Relaxed)
}

/// Runs `f` on the mounted file system with exclusive access (a sleeping
/// write lock); None if nothing is mounted.
pub fn with_fs<R>(f: impl FnOnce(&mut KernelFs) -> R) -> Option<R> {
    FS.write().as_mut().map(f)
}

/// Runs `f` on the mounted file system with shared access (a sleeping read
/// lock); None if nothing is mounted.
pub fn with_fs_read<R>(f: impl FnOnce(&KernelFs) -> R) -> Option<R> {
    FS.read().as_ref().map(f)
}

/// Memory failures the mounted file system has counted on its device since
/// mkfs (persistent), if one is mounted.
pub fn memory_failure_count() -> Option<u64> {
    with_fs_read(|fs| fs.memory_failures())
}

/// The file system's lock was taken and the caller may not wait (a page
/// fault inside a user copy, whose caller may hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// [`with_fs`], waiting for the lock only if `block`.
pub fn with_fs_wait<R>(block: bool, f: impl FnOnce(&mut KernelFs) -> R) -> Result<Option<R>, Busy> {
    let mut g = if block { FS.write() } else { FS.try_write().ok_or(Busy)? };
    Ok(g.as_mut().map(f))
}

/// [`with_fs_read`], waiting for the lock only if `block`.
pub fn with_fs_read_wait<R>(block: bool, f: impl FnOnce(&KernelFs) -> R) -> Result<Option<R>, Busy> {
    let g = if block { FS.read() } else { FS.try_read().ok_or(Busy)? };
    Ok(g.as_ref().map(f))
}

/// The holder a mounted file system registers on its device.
#[derive(Debug)]
pub struct FsHolder;

/// Describes the owners of a poisoned range, one line each.
fn report_owners(offset: u64, owners: &[RmapRecord]) {
    if owners.is_empty() {
        crate::memfail::note_hit(Hit::Free);
        crate::warn!("fs: poison at {offset:#x} hits free space: nothing lost");
    }
    for r in owners {
        crate::memfail::note_hit(match r.owner {
            RmapOwner::File { .. } => Hit::FileData,
            RmapOwner::Metadata(_) => Hit::Metadata,
        });
        match r.owner {
            RmapOwner::File { ino, offset: file_off } => crate::warn!(
                "fs: poison at {offset:#x} hits file data: inode {ino} at file offset {:#x} (extent {file_off:#x}+{:#x}){}",
                file_off + offset.saturating_sub(r.phys),
                r.len,
                if r.flags & fsdax_fs::RMAP_SHARED != 0 { " (shared extent: every owner is affected)" } else { "" }
            ),
            RmapOwner::Metadata(kind) => crate::warn!("fs: poison at {offset:#x} hits metadata: {kind}"),
        }
    }
}

impl Holder for FsHolder {
    fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), HolderError> {
        if flags.contains(MfFlags::PRE_REMOVE) {
            crate::warn!("fs: device going away: writing a checkpoint and unmounting");
            let fs = FS.write().take();
            if let Some(fs) = fs {
                if let Err(e) = fs.unmount() {
                    crate::error!("fs: the checkpoint at removal failed ({e}); the log still holds every change");
                }
            }
            return Ok(());
        }
        let result = with_fs(|fs| {
            let r = fs.mark_bad(offset, len);
            if r.is_ok() {
                if let Err(e) = fs.count_memory_failure() {
                    crate::warn!("fs: counting the memory failure on the media: {e}");
                }
            }
            r
        })
        .ok_or(HolderError::ShutDown)?;
        match result {
            Ok(rep) => {
                report_owners(offset, &rep.owners);
                for kind in &rep.rewritten {
                    crate::warn!(
                        "fs: poison at {offset:#x} hit the {kind}: rewritten from memory (generation {}); still mounted read-write",
                        rep.generation
                    );
                }
                Ok(())
            }
            Err(e) => {
                // The damage could not be repaired (no space anywhere for a
                // new checkpoint): the file system shut down read-only.
                crate::error!("fs: poison at {offset:#x}+{len}: {e}; the file system is read-only now");
                if let Some(owners) = with_fs_read(|fs| fs.rmap_query(offset, len)) {
                    report_owners(offset, &owners);
                }
                Err(HolderError::ShutDown)
            }
        }
    }
}

/// Mounts the file system on `dev` and makes it the device's holder.
pub fn mount(dev: &'static Device) -> Result<(), String> {
    mount_with(dev, MountOptions::default())
}

/// Mounts with options (`repair`: `fs fsck --repair` of an unmounted
/// pmem0), makes the file system the device's holder, and tells the device
/// the file system's bad blocks, so that a read of one is EIO before any
/// machine check (after a reboot the device knows no poison). Every mount
/// goes through here: it first estimates the RAM the metadata will take
/// and refuses, saying so, when the heap cannot provide it.
pub fn mount_with(dev: &'static Device, opts: MountOptions) -> Result<(), String> {
    let mut slot = FS.write();
    if slot.is_some() {
        return Err(String::from("pmem0 is already mounted (`fs umount` first)"));
    }
    if pmem::is_dead(dev) {
        return Err(alloc::format!("{}: {}", dev.name(), pmem::DEAD_DEVICE));
    }
    if let HolderKind::Raw(who) = pmem::holder_of(dev) {
        return Err(alloc::format!(
            "{} is in raw use by `{who}` (a process has it open or mapped: end it first, `ps` and `kill`)",
            dev.name()
        ));
    }
    // The metadata lives in DRAM and a failed allocation in the kernel is
    // fatal: know the cost before decoding anything big. An image the
    // estimate cannot read is left to mount, which says what is wrong.
    if let Ok(est) = KernelFs::estimate_mount(&dev) {
        let instead = if opts.repair {
            "repair the image with the host tool (`fsdax fsck --repair --pmem IMAGE`)"
        } else {
            "remove files from the image with the host tool (`fsdax rm --pmem IMAGE PATH`)"
        };
        ensure_memory(&est, est.mount_peak(opts), "for its metadata", instead)?;
    }
    let fs = KernelFs::mount_with(dev, opts).map_err(|e| alloc::format!("{}", cli::mount_error(&TOOL, e)))?;
    for (off, len) in fs.bad_blocks() {
        if let Err(e) = dev.record_poison(off, len) {
            crate::warn!("fs: telling pmem0 about bad blocks {off:#x}+{len:#x}: {e}");
        }
    }
    if let Err(e) = pmem::claim(dev, HolderKind::FileSystem, Arc::new(FsHolder)) {
        return Err(alloc::format!("{}: {e}", dev.name()));
    }
    GENERATION.fetch_add(1, Ordering::AcqRel);
    MOUNTED_AT_NS.store(
        crate::time::wall_clock_at_boot().saturating_mul(1_000_000_000).saturating_add(crate::time::uptime_ns()),
        Ordering::Relaxed,
    );
    *slot = Some(fs);
    Ok(())
}

/// RAM the kernel keeps beyond what mounting or checking the file system is
/// estimated to need: for tasks, the console and the operations after it.
const KEEP_FREE: u64 = 8 << 20;

/// Refuses, with a message that says what to do, when `need` bytes (the
/// estimate `est`'s peak for what is about to run) are more than the heap
/// can still provide, less [`KEEP_FREE`].
fn ensure_memory(est: &MemoryEstimate, need: u64, purpose: &str, instead: &str) -> Result<(), String> {
    let free = fsdax_hal::mm::heap_stats().available.saturating_sub(KEEP_FREE);
    if need <= free {
        return Ok(());
    }
    Err(alloc::format!(
        "{}'s file system needs about {} MiB of RAM {purpose} ({} files, {} extents); {} MiB are free: \
         give the machine more memory (QEMU -m), or {instead}",
        TOOL.device,
        need.div_ceil(1 << 20),
        est.files,
        est.extents,
        free >> 20
    ))
}

/// Checks that a console command on the mounted file system has the memory
/// it needs: `fsck` reads the whole state again beside the mounted one.
fn ensure_memory_for(fs: &KernelFs, cmd: &Command<'_>) -> Result<(), String> {
    let Command::Fsck { repair } = *cmd else { return Ok(()) };
    let Ok(est) = fs.memory_estimate() else { return Ok(()) };
    if repair {
        ensure_memory(
            &est,
            est.repair_peak(),
            "to repair its metadata",
            "repair the image with the host tool (`fsdax fsck --repair --pmem IMAGE`)",
        )
    } else {
        ensure_memory(
            &est,
            est.fsck_peak(),
            "to check its metadata",
            "check the image with the host tool (`fsdax fsck --pmem IMAGE`)",
        )
    }
}

/// Unmounts (checkpoint) and gives the device back to the logging holder.
/// Refused while processes hold files open (Linux's EBUSY).
pub fn unmount() -> Result<(), String> {
    let mut slot = FS.write();
    if slot.is_none() {
        return Err(String::from(NOT_MOUNTED));
    }
    let open = crate::vfs::inode::open_count();
    if open > 0 {
        return Err(alloc::format!(
            "pmem0 is busy: processes hold {open} file{} open (end them first: `ps`, `kill`)",
            if open == 1 { "" } else { "s" }
        ));
    }
    let fs = slot.take().ok_or_else(|| String::from(NOT_MOUNTED))?;
    drop(slot);
    let dev: &'static Device = fs.unmount().map_err(|e| alloc::format!("umount: {e}"))?;
    pmem::release(dev);
    Ok(())
}

/// Checks the mounted file system: `Ok` when clean, otherwise the verdict
/// (or why it could not be checked).
pub fn check() -> Result<(), String> {
    let mut out = String::new();
    let r = with_fs(|fs| Command::Fsck { repair: false }.run(fs, &TOOL, &mut out))
        .ok_or_else(|| String::from(NOT_MOUNTED))?;
    let verdict = out.lines().find(|l| l.starts_with("verdict")).unwrap_or("").trim();
    let verdict = String::from(verdict);
    match r {
        Ok(cli::Status::Done) => Ok(()),
        Ok(cli::Status::NotClean) => Err(verdict),
        Err(e) => Err(alloc::format!("{e}")),
    }
}

/// How the console names the device and its commands in messages.
const TOOL: Tool<'static> = Tool { device: "pmem0", prefix: "fs" };

const NOT_MOUNTED: &str = "nothing is mounted: `fs mount` mounts pmem0 (`fs mkfs` formats it first)";

fn cmd_fs(args: &[&str]) {
    let dev = || pmem::device("pmem0").ok_or_else(|| String::from("there is no pmem0 (no NVDIMM in the NFIT)"));
    let mut out = String::new();
    let result: Result<(), String> = match args {
        ["mkfs"] | ["mkfs", "--force"] => dev().and_then(|d| {
            if FS.read().is_some() {
                return Err(String::from("pmem0 is mounted: `fs umount` first"));
            }
            if args.len() == 1 && pmem::has_file_system(d) {
                return Err(String::from(
                    "pmem0 already holds an fsdax file system: `fs mkfs --force` reformats it, destroying everything on it",
                ));
            }
            if let HolderKind::Raw(who) = pmem::holder_of(d) {
                return Err(alloc::format!("{} is in raw use by `{who}`", d.name()));
            }
            let fs = KernelFs::mkfs(d, MkfsOptions::default()).map_err(|e| alloc::format!("mkfs: {e}"))?;
            let _ = cli::describe_mkfs(&fs, &TOOL, &mut out);
            fs.unmount().map_err(|e| alloc::format!("mkfs: {e}"))?;
            Ok(())
        }),
        ["mount"] => dev().and_then(mount).map(|()| {
            if let Some(line) = with_fs_read(|fs| cli::describe_mount(fs, &TOOL)) {
                out.push_str(&alloc::format!("{line}; the file system is pmem0's holder\n"));
            }
        }),
        ["umount"] if crate::freeze::user_frozen() => Err(String::from("pmem0 is frozen: `fs thaw` first")),
        ["umount"] => unmount().map(|()| out.push_str("unmounted pmem0\n")),
        ["freeze"] => match crate::freeze::freeze_user() {
            Ok(()) => {
                out.push_str("pmem0 frozen: checkpointed, writes and stores through mappings wait (`fs thaw`)\n");
                Ok(())
            }
            Err(fsdax_abi::Errno::EBUSY) if crate::freeze::user_frozen() => {
                Err(String::from("pmem0 is already frozen (`fs thaw` first)"))
            }
            Err(e) => Err(alloc::format!("freeze failed ({}): not frozen", e.name().unwrap_or("error"))),
        },
        ["thaw"] => match crate::freeze::thaw_user() {
            Ok(()) => {
                out.push_str("pmem0 thawed: waiting writes go on\n");
                Ok(())
            }
            Err(_) => Err(String::from("pmem0 is not frozen")),
        },
        ["fsck", "--repair"] if FS.read().is_none() => dev().and_then(|d| {
            // Not mounted (perhaps because the mount failed): mount for
            // repair, then check.
            mount_with(d, MountOptions { read_only: false, repair: true })?;
            out.push_str("mounted pmem0 for repair: a clean checkpoint was written\n");
            let check = Command::Fsck { repair: false };
            with_fs(|fs| {
                ensure_memory_for(fs, &check)?;
                check.run(fs, &TOOL, &mut out).map(|_| ()).map_err(|e| alloc::format!("{e}"))
            })
            .unwrap_or(Ok(()))
        }),
        [] | ["help"] => {
            out.push_str("  fs mkfs [--force]  format pmem0 (--force: over an existing file system)\n");
            out.push_str("  fs mount   mount pmem0 (the file system becomes its holder)\n");
            out.push_str("  fs umount  checkpoint and unmount\n");
            out.push_str("  fs freeze  checkpoint and stop every change (writes, stores through mappings) until thaw\n");
            out.push_str("  fs thaw    let the changes go on\n");
            let _ = cli::help("fs", &mut out);
            Ok(())
        }
        words => match Command::parse(words, &TOOL) {
            Some(Ok(cmd)) => {
                // A change enters the freeze's gate; the console does not
                // wait for a thaw only it could type.
                let gate = if cmd.modifies() { Some(crate::freeze::start_write(false)) } else { None };
                match gate {
                    Some(Err(_)) => Err(String::from("pmem0 is frozen: `fs thaw` first")),
                    _ => with_fs(|fs| {
                        ensure_memory_for(fs, &cmd)?;
                        cmd.run(fs, &TOOL, &mut out).map(|_| ()).map_err(|e| alloc::format!("{e}"))
                    })
                    .unwrap_or_else(|| Err(String::from(NOT_MOUNTED))),
                }
            }
            Some(Err(e)) => Err(alloc::format!("{e}")),
            None => Err(String::from("unknown fs command: `fs help` lists them")),
        },
    };
    // Printed after the file system's lock is released.
    crate::kprint!("{out}");
    if let Err(e) = result {
        crate::kprintln!("fs: {e}");
    }
}

fsdax_hal::shell_command!(FS_CMD, name: "fs", usage: "fs mkfs|mount|umount|freeze|thaw|info|df|ls|stat|cat|write|fsck|clear-bad|...",
    help: "the fsdax file system on pmem0 (mounted, it is pmem0's holder)",
    run: cmd_fs);

mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use fsdax_drivers::pmem::ByteRange;
    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure};

    use super::*;
    use crate::task::{self, ExitReason};

    fn fresh_mount() -> Result<&'static Device, Failure> {
        let d = pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        let fs = KernelFs::mkfs(d, MkfsOptions::default()).map_err(|_| kfail!("mkfs"))?;
        fs.unmount().map_err(|_| kfail!("unmount after mkfs"))?;
        mount(d).map_err(|_| kfail!("mount"))?;
        Ok(d)
    }

    ktest!(mount_and_memory_failure_reaches_the_file_owner, {
        let d = fresh_mount()?;
        let (ino, phys) = with_fs(|fs| -> Result<(u64, u64), Failure> {
            let ino = fs.open("/victim", true).map_err(|_| kfail!("create"))?;
            fs.write(ino, 0, &[0x42; 8192]).map_err(|_| kfail!("write"))?;
            let b = fs.bmap(ino, 4096).map_err(|_| kfail!("bmap"))?;
            Ok((ino, b.phys.ok_or(kfail!("hole"))? + (4096 - b.file_offset)))
        })
        .ok_or(kfail!("not mounted"))??;
        // Poison in the file's second block reaches the file system through
        // memory_failure -> device -> holder -> rmap.
        let range = ByteRange::from_len(d.phys_base() + phys + 128, 64).ok_or(kfail!("range"))?;
        let f = pmem::memory_failure(range, MfFlags::ACTION_OPTIONAL);
        kassert!(matches!(f, pmem::Failure::Recorded { holder_notified: true, .. }), "the holder was not told");
        let bad = with_fs_read(|fs| fs.bad_blocks()).ok_or(kfail!("not mounted"))?;
        kassert!(bad.iter().any(|&(p, l)| p <= phys && phys < p + l), "not in the persistent bad-block list");
        let owners = with_fs_read(|fs| fs.rmap_query(phys + 128, 64)).ok_or(kfail!("not mounted"))?;
        kassert_eq!(owners.len(), 1);
        kassert!(matches!(owners[0].owner, RmapOwner::File { ino: i, .. } if i == ino));
        // Reading the file now fails at the poison instead of crashing.
        let mut buf = [0u8; 8192];
        kassert!(
            with_fs_read(|fs| fs.read(ino, 0, &mut buf)).ok_or(kfail!("not mounted"))?.is_err()
                || buf[4096 + 128] != 0x42
        );
        // Mounted, the device refuses raw claims (the benchmark).
        kassert!(pmem::claim(d, HolderKind::Raw("test"), Arc::new(FsHolder)).is_err());
        unmount().map_err(|_| kfail!("unmount"))?;
        kassert_eq!(pmem::holder_of(d), HolderKind::Logging);
        kassert!(d.has_holder(), "the logging holder is back");
        d.recovery_write(phys & !4095, &[0; 4096]).map_err(|_| kfail!("recovery write"))?;
        // Unmounted but formatted: still refused, the file system is there.
        kassert!(matches!(
            pmem::claim(d, HolderKind::Raw("test"), Arc::new(FsHolder)),
            Err(pmem::ClaimError::HasFileSystem)
        ));
        Ok(())
    });

    ktest!(a_need_beyond_what_the_heap_can_get_is_refused_with_what_to_do, {
        let mut est = MemoryEstimate::default();
        est.files = 7;
        est.extents = 3;
        kassert!(ensure_memory(&est, 1 << 20, "for its metadata", "do less").is_ok());
        let avail = fsdax_hal::mm::heap_stats().available;
        let e = ensure_memory(&est, avail, "for its metadata", "do less").err().ok_or(kfail!("not refused"))?;
        let head =
            alloc::format!("pmem0's file system needs about {} MiB of RAM for its metadata", avail.div_ceil(1 << 20));
        kassert!(e.starts_with(&head), "{e}");
        kassert!(e.contains("(7 files, 3 extents);") && e.ends_with("(QEMU -m), or do less"), "{e}");
        Ok(())
    });

    ktest!(the_timer_runs_while_a_long_fs_operation_holds_the_lock, {
        let d = fresh_mount()?;
        with_fs(|fs| -> Result<(), Failure> {
            for i in 0..64u32 {
                let ino = fs.open(&alloc::format!("/f{i}"), true).map_err(|_| kfail!("create"))?;
                fs.write(ino, 0, &[i as u8; 20_000]).map_err(|_| kfail!("write"))?;
            }
            Ok(())
        })
        .ok_or(kfail!("not mounted"))??;
        // A busy task that counts while the file system is locked.
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, c) = (Arc::clone(&stop), Arc::clone(&count));
        let counter = task::spawn("counter", move || {
            while !s.load(Ordering::Relaxed) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| kfail!("spawn"))?;
        // Hold the lock for at least 100 ms of repeated fsck.
        let (ticks, counted, checks) = with_fs_read(|fs| {
            let (t0, c0) = (crate::time::ticks(), count.load(Ordering::Relaxed));
            let deadline = fsdax_hal::time::rdtsc() + fsdax_hal::time::tsc_hz() / 10;
            let mut checks = 0;
            while fsdax_hal::time::rdtsc() < deadline {
                if fs.fsck().is_ok() {
                    checks += 1;
                }
            }
            (crate::time::ticks() - t0, count.load(Ordering::Relaxed) - c0, checks)
        })
        .ok_or(kfail!("not mounted"))?;
        stop.store(true, Ordering::Relaxed);
        kassert_eq!(task::join(counter), Some(ExitReason::Returned));
        kassert!(checks > 0, "fsck failed");
        kassert!(ticks >= 5, "the tick did not advance while the file system was locked");
        kassert!(counted > 0, "no other task ran while the file system was locked");
        unmount().map_err(|_| kfail!("unmount"))?;
        let _ = d;
        Ok(())
    });
}
