//! Reconciling a machine-check-safe read with the poison the machine check
//! reported.
//!
//! The machine-check-safe copy stops where a machine check hit it and says
//! how many bytes it copied and which physical range the #MC named. That is
//! not yet the exact answer a caller needs ("these N bytes are good, then
//! poison"):
//! - the copy moves 8 bytes at a time, so it may stop before the poisoned
//!   line: the good bytes between the stop and the poison are re-read;
//! - the #MC may be about other memory (an unrelated event that happened to
//!   interrupt the copy): the copy resumes where it stopped;
//! - the #MC may name no address: the read fails at the stop.
//!
//! [`read_exact_or_poison`] drives a copier through these cases; the kernel
//! plugs in the pmem region's machine-check-safe read.

/// How one attempt of the copier ended: `Ok(())` copied everything asked;
/// `Err((copied, poison))` stopped after `copied` bytes with the physical
/// range `(start, len)` the #MC named, if any.
pub type Attempt = Result<(), (usize, Option<(u64, u64)>)>;

/// The outcome of a reconciled read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Every byte was read.
    Complete,
    /// The first `valid` bytes are good; the byte at `valid` is poisoned
    /// (physical range `poison`).
    Poisoned {
        /// Good bytes at the start of the buffer.
        valid: usize,
        /// The poisoned physical range, as the #MC named it.
        poison: (u64, u64),
    },
    /// A machine check without an address stopped the read after `valid`
    /// good bytes (or the copier kept stopping without progress).
    Failed {
        /// Good bytes at the start of the buffer.
        valid: usize,
    },
}

/// The most attempts before giving up (every attempt either makes progress
/// or ends the read; the bound guards against a copier that lies).
pub const MAX_ATTEMPTS: usize = 64;

/// Reads `len` bytes whose first byte is at physical address `phys`, with
/// `copy(from, to)`: a machine-check-safe copy of buffer bytes
/// `[from, to)`.
pub fn read_exact_or_poison(len: usize, phys: u64, mut copy: impl FnMut(usize, usize) -> Attempt) -> ReadOutcome {
    let mut done = 0;
    for _ in 0..MAX_ATTEMPTS {
        let (copied, poison) = match copy(done, len) {
            Ok(()) => return ReadOutcome::Complete,
            Err((n, p)) => (done + n.min(len - done), p),
        };
        let Some((p_start, p_len)) = poison else { return ReadOutcome::Failed { valid: copied } };
        let end = phys.saturating_add(len as u64);
        let p_end = p_start.saturating_add(p_len);
        if p_start >= end || p_end <= phys {
            // An #MC about other memory: go on from where the copy stopped.
            done = copied;
            continue;
        }
        let poison_at = (p_start.max(phys) - phys) as usize;
        if copied >= poison_at {
            return ReadOutcome::Poisoned { valid: poison_at, poison: (p_start, p_len) };
        }
        // Stopped short of the poisoned line: the bytes in between are good;
        // read them, then the answer is exact.
        return match copy(copied, poison_at) {
            Ok(()) => ReadOutcome::Poisoned { valid: poison_at, poison: (p_start, p_len) },
            Err((n, _)) => ReadOutcome::Failed { valid: copied + n.min(poison_at - copied) },
        };
    }
    ReadOutcome::Failed { valid: done }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BASE: u64 = 0x1_0000_0000;

    /// A fake medium: `len` bytes at BASE with poisoned lines, where a copy
    /// stops `early` bytes (rounded to 8) before the first poisoned byte it
    /// meets, and an unrelated #MC interrupts the first `spurious` attempts.
    struct Fake {
        poison: Vec<(u64, u64)>,
        early: usize,
        spurious: usize,
        calls: usize,
    }

    impl Fake {
        fn copy(&mut self, from: usize, to: usize) -> Attempt {
            self.calls += 1;
            let first_bad = self
                .poison
                .iter()
                .filter_map(|&(s, l)| {
                    let (a, b) = (BASE + from as u64, BASE + to as u64);
                    (s < b && s + l > a).then(|| (s.max(a) - BASE) as usize)
                })
                .min();
            if self.spurious > 0 && to - from > 16 {
                // An unrelated #MC somewhere before the first poisoned byte.
                self.spurious -= 1;
                let stop = ((to - from) / 2).min(first_bad.map_or(usize::MAX, |b| b - from));
                return Err((stop, Some((0x1000, 64))));
            }
            match first_bad {
                None => Ok(()),
                Some(bad) => {
                    let stop = bad.saturating_sub(self.early).max(from) & !7;
                    Err((
                        stop.max(from) - from,
                        Some(
                            *self.poison.iter().find(|p| (p.0.max(BASE + from as u64) - BASE) as usize == bad).unwrap(),
                        ),
                    ))
                }
            }
        }
    }

    fn run(len: usize, fake: &mut Fake) -> ReadOutcome {
        read_exact_or_poison(len, BASE, |a, b| fake.copy(a, b))
    }

    #[test]
    fn clean_reads_complete() {
        let mut f = Fake { poison: vec![], early: 0, spurious: 0, calls: 0 };
        assert_eq!(run(4096, &mut f), ReadOutcome::Complete);
        assert_eq!(f.calls, 1);
    }

    #[test]
    fn stops_exactly_at_the_poison() {
        let mut f = Fake { poison: vec![(BASE + 320, 64)], early: 0, spurious: 0, calls: 0 };
        assert_eq!(run(4096, &mut f), ReadOutcome::Poisoned { valid: 320, poison: (BASE + 320, 64) });
    }

    #[test]
    fn early_stops_are_completed_up_to_the_poison() {
        let mut f = Fake { poison: vec![(BASE + 320, 64)], early: 40, spurious: 0, calls: 0 };
        assert_eq!(run(4096, &mut f), ReadOutcome::Poisoned { valid: 320, poison: (BASE + 320, 64) });
        assert_eq!(f.calls, 2, "one re-read of the good bytes before the poison");
    }

    #[test]
    fn unrelated_machine_checks_resume() {
        let mut f = Fake { poison: vec![], early: 0, spurious: 3, calls: 0 };
        assert_eq!(run(4096, &mut f), ReadOutcome::Complete);
        assert_eq!(f.calls, 4);
    }

    #[test]
    fn poison_before_the_range_counts_from_zero() {
        // A poisoned line that starts before the read's first byte.
        assert_eq!(
            read_exact_or_poison(100, BASE + 10, |_, _| Err((0, Some((BASE, 64))))),
            ReadOutcome::Poisoned { valid: 0, poison: (BASE, 64) }
        );
    }

    #[test]
    fn no_address_fails_at_the_stop() {
        assert_eq!(read_exact_or_poison(100, BASE, |_, _| Err((24, None))), ReadOutcome::Failed { valid: 24 });
    }

    #[test]
    fn a_lying_copier_cannot_loop_forever() {
        let mut calls = 0;
        let out = read_exact_or_poison(100, BASE, |_, _| {
            calls += 1;
            Err((0, Some((0x1000, 64))))
        });
        assert_eq!(out, ReadOutcome::Failed { valid: 0 });
        assert_eq!(calls, MAX_ATTEMPTS);
    }

    proptest! {
        #[test]
        fn valid_bytes_end_at_the_first_poisoned_byte(
            len in 1usize..8192,
            lines in proptest::collection::vec(0u64..128, 0..4),
            early in 0usize..200,
            spurious in 0usize..5,
        ) {
            let poison: Vec<(u64, u64)> = lines.iter().map(|l| (BASE + l * 64, 64)).collect();
            let first = poison.iter().map(|p| (p.0 - BASE) as usize).filter(|&o| o < len).min();
            let mut f = Fake { poison: poison.clone(), early, spurious, calls: 0 };
            match (run(len, &mut f), first) {
                (ReadOutcome::Complete, None) => {}
                (ReadOutcome::Poisoned { valid, poison: p }, Some(first)) => {
                    prop_assert_eq!(valid, first);
                    prop_assert_eq!(p.0, BASE + first as u64);
                }
                (other, first) => prop_assert!(false, "{:?} for first poison {:?}", other, first),
            }
        }
    }
}
