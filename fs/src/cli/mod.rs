//! One command front end for the file system, shared by the kernel console
//! (`fs ls /`) and the host tool (`fsdax ls /`): it parses the command
//! words, runs them on a mounted [`FileSystem`], and writes what a person
//! reads to any [`core::fmt::Write`] sink.
//!
//! The embedder does what only it can: find the device, mount (read-only
//! unless [`Command::modifies`]), unmount, and the commands that need its
//! world (`mkfs`, `mount`, `umount` in the kernel; `mkfs`, `put`, `get` of
//! host files in the host tool). It uses [`mount_error`] and
//! [`describe_mount`] so that both speak alike.
//!
//! Output is for people: aligned columns, sizes in KiB/MiB/GiB, device
//! offsets in hex, file types in words, one verdict line for `fsck`, and
//! errors that say what to do next. Nothing is printed with `Debug`.
//!
//! ```
//! use fsdax_fs::cli::{Command, Tool};
//! use fsdax_fs::{FileSystem, MemPmem, MkfsOptions};
//!
//! let mut fs = FileSystem::mkfs(MemPmem::new(16 << 20), MkfsOptions::default()).unwrap();
//! let tool = Tool { device: "pmem0", prefix: "fs" };
//! let mut out = String::new();
//! for line in ["mkdir /d", "write /d/f hello", "ls /d"] {
//!     let words: Vec<&str> = line.split_whitespace().collect();
//!     let cmd = Command::parse(&words, &tool).expect("a shared command").unwrap();
//!     cmd.run(&mut fs, &tool, &mut out).unwrap();
//! }
//! assert!(out.contains("wrote 5 bytes to /d/f"));
//! assert!(out.lines().last().unwrap().ends_with(" f"));
//! ```

mod show;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use fsdax_pmem_api::units::{parse_size, Size};

use crate::error::FsError;
use crate::fs::FileSystem;
use crate::pmem::Pmem;
use crate::state::{FileKind, Ino};

/// Who runs the commands, for messages: the device name (`pmem0`, or the
/// image path) and how a person types a command (`fs` in the kernel
/// console, `fsdax` on the host), for hints like "`fs mkfs` formats it".
#[derive(Clone, Copy, Debug)]
pub struct Tool<'a> {
    /// The device (or image) the file system lives on.
    pub device: &'a str,
    /// The command prefix a person types.
    pub prefix: &'a str,
}

/// The shared commands: usage and one line of help each.
pub const COMMANDS: &[(&str, &str)] = &[
    ("info", "geometry, generation, log use, read-only and why"),
    ("df", "space: size, used, free, bad, free 2 MiB chunks, inodes"),
    ("ls [PATH]", "list a directory: type, inode, size, extents, shared"),
    ("stat PATH", "size, blocks, every extent with its device offset"),
    ("cat PATH", "print a file as text (the first 1 MiB)"),
    ("write PATH TEXT...", "replace a file's contents with TEXT, durably"),
    ("mkdir PATH", "make a directory"),
    ("rm PATH", "remove a file or an empty directory"),
    ("reflink SRC DST", "DST shares SRC's data, nothing copied (DST created if needed)"),
    ("rmap OFFSET [LEN]", "owners of device bytes [OFFSET, OFFSET+LEN) (default LEN 1)"),
    (
        "fsck [--repair]",
        "check every invariant and read every data block; one verdict (--repair: rewrite a clean checkpoint)",
    ),
    ("clear-bad OFFSET LEN", "take whole blocks out of the bad-block list (free ones are rewritten with zeros)"),
];

/// A parsed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Geometry and state.
    Info,
    /// Space usage.
    Df,
    /// List a directory.
    Ls {
        /// Directory (default `/`).
        path: &'a str,
    },
    /// One inode in detail.
    Stat {
        /// Path.
        path: &'a str,
    },
    /// Print a file.
    Cat {
        /// Path.
        path: &'a str,
    },
    /// Replace a file's contents with text.
    Write {
        /// Path (created if missing).
        path: &'a str,
        /// The words, joined by single spaces.
        words: &'a [&'a str],
    },
    /// Make a directory.
    Mkdir {
        /// Path.
        path: &'a str,
    },
    /// Remove a file or an empty directory.
    Rm {
        /// Path.
        path: &'a str,
    },
    /// Share a file's data.
    Reflink {
        /// Source file.
        src: &'a str,
        /// Destination (created if missing).
        dst: &'a str,
    },
    /// Owners of device bytes.
    Rmap {
        /// First device byte.
        offset: u64,
        /// Length in bytes (at least 1).
        len: u64,
    },
    /// Consistency check.
    Fsck {
        /// Rebuild a clean checkpoint from the newest consistent state first.
        repair: bool,
    },
    /// Take blocks out of the bad-block list.
    ClearBad {
        /// First device byte.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// How a command ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Done,
    /// `fsck` found problems (the verdict line says which): a tool exits
    /// with status 1.
    NotClean,
}

/// A command failed: the message says what, on what, and what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    message: String,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<fmt::Error> for CliError {
    fn from(_: fmt::Error) -> Self {
        CliError::new("the output could not be written")
    }
}

impl<'a> Command<'a> {
    /// Parses `words` (the command name first). `None` if the name is not
    /// one of [`COMMANDS`], so the embedder can try its own.
    pub fn parse(words: &'a [&'a str], tool: &Tool<'_>) -> Option<Result<Self, CliError>> {
        let (&name, args) = words.split_first()?;
        let usage = |u: &str| CliError::new(format!("usage: {} {u}", tool.prefix));
        let usage_of = |name: &str| {
            let u = COMMANDS.iter().find(|(u, _)| u.split(' ').next() == Some(name)).map_or(name, |(u, _)| u);
            usage(u)
        };
        let cmd = match (name, args) {
            ("info", []) => Ok(Command::Info),
            ("df", []) | ("df", ["-h"]) => Ok(Command::Df),
            ("ls", []) | ("ls", ["-l"]) => Ok(Command::Ls { path: "/" }),
            ("ls", [path]) | ("ls", ["-l", path]) => Ok(Command::Ls { path }),
            ("stat", [path]) => Ok(Command::Stat { path }),
            ("cat", [path]) => Ok(Command::Cat { path }),
            ("write", [path, words @ ..]) => Ok(Command::Write { path, words }),
            ("mkdir", [path]) => Ok(Command::Mkdir { path }),
            ("rm", [path]) => Ok(Command::Rm { path }),
            ("reflink", [src, dst]) => Ok(Command::Reflink { src, dst }),
            ("rmap", [off]) | ("rmap", [off, _]) => {
                let number = |s: &str| parse_size(s).map_err(|e| CliError::new(format!("rmap: {s}: {e}")));
                let offset = number(off);
                let len = args.get(1).map_or(Ok(1), |l| number(l));
                match (offset, len) {
                    (Ok(offset), Ok(len)) if len > 0 => Ok(Command::Rmap { offset, len }),
                    (Ok(_), Ok(_)) => Err(CliError::new("rmap: LEN must be at least 1")),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            ("fsck", []) => Ok(Command::Fsck { repair: false }),
            ("fsck", ["--repair"]) => Ok(Command::Fsck { repair: true }),
            ("clear-bad", [off, len]) => {
                let number = |s: &str| parse_size(s).map_err(|e| CliError::new(format!("clear-bad: {s}: {e}")));
                match (number(off), number(len)) {
                    (Ok(offset), Ok(len)) if len > 0 => Ok(Command::ClearBad { offset, len }),
                    (Ok(_), Ok(_)) => Err(CliError::new("clear-bad: LEN must be at least 1")),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            (name, _) if COMMANDS.iter().any(|(u, _)| u.split(' ').next() == Some(name)) => Err(usage_of(name)),
            _ => return None,
        };
        Some(cmd)
    }

    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Info => "info",
            Command::Df => "df",
            Command::Ls { .. } => "ls",
            Command::Stat { .. } => "stat",
            Command::Cat { .. } => "cat",
            Command::Write { .. } => "write",
            Command::Mkdir { .. } => "mkdir",
            Command::Rm { .. } => "rm",
            Command::Reflink { .. } => "reflink",
            Command::Rmap { .. } => "rmap",
            Command::Fsck { .. } => "fsck",
            Command::ClearBad { .. } => "clear-bad",
        }
    }

    /// Whether the command changes the file system (a tool mounts
    /// read-write only for these).
    pub fn modifies(&self) -> bool {
        matches!(
            self,
            Command::Write { .. }
                | Command::Mkdir { .. }
                | Command::Rm { .. }
                | Command::Reflink { .. }
                | Command::ClearBad { .. }
                | Command::Fsck { repair: true }
        )
    }

    /// Runs the command on `fs`, writing what a person reads to `out`.
    pub fn run<P: Pmem, W: fmt::Write>(
        &self,
        fs: &mut FileSystem<P>,
        tool: &Tool<'_>,
        out: &mut W,
    ) -> Result<Status, CliError> {
        let was_read_only = fs.is_read_only();
        let r = self.run_inner(fs, tool, out);
        match r {
            Err(mut e) if !was_read_only && fs.is_read_only() => {
                // This command shut the file system down: say so, and what next.
                e.message.push_str(&format!(
                    "; the file system is now read-only to protect what is on {}: unmount it, then `{} fsck`",
                    tool.device, tool.prefix
                ));
                Err(e)
            }
            r => r,
        }
    }

    fn run_inner<P: Pmem, W: fmt::Write>(
        &self,
        fs: &mut FileSystem<P>,
        tool: &Tool<'_>,
        out: &mut W,
    ) -> Result<Status, CliError> {
        let name = self.name();
        let err = |fs: &FileSystem<P>, path: &str, e: FsError| fs_error(fs, tool, name, path, e);
        match *self {
            Command::Info => show::info(fs, tool, out)?,
            Command::Df => show::df(fs, out)?,
            Command::Ls { path } => {
                let dir = fs.resolve(path).map_err(|e| err(fs, path, e))?;
                show::ls(fs, dir, out).map_err(|e| e.on(|e| err(fs, path, e)))?;
            }
            Command::Stat { path } => {
                let ino = fs.resolve(path).map_err(|e| err(fs, path, e))?;
                show::stat(fs, path, ino, out).map_err(|e| e.on(|e| err(fs, path, e)))?;
            }
            Command::Cat { path } => {
                let ino = open_file(fs, path).map_err(|e| err(fs, path, e))?;
                show::cat(fs, ino, out).map_err(|e| e.on(|e| err(fs, path, e)))?;
            }
            Command::Write { path, words } => {
                let text = words.join(" ");
                let ino = fs.open(path, true).map_err(|e| err(fs, path, e))?;
                fs.truncate(ino, 0).map_err(|e| err(fs, path, e))?;
                let n = fs.write(ino, 0, text.as_bytes()).map_err(|e| err(fs, path, e))?;
                fs.fsync(ino).map_err(|e| err(fs, path, e))?;
                if n < text.len() {
                    return Err(err(fs, path, FsError::NoSpace));
                }
                writeln!(out, "wrote {n} byte{} to {path} (durable)", if n == 1 { "" } else { "s" })?;
            }
            Command::Mkdir { path } => {
                let (dir, leaf) = fs.resolve_parent(path).map_err(|e| err(fs, path, e))?;
                fs.mkdir(dir, leaf.as_bytes()).map_err(|e| err(fs, path, e))?;
            }
            Command::Rm { path } => {
                let (dir, leaf) = fs.resolve_parent(path).map_err(|e| err(fs, path, e))?;
                let ino = fs.lookup(dir, leaf.as_bytes()).map_err(|e| err(fs, path, e))?;
                let kind = fs.stat(ino).map_err(|e| err(fs, path, e))?.kind;
                let r = match kind {
                    FileKind::Dir => fs.rmdir(dir, leaf.as_bytes()),
                    FileKind::File => fs.unlink(dir, leaf.as_bytes()),
                };
                r.map_err(|e| err(fs, path, e))?;
            }
            Command::Reflink { src, dst } => {
                let s = open_file(fs, src).map_err(|e| err(fs, src, e))?;
                let d = match fs.open(dst, false) {
                    Ok(d) => {
                        fs.reflink(s, d).map_err(|e| err(fs, dst, e))?;
                        d
                    }
                    Err(FsError::NotFound) => {
                        // A new name appears only with its data: unnamed
                        // first, named when the reflink is done.
                        let (dir, leaf) = fs.resolve_parent(dst).map_err(|e| err(fs, dst, e))?;
                        let d = fs.create_unnamed().map_err(|e| err(fs, dst, e))?;
                        if let Err(e) = fs.reflink(s, d).and_then(|()| fs.link_unnamed(d, dir, leaf.as_bytes())) {
                            let _ = fs.delete_unnamed(d);
                            return Err(err(fs, dst, e));
                        }
                        d
                    }
                    Err(e) => return Err(err(fs, dst, e)),
                };
                let n = fs.fiemap(d).map_err(|e| err(fs, dst, e))?.len();
                let size = fs.stat(d).map_err(|e| err(fs, dst, e))?.size;
                writeln!(
                    out,
                    "{dst} shares {src}'s {} in {n} extent{}; nothing copied",
                    Size(size),
                    if n == 1 { "" } else { "s" }
                )?;
            }
            Command::Rmap { offset, len } => show::rmap(fs, offset, len, out)?,
            Command::Fsck { repair } => {
                if repair {
                    fs.repair().map_err(|e| CliError::new(format!("fsck --repair: {}: {e}", tool.device)))?;
                    let g = fs.log_status().generation;
                    writeln!(
                        out,
                        "repaired {}: a clean checkpoint (generation {g}) and both superblocks rewritten",
                        tool.device
                    )?;
                }
                return show::fsck(fs, tool, out);
            }
            Command::ClearBad { offset, len } => {
                let what = format!("{offset:#x}+{len:#x}");
                fs.clear_bad(offset, len).map_err(|e| err(fs, &what, e))?;
                writeln!(out, "cleared {what} from the bad-block list")?;
            }
        }
        Ok(Status::Done)
    }
}

/// `path` as a regular file (EISDIR for a directory).
pub fn open_file<P: Pmem>(fs: &FileSystem<P>, path: &str) -> Result<Ino, FsError> {
    let ino = fs.resolve(path)?;
    match fs.stat(ino)?.kind {
        FileKind::File => Ok(ino),
        FileKind::Dir => Err(FsError::IsDir),
    }
}

/// The message for `e` from command `cmd` on `path`, with the next step
/// where there is an obvious one.
pub fn fs_error<P: Pmem>(fs: &FileSystem<P>, tool: &Tool<'_>, cmd: &str, path: &str, e: FsError) -> CliError {
    let p = tool.prefix;
    let hint = match e {
        FsError::IsDir => format!("; `{p} ls {path}` lists it"),
        FsError::NotDir if cmd == "ls" => format!("; `{p} stat {path}` shows the file"),
        FsError::NotFound => {
            let parent =
                path.trim_end_matches('/').rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
            format!("; `{p} ls {parent}` lists what is there")
        }
        FsError::NoSpace => format!("; `{p} df` shows the space"),
        FsError::Poisoned { offset } => format!("; `{p} rmap {offset:#x}` names everything stored there"),
        FsError::ReadOnly => match fs.mount_info().degraded {
            Some(why) => format!(" since: {why}; `{p} info` says more"),
            None => String::from(" (mounted read-only)"),
        },
        FsError::Corrupt(_) => format!("; unmount, then `{p} fsck`"),
        _ => String::new(),
    };
    CliError::new(format!("{cmd}: {path}: {e}{hint}"))
}

/// The message for a mount of `tool.device` that failed with `e`.
pub fn mount_error(tool: &Tool<'_>, e: FsError) -> CliError {
    let (d, p) = (tool.device, tool.prefix);
    CliError::new(match e {
        FsError::NotFsdax => format!("no fsdax file system on {d}: `{p} mkfs` formats it"),
        FsError::Poisoned { .. } | FsError::Media(_) => {
            format!("{d}: cannot read the file system's metadata: {e}")
        }
        FsError::Corrupt(_) => format!("{d}: cannot mount: {e}; no intact checkpoint or superblock remains"),
        e => format!("{d}: cannot mount: {e}"),
    })
}

/// One line on a fresh mount: read-write or read-only and why, what was
/// replayed.
pub fn describe_mount<P: Pmem>(fs: &FileSystem<P>, tool: &Tool<'_>) -> String {
    let info = fs.mount_info();
    let mut s = format!("mounted {}", tool.device);
    match (fs.is_read_only(), info.degraded) {
        (false, _) => s.push_str(" read-write"),
        (true, Some(why)) => s.push_str(&format!(" READ-ONLY because {why}; `{} fsck` checks it", tool.prefix)),
        (true, None) => s.push_str(" read-only (as asked)"),
    }
    s.push_str(&format!(
        ": generation {}, {} log record{} replayed{}",
        info.generation,
        info.replayed,
        if info.replayed == 1 { "" } else { "s" },
        if info.used_backup_superblock { ", backup superblock used" } else { "" }
    ));
    s
}

/// What a tool prints after mkfs: the geometry ([`Command::Info`]'s
/// output).
pub fn describe_mkfs<P: Pmem, W: fmt::Write>(fs: &FileSystem<P>, tool: &Tool<'_>, out: &mut W) -> fmt::Result {
    writeln!(out, "formatted {}", tool.device)?;
    show::info(fs, tool, out).map_err(|_| fmt::Error)
}

/// Help lines for the shared commands, `  USAGE  HELP`, aligned.
pub fn help<W: fmt::Write>(prefix: &str, out: &mut W) -> fmt::Result {
    let width = COMMANDS.iter().map(|(u, _)| u.len()).max().unwrap_or(0) + prefix.len() + 1;
    for (u, h) in COMMANDS {
        let cmd = format!("{prefix} {u}");
        writeln!(out, "  {cmd:<width$}  {h}")?;
    }
    Ok(())
}

/// Collects names of `inos` by walking the tree from the root: the first
/// path found for each (a file with several links has several).
pub fn paths_of<P: Pmem>(fs: &FileSystem<P>, inos: &[Ino]) -> Vec<(Ino, String)> {
    let mut want: Vec<Ino> = inos.to_vec();
    want.sort_unstable();
    want.dedup();
    let mut found: Vec<(Ino, String)> = Vec::new();
    let mut stack: Vec<(Ino, String)> = alloc::vec![(fs.root(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        if found.len() == want.len() {
            break;
        }
        let Ok(entries) = fs.readdir(dir, None, usize::MAX) else { continue };
        for e in entries {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            if want.binary_search(&e.ino).is_ok() && !found.iter().any(|(i, _)| *i == e.ino) {
                found.push((e.ino, path.clone()));
            }
            if e.kind == FileKind::Dir {
                stack.push((e.ino, path));
            }
        }
    }
    found
}
