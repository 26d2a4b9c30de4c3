//! In-memory inodes: one [`KInode`] per regular file that a process has
//! open (and, with DAX mappings, mapped), in a table keyed by inode number.
//!
//! Creating one holds the file in the file system
//! ([`fsdax_fs::FileSystem::hold`]); dropping the last reference ends the
//! hold ([`fsdax_fs::FileSystem::release`]), which deletes the file if its
//! last name went while it was open (Linux's unlinked-but-open file: the
//! data lives until the last close; a crash leaves an orphan that the next
//! read-write mount deletes).
//!
//! Both the creation ([`get`]) and the last drop take the file system's
//! write lock, then the table's spin lock (a leaf), so they are ordered: a
//! new open of a file whose last reference is being dropped either finds
//! the live entry or makes a new one that keeps the hold. So an `Arc` of a
//! `KInode` (or of an open file that holds one) must never be dropped while
//! the file system's lock or anything after it in the lock order is held
//! (a descriptor table, a process's memory): the descriptor table hands
//! back what it closes for the caller to drop outside its lock.
//!
//! What DAX mappings add (`docs/dax.md`): the mapping lock (faults
//! shared; what moves or frees the file's blocks exclusive), who maps the
//! file where ([`KInode::mappers`], every live mapping, recorded at `mmap`
//! and forgotten at `munmap`, `execve` and exit), and the pages mapped
//! writable since the last flush ([`KInode::dirty`]). A mapping holds its
//! in-memory inode (the area's backing), so a mapped file stays in the
//! table after its last descriptor closes.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use fsdax_fs::{FsError, Ino};
use fsdax_hal::sync::IrqMutex;
use fsdax_mm::dirty::DirtyPages;
use fsdax_mm::mappers::Mappers;

use crate::fsys::{self, KernelFs};
use crate::process::vm::SpaceId;
use crate::sync::{Mutex, RwLock};

/// A regular file of the mounted file system, in memory.
#[derive(Debug)]
pub struct KInode {
    ino: Ino,
    /// The mount it belongs to ([`fsys::generation`]).
    mount: u64,
    /// The mapping lock (Linux `invalidate_lock`, XFS `MMAPLOCK`): DAX
    /// page faults take it shared; what frees or moves the blocks under a
    /// file range (truncate, punch hole, zero range, reflink and dedupe
    /// into the file or from it, a write that must unshare blocks) takes
    /// it exclusive. Taken before the file system's lock.
    pub mapping_lock: RwLock<()>,
    /// Every live mapping of the file: which address space maps which file
    /// range at which virtual address. Taken inside the mapping lock, the
    /// file system's lock and the dirty pages' lock; only page-table locks
    /// inside it.
    pub mappers: Mutex<Mappers<SpaceId>>,
    /// The pages mapped writable since the last flush (`fsync`, `msync`):
    /// a write fault marks and installs the writable entry under this lock,
    /// a flush takes the marks and write-protects every mapping of them
    /// under it, so no store escapes the next flush.
    pub dirty: Mutex<DirtyPages>,
}

static TABLE: IrqMutex<BTreeMap<Ino, Weak<KInode>>> = IrqMutex::new(BTreeMap::new());

impl KInode {
    /// The inode number.
    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// Whether it belongs to the current mount (call with the file
    /// system's lock held, which keeps the mount from changing): EIO if
    /// not (the file system was unmounted under it, as by a device
    /// removal).
    pub fn check_mount(&self) -> Result<(), fsdax_abi::Errno> {
        if self.mount == fsys::generation() {
            Ok(())
        } else {
            Err(fsdax_abi::Errno::EIO)
        }
    }
}

/// The in-memory inode of regular file `ino` of `fs` (the mounted file
/// system, whose write lock the caller holds): the existing one, or a new
/// one that holds the file.
pub fn get(fs: &mut KernelFs, ino: Ino) -> Result<Arc<KInode>, FsError> {
    let mount = fsys::generation();
    let found = TABLE.lock().get(&ino).and_then(Weak::upgrade);
    if let Some(k) = found.filter(|k| k.mount == mount) {
        return Ok(k);
    }
    fs.hold(ino)?;
    let k = Arc::new(KInode {
        ino,
        mount,
        mapping_lock: RwLock::new(()),
        mappers: Mutex::new(Mappers::default()),
        dirty: Mutex::new(DirtyPages::default()),
    });
    TABLE.lock().insert(ino, Arc::downgrade(&k));
    Ok(k)
}

/// The live in-memory inode of `ino` on the current mount, if a process
/// has the file open or mapped. Drop the result outside every lock (it may
/// be the last reference).
pub fn lookup(ino: Ino) -> Option<Arc<KInode>> {
    let mount = fsys::generation();
    // Upgraded under the table's lock, judged (and maybe dropped) outside it.
    let k = TABLE.lock().get(&ino).and_then(Weak::upgrade);
    k.filter(|k| k.mount == mount)
}

/// Every live in-memory inode (`sync`). Drop them outside every lock.
pub fn all() -> Vec<Arc<KInode>> {
    TABLE.lock().values().filter_map(Weak::upgrade).collect()
}

/// How many files are open (in-memory inodes alive).
pub fn open_count() -> usize {
    TABLE.lock().values().filter(|w| w.strong_count() > 0).count()
}

impl Drop for KInode {
    fn drop(&mut self) {
        let (ino, mount) = (self.ino, self.mount);
        // Removes the table's entry if it is still this (dead) inode's.
        let unlist = || {
            let mut t = TABLE.lock();
            let dead = t.get(&ino).is_some_and(|w| w.strong_count() == 0);
            if dead {
                t.remove(&ino);
            }
            dead
        };
        let released = fsys::with_fs(|fs| {
            if !unlist() || fsys::generation() != mount {
                return Ok(false);
            }
            fs.release(ino)
        });
        match released {
            None => {
                unlist();
            }
            Some(Err(e)) => crate::warn!("fs: deleting unlinked inode {ino} at its last close: {e}"),
            Some(Ok(_)) => {}
        }
    }
}

mod tests {
    use alloc::sync::Arc;

    use fsdax_drivers::pmem::device::{Holder, MfFlags};
    use fsdax_fs::{FileSystem, MkfsOptions};
    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure};

    use super::*;
    use crate::fsys::{with_fs, with_fs_read};

    fn fresh_mount() -> Result<(), Failure> {
        let d = crate::pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        let fs = FileSystem::mkfs(d, MkfsOptions::default()).map_err(|_| kfail!("mkfs"))?;
        fs.unmount().map_err(|_| kfail!("unmount after mkfs"))?;
        fsys::mount(d).map_err(|_| kfail!("mount"))
    }

    ktest!(an_unlinked_open_file_lives_until_its_last_inode_reference_goes, {
        fresh_mount()?;
        // In-memory inodes are made inside the file system's lock but
        // dropped outside it (the last drop takes the lock).
        let made = with_fs(|fs| {
            let root = fs.root();
            let ino = fs.create(root, b"open")?;
            fs.write(ino, 0, &[7; 3 * 4096])?;
            let free = fs.statfs().free_blocks;
            get(fs, ino).map(|k| (k, free))
        });
        let (k, free) = made.ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("create, write, inode"))?;
        let ino = k.ino();
        // A second open shares the in-memory inode.
        let again = with_fs(|fs| get(fs, ino)).ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("inode again"))?;
        kassert!(Arc::ptr_eq(&k, &again), "two in-memory inodes for one file");
        drop(again);
        let held = with_fs_read(|fs| fs.is_held(ino)).ok_or(kfail!("not mounted"))?;
        kassert!(held, "the file is not held");
        let unlinked = with_fs(|fs| {
            let root = fs.root();
            fs.unlink(root, b"open")
        });
        unlinked.ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("unlink"))?;
        // The second reference went at the end of the closure: still open.
        kassert_eq!(open_count(), 1);
        // Unmounting with a file open is refused.
        kassert!(fsys::unmount().is_err(), "unmounted with a file open");
        let st = with_fs_read(|fs| fs.stat(ino)).ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("stat"))?;
        kassert_eq!((st.nlink, st.size), (0, 3 * 4096));
        kassert_eq!(with_fs_read(|fs| fs.statfs().free_blocks).ok_or(kfail!("not mounted"))?, free);
        // The last close deletes it and gives its blocks back.
        drop(k);
        kassert_eq!(open_count(), 0);
        let gone = with_fs_read(|fs| fs.stat(ino).is_err()).ok_or(kfail!("not mounted"))?;
        kassert!(gone, "the unlinked file outlived its last close");
        kassert!(with_fs_read(|fs| fs.statfs().free_blocks).ok_or(kfail!("not mounted"))? > free);
        fsys::unmount().map_err(|_| kfail!("unmount"))?;
        Ok(())
    });

    ktest!(an_inode_from_an_earlier_mount_is_eio_not_another_file, {
        fresh_mount()?;
        let made = with_fs(|fs| {
            let root = fs.root();
            let ino = fs.create(root, b"f")?;
            get(fs, ino)
        });
        let k = made.ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("create, inode"))?;
        kassert!(with_fs_read(|_| k.check_mount()).ok_or(kfail!("not mounted"))?.is_ok());
        // A device removal takes the file system away with files open.
        let d = crate::pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        let gone = fsys::FsHolder.notify_failure(0, u64::MAX, MfFlags::PRE_REMOVE);
        kassert!(gone.is_ok(), "pre-remove failed");
        crate::pmem::release(d);
        fsys::mount(d).map_err(|_| kfail!("mount again"))?;
        kassert_eq!(with_fs_read(|_| k.check_mount()).ok_or(kfail!("not mounted"))?, Err(fsdax_abi::Errno::EIO));
        drop(k);
        kassert_eq!(open_count(), 0);
        fsys::unmount().map_err(|_| kfail!("unmount"))?;
        Ok(())
    });
}
