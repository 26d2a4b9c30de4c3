//! A process's descriptor table: small integers to open file descriptions,
//! with the close-on-exec flag per descriptor, and Linux's rules: the lowest
//! free number (`open`, `dup`, `F_DUPFD` from a floor), `dup2` closing what
//! was there, at most [`MAX_FDS`] descriptors (EMFILE past them, EBADF for a
//! number beyond them).
//!
//! The table is generic over the description type `F` (the kernel's is an
//! `Arc` of its open file), so the rules are tested here on the host. Every
//! call that removes descriptors returns them, so that the caller drops them
//! after it lets go of the table's lock (dropping the last reference to a
//! file may take the file system's lock, which comes first in the lock
//! order).

use alloc::vec::Vec;

use fsdax_abi::Errno;

/// Most descriptors a process may hold (Linux's default `RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;

/// One descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fd<F> {
    /// The open file description (shared by `dup`s and across `vfork`).
    pub file: F,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// A process's descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdTable<F> {
    fds: Vec<Option<Fd<F>>>,
}

impl<F> Default for FdTable<F> {
    fn default() -> Self {
        FdTable { fds: Vec::new() }
    }
}

impl<F: Clone> FdTable<F> {
    /// A table holding `files` at descriptors 0, 1, 2, ...
    pub fn with(files: impl IntoIterator<Item = F>) -> FdTable<F> {
        FdTable { fds: files.into_iter().map(|file| Some(Fd { file, cloexec: false })).collect() }
    }

    fn slot(fd: u64) -> Option<usize> {
        usize::try_from(fd).ok().filter(|&i| i < MAX_FDS)
    }

    /// The descriptor `fd` (EBADF if it is not open).
    pub fn get(&self, fd: u64) -> Result<&Fd<F>, Errno> {
        Self::slot(fd).and_then(|i| self.fds.get(i)).and_then(Option::as_ref).ok_or(Errno::EBADF)
    }

    /// Sets the close-on-exec flag of `fd`.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> Result<(), Errno> {
        let slot = Self::slot(fd).and_then(|i| self.fds.get_mut(i)).and_then(Option::as_mut);
        slot.ok_or(Errno::EBADF)?.cloexec = on;
        Ok(())
    }

    /// Installs `entry` at the lowest free descriptor at or above `from`
    /// (EMFILE if none; EINVAL if `from` is beyond the table).
    pub fn insert_lowest(&mut self, from: u64, entry: Fd<F>) -> Result<u64, Errno> {
        let from = Self::slot(from).ok_or(Errno::EINVAL)?;
        let free = (from..MAX_FDS).find(|&i| self.fds.get(i).is_none_or(Option::is_none)).ok_or(Errno::EMFILE)?;
        self.place(free, entry);
        Ok(free as u64)
    }

    /// Installs `entry` at `fd` and returns what was there (`dup2`, `dup3`;
    /// EBADF if `fd` is beyond the table).
    pub fn replace(&mut self, fd: u64, entry: Fd<F>) -> Result<Option<Fd<F>>, Errno> {
        let i = Self::slot(fd).ok_or(Errno::EBADF)?;
        let old = self.fds.get_mut(i).and_then(Option::take);
        self.place(i, entry);
        Ok(old)
    }

    fn place(&mut self, i: usize, entry: Fd<F>) {
        if self.fds.len() <= i {
            self.fds.resize(i + 1, None);
        }
        self.fds[i] = Some(entry);
    }

    /// Closes `fd` and returns its descriptor (EBADF if not open).
    pub fn close(&mut self, fd: u64) -> Result<Fd<F>, Errno> {
        let r = Self::slot(fd).and_then(|i| self.fds.get_mut(i)).and_then(Option::take).ok_or(Errno::EBADF);
        self.trim();
        r
    }

    /// Closes every close-on-exec descriptor (`execve`) and returns them.
    pub fn close_on_exec(&mut self) -> Vec<Fd<F>> {
        let mut out = Vec::new();
        for slot in &mut self.fds {
            if slot.as_ref().is_some_and(|f| f.cloexec) {
                out.extend(slot.take());
            }
        }
        self.trim();
        out
    }

    /// Closes everything (exit) and returns what was open.
    pub fn clear(&mut self) -> Vec<Fd<F>> {
        core::mem::take(&mut self.fds).into_iter().flatten().collect()
    }

    /// The open descriptors and their entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Fd<F>)> {
        self.fds.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| (i as u64, f)))
    }

    fn trim(&mut self) {
        while self.fds.last().is_some_and(Option::is_none) {
            self.fds.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fd(f: u32) -> Fd<u32> {
        Fd { file: f, cloexec: false }
    }

    #[test]
    fn lowest_free_descriptor_and_dup_rules() {
        let mut t = FdTable::with([10, 11, 12]);
        assert_eq!(t.insert_lowest(0, fd(13)), Ok(3));
        assert_eq!(t.close(1).map(|f| f.file), Ok(11));
        assert_eq!(t.insert_lowest(0, fd(14)), Ok(1), "the lowest free number");
        assert_eq!(t.insert_lowest(10, fd(15)), Ok(10), "F_DUPFD from a floor");
        assert_eq!(t.get(10).map(|f| f.file), Ok(15));
        assert_eq!(t.get(9), Err(Errno::EBADF));
        assert_eq!(t.get(u64::MAX), Err(Errno::EBADF));
        assert_eq!(t.insert_lowest(MAX_FDS as u64, fd(1)), Err(Errno::EINVAL));
        // dup2 over an open descriptor returns it (the caller closes it).
        assert_eq!(t.replace(0, fd(16)).map(|o| o.map(|f| f.file)), Ok(Some(10)));
        assert_eq!(t.replace(20, fd(17)), Ok(None));
        assert_eq!(t.replace(MAX_FDS as u64, fd(1)), Err(Errno::EBADF));
        assert_eq!(t.close(5), Err(Errno::EBADF));
        assert_eq!(t.close(u64::MAX), Err(Errno::EBADF));
    }

    #[test]
    fn close_on_exec_and_clear_return_what_they_close() {
        let mut t = FdTable::with([1, 2, 3]);
        t.set_cloexec(1, true).unwrap();
        assert_eq!(t.set_cloexec(7, true), Err(Errno::EBADF));
        t.insert_lowest(0, Fd { file: 4, cloexec: true }).unwrap();
        let closed: Vec<u32> = t.close_on_exec().into_iter().map(|f| f.file).collect();
        assert_eq!(closed, vec![2, 4]);
        assert_eq!(t.iter().map(|(n, f)| (n, f.file)).collect::<Vec<_>>(), vec![(0, 1), (2, 3)]);
        assert_eq!(t.clear().len(), 2);
        assert_eq!(t.get(0), Err(Errno::EBADF));
    }

    #[test]
    fn emfile_when_full() {
        let mut t: FdTable<u32> = FdTable::default();
        for i in 0..MAX_FDS as u64 {
            assert_eq!(t.insert_lowest(0, fd(0)), Ok(i));
        }
        assert_eq!(t.insert_lowest(0, fd(0)), Err(Errno::EMFILE));
        t.close(500).unwrap();
        assert_eq!(t.insert_lowest(0, fd(0)), Ok(500));
    }

    proptest! {
        /// Against a model: a map from number to file.
        #[test]
        fn matches_a_map_model(ops in proptest::collection::vec((0u8..4, 0u64..40, any::<bool>()), 0..200)) {
            let mut t: FdTable<u64> = FdTable::default();
            let mut m = std::collections::BTreeMap::new();
            for (k, (op, n, flag)) in ops.into_iter().enumerate() {
                let k = k as u64;
                match op {
                    0 => {
                        let got = t.insert_lowest(n, Fd { file: k, cloexec: flag }).unwrap();
                        let want = (n..).find(|i| !m.contains_key(i)).unwrap();
                        prop_assert_eq!(got, want);
                        m.insert(want, (k, flag));
                    }
                    1 => {
                        let got = t.close(n).ok().map(|f| f.file);
                        prop_assert_eq!(got, m.remove(&n).map(|v| v.0));
                    }
                    2 => {
                        let old = t.replace(n, Fd { file: k, cloexec: flag }).unwrap().map(|f| f.file);
                        prop_assert_eq!(old, m.insert(n, (k, flag)).map(|v| v.0));
                    }
                    _ => {
                        let closed: Vec<u64> = t.close_on_exec().into_iter().map(|f| f.file).collect();
                        let want: Vec<u64> = m.values().filter(|v| v.1).map(|v| v.0).collect();
                        m.retain(|_, v| !v.1);
                        prop_assert_eq!(closed, want);
                    }
                }
                let now: Vec<(u64, u64, bool)> = t.iter().map(|(n, f)| (n, f.file, f.cloexec)).collect();
                let want: Vec<(u64, u64, bool)> = m.iter().map(|(&n, &(f, c))| (n, f, c)).collect();
                prop_assert_eq!(now, want);
            }
        }
    }
}
