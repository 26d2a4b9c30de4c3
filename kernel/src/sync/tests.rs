//! In-kernel tests of the sleeping locks.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use fsdax_ktest::{kassert, kassert_eq, kfail, ktest};

use super::*;
use crate::task::{self, ExitReason};

ktest!(mutex_excludes_and_its_waiters_sleep, {
    static M: Mutex<(u64, bool)> = Mutex::new((0, false));
    let inside = Arc::new(AtomicBool::new(false));
    let ids: Vec<_> = (0..3)
        .map(|_| {
            let inside = Arc::clone(&inside);
            task::spawn("locker", move || {
                for _ in 0..5 {
                    let mut g = M.lock();
                    // Nobody else is inside while we hold it, even across a
                    // sleep (which lets the others run and block).
                    g.1 = true;
                    inside.store(true, Ordering::SeqCst);
                    task::sleep_ticks(1);
                    g.0 += 1;
                    g.1 = false;
                }
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|_| kfail!("spawn"))?;
    // While one sleeps holding the lock, the others are blocked, not spinning.
    let mut saw_blocked = false;
    for _ in 0..20 {
        task::sleep_ticks(1);
        if task::rows().iter().filter(|r| r.name == "locker" && r.state == "blocked").count() >= 1 {
            saw_blocked = true;
            break;
        }
    }
    for id in ids {
        kassert_eq!(task::join(id), Some(ExitReason::Returned));
    }
    kassert!(saw_blocked, "no waiter was ever blocked");
    kassert_eq!(M.lock().0, 15);
    kassert!(M.try_lock().is_some());
    Ok(())
});

ktest!(rwlock_readers_share_and_a_writer_excludes, {
    static L: RwLock<u64> = RwLock::new(0);
    let readers_in = Arc::new(AtomicU32::new(0));
    let max_readers = Arc::new(AtomicU32::new(0));
    let writer_saw_readers = Arc::new(AtomicU64::new(u64::MAX));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (r, m) = (Arc::clone(&readers_in), Arc::clone(&max_readers));
        ids.push(
            task::spawn("reader", move || {
                let g = L.read();
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(n, Ordering::SeqCst);
                task::sleep_ticks(3);
                core::hint::black_box(*g);
                r.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|_| kfail!("spawn"))?,
        );
    }
    task::sleep_ticks(1);
    let (r, w) = (Arc::clone(&readers_in), Arc::clone(&writer_saw_readers));
    ids.push(
        task::spawn("writer", move || {
            let mut g = L.write();
            w.store(u64::from(r.load(Ordering::SeqCst)), Ordering::SeqCst);
            *g += 1;
        })
        .map_err(|_| kfail!("spawn"))?,
    );
    for id in ids {
        kassert_eq!(task::join(id), Some(ExitReason::Returned));
    }
    kassert!(max_readers.load(Ordering::SeqCst) >= 2, "readers never held the lock together");
    kassert_eq!(writer_saw_readers.load(Ordering::SeqCst), 0, "the writer ran beside readers");
    kassert_eq!(*L.read(), 1);
    kassert_eq!(L.holders(), (0, false));
    Ok(())
});
