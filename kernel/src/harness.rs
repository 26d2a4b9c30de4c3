//! The in-kernel test harness.
//!
//! Tests are declared beside the code they test with `fsdax_ktest::ktest!`
//! (in this crate and in the hal) and collected from the `ktests` linker
//! section. The `test` command line runs each in its own task (so a
//! faulting test is killed and reported as failed while the rest go on),
//! prints one line per test (`ok`, `FAILED: why`, or `SKIPPED: why` for a
//! test that cannot run here) and exactly one summary line
//! `ktest: P passed, F failed, S skipped`, and exits QEMU with a status that
//! says pass or fail.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_hal::registry::ktests;
use fsdax_ktest::protocol::{ExitCode, SUMMARY_PREFIX};
use fsdax_ktest::{kassert, ktest, KTest, TestResult};

use crate::task::{self, ExitReason};

/// How one test ended.
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// Runs one test in its own task.
fn run_one(test: &'static KTest) -> Outcome {
    let slot: Arc<spin::Mutex<Option<TestResult>>> = Arc::new(spin::Mutex::new(None));
    let out = Arc::clone(&slot);
    let id = match task::spawn(test.name, move || {
        let r = (test.func)();
        *out.lock() = Some(r);
    }) {
        Ok(id) => id,
        Err(e) => return Outcome::Failed(format!("could not spawn its task: {e}")),
    };
    match task::join(id) {
        Some(ExitReason::Returned) => match slot.lock().take() {
            Some(Ok(())) => Outcome::Passed,
            Some(Err(f)) if f.skipped => Outcome::Skipped(format!("{f}")),
            Some(Err(f)) => Outcome::Failed(format!("{f}")),
            None => Outcome::Failed(String::from("the test task returned no result")),
        },
        Some(ExitReason::Fault(f)) => Outcome::Failed(format!("the test task faulted: {f}")),
        Some(ExitReason::Killed) => Outcome::Failed(String::from("the test task was killed")),
        Some(ExitReason::Panicked) => Outcome::Failed(String::from("the test task panicked")),
        Some(ExitReason::MachineCheck { phys, .. }) => {
            Outcome::Failed(format!("the test task consumed poison at {phys:#x}"))
        }
        None => Outcome::Failed(String::from("the test task vanished")),
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that could not run here.
    pub skipped: usize,
}

/// Runs the selected tests.
///
/// `args`: `selftest` also runs the tests that are meant to fail; any other
/// word is a filter on `module::name`.
pub fn run(args: &[&str]) -> Summary {
    let selftest = args.contains(&"selftest");
    let filters: Vec<&str> = args.iter().copied().filter(|a| *a != "selftest").collect();
    let mut sum = Summary::default();
    let mut tests: Vec<&'static KTest> = ktests().iter().collect();
    tests.sort_by_key(|t| t.module);
    for test in tests {
        if test.expect_failure_selftest && !selftest {
            continue;
        }
        let full = test.module.strip_prefix("fsdax_kernel::").unwrap_or(test.module);
        if !filters.is_empty() && !filters.iter().any(|f| full.contains(f)) {
            continue;
        }
        let t0 = fsdax_hal::time::rdtsc();
        let result = run_one(test);
        let us = fsdax_hal::time::cycles_to_ns(fsdax_hal::time::rdtsc() - t0) / 1000;
        match result {
            Outcome::Passed => {
                sum.passed += 1;
                crate::kprintln!("ktest {full} ... ok ({us} us)");
            }
            Outcome::Failed(why) => {
                sum.failed += 1;
                crate::kprintln!("ktest {full} ... FAILED: {why}");
            }
            Outcome::Skipped(why) => {
                sum.skipped += 1;
                crate::kprintln!("ktest {full} ... SKIPPED: {why}");
            }
        }
    }
    crate::kprintln!("{SUMMARY_PREFIX}{} passed, {} failed, {} skipped", sum.passed, sum.failed, sum.skipped);
    sum
}

/// `test` mode: run, then leave QEMU with the verdict.
pub fn run_and_exit(args: &[&str]) -> ! {
    let sum = run(args);
    let code = if sum.failed == 0 && sum.passed > 0 { ExitCode::TestsPassed } else { ExitCode::TestsFailed };
    fsdax_hal::power::exit_qemu(code)
}

ktest!(selftest harness_detects_failure, {
    kassert!(1 + 1 == 3, "deliberate failure: the host checks this is reported");
    Ok(())
});

ktest!(selftest harness_reports_a_skip, {
    fsdax_ktest::kskip!("deliberate skip: the host checks this is reported as skipped, not passed");
});

ktest!(harness_finds_its_tests, {
    kassert!(ktests().len() >= 2);
    kassert!(ktests().iter().any(|t| t.name == "harness_detects_failure" && t.expect_failure_selftest));
    // Tests beside the hal's own code are registered too.
    kassert!(ktests().iter().any(|t| t.module.starts_with("fsdax_hal::")), "no hal tests were linked");
    Ok(())
});
