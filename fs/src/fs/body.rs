//! Reading a checkpoint body copy. Its chain of extents is walked link by
//! link first (each link checked: magic, CRC, uuid, generation, copy,
//! index; every extent inside the data area and disjoint from the ones
//! before), so the chain must really hold the header's body length before
//! anything of that size is allocated. Then the payload is read in order:
//! whole into one exactly sized buffer ([`BodyChain::read_all`]), or
//! streamed through a small buffer ([`BodyReader`]) to check a copy's CRC
//! or to count a body's records without holding it.

use alloc::vec::Vec;

use super::{failed, BS};
use crate::crc::crc32c_update;
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::{Header, Link, Run, Superblock, LINK_LEN};
use crate::pmem::Pmem;
use crate::space::RangeSet;

/// The bytes a [`BodyReader`] buffers (one allocation, made fallibly).
pub(super) const STREAM_CHUNK: usize = 64 << 10;

/// The extents of one body copy, walked and checked, not yet read.
pub(super) struct BodyChain {
    runs: Vec<Run>,
    len: u64,
    crc: u32,
}

impl BodyChain {
    /// Walks the links of body copy `copy` of the checkpoint `h` names.
    /// Reads only the link lines; allocates one small record per extent.
    pub(super) fn walk<P: Pmem>(pm: &P, sb: &Superblock, h: &Header, copy: u8) -> Result<Self> {
        let geo = sb.geo;
        if h.body_len == 0 || h.body_len > geo.data_blocks * BS {
            return corrupt(Corruption::Format);
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut seen = RangeSet::default();
        let mut run = h.body[usize::from(copy)];
        let mut index = 0u32;
        let mut held = 0u64;
        loop {
            if !geo.in_data(run.pblk, run.len) || seen.overlaps(run.pblk, run.len) {
                return corrupt(Corruption::Format);
            }
            seen.insert(run.pblk, run.len)?;
            let mut line = [0u8; LINK_LEN as usize];
            pm.load(run.pblk * BS, &mut line).map_err(failed)?;
            let link = Link::decode(&line, &sb.uuid, h.gen)
                .filter(|l| l.copy == u32::from(copy) && l.index == index)
                .ok_or(FsError::Corrupt(Corruption::Format))?;
            runs.try_reserve(1).map_err(|_| FsError::NoMemory)?;
            runs.push(run);
            // Disjoint extents inside the data area: no overflow.
            held += run.len * BS - LINK_LEN;
            if held >= h.body_len {
                break;
            }
            if link.next.len == 0 {
                return corrupt(Corruption::Format);
            }
            run = link.next;
            index = index.checked_add(1).ok_or(FsError::Corrupt(Corruption::Format))?;
        }
        Ok(BodyChain { runs, len: h.body_len, crc: h.body_crc })
    }

    /// The extents walked.
    pub(super) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The payload's device byte ranges, in order: (offset, length).
    fn pieces(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut left = self.len;
        self.runs.iter().map(move |r| {
            let take = (r.len * BS - LINK_LEN).min(left);
            left -= take;
            (r.pblk * BS + LINK_LEN, take)
        })
    }

    /// Reads the whole payload into one buffer of exactly the body's
    /// length and checks the body CRC.
    pub(super) fn read_all<P: Pmem>(&self, pm: &P) -> Result<Vec<u8>> {
        let mut body: Vec<u8> = Vec::new();
        body.try_reserve_exact(self.len as usize).map_err(|_| FsError::NoMemory)?;
        body.resize(self.len as usize, 0);
        let mut at = 0usize;
        let mut crc = 0;
        for (off, n) in self.pieces() {
            let piece = &mut body[at..at + n as usize];
            pm.load(off, piece).map_err(failed)?;
            crc = crc32c_update(crc, piece);
            at += n as usize;
        }
        if crc != self.crc {
            return corrupt(Corruption::Checksum);
        }
        Ok(body)
    }

    /// A streaming reader over the payload.
    pub(super) fn reader<'a, P: Pmem>(&'a self, pm: &'a P) -> Result<BodyReader<'a, P>> {
        let mut buf: Vec<u8> = Vec::new();
        let size = STREAM_CHUNK.min(self.len as usize);
        buf.try_reserve_exact(size).map_err(|_| FsError::NoMemory)?;
        buf.resize(size, 0);
        Ok(BodyReader {
            pm,
            chain: self,
            piece: 0,
            piece_done: 0,
            unloaded: self.len,
            buf,
            start: 0,
            end: 0,
            consumed: 0,
            crc: 0,
        })
    }

    /// Reads the payload through a small buffer and checks the body CRC,
    /// without holding the body.
    pub(super) fn verify<P: Pmem>(&self, pm: &P) -> Result<()> {
        self.reader(pm)?.finish()
    }
}

/// Reads a body's payload in order through a small buffer, computing the
/// body CRC as it goes.
pub(super) struct BodyReader<'a, P> {
    pm: &'a P,
    chain: &'a BodyChain,
    /// The extent being read, and how much of its payload is loaded.
    piece: usize,
    piece_done: u64,
    /// Payload bytes not yet loaded into the buffer.
    unloaded: u64,
    buf: Vec<u8>,
    /// Unconsumed bytes: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes handed out (or skipped) so far.
    consumed: u64,
    crc: u32,
}

impl<P: Pmem> BodyReader<'_, P> {
    /// Payload bytes not yet consumed.
    pub(super) fn remaining(&self) -> u64 {
        self.chain.len - self.consumed
    }

    /// Refills the buffer after its unconsumed bytes; false at the end.
    fn fill(&mut self) -> Result<bool> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let before = self.end;
        while self.end < self.buf.len() && self.unloaded > 0 {
            let Some(run) = self.chain.runs.get(self.piece) else { break };
            let n = (run.len * BS - LINK_LEN).min(self.unloaded + self.piece_done);
            if self.piece_done == n {
                self.piece += 1;
                self.piece_done = 0;
                continue;
            }
            let take = (n - self.piece_done).min((self.buf.len() - self.end) as u64) as usize;
            let dst = &mut self.buf[self.end..self.end + take];
            self.pm.load(run.pblk * BS + LINK_LEN + self.piece_done, dst).map_err(failed)?;
            self.crc = crc32c_update(self.crc, dst);
            self.piece_done += take as u64;
            self.unloaded -= take as u64;
            self.end += take;
        }
        Ok(self.end > before)
    }

    /// The next `n` bytes (at most the buffer's size); a body that ends
    /// first does not parse.
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.buf.len() {
            return corrupt(Corruption::Format);
        }
        while self.end - self.start < n {
            if !self.fill()? {
                return corrupt(Corruption::Format);
            }
        }
        let s = self.start;
        self.start += n;
        self.consumed += n as u64;
        Ok(&self.buf[s..s + n])
    }

    pub(super) fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips `n` bytes (read all the same, for the CRC).
    pub(super) fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            if self.start == self.end && !self.fill()? {
                return corrupt(Corruption::Format);
            }
            let k = n.min((self.end - self.start) as u64);
            self.start += k as usize;
            self.consumed += k;
            n -= k;
        }
        Ok(())
    }

    /// Reads what is left and checks the body CRC.
    pub(super) fn finish(mut self) -> Result<()> {
        self.skip(self.remaining())?;
        if self.crc != self.chain.crc {
            return corrupt(Corruption::Checksum);
        }
        Ok(())
    }
}
