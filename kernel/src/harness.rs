//! The in-kernel test harness.
//!
//! Tests are declared beside the code they test with `fsdax_ktest::ktest!`
//! and collected from the `ktests` linker section. The `test` command line
//! runs each in its own task (so a faulting test is killed and reported as
//! failed while the rest go on), prints one line per test and exactly one
//! summary line `ktest: N passed, N failed`, and exits QEMU with a status
//! that says pass or fail.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use fsdax_ktest::protocol::{ExitCode, SUMMARY_PREFIX};
use fsdax_ktest::{kassert, ktest, KTest, TestResult};
use spin::Mutex;

use crate::task::{self, ExitReason};

// Linker-defined symbols, never called or read by value through FFI.
#[allow(improper_ctypes)]
extern "C" {
    #[link_name = "__start_ktests"]
    static KTESTS_START: KTest;
    #[link_name = "__stop_ktests"]
    static KTESTS_STOP: KTest;
}

/// Every registered kernel test.
pub fn all() -> &'static [KTest] {
    // SAFETY: the linker defines __start_/__stop_ktests around the `ktests`
    // section, which holds only `KTest` statics placed there by `ktest!`
    // (same type, so same size and alignment, laid out as an array).
    unsafe {
        let start = core::ptr::addr_of!(KTESTS_START);
        let stop = core::ptr::addr_of!(KTESTS_STOP);
        let len = (stop as usize - start as usize) / core::mem::size_of::<KTest>();
        core::slice::from_raw_parts(start, len)
    }
}

/// Runs one test in its own task; returns `Err(reason)` on failure.
fn run_one(test: &'static KTest) -> Result<(), String> {
    let slot: Arc<Mutex<Option<TestResult>>> = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let id = task::spawn(test.name, move || {
        let r = (test.func)();
        *out.lock() = Some(r);
    })
    .map_err(|e| format!("could not spawn: {e:?}"))?;
    match task::join(id) {
        Some(ExitReason::Returned) => match slot.lock().take() {
            Some(Ok(())) => Ok(()),
            Some(Err(f)) => Err(format!("{f}")),
            None => Err(String::from("test task returned no result")),
        },
        Some(ExitReason::Fault(f)) => Err(format!("task faulted: {f}")),
        Some(ExitReason::Killed) => Err(String::from("test task was killed")),
        Some(ExitReason::Panicked) => Err(String::from("test task panicked")),
        Some(ExitReason::MachineCheck { phys, .. }) => Err(format!("test task consumed poison at {phys:#x}")),
        None => Err(String::from("test task vanished")),
    }
}

/// Runs the selected tests; returns (passed, failed).
///
/// `args`: `selftest` also runs the tests that are meant to fail; any other
/// word is a filter on `module::name`.
pub fn run(args: &[&str]) -> (usize, usize) {
    let selftest = args.contains(&"selftest");
    let filters: alloc::vec::Vec<&str> = args.iter().copied().filter(|a| *a != "selftest").collect();
    let (mut passed, mut failed) = (0, 0);
    let mut tests: alloc::vec::Vec<&'static KTest> = all().iter().collect();
    tests.sort_by_key(|t| t.module);
    for test in tests {
        if test.expect_failure_selftest && !selftest {
            continue;
        }
        let full = test.module.strip_prefix("fsdax_kernel::").unwrap_or(test.module);
        if !filters.is_empty() && !filters.iter().any(|f| full.contains(f)) {
            continue;
        }
        let t0 = crate::arch::cpu::rdtsc();
        let result = run_one(test);
        let us = crate::time::cycles_to_ns(crate::arch::cpu::rdtsc() - t0) / 1000;
        match result {
            Ok(()) => {
                passed += 1;
                crate::kprintln!("ktest {full} ... ok ({us} us)");
            }
            Err(why) => {
                failed += 1;
                crate::kprintln!("ktest {full} ... FAILED: {why}");
            }
        }
    }
    crate::kprintln!("{SUMMARY_PREFIX}{passed} passed, {failed} failed");
    (passed, failed)
}

/// `test` mode: run, then leave QEMU with the verdict.
pub fn run_and_exit(args: &[&str]) -> ! {
    let (passed, failed) = run(args);
    let code = if failed == 0 && passed > 0 { ExitCode::TestsPassed } else { ExitCode::TestsFailed };
    crate::panic::exit_qemu(code)
}

ktest!(selftest harness_detects_failure, {
    kassert!(1 + 1 == 3, "deliberate failure: the host checks this is reported");
    Ok(())
});

ktest!(harness_finds_its_tests, {
    kassert!(all().len() >= 2);
    kassert!(all().iter().any(|t| t.name == "harness_detects_failure" && t.expect_failure_selftest));
    Ok(())
});
