//! Transactions: every operation pushes mutations into an open
//! transaction, which commits as one log record (or a checkpoint).

use super::rmap::meta_rmap_section;
use super::{failed, FileSystem, BS};
use crate::crc::crc32c;
use crate::error::{Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
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
            self.ro = true;
            self.info.degraded.get_or_insert(e);
            return Err(e);
        }
        m.encode(&mut self.txn);
        self.txn_n += 1;
        Ok(())
    }

    /// Commits the transaction: data first, then one log record
    /// (store + flush + fence). Freed blocks become reusable only now.
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
            self.release_deferred().and_then(|_| self.checkpoint())
        } else {
            let off = self.sb.geo.log_start * BS + self.log_tail;
            let stored = self.pm.store_flush(off, &rec).map_err(failed);
            self.pm.fence();
            stored.and_then(|()| {
                self.log_tail += rec.len() as u64;
                self.seq += 1;
                self.release_deferred()
            })
        };
        self.txn_n = 0;
        self.txn.buf.clear();
        if let Err(e) = res {
            self.ro = true;
            self.info.degraded.get_or_insert(e);
        }
        res
    }

    pub(super) fn release_deferred(&mut self) -> Result<()> {
        self.fx.unmapped = Default::default();
        for (a, n) in core::mem::take(&mut self.fx.freed) {
            self.st.space.release(a, n)?;
        }
        Ok(())
    }

    /// Writes the whole state to the other checkpoint slot; the header,
    /// written last, makes it current. Resets the log.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
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
        let stored = self.pm.store_flush(base + BS, &body).map_err(failed);
        self.pm.fence();
        stored?;
        let hdr = CkptHeader { gen, body_len: body.len() as u64, body_crc: crc32c(&body), uuid: self.sb.uuid };
        let stored = self.pm.store_flush(base, &hdr.encode()).map_err(failed);
        self.pm.fence();
        stored?;
        self.gen = gen;
        self.slot = slot;
        self.log_tail = 0;
        self.seq = 0;
        Ok(())
    }

    /// Ends a transaction: commits whatever was pushed (also when `r` is an
    /// error part-way, so DRAM and media agree), then returns `r`.
    pub(super) fn finish<T>(&mut self, r: Result<T>) -> Result<T> {
        if self.ro {
            // A failed push shut the file system down; nothing to commit.
            return r.and(Err(FsError::ReadOnly));
        }
        let c = self.commit();
        let v = r?;
        c?;
        Ok(v)
    }
}
