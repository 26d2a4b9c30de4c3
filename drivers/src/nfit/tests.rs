//! Host tests of the NFIT parser: synthetic tables from a small builder,
//! malformed variants, and a no-panic property test.

use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Builds NFIT tables sub-table by sub-table, independently of the parser:
/// the byte offsets here are written from the ACPI spec's layout tables.
#[derive(Default)]
struct Builder {
    subs: Vec<Vec<u8>>,
}

fn sub(ty: u16, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[0..2].copy_from_slice(&ty.to_le_bytes());
    v[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_le_bytes());
    v
}

fn put<const K: usize>(v: &mut [u8], at: usize, bytes: [u8; K]) {
    v[at..at + K].copy_from_slice(&bytes);
}

impl Builder {
    fn spa(mut self, index: u16, guid: Guid, base: u64, len: u64) -> Self {
        let mut v = sub(0, 56);
        put(&mut v, 4, index.to_le_bytes());
        put(&mut v, 6, 0x3u16.to_le_bytes());
        put(&mut v, 12, 7u32.to_le_bytes());
        put(&mut v, 16, guid.0);
        put(&mut v, 32, base.to_le_bytes());
        put(&mut v, 40, len.to_le_bytes());
        put(&mut v, 48, 0x8008u64.to_le_bytes());
        self.subs.push(v);
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn mapping(
        mut self,
        handle: u32,
        spa_index: u16,
        dcr_index: u16,
        size: u64,
        offset: u64,
        dpa: u64,
        interleave_index: u16,
        ways: u16,
    ) -> Self {
        let mut v = sub(1, 48);
        put(&mut v, 4, handle.to_le_bytes());
        put(&mut v, 8, 0x11u16.to_le_bytes());
        put(&mut v, 10, 0x22u16.to_le_bytes());
        put(&mut v, 12, spa_index.to_le_bytes());
        put(&mut v, 14, dcr_index.to_le_bytes());
        put(&mut v, 16, size.to_le_bytes());
        put(&mut v, 24, offset.to_le_bytes());
        put(&mut v, 32, dpa.to_le_bytes());
        put(&mut v, 40, interleave_index.to_le_bytes());
        put(&mut v, 42, ways.to_le_bytes());
        put(&mut v, 44, RegionMapping::FLAG_HEALTH_ENABLED.to_le_bytes());
        self.subs.push(v);
        self
    }

    fn interleave(mut self, index: u16, line_size: u32, offsets: &[u32]) -> Self {
        let mut v = sub(2, 16 + 4 * offsets.len());
        put(&mut v, 4, index.to_le_bytes());
        put(&mut v, 8, u32::try_from(offsets.len()).unwrap().to_le_bytes());
        put(&mut v, 12, line_size.to_le_bytes());
        for (i, o) in offsets.iter().enumerate() {
            put(&mut v, 16 + 4 * i, o.to_le_bytes());
        }
        self.subs.push(v);
        self
    }

    fn smbios(mut self, data: &[u8]) -> Self {
        let mut v = sub(3, 8 + data.len());
        v[8..].copy_from_slice(data);
        self.subs.push(v);
        self
    }

    fn dcr(mut self, index: u16, serial: u32, windows: u16) -> Self {
        let len = if windows == 0 { 32 } else { 80 };
        let mut v = sub(4, len);
        put(&mut v, 4, index.to_le_bytes());
        put(&mut v, 6, 0x8086u16.to_le_bytes());
        put(&mut v, 8, 0x1u16.to_le_bytes());
        put(&mut v, 24, serial.to_le_bytes());
        put(&mut v, 28, 0x0301u16.to_le_bytes());
        put(&mut v, 30, windows.to_le_bytes());
        if windows > 0 {
            put(&mut v, 32, 0x2000u64.to_le_bytes());
            put(&mut v, 40, 0x100u64.to_le_bytes());
            put(&mut v, 48, 8u64.to_le_bytes());
            put(&mut v, 56, 0x200u64.to_le_bytes());
            put(&mut v, 64, 4u64.to_le_bytes());
            put(&mut v, 72, 1u16.to_le_bytes());
        }
        self.subs.push(v);
        self
    }

    fn bdw(mut self, dcr_index: u16, windows: u16) -> Self {
        let mut v = sub(5, 40);
        put(&mut v, 4, dcr_index.to_le_bytes());
        put(&mut v, 6, windows.to_le_bytes());
        put(&mut v, 8, 0x1000u64.to_le_bytes());
        put(&mut v, 16, 0x2000u64.to_le_bytes());
        put(&mut v, 24, 0x4000_0000u64.to_le_bytes());
        put(&mut v, 32, 0x10u64.to_le_bytes());
        self.subs.push(v);
        self
    }

    fn flush(mut self, handle: u32, addrs: &[u64]) -> Self {
        let mut v = sub(6, 16 + 8 * addrs.len());
        put(&mut v, 4, handle.to_le_bytes());
        put(&mut v, 8, u16::try_from(addrs.len()).unwrap().to_le_bytes());
        for (i, a) in addrs.iter().enumerate() {
            put(&mut v, 16 + 8 * i, a.to_le_bytes());
        }
        self.subs.push(v);
        self
    }

    fn caps(mut self, highest: u8, bits: u32) -> Self {
        let mut v = sub(7, 16);
        v[4] = highest;
        put(&mut v, 8, bits.to_le_bytes());
        self.subs.push(v);
        self
    }

    fn raw(mut self, bytes: Vec<u8>) -> Self {
        self.subs.push(bytes);
        self
    }

    fn build(self) -> Vec<u8> {
        let mut t = vec![0u8; NFIT_HEADER_LEN];
        t[0..4].copy_from_slice(b"NFIT");
        t[8] = 1;
        t[10..16].copy_from_slice(b"FSDAX ");
        t[16..24].copy_from_slice(b"TESTTABL");
        t[28..32].copy_from_slice(b"TEST");
        for s in self.subs {
            t.extend_from_slice(&s);
        }
        let len = u32::try_from(t.len()).unwrap();
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t);
        t
    }
}

fn fix_checksum(t: &mut [u8]) {
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    t[9] = 0u8.wrapping_sub(sum);
}

const GIB: u64 = 1 << 30;

/// Two pmem regions (one a 2-way interleave set), a control-region SPA,
/// a volatile range, flush hints, capabilities and an unknown type.
fn rich_table() -> Vec<u8> {
    Builder::default()
        .spa(1, GUID_PERSISTENT_MEMORY, 4 * GIB, 2 * GIB)
        .spa(2, GUID_PERSISTENT_MEMORY, 8 * GIB, GIB)
        .spa(3, GUID_CONTROL_REGION, 12 * GIB, 1 << 20)
        .spa(4, GUID_VOLATILE_MEMORY, 0, 2 * GIB)
        .mapping(0x0001, 1, 10, GIB, 0, 0, 5, 2)
        .mapping(0x0101, 1, 11, GIB, 256, 0, 5, 2)
        .mapping(0x0002, 2, 12, GIB, 0, 0, 0, 1)
        .interleave(5, 256, &[0, 2])
        .smbios(&[1, 2, 3])
        .dcr(10, 0xAAAA, 0)
        .dcr(11, 0xBBBB, 0)
        .dcr(12, 0xCCCC, 2)
        .bdw(12, 2)
        .flush(0x0001, &[0xFED0_0000, 0xFED0_0040])
        .flush(0x0101, &[0xFED1_0000])
        .caps(1, 0b11 | (1 << 7))
        .raw(sub(0x42, 12))
        .build()
}

#[test]
fn rich_table_parses_every_type() {
    let t = rich_table();
    let nfit = Nfit::parse(&t).unwrap();
    assert_eq!(nfit.header().revision, 1);
    assert_eq!(&nfit.header().oem_id, b"FSDAX ");
    assert_eq!(nfit.structures().count(), 17);

    let pmem: Vec<_> = nfit.pmem_ranges().map(|r| (r.index, r.base, r.length)).collect();
    assert_eq!(pmem, vec![(1, 4 * GIB, 2 * GIB), (2, 8 * GIB, GIB)]);
    assert_eq!(nfit.spa_ranges().count(), 4);
    assert_eq!(nfit.spa_range(3).unwrap().range_type, AddressRangeType::ControlRegion);
    assert_eq!(nfit.spa_range(4).unwrap().range_type, AddressRangeType::Volatile);
    let first = nfit.spa_range(1).unwrap();
    assert!(first.proximity_valid());
    assert_eq!(first.proximity_domain, 7);
    assert_eq!(first.memory_attributes, 0x8008);
    assert_eq!(first.location_cookie, None);
    assert!(first.contains(4 * GIB) && first.contains(6 * GIB - 1) && !first.contains(6 * GIB));
    assert_eq!(nfit.spa_range(0), None);

    let set: Vec<_> = nfit.mappings_for(1).collect();
    assert_eq!(set.len(), 2);
    assert!(set.iter().all(|m| m.interleave_ways == 2 && m.interleave_index == 5));
    assert_eq!(set[1].device_handle, 0x0101);
    assert_eq!(set[1].region_offset, 256);
    assert_eq!(set[1].control_region_index, 11);
    assert_eq!(set[1].physical_id, 0x11);
    assert_eq!(set[1].region_id, 0x22);
    assert_eq!(set[1].flags, RegionMapping::FLAG_HEALTH_ENABLED);
    assert_eq!(nfit.mappings_for(0).count(), 0);

    let il = nfit.interleave(5).unwrap();
    assert_eq!(il.line_size, 256);
    assert_eq!(il.line_count(), 2);
    assert_eq!(il.line_offsets().collect::<Vec<_>>(), vec![0, 2]);

    let dcr = nfit.control_region(11).unwrap();
    assert_eq!(dcr.serial_number, 0xBBBB);
    assert_eq!(dcr.vendor_id, 0x8086);
    assert_eq!(dcr.format_interface_code, 0x0301);
    assert_eq!(dcr.block_control, None);
    let dcr12 = nfit.control_region(12).unwrap();
    let bc = dcr12.block_control.unwrap();
    assert_eq!((bc.window_size, bc.status_size, bc.flags), (0x2000, 4, 1));

    let bdw = nfit
        .structures()
        .find_map(|s| match s {
            Structure::BlockDataWindow(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((bdw.control_region_index, bdw.windows), (12, 2));
    assert_eq!(bdw.capacity, 0x4000_0000);

    let smbios = nfit
        .structures()
        .find_map(|s| match s {
            Structure::Smbios(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!(smbios.data, &[1, 2, 3]);

    assert_eq!(nfit.flush_hints_for(0x0001).collect::<Vec<_>>(), vec![0xFED0_0000, 0xFED0_0040]);
    assert_eq!(nfit.flush_hints_for(0x0101).collect::<Vec<_>>(), vec![0xFED1_0000]);
    assert_eq!(nfit.flush_hints_for(0x0002).count(), 0);

    let caps = nfit.platform_capabilities().unwrap();
    // Bit 7 is above the highest valid capability (1): masked off.
    assert_eq!(caps.capabilities, 0b11);
    assert!(caps.cpu_cache_is_persistent());

    assert!(nfit.structures().any(|s| s == Structure::Unknown { ty: 0x42, bytes_len: 12 }));
}

#[test]
fn trailing_bytes_beyond_length_are_ignored() {
    let mut t = rich_table();
    let n = Nfit::parse(&t).unwrap().structures().count();
    t.extend_from_slice(&[0xFF; 100]);
    assert_eq!(Nfit::parse(&t).unwrap().structures().count(), n);
}

#[test]
fn empty_table_has_no_ranges() {
    let t = Builder::default().build();
    let nfit = Nfit::parse(&t).unwrap();
    assert_eq!(nfit.structures().count(), 0);
    assert_eq!(nfit.platform_capabilities(), None);
}

#[test]
fn spa_location_cookie_is_read_when_flagged() {
    let mut v = sub(0, 64);
    put(&mut v, 4, 1u16.to_le_bytes());
    put(&mut v, 6, SpaRange::FLAG_LOCATION_COOKIE_VALID.to_le_bytes());
    put(&mut v, 16, GUID_PERSISTENT_MEMORY.0);
    put(&mut v, 40, GIB.to_le_bytes());
    put(&mut v, 56, 0x00C0_0C1Eu64.to_le_bytes());
    let t = Builder::default().raw(v).build();
    let r = Nfit::parse(&t).unwrap().spa_range(1).unwrap();
    assert_eq!(r.location_cookie, Some(0x00C0_0C1E));

    // Flagged, but the structure is too short to hold the cookie.
    let mut short = sub(0, 56);
    put(&mut short, 6, SpaRange::FLAG_LOCATION_COOKIE_VALID.to_le_bytes());
    put(&mut short, 40, GIB.to_le_bytes());
    let t = Builder::default().raw(short).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 40, len: 56 });
}

#[test]
fn unknown_guid_is_kept() {
    let g = Guid::from_fields(1, 2, 3, [4; 8]);
    let t = Builder::default().spa(1, g, 0, 4096).build();
    let r = Nfit::parse(&t).unwrap().spa_range(1).unwrap();
    assert_eq!(r.range_type, AddressRangeType::Unknown(g));
    assert_eq!(Nfit::parse(&t).unwrap().pmem_ranges().count(), 0);
}

#[test]
fn guid_round_trips_and_prints_canonically() {
    for ty in [
        AddressRangeType::Volatile,
        AddressRangeType::PersistentMemory,
        AddressRangeType::ControlRegion,
        AddressRangeType::BlockDataWindow,
        AddressRangeType::VolatileVirtualDisk,
        AddressRangeType::VolatileVirtualCd,
        AddressRangeType::PersistentVirtualDisk,
        AddressRangeType::PersistentVirtualCd,
    ] {
        assert_eq!(AddressRangeType::from_guid(ty.guid()), ty);
    }
    assert_eq!(std::format!("{GUID_PERSISTENT_MEMORY}"), "66F0D379-B4F3-4074-AC43-0D3318B78CDB");
    // The mixed-endian storage order, as QEMU's NVDIMM_UUID_LE lays it out.
    assert_eq!(
        GUID_PERSISTENT_MEMORY.0,
        [0x79, 0xD3, 0xF0, 0x66, 0xF3, 0xB4, 0x74, 0x40, 0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB]
    );
}

// ---- malformed tables -------------------------------------------------

#[test]
fn bad_signature() {
    let mut t = rich_table();
    t[0] = b'X';
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadSignature);
}

#[test]
fn bad_checksum() {
    let mut t = rich_table();
    t[100] ^= 1;
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadChecksum);
}

#[test]
fn truncated_buffer() {
    let t = rich_table();
    for cut in [0, 3, 7, 20, 39, 41, t.len() - 1] {
        let err = Nfit::parse(&t[..cut]).unwrap_err();
        assert!(matches!(err, NfitError::Truncated { .. } | NfitError::BadSignature), "cut {cut}: {err:?}");
    }
}

#[test]
fn header_length_shorter_than_header() {
    let mut t = Builder::default().build();
    t[4..8].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut t);
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 0, len: 20 });
}

#[test]
fn zero_length_subtable() {
    let t = Builder::default().raw(vec![0, 0, 0, 0, 0, 0, 0, 0]).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::ZeroLength { offset: 40 });
}

#[test]
fn subtable_length_below_header() {
    let t = Builder::default().raw(vec![9, 0, 2, 0]).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 40, len: 2 });
}

#[test]
fn subtable_runs_past_end() {
    let mut v = sub(0x42, 8);
    v[2] = 200; // claims 200 bytes, only 8 present
    let t = Builder::default().raw(v).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 40, len: 200 });
}

#[test]
fn subtable_too_small_for_its_type() {
    for (ty, len) in [(0, 55), (1, 47), (2, 15), (3, 7), (4, 31), (5, 39), (6, 15), (7, 15)] {
        let t = Builder::default().raw(sub(ty, len)).build();
        assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 40, len }, "type {ty}");
    }
}

#[test]
fn control_region_with_windows_needs_full_length() {
    let mut v = sub(4, 32);
    put(&mut v, 30, 1u16.to_le_bytes());
    let t = Builder::default().raw(v).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadLength { offset: 40, len: 32 });
}

#[test]
fn flush_hint_count_exceeding_length() {
    let t = Builder::default().flush(1, &[0x1000]).build();
    let mut bad = t.clone();
    // Count 2 in a sub-table that holds one address.
    bad[40 + 8..40 + 10].copy_from_slice(&2u16.to_le_bytes());
    fix_checksum(&mut bad);
    assert_eq!(Nfit::parse(&bad).unwrap_err(), NfitError::BadCount { offset: 40, count: 2 });
    let mut huge = t;
    huge[40 + 8..40 + 10].copy_from_slice(&u16::MAX.to_le_bytes());
    fix_checksum(&mut huge);
    assert!(matches!(Nfit::parse(&huge).unwrap_err(), NfitError::BadCount { .. }));
}

#[test]
fn interleave_count_exceeding_length() {
    let mut t = Builder::default().interleave(1, 256, &[0, 1]).build();
    t[40 + 8..40 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_checksum(&mut t);
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::BadCount { offset: 40, count: u32::MAX });
}

#[test]
fn overlapping_spa_ranges() {
    let t = Builder::default()
        .spa(1, GUID_PERSISTENT_MEMORY, 4 * GIB, 2 * GIB)
        .spa(2, GUID_PERSISTENT_MEMORY, 8 * GIB, GIB)
        .spa(3, GUID_PERSISTENT_MEMORY, 6 * GIB - 4096, GIB)
        .build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::OverlappingRanges { a: 1, b: 3 });
    // Touching but not overlapping is fine.
    let t = Builder::default()
        .spa(1, GUID_PERSISTENT_MEMORY, 4 * GIB, 2 * GIB)
        .spa(2, GUID_PERSISTENT_MEMORY, 6 * GIB, GIB)
        .build();
    assert!(Nfit::parse(&t).is_ok());
}

#[test]
fn empty_and_overflowing_spa_ranges() {
    let t = Builder::default().spa(7, GUID_PERSISTENT_MEMORY, GIB, 0).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::EmptyRange { index: 7 });
    let t = Builder::default().spa(8, GUID_PERSISTENT_MEMORY, u64::MAX - 10, 11).build();
    assert_eq!(Nfit::parse(&t).unwrap_err(), NfitError::RangeOverflow { index: 8 });
    // Ending exactly at 2^64 - 1 + 1 would overflow; ending one below is fine.
    let t = Builder::default().spa(9, GUID_PERSISTENT_MEMORY, u64::MAX - 10, 10).build();
    assert!(Nfit::parse(&t).is_ok());
}

#[test]
fn too_many_spa_ranges() {
    let mut b = Builder::default();
    for i in 0..=MAX_SPA_RANGES as u64 {
        b = b.spa(1, GUID_PERSISTENT_MEMORY, i * 4096, 4096);
    }
    assert_eq!(Nfit::parse(&b.build()).unwrap_err(), NfitError::TooManyRanges);
}

#[test]
fn errors_display() {
    let e = NfitError::OverlappingRanges { a: 1, b: 2 };
    assert_eq!(std::format!("{e}"), "NFIT: SPA ranges 1 and 2 overlap");
}

// ---- property tests ---------------------------------------------------

/// Whatever happens, parsing and walking the result must not panic, and a
/// successful parse only yields structures that lie inside the table.
fn parse_and_walk(bytes: &[u8]) {
    if let Ok(nfit) = Nfit::parse(bytes) {
        let mut total = NFIT_HEADER_LEN;
        for s in nfit.structures() {
            total += match s {
                Structure::Unknown { bytes_len, .. } => usize::from(bytes_len),
                _ => SUBTABLE_HEADER_LEN,
            };
            if let Structure::FlushHint(h) = s {
                let _ = h.addresses().count();
            }
            if let Structure::Interleave(i) = s {
                let _ = i.line_offsets().count();
            }
        }
        assert!(total <= bytes.len());
        let _ = nfit.pmem_ranges().count();
        let _ = nfit.flush_hints_for(1).count();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Give random bytes a fighting chance to get past the header.
        if bytes.len() >= 10 {
            bytes[0..4].copy_from_slice(b"NFIT");
            let len = u32::try_from(bytes.len()).unwrap();
            bytes[4..8].copy_from_slice(&len.to_le_bytes());
            fix_checksum(&mut bytes);
        }
        parse_and_walk(&bytes);
    }

    #[test]
    fn mutated_tables_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        keep_checksum in any::<bool>(),
    ) {
        let mut t = rich_table();
        for (at, val) in edits {
            let i = at.index(t.len());
            t[i] = val;
        }
        if keep_checksum && t.len() > 9 {
            fix_checksum(&mut t);
        }
        let cut = cut.index(t.len() + 1);
        parse_and_walk(&t[..cut]);
        parse_and_walk(&t);
    }
}

#[derive(Clone, Debug)]
enum Sub {
    Spa { len: u64, pmem: bool },
    Flush { handle: u32, addrs: Vec<u64> },
    Interleave { lines: Vec<u32> },
    Unknown { ty: u16, len: u16 },
}

fn sub_strategy() -> impl Strategy<Value = Sub> {
    prop_oneof![
        (1u64..=(1 << 32), any::<bool>()).prop_map(|(len, pmem)| Sub::Spa { len, pmem }),
        (any::<u32>(), prop::collection::vec(any::<u64>(), 0..6))
            .prop_map(|(handle, addrs)| Sub::Flush { handle, addrs }),
        prop::collection::vec(any::<u32>(), 0..6).prop_map(|lines| Sub::Interleave { lines }),
        (8u16..100, 4u16..64).prop_map(|(ty, len)| Sub::Unknown { ty, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Well-formed tables built from random sub-tables parse back to
    /// exactly what was put in.
    #[test]
    fn well_formed_tables_round_trip(subs in prop::collection::vec(sub_strategy(), 0..12)) {
        let mut b = Builder::default();
        let mut spa = Vec::new();
        let mut flush = Vec::new();
        let mut lines = Vec::new();
        for (i, s) in subs.iter().enumerate() {
            let index = u16::try_from(i + 1).unwrap();
            b = match s {
                Sub::Spa { len, pmem } => {
                    // Bases 8 GiB apart, lengths at most 4 GiB: disjoint.
                    let base = (i as u64) << 33;
                    let guid = if *pmem { GUID_PERSISTENT_MEMORY } else { GUID_VOLATILE_MEMORY };
                    spa.push((index, base, *len, *pmem));
                    b.spa(index, guid, base, *len)
                }
                Sub::Flush { handle, addrs } => {
                    flush.push((*handle, addrs.clone()));
                    b.flush(*handle, addrs)
                }
                Sub::Interleave { lines: l } => {
                    lines.push((index, l.clone()));
                    b.interleave(index, 4096, l)
                }
                Sub::Unknown { ty, len } => b.raw(sub(*ty, usize::from(*len))),
            };
        }
        let t = b.build();
        let nfit = Nfit::parse(&t).unwrap();
        prop_assert_eq!(nfit.structures().count(), subs.len());
        let got: Vec<_> = nfit.spa_ranges().map(|r| (r.index, r.base, r.length, r.is_pmem())).collect();
        prop_assert_eq!(got, spa.clone());
        prop_assert_eq!(nfit.pmem_ranges().count(), spa.iter().filter(|s| s.3).count());
        for (handle, _) in &flush {
            let want: Vec<u64> = flush
                .iter()
                .filter(|(h, _)| h == handle)
                .flat_map(|(_, a)| a.iter().copied())
                .collect();
            prop_assert_eq!(nfit.flush_hints_for(*handle).collect::<Vec<_>>(), want);
        }
        for (index, l) in &lines {
            let il = nfit.interleave(*index).unwrap();
            prop_assert_eq!(il.line_offsets().collect::<Vec<_>>(), l.clone());
        }
    }
}
