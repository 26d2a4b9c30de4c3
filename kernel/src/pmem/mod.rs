//! Persistent memory in the kernel: discovery (NFIT), one [`Device`] per
//! region, memory failure, and the console commands.
//!
//! ```text
//! NFIT (drivers::nfit) ──► PmemMapping (DAX window, largest pages)
//!                          └► KernelMedia (copy_mc / flushing copies)
//!                             └► PmemDevice (drivers::pmem::device):
//!                                read/write/flush/zero, poison list,
//!                                recovery write, holder
//! #MC ─► poison rings ─► memory-failure task ─► memory_failure(phys)
//!        ─► device.record_poison ─► holder.notify_failure
//! ```

pub mod mapping;
pub mod media;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_drivers::nfit::Nfit;
use fsdax_drivers::pmem::device::{DeviceLock, DeviceState, Holder, HolderError, MfFlags, PmemDevice, PmemError};
use fsdax_drivers::pmem::ByteRange;
use x86_64::instructions::interrupts::without_interrupts;

use self::mapping::PmemMapping;
use self::media::KernelMedia;

/// The kernel's device lock: a spin lock held with interrupts off, like
/// every kernel lock (see docs/design.md).
#[derive(Debug)]
pub struct IrqLock<T>(spin::Mutex<T>);

impl<T: Send> DeviceLock<T> for IrqLock<T> {
    fn new(value: T) -> Self {
        IrqLock(spin::Mutex::new(value))
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        without_interrupts(|| f(&mut self.0.lock()))
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

/// The holder every device gets until a file system claims it: it logs.
#[derive(Debug)]
pub struct LoggingHolder {
    name: String,
}

impl Holder for LoggingHolder {
    fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), HolderError> {
        crate::info!("{}: holder notified: offset {offset:#x} len {len} flags {flags:?}", self.name);
        Ok(())
    }
}

/// A fresh logging holder for device `name`.
pub fn logging_holder(name: &str) -> Arc<dyn Holder> {
    Arc::new(LoggingHolder { name: String::from(name) })
}

const DEVICE_NAMES: [&str; 8] = ["pmem0", "pmem1", "pmem2", "pmem3", "pmem4", "pmem5", "pmem6", "pmem7"];

/// Finds the persistent-memory ranges in the NFIT and maps each one.
pub fn init() {
    let Some(bytes) = crate::acpi::table_bytes(b"NFIT") else {
        crate::info!("pmem: no NFIT: no persistent memory");
        DEVICES.call_once(Vec::new);
        return;
    };
    let nfit = match Nfit::parse(bytes) {
        Ok(n) => n,
        Err(e) => {
            crate::error!("pmem: NFIT rejected ({e:?}): no persistent memory");
            DEVICES.call_once(Vec::new);
            return;
        }
    };
    let mut devs = Vec::new();
    for range in nfit.pmem_ranges() {
        let Some(&name) = DEVICE_NAMES.get(devs.len()) else {
            crate::warn!("pmem: more than {} regions; ignoring the rest", DEVICE_NAMES.len());
            break;
        };
        // SAFETY: an NFIT persistent-memory range: not RAM, owned by this driver.
        match unsafe { PmemMapping::new(range.base, range.length) } {
            Ok(map) => {
                let s = map.stats();
                crate::info!(
                    "pmem: {name}: SPA range {} at {:#x}, {} MiB, mapped at {:#x} ({}x1G {}x2M {}x4K)",
                    range.index,
                    range.base,
                    range.length >> 20,
                    map.virt(),
                    s.pages_1g,
                    s.pages_2m,
                    s.pages_4k
                );
                let dev = Device::new(name, range.base, KernelMedia::new(map));
                let _ = dev.set_holder(logging_holder(name));
                devs.push(dev);
            }
            Err(e) => crate::error!("pmem: cannot map SPA range {:#x}+{:#x}: {e:?}", range.base, range.length),
        }
    }
    DEVICES.call_once(|| devs);
}

/// How a memory failure ended, for the log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Recorded in `device`'s poison list (`new`: not known before).
    Recorded { device: usize, offset: u64, len: u64, new: bool, holder_notified: bool },
    /// The address is not persistent memory.
    NotPmem,
}

/// Handles poison at physical range `phys`: record it in the owning
/// device's bad-block list, tell the device's holder, log one line.
/// Runs in task context (the #MC handler only queues).
pub fn memory_failure(phys: ByteRange, flags: MfFlags) -> Failure {
    let kind = if flags.contains(MfFlags::ACTION_REQUIRED) { "action required" } else { "action optional" };
    let Some((i, dev)) = devices().iter().enumerate().find(|(_, d)| d.contains_phys(phys.start())) else {
        crate::warn!(
            "memory failure at {:#x}+{} ({kind}): not persistent memory; not handled",
            phys.start(),
            phys.len()
        );
        return Failure::NotPmem;
    };
    let offset = dev.phys_to_offset(phys.start()).unwrap_or(0);
    let len = phys.len().min(dev.len() - offset);
    let new = match dev.record_poison(offset, len) {
        Ok(new) => new,
        Err(e) => {
            crate::error!("{}: recording poison at {offset:#x}: {e:?}", dev.name());
            true
        }
    };
    let holder_notified = match dev.notify_failure(offset, len, flags) {
        Ok(()) => true,
        Err(PmemError::NoHolder) => false,
        Err(e) => {
            crate::error!("{}: holder failed: {e:?}", dev.name());
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
    Failure::Recorded { device: i, offset, len, new, holder_notified }
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
        crate::error!("pmem: cannot start the memory-failure task: {e:?}");
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

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(1 << shift)
}

fn describe(e: PmemError) -> String {
    match e {
        PmemError::Poisoned { offset, len, copied } => {
            format!("EIO: poisoned range {offset:#x}+{len:#x} ({copied} bytes copied before it)")
        }
        PmemError::OutOfRange { offset, len } => format!("out of range: {offset:#x}+{len:#x}"),
        other => format!("{other:?}"),
    }
}

/// Hex dump with repeated lines folded into `*`.
fn hexdump(base: u64, bytes: &[u8]) {
    let mut prev: Option<&[u8]> = None;
    let mut folded = false;
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if prev == Some(chunk) && i * 16 + 16 < bytes.len() {
            if !folded {
                crate::kprintln!("*");
                folded = true;
            }
            continue;
        }
        folded = false;
        prev = Some(chunk);
        crate::kprint!("{:010x}:", base + (i * 16) as u64);
        for b in chunk {
            crate::kprint!(" {b:02x}");
        }
        crate::kprintln!();
    }
}

/// Parses `REGION OFFSET BYTE LEN` into the device, offset and a fill
/// buffer (at most 64 MiB), after handling queued poison.
fn fill_args(dev: &str, off: &str, byte: &str, len: &str) -> Option<(&'static Device, u64, Vec<u8>)> {
    let (d, off, byte, len) = (device(dev)?, parse_num(off)?, parse_num(byte)?, parse_num(len)?);
    if len == 0 || len > 64 << 20 || byte > 0xff {
        return None;
    }
    drain_machine_check_poison();
    Some((d, off, alloc::vec![byte as u8; len as usize]))
}

fn cmd_pmem(args: &[&str]) {
    match args {
        [] => {
            if devices().is_empty() {
                crate::kprintln!("no persistent memory");
            }
            for d in devices() {
                let s = d.media().mapping().stats();
                crate::kprintln!(
                    "{}  phys {:#x}  size {} MiB  mapped at {:#x} ({}x1G {}x2M {}x4K)  bad blocks {}",
                    d.name(),
                    d.phys_base(),
                    d.len() >> 20,
                    d.media().mapping().virt(),
                    s.pages_1g,
                    s.pages_2m,
                    s.pages_4k,
                    d.poison_count()
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
            let mut buf = alloc::vec![0u8; len as usize];
            match read(d, off, &mut buf) {
                Ok(()) => hexdump(off, &buf),
                Err(e) => crate::kprintln!("{}", describe(e)),
            }
        }
        ["write", dev, off, byte, len] => {
            let Some((d, off, buf)) = fill_args(dev, off, byte, len) else {
                return crate::kprintln!("usage: pmem write REGION OFFSET BYTE LEN (at most 64 MiB, BYTE 0..=255)");
            };
            match d.write(off, &buf) {
                Ok(()) => crate::kprintln!("wrote {} bytes of {:#04x} at {off:#x} (flushed and fenced)", buf.len(), buf[0]),
                Err(e) => crate::kprintln!("{}", describe(e)),
            }
        }
        ["recover", dev, off, byte, len] => {
            let Some((d, off, buf)) = fill_args(dev, off, byte, len) else {
                return crate::kprintln!("usage: pmem recover REGION OFFSET BYTE LEN (page aligned, at most 64 MiB)");
            };
            match d.recovery_write(off, &buf) {
                Ok(cleared) => crate::kprintln!("recovery write of {} bytes at {off:#x}: {cleared} poisoned bytes cleared", buf.len()),
                Err(e) => crate::kprintln!("{}", describe(e)),
            }
        }
        ["mcloop", dev, off, secs] => {
            let (Some(d), Some(off), Some(secs)) = (device(dev), parse_num(off), parse_num(secs)) else {
                return crate::kprintln!("usage: pmem mcloop REGION OFFSET SECONDS");
            };
            mcloop(d, off, secs.min(120));
        }
        _ => crate::kprintln!("usage: pmem | pmem read R OFF LEN | pmem write R OFF BYTE LEN | pmem recover R OFF BYTE LEN | pmem mcloop R OFF SECS"),
    }
}

/// Reads the 1 MiB around `off` with machine-check-safe copies, over and
/// over with interrupts off (so the CPU is nearly always inside the copy),
/// until a read fails or `secs` pass. For injecting action-required
/// machine checks into a machine-check-safe copy from the host.
fn mcloop(d: &Device, off: u64, secs: u64) {
    const SPAN: u64 = 1 << 20;
    let start = off.saturating_sub(SPAN / 2).min(d.len().saturating_sub(SPAN)) & !4095;
    let mut buf = alloc::vec![0u8; SPAN.min(d.len()) as usize];
    drain_machine_check_poison();
    crate::kprintln!("mcloop: running over {:#x}+{:#x} for up to {secs} s", start, buf.len());
    let deadline = crate::arch::cpu::rdtsc() + secs * crate::time::tsc_hz();
    let mut rounds = 0u64;
    let result = without_interrupts(|| loop {
        if let Err(e) = d.read(start, &mut buf) {
            break Err(e);
        }
        rounds += 1;
        if crate::arch::cpu::rdtsc() > deadline {
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

crate::shell_command!(PMEM_CMD, name: "pmem", usage: "pmem [read|write|recover|mcloop ...]",
    help: "persistent-memory regions; read (hex dump or EIO), durable write, recovery write",
    run: cmd_pmem);

crate::shell_command!(POISON_CMD, name: "poison", usage: "poison", help: "the bad-block list of every region",
run: |_| {
    drain_machine_check_poison();
    for d in devices() {
        crate::kprintln!("{}: {} bad range(s)", d.name(), d.poison_count());
        d.for_each_poison(|r| {
            crate::kprintln!("  {:#x}+{:#x} (phys {:#x})", r.start(), r.len(), d.phys_base() + r.start());
        });
    }
});

crate::shell_command!(MF_CMD, name: "mf", usage: "mf REGION OFFSET [LEN]",
help: "software-inject a memory failure (action optional), as a #MC would",
run: |args| {
    let (Some(d), Some(off)) = (args.first().and_then(|a| device(a)), args.get(1).and_then(|a| parse_num(a))) else {
        return crate::kprintln!("usage: mf REGION OFFSET [LEN]");
    };
    let len = args.get(2).and_then(|a| parse_num(a)).unwrap_or(64);
    match ByteRange::from_len(d.phys_base() + off, len) {
        Some(r) if off.checked_add(len).is_some_and(|e| e <= d.len()) => {
            let f = memory_failure(r, MfFlags::ACTION_OPTIONAL);
            crate::kprintln!("{f:?}");
        }
        _ => crate::kprintln!("out of range"),
    }
});

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, ktest, Failure as KFailure};

    use super::*;

    /// Tests use the second half of pmem0.
    fn scratch() -> Result<(&'static Device, u64), KFailure> {
        let d = devices().first().ok_or(fail("no pmem device"))?;
        Ok((d, d.len() / 2))
    }

    fn fail(message: &'static str) -> KFailure {
        KFailure { file: file!(), line: line!(), message }
    }

    ktest!(nfit_regions_are_mapped, {
        let d = devices().first().ok_or(fail("no pmem device (NFIT)"))?;
        let nfit = Nfit::parse(crate::acpi::table_bytes(b"NFIT").ok_or(fail("no NFIT"))?).map_err(|_| fail("NFIT"))?;
        kassert_eq!(nfit.pmem_ranges().count(), devices().len());
        let first = nfit.pmem_ranges().next().ok_or(fail("no range"))?;
        kassert_eq!(d.phys_base(), first.base);
        kassert_eq!(d.len(), first.length);
        let m = d.media().mapping();
        // The mapping translates to the NFIT's physical addresses, with
        // huge pages where aligned.
        let leaf = crate::mem::translate_kernel(m.virt() + d.len() / 2).ok_or(fail("unmapped"))?;
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
            d.write(base + off, &data).map_err(|_| fail("write"))?;
            let mut back = alloc::vec![0u8; len];
            read(d, base + off, &mut back).map_err(|_| fail("read"))?;
            kassert!(back == data, "read back differs");
        }
        d.zero(base, 8192).map_err(|_| fail("zero"))?;
        let mut z = alloc::vec![1u8; 8192];
        read(d, base, &mut z).map_err(|_| fail("read zero"))?;
        kassert!(z.iter().all(|&b| b == 0));
        d.flush(base, 4096).map_err(|_| fail("flush"))?;
        d.fence();
        Ok(())
    });

    ktest!(out_of_range_is_an_error, {
        let d = devices().first().ok_or(fail("no pmem"))?;
        let mut b = [0u8; 16];
        kassert!(matches!(d.read(d.len() - 8, &mut b), Err(PmemError::OutOfRange { .. })));
        kassert!(matches!(d.write(u64::MAX - 4, &b), Err(PmemError::OutOfRange { .. })));
        kassert!(d.flush(d.len(), 1).is_err());
        Ok(())
    });

    ktest!(poison_gives_eio_and_recovery_write_clears_it, {
        let (d, base) = scratch()?;
        let page = base + (8 << 20);
        d.write(page - 4096, &[0x11; 3 * 4096]).map_err(|_| fail("write"))?;
        // A memory failure 256 bytes into the page, as a #MC would report.
        let phys = ByteRange::from_len(d.phys_base() + page + 256, 64).ok_or(fail("range"))?;
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
            _ => return Err(fail("read of a poisoned page did not fail with EIO")),
        }
        // Neighbours read fine; plain writes to the poison are refused.
        read(d, page - 4096, &mut buf).map_err(|_| fail("left neighbour"))?;
        read(d, page + 4096, &mut buf).map_err(|_| fail("right neighbour"))?;
        kassert!(matches!(d.write(page + 200, &[0; 100]), Err(PmemError::Poisoned { .. })));
        // A recovery write of the whole page clears it.
        let cleared = d.recovery_write(page, &[0x22; 4096]).map_err(|_| fail("recovery write"))?;
        kassert_eq!(cleared, 64);
        read(d, page, &mut buf).map_err(|_| fail("read after recovery"))?;
        kassert!(buf.iter().all(|&b| b == 0x22));
        kassert!(matches!(d.recovery_write(page + 1, &[0; 4096]), Err(PmemError::Unaligned)));
        Ok(())
    });
}
