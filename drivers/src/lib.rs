//! fsdax drivers: ACPI/NFIT, pmem, serial, APIC.
#![cfg_attr(not(test), no_std)]
