//! The in-kernel test harness's shared pieces.
//!
//! - [`KTest`] and the [`ktest!`] macro: a test is declared beside the code it
//!   tests and lands in the `ktests` linker section; the kernel's harness
//!   walks that section (`__start_ktests`..`__stop_ktests`) at run time.
//! - [`protocol`]: what the harness prints and the QEMU exit statuses, shared
//!   by the kernel and the host tools that read it.
#![no_std]

pub mod protocol;

use core::fmt;

/// Why a kernel test stopped early: a failed check, or a test that cannot
/// run here (skipped), with the message and where it was raised (the
/// caller's file and line: [`kfail!`] and [`kskip!`] expand at the call
/// site).
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// Source file of the check.
    pub file: &'static str,
    /// Line of the check.
    pub line: u32,
    /// What went wrong, or why the test cannot run.
    pub message: &'static str,
    /// The test did not run (e.g. it needs QEMU): neither passed nor failed.
    pub skipped: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            write!(f, "{} ({}:{})", self.message, self.file, self.line)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// The result of a kernel test: `Ok(())` passed; `Err` failed or skipped.
pub type TestResult = Result<(), Failure>;

/// A [`Failure`] at the caller's line, for `ok_or(kfail!("no frame"))?`.
#[macro_export]
macro_rules! kfail {
    ($msg:expr) => {
        $crate::Failure { file: file!(), line: line!(), message: $msg, skipped: false }
    };
}

/// Ends the enclosing kernel test as SKIPPED (it cannot run here), with the
/// reason.
#[macro_export]
macro_rules! kskip {
    ($why:expr) => {
        return Err($crate::Failure { file: file!(), line: line!(), message: $why, skipped: true })
    };
}

/// One registered kernel test.
#[derive(Debug)]
pub struct KTest {
    /// `module_path!()` inside the test's own module, so it ends with the
    /// test's name: `crate::module::test_name`.
    pub module: &'static str,
    pub name: &'static str,
    /// A test that is meant to fail: run only on request (`test selftest`),
    /// so the host can check the harness reports failures.
    pub expect_failure_selftest: bool,
    pub func: fn() -> TestResult,
}

/// Declares a kernel test beside the code it tests.
///
/// ```ignore
/// ktest!(maps_a_4k_page, {
///     kassert!(1 + 1 == 2);
///     Ok(())
/// });
/// ```
#[macro_export]
macro_rules! ktest {
    ($name:ident, $body:block) => {
        $crate::ktest!(@decl $name, false, $body);
    };
    (selftest $name:ident, $body:block) => {
        $crate::ktest!(@decl $name, true, $body);
    };
    (@decl $name:ident, $selftest:expr, $body:block) => {
        #[allow(non_snake_case)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run() -> $crate::TestResult $body
            // `link_section` counts as unsafe code: this static is a
            // `KTest`, and `ktests` holds only those.
            #[allow(unsafe_code)]
            #[used]
            #[link_section = "ktests"]
            static TEST: $crate::KTest = $crate::KTest {
                module: module_path!(),
                name: stringify!($name),
                expect_failure_selftest: $selftest,
                func: run,
            };
        }
    };
}

/// Fails the enclosing kernel test if `cond` is false.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => {
        $crate::kassert!($cond, concat!("assertion failed: ", stringify!($cond)))
    };
    ($cond:expr, $msg:expr) => {
        if !$cond {
            return Err($crate::kfail!($msg));
        }
    };
}

/// Fails the enclosing kernel test if the two values differ; both are logged.
#[macro_export]
macro_rules! kassert_eq {
    ($a:expr, $b:expr) => {
        $crate::kassert_eq!($a, $b, concat!("assertion failed: ", stringify!($a), " == ", stringify!($b)))
    };
    ($a:expr, $b:expr, $msg:expr) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            $crate::report_mismatch(stringify!($a), &a, stringify!($b), &b);
            return Err($crate::kfail!($msg));
        }
    }};
}

/// Where `kassert_eq!` reports the two values it compared. The kernel installs
/// its logger here at boot; until then mismatches are only counted.
pub static MISMATCH_SINK: spin_once::Once = spin_once::Once::new();

#[doc(hidden)]
pub fn report_mismatch(a: &str, av: &dyn fmt::Debug, b: &str, bv: &dyn fmt::Debug) {
    if let Some(sink) = MISMATCH_SINK.get() {
        sink(format_args!("  left  {a} = {av:?}\n  right {b} = {bv:?}"));
    }
}

mod spin_once {
    use core::fmt::Arguments;
    use core::sync::atomic::{AtomicPtr, Ordering};

    /// A function pointer set once at boot.
    #[derive(Debug)]
    pub struct Once(AtomicPtr<()>);

    impl Once {
        pub const fn new() -> Self {
            Self(AtomicPtr::new(core::ptr::null_mut()))
        }
        pub fn set(&self, f: fn(Arguments<'_>)) {
            self.0.store(f as *mut (), Ordering::Release);
        }
        pub fn get(&self) -> Option<fn(Arguments<'_>)> {
            let p = self.0.load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            // SAFETY: the only non-null value ever stored is a
            // `fn(Arguments)` (see `set`); function pointers and data
            // pointers have the same size on every target this builds for.
            Some(unsafe { core::mem::transmute::<*mut (), fn(Arguments<'_>)>(p) })
        }
    }
}
