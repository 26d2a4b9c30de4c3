//! Benchmarks, printed as one JSON line per measurement. Numbers, never
//! assertions: run with `./fsdax bench` (command line `bench [NAME...]`) or
//! `bench NAME` in the console.
//!
//! `pmem`: the raw ceiling of the pmem device that file benchmarks are held
//! against: writes with plain stores, non-temporal stores and stores +
//! cache-line write-back, reads with the machine-check-safe copy and with a
//! plain copy, at 4 KiB, 2 MiB and 64 MiB. It overwrites the last 64 MiB of
//! pmem0.

use alloc::vec;

use fsdax_ktest::protocol::ExitCode;

use crate::arch::{copy, cpu};

/// Prints one measurement.
fn report(bench: &str, name: &str, size: u64, bytes: u64, cycles: u64) {
    let hz = u128::from(crate::time::tsc_hz().max(1));
    // MB/s = bytes / (cycles / hz) / 1e6
    let mbps = u128::from(bytes) * hz / u128::from(cycles.max(1)) / 1_000_000;
    crate::kprintln!(
        "{{\"bench\":\"{bench}\",\"name\":\"{name}\",\"size\":{size},\"bytes\":{bytes},\"cycles\":{cycles},\"gbps\":{}.{:03}}}",
        mbps / 1000,
        mbps % 1000
    );
}

/// A measured operation: `pm` in the pmem mapping, `ram` a RAM buffer, both
/// valid for `len` bytes.
type Op = unsafe fn(pm: *mut u8, ram: *mut u8, len: usize);

unsafe fn write_plain(pm: *mut u8, ram: *mut u8, len: usize) {
    // SAFETY: `Op`'s contract.
    unsafe { copy::copy_plain(pm, ram, len) }
}

unsafe fn write_nt(pm: *mut u8, ram: *mut u8, len: usize) {
    // SAFETY: `Op`'s contract.
    unsafe { copy::copy_flush(pm, ram, len) };
    copy::fence();
}

unsafe fn write_clwb(pm: *mut u8, ram: *mut u8, len: usize) {
    // SAFETY: `Op`'s contract.
    unsafe {
        copy::copy_plain(pm, ram, len);
        copy::flush(pm, len);
    }
    copy::fence();
}

unsafe fn read_mc(pm: *mut u8, ram: *mut u8, len: usize) {
    // SAFETY: `Op`'s contract.
    unsafe { copy::copy_mc(ram, pm, len) };
}

unsafe fn read_plain(pm: *mut u8, ram: *mut u8, len: usize) {
    // SAFETY: `Op`'s contract.
    unsafe { copy::copy_plain(ram, pm, len) }
}

/// The pmem copy benchmarks.
pub fn pmem() {
    let Some(dev) = crate::pmem::devices().first() else {
        crate::kprintln!("bench pmem: no persistent memory");
        return;
    };
    const CHUNK: u64 = 2 << 20;
    const BIG: u64 = 64 << 20;
    if dev.len() < BIG {
        crate::kprintln!("bench pmem: pmem0 is smaller than 64 MiB");
        return;
    }
    let base = dev.media().mapping().virt() + dev.len() - BIG;
    let mut ram = vec![0x5au8; CHUNK as usize];
    let ram_ptr = ram.as_mut_ptr();
    crate::info!(
        "bench pmem: pmem0 at {:#x}, scratch = last 64 MiB; flush with {}; TSC {} MHz",
        dev.phys_base(),
        copy::flush_insn().name(),
        crate::time::tsc_hz() / 1_000_000
    );
    // Touch the whole scratch area once, so that no measurement pays for the
    // host faulting in pages of the NVDIMM's backing file.
    // SAFETY: the last 64 MiB of the pmem mapping.
    unsafe { copy::zero_flush(base as *mut u8, BIG as usize) };
    copy::fence();
    let ops: [(&str, Op); 5] = [
        ("write_plain", write_plain),
        ("write_nt", write_nt),
        ("write_clwb", write_clwb),
        ("read_mc", read_mc),
        ("read_plain", read_plain),
    ];
    for (name, op) in ops {
        for (size, reps) in [(4096u64, 256u64), (CHUNK, 8), (BIG, 1)] {
            // Warm the translation and caches once.
            // SAFETY: `base` starts the last 64 MiB of the pmem mapping and
            // `ram_ptr` the 2 MiB buffer; at most 2 MiB is copied.
            unsafe { op(base as *mut u8, ram_ptr, size.min(CHUNK) as usize) };
            let t0 = cpu::rdtsc();
            for r in 0..reps {
                let mut done = 0;
                while done < size {
                    let len = (size - done).min(CHUNK);
                    let at = base + (r * size + done) % BIG;
                    // SAFETY: `at + len <= base + BIG` because sizes divide BIG.
                    unsafe { op(at as *mut u8, ram_ptr, len as usize) };
                    done += len;
                }
            }
            report("pmem", name, size, size * reps, cpu::rdtsc() - t0);
        }
    }
    drop(ram);
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
            crate::kprintln!("bench: no benchmark {n:?} (have: pmem)");
        }
    }
}

/// `bench` mode: run, then leave QEMU.
pub fn run_and_exit(names: &[&str]) -> ! {
    run(names);
    crate::kprintln!("bench: done");
    crate::panic::exit_qemu(ExitCode::BenchDone)
}

crate::shell_command!(BENCH_CMD, name: "bench", usage: "bench [pmem]",
    help: "benchmarks, one JSON line per measurement (pmem overwrites the last 64 MiB of pmem0)",
    run: run);
