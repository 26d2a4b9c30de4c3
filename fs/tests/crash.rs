//! Crash consistency. The simulator records every store, flush and fence of
//! each operation; at every fence (and at the end of the operation) we build
//! the images a crash could leave: everything fenced is durable, and any
//! subset of the pending cache lines may be (none, all, and a bounded random
//! sample). Every image must mount read-write, pass fsck, and show the
//! operation entirely done or not done at all (data overwrites may tear per
//! byte, metadata never); once the operation returned, nothing is lost.

mod common;

use common::*;
use fsdax_fs::sim::{apply_lines, CrashSim};
use fsdax_fs::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn model_of(img: &[u8]) -> (Model, MountInfo) {
    let fs = match FileSystem::mount(MemPmem::from_bytes(img.to_vec())) {
        Ok(fs) => fs,
        Err(e) => panic!("crash image does not mount: {e:?}"),
    };
    assert!(!fs.is_read_only(), "crash image mounted read-only: {:?}", fs.mount_info());
    match fs.fsck() {
        Ok(r) => assert!(r.is_clean(), "fsck of crash image after a read-write mount: {r:?}"),
        Err(e) => panic!("fsck of crash image: {e:?}"),
    }
    let info = fs.mount_info();
    let model = walk(&fs).unwrap();
    // Whatever a crash left past EOF must never become visible: grow every
    // file and check the new bytes read as zeros.
    let mut fs = fs;
    for (p, n) in &model {
        if let Node::File(c) = n {
            let ino = fs.resolve(&path_str(p)).unwrap();
            let old = c.len() as u64;
            match fs.truncate(ino, old + 9000) {
                Ok(()) => {}
                Err(FsError::NoSpace) => continue, // a shared last block needs a CoW block
                Err(e) => panic!("truncate after crash: {e:?}"),
            }
            let mut buf = vec![0xEEu8; 9000];
            assert_eq!(fs.read(ino, old, &mut buf).unwrap(), 9000);
            assert!(buf.iter().all(|&b| b == 0), "stale bytes past EOF of {} exposed after crash", path_str(p));
        }
    }
    (model, info)
}

/// Is `got` an allowed crash result between `before` and `after`?
fn allowed(got: &Model, before: &Model, after: &Model, op: &Op) -> bool {
    if got == before || got == after {
        return true;
    }
    // In-place data overwrites are not atomic: each byte old or new. The
    // partial blocks at the ends of a punched range are zeroed in place too.
    if let Op::Write { .. } | Op::WriteShort { .. } | Op::Punch { .. } = op {
        if got.keys().ne(after.keys()) {
            return false;
        }
        return got.iter().all(|(k, v)| match (v, before.get(k), after.get(k)) {
            (Node::File(g), Some(Node::File(b)), Some(Node::File(a))) => {
                (g.len() == b.len() || g.len() == a.len())
                    && g.iter()
                        .enumerate()
                        .all(|(i, x)| Some(x) == b.get(i) || Some(x) == a.get(i) || (*x == 0 && i >= b.len()))
            }
            (g, _, Some(a)) => g == a,
            _ => false,
        });
    }
    false
}

struct Stats {
    ops: u64,
    points: u64,
    states: u64,
}

fn run_workload(ops: &[Op], log_blocks: u64, samples: usize, seed: u64, st: &mut Stats) {
    let sim = CrashSim::new(vec![0u8; 6 << 20]);
    let opts = MkfsOptions { uuid: [5; 16], log_blocks: Some(log_blocks) };
    let mut fs = FileSystem::mkfs(sim, opts).unwrap();
    let mut m = new_model();
    let mut rng = Rng(seed | 1);
    for (i, op) in ops.iter().enumerate() {
        if let Op::Remount = op {
            let pm = fs.unmount().unwrap();
            fs = FileSystem::mount(pm).unwrap();
            continue;
        }
        let before = m.clone();
        let base = fs.pmem().durable().to_vec();
        fs.pmem_mut().start_recording();
        let desc = step(&mut fs, &mut m, op);
        let points = fs.pmem_mut().take_points();
        st.ops += 1;
        let mut img = base;
        let last = points.len() - 1;
        for (k, p) in points.iter().enumerate() {
            apply_lines(&mut img, &p.newly_durable);
            st.points += 1;
            // Each subset: (pending line index, mask of its 8-byte words that
            // reach media). Whole lines, plus torn lines: x86 only promises
            // 8-byte atomicity.
            let mut subsets: Vec<Vec<(usize, u8)>> = vec![vec![]];
            if !p.pending.is_empty() {
                subsets.push((0..p.pending.len()).map(|j| (j, 0xff)).collect());
                for s in 0..samples {
                    let torn = s % 2 == 1;
                    let mut v = Vec::new();
                    for j in 0..p.pending.len() {
                        let r = rng.next();
                        if r.is_multiple_of(2) {
                            v.push((j, if torn { (r >> 8) as u8 } else { 0xff }));
                        }
                    }
                    subsets.push(v);
                }
            }
            for sub in subsets {
                let mut crash = img.clone();
                for &(j, mask) in &sub {
                    let (l, data) = &p.pending[j];
                    for w in 0..8usize {
                        if mask & (1 << w) != 0 {
                            let o = *l as usize * 64 + w * 8;
                            if o + 8 <= crash.len() {
                                crash[o..o + 8].copy_from_slice(&data[w * 8..w * 8 + 8]);
                            }
                        }
                    }
                }
                let lines = &sub;
                let (got, _) = model_of(&crash);
                st.states += 1;
                if k == last && sub.is_empty() {
                    assert!(got == m, "op {i} ({desc}): completed operation lost after crash");
                }
                if !allowed(&got, &before, &m, op) {
                    eprintln!("workload seed {seed}, ops: {ops:?}");
                    for (k, v) in &got {
                        let (b, a) = (before.get(k), m.get(k));
                        if Some(v) != b && Some(v) != a {
                            match (v, b, a) {
                                (Node::File(g), Some(Node::File(b)), Some(Node::File(a))) => {
                                    let i = (0..g.len()).find(|&i| Some(&g[i]) != b.get(i) && Some(&g[i]) != a.get(i));
                                    eprintln!(
                                        "{}: len got {} before {} after {}; first bad byte {:?}: got {:?} before {:?} after {:?}",
                                        path_str(k), g.len(), b.len(), a.len(), i,
                                        i.map(|i| g[i]), i.and_then(|i| b.get(i)), i.and_then(|i| a.get(i))
                                    );
                                }
                                _ => eprintln!("{}: differs in kind/presence", path_str(k)),
                            }
                        }
                    }
                }
                assert!(
                    allowed(&got, &before, &m, op),
                    "op {i} ({desc}): crash at fence {k}/{last} with {} of {} pending lines gives a state that is neither before nor after",
                    lines.len(),
                    p.pending.len()
                );
            }
        }
        // After the operation nothing may be left unflushed.
        assert!(
            points[last].pending.is_empty(),
            "op {i} ({desc}) left {} cache lines unflushed",
            points[last].pending.len()
        );
    }
}

fn scripted() -> Vec<Op> {
    vec![
        Op::Mkdir { dir: 0, name: 0 },
        Op::Create { dir: 1, name: 1 },
        Op::Write { file: 0, off: 0, len: 20_000, byte: 1 },
        Op::Create { dir: 0, name: 2 },
        Op::Reflink { src: 0, dst: 1 },
        Op::Write { file: 1, off: 4000, len: 300, byte: 7 },
        Op::Write { file: 0, off: 100, len: 50, byte: 9 },
        Op::ReflinkRange { src: 1, sblk: 0, dst: 0, dblk: 6, nblk: 2, to_eof: false },
        Op::Punch { file: 0, off: 1000, len: 9000 },
        Op::Truncate { file: 1, size: 5000 },
        Op::Truncate { file: 1, size: 9000 },
        Op::Falloc { file: 0, off: 30_000, len: 10_000, keep: false },
        Op::WriteShort { file: 1, off: 3000, len: 12_000, byte: 4, stop: 7000 },
        Op::WriteShort { file: 0, off: 50_000, len: 9000, byte: 5, stop: 4100 },
        Op::Create { dir: 0, name: 3 },
        Op::Rename { path: 0, dir: 0, name: 3 },
        Op::Rename { path: 1, dir: 0, name: 1 },
        Op::Dedupe { src: 0, sblk: 0, dst: 1, dblk: 0, nblk: 1 },
        Op::Remount,
        Op::Unlink { path: 0 },
        Op::Unlink { path: 1 },
        Op::Rmdir { path: 0 },
        Op::Rmdir { path: 0 },
    ]
}

#[test]
fn crash_states_of_scripted_workload() {
    let mut st = Stats { ops: 0, points: 0, states: 0 };
    // Default log, and a tiny log so that checkpoints happen mid-workload.
    run_workload(&scripted(), 32, 6, 42, &mut st);
    run_workload(&scripted(), 1, 6, 43, &mut st);
    println!(
        "crash consistency (scripted): {} ops, {} crash points, {} crash states checked",
        st.ops, st.points, st.states
    );
    record_summary("crash-states", &format!("{} scripted", st.states));
    assert!(st.states > 200);
}

/// Regression: a file sharing a block with itself. Rewriting it CoWs the
/// first mapping, after which the block's count is 1 in DRAM, but the
/// committed state still maps it twice: it must not be written in place
/// before the commit.
#[test]
fn crash_states_of_rewriting_a_self_shared_file() {
    let ops = vec![
        Op::Create { dir: 0, name: 0 },
        Op::Write { file: 0, off: 0, len: 48 * 1024, byte: 1 },
        Op::ReflinkRange { src: 0, sblk: 0, dst: 0, dblk: 8, nblk: 2, to_eof: false },
        Op::Write { file: 0, off: 0, len: 48 * 1024, byte: 60 },
        Op::Punch { file: 0, off: 100, len: 40_000 },
    ];
    let mut st = Stats { ops: 0, points: 0, states: 0 };
    run_workload(&ops, 32, 8, 99, &mut st);
    println!(
        "crash consistency (self-shared rewrite): {} ops, {} crash points, {} crash states checked",
        st.ops, st.points, st.states
    );
    record_summary("crash-states", &format!("{} self-shared rewrite", st.states));
    assert!(st.states > 20);
}

#[test]
fn crash_states_of_random_workloads() {
    let budget: usize = std::env::var("FSDAX_FS_CRASH_WORKLOADS").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let mut st = Stats { ops: 0, points: 0, states: 0 };
    let mut runner = TestRunner::deterministic();
    let strat = proptest::collection::vec(strat::op(), 5..25);
    for w in 0..budget {
        let ops = strat.new_tree(&mut runner).unwrap().current();
        // FSDAX_FS_CRASH_ONLY=N replays only workload N (debugging).
        if std::env::var("FSDAX_FS_CRASH_ONLY").is_ok_and(|v| v != w.to_string()) {
            continue;
        }
        run_workload(&ops, if w % 2 == 0 { 32 } else { 1 }, 4, w as u64 + 7, &mut st);
    }
    println!(
        "crash consistency (random): {} ops, {} crash points, {} crash states checked",
        st.ops, st.points, st.states
    );
    record_summary("crash-states", &format!("{} random", st.states));
    assert!(st.states > 100);
}

/// Where a poison scenario puts poison: device byte ranges, from the file
/// system before the explored operation and from a dry run of it (same
/// set-up, same decisions) after.
type Target = fn(before: &FileSystem<CrashSim>, dry_after: &FileSystem<CrashSim>) -> Vec<(u64, u64)>;

/// A scenario in which poison makes the file system move metadata.
struct PoisonCase {
    name: &'static str,
    /// Blocks of each log copy (1: every commit is a checkpoint).
    log_blocks: u64,
    target: Target,
    /// The explored operation: one transaction, or a memory-failure report.
    op: fn(&mut FileSystem<CrashSim>) -> Result<()>,
}

const BSZ: u64 = BLOCK_SIZE;

fn poison_setup(log_blocks: u64) -> FileSystem<CrashSim> {
    let sim = CrashSim::new(vec![0u8; 6 << 20]);
    let mut fs = FileSystem::mkfs(sim, MkfsOptions { uuid: [6; 16], log_blocks: Some(log_blocks) }).unwrap();
    let r = fs.root();
    let d = fs.mkdir(r, b"d").unwrap();
    let a = fs.create(d, b"a").unwrap();
    fs.write(a, 0, &[0xa1; 20_000]).unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.write(b, 0, &[0xb2; 5000]).unwrap();
    let c = fs.create(r, b"c").unwrap();
    fs.reflink(a, c).unwrap();
    // Fill the log so that the next record does not fit: its commit is a
    // checkpoint.
    let mut i = 0;
    while log_blocks == 1 && fs.log_status().capacity - fs.log_status().used >= 128 {
        fs.create(r, format!("pad{i}").as_bytes()).unwrap();
        i += 1;
    }
    fs
}

fn create_one(fs: &mut FileSystem<CrashSim>) -> Result<()> {
    fs.create(fs.root(), b"new").map(|_| ())
}

/// The first line of the next log record in log copy `c`.
fn log_tail(fs: &FileSystem<CrashSim>, c: usize) -> (u64, u64) {
    let s = fs.log_status();
    (s.log[c].pblk * BSZ + s.used, 64)
}

fn poison_cases() -> Vec<PoisonCase> {
    vec![
        PoisonCase {
            name: "log copy A poisoned where the record goes",
            log_blocks: 32,
            target: |fs, _| vec![log_tail(fs, 0)],
            op: create_one,
        },
        PoisonCase {
            name: "both log copies poisoned where the record goes",
            log_blocks: 32,
            target: |fs, _| vec![log_tail(fs, 0), log_tail(fs, 1)],
            op: create_one,
        },
        PoisonCase {
            name: "the new checkpoint's body copy A lands on poison",
            log_blocks: 1,
            target: |_, dry| vec![(dry.log_status().body[0].pblk * BSZ + 64, 64)],
            op: create_one,
        },
        PoisonCase {
            name: "the new checkpoint's log copy B lands on poison",
            log_blocks: 1,
            target: |_, dry| vec![(dry.log_status().log[1].pblk * BSZ, 64)],
            op: create_one,
        },
        PoisonCase {
            name: "header copy A poisoned: rewritten with a recovery write",
            log_blocks: 1,
            target: |_, _| vec![(BSZ, 64)],
            op: create_one,
        },
        PoisonCase {
            name: "poison reported in body copy A",
            log_blocks: 32,
            target: |fs, _| vec![(fs.log_status().body[0].pblk * BSZ + 128, 64)],
            op: |fs| {
                let off = fs.log_status().body[0].pblk * BSZ + 128;
                fs.mark_bad(off, 64).map(|_| ())
            },
        },
        PoisonCase {
            name: "poison reported in log copy B",
            log_blocks: 32,
            target: |fs, _| vec![(fs.log_status().log[1].pblk * BSZ, 64)],
            op: |fs| {
                let off = fs.log_status().log[1].pblk * BSZ;
                fs.mark_bad(off, 64).map(|_| ())
            },
        },
    ]
}

/// Mounts a crash image on a device with `poison`: read-write, fsck clean.
fn model_of_poisoned(img: &[u8], poison: &[(u64, u64)]) -> Model {
    let mut pm = MemPmem::from_bytes(img.to_vec());
    for &(o, l) in poison {
        pm.inject_poison(o, l);
    }
    let fs = FileSystem::mount(pm).unwrap_or_else(|e| panic!("crash image does not mount: {e}"));
    assert!(!fs.is_read_only(), "crash image mounted read-only: {:?}", fs.mount_info());
    let report = fs.fsck().unwrap_or_else(|e| panic!("fsck of crash image: {e}"));
    assert!(report.is_clean(), "fsck of crash image after a read-write mount: {report:?}");
    walk(&fs).unwrap()
}

/// Crash states of metadata relocations caused by poison: the poisoned log
/// copy, both copies, the new checkpoint's body or log extents, a header
/// copy, and poison reported in a body or log copy. Each crash image, with
/// the poison the device had then, mounts read-write, checks clean and
/// holds the state before or after the operation; after it returned, the
/// state after. `FSDAX_FS_POISON_CRASH_SAMPLES` (default 6) random pending
/// subsets per crash point, half of them with torn lines.
#[test]
fn crash_states_of_poison_relocations() {
    let samples: usize = std::env::var("FSDAX_FS_POISON_CRASH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let mut states = 0u64;
    for (n, case) in poison_cases().into_iter().enumerate() {
        let mut dry = poison_setup(case.log_blocks);
        let fresh = poison_setup(case.log_blocks);
        (case.op)(&mut dry).unwrap_or_else(|e| panic!("{}: dry run: {e}", case.name));
        let targets = (case.target)(&fresh, &dry);
        drop(fresh);
        let mut fs = poison_setup(case.log_blocks);
        let before = walk(&fs).unwrap();
        for &(o, l) in &targets {
            fs.pmem_mut().inject_poison(o, l);
        }
        let base = fs.pmem().durable().to_vec();
        let gen = fs.log_status().generation;
        fs.pmem_mut().start_recording();
        (case.op)(&mut fs).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let points = fs.pmem_mut().take_points();
        assert!(!fs.is_read_only(), "{}: the file system shut down: {:?}", case.name, fs.mount_info());
        assert!(fs.log_status().generation > gen, "{}: no checkpoint moved the metadata", case.name);
        // The poison was met: its block is a known bad block now, or a
        // recovery write cleared it.
        let still = fs.pmem().poison();
        let bad = fs.bad_blocks();
        for &(o, _) in &targets {
            let listed = bad.iter().any(|&(s, l)| s <= o && o < s + l);
            let cleared = !still.iter().any(|&(s, l)| s <= o && o < s + l);
            assert!(listed || cleared, "{}: the poison at {o:#x} was never met", case.name);
        }
        let after = walk(&fs).unwrap();
        let mut rng = Rng(0x5eed + n as u64);
        let mut img = base;
        let last = points.len() - 1;
        for (k, p) in points.iter().enumerate() {
            apply_lines(&mut img, &p.newly_durable);
            let mut subsets: Vec<Vec<(usize, u8)>> = vec![vec![]];
            if !p.pending.is_empty() {
                subsets.push((0..p.pending.len()).map(|j| (j, 0xff)).collect());
                for s in 0..samples {
                    let torn = s % 2 == 1;
                    let v = (0..p.pending.len())
                        .filter_map(|j| {
                            let r = rng.next();
                            r.is_multiple_of(2).then_some((j, if torn { (r >> 8) as u8 } else { 0xff }))
                        })
                        .collect();
                    subsets.push(v);
                }
            }
            for sub in subsets {
                let mut crash = img.clone();
                for &(j, mask) in &sub {
                    let (l, data) = &p.pending[j];
                    for w in 0..8usize {
                        let o = *l as usize * 64 + w * 8;
                        if mask & (1 << w) != 0 && o + 8 <= crash.len() {
                            crash[o..o + 8].copy_from_slice(&data[w * 8..w * 8 + 8]);
                        }
                    }
                }
                let got = model_of_poisoned(&crash, &p.poison);
                states += 1;
                if k == last && sub.is_empty() {
                    assert!(got == after, "{}: the completed operation was lost after a crash", case.name);
                }
                assert!(
                    got == before || got == after,
                    "{}: a crash at fence {k}/{last} with {} of {} pending lines gives neither the state before nor after",
                    case.name,
                    sub.len(),
                    p.pending.len()
                );
            }
        }
        assert!(points[last].pending.is_empty(), "{}: cache lines left unflushed", case.name);
    }
    println!("crash consistency (poison relocations): {states} crash states checked");
    record_summary("crash-states", &format!("{states} poison relocations"));
    assert!(states > 50);
}
