//! The file system mounted on the pmem driver's device
//! (`fsdax_drivers::pmem::PmemDevice`) over in-memory media: the device's
//! poison rules (listed poison stops loads and stores, recovery writes
//! clear it) as the file system sees them.

use std::sync::Mutex;

use fsdax_drivers::pmem::{DeviceLock, DeviceState, PmemDevice, PmemMedia};
use fsdax_fs::{FileSystem, FsError, MkfsOptions};

/// Byte-vector media: every copy succeeds (poison comes from the device's
/// list, as after a machine check).
#[derive(Debug)]
struct VecMedia(Mutex<Vec<u8>>);

impl PmemMedia for VecMedia {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn copy_mc(&self, offset: u64, dst: &mut [u8]) -> usize {
        let o = offset as usize;
        dst.copy_from_slice(&self.0.lock().unwrap()[o..o + dst.len()]);
        0
    }
    fn copy_flush(&self, offset: u64, src: &[u8]) {
        let o = offset as usize;
        self.0.lock().unwrap()[o..o + src.len()].copy_from_slice(src);
    }
    fn zero_flush(&self, offset: u64, len: u64) {
        let o = offset as usize;
        self.0.lock().unwrap()[o..o + len as usize].fill(0);
    }
    fn flush(&self, _offset: u64, _len: u64) {}
    fn fence(&self) {}
}

#[derive(Debug)]
struct StdLock<T>(Mutex<T>);

impl<T: Send> DeviceLock<T> for StdLock<T> {
    fn new(value: T) -> Self {
        StdLock(Mutex::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

type Dev = PmemDevice<VecMedia, StdLock<DeviceState>>;

fn device(mib: usize) -> Dev {
    PmemDevice::new("pmem0", 0x1_0000_0000, VecMedia(Mutex::new(vec![0xa5; mib << 20])))
}

#[test]
fn file_system_mounts_on_the_device() {
    let d = device(8);
    let opts = MkfsOptions { uuid: [3; 16], ..Default::default() };
    let mut fs = FileSystem::mkfs(&d, opts).unwrap();
    let root = fs.root();
    let f = fs.create(root, b"f").unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(fs.write(f, 0, &data).unwrap(), data.len());
    fs.unmount().unwrap();
    let fs = FileSystem::mount(&d).unwrap();
    let f = fs.resolve("/f").unwrap();
    let mut got = vec![0u8; data.len()];
    assert_eq!(fs.read(f, 0, &mut got).unwrap(), data.len());
    assert_eq!(got, data);
    fs.fsck().unwrap();
    // Poison under the file's second block: a read returns the bytes before
    // it, the next read fails at the device offset; a recovery write of the
    // page makes it readable again.
    let b = fs.bmap(f, 4096).unwrap();
    let phys = b.phys.unwrap() + (4096 - b.file_offset);
    d.record_poison(phys + 8, 1).unwrap();
    assert_eq!(fs.read(f, 0, &mut got), Ok(4096 + 8));
    assert_eq!(got[..4096 + 8], data[..4096 + 8]);
    assert_eq!(fs.read(f, 4096 + 8, &mut got), Err(FsError::Poisoned { offset: phys + 8 }));
    d.recovery_write(phys, &data[4096..8192]).unwrap();
    assert_eq!(fs.read(f, 0, &mut got).unwrap(), data.len());
    assert_eq!(got, data);
}

#[test]
fn a_write_into_listed_poison_fails_instead_of_being_skipped() {
    let d = device(8);
    let mut fs = FileSystem::mkfs(&d, MkfsOptions::default()).unwrap();
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 8192]).unwrap();
    let b = fs.bmap(f, 0).unwrap();
    let bad = b.phys.unwrap() + 4096 + 64;
    d.record_poison(bad, 64).unwrap();
    let refused = d.stats().refused_writes;
    // A write into part of the poisoned block stops before the poison (a
    // short count); the next one, at the poison, fails.
    assert_eq!(fs.write(f, 0, &[2u8; 4096 + 200]), Ok(4096 + 64));
    assert_eq!(fs.write(f, 4096 + 64, &[2u8; 100]), Err(FsError::Poisoned { offset: bad }));
    assert!(d.stats().refused_writes > refused, "the device refused the store");
    assert_eq!(fs.stat(f).unwrap().size, 8192);
    fs.fsck().unwrap();
    // A write of the whole block is a recovery write: it clears the poison.
    let recovered = d.stats().recovery_writes;
    assert_eq!(fs.write(f, 0, &[3u8; 8192]), Ok(8192));
    assert_eq!(d.stats().recovery_writes, recovered + 1);
    assert!(!d.is_poisoned(bad, 64));
    let mut back = vec![0u8; 8192];
    assert_eq!(fs.read(f, 0, &mut back), Ok(8192));
    assert!(back.iter().all(|&b| b == 3));
}

#[test]
fn poison_in_the_log_is_relocated_and_every_acknowledged_write_survives() {
    let d = device(8);
    let fs = FileSystem::mkfs(&d, MkfsOptions::default()).unwrap();
    fs.unmount().unwrap();
    let mut fs = FileSystem::mount(&d).unwrap();
    // A machine check in the log area, as the memory-failure path records
    // it (the device learns it; the file system finds it when it writes).
    let log = fs.log_status().log;
    d.record_poison(log[0].pblk * 4096, 64).unwrap();
    d.record_poison(log[1].pblk * 4096 + 4096, 64).unwrap();
    for i in 0..6 {
        let name = format!("w{i}");
        let f = fs.create(fs.root(), name.as_bytes()).unwrap();
        assert_eq!(fs.write(f, 0, name.as_bytes()), Ok(2));
    }
    assert!(!fs.is_read_only());
    assert!(fs.mount_info().relocations >= 1);
    assert!(fs.fsck().unwrap().is_clean());
    // What the media hold is what was acknowledged: all six, after a crash.
    drop(fs);
    let fs = FileSystem::mount(&d).unwrap();
    assert!(!fs.is_read_only());
    for i in 0..6 {
        let name = format!("w{i}");
        let f = fs.resolve(&format!("/{name}")).unwrap();
        let mut b = [0u8; 2];
        assert_eq!(fs.read(f, 0, &mut b), Ok(2));
        assert_eq!(&b, name.as_bytes());
    }
}
