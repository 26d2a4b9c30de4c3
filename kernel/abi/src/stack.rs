//! The initial stack of a new program (System V x86_64 ABI, as Linux
//! builds it): `argc`, the `argv` and `envp` pointer arrays (each ending in
//! NULL), the auxiliary vector, and above them the strings, the 16 random
//! bytes of `AT_RANDOM` and the platform name. `RSP` points at `argc` and
//! is 16-byte aligned.

use alloc::vec::Vec;

/// Auxiliary-vector keys (`linux/auxvec.h`).
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
}

/// What the loader knows about the program, for the auxiliary vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuxInfo {
    pub phdr: u64,
    pub phent: u16,
    pub phnum: u16,
    pub entry: u64,
    /// CPUID.1:EDX, as Linux reports in `AT_HWCAP` on x86.
    pub hwcap: u64,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub clktck: u64,
}

/// The bytes to place at `[top - bytes.len(), top)` and the initial `RSP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialStack {
    pub bytes: Vec<u8>,
    /// Where `bytes` start (`top - bytes.len()`).
    pub base: u64,
    /// The initial stack pointer: the address of `argc`.
    pub rsp: u64,
}

/// Why the stack cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// Arguments and environment exceed [`MAX_ARG_BYTES`] (E2BIG).
    TooBig,
    /// A string contains a NUL byte.
    EmbeddedNul,
}

/// Upper bound on the total size of argument and environment strings and
/// pointers (Linux: a quarter of the stack limit, 2 MiB by default; fsdax
/// keeps a fixed 256 KiB).
pub const MAX_ARG_BYTES: usize = 256 * 1024;

/// Platform string for `AT_PLATFORM`.
pub const PLATFORM: &[u8] = b"x86_64";

/// Builds the initial stack below `top` (16-byte aligned) for `argv` and
/// `envp` (without terminating NULs: they are added), with `execfn` the
/// path the program was started from.
pub fn build(
    top: u64,
    execfn: &[u8],
    argv: &[&[u8]],
    envp: &[&[u8]],
    info: &AuxInfo,
    random: [u8; 16],
) -> Result<InitialStack, StackError> {
    let strings = core::iter::once(execfn).chain(argv.iter().copied()).chain(envp.iter().copied());
    let mut total = 0usize;
    for s in strings.clone() {
        if s.contains(&0) {
            return Err(StackError::EmbeddedNul);
        }
        total = total.saturating_add(s.len() + 1 + 8);
    }
    if total > MAX_ARG_BYTES {
        return Err(StackError::TooBig);
    }
    let top = top & !15;

    // The string area, from `top` downwards: execfn, environment, arguments,
    // platform name, random bytes.
    let area_len: usize = execfn.len()
        + 1
        + envp.iter().chain(argv).map(|s| s.len() + 1).sum::<usize>()
        + PLATFORM.len()
        + 1
        + random.len();
    let mut area = alloc::vec![0u8; area_len];
    let area_base = top - area_len as u64;
    let mut cursor = top;
    let mut place = |bytes: &[u8], nul: bool| -> u64 {
        cursor -= (bytes.len() + usize::from(nul)) as u64;
        let o = (cursor - area_base) as usize;
        area[o..o + bytes.len()].copy_from_slice(bytes);
        cursor
    };
    let execfn_addr = place(execfn, true);
    let mut env_addrs: Vec<u64> = envp.iter().rev().map(|e| place(e, true)).collect();
    env_addrs.reverse();
    let mut arg_addrs: Vec<u64> = argv.iter().rev().map(|a| place(a, true)).collect();
    arg_addrs.reverse();
    let platform_addr = place(PLATFORM, true);
    let random_addr = place(&random, false);
    debug_assert_eq!(random_addr, area_base);
    let strings_bottom = random_addr & !15;

    let auxv: [(u64, u64); 17] = [
        (at::PHDR, info.phdr),
        (at::PHENT, u64::from(info.phent)),
        (at::PHNUM, u64::from(info.phnum)),
        (at::PAGESZ, 4096),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, info.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::SECURE, 0),
        (at::HWCAP, info.hwcap),
        (at::CLKTCK, info.clktck),
        (at::PLATFORM, platform_addr),
        (at::RANDOM, random_addr),
        (at::EXECFN, execfn_addr),
    ];
    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * (auxv.len() + 1);
    let rsp = (strings_bottom - 8 * words as u64) & !15;
    let mut out: Vec<u64> = Vec::with_capacity(words);
    out.push(argv.len() as u64);
    out.extend(&arg_addrs);
    out.push(0);
    out.extend(&env_addrs);
    out.push(0);
    for (k, v) in auxv {
        out.push(k);
        out.push(v);
    }
    out.push(at::NULL);
    out.push(0);

    let base = rsp;
    let mut bytes = alloc::vec![0u8; (top - base) as usize];
    for (i, w) in out.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let area_off = (area_base - base) as usize;
    bytes[area_off..].copy_from_slice(&area);
    Ok(InitialStack { bytes, base, rsp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &InitialStack, addr: u64) -> u64 {
        let o = (addr - s.base) as usize;
        u64::from_le_bytes(s.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(s: &InitialStack, addr: u64) -> Vec<u8> {
        let o = (addr - s.base) as usize;
        s.bytes[o..].iter().take_while(|&&b| b != 0).copied().collect()
    }

    #[test]
    fn layout_is_what_a_libc_start_expects() {
        let top = 0x7fff_ffff_0000;
        let info = AuxInfo { phdr: 0x40_0040, phent: 56, phnum: 5, entry: 0x40_1000, hwcap: 0x1234, clktck: 100 };
        let s = build(top, b"/bin/hello", &[b"hello", b"a b"], &[b"HOME=/"], &info, [7; 16]).unwrap();
        assert_eq!(s.rsp % 16, 0);
        assert_eq!(s.base + s.bytes.len() as u64, top);
        assert_eq!(word(&s, s.rsp), 2);
        let argv0 = word(&s, s.rsp + 8);
        assert_eq!(cstr(&s, argv0), b"hello");
        assert_eq!(cstr(&s, word(&s, s.rsp + 16)), b"a b");
        assert_eq!(word(&s, s.rsp + 24), 0);
        assert_eq!(cstr(&s, word(&s, s.rsp + 32)), b"HOME=/");
        assert_eq!(word(&s, s.rsp + 40), 0);
        // auxv
        let mut a = s.rsp + 48;
        let mut seen = alloc::collections::BTreeMap::new();
        loop {
            let (k, v) = (word(&s, a), word(&s, a + 8));
            if k == at::NULL {
                break;
            }
            seen.insert(k, v);
            a += 16;
        }
        assert_eq!(seen[&at::PHDR], 0x40_0040);
        assert_eq!(seen[&at::PHNUM], 5);
        assert_eq!(seen[&at::PAGESZ], 4096);
        assert_eq!(seen[&at::ENTRY], 0x40_1000);
        assert_eq!(seen[&at::BASE], 0);
        assert_eq!(cstr(&s, seen[&at::PLATFORM]), b"x86_64");
        assert_eq!(cstr(&s, seen[&at::EXECFN]), b"/bin/hello");
        let r = (seen[&at::RANDOM] - s.base) as usize;
        assert_eq!(&s.bytes[r..r + 16], &[7; 16]);
    }

    #[test]
    fn limits() {
        let info = AuxInfo::default();
        let big = alloc::vec![b'x'; MAX_ARG_BYTES];
        assert_eq!(build(0x7fff_0000, b"p", &[&big], &[], &info, [0; 16]), Err(StackError::TooBig));
        assert_eq!(build(0x7fff_0000, b"p", &[b"a\0b"], &[], &info, [0; 16]), Err(StackError::EmbeddedNul));
        let empty = build(0x7fff_0000, b"p", &[], &[], &info, [0; 16]).unwrap();
        assert_eq!(word(&empty, empty.rsp), 0);
    }
}
