//! Shared test helpers: an in-memory model of the namespace and contents,
//! random operations, and a walker that compares a file system with it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use fsdax_fs::*;

/// Appends one line to the test summary file `kind` when the test command
/// asks for a summary (`FSDAX_SUMMARY_DIR`, see `fsdax_boot::summary`).
pub fn record_summary(kind: &str, line: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("FSDAX_SUMMARY_DIR") else { return };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(kind)) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// A node of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
}

/// Path (components) -> node. The root is the empty path.
pub type Model = BTreeMap<Vec<String>, Node>;

pub fn new_model() -> Model {
    let mut m = Model::new();
    m.insert(vec![], Node::Dir);
    m
}

/// One random operation. Selectors index into the sorted list of existing
/// files / directories / paths (modulo its length).
#[derive(Clone, Debug)]
pub enum Op {
    Create {
        dir: usize,
        name: u8,
    },
    Mkdir {
        dir: usize,
        name: u8,
    },
    Write {
        file: usize,
        off: u64,
        len: u64,
        byte: u8,
    },
    /// A write through a copier that faults after `stop` bytes (a user
    /// page fault): the prefix is committed, the count is short.
    WriteShort {
        file: usize,
        off: u64,
        len: u64,
        byte: u8,
        stop: u64,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Punch {
        file: usize,
        off: u64,
        len: u64,
    },
    Falloc {
        file: usize,
        off: u64,
        len: u64,
        keep: bool,
    },
    Reflink {
        src: usize,
        dst: usize,
    },
    ReflinkRange {
        src: usize,
        sblk: u64,
        dst: usize,
        dblk: u64,
        nblk: u64,
        to_eof: bool,
    },
    Dedupe {
        src: usize,
        sblk: u64,
        dst: usize,
        dblk: u64,
        nblk: u64,
    },
    Unlink {
        path: usize,
    },
    Rmdir {
        path: usize,
    },
    Rename {
        path: usize,
        dir: usize,
        name: u8,
    },
    /// DAX write fault: `bmap_write` (allocate and unshare, contents kept).
    Unshare {
        file: usize,
        off: u64,
        len: u64,
    },
    Remount,
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

pub fn files(m: &Model) -> Vec<Vec<String>> {
    m.iter().filter(|(_, n)| matches!(n, Node::File(_))).map(|(p, _)| p.clone()).collect()
}
pub fn dirs(m: &Model) -> Vec<Vec<String>> {
    m.iter().filter(|(_, n)| **n == Node::Dir).map(|(p, _)| p.clone()).collect()
}
fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}
pub fn path_str(p: &[String]) -> String {
    format!("/{}", p.join("/"))
}
fn child(p: &[String], name: &str) -> Vec<String> {
    let mut c = p.to_vec();
    c.push(name.to_string());
    c
}

/// A write source that faults after `stop` bytes of input.
pub struct Faulting {
    pub data: Vec<u8>,
    pub stop: usize,
}

impl<P: Pmem> WriteCopier<P> for Faulting {
    fn copy_to_pmem(
        &mut self,
        pm: &mut P,
        at: usize,
        dev: u64,
        len: usize,
    ) -> std::result::Result<(), (FsError, usize)> {
        let n = len.min(self.stop.saturating_sub(at));
        pm.store(dev, &self.data[at..at + n]).map_err(|(e, k)| (e.into(), k))?;
        pm.flush(dev, n as u64);
        if n < len {
            return Err((FsError::Fault, n));
        }
        Ok(())
    }
    fn copy_to_buf(&mut self, at: usize, buf: &mut [u8]) -> std::result::Result<(), (FsError, usize)> {
        let n = buf.len().min(self.stop.saturating_sub(at));
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        if n < buf.len() {
            return Err((FsError::Fault, n));
        }
        Ok(())
    }
}

/// Expected outcome of an operation in the model (applied if Ok).
pub type Outcome = std::result::Result<(), FsError>;

fn is_prefix(a: &[String], b: &[String]) -> bool {
    b.len() >= a.len() && b[..a.len()] == *a
}

fn remap_check(ss: u64, so: u64, ds: u64, d_o: u64, len: u64, same: bool, dedupe: bool) -> Outcome {
    let se = so + len;
    let de = d_o + len;
    if len == 0 || se > ss || (dedupe && de > ds) {
        return Err(FsError::Invalid);
    }
    if !se.is_multiple_of(4096) && (se != ss || de < ds) {
        return Err(FsError::Invalid);
    }
    if same && so < de && d_o < se {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// Applies `op` to the model and to the file system; returns a description
/// of the concrete operation (for failure messages) and panics on any
/// disagreement of outcomes.
pub fn step<P: Pmem>(fs: &mut FileSystem<P>, m: &mut Model, op: &Op) -> String {
    let fl = files(m);
    let dl = dirs(m);
    let all: Vec<Vec<String>> = m.keys().filter(|p| !p.is_empty()).cloned().collect();
    let snapshot = m.clone();
    macro_rules! check {
        ($desc:expr, $expected:expr, $got:expr) => {{
            let exp: Outcome = $expected;
            let got: Outcome = $got;
            if exp.is_ok() && got == Err(FsError::NoSpace) {
                // Out of space: the operation must have had no effect.
                *m = snapshot;
                return format!("{} (ENOSPC)", $desc);
            }
            assert_eq!(got, exp, "{}", $desc);
            $desc
        }};
    }
    match *op {
        Op::Create { dir, name } | Op::Mkdir { dir, name } => {
            let is_dir = matches!(op, Op::Mkdir { .. });
            let d = pick(&dl, dir).unwrap();
            let p = child(&d, NAMES[name as usize % 4]);
            let desc = format!("{} {}", if is_dir { "mkdir" } else { "create" }, path_str(&p));
            let exp = if m.contains_key(&p) { Err(FsError::Exists) } else { Ok(()) };
            let dino = fs.resolve(&path_str(&d)).unwrap();
            let nm = p.last().unwrap().as_bytes();
            let got = if is_dir { fs.mkdir(dino, nm) } else { fs.create(dino, nm) }.map(|_| ());
            if exp.is_ok() {
                m.insert(p, if is_dir { Node::Dir } else { Node::File(vec![]) });
            }
            check!(desc, exp, got)
        }
        Op::Write { file, off, len, byte } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add((i / 512) as u8)).collect();
            let got = fs.write(ino, off, &data);
            // A write that runs out of space part-way is short.
            let n = match got {
                Ok(n) => n,
                Err(FsError::NoSpace) => 0,
                Err(e) => panic!("write {}: {e:?}", path_str(&p)),
            };
            if let Some(Node::File(c)) = m.get_mut(&p) {
                if n > 0 {
                    let end = off as usize + n;
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[off as usize..end].copy_from_slice(&data[..n]);
                }
            }
            format!("write {} off {off} len {len} -> {n}", path_str(&p))
        }
        Op::WriteShort { file, off, len, byte, stop } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add((i / 512) as u8)).collect();
            let got = fs.write_from(ino, off, len as usize, &mut Faulting { data: data.clone(), stop: stop as usize });
            let n = match got {
                Ok(n) => {
                    assert!(n as u64 <= stop.min(len), "wrote past the fault: {n} of stop {stop}");
                    n
                }
                Err(FsError::Fault) => {
                    assert_eq!(stop, 0, "a fault after {stop} bytes must give a short count");
                    0
                }
                Err(FsError::NoSpace) => 0,
                Err(e) => panic!("short write {}: {e:?}", path_str(&p)),
            };
            if stop > 0 && stop < len {
                // Space permitting, exactly the prefix is written.
                assert!(n as u64 == stop || fs.statfs().free_blocks < 64, "short write of {n}, fault at {stop}");
            }
            if let Some(Node::File(c)) = m.get_mut(&p) {
                if n > 0 {
                    let end = off as usize + n;
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[off as usize..end].copy_from_slice(&data[..n]);
                }
            }
            format!("short write {} off {off} len {len} stop {stop} -> {n}", path_str(&p))
        }
        Op::Truncate { file, size } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let got = fs.truncate(ino, size);
            if let Some(Node::File(c)) = m.get_mut(&p) {
                c.resize(size as usize, 0);
            }
            check!(format!("truncate {} {size}", path_str(&p)), Ok(()), got)
        }
        Op::Punch { file, off, len } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let got = fs.fallocate(ino, Falloc::PunchHole, off, len);
            if let Some(Node::File(c)) = m.get_mut(&p) {
                let s = (off as usize).min(c.len());
                let e = ((off + len) as usize).min(c.len());
                c[s..e].fill(0);
            }
            check!(format!("punch {} off {off} len {len}", path_str(&p)), Ok(()), got)
        }
        Op::Falloc { file, off, len, keep } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let got = fs.fallocate(ino, Falloc::Allocate { keep_size: keep }, off, len);
            if let Some(Node::File(c)) = m.get_mut(&p) {
                if !keep && c.len() < (off + len) as usize {
                    c.resize((off + len) as usize, 0);
                }
            }
            check!(format!("falloc {} off {off} len {len} keep {keep}", path_str(&p)), Ok(()), got)
        }
        Op::Reflink { src, dst } => {
            let (Some(s), Some(d)) = (pick(&fl, src), pick(&fl, dst)) else {
                return "noop".into();
            };
            let si = fs.resolve(&path_str(&s)).unwrap();
            let di = fs.resolve(&path_str(&d)).unwrap();
            let exp = if s == d { Err(FsError::Invalid) } else { Ok(()) };
            let got = fs.reflink(si, di);
            if exp.is_ok() {
                let c = m[&s].clone();
                m.insert(d.clone(), c);
            }
            check!(format!("reflink {} -> {}", path_str(&s), path_str(&d)), exp, got)
        }
        Op::ReflinkRange { src, sblk, dst, dblk, nblk, to_eof } => {
            let (Some(s), Some(d)) = (pick(&fl, src), pick(&fl, dst)) else {
                return "noop".into();
            };
            let si = fs.resolve(&path_str(&s)).unwrap();
            let di = fs.resolve(&path_str(&d)).unwrap();
            let (Node::File(sc), Node::File(dc)) = (m[&s].clone(), m[&d].clone()) else { unreachable!() };
            let so = sblk * 4096;
            let d_o = dblk * 4096;
            let len = if to_eof { (sc.len() as u64).saturating_sub(so) } else { nblk * 4096 };
            let exp = remap_check(sc.len() as u64, so, dc.len() as u64, d_o, len, s == d, false);
            let got = fs.reflink_range(si, so, di, d_o, len);
            if exp.is_ok() {
                let mut nc = dc.clone();
                let end = (d_o + len) as usize;
                if nc.len() < end {
                    nc.resize(end, 0);
                }
                nc[d_o as usize..end].copy_from_slice(&sc[so as usize..(so + len) as usize]);
                m.insert(d.clone(), Node::File(nc));
            }
            check!(format!("reflink_range {} {so} -> {} {d_o} len {len}", path_str(&s), path_str(&d)), exp, got)
        }
        Op::Dedupe { src, sblk, dst, dblk, nblk } => {
            let (Some(s), Some(d)) = (pick(&fl, src), pick(&fl, dst)) else {
                return "noop".into();
            };
            let si = fs.resolve(&path_str(&s)).unwrap();
            let di = fs.resolve(&path_str(&d)).unwrap();
            let (Node::File(sc), Node::File(dc)) = (m[&s].clone(), m[&d].clone()) else { unreachable!() };
            let (so, d_o, len) = (sblk * 4096, dblk * 4096, nblk * 4096);
            let mut exp = remap_check(sc.len() as u64, so, dc.len() as u64, d_o, len, s == d, true);
            if exp.is_ok() && sc[so as usize..(so + len) as usize] != dc[d_o as usize..(d_o + len) as usize] {
                exp = Err(FsError::Differs);
            }
            let got = fs.dedupe_range(si, so, di, d_o, len);
            check!(format!("dedupe {} {so} -> {} {d_o} len {len}", path_str(&s), path_str(&d)), exp, got)
        }
        Op::Unlink { path } | Op::Rmdir { path } => {
            let rm_dir = matches!(op, Op::Rmdir { .. });
            let Some(p) = pick(&all, path) else {
                return "noop".into();
            };
            let (parent, name) = p.split_at(p.len() - 1);
            let dino = fs.resolve(&path_str(parent)).unwrap();
            let is_dir = m[&p] == Node::Dir;
            let nonempty = m.keys().any(|k| k.len() > p.len() && is_prefix(&p, k));
            let exp = match (rm_dir, is_dir) {
                (false, true) => Err(FsError::IsDir),
                (true, false) => Err(FsError::NotDir),
                (true, true) if nonempty => Err(FsError::NotEmpty),
                _ => Ok(()),
            };
            let got = if rm_dir { fs.rmdir(dino, name[0].as_bytes()) } else { fs.unlink(dino, name[0].as_bytes()) };
            if exp.is_ok() {
                m.remove(&p);
            }
            check!(format!("{} {}", if rm_dir { "rmdir" } else { "unlink" }, path_str(&p)), exp, got)
        }
        Op::Rename { path, dir, name } => {
            let Some(p) = pick(&all, path) else {
                return "noop".into();
            };
            let d = pick(&dl, dir).unwrap();
            let q = child(&d, NAMES[name as usize % 4]);
            let desc = format!("rename {} -> {}", path_str(&p), path_str(&q));
            let src_dir = m[&p] == Node::Dir;
            let exp = if src_dir && is_prefix(&p, &d) {
                Err(FsError::Invalid)
            } else if p == q {
                Ok(())
            } else {
                match m.get(&q) {
                    None => Ok(()),
                    Some(Node::File(_)) if src_dir => Err(FsError::NotDir),
                    Some(Node::Dir) if !src_dir => Err(FsError::IsDir),
                    Some(Node::Dir) if m.keys().any(|k| k.len() > q.len() && is_prefix(&q, k)) => {
                        Err(FsError::NotEmpty)
                    }
                    _ => Ok(()),
                }
            };
            let (pp, pn) = p.split_at(p.len() - 1);
            let sd = fs.resolve(&path_str(pp)).unwrap();
            let dd = fs.resolve(&path_str(&d)).unwrap();
            let got = fs.rename(sd, pn[0].as_bytes(), dd, q.last().unwrap().as_bytes());
            if exp.is_ok() && p != q {
                m.remove(&q);
                let moved: Vec<(Vec<String>, Node)> =
                    m.iter().filter(|(k, _)| is_prefix(&p, k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                for (k, v) in moved {
                    m.remove(&k);
                    let mut nk = q.clone();
                    nk.extend_from_slice(&k[p.len()..]);
                    m.insert(nk, v);
                }
            }
            check!(desc, exp, got)
        }
        Op::Unshare { file, off, len } => {
            let Some(p) = pick(&fl, file) else {
                return "noop".into();
            };
            let ino = fs.resolve(&path_str(&p)).unwrap();
            let got = fs.bmap_write(ino, off, len).map(|m| {
                assert!(!m.shared, "bmap_write left the block shared");
                assert!(m.phys.is_some(), "bmap_write left a hole");
                assert!(m.file_offset <= off && off < m.file_offset + m.len);
            });
            check!(format!("bmap_write {} off {off} len {len}", path_str(&p)), Ok(()), got)
        }
        Op::Remount => "remount".into(),
    }
}

/// Walks the whole file system and returns it as a model.
pub fn walk<P: Pmem>(fs: &FileSystem<P>) -> std::result::Result<Model, FsError> {
    let mut out = Model::new();
    let mut stack = vec![(vec![], fs.root())];
    let mut budget = 100_000;
    while let Some((p, ino)) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            panic!("walk does not terminate");
        }
        out.insert(p.clone(), Node::Dir);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let ents = fs.readdir(ino, after.as_deref(), 64)?;
            if ents.is_empty() {
                break;
            }
            for e in &ents {
                let cp = child(&p, &String::from_utf8_lossy(&e.name));
                match e.kind {
                    FileKind::Dir => stack.push((cp, e.ino)),
                    FileKind::File => {
                        let st = fs.stat(e.ino)?;
                        let mut buf = vec![0u8; st.size.min(64 << 20) as usize];
                        let n = fs.read(e.ino, 0, &mut buf)?;
                        buf.truncate(n);
                        out.insert(cp, Node::File(buf));
                    }
                }
            }
            after = ents.last().map(|e| e.name.clone());
        }
    }
    Ok(out)
}

/// Strategy helpers for proptest.
pub mod strat {
    use proptest::prelude::*;

    use super::Op;

    pub fn op() -> impl Strategy<Value = Op> {
        let sel = 0usize..64;
        prop_oneof![
            3 => (sel.clone(), 0u8..4).prop_map(|(dir, name)| Op::Create { dir, name }),
            1 => (sel.clone(), 0u8..4).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
            5 => (sel.clone(), 0u64..40_000, 1u64..20_000, any::<u8>())
                .prop_map(|(file, off, len, byte)| Op::Write { file, off, len, byte }),
            1 => (sel.clone(), 0u64..2).prop_map(|(file, big)| Op::Write { file, off: 0, len: 2 << 20, byte: big as u8 + 1 }),
            2 => (sel.clone(), 0u64..40_000, 1u64..20_000, any::<u8>(), 0u64..20_000)
                .prop_map(|(file, off, len, byte, stop)| Op::WriteShort { file, off, len, byte, stop: stop.min(len) }),
            2 => (sel.clone(), 0u64..60_000).prop_map(|(file, size)| Op::Truncate { file, size }),
            2 => (sel.clone(), 0u64..50_000, 1u64..30_000).prop_map(|(file, off, len)| Op::Punch { file, off, len }),
            1 => (sel.clone(), 0u64..50_000, 1u64..30_000, any::<bool>())
                .prop_map(|(file, off, len, keep)| Op::Falloc { file, off, len, keep }),
            2 => (sel.clone(), sel.clone()).prop_map(|(src, dst)| Op::Reflink { src, dst }),
            3 => (sel.clone(), 0u64..8, sel.clone(), 0u64..12, 1u64..6, any::<bool>())
                .prop_map(|(src, sblk, dst, dblk, nblk, to_eof)| Op::ReflinkRange { src, sblk, dst, dblk, nblk, to_eof }),
            1 => (sel.clone(), 0u64..4, sel.clone(), 0u64..4, 1u64..3)
                .prop_map(|(src, sblk, dst, dblk, nblk)| Op::Dedupe { src, sblk, dst, dblk, nblk }),
            2 => sel.clone().prop_map(|path| Op::Unlink { path }),
            1 => sel.clone().prop_map(|path| Op::Rmdir { path }),
            2 => (sel.clone(), sel.clone(), 0u8..4).prop_map(|(path, dir, name)| Op::Rename { path, dir, name }),
            1 => (sel.clone(), 0u64..60_000, 1u64..40_000).prop_map(|(file, off, len)| Op::Unshare { file, off, len }),
            1 => sel.clone().prop_map(|file| Op::Unshare { file, off: 0, len: 2 << 20 }),
            1 => Just(Op::Remount),
        ]
    }
}
