//! Benchmarks, printed as one JSON line per measurement. Numbers, never
//! assertions: run with `./fsdax bench --kernel` (command line `bench [NAME...]`) or
//! `bench NAME` in the console.
//!
//! `pmem`: the raw ceiling of the pmem device that file benchmarks are held
//! against: writes with plain stores, non-temporal stores and stores +
//! cache-line write-back, reads with the machine-check-safe copy and with a
//! plain copy, at 4 KiB, 2 MiB and 64 MiB. It overwrites the last 64 MiB of
//! pmem0, so it claims the device first and refuses a device that holds a
//! file system (mounted or not).

use alloc::sync::Arc;

use fsdax_drivers::pmem::device::{Holder, HolderError, MfFlags};
use fsdax_hal::mm::{PmemAccessError, PmemRegion};
use fsdax_hal::time::rdtsc;
use fsdax_ktest::protocol::ExitCode;

use crate::pmem::{self, HolderKind};

/// Prints one measurement.
fn report(bench: &str, name: &str, size: u64, bytes: u64, cycles: u64) {
    let hz = u128::from(fsdax_hal::time::tsc_hz().max(1));
    // bytes/s = bytes / (cycles / hz); GB/s (decimal) from MB/s
    let bps = u128::from(bytes) * hz / u128::from(cycles.max(1));
    let mbps = bps / 1_000_000;
    crate::kprintln!(
        "{{\"bench\":\"{bench}\",\"name\":\"{name}\",\"size\":{size},\"bytes\":{bytes},\"cycles\":{cycles},\"bytes_per_s\":{bps},\"gbps\":{}.{:03}}}",
        mbps / 1000,
        mbps % 1000
    );
}

/// A measured operation between `len` bytes of the region at `offset` and
/// the RAM buffer.
type Op = fn(region: &PmemRegion, offset: u64, ram: &mut [u8]) -> Result<(), PmemAccessError>;

fn write_plain(r: &PmemRegion, off: u64, ram: &mut [u8]) -> Result<(), PmemAccessError> {
    r.write_plain(off, ram)
}

fn write_nt(r: &PmemRegion, off: u64, ram: &mut [u8]) -> Result<(), PmemAccessError> {
    r.write_flush(off, ram)?;
    r.fence();
    Ok(())
}

fn write_clwb(r: &PmemRegion, off: u64, ram: &mut [u8]) -> Result<(), PmemAccessError> {
    r.write_plain(off, ram)?;
    r.flush(off, ram.len() as u64)?;
    r.fence();
    Ok(())
}

fn read_mc(r: &PmemRegion, off: u64, ram: &mut [u8]) -> Result<(), PmemAccessError> {
    r.read_mc(off, ram).map_err(|(e, _)| e)
}

fn read_plain(r: &PmemRegion, off: u64, ram: &mut [u8]) -> Result<(), PmemAccessError> {
    r.read_plain(off, ram)
}

/// The benchmark's claim on the device: memory failures are logged.
#[derive(Debug)]
struct BenchHolder;

impl Holder for BenchHolder {
    fn notify_failure(&self, offset: u64, len: u64, _flags: MfFlags) -> Result<(), HolderError> {
        crate::warn!("bench pmem: memory failure at {offset:#x}+{len:#x} during the benchmark");
        Ok(())
    }
}

/// The pmem copy benchmarks.
pub fn pmem() {
    let Some(dev) = pmem::devices().first() else {
        crate::kprintln!("bench pmem: no persistent memory");
        return;
    };
    const CHUNK: u64 = 2 << 20;
    const BIG: u64 = 64 << 20;
    if dev.len() < BIG {
        crate::kprintln!("bench pmem: pmem0 is smaller than 64 MiB");
        return;
    }
    if let Err(e) = pmem::claim(dev, HolderKind::Raw("bench pmem"), Arc::new(BenchHolder)) {
        crate::kprintln!("bench pmem: refused: pmem0 cannot be written raw: {e}");
        return;
    }
    let region = dev.media().region();
    let base = dev.len() - BIG;
    let mut ram = match pmem::buffer(CHUNK as usize, 0x5a) {
        Ok(b) => b,
        Err(e) => {
            pmem::release(dev);
            return crate::kprintln!("bench pmem: {e}");
        }
    };
    crate::info!(
        "bench pmem: pmem0 at {:#x}, scratch = last 64 MiB; flush with {}; TSC {} MHz",
        dev.phys_base(),
        fsdax_hal::copy::flush_insn().name(),
        fsdax_hal::time::tsc_hz() / 1_000_000
    );
    // Touch the whole scratch area once, so that no measurement pays for the
    // host faulting in pages of the NVDIMM's backing file.
    let _ = region.zero_flush(base, BIG);
    region.fence();
    let ops: [(&str, Op); 5] = [
        ("write_plain", write_plain),
        ("write_nt", write_nt),
        ("write_clwb", write_clwb),
        ("read_mc", read_mc),
        ("read_plain", read_plain),
    ];
    'ops: for (name, op) in ops {
        for (size, reps) in [(4096u64, 256u64), (CHUNK, 8), (BIG, 1)] {
            // Warm the translation and caches once.
            let warm = size.min(CHUNK) as usize;
            if let Err(e) = op(region, base, &mut ram[..warm]) {
                crate::kprintln!("bench pmem: {name}: {e}");
                continue 'ops;
            }
            let t0 = rdtsc();
            for r in 0..reps {
                let mut done = 0;
                while done < size {
                    let len = (size - done).min(CHUNK);
                    let at = base + (r * size + done) % BIG;
                    // `at + len <= base + BIG` because the sizes divide BIG.
                    let _ = op(region, at, &mut ram[..len as usize]);
                    done += len;
                }
            }
            report("pmem", name, size, size * reps, rdtsc() - t0);
        }
    }
    pmem::release(dev);
}

/// Runs the named benchmarks (all when `names` is empty).
pub fn run(names: &[&str]) {
    let all: [(&str, fn()); 1] = [("pmem", pmem)];
    for (name, f) in all {
        if names.is_empty() || names.contains(&name) {
            f();
        }
    }
    for n in names {
        if !all.iter().any(|(a, _)| a == n) {
            crate::kprintln!("bench: no benchmark `{n}` (have: pmem)");
        }
    }
}

/// `bench` mode: run, then leave QEMU.
pub fn run_and_exit(names: &[&str]) -> ! {
    run(names);
    crate::kprintln!("bench: done");
    fsdax_hal::power::exit_qemu(ExitCode::BenchDone)
}

fsdax_hal::shell_command!(BENCH_CMD, name: "bench", usage: "bench [pmem]",
    help: "benchmarks, one JSON line per measurement (pmem needs pmem0 without a file system: it overwrites its last 64 MiB)",
    run: run);
