//! fsdax file system (see issue 4): a `no_std` + `alloc` library.
#![cfg_attr(not(test), no_std)]
