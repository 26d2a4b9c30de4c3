//! [`ByteRange`]: a half-open byte range `[start, end)`.

use core::fmt;

/// A half-open byte range `[start, end)` with `start <= end`.
///
/// Built only through the checked constructors ([`ByteRange::new`],
/// [`ByteRange::from_len`]), so the invariant always holds and `len()` never
/// underflows. An empty range (`start == end`) is empty: it means nothing,
/// never "the whole file" or "the whole device".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ByteRange {
    start: u64,
    end: u64,
}

impl ByteRange {
    /// The empty range at offset 0.
    pub const EMPTY: ByteRange = ByteRange { start: 0, end: 0 };

    /// The range `[start, end)`, or `None` if `end < start`.
    pub const fn new(start: u64, end: u64) -> Option<Self> {
        if end < start {
            None
        } else {
            Some(Self { start, end })
        }
    }

    /// The range `[start, start + len)`, or `None` if it overflows.
    pub const fn from_len(start: u64, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// The range `[start, start + len)` with its end clamped to `u64::MAX`
    /// (for ranges reported by hardware, whose end cannot be represented
    /// exactly only at the very top of the address space).
    pub const fn from_len_saturating(start: u64, len: u64) -> Self {
        Self { start, end: start.saturating_add(len) }
    }

    /// The range between two offsets given in either order.
    pub const fn between(a: u64, b: u64) -> Self {
        if a <= b {
            Self { start: a, end: b }
        } else {
            Self { start: b, end: a }
        }
    }

    /// First byte.
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether `offset` is inside the range.
    pub const fn contains(&self, offset: u64) -> bool {
        self.start <= offset && offset < self.end
    }

    /// Whether every byte of `other` is inside this range (an empty `other`
    /// is inside any range that contains or ends at its offset).
    pub const fn contains_range(&self, other: &ByteRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Whether the ranges share at least one byte (empty ranges share none).
    pub const fn overlaps(&self, other: &ByteRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// The bytes both ranges hold, or `None` if they share none.
    pub const fn intersection(&self, other: &ByteRange) -> Option<ByteRange> {
        if !self.overlaps(other) {
            return None;
        }
        let start = if self.start > other.start { self.start } else { other.start };
        let end = if self.end < other.end { self.end } else { other.end };
        Some(ByteRange { start, end })
    }

    /// The part of this range at or after `offset` (empty if `offset` is at
    /// or past the end).
    pub const fn from_offset(&self, offset: u64) -> ByteRange {
        let start = if offset > self.start { offset } else { self.start };
        if start >= self.end {
            ByteRange { start: self.end, end: self.end }
        } else {
            ByteRange { start, end: self.end }
        }
    }

    /// The part of this range before `limit` (empty if `limit` is at or
    /// before the start).
    pub const fn clamp_end(&self, limit: u64) -> ByteRange {
        let end = if limit < self.end { limit } else { self.end };
        if end <= self.start {
            ByteRange { start: self.start, end: self.start }
        } else {
            ByteRange { start: self.start, end }
        }
    }

    /// The smallest range covering both.
    pub const fn union_hull(&self, other: &ByteRange) -> ByteRange {
        let start = if self.start < other.start { self.start } else { other.start };
        let end = if self.end > other.end { self.end } else { other.end };
        ByteRange { start, end }
    }
}

impl fmt::Debug for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// `0x1000..0x2000`: hex offsets, half open.
impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn r(s: u64, e: u64) -> ByteRange {
        ByteRange::new(s, e).unwrap()
    }

    #[test]
    fn constructors_are_checked() {
        assert_eq!(ByteRange::new(5, 4), None);
        assert_eq!(ByteRange::new(5, 5).map(|r| r.is_empty()), Some(true));
        assert_eq!(ByteRange::from_len(u64::MAX, 1), None);
        assert_eq!(ByteRange::from_len(u64::MAX, 0), Some(r(u64::MAX, u64::MAX)));
        assert_eq!(ByteRange::from_len_saturating(u64::MAX - 1, 10), r(u64::MAX - 1, u64::MAX));
        assert_eq!(r(10, 30).len(), 20);
        assert_eq!(ByteRange::between(30, 10), r(10, 30));
        assert_eq!(format!("{}", r(0x1000, 0x2000)), "0x1000..0x2000");
    }

    #[test]
    fn overlap_containment_and_intersection() {
        let a = r(10, 20);
        assert!(a.contains(10) && a.contains(19) && !a.contains(20) && !a.contains(9));
        assert!(a.overlaps(&r(19, 25)) && !a.overlaps(&r(20, 25)) && !a.overlaps(&r(0, 10)));
        assert!(!a.overlaps(&r(15, 15)), "an empty range overlaps nothing");
        assert_eq!(a.intersection(&r(15, 40)), Some(r(15, 20)));
        assert_eq!(a.intersection(&r(20, 40)), None);
        assert!(a.contains_range(&r(12, 20)) && !a.contains_range(&r(12, 21)));
        assert_eq!(a.from_offset(15), r(15, 20));
        assert!(a.from_offset(25).is_empty());
        assert_eq!(a.from_offset(0), a);
        assert_eq!(a.clamp_end(12), r(10, 12));
        assert!(a.clamp_end(5).is_empty());
        assert_eq!(a.union_hull(&r(30, 40)), r(10, 40));
    }

    proptest! {
        #[test]
        fn intersection_is_exactly_the_shared_bytes(a in 0u64..64, al in 0u64..32, b in 0u64..64, bl in 0u64..32) {
            let (x, y) = (r(a, a + al), r(b, b + bl));
            let i = x.intersection(&y);
            for o in 0..100u64 {
                let both = x.contains(o) && y.contains(o);
                prop_assert_eq!(both, i.is_some_and(|i| i.contains(o)));
            }
            prop_assert_eq!(i.is_some(), x.overlaps(&y));
            prop_assert_eq!(x.overlaps(&y), y.overlaps(&x));
        }
    }
}
