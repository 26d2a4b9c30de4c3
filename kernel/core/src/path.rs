//! Path resolution with Linux's rules, over any namespace.
//!
//! A path is walked one component at a time from the root (absolute paths)
//! or from a starting directory (the current directory, or the directory of
//! an `*at` call's descriptor). `.` stays, `..` climbs (the root's parent
//! is the root), and every component but the last must name a directory:
//! a path through a file is ENOTDIR. A component longer than
//! [`NAME_MAX`] is ENAMETOOLONG when the walk reaches it, a missing one
//! ENOENT. A trailing slash asks for a directory. There are no symbolic
//! links. The last component is returned undecided ([`Last`]) for the calls
//! that create, remove or rename it; [`resolve`] looks it up too.
//!
//! [`open_action`] is `open`'s decision once the path is resolved: create,
//! open (truncating or not), or which error.

use alloc::vec::Vec;

use fsdax_abi::request::OpenFlags;
use fsdax_abi::Errno;

/// The longest name of one component (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest path, with its terminating NUL (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// An inode number.
pub type Ino = u64;

/// What path resolution needs from a file system.
pub trait Namespace {
    /// The root directory.
    fn root(&self) -> Ino;
    /// The entry `name` of directory `dir`: `Ok(None)` when there is none;
    /// ENOTDIR if `dir` is not a directory, ENOENT if it no longer exists.
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, Errno>;
    /// The directory containing directory `dir` (the root's is the root).
    fn parent(&self, dir: Ino) -> Result<Ino, Errno>;
    /// Whether `ino` is a directory (ENOENT if it does not exist).
    fn is_dir(&self, ino: Ino) -> Result<bool, Errno>;
}

/// The last component of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last<'p> {
    /// A name.
    Name(&'p [u8]),
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// No component at all: the path is `/` (or only slashes).
    Root,
}

/// A path walked up to its last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent<'p> {
    /// The directory that holds the last component.
    pub dir: Ino,
    /// The last component.
    pub last: Last<'p>,
    /// The path ends in `/`: it must name a directory.
    pub trailing_slash: bool,
}

/// Checks a whole path: empty is ENOENT; one that does not fit in
/// [`PATH_MAX`] bytes with its NUL is ENAMETOOLONG.
pub fn check_path(path: &[u8]) -> Result<(), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// One step of the walk from directory `dir` through component `c`, which
/// must lead to a directory.
fn step<N: Namespace + ?Sized>(ns: &N, dir: Ino, c: &[u8]) -> Result<Ino, Errno> {
    if c.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let next = match c {
        b"." => {
            if !ns.is_dir(dir)? {
                return Err(Errno::ENOTDIR);
            }
            dir
        }
        b".." => ns.parent(dir)?,
        name => ns.lookup(dir, name)?.ok_or(Errno::ENOENT)?,
    };
    if !ns.is_dir(next)? {
        return Err(Errno::ENOTDIR);
    }
    Ok(next)
}

/// Walks every component of `path` but the last, from `start` (ignored
/// for an absolute path).
pub fn resolve_parent<'p, N: Namespace + ?Sized>(ns: &N, start: Ino, path: &'p [u8]) -> Result<Parent<'p>, Errno> {
    check_path(path)?;
    let mut dir = if path[0] == b'/' { ns.root() } else { start };
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let Some((&last, walk)) = comps.split_last() else {
        return Ok(Parent { dir: ns.root(), last: Last::Root, trailing_slash: false });
    };
    for c in walk {
        dir = step(ns, dir, c)?;
    }
    if last.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let last = match last {
        b"." => Last::Dot,
        b".." => Last::DotDot,
        name => Last::Name(name),
    };
    Ok(Parent { dir, last, trailing_slash: path.ends_with(b"/") })
}

/// What the last component of `p` names now (`Ok(None)`: nothing).
pub fn lookup_last<N: Namespace + ?Sized>(ns: &N, p: &Parent<'_>) -> Result<Option<Ino>, Errno> {
    match p.last {
        Last::Root => Ok(Some(ns.root())),
        Last::Dot => ns.is_dir(p.dir).and_then(|d| if d { Ok(Some(p.dir)) } else { Err(Errno::ENOTDIR) }),
        Last::DotDot => ns.parent(p.dir).map(Some),
        Last::Name(n) => ns.lookup(p.dir, n),
    }
}

/// Resolves a whole path to the inode it names.
pub fn resolve<N: Namespace + ?Sized>(ns: &N, start: Ino, path: &[u8]) -> Result<Ino, Errno> {
    let p = resolve_parent(ns, start, path)?;
    let ino = lookup_last(ns, &p)?.ok_or(Errno::ENOENT)?;
    if p.trailing_slash && !ns.is_dir(ino)? {
        return Err(Errno::ENOTDIR);
    }
    Ok(ino)
}

/// What `open` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAction {
    /// Create a regular file under the last name.
    Create,
    /// Open what the path names.
    Open {
        /// It is a directory.
        dir: bool,
        /// Truncate it to size 0 first (`O_TRUNC` with write access).
        truncate: bool,
    },
}

/// `open`'s decision (Linux `do_open`), given its flags, what the path
/// names (`Some(is_dir)`, or `None` when the last name does not exist) and
/// whether the path ends in `/`:
/// - `O_CREAT|O_DIRECTORY`: EINVAL (Linux since 6.4);
/// - nothing there: ENOENT without `O_CREAT`, EISDIR with a trailing
///   slash, else create;
/// - something there: EEXIST with `O_CREAT|O_EXCL`; a directory opened to
///   create, write or truncate is EISDIR; a file asked to be a directory
///   (`O_DIRECTORY`, trailing slash) is ENOTDIR.
pub fn open_action(f: &OpenFlags, found: Option<bool>, trailing_slash: bool) -> Result<OpenAction, Errno> {
    if f.create && f.directory {
        return Err(Errno::EINVAL);
    }
    let Some(is_dir) = found else {
        if !f.create {
            return Err(Errno::ENOENT);
        }
        if trailing_slash {
            return Err(Errno::EISDIR);
        }
        return Ok(OpenAction::Create);
    };
    if f.exclusive {
        return Err(Errno::EEXIST);
    }
    if is_dir {
        if f.create || f.access.writable() || f.truncate {
            return Err(Errno::EISDIR);
        }
        return Ok(OpenAction::Open { dir: true, truncate: false });
    }
    if f.directory || trailing_slash {
        return Err(Errno::ENOTDIR);
    }
    Ok(OpenAction::Open { dir: false, truncate: f.truncate })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fsdax_abi::linux::general as g;
    use fsdax_abi::request::open_flags;
    use proptest::prelude::*;

    use super::*;

    /// One node: (parent, is_dir, entries).
    type Node = (Ino, bool, BTreeMap<Vec<u8>, Ino>);

    /// A tree: ino -> node.
    #[derive(Default)]
    struct Tree {
        nodes: BTreeMap<Ino, Node>,
    }

    impl Tree {
        fn new() -> Tree {
            let mut t = Tree::default();
            t.nodes.insert(1, (1, true, BTreeMap::new()));
            t
        }
        fn add(&mut self, dir: Ino, name: &str, is_dir: bool) -> Ino {
            let ino = self.nodes.len() as u64 + 1;
            self.nodes.insert(ino, (dir, is_dir, BTreeMap::new()));
            self.nodes.get_mut(&dir).unwrap().2.insert(name.as_bytes().to_vec(), ino);
            ino
        }
    }

    impl Namespace for Tree {
        fn root(&self) -> Ino {
            1
        }
        fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
            let (_, is_dir, entries) = self.nodes.get(&dir).ok_or(Errno::ENOENT)?;
            if !is_dir {
                return Err(Errno::ENOTDIR);
            }
            Ok(entries.get(name).copied())
        }
        fn parent(&self, dir: Ino) -> Result<Ino, Errno> {
            let (p, is_dir, _) = self.nodes.get(&dir).ok_or(Errno::ENOENT)?;
            if !is_dir {
                return Err(Errno::ENOTDIR);
            }
            Ok(*p)
        }
        fn is_dir(&self, ino: Ino) -> Result<bool, Errno> {
            self.nodes.get(&ino).map(|n| n.1).ok_or(Errno::ENOENT)
        }
    }

    /// / (1), /a (2), /a/b (3), /a/file (4), /top (5)
    fn tree() -> Tree {
        let mut t = Tree::new();
        let a = t.add(1, "a", true);
        t.add(a, "b", true);
        t.add(a, "file", false);
        t.add(1, "top", false);
        t
    }

    #[test]
    fn absolute_relative_dot_and_dotdot() {
        let t = tree();
        assert_eq!(resolve(&t, 1, b"/a/b"), Ok(3));
        assert_eq!(resolve(&t, 2, b"b"), Ok(3));
        assert_eq!(resolve(&t, 3, b".."), Ok(2));
        assert_eq!(resolve(&t, 3, b"../file"), Ok(4));
        assert_eq!(resolve(&t, 3, b"../../.."), Ok(1), "the root's parent is the root");
        assert_eq!(resolve(&t, 3, b"/"), Ok(1));
        assert_eq!(resolve(&t, 3, b"//a//b//"), Ok(3));
        assert_eq!(resolve(&t, 2, b"./b/./."), Ok(3));
        assert_eq!(resolve(&t, 2, b"."), Ok(2));
        assert_eq!(resolve(&t, 3, b"/a/b/../../top"), Ok(5));
    }

    #[test]
    fn errors_in_linux_order() {
        let t = tree();
        assert_eq!(resolve(&t, 1, b""), Err(Errno::ENOENT));
        assert_eq!(resolve(&t, 1, b"/missing"), Err(Errno::ENOENT));
        assert_eq!(resolve(&t, 1, b"/missing/x"), Err(Errno::ENOENT));
        // Through a file, or a file asked to be a directory.
        assert_eq!(resolve(&t, 1, b"/a/file/x"), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&t, 1, b"/a/file/"), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&t, 1, b"/a/file/."), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&t, 1, b"/a/file/.."), Err(Errno::ENOTDIR));
        assert_eq!(resolve(&t, 1, b"/top/missing"), Err(Errno::ENOTDIR));
        // Names: 255 bytes are fine, 256 are not, wherever they are.
        let ok = "n".repeat(255);
        let long = "n".repeat(256);
        assert_eq!(resolve(&t, 1, format!("/a/{ok}").as_bytes()), Err(Errno::ENOENT));
        assert_eq!(resolve(&t, 1, format!("/a/{long}").as_bytes()), Err(Errno::ENAMETOOLONG));
        assert_eq!(resolve(&t, 1, format!("/{long}/x").as_bytes()), Err(Errno::ENAMETOOLONG));
        // A missing directory before a long name: the walk stops first.
        assert_eq!(resolve(&t, 1, format!("/missing/{long}").as_bytes()), Err(Errno::ENOENT));
        // Whole paths: 4095 bytes fit with the NUL, 4096 do not.
        let path = format!("/{}", "a/".repeat(2047));
        assert_eq!(path.len(), 4095);
        assert_ne!(resolve(&t, 1, path.as_bytes()), Err(Errno::ENAMETOOLONG));
        assert_eq!(resolve(&t, 1, format!("{path}/").as_bytes()), Err(Errno::ENAMETOOLONG));
        // A starting directory that went away.
        assert_eq!(resolve(&t, 99, b"x"), Err(Errno::ENOENT));
        assert_eq!(resolve(&t, 99, b"/a"), Ok(2), "absolute paths do not use it");
    }

    #[test]
    fn the_parent_and_last_component() {
        let t = tree();
        let p = resolve_parent(&t, 1, b"/a/new").unwrap();
        assert_eq!(p, Parent { dir: 2, last: Last::Name(b"new"), trailing_slash: false });
        let p = resolve_parent(&t, 3, b"../new/").unwrap();
        assert_eq!(p, Parent { dir: 2, last: Last::Name(b"new"), trailing_slash: true });
        assert_eq!(resolve_parent(&t, 3, b".").unwrap().last, Last::Dot);
        assert_eq!(resolve_parent(&t, 3, b"a/..").map(|p| p.last), Err(Errno::ENOENT));
        assert_eq!(
            resolve_parent(&t, 2, b"b/..").unwrap(),
            Parent { dir: 3, last: Last::DotDot, trailing_slash: false }
        );
        assert_eq!(resolve_parent(&t, 3, b"///").unwrap(), Parent { dir: 1, last: Last::Root, trailing_slash: false });
        // The last name is not looked up, but it is checked.
        assert_eq!(resolve_parent(&t, 1, format!("/a/{}", "x".repeat(256)).as_bytes()), Err(Errno::ENAMETOOLONG));
        assert_eq!(resolve_parent(&t, 1, b"/a/file/new").map(|p| p.dir), Err(Errno::ENOTDIR));
        assert_eq!(lookup_last(&t, &resolve_parent(&t, 1, b"/a/file").unwrap()), Ok(Some(4)));
        assert_eq!(lookup_last(&t, &resolve_parent(&t, 1, b"/a/none").unwrap()), Ok(None));
    }

    fn flags(f: u32) -> OpenFlags {
        open_flags(f).unwrap()
    }

    #[test]
    fn open_decisions() {
        use OpenAction::*;
        let (rd, wr, rw) = (g::O_RDONLY, g::O_WRONLY, g::O_RDWR);
        let (creat, excl, trunc, dir) = (g::O_CREAT, g::O_EXCL, g::O_TRUNC, g::O_DIRECTORY);
        // Nothing there.
        assert_eq!(open_action(&flags(rd), None, false), Err(Errno::ENOENT));
        assert_eq!(open_action(&flags(rw | creat), None, false), Ok(Create));
        assert_eq!(open_action(&flags(rw | creat | excl), None, false), Ok(Create));
        assert_eq!(open_action(&flags(rw | creat), None, true), Err(Errno::EISDIR));
        assert_eq!(open_action(&flags(rd | creat | dir), None, false), Err(Errno::EINVAL));
        // A file.
        assert_eq!(open_action(&flags(rw | creat | excl), Some(false), false), Err(Errno::EEXIST));
        assert_eq!(open_action(&flags(rw | creat), Some(false), false), Ok(Open { dir: false, truncate: false }));
        assert_eq!(open_action(&flags(wr | trunc), Some(false), false), Ok(Open { dir: false, truncate: true }));
        assert_eq!(open_action(&flags(rd | dir), Some(false), false), Err(Errno::ENOTDIR));
        assert_eq!(open_action(&flags(rd), Some(false), true), Err(Errno::ENOTDIR));
        // A directory.
        assert_eq!(open_action(&flags(rd | dir), Some(true), false), Ok(Open { dir: true, truncate: false }));
        assert_eq!(open_action(&flags(rd), Some(true), true), Ok(Open { dir: true, truncate: false }));
        assert_eq!(open_action(&flags(wr), Some(true), false), Err(Errno::EISDIR));
        assert_eq!(open_action(&flags(rw), Some(true), false), Err(Errno::EISDIR));
        assert_eq!(open_action(&flags(rd | creat), Some(true), false), Err(Errno::EISDIR));
        assert_eq!(open_action(&flags(rd | creat | excl), Some(true), false), Err(Errno::EEXIST));
        assert_eq!(open_action(&flags(g::O_PATH), Some(true), false), Ok(Open { dir: true, truncate: false }));
    }

    proptest! {
        /// Any path over any small tree resolves or fails with one of the
        /// path errors, and whatever it resolves to is what a simple
        /// reference walk finds.
        #[test]
        fn resolution_matches_a_reference_walk(
            comps in proptest::collection::vec(prop_oneof![
                Just("a"), Just("b"), Just("file"), Just("top"), Just("."), Just(".."), Just("zz"), Just("")
            ], 0..8),
            absolute in any::<bool>(),
            start in 1u64..=3,
        ) {
            let t = tree();
            let path = format!("{}{}", if absolute { "/" } else { "" }, comps.join("/"));
            let got = resolve(&t, start, path.as_bytes());
            // Reference: a plain walk over the components.
            let want = (|| {
                if path.is_empty() {
                    return Err(Errno::ENOENT);
                }
                let mut cur = if path.starts_with('/') { 1 } else { start };
                let parts: Vec<&str> = comps.iter().copied().filter(|c| !c.is_empty()).collect();
                for (i, c) in parts.iter().enumerate() {
                    let (parent, is_dir, entries) = &t.nodes[&cur];
                    if !is_dir {
                        return Err(Errno::ENOTDIR);
                    }
                    cur = match *c {
                        "." => cur,
                        ".." => *parent,
                        n => *entries.get(n.as_bytes()).ok_or(Errno::ENOENT)?,
                    };
                    let last = i + 1 == parts.len();
                    if !last && !t.nodes[&cur].1 {
                        return Err(Errno::ENOTDIR);
                    }
                }
                if path.ends_with('/') && !t.nodes[&cur].1 {
                    return Err(Errno::ENOTDIR);
                }
                Ok(cur)
            })();
            prop_assert_eq!(got, want, "path {:?} from {}", path, start);
        }
    }
}
