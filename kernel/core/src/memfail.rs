//! Memory-failure routing: which persistent-memory device a poisoned
//! physical range belongs to, and where in it.
//!
//! The #MC handler (or a software injection) names a physical range; the
//! memory-failure task routes it to the device whose SPA range it hits, as
//! a device-relative offset and length clipped to the device, then records
//! it in that device's bad-block list and tells the device's holder. A
//! range in no device is logged ("not persistent memory").

/// A device's physical span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpan {
    /// First physical address.
    pub phys_base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Where a poisoned range goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To device `index`, at `offset` for `len` bytes (clipped to the
    /// device).
    Device {
        /// Index into the device list.
        index: usize,
        /// Device-relative offset of the first poisoned byte.
        offset: u64,
        /// Poisoned bytes inside the device.
        len: u64,
    },
    /// No device holds any of it.
    NotPmem,
}

/// Routes `[start, start + len)` to the first device it overlaps.
pub fn route(start: u64, len: u64, devices: &[DeviceSpan]) -> Route {
    let end = start.saturating_add(len.max(1));
    for (index, d) in devices.iter().enumerate() {
        let d_end = d.phys_base.saturating_add(d.len);
        let s = start.max(d.phys_base);
        let e = end.min(d_end);
        if s < e {
            return Route::Device { index, offset: s - d.phys_base, len: e - s };
        }
    }
    Route::NotPmem
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DEVS: [DeviceSpan; 2] = [
        DeviceSpan { phys_base: 0x1_0000_0000, len: 256 << 20 },
        DeviceSpan { phys_base: 0x2_0000_0000, len: 64 << 20 },
    ];

    #[test]
    fn routes_inside_devices() {
        assert_eq!(route(0x1_0020_0140, 64, &DEVS), Route::Device { index: 0, offset: 0x20_0140, len: 64 });
        assert_eq!(route(0x2_0000_0000, 4096, &DEVS), Route::Device { index: 1, offset: 0, len: 4096 });
        assert_eq!(route(0x1000, 64, &DEVS), Route::NotPmem);
        assert_eq!(route(0x1_1000_0000, 64, &DEVS), Route::NotPmem, "just past pmem0");
    }

    #[test]
    fn clips_to_the_device() {
        // Straddles the end of pmem0.
        assert_eq!(route(0x1_1000_0000 - 32, 64, &DEVS), Route::Device { index: 0, offset: (256 << 20) - 32, len: 32 });
        // Starts before pmem1.
        assert_eq!(route(0x2_0000_0000 - 32, 64, &DEVS), Route::Device { index: 1, offset: 0, len: 32 });
        // Overflowing lengths do not wrap.
        assert_eq!(route(u64::MAX - 10, u64::MAX, &DEVS), Route::NotPmem);
        // A zero length counts as one byte.
        assert_eq!(route(0x1_0000_0000, 0, &DEVS), Route::Device { index: 0, offset: 0, len: 1 });
    }

    proptest! {
        #[test]
        fn a_route_is_inside_its_device_and_the_range(start in 0u64..0x3_0000_0000, len in 0u64..(1 << 30)) {
            match route(start, len, &DEVS) {
                Route::Device { index, offset, len: l } => {
                    let d = DEVS[index];
                    prop_assert!(l > 0 && offset + l <= d.len);
                    prop_assert!(d.phys_base + offset >= start);
                    prop_assert!(d.phys_base + offset + l <= start + len.max(1));
                }
                Route::NotPmem => {
                    for d in DEVS {
                        prop_assert!(start + len.max(1) <= d.phys_base || start >= d.phys_base + d.len);
                    }
                }
            }
        }
    }
}
