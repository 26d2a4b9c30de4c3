//! In-kernel tests of the pieces processes stand on: fallible user copies
//! against every kind of bad address, demand paging, rights and stack
//! growth of a process's memory.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_hal::mm::{AddressSpace, Frame};
use fsdax_hal::uaccess::{self, UserFault, UserStrError};
use fsdax_ktest::{kassert, kassert_eq, kfail, ktest};
use fsdax_mm::paging::Flags;
use fsdax_mm::vma::Prot;

use super::vm::{Access, FaultError, Resolved, Vm, STACK_INITIAL, STACK_MAX, STACK_TOP};
use crate::task::{self, ExitReason};

const VA: u64 = 0x6000_0000;

ktest!(user_copies_fail_cleanly_on_null_kernel_unmapped_and_straddling_addresses, {
    // One user page at VA; the page after it is a hole.
    let space = AddressSpace::new().ok_or(kfail!("space"))?;
    let frame = Frame::alloc_zeroed().ok_or(kfail!("frame"))?;
    space
        .map_frame(VA, frame, Flags::WRITABLE | Flags::USER_ACCESSIBLE | Flags::NO_EXECUTE)
        .map_err(|_| kfail!("map"))?;
    let failures = Arc::new(AtomicU64::new(u64::MAX));
    let f = Arc::clone(&failures);
    let id = task::Builder::new("uaccess")
        .address_space(space)
        .spawn(move || {
            let mut bad = 0u64;
            let mut check = |n: u64, ok: bool| {
                if !ok {
                    bad |= 1 << n;
                }
            };
            let mut buf = [0u8; 16];
            check(0, uaccess::copy_to_user(0, &[1]) == Err(UserFault { copied: 0 }));
            check(1, uaccess::copy_from_user(&mut buf, 8).is_err());
            check(2, uaccess::copy_from_user(&mut buf, 0xffff_8000_0000_0000) == Err(UserFault { copied: 0 }));
            check(3, uaccess::copy_to_user(fsdax_abi::USER_END - 4, &buf[..8]).is_err());
            check(4, uaccess::copy_to_user(u64::MAX - 4, &buf[..8]).is_err());
            // Straddling the end of the page: the first 8 bytes go through.
            check(5, uaccess::copy_to_user(VA + 4096 - 8, &[7; 16]) == Err(UserFault { copied: 8 }));
            check(6, uaccess::copy_to_user(VA + 3, &[9; 8]).is_ok());
            let mut back = [0u8; 8];
            check(7, uaccess::copy_from_user(&mut back, VA + 3).is_ok() && back == [9; 8]);
            // A string that ends right at the hole is fine; one that runs
            // into it is EFAULT; one longer than the buffer is too long.
            check(8, uaccess::copy_to_user(VA + 4092, b"abc\0").is_ok());
            let mut s = [0u8; 64];
            check(9, uaccess::strncpy_from_user(&mut s, VA + 4092) == Ok(3) && &s[..3] == b"abc");
            check(10, uaccess::copy_to_user(VA + 4094, b"xy").is_ok());
            check(11, uaccess::strncpy_from_user(&mut s, VA + 4094) == Err(UserStrError::Fault));
            check(12, uaccess::strncpy_from_user(&mut s[..2], VA + 4092) == Err(UserStrError::TooLong));
            check(13, uaccess::strncpy_from_user(&mut s, 0) == Err(UserStrError::Fault));
            check(14, uaccess::clear_user(VA, 4096).is_ok());
            check(15, uaccess::clear_user(VA + 4090, 10) == Err(UserFault { copied: 6 }));
            f.store(bad, Ordering::SeqCst);
        })
        .map_err(|_| kfail!("spawn"))?;
    kassert_eq!(task::join(id), Some(ExitReason::Returned));
    let bad = failures.load(Ordering::SeqCst);
    // Bit n set: check n above failed.
    kassert_eq!(bad, 0);
    Ok(())
});

ktest!(smap_is_on_where_the_cpu_has_it, {
    let f = fsdax_hal::arch::cpu::features();
    kassert_eq!(uaccess::smap_enabled(), f.smap);
    Ok(())
});

ktest!(demand_paging_follows_the_areas_rights_and_the_stack_grows, {
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    let rw = 0x1000_0000;
    let ro = 0x2000_0000;
    vm.map_anon(rw, 16 * 4096, Prot::READ | Prot::WRITE).map_err(|_| kfail!("map rw"))?;
    vm.map_anon(ro, 4096, Prot::READ).map_err(|_| kfail!("map ro"))?;
    vm.map_anon(STACK_TOP - STACK_INITIAL, STACK_INITIAL, Prot::READ | Prot::WRITE).map_err(|_| kfail!("stack"))?;
    let free0 = fsdax_hal::mm::frame_stats().free;
    kassert_eq!(vm.fault(rw + 5 * 4096 + 17, Access::Write, true), Ok(Resolved::MINOR));
    kassert!(vm.space().translate(rw + 5 * 4096).is_some(), "the page is mapped");
    kassert!(vm.space().translate(rw + 6 * 4096).is_none(), "only the faulting page");
    kassert_eq!(vm.fault(ro, Access::Write, true), Err(FaultError::Denied));
    kassert_eq!(vm.fault(ro, Access::Exec, true), Err(FaultError::Denied));
    kassert_eq!(vm.fault(ro, Access::Read, true), Ok(Resolved::MINOR));
    kassert_eq!(vm.fault(0x3000_0000, Access::Read, true), Err(FaultError::NotMapped));
    kassert_eq!(vm.fault(0, Access::Read, true), Err(FaultError::NotMapped), "NULL");
    kassert_eq!(vm.fault(fsdax_abi::USER_END, Access::Read, true), Err(FaultError::NotMapped), "the last page");
    // The stack grows down on a fault below it, within 8 MiB.
    let below = STACK_TOP - STACK_INITIAL - 3 * 4096;
    kassert_eq!(vm.fault(below, Access::Write, true), Ok(Resolved::MINOR));
    kassert!(vm.read(|a| a.stack_low) <= below);
    kassert_eq!(vm.fault(STACK_TOP - STACK_MAX - 4096, Access::Write, true), Err(FaultError::NotMapped), "guard");
    kassert!(fsdax_hal::mm::frame_stats().free < free0);
    // Unmapping gives the frames back.
    vm.write(|a, space| {
        let _ = a.set.remove(rw, 16 * 4096);
        space.unmap_sparse(rw, 16 * 4096)
    })
    .map_err(|_| kfail!("unmap"))?;
    kassert!(vm.space().translate(rw + 5 * 4096).is_none());
    kassert_eq!(vm.fault(rw, Access::Read, true), Err(FaultError::NotMapped));
    drop(vm);
    kassert!(fsdax_hal::mm::frame_stats().free >= free0, "dropping the memory frees every frame");
    Ok(())
});

ktest!(memory_failure_finds_the_user_page_of_a_physical_address, {
    // What `memory_failure_consumed` reports as si_addr: the page of this
    // process that maps the poisoned frame, or nothing.
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    let at = 0x1000_0000;
    vm.map_anon(at, 8 * 4096, Prot::READ | Prot::WRITE).map_err(|_| kfail!("map"))?;
    kassert_eq!(vm.fault(at + 3 * 4096 + 8, Access::Write, true), Ok(Resolved::MINOR));
    let leaf = vm.space().translate(at + 3 * 4096).ok_or(kfail!("mapped"))?;
    let phys = leaf.phys + (at + 3 * 4096 - leaf.virt);
    kassert_eq!(vm.user_page_of(phys + 0x123), Some(at + 3 * 4096));
    kassert_eq!(vm.user_page_of(phys + 4096 * 4096), None, "a frame it does not map");
    Ok(())
});
