//! In-kernel tests of the memory code (run by the kernel's harness).

use alloc::vec::Vec;

use fsdax_ktest::{kassert, kassert_eq, kfail, ktest};
use fsdax_mm::paging::{Flags, PageSize};
use fsdax_mm::{HUGE_1G, HUGE_2M, PAGE_SIZE};
use x86_64::registers::control::Cr3;

use super::*;

/// A scratch kernel-half address for mapping tests (the upper half of the
/// pmem window, which regions never use).
const SCRATCH: u64 = fsdax_mm::layout::PMEM_BASE + (3 << 40);

fn rw() -> Flags {
    Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE
}

ktest!(own_page_tables_are_live, {
    let (cr3, _) = Cr3::read();
    kassert_eq!(cr3.start_address().as_u64(), kernel_pml4());
    // The kernel's own code is mapped by the new tables.
    let here = kernel_pml4 as *const () as u64;
    kassert!(translate_kernel(here).is_some());
    kassert!(translate_kernel(phys_to_virt(0x10_0000)).is_some(), "direct map");
    Ok(())
});

ktest!(map_4k_read_write_unmap, {
    let frame = alloc_frame().ok_or(kfail!("no frame"))?;
    // SAFETY: a fresh frame owned by this test, mapped at a scratch address
    // nothing else uses.
    unsafe { map_kernel(SCRATCH, frame, PAGE_SIZE, rw(), PageSize::Size4K) }.map_err(|_| kfail!("map"))?;
    // SAFETY: just mapped, 4 KiB, writable, ours.
    unsafe { (SCRATCH as *mut u64).write_volatile(0xfeed_f00d) };
    // SAFETY: the same frame through the direct map.
    let via_direct = unsafe { (phys_to_virt(frame) as *const u64).read_volatile() };
    kassert_eq!(via_direct, 0xfeed_f00d);
    // SAFETY: the test's own scratch mapping, no longer used.
    unsafe { unmap_kernel(SCRATCH, PAGE_SIZE) }.map_err(|_| kfail!("unmap"))?;
    kassert!(translate_kernel(SCRATCH).is_none());
    free_frame(frame);
    Ok(())
});

ktest!(map_2m_and_1g_pages, {
    // A 2 MiB page of RAM.
    let phys = FRAMES.lock().as_mut().and_then(|a| a.alloc_contiguous(512, HUGE_2M)).ok_or(kfail!("no 2 MiB run"))?;
    // SAFETY: frames owned by this test, scratch virtual range.
    let s = unsafe { map_kernel(SCRATCH, phys, HUGE_2M, rw(), PageSize::Size1G) }.map_err(|_| kfail!("map 2M"))?;
    kassert_eq!(s.pages_2m, 1);
    // SAFETY: mapped and owned (see above).
    unsafe { ((SCRATCH + HUGE_2M - 8) as *mut u64).write_volatile(42) };
    // SAFETY: the same memory through the direct map.
    kassert_eq!(unsafe { (phys_to_virt(phys + HUGE_2M - 8) as *const u64).read_volatile() }, 42);
    kassert_eq!(translate_kernel(SCRATCH + 4096).map(|l| l.size), Some(PageSize::Size2M));
    // SAFETY: the test's own scratch mapping, no longer used.
    unsafe { unmap_kernel(SCRATCH, HUGE_2M) }.map_err(|_| kfail!("unmap 2M"))?;
    FRAMES
        .lock()
        .as_mut()
        .map(|a| a.free_contiguous(phys, 512))
        .ok_or(kfail!("frames"))?
        .map_err(|_| kfail!("free"))?;
    // A 1 GiB page (in another 1 GiB slot: the 2 MiB test left a page
    // directory under SCRATCH), mapped over physical address 0 (RAM in the
    // first GiB) read-only: it is only compared with the direct map.
    let scratch_1g = SCRATCH + HUGE_1G;
    let ro = Flags::PRESENT | Flags::NO_EXECUTE;
    // SAFETY: a read-only alias of low RAM, removed before returning.
    let s = unsafe { map_kernel(scratch_1g, 0, HUGE_1G, ro, PageSize::Size1G) }.map_err(|_| kfail!("map 1G"))?;
    if crate::arch::cpu::features().pdpe1gb {
        kassert_eq!(s.pages_1g, 1);
    }
    let probe = kernel_pml4();
    // SAFETY: both addresses map the PML4's frame, readable.
    let (a, b) = unsafe {
        (((scratch_1g + probe) as *const u64).read_volatile(), (phys_to_virt(probe) as *const u64).read_volatile())
    };
    kassert_eq!(a, b);
    // SAFETY: the test's own scratch mapping, no longer used.
    unsafe { unmap_kernel(scratch_1g, HUGE_1G) }.map_err(|_| kfail!("unmap 1G"))?;
    kassert!(translate_kernel(scratch_1g).is_none());
    Ok(())
});

ktest!(frames_are_returned, {
    let before = frame_stats().free;
    let f: Vec<Frame> = (0..32).filter_map(|_| Frame::alloc_zeroed()).collect();
    kassert_eq!(f.len(), 32);
    kassert_eq!(frame_stats().free, before - 32);
    drop(f);
    kassert_eq!(frame_stats().free, before);
    Ok(())
});

ktest!(heap_allocates_and_frees, {
    let used0 = heap_stats().used;
    let v: Vec<u64> = (0..100_000).collect();
    kassert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
    kassert!(heap_stats().used >= used0 + 800_000);
    drop(v);
    kassert!(heap_stats().used < used0 + 800_000);
    Ok(())
});

ktest!(heap_grows_into_free_ram_and_fails_cleanly, {
    // Well beyond the old fixed 32 MiB heap: 96 MiB in 1 MiB pieces.
    let size0 = heap_stats().size;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for i in 0..96u8 {
        let mut v = Vec::new();
        v.try_reserve_exact(1 << 20).map_err(|_| kfail!("1 MiB allocation failed before 96 MiB"))?;
        v.resize(1 << 20, i);
        pieces.push(v);
    }
    kassert!(heap_stats().size >= size0.max(96 << 20), "the heap did not grow");
    kassert!(pieces.iter().enumerate().all(|(i, p)| p[0] == i as u8 && p[(1 << 20) - 1] == i as u8));
    drop(pieces);
    // A request larger than all RAM is an error the caller sees, not a panic.
    let mut huge: Vec<u8> = Vec::new();
    let free_before = frame_stats().free;
    kassert!(huge.try_reserve_exact(1 << 30).is_err(), "a 1 GiB allocation succeeded in a 512 MiB machine");
    kassert_eq!(frame_stats().free, free_before, "a failed allocation took RAM");
    // And the heap still works afterwards.
    let small: Vec<u32> = (0..1000).collect();
    kassert_eq!(small[999], 999);
    Ok(())
});

ktest!(the_heap_provides_what_it_says_is_available, {
    let avail = heap_stats().available;
    kassert!(avail > 64 << 20, "less than 64 MiB available in a 512 MiB machine");
    // Take all of it but 8 MiB, in 1 MiB pieces: every one must succeed.
    let want = (avail - (8 << 20)) >> 20;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for _ in 0..want {
        let mut v = Vec::new();
        v.try_reserve_exact(1 << 20).map_err(|_| kfail!("an allocation within the available bytes failed"))?;
        v.push(1);
        pieces.push(v);
    }
    let left = heap_stats().available;
    kassert!(left < 16 << 20, "the heap still reports much available after taking it");
    drop(pieces);
    kassert!(heap_stats().available >= avail - (4 << 20), "freed memory is available again");
    // The high-water mark saw all of it.
    kassert!(take_heap_peak() as u64 >= want << 20);
    kassert!((take_heap_peak() as u64) < want << 20, "the peak starts again at the current use");
    Ok(())
});

ktest!(address_spaces_are_private, {
    let a = AddressSpace::new().ok_or(kfail!("space a"))?;
    let b = AddressSpace::new().ok_or(kfail!("space b"))?;
    let mut frame = Frame::alloc_zeroed().ok_or(kfail!("frame"))?;
    frame.write(8, &0x1234u64.to_le_bytes());
    let phys = frame.phys();
    a.map_frame(0x4000_0000, frame, rw()).map_err(|_| kfail!("map"))?;
    kassert_eq!(a.translate(0x4000_0000).map(|l| l.phys), Some(phys));
    kassert!(b.translate(0x4000_0000).is_none(), "b sees a's mapping");
    kassert!(translate_kernel(0x4000_0000).is_none(), "kernel sees a's mapping");
    let mut word = [0u8; 8];
    a.read(0x4000_0008, &mut word).map_err(|_| kfail!("read"))?;
    kassert_eq!(u64::from_le_bytes(word), 0x1234);
    kassert!(b.read(0x4000_0008, &mut word).is_err());
    // Both share the kernel half.
    let here = kernel_pml4 as *const () as u64;
    kassert_eq!(a.translate(here), translate_kernel(here));
    // Unmapping frees the owned frame.
    let before = frame_stats().free;
    a.unmap(0x4000_0000, PAGE_SIZE).map_err(|_| kfail!("unmap"))?;
    kassert!(a.translate(0x4000_0000).is_none());
    kassert_eq!(frame_stats().free, before + 1);
    // Dropping a space frees its frames and tables.
    a.map_frame(0x4000_0000, Frame::alloc_zeroed().ok_or(kfail!("frame"))?, rw()).map_err(|_| kfail!("map"))?;
    let before = frame_stats().free;
    drop(a);
    kassert!(frame_stats().free > before + 1, "dropping a space frees its frame and tables");
    Ok(())
});
