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
//! What DAX mappings add (see the design notes): the set of mappers, the
//! dirty pages, pins on frames under copy. The mapping lock is here now,
//! and the file calls take it as mappings will need.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};

use fsdax_fs::{FsError, Ino};
use fsdax_hal::sync::IrqMutex;

use crate::fsys::{self, KernelFs};
use crate::sync::RwLock;

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
    if let Some(k) = TABLE.lock().get(&ino).and_then(Weak::upgrade).filter(|k| k.mount == mount) {
        return Ok(k);
    }
    fs.hold(ino)?;
    let k = Arc::new(KInode { ino, mount, mapping_lock: RwLock::new(()) });
    TABLE.lock().insert(ino, Arc::downgrade(&k));
    Ok(k)
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
