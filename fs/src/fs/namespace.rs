//! Names: lookup, path resolution, create, mkdir, unlink, rmdir, rename,
//! readdir, stat; holds on open files (unlinked-but-open files).

use alloc::vec::Vec;

use super::FileSystem;
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{check_name, FileKind, Ino, Mutation, ROOT_INO};

/// `stat` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Link count (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Mapped blocks (shared blocks count for every owner).
    pub blocks: u64,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name.
    pub name: Vec<u8>,
    /// Inode.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
}

impl<P: Pmem> FileSystem<P> {
    /// The root directory.
    pub fn root(&self) -> Ino {
        ROOT_INO
    }

    /// Looks `name` up in directory `dir`.
    pub fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino> {
        check_name(name)?;
        self.dir(dir)?.entries.get(name).copied().ok_or(FsError::NotFound)
    }

    /// The directory that contains directory `dir` (the root's is the root):
    /// what `..` names.
    pub fn parent(&self, dir: Ino) -> Result<Ino> {
        let d = self.dir(dir)?;
        Ok(if dir == ROOT_INO { ROOT_INO } else { d.parent })
    }

    /// The name of `ino` in directory `dir` (a scan of the directory; for
    /// `getcwd`, which climbs one directory at a time).
    pub fn name_in(&self, dir: Ino, ino: Ino) -> Result<Vec<u8>> {
        let d = self.dir(dir)?;
        d.entries.iter().find(|&(_, &i)| i == ino).map(|(n, _)| n.to_vec()).ok_or(FsError::NotFound)
    }

    /// Resolves an absolute or root-relative path ("/a/b").
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            ino = self.lookup(ino, c.as_bytes())?;
        }
        Ok(ino)
    }

    /// Splits a path into (parent directory inode, last name).
    pub fn resolve_parent<'p>(&self, path: &'p str) -> Result<(Ino, &'p str)> {
        let t = path.trim_end_matches('/');
        let (dir, name) = t.rsplit_once('/').unwrap_or(("", t));
        if name.is_empty() {
            return Err(FsError::Invalid);
        }
        Ok((self.resolve(dir)?, name))
    }

    /// Opens `path` as a regular file, creating it if asked.
    pub fn open(&mut self, path: &str, create: bool) -> Result<Ino> {
        let (dir, name) = self.resolve_parent(path)?;
        match self.lookup(dir, name.as_bytes()) {
            Ok(ino) => {
                self.file(ino)?;
                Ok(ino)
            }
            Err(FsError::NotFound) if create => self.create(dir, name.as_bytes()),
            Err(e) => Err(e),
        }
    }

    /// `stat`.
    pub fn stat(&self, ino: Ino) -> Result<Stat> {
        let i = self.st.inode(ino)?;
        Ok(Stat {
            ino,
            kind: i.kind,
            size: i.size,
            nlink: if i.kind == FileKind::Dir { 2 + i.subdirs } else { i.links },
            blocks: i.extents.values().map(|e| e.len).sum(),
        })
    }

    /// Up to `max` entries of `dir` whose names sort after `after`.
    pub fn readdir(&self, dir: Ino, after: Option<&[u8]>, max: usize) -> Result<Vec<DirEntry>> {
        use core::ops::Bound;
        let d = self.dir(dir)?;
        let lo = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(d.entries
            .range::<[u8], _>((lo, Bound::Unbounded))
            .take(max)
            .map(|(n, &ino)| DirEntry {
                name: n.to_vec(),
                ino,
                kind: self.st.inodes.get(&ino).map_or(FileKind::File, |i| i.kind),
            })
            .collect())
    }

    pub(super) fn new_inode(&mut self, dir: Ino, name: &[u8], kind: FileKind) -> Result<Ino> {
        check_name(name)?;
        if self.dir(dir)?.entries.contains_key(name) {
            return Err(FsError::Exists);
        }
        self.begin()?;
        // Inode, directory entry and name in the next checkpoint.
        self.meta_room(25 + 18 + name.len() as u64)?;
        let ino = self.st.next_ino;
        self.push(Mutation::InodeAlloc { ino, kind })?;
        self.push(Mutation::DirAdd { dir, ino, name: name.to_vec() })?;
        self.commit()?;
        Ok(ino)
    }

    /// Deletes every orphan (a file no directory names, left by a crash
    /// while it was being written: see [`FileSystem::create_unnamed`]) in
    /// one transaction; returns how many.
    pub(super) fn delete_orphans(&mut self) -> Result<u64> {
        let orphans: Vec<Ino> = self
            .st
            .inodes
            .iter()
            .filter(|&(n, i)| i.kind == FileKind::File && i.links == 0 && !self.held.contains(n))
            .map(|(&n, _)| n)
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        self.begin()?;
        self.shrinking();
        for &ino in &orphans {
            self.drop_link(ino)?;
        }
        self.commit()?;
        Ok(orphans.len() as u64)
    }

    /// Creates a regular file that no directory names yet (Linux
    /// `O_TMPFILE`): write it, then [`FileSystem::link_unnamed`] gives it a
    /// name atomically, or [`FileSystem::delete_unnamed`] drops it. A crash
    /// before the link leaves an orphan, deleted at the next read-write
    /// mount: a half-written file never appears.
    pub fn create_unnamed(&mut self) -> Result<Ino> {
        self.begin()?;
        self.meta_room(25)?;
        let ino = self.st.next_ino;
        self.push(Mutation::InodeAlloc { ino, kind: FileKind::File })?;
        self.commit()?;
        Ok(ino)
    }

    /// Names the unnamed file `ino` `name` in `dir`, replacing a regular
    /// file of that name (atomically, like `rename`).
    pub fn link_unnamed(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        if self.file(ino)?.links != 0 {
            return Err(FsError::Invalid);
        }
        let target = self.dir(dir)?.entries.get(name).copied();
        if let Some(t) = target {
            self.file(t)?;
        }
        self.begin()?;
        if target.is_some() {
            self.shrinking();
        } else {
            self.meta_room(18 + name.len() as u64)?;
        }
        if let Some(t) = target {
            self.push(Mutation::DirRemove { dir, name: name.to_vec() })?;
            self.drop_link(t)?;
        }
        self.push(Mutation::DirAdd { dir, ino, name: name.to_vec() })?;
        self.commit()
    }

    /// Deletes the unnamed file `ino` and its data.
    pub fn delete_unnamed(&mut self, ino: Ino) -> Result<()> {
        if self.file(ino)?.links != 0 {
            return Err(FsError::Invalid);
        }
        self.begin()?;
        self.shrinking();
        self.drop_link(ino)?;
        self.commit()
    }

    /// Creates an empty regular file.
    pub fn create(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        self.new_inode(dir, name, FileKind::File)
    }

    /// Creates an empty directory.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        self.new_inode(dir, name, FileKind::Dir)
    }

    /// Holds file `ino` (the kernel does while a process has it open or
    /// mapped): while held, removing its last name (unlink, rename over it)
    /// leaves it an orphan that keeps its data, deleted when
    /// [`FileSystem::release`] ends the hold, or by the next read-write
    /// mount after a crash. This is Linux's unlinked-but-open file. Holds
    /// live in memory only; holding a held file again does nothing.
    pub fn hold(&mut self, ino: Ino) -> Result<()> {
        self.file(ino)?;
        self.held.insert(ino);
        Ok(())
    }

    /// Ends the hold on `ino`; deletes the file if no name is left (not on
    /// a read-only file system: the next read-write mount does). Returns
    /// whether it deleted the file.
    pub fn release(&mut self, ino: Ino) -> Result<bool> {
        if !self.held.remove(&ino) {
            return Ok(false);
        }
        match self.st.inodes.get(&ino) {
            Some(i) if i.kind == FileKind::File && i.links == 0 && !self.ro => {
                self.delete_unnamed(ino)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether `ino` is held ([`FileSystem::hold`]).
    pub fn is_held(&self, ino: Ino) -> bool {
        self.held.contains(&ino)
    }

    /// Pushes the mutations that drop one link of `ino` (already removed
    /// from its directory) and free it when none is left and nobody holds
    /// it.
    pub(super) fn drop_link(&mut self, ino: Ino) -> Result<()> {
        let i = self.st.inode(ino)?;
        if i.links == 0 && !self.held.contains(&ino) {
            if !i.extents.is_empty() {
                self.push(Mutation::Unmap { ino, fblk: 0, len: MAX_FILE_BLOCKS })?;
            }
            self.push(Mutation::InodeFree { ino })?;
        }
        Ok(())
    }

    /// Removes a file name (and the file with its last name).
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        self.file(ino)?;
        self.begin()?;
        self.shrinking();
        self.push(Mutation::DirRemove { dir, name: name.to_vec() })?;
        self.drop_link(ino)?;
        self.commit()
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.begin()?;
        self.shrinking();
        self.push(Mutation::DirRemove { dir, name: name.to_vec() })?;
        self.push(Mutation::InodeFree { ino })?;
        self.commit()
    }

    /// Atomically renames, replacing an existing target (POSIX rename).
    pub fn rename(&mut self, sdir: Ino, sname: &[u8], ddir: Ino, dname: &[u8]) -> Result<()> {
        let ino = self.lookup(sdir, sname)?;
        check_name(dname)?;
        self.dir(ddir)?;
        let is_dir = self.st.inode(ino)?.kind == FileKind::Dir;
        if is_dir && self.st.is_ancestor(ino, ddir) {
            return Err(FsError::Invalid);
        }
        let target = self.dir(ddir)?.entries.get(dname).copied();
        if let Some(t) = target {
            if t == ino {
                return Ok(());
            }
            let ti = self.st.inode(t)?;
            match (is_dir, ti.kind) {
                (true, FileKind::File) => return Err(FsError::NotDir),
                (false, FileKind::Dir) => return Err(FsError::IsDir),
                (true, FileKind::Dir) if !ti.entries.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        self.begin()?;
        if target.is_some() || dname.len() <= sname.len() {
            // Replacing deletes; a name no longer than the old one does not
            // grow the metadata.
            self.shrinking();
        }
        if let Some(t) = target {
            self.push(Mutation::DirRemove { dir: ddir, name: dname.to_vec() })?;
            self.drop_link(t)?;
        }
        self.push(Mutation::DirRemove { dir: sdir, name: sname.to_vec() })?;
        self.push(Mutation::DirAdd { dir: ddir, ino, name: dname.to_vec() })?;
        self.commit()
    }
}
