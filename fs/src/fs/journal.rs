//! Transactions: every operation pushes mutations into an open
//! transaction, which commits as one log record (written to both log
//! copies) or, when the log is full, as a checkpoint.
//!
//! Metadata space: checkpoint bodies and logs live in extents of the data
//! area, allocated at every checkpoint. Before a transaction commits, the
//! file system checks that a checkpoint of the new state can still be
//! written (twice over: now, and once more after it, since the blocks of
//! the current checkpoint are released only then), keeping a small reserve
//! that only operations that delete (unlink, rmdir, truncate, punch, bad
//! blocks) may use; file data is never allocated into that room. So the
//! log never holds a state that no checkpoint can store, and deleting is
//! always possible.
//!
//! Media errors:
//! - A failed store of file data (or poison in bytes a copy-on-write copies
//!   around) fails the operation with [`FsError::Poisoned`]: `finish`
//!   abandons the transaction (`abort`), so nothing of it is committed, and
//!   records the block in the bad-block list so that the next allocation
//!   avoids it.
//! - A log record whose store fails in one copy is durable in the other;
//!   one that fails in both is not. Either way the poisoned blocks join the
//!   bad-block list and a checkpoint of the state in memory (which holds the
//!   operation) is written to fresh extents with fresh logs: the operation
//!   is durable, the log is elsewhere, the file system keeps serving. A
//!   checkpoint store that fails marks the block bad and retries elsewhere.
//!   Only when no checkpoint can be written at all (no space anywhere, or
//!   neither header copy can be written) does the file system shut down
//!   read-only, and it never reports durable what the media do not hold.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::recovery::load_state;
use super::{FileSystem, BS};
use crate::crc::crc32c;
use crate::error::{Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::{MediaError, Pmem};
use crate::state::{Mutation, TxnEffects};

/// How many times a checkpoint is retried elsewhere after poison.
const CHECKPOINT_TRIES: usize = 8;

/// Blocks of one body copy for a body of `len` bytes, in extents of at
/// least one block each (every extent starts with a link line).
pub(super) fn body_blocks(len: u64) -> u64 {
    len.div_ceil(BS - LINK_LEN).max(1)
}

/// What a checkpoint took and gave back, so that a failed attempt can be
/// undone in memory.
struct Plan {
    new: Vec<(u64, u64, MetaKind)>,
    old_meta: BTreeMap<u64, (u64, MetaKind)>,
    released: Vec<(u64, u64)>,
    freed: Vec<(u64, u64)>,
}

enum Attempt {
    Done,
    /// A store hit poison; the block is now in the bad-block list.
    Retry(FsError),
}

impl<P: Pmem> FileSystem<P> {
    pub(super) fn begin(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        self.txn.buf.clear();
        self.txn_n = 0;
        self.txn_shrinks = false;
        self.fx = TxnEffects::default();
        Ok(())
    }

    /// Marks the open transaction as one that deletes: it may use the
    /// metadata reserve.
    pub(super) fn shrinking(&mut self) {
        self.txn_shrinks = true;
    }

    pub(super) fn push(&mut self, m: Mutation) -> Result<()> {
        if let Err(e) = self.st.apply(&m, Some(&mut self.fx)) {
            // DRAM may be half-updated: stop all writes (XFS-style shutdown).
            self.shut_down(e);
            return Err(e);
        }
        if !m.encode_fallible(&mut self.txn) {
            self.abort();
            return Err(FsError::NoMemory);
        }
        self.txn_n += 1;
        Ok(())
    }

    /// Blocks held back for deleting operations.
    fn reserve(&self) -> u64 {
        (self.sb.geo.data_blocks / 256).max(8)
    }

    /// Blocks a checkpoint of the state in memory needs now (two body
    /// copies with room for `extra` more bytes, two one-block logs).
    fn meta_need(&self, extra: u64) -> u64 {
        let len = self.st.checkpoint_len(self.st.space.meta.len() as u64 + 8) + extra + 256;
        2 * body_blocks(len) + 2
    }

    /// Blocks the open transaction frees at its commit (bad ones stay out).
    fn pending_free(&self) -> u64 {
        self.fx.freed.iter().map(|&(a, n)| n - self.st.space.bad.intersect(a, n).iter().map(|x| x.1).sum::<u64>()).sum()
    }

    /// Whether a checkpoint of the state, grown by `extra` bytes, can be
    /// written now and once more after it (the reserve counts unless the
    /// transaction deletes).
    pub(super) fn meta_room(&self, extra: u64) -> Result<()> {
        let free = self.st.space.free.total() + self.pending_free();
        let held = self.st.space.meta_blocks();
        let need = self.meta_need(extra);
        let r = if self.txn_shrinks { 0 } else { self.reserve() };
        if free >= need + r && free + held >= 2 * need + r {
            Ok(())
        } else {
            Err(FsError::NoSpace)
        }
    }

    /// Free blocks file data may take now without eating the room the next
    /// checkpoints need.
    pub(super) fn data_room(&self) -> u64 {
        let free = self.st.space.free.total();
        let held = self.st.space.meta_blocks();
        // Each allocation adds at most one extent (and its reverse-map
        // record) to the state: room for it is in `meta_need`'s margin.
        let need = self.meta_need(128);
        let r = if self.txn_shrinks { 0 } else { self.reserve() };
        free.saturating_sub(need + r).min((free + held).saturating_sub(2 * need + r))
    }

    /// Commits the transaction: data first, then one log record in both
    /// copies (store + flush, fence). Freed blocks become reusable only
    /// now. A transaction that would leave no room for a checkpoint is
    /// abandoned with [`FsError::NoSpace`].
    pub(super) fn commit(&mut self) -> Result<()> {
        if self.data_dirty {
            self.pm.fence();
            self.data_dirty = false;
        }
        if self.txn_n == 0 {
            return Ok(());
        }
        if let Err(e) = self.meta_room(0) {
            self.abort();
            return Err(e);
        }
        let rec = encode_log_record(&self.sb.uuid, self.gen, self.seq, self.txn_n, &self.txn.buf);
        let cap = self.hdr.log[0].len * BS;
        let res = if self.log_tail + rec.len() as u64 > cap {
            // Log full: a checkpoint of the current state commits this
            // transaction too (and starts fresh logs).
            self.write_checkpoint()
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

    /// Appends `rec` at the log tail of both log copies: store + flush,
    /// then one fence. If a copy cannot be written, the record is durable
    /// in the other; if neither, it is not. Either way the poisoned blocks
    /// become bad blocks and a checkpoint relocates the log (and commits
    /// the transaction if no copy holds it).
    pub(super) fn append_log_record(&mut self, rec: &[u8]) -> Result<()> {
        let mut errs: [Option<MediaError>; 2] = [None, None];
        for (c, err) in errs.iter_mut().enumerate() {
            let off = self.hdr.log[c].pblk * BS + self.log_tail;
            if let Err((e, _)) = self.pm.store_flush(off, rec) {
                *err = Some(e);
            }
        }
        self.pm.fence();
        if errs == [None, None] {
            self.log_tail += rec.len() as u64;
            self.seq += 1;
            return Ok(());
        }
        for e in errs.iter().flatten() {
            match *e {
                MediaError::Poisoned(r) => self.note_meta_poison(r.start(), r.len()),
                other => return Err(other.into()),
            }
        }
        let durable = errs.iter().any(Option::is_none);
        if durable {
            self.log_tail += rec.len() as u64;
            self.seq += 1;
        }
        self.info.relocations += 1;
        match self.write_checkpoint() {
            Ok(()) => Ok(()),
            Err(e) if durable => {
                // The operation is durable in one copy, but no checkpoint
                // can restore the redundancy: stop writing.
                self.release_deferred()?;
                self.shut_down(e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Records that device bytes `[off, off + len)` inside metadata are
    /// poisoned: their data-area blocks join the bad-block list in memory
    /// (the checkpoint that relocates the metadata persists it).
    pub(super) fn note_meta_poison(&mut self, off: u64, len: u64) {
        let g = self.sb.geo;
        let a = (off / BS).max(g.data_start);
        let e = off.saturating_add(len.max(1)).div_ceil(BS).min(g.data_end());
        if e > a {
            let _ = self.st.apply(&Mutation::BadAdd { pblk: a, len: e - a }, None);
        }
    }

    pub(super) fn release_deferred(&mut self) -> Result<()> {
        self.fx.unmapped = Default::default();
        for (a, n) in core::mem::take(&mut self.fx.freed) {
            self.st.space.release(a, n)?;
        }
        Ok(())
    }

    /// Writes the whole state as a new checkpoint: two body copies and two
    /// fresh logs in newly allocated extents, then the header copies; the
    /// first header copy is the commit point. The old checkpoint's extents
    /// are released after both header copies are durable. A media error
    /// that cannot be worked around shuts the file system down read-only
    /// (the current checkpoint and log stay valid).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        let r = self.write_checkpoint();
        if let Err(e) = r {
            if e.is_media() || e == FsError::NoSpace {
                self.shut_down(e);
            }
        }
        r
    }

    /// The checkpoint writer behind [`FileSystem::checkpoint`], a commit
    /// into a full log and a log relocation.
    pub(super) fn write_checkpoint(&mut self) -> Result<()> {
        let mut last = FsError::NoSpace;
        for _ in 0..CHECKPOINT_TRIES {
            match self.try_checkpoint()? {
                Attempt::Done => return Ok(()),
                Attempt::Retry(e) => last = e,
            }
        }
        Err(last)
    }

    /// Takes the extents of the next checkpoint and puts the state in
    /// memory into its after-checkpoint form (new metadata extents; the old
    /// ones and the blocks the open transaction freed are free).
    fn plan(&mut self, bb: u64, log: u64) -> Option<Plan> {
        let space = &mut self.st.space;
        let mut new: Vec<(u64, u64, MetaKind)> = Vec::new();
        let give_back = |space: &mut crate::space::Space, new: &[(u64, u64, MetaKind)]| {
            for &(s, l, _) in new {
                let _ = space.free.insert(s, l);
            }
        };
        for c in 0..2u8 {
            match space.take_meta(bb, false) {
                Some(v) => new.extend(v.into_iter().map(|(s, l)| (s, l, MetaKind::Body(c)))),
                None => {
                    give_back(space, &new);
                    return None;
                }
            }
        }
        let mut logs = Vec::new();
        for _ in 0..2 {
            match space.take_meta(log, true) {
                Some(v) => logs.push(v[0]),
                None => {
                    give_back(space, &new);
                    for &(s, l) in &logs {
                        let _ = space.free.insert(s, l);
                    }
                    return None;
                }
            }
        }
        // Both log copies the same length.
        let ll = logs[0].1.min(logs[1].1);
        for (c, (s, l)) in logs.into_iter().enumerate() {
            if l > ll {
                let _ = space.free.insert(s + ll, l - ll);
            }
            new.push((s, ll, MetaKind::Log(c as u8)));
        }
        let old_meta = core::mem::take(&mut space.meta);
        for &(s, l, k) in &new {
            space.meta.insert(s, (l, k));
        }
        let mut released = Vec::new();
        let freed = core::mem::take(&mut self.fx.freed);
        let old: Vec<(u64, u64)> = old_meta.iter().map(|(&s, &(l, _))| (s, l)).collect();
        for (a, n) in old.into_iter().chain(freed.iter().copied()) {
            let bad = space.bad.intersect(a, n);
            let mut cur = a;
            for (s, l) in bad.into_iter().chain(core::iter::once((a + n, 0))) {
                if s > cur && space.free.insert(cur, s - cur).is_ok() {
                    released.push((cur, s - cur));
                }
                cur = s + l;
            }
        }
        Some(Plan { new, old_meta, released, freed })
    }

    /// Undoes a [`Plan`] in memory.
    fn unplan(&mut self, p: Plan) {
        let space = &mut self.st.space;
        for (s, l) in p.released {
            let _ = space.free.remove(s, l);
        }
        space.meta = p.old_meta;
        for (s, l, _) in p.new {
            let _ = space.free.insert(s, l);
        }
        self.fx.freed = p.freed;
    }

    fn try_checkpoint(&mut self) -> Result<Attempt> {
        let geo = self.sb.geo;
        let gen = self.gen.checked_add(1).ok_or(FsError::Corrupt(Corruption::Format))?;
        let mut want = self.st.checkpoint_len(self.st.space.meta.len() as u64 + 8) + 512;
        let (plan, body) = loop {
            let bb = body_blocks(want);
            let free = self.st.space.free.total();
            let held = self.st.space.meta_blocks() + self.pending_free();
            let by_now = free.saturating_sub(2 * bb) / 2;
            let after = (free + held).saturating_sub(4 * bb + 2) / 2;
            let log = geo.log_blocks.min(by_now).min(after.max(1)).max(1);
            let Some(plan) = self.plan(bb, log) else {
                return Err(FsError::NoSpace);
            };
            let body = match self.st.encode_checkpoint() {
                Ok(b) => b,
                Err(e) => {
                    self.unplan(plan);
                    return Err(e);
                }
            };
            let cap: u64 =
                plan.new.iter().filter(|x| x.2 == MetaKind::Body(0)).map(|&(_, l, _)| l * BS - LINK_LEN).sum();
            if body.len() as u64 <= cap {
                break (plan, body);
            }
            self.unplan(plan);
            want = body.len() as u64 + 512;
        };
        // Logs zeroed (no stale record can ever look valid), bodies with
        // their links, all flushed; one fence.
        let uuid = self.sb.uuid;
        let mut hdr = Header {
            gen,
            body_len: body.len() as u64,
            body_crc: crc32c(&body),
            body: [Run::default(); 2],
            log: [Run::default(); 2],
            uuid,
        };
        let mut err: Option<MediaError> = None;
        for &(s, l, k) in &plan.new {
            if let MetaKind::Log(c) = k {
                hdr.log[usize::from(c)] = Run { pblk: s, len: l };
                if let Err((e, _)) = self.pm.store_zeros(s * BS, l * BS) {
                    err.get_or_insert(e);
                }
                self.pm.flush(s * BS, l * BS);
            }
        }
        for c in 0..2u8 {
            let runs: Vec<Run> =
                plan.new.iter().filter(|x| x.2 == MetaKind::Body(c)).map(|&(pblk, len, _)| Run { pblk, len }).collect();
            hdr.body[usize::from(c)] = runs[0];
            let mut at = 0usize;
            for (i, r) in runs.iter().enumerate() {
                let next = runs.get(i + 1).copied().unwrap_or_default();
                let link = Link { gen, copy: u32::from(c), index: i as u32, next }.encode(&uuid);
                let take = ((r.len * BS - LINK_LEN) as usize).min(body.len() - at);
                let off = r.pblk * BS;
                if let Err((e, _)) = self.pm.store_flush(off, &link) {
                    err.get_or_insert(e);
                }
                if let Err((e, _)) = self.pm.store_flush(off + LINK_LEN, &body[at..at + take]) {
                    err.get_or_insert(e);
                }
                at += take;
            }
        }
        self.pm.fence();
        if let Some(e) = err {
            self.unplan(plan);
            return match e {
                MediaError::Poisoned(r) => {
                    self.note_meta_poison(r.start(), r.len());
                    Ok(Attempt::Retry(e.into()))
                }
                other => Err(other.into()),
            };
        }
        // The header copies: A is the commit point, then B.
        let enc = hdr.encode();
        let mut committed = false;
        for c in 0..2u8 {
            match self.write_header(c, &enc) {
                Ok(()) => committed = true,
                Err(e) if !committed => {
                    self.unplan(plan);
                    return Err(e);
                }
                Err(_) => self.info.damage.header[usize::from(c)] = true,
            }
        }
        self.gen = gen;
        self.hdr = hdr;
        self.log_tail = 0;
        self.seq = 0;
        self.fx.unmapped = Default::default();
        Ok(Attempt::Done)
    }

    /// Writes header copy `copy` (store, flush, fence); over poison, a
    /// whole-page recovery write.
    pub(super) fn write_header(&mut self, copy: u8, enc: &[u8]) -> Result<()> {
        let off = self.sb.geo.header_block(copy) * BS;
        let stored = self.pm.store_flush(off, enc);
        self.pm.fence();
        match stored {
            Ok(()) => Ok(()),
            Err((MediaError::Poisoned(_), _)) => {
                let mut page = vec![0u8; BS as usize];
                page[..enc.len()].copy_from_slice(enc);
                self.pm.recovery_write(off, &page)?;
                Ok(())
            }
            Err((e, _)) => Err(e.into()),
        }
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
            Err(e) if e.is_media() || e == FsError::NoMemory => {
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
    /// work, paid only after a media error or ENOSPC. If it cannot be read
    /// back, the file system shuts down.
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
        match load_state(&self.pm, &self.sb, false) {
            Ok(l)
                if l.fallback.is_none()
                    && l.replay_error.is_none()
                    && (l.hdr, l.replayed, l.log_tail) == (self.hdr, self.seq, self.log_tail) =>
            {
                // Bad blocks found since the last commit are kept.
                let bad: Vec<(u64, u64)> = self.st.space.bad.iter().collect();
                self.st = l.st;
                for (s, n) in bad {
                    let _ = self.st.apply(&Mutation::BadAdd { pblk: s, len: n }, None);
                }
            }
            Ok(_) => self.shut_down(FsError::Corrupt(Corruption::Log)),
            Err(e) => self.shut_down(e),
        }
    }

    /// Records the data block holding device offset `offset` as bad (in its
    /// own transaction), after an operation found it poisoned, so that it
    /// is not allocated again. Best effort: the operation has failed
    /// already, and a failure here changes nothing else.
    pub(super) fn note_bad_block(&mut self, offset: u64) {
        let blk = offset / BS;
        if self.ro || !self.sb.geo.in_data(blk, 1) || self.st.space.bad.contains_range(blk, 1) {
            return;
        }
        if self.begin().is_ok() {
            self.shrinking();
            if self.push(Mutation::BadAdd { pblk: blk, len: 1 }).is_ok() {
                let _ = self.commit();
            }
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
