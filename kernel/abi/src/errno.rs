//! Error numbers and the `-errno` return convention.

use core::fmt;

use linux_raw_sys::errno as e;

/// A Linux error number (`EFAULT`, `ENOENT`, ...). A system call that fails
/// returns `-errno` in `RAX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub u32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(e::$name);
            )*

            /// The symbolic name (`"EFAULT"`), or `None` for a number this
            /// table does not list.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(e::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EBUSY,
    EEXIST,
    EXDEV,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENFILE,
    EMFILE,
    ENOTTY,
    ETXTBSY,
    EFBIG,
    ENOSPC,
    ESPIPE,
    EROFS,
    EMLINK,
    EPIPE,
    ERANGE,
    EDEADLK,
    ENAMETOOLONG,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    ENODATA,
    EOVERFLOW,
    EOPNOTSUPP,
    ETIMEDOUT,
    EHWPOISON,
    EBADR,
);

impl Errno {
    /// `ENOTSUP`: the same number as `EOPNOTSUPP` on Linux.
    pub const ENOTSUP: Errno = Errno::EOPNOTSUPP;

    /// Kernel-internal: the system call was interrupted by a signal and is
    /// restarted if the handler has `SA_RESTART` (or if no handler runs);
    /// otherwise the process sees EINTR. Never returned to a process.
    pub const ERESTARTSYS: Errno = Errno(512);
    /// Kernel-internal: restart the system call whatever happens.
    pub const ERESTARTNOINTR: Errno = Errno(513);
    /// Kernel-internal: EINTR if a handler runs, restart otherwise.
    pub const ERESTARTNOHAND: Errno = Errno(514);

    /// Whether this is one of the kernel-internal restart codes, which the
    /// return to user mode turns into EINTR or a restart.
    pub fn is_restart(self) -> bool {
        matches!(self, Errno::ERESTARTSYS | Errno::ERESTARTNOINTR | Errno::ERESTARTNOHAND)
    }

    /// The value a failing system call returns in `RAX`.
    pub fn as_return(self) -> u64 {
        (-i64::from(self.0)) as u64
    }

    /// The errno encoded in a system-call return value, if it is one
    /// (Linux: values in `-4095..=-1`).
    pub fn from_return(rax: u64) -> Option<Errno> {
        let v = rax as i64;
        (-4095..=-1).contains(&v).then(|| Errno((-v) as u32))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_convention_round_trips() {
        assert_eq!(Errno::EFAULT.as_return(), (-14i64) as u64);
        assert_eq!(Errno::from_return(Errno::ENOSYS.as_return()), Some(Errno::ENOSYS));
        assert_eq!(Errno::from_return(0), None);
        assert_eq!(Errno::from_return(0x7fff_0000), None);
        assert_eq!(Errno::from_return((-4096i64) as u64), None);
    }

    #[test]
    fn names() {
        assert_eq!(Errno::EHWPOISON.to_string(), "EHWPOISON");
        assert_eq!(Errno(9999).to_string(), "errno 9999");
        // EOPNOTSUPP and ENOTSUP are the same number on Linux.
        assert_eq!(Errno::EOPNOTSUPP, Errno::ENOTSUP);
    }
}
