use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Returned,
    Killed,
}

type S = Scheduler<Option<u32>, Why>;

fn sched() -> S {
    let mut s = S::new("kernel", Some(0), 8);
    let idle = s.spawn("idle", Some(1), false).unwrap();
    s.set_idle(idle);
    s
}

#[test]
fn round_robin_with_preemption() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    let b = s.spawn("b", Some(3), true).unwrap();
    assert_eq!(s.queued().collect::<Vec<_>>(), vec![a, b]);
    // The kernel task is preempted: a runs, then b, then the kernel again.
    assert!(!s.tick(1).kill_current);
    assert_eq!(s.pick_next(), Some(a));
    s.tick(2);
    assert_eq!(s.pick_next(), Some(b));
    s.tick(3);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    assert_eq!(s.task(a).unwrap().ticks, 1);
    assert_eq!(s.current_task().state, State::Running);
}

#[test]
fn idle_runs_only_when_nothing_is_ready() {
    let mut s = sched();
    assert_eq!(s.sleep_current(5), BlockOutcome::Blocked);
    assert_eq!(s.pick_next(), Some(1), "the idle task");
    assert!(s.queued().next().is_none(), "idle is never queued");
    s.tick(3);
    assert_eq!(s.pick_next(), None, "idle keeps running: the kernel still sleeps");
    let out = s.tick(5);
    assert_eq!(out.woken, 1);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
}

#[test]
fn yield_with_nobody_else_keeps_running() {
    let mut s = sched();
    s.yield_current();
    assert_eq!(s.pick_next(), None);
    assert_eq!(s.current_task().state, State::Running);
}

#[test]
fn block_and_wake() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    assert_eq!(s.block_current(), BlockOutcome::Blocked);
    assert_eq!(s.pick_next(), Some(a));
    assert!(!s.wake(a), "running tasks are not woken");
    assert!(s.wake(BOOT_TASK));
    assert!(!s.wake(BOOT_TASK), "waking twice queues once");
    assert_eq!(s.queued().filter(|&q| q == BOOT_TASK).count(), 1);
    s.exit_current(Why::Returned);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    assert_eq!(s.join(a), Join::Done(Why::Returned, Some(2)));
    assert_eq!(s.join(a), Join::NoSuchTask);
}

#[test]
fn kill_rules() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    assert_eq!(s.kill(BOOT_TASK, Why::Killed), Err(KillError::Protected));
    assert_eq!(s.kill(1, Why::Killed), Err(KillError::Protected), "idle");
    assert_eq!(s.kill(99, Why::Killed), Err(KillError::NoSuchTask));
    assert_eq!(s.kill(a, Why::Killed), Ok(KillOutcome::Killed));
    assert!(s.queued().all(|q| q != a), "a dead task leaves the run queue");
    assert_eq!(s.kill(a, Why::Killed), Err(KillError::AlreadyDead));
    assert_eq!(s.join(a), Join::Done(Why::Killed, Some(2)));
}

#[test]
fn kill_of_a_lock_holder_waits_for_its_safe_point() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    s.tick(1);
    assert_eq!(s.pick_next(), Some(a));
    s.lock_acquired();
    s.lock_acquired();
    s.tick(2);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    // The kernel asks; a holds two sleeping locks: deferred.
    assert_eq!(s.kill(a, Why::Killed), Ok(KillOutcome::Deferred));
    s.tick(3);
    assert_eq!(s.pick_next(), Some(a));
    // Preempted while still holding one: still alive.
    assert!(!s.lock_released());
    assert!(!s.tick(4).kill_current);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    s.tick(5);
    assert_eq!(s.pick_next(), Some(a));
    // Released the last lock: the next safe point ends it.
    assert!(s.lock_released());
    assert!(s.tick(6).kill_current);
    s.exit_current(Why::Killed);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    assert_eq!(s.join(a), Join::Done(Why::Killed, Some(2)));
}

#[test]
fn a_pending_kill_ends_a_task_that_blocks_without_locks() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    s.tick(1);
    assert_eq!(s.pick_next(), Some(a));
    s.lock_acquired();
    s.yield_current();
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    assert_eq!(s.kill(a, Why::Killed), Ok(KillOutcome::Deferred));
    s.yield_current();
    assert_eq!(s.pick_next(), Some(a));
    // Blocking while holding the lock is allowed (it sleeps holding it) ...
    assert_eq!(s.block_current(), BlockOutcome::Blocked);
    assert_eq!(s.pick_next(), Some(BOOT_TASK));
    assert!(s.wake(a));
    s.yield_current();
    assert_eq!(s.pick_next(), Some(a));
    s.lock_released();
    // ... but blocking without locks is a safe point: it ends instead.
    assert_eq!(s.block_current(), BlockOutcome::KillInstead);
    assert_eq!(s.sleep_current(10), BlockOutcome::KillInstead);
}

#[test]
fn self_kill_and_failures() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    s.tick(1);
    assert_eq!(s.pick_next(), Some(a));
    assert_eq!(s.kill(a, Why::Killed), Ok(KillOutcome::KillSelf));
    assert_eq!(s.failure_verdict(true), Verdict::KillNow);
    assert_eq!(s.failure_verdict(false), Verdict::Panic(kill::PanicReason::InterruptsOff));
    s.lock_acquired();
    assert_eq!(s.failure_verdict(true), Verdict::Panic(kill::PanicReason::HoldsSleepingLocks(1)));
    assert_eq!(s.kill(a, Why::Killed), Ok(KillOutcome::Deferred));
}

#[test]
fn reap_frees_payloads_and_keeps_joinable_records() {
    let mut s = sched();
    let a = s.spawn("a", Some(2), true).unwrap();
    let d = s.spawn("d", Some(3), false).unwrap();
    s.kill(a, Why::Killed).unwrap();
    s.kill(d, Why::Killed).unwrap();
    let mut freed = s.reap();
    freed.sort();
    assert_eq!(freed, vec![Some(2), Some(3)]);
    assert!(s.task(d).is_none(), "detached tasks are forgotten");
    assert_eq!(s.join(a), Join::Done(Why::Killed, None), "the record stays, the payload went");
    // The current task is never reaped, even dead (it is switching away).
    s.exit_current(Why::Returned);
    assert!(s.reap().is_empty());
}

#[test]
fn the_task_table_is_bounded() {
    let mut s = S::new("kernel", None, 3);
    s.spawn("a", None, true).unwrap();
    s.spawn("b", None, true).unwrap();
    assert_eq!(s.spawn("c", None, true), Err(SpawnError::TooManyTasks));
}

#[derive(Debug, Clone)]
enum Op {
    Spawn,
    Yield,
    Tick,
    Sleep(u8),
    Block,
    Wake(u8),
    Kill(u8),
    Exit,
    Lock,
    Unlock,
    Join(u8),
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Spawn),
        Just(Op::Yield),
        Just(Op::Tick),
        Just(Op::Tick),
        (1u8..5).prop_map(Op::Sleep),
        Just(Op::Block),
        (0u8..12).prop_map(Op::Wake),
        (0u8..12).prop_map(Op::Kill),
        Just(Op::Exit),
        Just(Op::Lock),
        Just(Op::Unlock),
        (0u8..12).prop_map(Op::Join),
        Just(Op::Reap),
    ]
}

fn check_invariants(s: &S) {
    let running: Vec<TaskId> = s.tasks().filter(|t| t.state == State::Running).map(|t| t.id).collect();
    assert_eq!(running, vec![s.current()], "exactly the current task runs");
    let queued: Vec<TaskId> = s.queued().collect();
    let mut sorted = queued.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), queued.len(), "each task queued once: {queued:?}");
    for t in s.tasks() {
        let should = t.state == State::Ready && t.id != s.current() && Some(t.id) != s.idle;
        assert_eq!(queued.contains(&t.id), should, "task {} ({:?}) queued iff ready", t.id, t.state);
        if matches!(t.state, State::Dead(_)) {
            assert!(!t.kill_pending);
        }
        if t.kill_pending {
            assert!(!t.critical, "critical tasks are never killed");
        }
    }
    assert!(queued.len() <= s.max_tasks);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sequence of operations keeps the invariants, as the kernel drives
    /// them (a decision that says "end the task" is followed by an exit).
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let mut s = sched();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Spawn => { let _ = s.spawn("t", Some(9), true); }
                Op::Yield => { s.yield_current(); s.pick_next(); }
                Op::Tick => {
                    now += 1;
                    if s.tick(now).kill_current { s.exit_current(Why::Killed); }
                    s.pick_next();
                }
                Op::Sleep(n) => {
                    if s.current_task().critical && s.current() != BOOT_TASK { continue; }
                    if s.sleep_current(now + u64::from(n)) == BlockOutcome::KillInstead { s.exit_current(Why::Killed); }
                    s.pick_next();
                }
                Op::Block => {
                    if s.current_task().critical { continue; }
                    if s.block_current() == BlockOutcome::KillInstead { s.exit_current(Why::Killed); }
                    s.pick_next();
                }
                Op::Wake(i) => { s.wake(u64::from(i)); }
                Op::Kill(i) => {
                    if s.kill(u64::from(i), Why::Killed) == Ok(KillOutcome::KillSelf) {
                        s.exit_current(Why::Killed);
                        s.pick_next();
                    }
                }
                Op::Exit => {
                    if s.current_task().critical { continue; }
                    if s.current_task().sleeping_locks > 0 { continue; }
                    s.exit_current(Why::Returned);
                    s.pick_next();
                }
                Op::Lock => { if !s.current_task().critical { s.lock_acquired(); } }
                Op::Unlock => { if s.current_task().sleeping_locks > 0 { s.lock_released(); } }
                Op::Join(i) => { let _ = s.join(u64::from(i)); }
                Op::Reap => { s.reap(); }
            }
            check_invariants(&s);
        }
    }
}
