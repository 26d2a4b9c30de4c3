//! In-kernel test registry.
#![no_std]
