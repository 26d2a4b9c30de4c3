//! `lseek` on a regular file (Linux `generic_file_llseek_size` and the
//! `SEEK_DATA`/`SEEK_HOLE` rules of `iomap_seek_data`/`iomap_seek_hole`):
//! the new offset, from the current one, the size and the file's mapped
//! runs.
//!
//! A mapped run (allocated blocks, written or preallocated: fsdax zeroes
//! what it preallocates, so it is data) is data; anything else inside the
//! size is a hole; the end of the file is a hole.

use fsdax_abi::request::Whence;
use fsdax_abi::Errno;

/// The new offset of an `lseek(fd, offset, whence)` on a file of `size`
/// bytes whose mapped runs are `runs` (byte `(start, len)`, sorted, not
/// overlapping; adjacent runs may touch), from the current offset `cur`;
/// `max` is the largest offset the file system allows.
///
/// Errors (Linux's): a negative result or one past `max` is EINVAL;
/// `SEEK_DATA`/`SEEK_HOLE` at or past the end, or with a negative offset,
/// is ENXIO, and so is `SEEK_DATA` with no data after the offset.
pub fn lseek(whence: Whence, offset: i64, cur: u64, size: u64, max: u64, runs: &[(u64, u64)]) -> Result<u64, Errno> {
    let from = |base: u64| -> Result<u64, Errno> {
        let r = i128::from(base) + i128::from(offset);
        if r < 0 || r > i128::from(max) {
            return Err(Errno::EINVAL);
        }
        Ok(r as u64)
    };
    match whence {
        Whence::Set => from(0),
        Whence::Cur => from(cur),
        Whence::End => from(size),
        Whence::Data | Whence::Hole => {
            let off = u64::try_from(offset).ok().filter(|&o| o < size).ok_or(Errno::ENXIO)?;
            if whence == Whence::Data {
                next_data(off, size, runs)
            } else {
                Ok(next_hole(off, size, runs))
            }
        }
    }
}

/// The first data byte at or after `off` (ENXIO if none before `size`).
fn next_data(off: u64, size: u64, runs: &[(u64, u64)]) -> Result<u64, Errno> {
    let at = runs.iter().find(|&&(s, l)| s.saturating_add(l) > off).map(|&(s, _)| s.max(off));
    at.filter(|&a| a < size).ok_or(Errno::ENXIO)
}

/// The first hole byte at or after `off` (the end of the file at most):
/// the end of the runs that reach `off` without a gap.
fn next_hole(off: u64, size: u64, runs: &[(u64, u64)]) -> u64 {
    let mut hole = off;
    for &(s, l) in runs {
        let e = s.saturating_add(l);
        if e <= hole {
            continue;
        }
        if s > hole {
            break;
        }
        hole = e;
    }
    hole.min(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 52;

    fn seek(w: Whence, off: i64, cur: u64, size: u64, runs: &[(u64, u64)]) -> Result<u64, Errno> {
        lseek(w, off, cur, size, MAX, runs)
    }

    #[test]
    fn set_cur_end() {
        assert_eq!(seek(Whence::Set, 100, 7, 50, &[]), Ok(100), "past EOF is fine");
        assert_eq!(seek(Whence::Set, -1, 7, 50, &[]), Err(Errno::EINVAL));
        assert_eq!(seek(Whence::Cur, -7, 7, 50, &[]), Ok(0));
        assert_eq!(seek(Whence::Cur, -8, 7, 50, &[]), Err(Errno::EINVAL));
        assert_eq!(seek(Whence::End, -50, 7, 50, &[]), Ok(0));
        assert_eq!(seek(Whence::End, -51, 7, 50, &[]), Err(Errno::EINVAL));
        assert_eq!(seek(Whence::Cur, i64::MAX, u64::MAX, 50, &[]), Err(Errno::EINVAL));
        assert_eq!(seek(Whence::Set, MAX as i64, 0, 0, &[]), Ok(MAX));
        assert_eq!(seek(Whence::Set, MAX as i64 + 1, 0, 0, &[]), Err(Errno::EINVAL));
    }

    #[test]
    fn data_and_holes() {
        // data [0, 4096) and [8192, 12288) (two runs, contiguous, split by
        // sharing), [20480, 24576); size 30000.
        let runs = [(0, 4096), (8192, 4096), (12288, 4096), (20480, 4096)];
        let size = 30_000;
        assert_eq!(seek(Whence::Data, 0, 0, size, &runs), Ok(0));
        assert_eq!(seek(Whence::Data, 100, 0, size, &runs), Ok(100));
        assert_eq!(seek(Whence::Data, 4096, 0, size, &runs), Ok(8192));
        assert_eq!(seek(Whence::Data, 16384, 0, size, &runs), Ok(20480));
        assert_eq!(seek(Whence::Data, 24576, 0, size, &runs), Err(Errno::ENXIO));
        assert_eq!(seek(Whence::Hole, 0, 0, size, &runs), Ok(4096));
        assert_eq!(seek(Whence::Hole, 5000, 0, size, &runs), Ok(5000));
        assert_eq!(seek(Whence::Hole, 9000, 0, size, &runs), Ok(16384), "across contiguous runs");
        assert_eq!(seek(Whence::Hole, 21000, 0, size, &runs), Ok(24576));
        assert_eq!(seek(Whence::Hole, 29_999, 0, size, &runs), Ok(29_999));
        // At or past EOF, or negative: ENXIO.
        assert_eq!(seek(Whence::Data, 30_000, 0, size, &runs), Err(Errno::ENXIO));
        assert_eq!(seek(Whence::Hole, 30_000, 0, size, &runs), Err(Errno::ENXIO));
        assert_eq!(seek(Whence::Hole, -1, 0, size, &runs), Err(Errno::ENXIO));
        // Data running past EOF (preallocated): the hole is at EOF.
        assert_eq!(seek(Whence::Hole, 10, 0, 3000, &[(0, 8192)]), Ok(3000));
        // Data that starts past EOF is not data.
        assert_eq!(seek(Whence::Data, 10, 0, 3000, &[(4096, 4096)]), Err(Errno::ENXIO));
    }

    proptest::proptest! {
        /// Byte by byte against a map of the file.
        #[test]
        fn matches_a_byte_map(
            blocks in proptest::collection::vec(proptest::bool::ANY, 0..12),
            size in 0u64..50,
            off in -2i64..52,
        ) {
            // Runs of 4-byte blocks.
            let runs: Vec<(u64, u64)> =
                blocks.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| (i as u64 * 4, 4)).collect();
            let mapped = |b: u64| blocks.get((b / 4) as usize).copied().unwrap_or(false);
            let d = seek(Whence::Data, off, 0, size, &runs);
            let h = seek(Whence::Hole, off, 0, size, &runs);
            if off < 0 || off as u64 >= size {
                proptest::prop_assert_eq!(d, Err(Errno::ENXIO));
                proptest::prop_assert_eq!(h, Err(Errno::ENXIO));
            } else {
                let off = off as u64;
                let want_d = (off..size).find(|&b| mapped(b)).ok_or(Errno::ENXIO);
                let want_h = (off..size).find(|&b| !mapped(b)).unwrap_or(size);
                proptest::prop_assert_eq!(d, want_d);
                proptest::prop_assert_eq!(h, Ok(want_h));
            }
        }
    }
}
