//! Machine-check architecture: register decoding and severity grading.
//!
//! Everything here is usable from the `#MC` handler: no allocation, no
//! locks, no panics (no indexing, no `unwrap`, no overflowing arithmetic).
//! The handler reads the registers (`IA32_MCG_CAP`, `IA32_MCG_STATUS`, and
//! each bank's `IA32_MCi_STATUS/ADDR/MISC`), wraps them in the types below,
//! and calls [`grade_event`] to decide what to do.
//!
//! Bit layouts: Intel SDM vol. 3B, chapter 16 ("Machine-Check
//! Architecture"). The grading table is modelled on Linux's
//! `arch/x86/kernel/cpu/mce/severity.c`; see [`severity`].
#![forbid(unsafe_code)]

mod registers;
pub mod severity;
#[cfg(test)]
mod tests;

pub use registers::*;
pub use severity::{grade_bank, grade_event, EventGrade, FatalReason, Grade, InterruptedContext, Severity};
