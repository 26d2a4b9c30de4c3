//! fsdax memory management: frames, page tables, DAX mappings, memory failure.
#![cfg_attr(not(test), no_std)]
