//! The NFIT that QEMU 7.2 builds for `-device nvdimm` with a 256 MiB
//! backend (see `../shared/brief/PLATFORM.md`).
//!
//! `fixtures/qemu-nfit-256m.bin` holds bytes captured in a guest with the
//! kernel's `acpi dump NFIT`; `fixtures/synth_qemu_nfit.py` (written from
//! QEMU's `hw/acpi/nvdimm.c`) produces the identical 224 bytes. The QEMU
//! test `nfit_matches_the_committed_fixture` re-captures it on every run.
//! The assertions below are what PLATFORM.md says QEMU's table contains.

use std::path::Path;

use fsdax_drivers::nfit::{AddressRangeType, Nfit, Structure};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qemu-nfit-256m.bin");

#[test]
fn qemu_fixture() {
    let path = Path::new(FIXTURE);
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{FIXTURE} is missing ({e}): it is committed; `acpi dump NFIT` in the kernel console re-captures it")
    });
    let nfit = Nfit::parse(&bytes).expect("QEMU's NFIT parses");
    assert_eq!(&nfit.header().oem_id, b"BOCHS ");

    let pmem: Vec<_> = nfit.pmem_ranges().collect();
    assert_eq!(pmem.len(), 1, "one persistent-memory SPA range");
    let spa = pmem[0];
    assert_eq!(spa.range_type, AddressRangeType::PersistentMemory);
    assert_eq!(spa.base, 0x1_0000_0000);
    assert_eq!(spa.length, 256 << 20);
    assert_eq!(nfit.spa_ranges().count(), 1);

    let maps: Vec<_> = nfit.region_mappings().collect();
    assert_eq!(maps.len(), 1, "one region mapping");
    let map = maps[0];
    assert_eq!(map.spa_index, spa.index);
    assert_eq!(map.interleave_ways, 1);
    assert_eq!(map.region_size, spa.length);
    assert_eq!(map.region_offset, 0);

    let dcrs: Vec<_> = nfit
        .structures()
        .filter_map(|s| match s {
            Structure::ControlRegion(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(dcrs.len(), 1, "one control region");
    assert_eq!(nfit.control_region(map.control_region_index), Some(dcrs[0]));
    assert_eq!(dcrs[0].windows, 0);

    assert_eq!(nfit.flush_hints().count(), 0, "no flush hints");
    assert_eq!(nfit.flush_hints_for(map.device_handle).count(), 0);
    assert_eq!(nfit.structures().count(), 3);
}
