//! Poison bookkeeping for one persistent-memory device.
//!
//! - [`PoisonList`]: the device's bad-block list, in byte offsets relative
//!   to the device, like Linux's per-disk `badblocks`. Fixed capacity, no
//!   allocation; kept sorted and merged. When it is full it coarsens (merges
//!   the two closest ranges) rather than forget anything: the list is
//!   always a superset of the poisoned bytes it was told about.
//! - [`PoisonRing`]: a lock-free, fixed-capacity queue through which the
//!   `#MC` handler (which may take no lock and allocate nothing) hands
//!   poisoned ranges to ordinary kernel code, which drains it into the list.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use core::sync::atomic::{AtomicU64, Ordering};

pub use fsdax_pmem_api::ByteRange;

use crate::mce::PhysRange;

impl From<PhysRange> for ByteRange {
    /// The physical range a machine check reported (its end never
    /// overflows), e.g. to push it into a [`PoisonRing`] from the `#MC`
    /// handler; the driver translates it to device offsets when draining.
    fn from(r: PhysRange) -> Self {
        ByteRange::from_len_saturating(r.start, r.len)
    }
}

/// The list was full: the operation kept the list a superset of the
/// poisoned bytes at the price of precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a full poison list has lost precision; log it"]
pub struct PoisonListFull {
    /// For `insert`: the range that now covers two former ranges and the
    /// good bytes between them. For `remove`: the range that could not be
    /// split and is still wholly listed.
    pub coarsened: ByteRange,
}

/// A per-device bad-block list: sorted, disjoint, non-adjacent, non-empty
/// byte ranges, at most `N` of them.
///
/// Guarantee: every byte ever inserted and not since removed is covered.
/// When there is no room, [`PoisonList::insert`] merges the two ranges with
/// the smallest gap between them (so some good bytes are reported poisoned)
/// and [`PoisonList::remove`] refuses to split a range (so some cleared
/// bytes stay listed); both then return [`PoisonListFull`].
#[derive(Clone, Debug)]
pub struct PoisonList<const N: usize = 64> {
    ranges: [ByteRange; N],
    len: usize,
}

impl<const N: usize> Default for PoisonList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PoisonList<N> {
    /// An empty list. `N` must be at least 1 (checked at compile time).
    pub const fn new() -> Self {
        const { assert!(N >= 1, "a PoisonList needs room for one range") };
        Self { ranges: [ByteRange::EMPTY; N], len: 0 }
    }

    /// The ranges, sorted by offset.
    pub fn as_slice(&self) -> &[ByteRange] {
        self.ranges.get(..self.len).unwrap_or(&[])
    }

    /// Iterates over the ranges, sorted by offset.
    pub fn iter(&self) -> impl Iterator<Item = ByteRange> + '_ {
        self.as_slice().iter().copied()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is poisoned.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Total number of poisoned bytes.
    pub fn total_bytes(&self) -> u64 {
        self.iter().map(|r| r.len()).sum()
    }

    /// Forgets everything (e.g. after a full-device rewrite).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The first (lowest) listed range that overlaps `range`.
    pub fn first_overlap(&self, range: ByteRange) -> Option<ByteRange> {
        if range.is_empty() {
            return None;
        }
        let s = self.as_slice();
        let i = s.partition_point(|r| r.end() <= range.start());
        s.get(i).copied().filter(|r| r.overlaps(&range))
    }

    /// Whether the byte at `offset` is listed.
    pub fn contains(&self, offset: u64) -> bool {
        self.first_overlap(ByteRange::from_len_saturating(offset, 1)).is_some()
    }

    /// Marks `range` poisoned, merging with overlapping and adjacent ranges.
    ///
    /// `Err` means the list was full and had to coarsen: `range` IS
    /// recorded, but some good bytes (reported in the error) are now listed
    /// too.
    pub fn insert(&mut self, range: ByteRange) -> Result<(), PoisonListFull> {
        if range.is_empty() {
            return Ok(());
        }
        let s = self.as_slice();
        // First range that overlaps or touches `range`, and first one after.
        let i = s.partition_point(|r| r.end() < range.start());
        let j = s.partition_point(|r| r.start() <= range.end());
        if i < j {
            let (Some(first), Some(last)) = (s.get(i), s.get(j - 1)) else {
                return Ok(()); // unreachable: i < j <= len
            };
            let merged = first.union_hull(last).union_hull(&range);
            self.replace(i, j, &[merged]);
            return Ok(());
        }
        if self.len < N {
            self.replace(i, i, &[range]);
            return Ok(());
        }
        // Full, and `range` touches nothing: picture it inserted at `i`
        // (N + 1 ranges) and merge the closest neighbours.
        let virt = |k: usize| -> ByteRange {
            let s = self.as_slice();
            let r = match k.cmp(&i) {
                core::cmp::Ordering::Less => s.get(k),
                core::cmp::Ordering::Equal => Some(&range),
                core::cmp::Ordering::Greater => s.get(k - 1),
            };
            r.copied().unwrap_or_default()
        };
        let mut best = 0;
        let mut best_gap = u64::MAX;
        for k in 0..N {
            let gap = virt(k + 1).start().saturating_sub(virt(k).end());
            if gap < best_gap {
                best_gap = gap;
                best = k;
            }
        }
        let coarsened = virt(best).union_hull(&virt(best + 1));
        if best + 1 == i || best == i {
            // `range` merges into its neighbour: replace that neighbour.
            let at = if best + 1 == i { best } else { i };
            self.replace(at, at + 1, &[coarsened]);
        } else {
            // Two stored ranges merge (virtual indices map to stored ones
            // shifted by one after `i`), freeing a slot for `range`.
            let at = if best < i { best } else { best - 1 };
            self.replace(at, at + 2, &[coarsened]);
            let i = self.as_slice().partition_point(|r| r.end() < range.start());
            self.replace(i, i, &[range]);
        }
        Err(PoisonListFull { coarsened })
    }

    /// Marks `range` clean again (after a successful recovery write),
    /// trimming or splitting listed ranges.
    ///
    /// `Err` means a split was needed but the list is full: nothing was
    /// changed, and the range in the error stays listed.
    pub fn remove(&mut self, range: ByteRange) -> Result<(), PoisonListFull> {
        if range.is_empty() {
            return Ok(());
        }
        let s = self.as_slice();
        let i = s.partition_point(|r| r.end() <= range.start());
        let j = s.partition_point(|r| r.start() < range.end());
        if i >= j {
            return Ok(());
        }
        let (Some(&first), Some(&last)) = (s.get(i), s.get(j - 1)) else {
            return Ok(()); // unreachable: i < j <= len
        };
        // Used only when non-empty: `first` starts before `range`, `last`
        // ends after it, and both overlap it.
        let left = first.clamp_end(range.start());
        let right = last.from_offset(range.end());
        let keep_left = first.start() < range.start();
        let keep_right = last.end() > range.end();
        match (keep_left, keep_right) {
            (true, true) if j - i == 1 && self.len == N => Err(PoisonListFull { coarsened: first }),
            (true, true) => {
                self.replace(i, j, &[left, right]);
                Ok(())
            }
            (true, false) => {
                self.replace(i, j, &[left]);
                Ok(())
            }
            (false, true) => {
                self.replace(i, j, &[right]);
                Ok(())
            }
            (false, false) => {
                self.replace(i, j, &[]);
                Ok(())
            }
        }
    }

    /// Replaces `ranges[from..to]` with `with`. Callers guarantee
    /// `from <= to <= len` and that the result fits in `N`; if not, the
    /// list is left unchanged rather than panicking.
    fn replace(&mut self, from: usize, to: usize, with: &[ByteRange]) {
        let old_len = self.len;
        if from > to || to > old_len {
            return;
        }
        let new_len = old_len - (to - from) + with.len();
        if new_len > N {
            return;
        }
        let new_to = from + with.len();
        // Move the tail, then write the new ranges.
        if let Some(buf) = self.ranges.get_mut(from..) {
            let tail_len = old_len - to;
            let (src, dst) = (to - from, new_to - from);
            if src + tail_len <= buf.len() && dst + tail_len <= buf.len() {
                buf.copy_within(src..src + tail_len, dst);
            }
        }
        if let Some(dst) = self.ranges.get_mut(from..new_to) {
            dst.copy_from_slice(with);
        }
        self.len = new_len;
    }
}

/// The ring was full and the event was dropped (and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonRingFull;

/// One slot of the ring. `seq` encodes the slot's state for lap
/// `L = position / N`: `2L` = free for the producer of lap `L`,
/// `2L + 1` = holds the range pushed in lap `L`.
#[derive(Debug)]
struct Slot {
    seq: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self { seq: AtomicU64::new(0), start: AtomicU64::new(0), end: AtomicU64::new(0) }
    }
}

/// A bounded lock-free queue of poisoned ranges, from the `#MC` handler to
/// ordinary code (a sequence-numbered ring after D. Vyukov's bounded MPMC
/// queue, with atomics only).
///
/// - Producers: any number (e.g. the `#MC` handler on every CPU at once,
///   plus software poison injection). [`PoisonRing::push`] never blocks,
///   never allocates and never waits for another CPU: a failed
///   compare-and-swap means another producer succeeded. A producer stalled
///   between claiming and publishing its slot (say, interrupted by a `#MC`
///   on the same CPU) delays only the consumer, which sees the ring as
///   empty at that slot until it is published; the nested producer claims
///   the next slot and does not wait.
/// - Consumers: any number, but normally one thread draining under the
///   device's lock ([`PoisonRing::drain_into`]).
/// - Full ring: the range is dropped, [`PoisonRing::dropped`] counts it,
///   and `push` returns [`PoisonRingFull`]. A non-zero drop count means the
///   poison list is incomplete: the owner must treat the whole device as
///   suspect (e.g. keep using machine-check-safe copies everywhere and
///   re-learn poison from later machine checks), and report it.
///
/// `N` must be a power of two (checked at compile time) so that positions
/// wrap consistently; positions are 64-bit and never wrap in practice.
#[derive(Debug)]
pub struct PoisonRing<const N: usize = 64> {
    slots: [Slot; N],
    /// Next position to push.
    tail: AtomicU64,
    /// Next position to pop.
    head: AtomicU64,
    dropped: AtomicU64,
}

impl<const N: usize> Default for PoisonRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`PoisonRing::drain_into`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Ranges moved into the list.
    pub drained: usize,
    /// Inserts that had to coarsen the list.
    pub coarsened: usize,
}

impl<const N: usize> PoisonRing<N> {
    /// An empty ring, usable in a `static`.
    pub const fn new() -> Self {
        const { assert!(N.is_power_of_two(), "PoisonRing capacity must be a power of two") };
        Self {
            slots: [const { Slot::new() }; N],
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn slot(&self, pos: u64) -> Option<&Slot> {
        // N is a power of two no larger than usize::MAX, so this is exact.
        self.slots.get((pos % N as u64) as usize)
    }

    const fn lap(pos: u64) -> u64 {
        pos / N as u64
    }

    /// Queues `range`. Lock-free, allocation-free, never blocks: safe in the
    /// `#MC` handler. On a full ring the range is dropped and counted.
    pub fn push(&self, range: ByteRange) -> Result<(), PoisonRingFull> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let Some(slot) = self.slot(pos) else {
                return Err(self.drop_one());
            };
            let free = Self::lap(pos).wrapping_mul(2);
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(free) as i64;
            if diff == 0 {
                match self.tail.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        slot.start.store(range.start(), Ordering::Relaxed);
                        slot.end.store(range.end(), Ordering::Relaxed);
                        slot.seq.store(free.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // The slot still holds lap L-1's range: the ring is full.
                return Err(self.drop_one());
            } else {
                // Another producer took this position: catch up.
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    fn drop_one(&self) -> PoisonRingFull {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        PoisonRingFull
    }

    /// Takes the oldest queued range, if any.
    pub fn pop(&self) -> Option<ByteRange> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos)?;
            let full = Self::lap(pos).wrapping_mul(2).wrapping_add(1);
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(full) as i64;
            if diff == 0 {
                match self.head.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        let range =
                            ByteRange::between(slot.start.load(Ordering::Relaxed), slot.end.load(Ordering::Relaxed));
                        // Free the slot for the producer of the next lap.
                        slot.seq.store(full.wrapping_add(1), Ordering::Release);
                        return Some(range);
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return None; // empty (or the next range is not published yet)
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Moves every queued range into `list`.
    pub fn drain_into<const M: usize>(&self, list: &mut PoisonList<M>) -> DrainStats {
        let mut stats = DrainStats::default();
        while let Some(range) = self.pop() {
            stats.drained += 1;
            if list.insert(range).is_err() {
                stats.coarsened += 1;
            }
        }
        stats
    }

    /// Ranges dropped because the ring was full, since the last
    /// [`PoisonRing::take_dropped`].
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Returns the drop count and resets it to zero.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }
}
