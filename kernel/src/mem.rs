//! The `mem` console command. Memory itself (frames, page tables, the
//! growable heap, stacks, address spaces) is in the hal (`fsdax_hal::mm`).

use fsdax_hal::mm::{frame_stats, heap_stats, take_heap_peak};

fsdax_hal::shell_command!(MEM_CMD, name: "mem", usage: "mem", help: "physical frames free/used, kernel heap (its peak since the last `mem`)", run: |_| {
    let f = frame_stats();
    let h = heap_stats();
    let peak = take_heap_peak();
    crate::kprintln!(
        "frames: {} usable ({} MiB), {} used, {} free ({} MiB)",
        f.usable,
        f.usable * 4 / 1024,
        f.used(),
        f.free,
        f.free * 4 / 1024
    );
    crate::kprintln!(
        "heap:   {} KiB used, {} KiB free of {} MiB mapped (grows on demand, up to {} GiB of address space)",
        h.used / 1024,
        h.free / 1024,
        h.size >> 20,
        h.window >> 30
    );
    crate::kprintln!(
        "        {} KiB at most since the last `mem`; {} MiB more available (free in the heap and RAM it can grow into)",
        peak / 1024,
        h.available >> 20
    );
});
