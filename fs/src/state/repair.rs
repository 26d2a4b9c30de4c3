//! [`State::rebuild_derived`]: what `fsck --repair` recomputes.

use alloc::vec::Vec;

use super::{FileKind, Ino, State};
use crate::error::{corrupt, Corruption, FsError, Result};

impl State {
    /// Recomputes everything that follows from the extents, the directory
    /// entries and the bad and metadata sets: link counts, parents and
    /// subdirectory counts, the reverse map, reference counts and the free
    /// space. Fails if the primary structures contradict each other (a
    /// directory named twice, an extent over metadata or outside the data
    /// area); [`State::verify`] then checks the result.
    pub fn rebuild_derived(&mut self) -> Result<()> {
        // Names: link counts, parents, subdirectory counts.
        for i in self.inodes.values_mut() {
            i.links = 0;
            i.parent = 0;
            i.subdirs = 0;
        }
        let edges: Vec<(Ino, Ino)> =
            self.inodes.iter().flat_map(|(&d, i)| i.entries.values().map(move |&c| (d, c))).collect();
        let (mut dirents, mut names) = (0u64, 0u64);
        for i in self.inodes.values() {
            dirents += i.entries.len() as u64;
            names += i.entries.keys().map(|k| k.len() as u64).sum::<u64>();
        }
        self.dirents = dirents;
        self.name_bytes = names;
        for (d, c) in edges {
            let Some(ci) = self.inodes.get_mut(&c) else {
                return corrupt(Corruption::Tree);
            };
            ci.links = ci.links.saturating_add(1);
            let is_dir = ci.kind == FileKind::Dir;
            if is_dir {
                ci.parent = d;
            }
            if let Some(di) = self.inodes.get_mut(&d) {
                di.subdirs += u32::from(is_dir);
            }
        }
        // Space: reverse map and reference counts from the extents.
        self.space.rmap.clear();
        self.space.refc.clear();
        let mut owned = crate::space::RangeSet::default();
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        for (&ino, i) in &self.inodes {
            for (&f, e) in &i.extents {
                if !self.geo.in_data(e.pblk, e.len) || !self.space.meta_in(e.pblk, e.len).is_empty() {
                    return corrupt(Corruption::Space);
                }
                self.space.rmap.insert((e.pblk, ino, f), e.len);
                pieces.push((e.pblk, e.len));
            }
        }
        for (p, l) in pieces {
            // Blocks already owned gain an owner; new ones become owned.
            let mut cur = p;
            for (s, n) in owned.intersect(p, l).into_iter().chain(core::iter::once((p + l, 0))) {
                if s > cur {
                    owned.insert(cur, s - cur).map_err(|_| FsError::Corrupt(Corruption::Space))?;
                }
                if n > 0 {
                    self.space.refc_inc_raw(s, n)?;
                }
                cur = s + n;
            }
        }
        // Free space: what no extent, bad block or metadata holds.
        self.space.free = Default::default();
        let mut cur = self.geo.data_start;
        let mut taken: Vec<(u64, u64)> = owned
            .iter()
            .chain(self.space.bad.iter())
            .chain(self.space.meta.iter().map(|(&s, &(l, _))| (s, l)))
            .collect();
        taken.sort_unstable();
        for (s, l) in taken.into_iter().chain(core::iter::once((self.geo.data_end(), 0))) {
            if s > cur {
                self.space.free.insert(cur, s - cur)?;
            }
            cur = cur.max(s + l);
        }
        Ok(())
    }
}
