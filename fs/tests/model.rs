//! Model-based property test: random operation sequences (including reflink,
//! CoW writes, punch hole, truncate, rename, unlink of shared files) checked
//! against an in-memory model, with fsck clean, after every step.

mod common;

use common::*;
use fsdax_fs::*;
use proptest::prelude::*;

fn run(ops: &[Op], crash_remount: bool) {
    let mut fs = FileSystem::mkfs(MemPmem::new(24 << 20), MkfsOptions { uuid: [3; 16], ..Default::default() }).unwrap();
    let mut m = new_model();
    for (i, op) in ops.iter().enumerate() {
        let desc = if let Op::Remount = op {
            // Alternate clean unmount and "crash" (no final checkpoint).
            let pm = if crash_remount && i % 2 == 0 { fs.into_pmem() } else { fs.unmount().unwrap() };
            fs = FileSystem::mount(pm).unwrap();
            assert!(!fs.is_read_only());
            "remount".to_string()
        } else {
            step(&mut fs, &mut m, op)
        };
        let got = walk(&fs).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), m.keys().collect::<Vec<_>>(), "namespace after step {i}: {desc}");
        for (k, v) in &m {
            assert!(got[k] == *v, "content of {} after step {i}: {desc}", path_str(k));
        }
        if let Err(e) = fs.fsck() {
            panic!("fsck after step {i} ({desc}): {e:?}");
        }
    }
    // Deleting everything returns every block.
    let pm = fs.unmount().unwrap();
    let fs = FileSystem::mount(pm).unwrap();
    fs.fsck().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FSDAX_FS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_model(ops in proptest::collection::vec(strat::op(), 1..40), crash in any::<bool>()) {
        run(&ops, crash);
    }
}

#[test]
fn everything_freed_after_unlinking_shared_files() {
    let mut fs = FileSystem::mkfs(MemPmem::new(24 << 20), MkfsOptions::default()).unwrap();
    let mut m = new_model();
    let ops = [
        Op::Create { dir: 0, name: 0 },
        Op::Write { file: 0, off: 0, len: 50_000, byte: 1 },
        Op::Create { dir: 0, name: 1 },
        Op::Reflink { src: 0, dst: 1 },
        Op::Write { file: 1, off: 5000, len: 100, byte: 2 },
        Op::ReflinkRange { src: 1, sblk: 1, dst: 0, dblk: 10, nblk: 3, to_eof: false },
        Op::Punch { file: 0, off: 3000, len: 10_000 },
        Op::Truncate { file: 1, size: 7000 },
        Op::Unlink { path: 0 },
        Op::Unlink { path: 0 },
    ];
    for op in &ops {
        step(&mut fs, &mut m, op);
        fs.fsck().unwrap();
    }
    assert_eq!(m.len(), 1);
    let s = fs.statfs();
    assert_eq!(s.free_blocks + fs.log_status().meta_blocks, s.data_blocks);
}
