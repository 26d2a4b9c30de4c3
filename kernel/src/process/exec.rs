//! Loading a program from the mounted fsdax file system into a fresh
//! [`Vm`]: the ELF load plan (`fsdax_abi::load::plan`), the segments, the
//! program break, the stack and the initial stack contents
//! (`fsdax_abi::stack::build`).

use alloc::string::String;
use alloc::vec::Vec;

use fsdax_abi::load::{self, LoadError, LoadPlan};
use fsdax_abi::stack::{self, AuxInfo, StackError};
use fsdax_abi::Errno;
use fsdax_fs::{FileKind, FsError, Ino};
use fsdax_mm::vma::Prot;

use super::vm::{Vm, STACK_INITIAL, STACK_TOP};
use crate::vfs::fs_errno;

/// A program ready to run.
#[derive(Debug)]
pub struct Loaded {
    /// Its memory.
    pub vm: Vm,
    /// The entry point.
    pub entry: u64,
    /// The initial stack pointer (at `argc`).
    pub rsp: u64,
}

/// Why a program could not be loaded: the errno for the caller and a
/// sentence for the console.
#[derive(Debug, Clone)]
pub struct ExecError {
    /// What `execve` returns.
    pub errno: Errno,
    /// What went wrong, for a person.
    pub why: String,
}

impl ExecError {
    pub fn new(errno: Errno, why: impl Into<String>) -> Self {
        ExecError { errno, why: why.into() }
    }
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.why, self.errno.name().unwrap_or("?"))
    }
}

/// Reads the whole file at `path`, resolved from directory `cwd`
/// (programs are small: a few MiB).
fn read_program(cwd: Ino, path: &str) -> Result<Vec<u8>, ExecError> {
    let r = crate::fsys::with_fs_read(|fs| -> Result<Vec<u8>, ExecError> {
        let err = |e: FsError| ExecError::new(fs_errno(&e), alloc::format!("{path}: {e}"));
        let ino = crate::vfs::resolve(fs, cwd, path.as_bytes())
            .map_err(|e| ExecError::new(e, alloc::format!("{path}: {}", e.name().unwrap_or("error"))))?;
        let st = fs.stat(ino).map_err(err)?;
        if st.kind != FileKind::File {
            return Err(ExecError::new(Errno::EACCES, alloc::format!("{path}: not a regular file")));
        }
        let len = usize::try_from(st.size).map_err(|_| ExecError::new(Errno::ENOMEM, "program too large"))?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| ExecError::new(Errno::ENOMEM, alloc::format!("{path}: no memory for {len} bytes")))?;
        bytes.resize(len, 0);
        let mut done = 0;
        while done < len {
            let n = fs.read(ino, done as u64, &mut bytes[done..]).map_err(err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        bytes.truncate(done);
        Ok(bytes)
    });
    r.unwrap_or_else(|| {
        Err(ExecError::new(Errno::ENOENT, "no file system is mounted (`fs mount`; `fs mkfs` formats pmem0)"))
    })
}

fn prot(p: load::Prot) -> Prot {
    let mut r = Prot::empty();
    if p.read {
        r |= Prot::READ;
    }
    if p.write {
        r |= Prot::WRITE;
    }
    if p.exec {
        r |= Prot::EXEC;
    }
    r
}

/// 16 random bytes for `AT_RANDOM`: the CPU's generator, else a generator
/// seeded from the time-stamp counter.
pub fn random_bytes() -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let v = fsdax_hal::arch::cpu::hardware_random().unwrap_or_else(|| {
            // splitmix64 over the TSC: not cryptographic, but different
            // for every program.
            let mut z = fsdax_hal::time::rdtsc().wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        });
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn build_vm(plan: &LoadPlan, file: &[u8]) -> Result<Vm, ExecError> {
    let oom = || ExecError::new(Errno::ENOMEM, "out of memory for the program");
    let vm = Vm::new().ok_or_else(oom)?;
    for m in &plan.mappings {
        vm.map_anon(m.start, m.end - m.start, prot(m.prot))
            .map_err(|_| ExecError::new(Errno::ENOEXEC, "overlapping or invalid segments"))?;
    }
    for c in &plan.copies {
        let (off, len) = (c.file_offset as usize, c.len as usize);
        let bytes =
            file.get(off..off + len).ok_or_else(|| ExecError::new(Errno::ENOEXEC, "segment beyond the file"))?;
        vm.populate_write(c.vaddr, bytes).map_err(|_| oom())?;
    }
    vm.map_anon(STACK_TOP - STACK_INITIAL, STACK_INITIAL, Prot::READ | Prot::WRITE)
        .map_err(|_| ExecError::new(Errno::ENOEXEC, "the program overlaps the stack"))?;
    vm.write(|a, _| {
        a.brk_start = plan.brk;
        a.brk = plan.brk;
    });
    Ok(vm)
}

/// Loads the program at `path` (resolved from directory `cwd`) with
/// arguments `argv` and environment `envp` into a fresh address space.
pub fn load(cwd: Ino, path: &str, argv: &[Vec<u8>], envp: &[Vec<u8>]) -> Result<Loaded, ExecError> {
    let file = read_program(cwd, path)?;
    let plan = load::plan(&file, file.len() as u64).map_err(|e| {
        let errno = match e {
            LoadError::BadSegment { .. } | LoadError::Malformed | LoadError::NeedMore(_) => Errno::ENOEXEC,
            _ => Errno::ENOEXEC,
        };
        ExecError::new(errno, alloc::format!("{path}: {e}"))
    })?;
    let vm = build_vm(&plan, &file)?;
    drop(file);
    let info = AuxInfo {
        phdr: plan.phdr,
        phent: plan.phent,
        phnum: plan.phnum,
        entry: plan.entry,
        hwcap: fsdax_hal::arch::cpu::hwcap(),
        clktck: crate::time::TICK_HZ,
    };
    let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    let envp: Vec<&[u8]> = envp.iter().map(Vec::as_slice).collect();
    let st = stack::build(STACK_TOP, path.as_bytes(), &argv, &envp, &info, random_bytes()).map_err(|e| match e {
        StackError::TooBig => ExecError::new(Errno::E2BIG, "arguments and environment too long"),
        StackError::EmbeddedNul => ExecError::new(Errno::EINVAL, "an argument contains a NUL byte"),
    })?;
    if st.base < STACK_TOP - STACK_INITIAL {
        // Big argument lists: the stack area grows to hold them.
        let low = st.base & !4095;
        vm.map_anon(low, STACK_TOP - STACK_INITIAL - low, Prot::READ | Prot::WRITE)
            .map_err(|_| ExecError::new(Errno::E2BIG, "arguments do not fit below the stack top"))?;
        vm.write(|a, _| a.stack_low = low);
    }
    vm.populate_write(st.base, &st.bytes).map_err(|_| ExecError::new(Errno::ENOMEM, "out of memory for the stack"))?;
    Ok(Loaded { vm, entry: plan.entry, rsp: st.rsp })
}
