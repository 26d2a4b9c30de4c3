//! The state of a sleeping reader-writer lock: who holds it, and whether a
//! writer waits (writers are preferred, so a stream of readers cannot starve
//! one). The kernel's `RwLock` keeps this under its wait queue's spin lock
//! and sleeps when an acquire fails; a mutex is the writer side alone.

/// Readers, writer and waiting writers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RwState {
    readers: u32,
    writer: bool,
    writers_waiting: u32,
}

impl RwState {
    /// An unlocked state.
    pub const fn new() -> Self {
        RwState { readers: 0, writer: false, writers_waiting: 0 }
    }

    /// Takes a read hold if no writer holds or waits.
    pub fn try_read(&mut self) -> bool {
        if self.writer || self.writers_waiting > 0 || self.readers == u32::MAX {
            return false;
        }
        self.readers += 1;
        true
    }

    /// Takes the write hold if nobody holds the lock. `waited`: the caller
    /// registered as waiting ([`Self::writer_waits`]) and stops waiting now
    /// if it succeeds.
    pub fn try_write(&mut self, waited: bool) -> bool {
        if self.writer || self.readers > 0 {
            return false;
        }
        self.writer = true;
        if waited {
            self.writers_waiting = self.writers_waiting.saturating_sub(1);
        }
        true
    }

    /// A writer failed to get the lock and will sleep: new readers wait.
    pub fn writer_waits(&mut self) {
        self.writers_waiting = self.writers_waiting.saturating_add(1);
    }

    /// Drops a read hold.
    pub fn release_read(&mut self) {
        debug_assert!(self.readers > 0, "read release without a read hold");
        self.readers = self.readers.saturating_sub(1);
    }

    /// Drops the write hold.
    pub fn release_write(&mut self) {
        debug_assert!(self.writer, "write release without the write hold");
        self.writer = false;
    }

    /// Readers holding the lock.
    pub fn readers(&self) -> u32 {
        self.readers
    }

    /// Whether a writer holds the lock.
    pub fn has_writer(&self) -> bool {
        self.writer
    }

    /// Whether nobody holds the lock.
    pub fn is_free(&self) -> bool {
        !self.writer && self.readers == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn readers_share_writers_exclude() {
        let mut s = RwState::new();
        assert!(s.try_read() && s.try_read());
        assert!(!s.try_write(false));
        s.writer_waits();
        assert!(!s.try_read(), "a waiting writer holds back new readers");
        s.release_read();
        s.release_read();
        assert!(s.try_write(true));
        assert!(!s.try_read() && !s.try_write(false));
        s.release_write();
        assert!(s.is_free());
        assert!(s.try_read(), "no writer waits any more");
    }

    /// Actors that take and release the lock in random order.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Holding {
        Nothing,
        Waiting,
        Read,
        Write,
    }

    proptest! {
        #[test]
        fn never_a_writer_with_anyone_else(steps in proptest::collection::vec((0usize..6, 0u8..3), 1..300)) {
            let mut s = RwState::new();
            let mut actors = [Holding::Nothing; 6];
            for (who, what) in steps {
                let a = &mut actors[who];
                match (*a, what) {
                    (Holding::Nothing, 0) => if s.try_read() { *a = Holding::Read },
                    (Holding::Nothing, _) => if s.try_write(false) { *a = Holding::Write } else { s.writer_waits(); *a = Holding::Waiting },
                    (Holding::Waiting, _) => if s.try_write(true) { *a = Holding::Write },
                    (Holding::Read, _) => { s.release_read(); *a = Holding::Nothing }
                    (Holding::Write, _) => { s.release_write(); *a = Holding::Nothing }
                }
                let readers = actors.iter().filter(|&&h| h == Holding::Read).count() as u32;
                let writers = actors.iter().filter(|&&h| h == Holding::Write).count();
                let waiting = actors.iter().filter(|&&h| h == Holding::Waiting).count() as u32;
                prop_assert!(writers <= 1);
                prop_assert!(writers == 0 || readers == 0);
                prop_assert_eq!(s.readers(), readers);
                prop_assert_eq!(s.has_writer(), writers == 1);
                prop_assert_eq!(s.writers_waiting, waiting);
            }
        }
    }
}
