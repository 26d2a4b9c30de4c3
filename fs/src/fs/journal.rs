//! Transactions: every operation pushes mutations into an open
//! transaction, which commits as one log record (or a checkpoint).
//!
//! Media errors:
//! - A failed store of file data (or poison in bytes a copy-on-write copies
//!   around) fails the operation with [`FsError::Poisoned`]: `finish`
//!   abandons the transaction (`abort`), so nothing of it is committed, and
//!   records the block in the bad-block list so that the next allocation
//!   avoids it.
//! - A failed store of a log record or a checkpoint fails the operation,
//!   abandons it and shuts the file system down read-only: the media keep
//!   the last committed state (a torn record or checkpoint never validates),
//!   and nothing is ever reported durable that is not. Both metadata
//!   writers (`append_log_record`, `write_checkpoint`) report through
//!   `metadata_store_failed`, the one place that decides what a failed
//!   metadata store does.

use super::recovery::load_state;
use super::rmap::meta_rmap_section;
use super::{FileSystem, BS};
use crate::crc::crc32c;
use crate::error::{Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::{MediaError, Pmem};
use crate::state::{Mutation, TxnEffects};

impl<P: Pmem> FileSystem<P> {
    pub(super) fn begin(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        self.txn.buf.clear();
        self.txn_n = 0;
        self.fx = TxnEffects::default();
        Ok(())
    }

    pub(super) fn push(&mut self, m: Mutation) -> Result<()> {
        if let Err(e) = self.st.apply(&m, Some(&mut self.fx)) {
            // DRAM may be half-updated: stop all writes (XFS-style shutdown).
            self.shut_down(e);
            return Err(e);
        }
        m.encode(&mut self.txn);
        self.txn_n += 1;
        Ok(())
    }

    /// Commits the transaction: data first, then one log record
    /// (store + flush + fence). Freed blocks become reusable only now.
    /// If the record (or the checkpoint that replaces it when the log is
    /// full) cannot be written, the transaction is abandoned and the file
    /// system shuts down read-only.
    pub(super) fn commit(&mut self) -> Result<()> {
        if self.data_dirty {
            self.pm.fence();
            self.data_dirty = false;
        }
        if self.txn_n == 0 {
            return Ok(());
        }
        let rec = encode_log_record(&self.sb.uuid, self.gen, self.seq, self.txn_n, &self.txn.buf);
        let cap = self.sb.geo.log_blocks * BS;
        let res = if self.log_tail + rec.len() as u64 > cap {
            // Log full: a checkpoint of the current state commits this
            // transaction too (and resets the log).
            self.release_deferred().and_then(|_| self.write_checkpoint())
        } else {
            self.append_log_record(&rec).and_then(|()| self.release_deferred())
        };
        match res {
            Ok(()) => {
                self.txn_n = 0;
                self.txn.buf.clear();
                Ok(())
            }
            Err(e) => {
                // Memory must not show what the media do not hold.
                self.abort();
                self.shut_down(e);
                Err(e)
            }
        }
    }

    /// Appends `rec` at the log tail: store + flush + fence.
    pub(super) fn append_log_record(&mut self, rec: &[u8]) -> Result<()> {
        let off = self.sb.geo.log_start * BS + self.log_tail;
        let stored = self.pm.store_flush(off, rec);
        self.pm.fence();
        if let Err((e, _)) = stored {
            // Replay stops at this record: a load of it stops at the poison,
            // or (poison cleared later) its CRC fails.
            return Err(self.metadata_store_failed(e));
        }
        self.log_tail += rec.len() as u64;
        self.seq += 1;
        Ok(())
    }

    /// A store of metadata (log record, checkpoint) failed with `e`; returns
    /// the operation's error. For now the file system cannot put the
    /// structure elsewhere, so the caller abandons the operation and shuts
    /// down read-only; the media keep the last committed state.
    fn metadata_store_failed(&mut self, e: MediaError) -> FsError {
        FsError::from(e)
    }

    pub(super) fn release_deferred(&mut self) -> Result<()> {
        self.fx.unmapped = Default::default();
        for (a, n) in core::mem::take(&mut self.fx.freed) {
            self.st.space.release(a, n)?;
        }
        Ok(())
    }

    /// Writes the whole state to the other checkpoint slot; the header,
    /// written last, makes it current. Resets the log. A media error shuts
    /// the file system down read-only (the current checkpoint and log stay
    /// valid: the slot written is the older one).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        let r = self.write_checkpoint();
        if let Err(e) = r {
            if e.is_media() {
                self.shut_down(e);
            }
        }
        r
    }

    /// The checkpoint writer behind [`FileSystem::checkpoint`] and a commit
    /// into a full log.
    pub(super) fn write_checkpoint(&mut self) -> Result<()> {
        let geo = self.sb.geo;
        let gen = self.gen.checked_add(1).ok_or(FsError::Corrupt(Corruption::Format))?;
        let mut body = self.st.encode_checkpoint();
        body.extend_from_slice(&meta_rmap_section(&geo));
        let cap = (geo.ckpt_blocks - 1) * BS;
        if body.len() as u64 > cap {
            return Err(FsError::NoSpace);
        }
        let slot = 1 - self.slot;
        let base = geo.ckpt_slot(slot) * BS;
        let stored = self.pm.store_flush(base + BS, &body);
        self.pm.fence();
        if let Err((e, _)) = stored {
            return Err(self.metadata_store_failed(e));
        }
        let hdr = CkptHeader { gen, body_len: body.len() as u64, body_crc: crc32c(&body), uuid: self.sb.uuid };
        let stored = self.pm.store_flush(base, &hdr.encode());
        self.pm.fence();
        if let Err((e, _)) = stored {
            // A torn header fails its CRC: the older slot stays current.
            return Err(self.metadata_store_failed(e));
        }
        self.gen = gen;
        self.slot = slot;
        self.log_tail = 0;
        self.seq = 0;
        Ok(())
    }

    /// Ends a transaction and returns `r`:
    /// - `r` a media error: the transaction is abandoned (nothing of it is
    ///   committed) and the poisoned block recorded as bad;
    /// - otherwise whatever was pushed is committed, also when `r` is an
    ///   error part-way (a partial allocation that ran out of space), so
    ///   memory and media agree.
    pub(super) fn finish<T>(&mut self, r: Result<T>) -> Result<T> {
        if self.ro {
            // A failed push shut the file system down; nothing to commit.
            return r.and(Err(FsError::ReadOnly));
        }
        match r {
            Err(e) if e.is_media() => {
                self.abort();
                if let FsError::Poisoned { offset } = e {
                    self.note_bad_block(offset);
                }
                Err(e)
            }
            r => {
                let c = self.commit();
                let v = r?;
                c?;
                Ok(v)
            }
        }
    }

    /// Abandons the open transaction: nothing of it reaches the media, and
    /// the metadata in memory returns to the committed state. If no mutation
    /// was pushed, nothing changed. Otherwise the committed state is read
    /// back from the media (checkpoint + log, as mount does): one mount's
    /// work, paid only after a media error. If it cannot be read back, the
    /// file system shuts down.
    pub(super) fn abort(&mut self) {
        if self.data_dirty {
            self.pm.fence();
            self.data_dirty = false;
        }
        let changed = self.txn_n > 0;
        self.txn.buf.clear();
        self.txn_n = 0;
        self.fx = TxnEffects::default();
        if !changed {
            return;
        }
        match load_state(&self.pm, &self.sb) {
            Ok(l)
                if l.fallback.is_none()
                    && l.replay_error.is_none()
                    && (l.gen, l.slot, l.replayed, l.log_tail) == (self.gen, self.slot, self.seq, self.log_tail) =>
            {
                self.st = l.st;
            }
            Ok(_) => self.shut_down(FsError::Corrupt(Corruption::Log)),
            Err(e) => self.shut_down(e),
        }
    }

    /// Records the data block holding device offset `offset` as bad (in its
    /// own transaction), after an operation found it poisoned, so that it
    /// is not allocated again. Best effort: the operation has failed
    /// already, and a failure here changes nothing else.
    fn note_bad_block(&mut self, offset: u64) {
        let blk = offset / BS;
        if self.ro || !self.sb.geo.in_data(blk, 1) || self.st.space.bad.contains_range(blk, 1) {
            return;
        }
        if self.begin().is_ok() && self.push(Mutation::BadAdd { pblk: blk, len: 1 }).is_ok() {
            let _ = self.commit();
        }
    }

    /// Stops all writes: read-only from now on, remembering the first
    /// reason (shown by mount info).
    pub(super) fn shut_down(&mut self, why: FsError) {
        self.ro = true;
        self.info.read_only = true;
        self.info.degraded.get_or_insert(why);
    }
}
