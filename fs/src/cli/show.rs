//! The output of the shared commands, for people: aligned columns, sizes
//! in KiB/MiB/GiB, device offsets in hex.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};
use core::fmt::{self, Write};

use fsdax_pmem_api::units::Size;

use super::{paths_of, CliError, Status, Tool};
use crate::error::FsError;
use crate::format::BLOCK_SIZE;
use crate::fs::{FileSystem, RmapOwner, RMAP_BAD, RMAP_SHARED};
use crate::pmem::Pmem;
use crate::state::{FileKind, Ino};

/// What can stop a listing: the sink, or the file system.
pub(super) enum ShowError {
    Fmt,
    Fs(FsError),
}

impl ShowError {
    /// Turns a file-system error into the command's message.
    pub(super) fn on(self, f: impl FnOnce(FsError) -> CliError) -> CliError {
        match self {
            ShowError::Fmt => CliError::from(fmt::Error),
            ShowError::Fs(e) => f(e),
        }
    }
}

impl From<fmt::Error> for ShowError {
    fn from(_: fmt::Error) -> Self {
        ShowError::Fmt
    }
}

impl From<FsError> for ShowError {
    fn from(e: FsError) -> Self {
        ShowError::Fs(e)
    }
}

/// `info`: like `xfs_info`.
pub(super) fn info<P: Pmem, W: Write>(fs: &FileSystem<P>, tool: &Tool<'_>, out: &mut W) -> fmt::Result {
    let g = fs.superblock().geo;
    let b = |blocks: u64| blocks * BLOCK_SIZE;
    let log = fs.log_status();
    let mi = fs.mount_info();
    writeln!(
        out,
        "device      {}: {} ({} blocks of {})",
        tool.device,
        Size(b(g.total_blocks)),
        g.total_blocks,
        Size(BLOCK_SIZE)
    )?;
    writeln!(out, "superblock  {:#x}, backup {:#x}", 0, b(g.backup_sb_block()))?;
    writeln!(
        out,
        "header      copies at {:#x} and {:#x}; generation {}",
        b(g.header_block(0)),
        b(g.header_block(1)),
        log.generation
    )?;
    writeln!(
        out,
        "checkpoint  body {}, two copies starting at {:#x} and {:#x}",
        Size(log.body_len),
        b(log.body[0].pblk),
        b(log.body[1].pblk)
    )?;
    writeln!(
        out,
        "log         two copies of {} at {:#x} and {:#x}; {} used by {} record{}",
        Size(log.capacity),
        b(log.log[0].pblk),
        b(log.log[1].pblk),
        Size(log.used),
        log.records,
        if log.records == 1 { "" } else { "s" }
    )?;
    writeln!(
        out,
        "data        {} at {:#x}..{:#x} ({} blocks); the checkpoint holds {} of it",
        Size(b(g.data_blocks)),
        b(g.data_start),
        b(g.data_end()),
        g.data_blocks,
        Size(b(log.meta_blocks))
    )?;
    match (fs.is_read_only(), mi.degraded) {
        (false, _) => writeln!(out, "state       read-write")?,
        (true, Some(why)) => writeln!(out, "state       READ-ONLY since: {why}")?,
        (true, None) => writeln!(out, "state       read-only (mounted so)")?,
    }
    writeln!(
        out,
        "mount       {} superblock; {} log record{} replayed at generation {}",
        if mi.used_backup_superblock { "backup" } else { "primary" },
        mi.replayed,
        if mi.replayed == 1 { "" } else { "s" },
        mi.generation
    )?;
    let damaged = mi.damage.describe();
    if !damaged.is_empty() {
        let names: Vec<String> = damaged.iter().map(|k| format!("{k}")).collect();
        writeln!(
            out,
            "repair      damaged at mount: {}; {}",
            names.join(", "),
            if mi.repaired { "rewritten from the good copies" } else { "not rewritten yet (read-only)" }
        )?;
    }
    if mi.relocations > 0 {
        writeln!(
            out,
            "relocated   {} time{} after media errors in metadata",
            mi.relocations,
            if mi.relocations == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// `df`: like `df -h`, one header line and one line of values.
pub(super) fn df<P: Pmem, W: Write>(fs: &FileSystem<P>, out: &mut W) -> fmt::Result {
    let s = fs.statfs();
    let used = s.data_blocks.saturating_sub(s.free_blocks + s.bad_blocks);
    let pct = (used * 100).checked_div(s.data_blocks).unwrap_or(0);
    let bs = s.block_size;
    writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>10} {:>5} {:>8} {:>12}",
        "size", "used", "free", "bad", "use%", "inodes", "free 2M"
    )?;
    writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>10} {:>4}% {:>8} {:>12}",
        Size(s.data_blocks * bs),
        Size(used * bs),
        Size(s.free_blocks * bs),
        Size(s.bad_blocks * bs),
        pct,
        s.inodes,
        s.free_huge_chunks
    )
}

/// Extents of a file: (count, shared count).
fn extent_counts<P: Pmem>(fs: &FileSystem<P>, ino: Ino) -> Result<(usize, usize), FsError> {
    let map = fs.fiemap(ino)?;
    Ok((map.len(), map.iter().filter(|e| e.shared).count()))
}

/// `ls`: like `ls -l`: type, inode, size, extents (shared ones), name.
pub(super) fn ls<P: Pmem, W: Write>(fs: &FileSystem<P>, dir: Ino, out: &mut W) -> Result<(), ShowError> {
    writeln!(out, "{:<4} {:>8} {:>14} {:>8} {:>7}  name", "type", "inode", "size", "extents", "shared")?;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let entries = fs.readdir(dir, after.as_deref(), 1024)?;
        let Some(last) = entries.last() else { break };
        after = Some(last.name.clone());
        for e in &entries {
            let name = String::from_utf8_lossy(&e.name);
            match e.kind {
                FileKind::Dir => writeln!(out, "{:<4} {:>8} {:>14} {:>8} {:>7}  {name}/", "dir", e.ino, "-", "-", "-")?,
                FileKind::File => {
                    let size = fs.stat(e.ino)?.size;
                    let (n, shared) = extent_counts(fs, e.ino)?;
                    writeln!(out, "{:<4} {:>8} {:>14} {:>8} {:>7}  {name}", "file", e.ino, size, n, shared)?;
                }
            }
        }
    }
    Ok(())
}

/// `stat`: the inode and, for a file, every extent with its device offset.
pub(super) fn stat<P: Pmem, W: Write>(fs: &FileSystem<P>, path: &str, ino: Ino, out: &mut W) -> Result<(), ShowError> {
    let st = fs.stat(ino)?;
    let links = if st.nlink == 1 { "link" } else { "links" };
    writeln!(out, "{path}: {}, inode {}, {} {links}", st.kind, st.ino, st.nlink)?;
    if st.kind == FileKind::Dir {
        let n = fs.readdir(ino, None, usize::MAX)?.len();
        writeln!(out, "entries  {n}")?;
        return Ok(());
    }
    let map = fs.fiemap(ino)?;
    let shared: u64 = map.iter().filter(|e| e.shared).map(|e| e.len / BLOCK_SIZE).sum();
    writeln!(out, "size     {} bytes ({})", st.size, Size(st.size))?;
    writeln!(
        out,
        "blocks   {} of {} ({}), {shared} shared",
        st.blocks,
        Size(BLOCK_SIZE),
        Size(st.blocks * BLOCK_SIZE)
    )?;
    writeln!(out, "extents  {}", map.len())?;
    if !map.is_empty() {
        writeln!(out, "  {:<16} {:<16} {:>10}", "file offset", "device offset", "length")?;
    }
    for e in map {
        let huge = e.len == 2 << 20 && e.phys % (2 << 20) == 0 && e.file_offset % (2 << 20) == 0;
        let flags = match (e.shared, huge) {
            (true, true) => "  shared, 2 MiB page",
            (true, false) => "  shared",
            (false, true) => "  2 MiB page",
            (false, false) => "",
        };
        let off = format!("{:#x}", e.file_offset);
        let phys = format!("{:#x}", e.phys);
        writeln!(out, "  {off:<16} {phys:<16} {:>10}{flags}", Size(e.len))?;
    }
    Ok(())
}

/// `cat`: the file as text, at most 1 MiB; a media error after the bytes
/// before it.
pub(super) fn cat<P: Pmem, W: Write>(fs: &FileSystem<P>, ino: Ino, out: &mut W) -> Result<(), ShowError> {
    const LIMIT: u64 = 1 << 20;
    let size = fs.stat(ino)?.size;
    let want = size.min(LIMIT) as usize;
    let mut buf = vec![0u8; want];
    let mut done = 0;
    while done < want {
        match fs.read(ino, done as u64, &mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => {
                writeln!(out, "{}", String::from_utf8_lossy(&buf[..done]))?;
                return Err(ShowError::Fs(e));
            }
        }
    }
    out.write_str(&String::from_utf8_lossy(&buf[..done]))?;
    if !buf[..done].ends_with(b"\n") {
        writeln!(out)?;
    }
    if size > LIMIT {
        writeln!(out, "(the first {} of {} shown)", Size(LIMIT), Size(size))?;
    }
    Ok(())
}

/// `rmap`: every owner of device bytes `[offset, offset + len)`.
pub(super) fn rmap<P: Pmem, W: Write>(fs: &FileSystem<P>, offset: u64, len: u64, out: &mut W) -> fmt::Result {
    let end = offset.saturating_add(len);
    let size = fs.superblock().geo.total_blocks * BLOCK_SIZE;
    if offset >= size {
        return writeln!(out, "{offset:#x}: outside the device ({})", Size(size));
    }
    let recs = fs.rmap_query(offset, len);
    if recs.is_empty() {
        return writeln!(out, "{offset:#x}..{end:#x}: free space, no owner");
    }
    let inos: Vec<Ino> = recs
        .iter()
        .filter_map(|r| match r.owner {
            RmapOwner::File { ino, .. } => Some(ino),
            RmapOwner::Metadata(_) => None,
        })
        .collect();
    let names = paths_of(fs, &inos);
    writeln!(out, "owners of {offset:#x}..{end:#x}:")?;
    for r in recs {
        let range = format!("{:#x}..{:#x}", r.phys, r.phys + r.len);
        let mut flags = String::new();
        if r.flags & RMAP_SHARED != 0 {
            flags.push_str("  shared");
        }
        if r.flags & RMAP_BAD != 0 {
            flags.push_str("  bad blocks");
        }
        match r.owner {
            RmapOwner::File { ino, offset: file_offset } => {
                let name = names.iter().find(|(i, _)| *i == ino).map_or("(unnamed)", |(_, p)| p.as_str());
                writeln!(out, "  {range:<28} {name} (inode {ino}) at file offset {file_offset:#x}{flags}")?
            }
            RmapOwner::Metadata(kind) => writeln!(out, "  {range:<28} metadata: {kind}{flags}")?,
        }
    }
    Ok(())
}

/// `fsck`: counts, the media check, and one verdict line. Media errors
/// are called poisoned, with their ranges; inconsistency is corruption.
pub(super) fn fsck<P: Pmem, W: Write>(fs: &FileSystem<P>, tool: &Tool<'_>, out: &mut W) -> Result<Status, CliError> {
    let mut problems: Vec<String> = Vec::new();
    let p = tool.prefix;
    let checked = fs.fsck();
    let failed = checked.as_ref().err().copied();
    match checked {
        Ok(rep) => {
            writeln!(
                out,
                "checked  {} inodes, {} extents, {} directory entries, {} log record{} on media",
                rep.inodes,
                rep.extents,
                rep.dirents,
                rep.log_records,
                if rep.log_records == 1 { "" } else { "s" }
            )?;
            let bad = fs.bad_blocks().iter().map(|&(_, l)| l / BLOCK_SIZE).sum::<u64>();
            let ranges: Vec<String> = rep.poisoned.iter().take(4).map(|&(o, l)| format!("{o:#x}+{l:#x}")).collect();
            writeln!(
                out,
                "media    {} mapped data block{} poisoned{}; {bad} block{} in the bad-block list",
                rep.poisoned_blocks,
                if rep.poisoned_blocks == 1 { "" } else { "s" },
                if ranges.is_empty() { String::new() } else { format!(" at {}", ranges.join(", ")) },
                if bad == 1 { "" } else { "s" }
            )?;
            let events = fs.memory_failures();
            writeln!(
                out,
                "events   {events} memory failure{} recorded on this device since mkfs",
                if events == 1 { "" } else { "s" }
            )?;
            if rep.poisoned_blocks > 0 {
                problems.push(format!(
                    "{} data block{} poisoned (media errors, not corruption) at {}: `{p} rmap OFFSET` names the \
                     files; rewriting whole blocks clears them",
                    rep.poisoned_blocks,
                    if rep.poisoned_blocks == 1 { " is" } else { "s are" },
                    ranges.join(", ")
                ));
            }
            let damaged = rep.damage.describe();
            if !damaged.is_empty() {
                let names: Vec<String> = damaged.iter().map(|k| format!("{k}")).collect();
                problems.push(format!(
                    "damaged metadata cop{} ({}); the other copies are intact: `{p} fsck --repair` rewrites them",
                    if damaged.len() == 1 { "y" } else { "ies" },
                    names.join(", ")
                ));
            }
            if rep.orphans > 0 {
                problems.push(format!(
                    "{} orphaned file{} (no name; deleted at the next read-write mount)",
                    rep.orphans,
                    if rep.orphans == 1 { "" } else { "s" }
                ));
            }
        }
        Err(e) if e.is_media() => problems.push(format!("metadata poisoned: {e}; `{p} fsck --repair` rebuilds it")),
        Err(e) => problems.push(format!("{e}; `{p} fsck --repair` rebuilds a clean checkpoint")),
    }
    match fs.mount_info().degraded {
        Some(why) if failed != Some(why) => problems.push(format!("read-only since: {why}")),
        _ => {}
    }
    if problems.is_empty() {
        writeln!(out, "verdict  clean")?;
        Ok(Status::Done)
    } else {
        writeln!(out, "verdict  NOT CLEAN: {}", problems.join("; "))?;
        Ok(Status::NotClean)
    }
}
