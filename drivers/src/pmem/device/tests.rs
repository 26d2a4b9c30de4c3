//! Host tests of [`PmemDevice`] over a fake media with injectable hardware
//! poison, a lock that panics on re-entry, and a model-based proptest.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------
// Fakes

/// What the fake media saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counters {
    flushes: u64,
    fences: u64,
    /// Bytes written by `copy_flush`/`zero_flush` (non-temporal stores).
    nt_bytes: u64,
    nt_writes: u64,
    copy_mc_calls: u64,
    clear_calls: u64,
}

#[derive(Debug)]
struct FakeInner {
    bytes: Vec<u8>,
    /// Hardware poison: `copy_mc` stops at the first of these bytes.
    hw_poison: BTreeSet<u64>,
    counters: Counters,
    clear_ok: bool,
}

/// Runs inside `copy_flush`, before the copy (to interleave with it).
type Hook = Box<dyn FnMut() + Send>;

/// `Vec<u8>` media. Panics if the device passes an out-of-range access
/// (that would be a device bug). Writes clear hardware poison of the bytes
/// they cover (as a recovery write does).
struct FakeMedia(Mutex<FakeInner>, Mutex<Option<Hook>>);

impl core::fmt::Debug for FakeMedia {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("FakeMedia").field(&self.0).finish()
    }
}

impl FakeMedia {
    fn new(len: usize) -> Self {
        let inner = FakeInner {
            bytes: (0..len).map(|i| (i % 251) as u8).collect(),
            hw_poison: BTreeSet::new(),
            counters: Counters::default(),
            clear_ok: true,
        };
        Self(Mutex::new(inner), Mutex::new(None))
    }
    fn set_hook(&self, hook: Option<Hook>) {
        *self.1.lock().unwrap() = hook;
    }
    fn inject(&self, offset: u64, len: u64) {
        self.0.lock().unwrap().hw_poison.extend(offset..offset + len);
    }
    fn counters(&self) -> Counters {
        self.0.lock().unwrap().counters
    }
    fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let g = self.0.lock().unwrap();
        g.bytes[offset as usize..offset as usize + len].to_vec()
    }
    fn set_clear_ok(&self, ok: bool) {
        self.0.lock().unwrap().clear_ok = ok;
    }
    fn range(g: &FakeInner, offset: u64, len: u64) -> core::ops::Range<usize> {
        let end = offset.checked_add(len).expect("device passed an overflowing range");
        assert!(end <= g.bytes.len() as u64, "device passed {offset}+{len} beyond the media");
        offset as usize..end as usize
    }
}

impl PmemMedia for FakeMedia {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().bytes.len() as u64
    }
    fn copy_mc(&self, offset: u64, dst: &mut [u8]) -> usize {
        let mut g = self.0.lock().unwrap();
        g.counters.copy_mc_calls += 1;
        let r = Self::range(&g, offset, dst.len() as u64);
        let stop = g.hw_poison.range(offset..r.end as u64).next().map_or(dst.len(), |&p| (p - offset) as usize);
        dst[..stop].copy_from_slice(&g.bytes[r.start..r.start + stop]);
        dst.len() - stop
    }
    fn copy_flush(&self, offset: u64, src: &[u8]) {
        if let Some(hook) = self.1.lock().unwrap().as_mut() {
            hook();
        }
        let mut g = self.0.lock().unwrap();
        let r = Self::range(&g, offset, src.len() as u64);
        g.bytes[r.clone()].copy_from_slice(src);
        if !g.hw_poison.is_empty() {
            for b in r {
                g.hw_poison.remove(&(b as u64));
            }
        }
        g.counters.nt_writes += 1;
        g.counters.nt_bytes += src.len() as u64;
    }
    fn zero_flush(&self, offset: u64, len: u64) {
        let mut g = self.0.lock().unwrap();
        let r = Self::range(&g, offset, len);
        g.bytes[r.clone()].fill(0);
        if !g.hw_poison.is_empty() {
            for b in r {
                g.hw_poison.remove(&(b as u64));
            }
        }
        g.counters.nt_writes += 1;
        g.counters.nt_bytes += len;
    }
    fn flush(&self, offset: u64, len: u64) {
        let mut g = self.0.lock().unwrap();
        let _ = Self::range(&g, offset, len);
        g.counters.flushes += 1;
    }
    fn fence(&self) {
        self.0.lock().unwrap().counters.fences += 1;
    }
    fn clear_poison(&self, offset: u64, len: u64) -> bool {
        let mut g = self.0.lock().unwrap();
        let _ = Self::range(&g, offset, len);
        g.counters.clear_calls += 1;
        g.clear_ok
    }
}

/// A std mutex that panics if the thread holding it takes it again (the
/// kernel's interrupt-disabling spin lock would deadlock instead).
#[derive(Debug)]
struct CheckedLock<T> {
    inner: Mutex<T>,
    owner: Mutex<Option<ThreadId>>,
}

impl<T: Send> DeviceLock<T> for CheckedLock<T> {
    fn new(value: T) -> Self {
        Self { inner: Mutex::new(value), owner: Mutex::new(None) }
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let me = std::thread::current().id();
        assert_ne!(*self.owner.lock().unwrap(), Some(me), "device lock re-entered (would deadlock)");
        let mut g = self.inner.lock().unwrap();
        *self.owner.lock().unwrap() = Some(me);
        let r = f(&mut g);
        *self.owner.lock().unwrap() = None;
        r
    }
}

type Dev = PmemDevice<FakeMedia, CheckedLock<DeviceState>>;

const LEN: usize = 4 * 4096 + 100;

fn dev() -> Dev {
    PmemDevice::new("pmem0", 0x1_0000_0000, FakeMedia::new(LEN))
}

fn poisoned(offset: u64, len: u64, copied: usize) -> PmemError {
    PmemError::Poisoned { offset, len, copied }
}

fn list(d: &Dev) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    d.for_each_poison(|r| v.push((r.start(), r.end())));
    v
}

// ---------------------------------------------------------------------------
// Basics

#[test]
fn identity_and_address_translation() {
    let d = dev();
    assert_eq!(d.name(), "pmem0");
    assert_eq!(d.phys_base(), 0x1_0000_0000);
    assert_eq!(d.len(), LEN as u64);
    assert!(!d.is_empty());
    assert_eq!(d.phys_to_offset(0x1_0000_0000), Some(0));
    assert_eq!(d.phys_to_offset(0x1_0000_0000 + LEN as u64 - 1), Some(LEN as u64 - 1));
    assert_eq!(d.phys_to_offset(0x1_0000_0000 + LEN as u64), None);
    assert_eq!(d.phys_to_offset(0xffff_ffff), None);
    assert!(d.contains_phys(0x1_0000_1234) && !d.contains_phys(0));
    // A region at the very top of the address space does not overflow.
    let top: Dev = PmemDevice::new("top", u64::MAX - 10, FakeMedia::new(5));
    assert_eq!(top.phys_to_offset(u64::MAX - 6), Some(4));
    assert_eq!(top.phys_to_offset(u64::MAX), None);
    assert!(format!("{d:?}").contains("pmem0"));
}

#[test]
fn round_trip_is_flushed_and_fenced() {
    let d = dev();
    let data: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
    let c0 = d.media().counters();
    d.write(1000, &data).unwrap();
    let c1 = d.media().counters();
    assert_eq!(c1.nt_bytes - c0.nt_bytes, 300);
    assert_eq!(c1.fences - c0.fences, 1, "write must fence after the NT copy");
    let mut buf = vec![0u8; 300];
    d.read(1000, &mut buf).unwrap();
    assert_eq!(buf, data);
    // Zeroing, then read back zeros; neighbours untouched.
    d.zero(1100, 50).unwrap();
    d.read(1000, &mut buf).unwrap();
    assert_eq!(&buf[..100], &data[..100]);
    assert!(buf[100..150].iter().all(|&b| b == 0));
    assert_eq!(&buf[150..], &data[150..]);
    assert_eq!(d.media().counters().fences - c1.fences, 1);
    // flush and fence reach the media.
    d.flush(0, 64).unwrap();
    d.fence();
    let c2 = d.media().counters();
    assert_eq!((c2.flushes, c2.fences), (c1.flushes + 1, c1.fences + 2));
    // Empty requests at the end are fine and touch nothing.
    d.read(LEN as u64, &mut []).unwrap();
    d.write(LEN as u64, &[]).unwrap();
    d.zero(LEN as u64, 0).unwrap();
    assert_eq!(d.media().counters().nt_writes, c2.nt_writes);
}

#[test]
fn out_of_range_and_overflow_are_errors() {
    let d = dev();
    let l = LEN as u64;
    let mut b = [0u8; 8];
    assert_eq!(d.read(l - 7, &mut b), Err(PmemError::OutOfRange { offset: l - 7, len: 8 }));
    assert_eq!(d.read(u64::MAX - 3, &mut b), Err(PmemError::OutOfRange { offset: u64::MAX - 3, len: 8 }));
    assert_eq!(d.read(l + 1, &mut []), Err(PmemError::OutOfRange { offset: l + 1, len: 0 }));
    assert!(matches!(d.write(u64::MAX, &b), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.write(l - 1, &b), Err(PmemError::OutOfRange { .. })));
    assert_eq!(d.zero(1, u64::MAX), Err(PmemError::OutOfRange { offset: 1, len: u64::MAX }));
    assert!(matches!(d.flush(u64::MAX, 2), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.flush(0, l + 1), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.record_poison(u64::MAX, 2), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.record_poison(l, 1), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.recovery_write(4096 * 4, &[0; 4096]), Err(PmemError::OutOfRange { .. })));
    assert!(matches!(d.notify_failure(u64::MAX, 2, MfFlags::ACTION_REQUIRED), Err(PmemError::OutOfRange { .. })));
    // u64::MAX length means "whole device" only with PRE_REMOVE.
    assert!(matches!(d.notify_failure(0, u64::MAX, MfFlags::ACTION_OPTIONAL), Err(PmemError::OutOfRange { .. })));
    // Nothing reached the media.
    let c = d.media().counters();
    assert_eq!((c.nt_writes, c.flushes, c.copy_mc_calls), (0, 0, 0));
    assert_eq!(d.poison_count(), 0);
    assert!(!d.is_poisoned(u64::MAX - 1, u64::MAX));
    assert_eq!(d.first_poison(u64::MAX - 1, u64::MAX), None);
}

#[test]
fn first_poison_names_the_first_listed_byte_inside_the_request() {
    let d = dev();
    assert_eq!(d.first_poison(0, LEN as u64), None);
    d.record_poison(1000, 64).unwrap();
    d.record_poison(3000, 100).unwrap();
    assert_eq!(d.first_poison(0, 4096), ByteRange::from_len(1000, 64));
    // From inside a listed range: from the request's first byte.
    assert_eq!(d.first_poison(1010, 10), ByteRange::from_len(1010, 54));
    assert_eq!(d.first_poison(1064, 1936), None);
    assert_eq!(d.first_poison(1064, 1937), ByteRange::from_len(3000, 100));
    assert_eq!(d.first_poison(0, 0), None);
    assert_eq!(d.first_poison(LEN as u64, 10), None);
}

// ---------------------------------------------------------------------------
// Poison

#[test]
fn read_stops_before_known_poison() {
    let d = dev();
    let data = vec![0xabu8; 512];
    d.write(512, &data).unwrap();
    assert_eq!(d.record_poison(700, 10), Ok(true));
    let mut buf = vec![0u8; 512];
    assert_eq!(d.read(512, &mut buf), Err(poisoned(700, 10, 188)));
    assert!(buf[..188].iter().all(|&b| b == 0xab));
    assert!(buf[188..].iter().all(|&b| b == 0), "bytes past the poison are not copied");
    // Starting inside the poison: nothing copied, the rest of the range named.
    assert_eq!(d.read(705, &mut buf[..2]), Err(poisoned(705, 5, 0)));
    // Neighbours read fine.
    d.read(512, &mut buf[..188]).unwrap();
    d.read(710, &mut buf[..100]).unwrap();
    assert!(buf[..100].iter().all(|&b| b == 0xab));
    assert_eq!(d.stats().poisoned_reads, 2);
    assert_eq!(d.stats().poison_discovered, 0);
}

#[test]
fn read_discovers_unknown_hardware_poison() {
    let d = dev();
    d.media().inject(1000, 3); // line 960..1024
    let mut buf = vec![0u8; 200];
    let want: Vec<u8> = d.media().bytes(900, 60);
    assert_eq!(d.read(900, &mut buf), Err(poisoned(960, 64, 60)));
    assert_eq!(&buf[..60], &want[..]);
    assert_eq!(list(&d), vec![(960, 1024)]);
    let s = d.stats();
    assert_eq!((s.poison_discovered, s.poisoned_reads), (1, 1));
    // A second read is answered from the list, without touching the poison.
    let calls = d.media().counters().copy_mc_calls;
    assert_eq!(d.read(980, &mut buf[..10]), Err(poisoned(980, 44, 0)));
    assert_eq!(d.media().counters().copy_mc_calls, calls, "listed poison must not be read");
    // Poison on the last, partial line is clamped to the device.
    d.media().inject(LEN as u64 - 1, 1);
    assert_eq!(d.read(LEN as u64 - 50, &mut buf[..50]), Err(poisoned(LEN as u64 - 36, 36, 14)));
    // Unknown poison before known poison: the earlier one wins and is listed.
    d.record_poison(3000, 8).unwrap();
    d.media().inject(2900, 1); // line 2880..2944
    assert_eq!(d.read(2800, &mut buf), Err(poisoned(2880, 64, 80)));
    assert!(d.is_poisoned(2880, 64) && d.is_poisoned(3000, 8));
}

#[test]
fn write_and_zero_refuse_poison_and_write_nothing() {
    let d = dev();
    d.record_poison(4100, 4).unwrap();
    let before = d.media().bytes(4000, 200);
    let nt = d.media().counters().nt_writes;
    assert_eq!(d.write(4000, &[1; 101]), Err(poisoned(4100, 4, 0)));
    assert_eq!(d.write(4102, &[1; 1]), Err(poisoned(4102, 2, 0)));
    assert_eq!(d.zero(4103, 100), Err(poisoned(4103, 1, 0)));
    assert_eq!(d.media().bytes(4000, 200), before);
    assert_eq!(d.media().counters().nt_writes, nt);
    assert_eq!(d.stats().refused_writes, 3);
    // Touching but not overlapping is fine.
    d.write(4000, &[1; 100]).unwrap();
    d.zero(4104, 100).unwrap();
}

#[test]
fn record_poison_merges_and_reports_newness() {
    let d = dev();
    assert_eq!(d.record_poison(100, 10), Ok(true));
    assert_eq!(d.record_poison(100, 10), Ok(false));
    assert_eq!(d.record_poison(102, 3), Ok(false));
    assert_eq!(d.record_poison(110, 5), Ok(true)); // adjacent: merges
    assert_eq!(d.record_poison(200, 5), Ok(true));
    assert_eq!(d.record_poison(90, 120), Ok(true)); // swallows both
    assert_eq!(list(&d), vec![(90, 210)]);
    assert_eq!(d.record_poison(0, 0), Ok(false));
    assert_eq!(d.poison_count(), 1);
    assert_eq!(d.poison_list().total_bytes(), 120);
}

#[test]
fn full_list_coarsens_and_says_so() {
    let d = dev();
    for i in 0..64 {
        assert_eq!(d.record_poison(i * 100, 1), Ok(true));
    }
    assert_eq!(d.record_poison(6450, 1), Err(PmemError::PoisonListFull));
    assert_eq!(d.stats().list_coarsened, 1);
    // Never lost: every recorded byte is still listed.
    for i in 0..64 {
        assert!(d.is_poisoned(i * 100, 1));
    }
    assert!(d.is_poisoned(6450, 1));
    // A recovery write that would split a listed range is refused, and the
    // range stays listed.
    let big: Dev = PmemDevice::new("big", 0, FakeMedia::new(80 * 4096));
    big.record_poison(0, 3 * 4096).unwrap();
    for i in 0..63 {
        big.record_poison(i * 4096 + 8 * 4096, 1).unwrap();
    }
    assert_eq!(big.poison_count(), 64);
    assert_eq!(big.recovery_write(4096, &[7; 4096]), Err(PmemError::PoisonListFull));
    assert!(big.is_poisoned(4096, 4096));
    assert_eq!(big.stats().unlist_refused, 1);
    assert_eq!(big.media().bytes(4096, 1), vec![7], "the data was still written");
}

#[test]
fn recovery_write_clears_exactly_its_pages() {
    let d = dev();
    assert_eq!(d.recovery_write(4096, &[1; 100]), Err(PmemError::Unaligned));
    assert_eq!(d.recovery_write(100, &[1; 4096]), Err(PmemError::Unaligned));
    // Poison spanning pages 0..3 (and some of page 2), plus one in page 3.
    d.record_poison(4000, 4096 + 200).unwrap(); // 4000..8296
    d.record_poison(3 * 4096 + 10, 6).unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(d.read(4096, &mut buf).is_err());
    let data: Vec<u8> = (0..4096).map(|i| (i % 13) as u8).collect();
    let c0 = d.media().counters();
    // Rewriting page 1 clears 4096..8192 and keeps both other parts.
    assert_eq!(d.recovery_write(4096, &data), Ok(4096));
    assert_eq!(list(&d), vec![(4000, 4096), (8192, 8296), (3 * 4096 + 10, 3 * 4096 + 16)]);
    let c1 = d.media().counters();
    assert_eq!(c1.nt_bytes - c0.nt_bytes, 4096);
    assert_eq!(c1.fences - c0.fences, 1);
    assert_eq!(c1.clear_calls - c0.clear_calls, 1);
    d.read(4096, &mut buf).unwrap();
    assert_eq!(buf, data);
    // Pages 2..4 at once: clears 104 + 6 bytes.
    let two = vec![9u8; 8192];
    assert_eq!(d.recovery_write(8192, &two), Ok(110));
    assert_eq!(list(&d), vec![(4000, 4096)]);
    // Clean pages: works, clears nothing, and skips the media's clear.
    assert_eq!(d.recovery_write(8192, &two), Ok(0));
    assert_eq!(d.media().counters().clear_calls, c1.clear_calls + 1);
    assert_eq!(d.recovery_write(0, &[]), Ok(0));
    let s = d.stats();
    assert_eq!((s.recovery_writes, s.cleared_bytes), (3, 4206));
}

#[test]
fn recovery_write_fails_loudly_when_the_media_cannot_clear() {
    let d = dev();
    d.record_poison(50, 1).unwrap();
    d.media().set_clear_ok(false);
    let before = d.media().bytes(0, 4096);
    assert_eq!(d.recovery_write(0, &[5; 4096]), Err(poisoned(50, 1, 0)));
    assert_eq!(d.media().bytes(0, 4096), before, "nothing written");
    assert!(d.is_poisoned(50, 1));
    assert_eq!(d.stats().clear_failed, 1);
    // The failed attempt released the recovery slot.
    d.media().set_clear_ok(true);
    assert_eq!(d.recovery_write(0, &[5; 4096]), Ok(1));
}

#[test]
fn recovery_write_also_clears_unknown_hardware_poison() {
    let d = dev();
    d.media().inject(5000, 1);
    let mut buf = vec![0u8; 4096];
    assert!(d.read(4096, &mut buf).is_err()); // discovers and lists 4992..5056
    assert_eq!(d.recovery_write(4096, &[3; 4096]), Ok(64));
    d.read(4096, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 3));
    assert_eq!(d.poison_count(), 0);
}

#[test]
fn poison_arriving_during_recovery_keeps_the_list() {
    let d = Arc::new(dev());
    d.record_poison(4096 + 10, 1).unwrap();
    // While page 1 is being rewritten: a second recovery is refused, and a
    // machine check reports new poison in the page.
    let weak = Arc::downgrade(&d);
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    d.media().set_hook(Some(Box::new(move || {
        let d = weak.upgrade().unwrap();
        let second = d.recovery_write(8192, &[0; 4096]);
        let rec = d.record_poison(4096 + 100, 1);
        *seen2.lock().unwrap() = Some((second, rec));
    })));
    assert_eq!(d.recovery_write(4096, &[1; 4096]), Err(PmemError::Busy));
    d.media().set_hook(None);
    assert_eq!(*seen.lock().unwrap(), Some((Err(PmemError::Busy), Ok(true))));
    // The list still holds both (a superset), so a retry clears them.
    assert!(d.is_poisoned(4096 + 10, 1) && d.is_poisoned(4096 + 100, 1));
    assert_eq!(d.stats().recovery_raced, 1);
    assert_eq!(d.recovery_write(4096, &[1; 4096]), Ok(2));
    assert_eq!(d.poison_count(), 0);
    // Poison outside the pages does not count as a race.
    let weak = Arc::downgrade(&d);
    d.media().set_hook(Some(Box::new(move || {
        weak.upgrade().unwrap().record_poison(3 * 4096, 1).unwrap();
    })));
    assert_eq!(d.recovery_write(4096, &[2; 4096]), Ok(0));
    d.media().set_hook(None);
}

// ---------------------------------------------------------------------------
// Holder

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Call {
    offset: u64,
    len: u64,
    flags: MfFlags,
    /// What reading the failed range from inside the callback gave.
    read: Result<(), PmemError>,
}

/// A holder that reads the device from inside `notify_failure`.
struct TestHolder {
    dev: Mutex<Option<Arc<Dev>>>,
    calls: Mutex<Vec<Call>>,
    answer: Result<(), HolderError>,
}

impl Holder for TestHolder {
    fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), HolderError> {
        let dev = self.dev.lock().unwrap().clone().unwrap();
        let mut b = [0u8; 16];
        let n = len.min(16) as usize;
        let read = dev.read(offset, &mut b[..n]);
        self.calls.lock().unwrap().push(Call { offset, len, flags, read });
        self.answer
    }
}

fn holder(dev: &Arc<Dev>, answer: Result<(), HolderError>) -> Arc<TestHolder> {
    Arc::new(TestHolder { dev: Mutex::new(Some(dev.clone())), calls: Mutex::new(Vec::new()), answer })
}

#[test]
fn checked_lock_catches_reentry() {
    // The lock the holder test relies on really does fail on re-entry.
    let l = CheckedLock::new(0u32);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.with(|_| l.with(|_| ()))));
    assert!(r.is_err());
}

#[test]
fn holder_registration_and_notification() {
    let d = Arc::new(dev());
    assert_eq!(d.notify_failure(0, 64, MfFlags::ACTION_REQUIRED), Err(PmemError::NoHolder));
    let h = holder(&d, Ok(()));
    d.set_holder(h.clone()).unwrap();
    assert!(d.has_holder());
    assert_eq!(d.set_holder(holder(&d, Ok(()))), Err(PmemError::Busy));

    d.record_poison(8192, 64).unwrap();
    d.notify_failure(8192, 64, MfFlags::ACTION_REQUIRED).unwrap();
    d.notify_failure(0, u64::MAX, MfFlags::PRE_REMOVE).unwrap();
    let calls = h.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            Call { offset: 8192, len: 64, flags: MfFlags::ACTION_REQUIRED, read: Err(poisoned(8192, 64, 0)) },
            Call { offset: 0, len: u64::MAX, flags: MfFlags::PRE_REMOVE, read: Ok(()) },
        ]
    );

    // Holder errors come back wrapped; clear_holder hands it back.
    let cleared = d.clear_holder().unwrap();
    assert!(Arc::ptr_eq(&cleared, &(h.clone() as Arc<dyn Holder>)));
    assert!(d.clear_holder().is_none());
    let failing = holder(&d, Err(HolderError::Unsupported));
    d.set_holder(failing.clone()).unwrap();
    assert_eq!(d.notify_failure(64, 8, MfFlags::ACTION_OPTIONAL), Err(PmemError::Holder(HolderError::Unsupported)));
    assert_eq!(failing.calls.lock().unwrap().len(), 1);
    // Break the device <-> holder cycles.
    d.clear_holder();
    *h.dev.lock().unwrap() = None;
    *failing.dev.lock().unwrap() = None;
}

#[test]
fn holder_can_recover_from_inside_notify() {
    // The fs repairs the page from a replica inside notify_failure.
    struct Repairer(Mutex<Option<Arc<Dev>>>);
    impl Holder for Repairer {
        fn notify_failure(&self, offset: u64, _: u64, _: MfFlags) -> Result<(), HolderError> {
            let d = self.0.lock().unwrap().clone().unwrap();
            d.recovery_write(offset & !(PAGE_SIZE - 1), &[0x5a; 4096]).map(|_| ()).map_err(|_| HolderError::Busy)
        }
    }
    let d = Arc::new(dev());
    let r = Arc::new(Repairer(Mutex::new(Some(d.clone()))));
    d.set_holder(r.clone()).unwrap();
    d.record_poison(4096 + 128, 64).unwrap();
    d.notify_failure(4096 + 128, 64, MfFlags::ACTION_REQUIRED).unwrap();
    assert_eq!(d.poison_count(), 0);
    let mut b = [0u8; 4];
    d.read(4096 + 130, &mut b).unwrap();
    assert_eq!(b, [0x5a; 4]);
    *r.0.lock().unwrap() = None;
}

// ---------------------------------------------------------------------------
// The persistent-memory trait (what a file system mounts on)

fn br(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end).unwrap()
}

#[test]
fn pmem_trait_follows_the_device_rules() {
    let d = dev();
    let mut p = &d;
    assert_eq!(Pmem::size(&p), LEN as u64);
    p.store(10, &[4; 20]).unwrap();
    let mut b = [0u8; 20];
    Pmem::load(&p, 10, &mut b).unwrap();
    assert_eq!(b, [4; 20]);
    d.record_poison(15, 5).unwrap();
    // A load stops at the poison: 5 valid bytes, then the poisoned range.
    b.fill(0);
    assert_eq!(Pmem::load(&p, 10, &mut b), Err((MediaError::Poisoned(br(15, 20)), 5)));
    assert_eq!(b[..5], [4; 5]);
    // Out of range is its own error, never poison; nothing is accessed.
    let end = LEN as u64;
    assert_eq!(Pmem::load(&p, end - 1, &mut b), Err((MediaError::OutOfRange { offset: end - 1, len: 20 }, 0)));
    assert_eq!(p.store(u64::MAX, &[1]), Err((MediaError::OutOfRange { offset: u64::MAX, len: 1 }, 0)));
    assert_eq!(p.store_zeros(end, 1), Err((MediaError::OutOfRange { offset: end, len: 1 }, 0)));
    // A store into listed poison is an error that says how much was
    // stored before it; nothing at or after the poison changes.
    let refused = d.stats().refused_writes;
    assert_eq!(p.store(10, &[6; 20]), Err((MediaError::Poisoned(br(15, 20)), 5)));
    assert_eq!(d.media().bytes(10, 20), [&[6; 5][..], &[4; 15]].concat());
    assert_eq!(p.store_zeros(12, 10), Err((MediaError::Poisoned(br(15, 20)), 3)));
    assert_eq!(d.media().bytes(10, 20), [&[6, 6][..], &[0; 3], &[4; 15]].concat());
    assert_eq!(p.store_flush(16, &[1; 2]), Err((MediaError::Poisoned(br(16, 20)), 0)));
    assert_eq!(d.stats().refused_writes, refused + 3);
    // Around the poison, stores work; flush ignores what is off the device.
    p.store(20, &[7; 4]).unwrap();
    Pmem::flush(&mut p, 0, u64::MAX);
    Pmem::fence(&mut p);
    // Only a whole-page recovery write clears poison.
    assert_eq!(Pmem::recovery_write(&mut p, 1, &[0; 4096]), Err(MediaError::Unaligned { offset: 1, len: 4096 }));
    d.media().set_clear_ok(false);
    assert_eq!(Pmem::recovery_write(&mut p, 0, &[9; 4096]), Err(MediaError::Poisoned(br(15, 20))));
    d.media().set_clear_ok(true);
    Pmem::recovery_write(&mut p, 0, &[9; 4096]).unwrap();
    assert_eq!(d.poison_count(), 0);
    p.store(10, &[1; 20]).unwrap();
    // An owned device behaves the same.
    let mut owned = dev();
    owned.record_poison(100, 1).unwrap();
    assert_eq!(Pmem::store(&mut owned, 90, &[3; 20]), Err((MediaError::Poisoned(br(100, 101)), 10)));
    let mut b = [0u8; 10];
    Pmem::load(&owned, 90, &mut b).unwrap();
    assert_eq!(b, [3; 10]);
}

// ---------------------------------------------------------------------------
// Model-based property test

#[derive(Debug, Clone)]
enum Op {
    Read {
        offset: u64,
        len: u64,
    },
    Write {
        offset: u64,
        len: u64,
        byte: u8,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    /// Poison the media AND tell the device (memory_failure).
    Record {
        offset: u64,
        len: u64,
    },
    /// Poison the media only (the device learns it from a read).
    Hardware {
        offset: u64,
        len: u64,
    },
    Recover {
        page: u64,
        pages: u64,
        byte: u8,
    },
}

const PLEN: u64 = 4 * 4096 + 100;

fn op() -> impl Strategy<Value = Op> {
    let off = 0..PLEN + 8;
    let len = prop_oneof![0u64..8, 0u64..300, 0u64..5000];
    prop_oneof![
        3 => (off.clone(), len.clone()).prop_map(|(offset, len)| Op::Read { offset, len }),
        2 => (off.clone(), len.clone(), any::<u8>()).prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
        1 => (off.clone(), len.clone()).prop_map(|(offset, len)| Op::Zero { offset, len }),
        2 => (off.clone(), 0u64..80).prop_map(|(offset, len)| Op::Record { offset, len }),
        2 => (off, 1u64..40).prop_map(|(offset, len)| Op::Hardware { offset, len }),
        2 => (0u64..6, 0u64..3, any::<u8>()).prop_map(|(page, pages, byte)| Op::Recover { page, pages, byte }),
    ]
}

/// The device's contents and what it lists, byte by byte; `hw` is what the
/// media would stop at.
struct Model {
    bytes: Vec<u8>,
    listed: BTreeSet<u64>,
    hw: BTreeSet<u64>,
}

impl Model {
    fn in_range(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|e| e <= self.bytes.len() as u64)
    }
    /// The error a request for `[offset, offset+len)` gets from the list.
    fn listed_error(&self, offset: u64, len: u64) -> Option<PmemError> {
        let first = *self.listed.range(offset..offset + len).next()?;
        let mut end = first;
        while self.listed.contains(&end) {
            end += 1;
        }
        Some(poisoned(first, end - first, (first - offset) as usize))
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let o = offset + i as u64;
            self.bytes[o as usize] = b;
            self.hw.remove(&o);
        }
    }
}

fn device_listed(d: &Dev) -> BTreeSet<u64> {
    let mut s = BTreeSet::new();
    d.for_each_poison(|r| s.extend(r.start()..r.end()));
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn device_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let d: Dev = PmemDevice::new("prop", 0, FakeMedia::new(PLEN as usize));
        let mut m = Model {
            bytes: d.media().bytes(0, PLEN as usize),
            listed: BTreeSet::new(),
            hw: BTreeSet::new(),
        };
        for op in ops {
            match op {
                Op::Read { offset, len } => {
                    let mut buf = vec![0u8; len as usize];
                    let got = d.read(offset, &mut buf);
                    if !m.in_range(offset, len) {
                        prop_assert_eq!(got, Err(PmemError::OutOfRange { offset, len }));
                        continue;
                    }
                    // Hardware poison before the first listed byte is found
                    // and its cache line listed.
                    let limit = m.listed.range(offset..offset + len).next().copied().unwrap_or(offset + len);
                    if let Some(&p) = m.hw.range(offset..limit).next() {
                        let line = p & !63;
                        m.listed.extend(line..(line + 64).min(PLEN));
                    }
                    let want = m.listed_error(offset, len);
                    prop_assert_eq!(got, want.map_or(Ok(()), Err));
                    let copied = match want {
                        Some(PmemError::Poisoned { copied, .. }) => copied,
                        _ => len as usize,
                    };
                    prop_assert_eq!(&buf[..copied], &m.bytes[offset as usize..offset as usize + copied]);
                }
                Op::Write { offset, len, byte } => {
                    let data = vec![byte; len as usize];
                    let got = d.write(offset, &data);
                    if !m.in_range(offset, len) {
                        prop_assert_eq!(got, Err(PmemError::OutOfRange { offset, len }));
                    } else if let Some(PmemError::Poisoned { offset: o, len: l, .. }) = m.listed_error(offset, len) {
                        prop_assert_eq!(got, Err(poisoned(o, l, 0)));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        m.write(offset, &data);
                    }
                }
                Op::Zero { offset, len } => {
                    let got = d.zero(offset, len);
                    if !m.in_range(offset, len) {
                        prop_assert_eq!(got, Err(PmemError::OutOfRange { offset, len }));
                    } else if let Some(PmemError::Poisoned { offset: o, len: l, .. }) = m.listed_error(offset, len) {
                        prop_assert_eq!(got, Err(poisoned(o, l, 0)));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        m.write(offset, &vec![0; len as usize]);
                    }
                }
                Op::Record { offset, len } => {
                    let got = d.record_poison(offset, len);
                    if !m.in_range(offset, len) {
                        prop_assert_eq!(got, Err(PmemError::OutOfRange { offset, len }));
                    } else {
                        let new = (offset..offset + len).any(|b| !m.listed.contains(&b));
                        prop_assert_eq!(got, Ok(new));
                        m.listed.extend(offset..offset + len);
                        m.hw.extend(offset..offset + len);
                        d.media().inject(offset, len);
                    }
                }
                Op::Hardware { offset, len } => {
                    let end = (offset + len).min(PLEN);
                    if offset < end {
                        d.media().inject(offset, end - offset);
                        m.hw.extend(offset..end);
                    }
                }
                Op::Recover { page, pages, byte } => {
                    let (offset, len) = (page * 4096, pages * 4096);
                    let data = vec![byte; len as usize];
                    let got = d.recovery_write(offset, &data);
                    if !m.in_range(offset, len) {
                        prop_assert_eq!(got, Err(PmemError::OutOfRange { offset, len }));
                    } else {
                        let cleared = m.listed.range(offset..offset + len).count() as u64;
                        prop_assert_eq!(got, Ok(cleared));
                        for b in offset..offset + len {
                            m.listed.remove(&b);
                        }
                        m.write(offset, &data);
                    }
                }
            }
            // Few enough ranges that the list never coarsens: it is exact.
            prop_assert_eq!(d.stats().list_coarsened, 0);
            prop_assert_eq!(device_listed(&d), m.listed.clone());
        }
        // Whatever is not listed or hardware-poisoned reads back as modelled.
        let mut all = vec![0u8; PLEN as usize];
        let got = d.read(0, &mut all);
        let limit = match got {
            Ok(()) => PLEN as usize,
            Err(PmemError::Poisoned { copied, .. }) => copied,
            Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
        };
        prop_assert_eq!(&all[..limit], &m.bytes[..limit]);
    }
}

#[test]
fn unaligned_recovery_in_every_shape() {
    let d = dev();
    for (off, n) in [(1u64, 4096usize), (4096, 4095), (4096, 1), (2048, 2048), (!4095, 4097)] {
        assert_eq!(d.recovery_write(off, &vec![0; n]), Err(PmemError::Unaligned), "{off} {n}");
    }
    // Aligned but past the end (or overflowing) is OutOfRange.
    assert!(matches!(d.recovery_write(!4095, &[0; 4096]), Err(PmemError::OutOfRange { .. })));
    assert_eq!(d.media().counters().nt_writes, 0);
}
