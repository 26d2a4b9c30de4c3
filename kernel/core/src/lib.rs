//! fsdax-kcore: the kernel's decisions, as pure functions and data
//! structures tested on the host.
//!
//! The kernel crate (`fsdax-kernel`) glues these to the machine through the
//! hal; nothing here touches hardware, takes a lock or knows about
//! interrupts beyond the facts it is given. Modelled on Hubris's
//! `sys/kerncore`: simple and clear algorithms over fast and clever ones;
//! every function documents its preconditions; every decision has host
//! tests (unit tests, and property tests where the state space is large).
//!
//! - [`sched`]: the scheduler core: run queue, task states, sleep and wake,
//!   yield, exit, join, and deferred kills.
//! - [`kill`]: the one rule that says whether a task may be killed now.
//! - [`mce`]: the machine-check dispatch table (severity x context ->
//!   action).
//! - [`memfail`]: memory-failure routing (physical range -> device and
//!   offset).
//! - [`copy_mc`]: reconciling a machine-check-safe copy that stopped with
//!   the poison the machine check reported (exact stop, or resume).
//! - [`lockstate`]: the state machine of the sleeping reader-writer lock.
//! - [`signal`]: a process's signal state: sending, forcing, delivery
//!   order, masks, interrupted system calls.
//! - [`cmdline`]: the kernel command line.
//! - [`clock`]: calendar time to Unix time (the wall clock at boot).
//! - [`path`]: path resolution with Linux's rules over any namespace, and
//!   `open`'s decision.
//! - [`fdtable`]: a process's descriptor table.
//! - [`seek`]: `lseek` on a file, `SEEK_DATA` and `SEEK_HOLE` included.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

extern crate alloc;

pub mod clock;
pub mod cmdline;
pub mod copy_mc;
pub mod fdtable;
pub mod kill;
pub mod lockstate;
pub mod mce;
pub mod memfail;
pub mod path;
pub mod sched;
pub mod seek;
pub mod signal;
