//! [`State::verify`]: the cross-structure invariants (fsck and mount).

use alloc::vec::Vec;

use super::{FileKind, State, ROOT_INO};
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::MAX_EXTENT;

impl State {
    /// Cross-checks every invariant between the structures: extent maps vs
    /// reverse map vs reference counts vs free and bad sets, and the tree.
    pub fn verify(&self) -> Result<()> {
        let g = &self.geo;
        // 1. Extent maps, collected as physical intervals.
        let mut derived: Vec<(u64, u64, u64, u64)> = Vec::new(); // (p, ino, f, len)
        derived.try_reserve(self.space.rmap.len()).map_err(|_| FsError::NoMemory)?;
        for (&ino, i) in &self.inodes {
            if ino >= self.next_ino || (i.kind == FileKind::Dir && (!i.extents.is_empty() || i.size != 0)) {
                return corrupt(Corruption::Inode);
            }
            if i.kind == FileKind::File && !i.entries.is_empty() {
                return corrupt(Corruption::Inode);
            }
            let mut prev_end = 0;
            for (&f, e) in &i.extents {
                if e.len == 0 || e.len > MAX_EXTENT || f < prev_end || !g.in_data(e.pblk, e.len) {
                    return corrupt(Corruption::Inode);
                }
                prev_end = f.checked_add(e.len).ok_or(FsError::Corrupt(Corruption::Inode))?;
                derived.push((e.pblk, ino, f, e.len));
            }
        }
        // 2. Reverse map == extents, record for record.
        derived.sort_unstable();
        if derived.len() != self.space.rmap.len()
            || !derived.iter().zip(self.space.rmap.iter()).all(|(a, (k, &l))| (a.0, a.1, a.2) == *k && a.3 == l)
        {
            return corrupt(Corruption::Space);
        }
        // 3. Reference counts: sweep the physical intervals.
        let mut ev: Vec<(u64, i64)> = Vec::new();
        ev.try_reserve_exact(derived.len() * 2).map_err(|_| FsError::NoMemory)?;
        for &(p, _, _, l) in &derived {
            ev.push((p, 1));
            ev.push((p + l, -1));
        }
        ev.sort_unstable();
        let mut owned: Vec<(u64, u64)> = Vec::new(); // merged owned intervals
        let mut shared: Vec<(u64, u64, u32)> = Vec::new(); // canonical count >= 2
        let mut depth: i64 = 0;
        let mut at = 0u64;
        for (x, dlt) in ev {
            if x > at && depth > 0 {
                push_merge(&mut owned, at, x);
                if depth >= 2 {
                    push_count(&mut shared, at, x, depth as u32);
                }
            }
            depth += dlt;
            at = x;
        }
        let mut stored: Vec<(u64, u64, u32)> = Vec::new();
        for (&s, &(l, c)) in &self.space.refc {
            push_count(&mut stored, s, s + l, c);
        }
        if stored != shared {
            return corrupt(Corruption::Space);
        }
        // 4. Free, owned and bad: free is disjoint from both; together they
        //    cover the data region.
        let free: Vec<(u64, u64)> = self.space.free.iter().map(|(s, l)| (s, s + l)).collect();
        let bad: Vec<(u64, u64)> = self.space.bad.iter().map(|(s, l)| (s, s + l)).collect();
        let meta: Vec<(u64, u64)> = self.space.meta.iter().map(|(&s, &(l, _))| (s, s + l)).collect();
        if meta.windows(2).any(|w| w[0].1 > w[1].0) || meta.iter().any(|&(s, e)| !g.in_data(s, e - s)) {
            return corrupt(Corruption::Space);
        }
        if intersects(&free, &owned) || intersects(&free, &bad) || intersects(&free, &meta) || intersects(&meta, &owned)
        {
            return corrupt(Corruption::Space);
        }
        let mut ob: Vec<(u64, u64)> = Vec::new();
        let mut all: Vec<(u64, u64)> = owned.iter().chain(bad.iter()).chain(meta.iter()).copied().collect();
        all.sort_unstable();
        for (s, e) in all {
            push_merge(&mut ob, s, e);
        }
        let covered: u64 = ob.iter().map(|&(s, e)| e - s).sum::<u64>() + self.space.free.total();
        if covered != g.data_blocks {
            return corrupt(Corruption::Space);
        }
        // 5. The size counters.
        let (dirents, names) = self
            .inodes
            .values()
            .flat_map(|i| i.entries.keys())
            .fold((0u64, 0u64), |(n, b), k| (n + 1, b + k.len() as u64));
        if (dirents, names) != (self.dirents, self.name_bytes) {
            return corrupt(Corruption::Tree);
        }
        // 6. Tree: every inode reachable from the root exactly as linked.
        let root = self.inode(ROOT_INO).map_err(|_| FsError::Corrupt(Corruption::Tree))?;
        if root.links != 0 || root.kind != FileKind::Dir {
            return corrupt(Corruption::Tree);
        }
        let mut seen = 0usize;
        let mut stack = alloc::vec![ROOT_INO];
        let mut visited_dirs = 0usize;
        while let Some(d) = stack.pop() {
            visited_dirs += 1;
            if visited_dirs > self.inodes.len() {
                return corrupt(Corruption::Tree);
            }
            let Some(di) = self.inodes.get(&d) else {
                return corrupt(Corruption::Tree);
            };
            let mut subdirs = 0;
            for &c in di.entries.values() {
                let Some(ci) = self.inodes.get(&c) else {
                    return corrupt(Corruption::Tree);
                };
                if ci.kind == FileKind::Dir {
                    if ci.parent != d || ci.links != 1 {
                        return corrupt(Corruption::Tree);
                    }
                    subdirs += 1;
                    stack.push(c);
                } else {
                    seen += 1;
                }
            }
            if subdirs != di.subdirs {
                return corrupt(Corruption::Tree);
            }
        }
        // Files may have several links; count distinct reachable inodes.
        // A file with no link is an orphan (unnamed while written, or
        // unlinked while open): valid, deleted by the next read-write mount.
        let files = self.inodes.values().filter(|i| i.kind == FileKind::File).count();
        let linked: usize = self.inodes.values().filter(|i| i.kind == FileKind::File).map(|i| i.links as usize).sum();
        if visited_dirs + files != self.inodes.len() || linked != seen {
            return corrupt(Corruption::Tree);
        }
        Ok(())
    }
}

fn push_merge(v: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    match v.last_mut() {
        Some(last) if s <= last.1 => last.1 = last.1.max(e),
        _ => v.push((s, e)),
    }
}

fn push_count(v: &mut Vec<(u64, u64, u32)>, s: u64, e: u64, c: u32) {
    match v.last_mut() {
        Some(last) if last.1 == s && last.2 == c => last.1 = e,
        _ => v.push((s, e, c)),
    }
}

/// Do two sorted lists of disjoint half-open intervals intersect?
fn intersects(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].1 <= b[j].0 {
            i += 1;
        } else if b[j].1 <= a[i].0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}
