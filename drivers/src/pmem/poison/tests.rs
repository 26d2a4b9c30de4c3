//! Tests of the poison list (unit + model-based property test) and of the
//! poison ring (unit + multi-threaded).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

fn r(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end).unwrap()
}

fn ranges<const N: usize>(l: &PoisonList<N>) -> Vec<(u64, u64)> {
    l.iter().map(|x| (x.start(), x.end())).collect()
}

fn check_invariants<const N: usize>(l: &PoisonList<N>) {
    let s = l.as_slice();
    assert!(s.len() <= N);
    assert_eq!(s.len(), l.len());
    for x in s {
        assert!(!x.is_empty(), "empty range in {s:?}");
    }
    for w in s.windows(2) {
        assert!(w[0].end() < w[1].start(), "unsorted, overlapping or adjacent: {s:?}");
    }
}

#[test]
fn byte_range_basics() {
    assert_eq!(ByteRange::new(5, 4), None);
    assert_eq!(ByteRange::from_len(u64::MAX, 1), None);
    let x = ByteRange::from_len(10, 5).unwrap();
    assert_eq!((x.start(), x.end(), x.len()), (10, 15, 5));
    assert!(x.contains(10) && x.contains(14) && !x.contains(15));
    assert!(x.overlaps(&r(14, 20)) && !x.overlaps(&r(15, 20)));
    assert!(r(3, 3).is_empty());
    assert_eq!(std::format!("{x:?}"), "0xa..0xf");
    let phys = crate::mce::PhysRange { start: 0x1_0000_1200, len: 64 };
    assert_eq!(ByteRange::from(phys), r(0x1_0000_1200, 0x1_0000_1240));
}

#[test]
fn insert_merges_overlapping_and_adjacent() {
    let mut l = PoisonList::<8>::new();
    assert!(l.is_empty());
    l.insert(r(100, 200)).unwrap();
    l.insert(r(300, 400)).unwrap();
    l.insert(r(0, 10)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 10), (100, 200), (300, 400)]);
    // Adjacent on the left of 100..200.
    l.insert(r(90, 100)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 10), (90, 200), (300, 400)]);
    // Bridges two ranges.
    l.insert(r(150, 350)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 10), (90, 400)]);
    // Inside an existing range: no change.
    l.insert(r(95, 96)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 10), (90, 400)]);
    // Empty insert: no change.
    l.insert(r(1000, 1000)).unwrap();
    assert_eq!(l.len(), 2);
    // Covers everything.
    l.insert(r(0, 1000)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 1000)]);
    assert_eq!(l.total_bytes(), 1000);
    check_invariants(&l);
}

#[test]
fn insert_when_full_merges_the_closest_pair() {
    let mut l = PoisonList::<3>::new();
    l.insert(r(0, 10)).unwrap();
    l.insert(r(100, 110)).unwrap();
    l.insert(r(1000, 1010)).unwrap();
    // Closest pair is the new range and 100..110 (gap 5).
    let e = l.insert(r(115, 120)).unwrap_err();
    assert_eq!(e.coarsened, r(100, 120));
    assert_eq!(ranges(&l), vec![(0, 10), (100, 120), (1000, 1010)]);
    // Closest pair is two stored ranges (0..10, 100..120: gap 90), not
    // involving the new range (gaps 480 and 380).
    let e = l.insert(r(600, 620)).unwrap_err();
    assert_eq!(e.coarsened, r(0, 120));
    assert_eq!(ranges(&l), vec![(0, 120), (600, 620), (1000, 1010)]);
    // New range at the front, closest to its right neighbour.
    let mut l2 = PoisonList::<2>::new();
    l2.insert(r(50, 60)).unwrap();
    l2.insert(r(500, 600)).unwrap();
    let e = l2.insert(r(40, 45)).unwrap_err();
    assert_eq!(e.coarsened, r(40, 60));
    assert_eq!(ranges(&l2), vec![(40, 60), (500, 600)]);
    // New range at the back, two stored ranges closest.
    let e = l2.insert(r(10_000, 10_001)).unwrap_err();
    assert_eq!(e.coarsened, r(40, 600));
    assert_eq!(ranges(&l2), vec![(40, 600), (10_000, 10_001)]);
    check_invariants(&l);
    check_invariants(&l2);
}

#[test]
fn capacity_one_always_holds_a_superset() {
    let mut l = PoisonList::<1>::new();
    l.insert(r(10, 20)).unwrap();
    assert_eq!(l.insert(r(30, 40)).unwrap_err().coarsened, r(10, 40));
    assert_eq!(l.insert(r(0, 1)).unwrap_err().coarsened, r(0, 40));
    assert_eq!(ranges(&l), vec![(0, 40)]);
}

#[test]
fn remove_trims_and_splits() {
    let mut l = PoisonList::<4>::new();
    l.insert(r(0, 100)).unwrap();
    l.insert(r(200, 300)).unwrap();
    // Split.
    l.remove(r(40, 60)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 40), (60, 100), (200, 300)]);
    // Trim across two ranges.
    l.remove(r(80, 250)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 40), (60, 80), (250, 300)]);
    // Remove whole ranges and nothing else.
    l.remove(r(40, 80)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 40), (250, 300)]);
    // Removing clean bytes is a no-op.
    l.remove(r(100, 200)).unwrap();
    l.remove(r(5, 5)).unwrap();
    assert_eq!(ranges(&l), vec![(0, 40), (250, 300)]);
    l.remove(r(0, u64::MAX)).unwrap();
    assert!(l.is_empty());
}

#[test]
fn remove_that_needs_a_split_when_full_changes_nothing() {
    let mut l = PoisonList::<2>::new();
    l.insert(r(0, 100)).unwrap();
    l.insert(r(200, 300)).unwrap();
    let e = l.remove(r(40, 60)).unwrap_err();
    assert_eq!(e.coarsened, r(0, 100));
    assert_eq!(ranges(&l), vec![(0, 100), (200, 300)]);
    // Trimming an end needs no room.
    l.remove(r(0, 60)).unwrap();
    assert_eq!(ranges(&l), vec![(60, 100), (200, 300)]);
}

#[test]
fn first_overlap_and_contains() {
    let mut l = PoisonList::<8>::new();
    l.insert(r(100, 200)).unwrap();
    l.insert(r(300, 400)).unwrap();
    assert_eq!(l.first_overlap(r(0, 100)), None);
    assert_eq!(l.first_overlap(r(0, 101)), Some(r(100, 200)));
    assert_eq!(l.first_overlap(r(150, 350)), Some(r(100, 200)));
    assert_eq!(l.first_overlap(r(200, 300)), None);
    assert_eq!(l.first_overlap(r(250, 1000)), Some(r(300, 400)));
    assert_eq!(l.first_overlap(r(150, 150)), None);
    assert!(l.contains(100) && l.contains(399));
    assert!(!l.contains(99) && !l.contains(200) && !l.contains(u64::MAX));
    l.clear();
    assert!(l.is_empty() && l.first_overlap(r(0, 1000)).is_none());
}

// ---- model-based property test ------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let span = (0u64..1024, 0u64..96);
    prop_oneof![
        3 => span.clone().prop_map(|(s, l)| Op::Insert(s, s + l)),
        1 => span.prop_map(|(s, l)| Op::Remove(s, s + l)),
    ]
}

fn bytes<const N: usize>(l: &PoisonList<N>) -> BTreeSet<u64> {
    l.iter().flat_map(|x| x.start()..x.end()).collect()
}

/// Runs `ops` against a list of capacity N and a model set of poisoned
/// bytes. The list must always cover the model; while no operation has
/// reported `PoisonListFull` it must equal it; and a coarsening insert may
/// only add the bytes of the range it reports.
fn run_model<const N: usize>(ops: &[Op]) {
    let mut list = PoisonList::<N>::new();
    let mut model = BTreeSet::new();
    let mut exact = true;
    for op in ops {
        let before = bytes(&list);
        match *op {
            Op::Insert(s, e) => {
                let res = list.insert(r(s, e));
                model.extend(s..e);
                let after = bytes(&list);
                let expected: BTreeSet<u64> = before.union(&(s..e).collect()).copied().collect();
                match res {
                    Ok(()) => assert_eq!(after, expected, "exact insert {s}..{e}"),
                    Err(PoisonListFull { coarsened }) => {
                        exact = false;
                        assert!(after.is_superset(&expected));
                        for b in after.difference(&expected) {
                            assert!(coarsened.contains(*b), "{b} outside {coarsened:?}");
                        }
                    }
                }
            }
            Op::Remove(s, e) => match list.remove(r(s, e)) {
                Ok(()) => {
                    for b in s..e {
                        model.remove(&b);
                    }
                    let expected: BTreeSet<u64> = before.iter().copied().filter(|b| !(s..e).contains(b)).collect();
                    assert_eq!(bytes(&list), expected, "remove {s}..{e}");
                }
                Err(_) => {
                    exact = false;
                    assert_eq!(bytes(&list), before, "a refused remove changes nothing");
                }
            },
        }
        check_invariants(&list);
        let listed = bytes(&list);
        assert!(listed.is_superset(&model), "poisoned bytes forgotten");
        if exact {
            assert_eq!(listed, model);
        }
        // first_overlap agrees with the byte view on the op's range.
        let (s, e) = match *op {
            Op::Insert(s, e) | Op::Remove(s, e) => (s, e),
        };
        let q = r(s, e.max(s + 1));
        let hit = list.first_overlap(q);
        let first_byte = listed.range(q.start()..q.end()).next().copied();
        match (hit, first_byte) {
            (Some(h), Some(b)) => assert!(h.contains(b)),
            (None, None) => {}
            other => panic!("first_overlap disagrees: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn list_matches_model_small_capacity(ops in prop::collection::vec(op(), 1..40)) {
        run_model::<4>(&ops);
    }

    #[test]
    fn list_matches_model_default_capacity(ops in prop::collection::vec(op(), 1..60)) {
        run_model::<64>(&ops);
    }
}

// ---- ring -----------------------------------------------------------------

#[test]
fn ring_is_fifo_and_counts_drops() {
    let ring = PoisonRing::<4>::new();
    assert_eq!(ring.capacity(), 4);
    assert_eq!(ring.pop(), None);
    for i in 0..4 {
        ring.push(r(i, i + 1)).unwrap();
    }
    assert_eq!(ring.push(r(9, 10)), Err(PoisonRingFull));
    assert_eq!(ring.push(r(9, 10)), Err(PoisonRingFull));
    assert_eq!(ring.dropped(), 2);
    assert_eq!(ring.pop(), Some(r(0, 1)));
    ring.push(r(4, 5)).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| ring.pop()).collect();
    assert_eq!(got, vec![r(1, 2), r(2, 3), r(3, 4), r(4, 5)]);
    assert_eq!(ring.take_dropped(), 2);
    assert_eq!(ring.dropped(), 0);
    // Many laps around the ring.
    for i in 0..1000u64 {
        ring.push(r(i, i + 1)).unwrap();
        ring.push(r(i + 1, i + 2)).unwrap();
        assert_eq!(ring.pop(), Some(r(i, i + 1)));
        assert_eq!(ring.pop(), Some(r(i + 1, i + 2)));
    }
    assert_eq!(ring.pop(), None);
}

#[test]
fn ring_drains_into_list() {
    static RING: PoisonRing<8> = PoisonRing::new();
    RING.push(r(0, 64)).unwrap();
    RING.push(r(64, 128)).unwrap();
    RING.push(r(4096, 4160)).unwrap();
    let mut list = PoisonList::<2>::new();
    assert_eq!(RING.drain_into(&mut list), DrainStats { drained: 3, coarsened: 0 });
    assert_eq!(ranges(&list), vec![(0, 128), (4096, 4160)]);
    RING.push(r(1000, 1001)).unwrap();
    let stats = RING.drain_into(&mut list);
    assert_eq!((stats.drained, stats.coarsened), (1, 1));
    assert!(list.contains(1000) && list.contains(0) && list.contains(4159));
}

/// Several producers (standing in for `#MC` handlers on several CPUs) and
/// one consumer at once: every accepted range comes out exactly once, in
/// each producer's order, and accepted + dropped = pushed.
#[test]
fn ring_many_producers_one_consumer() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 20_000;
    let ring = PoisonRing::<64>::new();
    let done = AtomicBool::new(false);
    let (accepted, received) = std::thread::scope(|s| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let ring = &ring;
                s.spawn(move || {
                    let mut ok = 0u64;
                    for i in 0..PER_PRODUCER {
                        let start = (p << 32) | i;
                        if ring.push(r(start, start + 1)).is_ok() {
                            ok += 1;
                        }
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                    ok
                })
            })
            .collect();
        let consumer = s.spawn(|| {
            let mut got = Vec::new();
            loop {
                let finished = done.load(Ordering::Acquire);
                while let Some(x) = ring.pop() {
                    got.push(x);
                }
                if finished {
                    break got;
                }
                std::thread::yield_now();
            }
        });
        let accepted: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        (accepted, consumer.join().unwrap())
    });
    assert_eq!(received.len() as u64, accepted);
    assert_eq!(accepted + ring.dropped(), PRODUCERS * PER_PRODUCER);
    let mut last = vec![None::<u64>; PRODUCERS as usize];
    for x in &received {
        assert_eq!(x.end(), x.start() + 1, "torn entry {x:?}");
        let (p, i) = ((x.start() >> 32) as usize, x.start() & 0xFFFF_FFFF);
        assert!(last[p].is_none_or(|prev| prev < i), "producer {p} out of order");
        last[p] = Some(i);
    }
    assert!(accepted > 0);
}

/// Several consumers at once also take each range exactly once.
#[test]
fn ring_many_producers_many_consumers() {
    const TOTAL: u64 = 40_000;
    let ring = PoisonRing::<16>::new();
    let done = AtomicBool::new(false);
    let (accepted, mut received) = std::thread::scope(|s| {
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let ring = &ring;
                s.spawn(move || {
                    (0..TOTAL / 2)
                        .filter(|i| {
                            let start = p * TOTAL + i;
                            ring.push(r(start, start + 1)).is_ok()
                        })
                        .count() as u64
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut got = Vec::new();
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        while let Some(x) = ring.pop() {
                            got.push(x.start());
                        }
                        if finished {
                            break got;
                        }
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        let accepted: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        let received: Vec<u64> = consumers.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (accepted, received)
    });
    let n = received.len();
    received.sort_unstable();
    received.dedup();
    assert_eq!(received.len(), n, "a range was received twice");
    assert_eq!(n as u64, accepted);
    assert_eq!(accepted + ring.dropped(), TOTAL);
}
